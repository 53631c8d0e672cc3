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
from functools import partial
from typing import Any

import torch
from torch import nn

from seqnlp.data.subword_vectors import fit_subword_vectors, is_fasttext_model, load_fasttext_model
from seqnlp.data.vectors import VectorFile, VectorsFormat, fit_vectors, scaled_rows
from seqnlp.tokenization import Vocab, normalize_word

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
        self.path, self.format, self.max_words = path, format, max_words
        whole = is_fasttext_model(path) and format in ("auto", "fasttext_bin")
        self._model: Any = load_fasttext_model(path) if whole else None
        # VectorFile checks that the file exists and reads its header now.
        self.dim = int(self._model.vector_size) if whole else VectorFile(path, format).dim
        self.added = 0
        self._full_warned = False

    def extend(
        self, codec: Any, embedding: nn.Embedding, tokens: Iterable[str], scale: float = 1.0
    ) -> tuple[Any, int]:
        """Rows for the ``tokens`` (model tokens, before the word normalisation) whose
        normalised form ``codec.words`` lacks and the vectors have, times ``scale`` (the
        factor the vectors were multiplied by in training: ``model.pretrained_std``).
        Returns the codec (a copy with the longer vocabulary when rows were added) and
        the rows added; ``embedding`` (vocab, dim) grows in place, its old rows unchanged."""
        if self.dim != embedding.embedding_dim:
            raise ValueError(
                f"{self.path}: vectors of {self.dim} numbers for this model's word "
                f"embeddings of {embedding.embedding_dim}: use the vectors it was trained with"
            )
        vocab = codec.words
        norm = partial(normalize_word, lowercase=codec.lowercase, zero_digits=codec.zero_digits)
        forms = {norm(t) for t in tokens} - set(vocab.stoi)
        room = self.max_words - self.added
        if len(forms) > room:
            if not self._full_warned:
                log.warning("%s: at most %d words are added (max_words); the rest stay <unk>",
                            self.path, self.max_words)  # fmt: skip
                self._full_warned = True
            forms = set(sorted(forms)[:room])
        if not forms:
            return codec, 0
        # Only the lacking words are looked up: an empty vocabulary extended with them
        # (the model's own rows are never read again).
        specials = {vocab.pad, vocab.unk}
        empty = Vocab([], pad=vocab.pad, unk=vocab.unk)
        if self._model is not None:
            found, rows = fit_subword_vectors(self.path, empty, forms, norm, model=self._model)
        else:
            found, rows = fit_vectors(self.path, empty, forms, norm, self.format)
        new = [(found.itos[i], n) for n, i in enumerate(rows.ids) if found.itos[i] not in specials]
        if not new:
            return codec, 0
        known = [w for w in vocab.itos if w not in specials]
        extended = Vocab([*known, *(w for w, _ in new)], pad=vocab.pad, unk=vocab.unk)
        with torch.no_grad():
            weight = embedding.weight
            vectors = scaled_rows(rows.vectors[[n for _, n in new]], weight, scale)
            grown = torch.cat([weight.detach(), vectors])  # (vocab + new, dim)
        embedding.weight = nn.Parameter(grown, requires_grad=False)
        embedding.num_embeddings = len(extended)
        codec = copy.copy(codec)
        codec.words = extended
        self.added += len(new)
        return codec, len(new)
