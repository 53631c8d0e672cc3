"""Cutting items into batches by length (torch-free: ONNX Runtime prediction uses it)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def length_sorted_batches(
    items: Iterable[T], length_of: Callable[[T], int], batch_size: int,
    max_tokens: int | None = None,
) -> list[list[T]]:  # fmt: skip
    """``items`` sorted by length (stably: equal lengths keep their order) and cut into
    batches of at most ``batch_size`` items and, with ``max_tokens``, of at most that many
    padded tokens (items x the longest length): a long item does not pad a whole batch to
    its length, and one longer than the budget is a batch of its own. What the map-style
    sampler, streaming and prediction all cut their pools with."""
    batches: list[list[T]] = [[]]
    for item in sorted(items, key=length_of):  # ascending: the newest item is the longest
        batch = batches[-1]
        over = max_tokens is not None and (len(batch) + 1) * length_of(item) > max_tokens
        if batch and (len(batch) >= batch_size or over):
            batches.append(batch := [])
        batch.append(item)
    return [b for b in batches if b]
