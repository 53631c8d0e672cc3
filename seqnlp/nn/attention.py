"""Attention over encoder states: additive (Bahdanau), dot and general (Luong)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Scoring = Literal["additive", "dot", "general"]


class Attention(nn.Module):
    """Scores source positions against a decoder query; returns context and weights.

    - ``additive`` (Bahdanau et al. 2015): ``v^T tanh(W_q q + W_k k_s)``;
    - ``dot`` (Luong et al. 2015): ``q . k_s`` (query and key sizes must match);
    - ``general`` (Luong et al. 2015): ``q^T W k_s``.

    Padding positions (``mask`` False) get weight exactly 0.

    Args:
        query_size: decoder state size.
        key_size: encoder output size (also the context size).
        hidden_size: size of the additive scorer's hidden layer.
    """

    def __init__(
        self, query_size: int, key_size: int, method: Scoring = "additive", hidden_size: int = 0
    ) -> None:
        super().__init__()
        self.method = method
        if method == "additive":
            hidden = hidden_size or query_size
            self.key_layer = nn.Linear(key_size, hidden, bias=False)
            self.query_layer = nn.Linear(query_size, hidden, bias=False)
            self.energy = nn.Linear(hidden, 1, bias=False)
        elif method == "general":
            self.key_layer = nn.Linear(key_size, query_size, bias=False)
        elif method == "dot":
            if query_size != key_size:
                raise ValueError(
                    f"dot attention needs equal sizes, got {query_size} and {key_size}"
                )
        else:
            raise ValueError(f"attention method must be additive, dot or general, got {method!r}")

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """Query-independent part of the scores, computed once per source: (batch, src, *)."""
        return keys if self.method == "dot" else self.key_layer(keys)

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        mask: torch.Tensor,
        projected_keys: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend.

        Args:
            query: (batch, query_size).
            keys: encoder outputs (batch, src, key_size), also the values.
            mask: (batch, src) bool, True on real source tokens (at least one per row).
            projected_keys: ``project_keys(keys)``, to save recomputing it every step.

        Returns:
            context: (batch, key_size); weights: (batch, src), summing to 1 over real tokens.
        """
        projected = self.project_keys(keys) if projected_keys is None else projected_keys
        if self.method == "additive":
            hidden = torch.tanh(
                projected + self.query_layer(query).unsqueeze(1)
            )  # (batch, src, hidden)
            scores = self.energy(hidden).squeeze(-1)  # (batch, src)
        else:
            scores = torch.bmm(projected, query.unsqueeze(-1)).squeeze(-1)  # (batch, src)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # (batch, src)
        context = torch.bmm(weights.unsqueeze(1), keys).squeeze(1)  # (batch, key_size)
        return context, weights
