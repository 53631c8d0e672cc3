"""Pretrained word vectors: text files of word2vec / GloVe vectors read into embeddings."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from seqnlp.tokenization import Vocab

log = logging.getLogger(__name__)


@torch.no_grad()
def load_word_vectors(path: str | Path, vocab: Vocab, weight: torch.Tensor) -> int:
    """Copy vectors from a word2vec/GloVe text file into rows of ``weight`` (vocab, dim).

    A vocabulary word takes the vector of its exact form, else of its lowercase
    form; words missing from the file keep their random rows, padding stays zero.
    Returns the number of rows set.
    """
    dim = weight.size(1)
    by_lower: dict[str, list[int]] = {}
    for i, w in enumerate(vocab.itos):
        by_lower.setdefault(w.lower(), []).append(i)
    skip = {vocab.pad_id} if vocab.pad is not None else set()
    rows_set: set[int] = set()
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            parts = line.rstrip().split(" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header "count dim"
            if len(parts) != dim + 1:
                raise ValueError(
                    f"{path}:{lineno}: expected a word and {dim} numbers (the model's word_dim), "
                    f"found {len(parts) - 1} numbers"
                )
            word = parts[0]
            if word in vocab.stoi:
                rows = [vocab.stoi[word]]
            else:
                rows = [r for r in by_lower.get(word.lower(), []) if r not in rows_set]
            rows = [r for r in rows if r not in skip]
            if not rows:
                continue
            try:
                vector = torch.tensor([float(x) for x in parts[1:]], dtype=weight.dtype)
            except ValueError:
                raise ValueError(
                    f"{path}:{lineno}: expected {dim} numbers after the word"
                ) from None
            weight[rows] = vector
            rows_set.update(rows)
    log.info(
        "word vectors: %d of %d vocabulary entries set from %s", len(rows_set), len(vocab), path
    )
    return len(rows_set)
