"""Pooling a sequence of encoder states into one vector per sequence."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

#: ``last`` is the encoder's final states (``RNNEncoder.top_states``); the others pool
#: the states of every real token (``SequencePooling``).
PoolingMethod = Literal["last", "mean", "max", "attention"]


class SequencePooling(nn.Module):
    """(batch, time, features) states and a (batch, time) mask -> (batch, features).

    ``mean`` and ``max`` over real tokens; ``attention``: a learned additive attention
    (``v^T tanh(W h_t)``) over real tokens. Padding never changes the result.
    """

    def __init__(
        self, method: Literal["mean", "max", "attention"], features: int,
        attention_size: int = 128,
    ) -> None:  # fmt: skip
        super().__init__()
        if method not in ("mean", "max", "attention"):
            raise ValueError(f"pooling over states is mean, max or attention, not {method!r}")
        self.method = method
        self.attention: nn.Sequential | None = None
        if method == "attention":
            self.attention = nn.Sequential(
                nn.Linear(features, attention_size),
                nn.Tanh(),
                nn.Linear(attention_size, 1, bias=False),
            )

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1)  # (batch, time, 1)
        if self.method == "mean":
            lengths = mask.sum(dim=1, keepdim=True)  # (batch, 1)
            return (states * m).sum(dim=1) / lengths.to(states.dtype)
        if self.method == "max":
            return states.masked_fill(~m, float("-inf")).max(dim=1).values
        assert self.attention is not None
        scores = self.attention(states).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-1)  # (batch, time)
        return torch.bmm(weights.unsqueeze(1), states).squeeze(1)  # (batch, features)

    def step(
        self, state: torch.Tensor, running: tuple[torch.Tensor, ...] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The pooling of every state so far, one more state (batch, features) at a
        time, in constant memory: what ``forward`` gives over the states seen.

        ``running`` (None at the start) holds the sum and count (``mean``), the maximum
        (``max``), or the largest score, the sum of exp(score - largest) and the
        weighted sum of states (``attention``: the softmax's online form)."""
        if self.method == "mean":
            total, count = (state, 1.0) if running is None else (running[0] + state, running[1] + 1)
            count_t = torch.as_tensor(count, dtype=state.dtype)
            return total / count_t, (total, count_t)
        if self.method == "max":
            top = state if running is None else torch.maximum(running[0], state)
            return top, (top,)
        assert self.attention is not None
        score = self.attention(state)  # (batch, 1)
        if running is None:
            largest, norm, weighted = score, torch.ones_like(score), state
        else:
            largest = torch.maximum(running[0], score)
            old, new = torch.exp(running[0] - largest), torch.exp(score - largest)
            norm = running[1] * old + new
            weighted = running[2] * old + new * state
        return weighted / norm, (largest, norm, weighted)
