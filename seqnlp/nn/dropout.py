"""Dropout over sequences: standard (a fresh mask per position) or locked (one mask per
sequence, the same at every step: variational dropout, Gal & Ghahramani 2016; AWD-LSTM's
``LockedDropout``), and DropConnect on recurrent matrices (weight drop, Wan et al. 2013;
Merity et al. 2018)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

DropoutMode = Literal["standard", "locked"]
DROPOUT_MODES = ("standard", "locked")


def locked_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """A dropout mask (batch, 1, features), scaled by 1 / (1 - p), for x (batch, time,
    features): one draw per sequence and feature, shared by every step."""
    keep = x.new_empty(x.size(0), 1, x.size(-1)).bernoulli_(1.0 - p)
    return keep.div_(1.0 - p)


class SequenceDropout(nn.Module):
    """Dropout on (batch, time, features) sequences, or on (batch, features) vectors.

    ``standard``: ``nn.Dropout``. ``locked``: one mask per sequence over time (a 2-d
    input has no time axis: it gets a mask per row, as standard dropout). The identity
    in eval mode or with ``p`` 0.
    """

    def __init__(self, p: float, mode: DropoutMode = "standard") -> None:
        super().__init__()
        if mode not in DROPOUT_MODES:
            raise ValueError(f"dropout_mode must be one of {DROPOUT_MODES}, got {mode!r}")
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.mode == "standard" or x.dim() != 3:
            return nn.functional.dropout(x, self.p, True)
        return x * locked_mask(x, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


def drop_weight(weight: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """DropConnect: ``weight`` with each entry zeroed with probability ``p`` (the rest
    scaled by 1 / (1 - p)) in training; ``weight`` itself otherwise. Drawn once per
    forward pass, so every time step of a batch uses the same dropped matrix, and the
    result still feeds torch's fused RNN kernels as an ordinary weight."""
    if not training or p == 0:
        return weight
    return nn.functional.dropout(weight, p, True)
