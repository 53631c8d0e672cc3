"""Word and character features (plain modules: tensors in, tensors out)."""

from __future__ import annotations

import torch
from torch import nn

from seqnlp.nn.encoder import Cell, Init, RNNEncoder


class WordDropout(nn.Module):
    """Replaces each real token by ``<unk>`` with probability ``p`` in training, so that
    a model learns to do without the embeddings of rare words (the tagger then relies on
    their characters). The identity in eval mode or with ``p`` 0.

    (batch, time) ids and a (batch, time) bool mask of real tokens -> (batch, time) ids.
    """

    def __init__(self, p: float, unk_id: int) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"word dropout must be in [0, 1), got {p}")
        self.p = p
        self.unk_id = unk_id

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return ids
        drop = torch.rand(ids.shape, device=ids.device) < self.p  # (batch, time)
        return ids.masked_fill(drop & mask, self.unk_id)


class TrainingWordEmbedding(nn.Module):
    """A trainable embedding for the first ``num_words`` ids of a vocabulary (the
    training words); every later id (a word that only pretrained vectors know, added
    by vocabulary extension at training or prediction time) reads ``<unk>``'s row.

    Beside a frozen pretrained embedding this is the two-table scheme of Kim (2014,
    "multichannel") and Dozat et al. (2017): the pretrained vectors stay in the space
    the vectors of unseen words share, while this table learns what the task needs.

    (batch, time) ids -> (batch, time, dim).
    """

    def __init__(self, num_words: int, dim: int, pad_id: int, unk_id: int) -> None:
        super().__init__()
        if num_words <= max(pad_id, unk_id):
            raise ValueError(f"a training vocabulary of {num_words} ids lacks <pad>/<unk>")
        self.embedding = nn.Embedding(num_words, dim, padding_idx=pad_id)
        self.unk_id = unk_id

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        known = ids < self.embedding.num_embeddings
        return self.embedding(torch.where(known, ids, torch.full_like(ids, self.unk_id)))


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
    """Bidirectional character LSTM (or another ``cell``); a word is its final forward
    and backward states (Lample 2016).

    (batch, time, chars) ids -> (batch, time, 2 * hidden). Only real words are run, by
    the shared recurrent encoder (which chooses how the recurrence runs), with its
    options ``init``, ``forget_bias``, ``weight_drop`` and ``learn_initial_state``.
    """

    def __init__(
        self, num_chars: int, char_dim: int = 25, hidden: int = 25, cell: Cell = "lstm",
        init: Init = "default", forget_bias: float | None = None, weight_drop: float = 0.0,
        learn_initial_state: bool = False,
    ):  # fmt: skip
        super().__init__()
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.encoder = RNNEncoder(
            char_dim, hidden, cell=cell, bidirectional=True, init=init, forget_bias=forget_bias,
            weight_drop=weight_drop, learn_initial_state=learn_initial_state,
        )  # fmt: skip
        self.output_size = 2 * hidden

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        batch, time, chars = char_ids.shape
        flat = char_ids.view(batch * time, chars)
        lengths = (flat != 0).sum(dim=1)  # (words,)
        real = lengths > 0
        out = flat.new_zeros((batch * time, self.output_size), dtype=self.embedding.weight.dtype)
        if real.any():
            x = self.embedding(flat[real])  # (real_words, chars, char_dim)
            _, final = self.encoder(x, lengths[real])  # (2, real_words, hidden)
            out[real] = self.encoder.top_states(final).to(out.dtype)
        return out.view(batch, time, -1)
