"""Word vectors from a whole fastText model (fastText's own ``.bin``), which also holds
the vectors of character n-grams, so that every word has a vector: a word of the
model's vocabulary has its own, any other word the mean of its n-grams' (Bojanowski et
al. 2017). The words that a vector file lacks (rare names, inflected forms, words of
another domain) are the ones a tagger most needs help with.

The file is read through gensim (``pip install 'seqnlp[vectors]'``), only when a
DataModule fits its vocabulary: the vectors go into the model's embedding rows, and
the model never needs the file, or gensim, again.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from seqnlp.tokenization import Vocab

log = logging.getLogger(__name__)

# fastText's binary models start with this int32 (little-endian), then a version (12).
FASTTEXT_MAGIC = (793712314).to_bytes(4, "little")


def is_fasttext_model(path: str | Path) -> bool:
    """Whether ``path`` is a file that starts as fastText's binary models (``.bin``,
    ``.ftz``) do (False for a missing file: the readers say that it is missing)."""
    if not Path(path).is_file():
        return False
    with open(path, "rb") as handle:
        return handle.read(4) == FASTTEXT_MAGIC


def load_fasttext_model(path: str | Path) -> Any:
    """The model's ``gensim.models.fasttext.FastTextKeyedVectors``; a clear error when
    gensim is missing or the file is not a whole fastText model."""
    try:
        from gensim.models.fasttext import load_facebook_vectors
    except ImportError:
        raise ValueError(
            f"{path}: a fastText model (.bin) is read with gensim, which is not installed: "
            f"pip install 'seqnlp[vectors]' (or pip install gensim)"
        ) from None
    try:
        return load_facebook_vectors(str(path))
    except (ValueError, NotImplementedError, EOFError, AssertionError, struct.error) as err:
        raise ValueError(f"{path}: not a readable fastText model (.bin): {err}") from None


def fit_subword_vectors(
    path: str | Path,
    vocab: Vocab,
    data_words: Iterable[str] = (),
    normalize: Callable[[str], str] | None = None,
    max_vectors: int | None = None,
    extend: str = "data",
    model: Any = None,
) -> tuple[Vocab, Any]:
    """``fit_vectors`` for a whole fastText model: the same options, but every word gets
    a vector, so ``extend`` ``data`` adds every data word that training lacks.

    A row's vector is, in this order: that of its word in the model's vocabulary (after
    ``normalize``, the vocabulary's own normalisation), of its lowercase form there, or
    the one its character n-grams give. ``max_vectors`` keeps only the model's first N
    words as whole words (the others still get n-gram vectors); ``extend`` ``all`` adds
    those N words. ``<pad>`` and ``<unk>`` get no vector. Returns the vocabulary and
    ``PretrainedRows`` (ids (n,), vectors (n, dim)). ``model``: the file's model,
    loaded already (``load_fasttext_model``).
    """
    from seqnlp.data.vectors import PretrainedRows

    started = time.perf_counter()
    model = load_fasttext_model(path) if model is None else model
    normalize = normalize or (lambda word: word)
    whole: dict[str, str] = {}  # a normalised form -> the model's word (the first wins)
    for word in model.index_to_key[:max_vectors]:
        whole.setdefault(normalize(word), word)
    specials = {s for s in (vocab.pad, vocab.unk) if s is not None}
    known = [w for w in vocab.itos if w not in specials]
    extra: set[str] = set() if extend == "none" else set(data_words)
    if extend == "all":
        extra |= set(whole)
    added = sorted(extra - set(vocab.stoi) - specials - {""})
    subword = model.bucket > 0
    if not subword:  # a model without n-grams: only the words of its vocabulary
        added = [w for w in added if w in whole or w.lower() in whole]
    if added:
        vocab = Vocab([*known, *added], pad=vocab.pad, unk=vocab.unk)
    ids: list[int] = []
    vectors: list[np.ndarray] = []
    from_ngrams = 0
    for i, word in enumerate(vocab.itos):
        if word in specials or not word:
            continue
        source = whole.get(word) or whole.get(word.lower())
        if source is None and not subword:
            continue  # a model without n-grams: a word of its vocabulary or nothing
        vector = model.get_vector(source if source is not None else word)
        if source is None:
            if not np.any(vector):
                continue
            from_ngrams += 1
        ids.append(i)
        vectors.append(np.asarray(vector, dtype=np.float32))
    matrix = np.stack(vectors) if vectors else np.zeros((0, model.vector_size), np.float32)
    log.info(
        "word vectors: %d of %d vocabulary entries from the fastText model %s (%d of them "
        "from character n-grams; %d dimensions; %d words added beyond the training "
        "vocabulary) in %.1f s", len(ids), len(vocab), path, from_ngrams, model.vector_size,
        len(added), time.perf_counter() - started,
    )  # fmt: skip
    return vocab, PretrainedRows(ids, matrix, str(path))
