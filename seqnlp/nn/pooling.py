"""Pooling a sequence of encoder states into one vector per sequence."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

PoolingMethod = Literal["last", "mean", "max", "attention"]


class SequencePooling(nn.Module):
    """(batch, time, features) states and a (batch, time) mask -> (batch, features).

    ``last``: the final forward state, concatenated with the backward direction's
    state at the first token when ``bidirectional`` (its final state); ``mean`` and
    ``max`` over real tokens; ``attention``: a learned additive attention
    (``v^T tanh(W h_t)``) over real tokens. Padding never changes the result.
    """

    def __init__(
        self, method: PoolingMethod, features: int, bidirectional: bool = False,
        attention_size: int = 128,
    ) -> None:  # fmt: skip
        super().__init__()
        self.method = method
        self.bidirectional = bidirectional
        self.attention: nn.Sequential | None = None
        if method == "attention":
            self.attention = nn.Sequential(
                nn.Linear(features, attention_size),
                nn.Tanh(),
                nn.Linear(attention_size, 1, bias=False),
            )
        self.last_weights: torch.Tensor | None = None  # (batch, time) of the last attention call

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1)  # (batch,)
        if self.method == "last":
            rows = torch.arange(states.size(0), device=states.device)
            last = states[rows, lengths - 1]  # (batch, features)
            if not self.bidirectional:
                return last
            half = states.size(-1) // 2
            return torch.cat([last[:, :half], states[:, 0, half:]], dim=-1)
        m = mask.unsqueeze(-1)  # (batch, time, 1)
        if self.method == "mean":
            return (states * m).sum(dim=1) / lengths.unsqueeze(1).to(states.dtype)
        if self.method == "max":
            return states.masked_fill(~m, float("-inf")).max(dim=1).values
        assert self.attention is not None
        scores = (
            self.attention(states).squeeze(-1).masked_fill(~mask, float("-inf"))
        )  # (batch, time)
        weights = scores.softmax(dim=-1)
        self.last_weights = weights.detach()
        return torch.bmm(weights.unsqueeze(1), states).squeeze(1)
