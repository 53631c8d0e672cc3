"""Vocabulary extension at prediction: the words of the text being tagged that the model
lacks get rows from word vectors, as ``data.vectors`` gave rows to the words of the
validation and test text when the model was trained (``extend_vocab: data``).

A model trained with a whole fastText model (``.bin``) thus keeps giving new words
their character n-gram vectors on text it never saw, instead of ``<unk>``. The rows
live in the loaded model only (the checkpoint or folder is unchanged).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqnlp.data.subword_vectors import fit_subword_vectors, is_fasttext_model, load_fasttext_model
from seqnlp.data.vectors import VectorFile, VectorsFormat, fit_vectors
from seqnlp.tokenization import normalize_word

log = logging.getLogger(__name__)


class VocabularyExtension:
    """Adds rows to a tagger's word embedding for the words it lacks.

    Args:
        path: word vectors in any ``data.vectors`` format; a whole fastText model is
            loaded once and kept (every word gets a vector), a text or binary vector
            file is read again, for the words asked for only, at each ``extend``.
        format: as ``data.vectors_format``.
        max_words: the most words added in all; past it, new words stay ``<unk>``
            (a warning says so once), so that a long stream of text cannot grow the
            model without bound.
    """

    def __init__(self, path: str, format: VectorsFormat = "auto", max_words: int = 1_000_000):
        if not Path(path).is_file():
            raise ValueError(f"{path}: no such word-vector file")
        self.path, self.format, self.max_words = path, format, max_words
        whole = is_fasttext_model(path) and format in ("auto", "fasttext_bin")
        self._model: Any = load_fasttext_model(path) if whole else None
        self._file = None if whole else VectorFile(path, format)  # checks the header now
        self.dim = int(self._model.vector_size) if whole else self._file.dim  # type: ignore[union-attr]
        self.added = 0
        self._full_warned = False

    def extend(self, codec: Any, embedding: nn.Embedding, tokens: Iterable[str]) -> tuple[Any, int]:
        """Rows for the ``tokens`` (model tokens, before the word normalisation) whose
        normalised form ``codec.words`` lacks and the vectors have. Returns the codec
        (a copy with the longer vocabulary when rows were added) and the rows added;
        ``embedding`` (vocab, dim) grows in place, its old rows unchanged."""
        if self.dim != embedding.embedding_dim:
            raise ValueError(
                f"{self.path}: vectors of {self.dim} numbers for this model's word "
                f"embeddings of {embedding.embedding_dim}: use the vectors it was trained with"
            )
        vocab = codec.words
        forms = {normalize_word(t, codec.lowercase, codec.zero_digits) for t in tokens}
        forms -= set(vocab.stoi)
        room = self.max_words - self.added
        if len(forms) > room:
            if not self._full_warned:
                log.warning("%s: at most %d words are added (max_words); the rest stay <unk>",
                            self.path, self.max_words)  # fmt: skip
                self._full_warned = True
            forms = set(sorted(forms)[:room])
        if not forms:
            return codec, 0

        def norm(word: str) -> str:
            return normalize_word(word, codec.lowercase, codec.zero_digits)

        if self._model is not None:
            extended, rows = fit_subword_vectors(self.path, vocab, forms, norm, model=self._model)
        else:
            extended, rows = fit_vectors(self.path, vocab, forms, norm, self.format)
        old = len(vocab)
        if len(extended) == old:
            return codec, 0
        with torch.no_grad():
            weight = embedding.weight
            grown = torch.zeros(len(extended), weight.size(1), dtype=weight.dtype,
                                device=weight.device)  # fmt: skip
            grown[:old] = weight
            new = [(i, n) for n, i in enumerate(rows.ids) if i >= old]
            ids = torch.tensor([i for i, _ in new], dtype=torch.long, device=weight.device)
            grown[ids] = torch.from_numpy(rows.vectors[[n for _, n in new]]).to(grown)
        embedding.weight = nn.Parameter(grown, requires_grad=False)
        embedding.num_embeddings = len(extended)
        codec = copy.copy(codec)
        codec.words = extended
        self.added += len(extended) - old
        return codec, len(extended) - old
