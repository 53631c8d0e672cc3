"""Character features of tokens seen before, for tagging prediction.

A word's character features (``CharLSTM``, ``CharCNN``) depend on its characters alone,
and out of training they do not change: a prediction batch already encodes each
distinct token once (``seqnlp.data.codecs.distinct_tokens``). ``CharFeatureCache``
keeps them across batches, so that after a few batches nearly every token's features
are a row of a table: a server's random batches of about 30 sentences encoded 18
distinct tokens a sentence, about a quarter of the prediction process's time.

The cache belongs to one predictor. It is emptied when it is full and whenever the
character encoder's weights change (their storage or version), so a network trained
further after the predictor was made is never served stale features. (Weights made
under ``torch.inference_mode`` have no version: only their storage is compared.)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
from torch import Tensor, nn

#: the key of the padding's empty word (row 0 of every batch's character ids); not a
#: string, since "" may be a token (its character ids need not be the padding's)
_PADDING = None


class CharFeatureCache:
    """Each token's character features, computed once.

    Args:
        encoder: the character encoder, (1, words, chars) ids -> (1, words, features),
            in eval mode.
        capacity: tokens kept; the cache is emptied when it is full.
    """

    def __init__(self, encoder: nn.Module, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the cache needs room for at least one token, got {capacity}")
        self.encoder = encoder
        self.capacity = capacity
        self._rows: dict[str | None, int] = {}
        self._table: Tensor | None = None  # (rows allocated, features)
        self._weights: tuple[tuple[int, int], ...] = ()
        self._lock = threading.Lock()  # predict's parallel batches share the cache

    def __len__(self) -> int:
        return len(self._rows)

    def vectors(self, tokens: Sequence[str], char_ids: Tensor) -> Tensor:
        """Features (1 + len(tokens), features) of the padding's empty word and of each
        token, given the batch's distinct character ids (1 + len(tokens), chars): row 0
        the empty word, row i + 1 ``tokens[i]`` (``distinct_tokens``' rows and tokens).
        Only tokens not kept yet are encoded. One batch at a time (a lock): after the
        first batches that is a table lookup."""
        if char_ids.size(0) != len(tokens) + 1:
            raise ValueError(f"{len(tokens)} tokens for {char_ids.size(0)} rows of characters "
                             "(expected one more row: the padding's empty word)")  # fmt: skip
        keys: list[str | None] = [_PADDING, *tokens]
        if len(keys) > self.capacity or self.encoder.training:  # nothing kept
            return self.encoder(char_ids.unsqueeze(0))[0]
        with self._lock:
            weights = tuple((p.data_ptr(), -1 if p.is_inference() else p._version)
                            for p in self.encoder.parameters())  # fmt: skip
            if weights != self._weights or len(self._rows) + len(keys) > self.capacity:
                self._rows.clear()  # changed weights, or possibly no room for this batch
                self._weights = weights
            rows = [self._rows.get(k, -1) for k in keys]
            missing = [i for i, r in enumerate(rows) if r < 0]
            if missing:
                fresh = self.encoder(char_ids[missing].unsqueeze(0))[0]  # (missing, features)
                table = self._room(len(self._rows) + len(missing), fresh)
                for j, i in enumerate(missing):
                    rows[i] = self._rows[keys[i]] = len(self._rows)
                    table[rows[i]] = fresh[j]
            assert self._table is not None
            return self._table[torch.tensor(rows, device=self._table.device)]

    def _room(self, needed: int, like: Tensor) -> Tensor:
        """The table with at least ``needed`` rows (doubling, at most ``capacity``),
        the rows kept so far copied over."""
        table = self._table
        if table is None or table.size(0) < needed or table.dtype != like.dtype:
            size = min(self.capacity, max(needed, 2 * (0 if table is None else table.size(0))))
            grown = like.new_empty(size, like.size(1))
            kept = len(self._rows)  # the rows of earlier batches
            if table is not None and kept:
                grown[:kept] = table[:kept]
            table = self._table = grown
        return table
