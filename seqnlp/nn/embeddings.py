"""Word and character embeddings (plain modules: tensors in, tensors out)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from seqnlp.nn.padded_rnn import prefers_padded, run_padded
from seqnlp.tokenization import Vocab

log = logging.getLogger(__name__)


class CharCNN(nn.Module):
    """Character convolution with max-pooling over each word (Ma and Hovy 2016).

    (batch, time, chars) ids -> (batch, time, filters).
    """

    def __init__(self, num_chars: int, char_dim: int = 25, filters: int = 50, kernel_size: int = 3):
        super().__init__()
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.conv = nn.Conv1d(char_dim, filters, kernel_size, padding=kernel_size // 2)
        self.output_size = filters

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        batch, time, chars = char_ids.shape
        flat = char_ids.view(batch * time, chars)
        x = self.embedding(flat).transpose(1, 2)  # (words, char_dim, chars)
        h = self.conv(x)[:, :, :chars]  # (words, filters, chars); an even kernel adds one
        h = h.masked_fill((flat == 0).unsqueeze(1), float("-inf"))
        h = h.max(dim=2).values  # (words, filters)
        h = torch.where(torch.isinf(h), torch.zeros_like(h), h)  # words with no characters
        return h.view(batch, time, -1)


class CharLSTM(nn.Module):
    """Bidirectional character LSTM; a word is its final forward and backward states (Lample 2016).

    (batch, time, chars) ids -> (batch, time, 2 * hidden). Only real words are run.
    """

    def __init__(self, num_chars: int, char_dim: int = 25, hidden: int = 25):
        super().__init__()
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.lstm = nn.LSTM(char_dim, hidden, batch_first=True, bidirectional=True)
        self.output_size = 2 * hidden

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        batch, time, chars = char_ids.shape
        flat = char_ids.view(batch * time, chars)
        lengths = (flat != 0).sum(dim=1)  # (words,)
        real = lengths > 0
        out = flat.new_zeros((batch * time, self.output_size), dtype=self.embedding.weight.dtype)
        if real.any():
            x = self.embedding(flat[real])  # (real_words, chars, char_dim)
            if prefers_padded(self.lstm, x):  # oneDNN's fused LSTM on CPU
                _, h = run_padded(self.lstm, x, lengths[real])  # h: (2, real_words, hidden)
            else:
                packed = pack_padded_sequence(
                    x, lengths[real].cpu(), batch_first=True, enforce_sorted=False
                )
                _, (h, _) = self.lstm(packed)
            out[real] = torch.cat([h[0], h[1]], dim=-1).to(out.dtype)
        return out.view(batch, time, -1)


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
