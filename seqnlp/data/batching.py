"""Length-bucketed, rank-aware batch sampling and padding.

Sorting examples of similar length into the same batch keeps padding low; the
sampler shuffles within large pools so that batches still vary from epoch to
epoch, reproducibly from ``seed + epoch``. Under data parallelism each rank gets
the same number of batches and, across ranks, each example once per epoch
(batches are dealt round-robin; the last ones are repeated to make the count
divisible when needed, as ``DistributedSampler`` does).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TypeVar

import torch
from torch.utils.data import Sampler

from seqnlp.data.sorting import length_sorted_batches, pad_rows

T = TypeVar("T")


class BucketBatchSampler(Sampler[list[int]]):
    """Yield lists of example indices, each batch of examples of similar length.

    Args:
        lengths: length of each example (tokens), used for sorting.
        batch_size: examples per batch (at most).
        shuffle: shuffle examples into pools, and the batch order, every epoch.
        pool_factor: a pool of ``pool_factor * batch_size`` shuffled examples is
            sorted by length and cut into batches. Larger pools mean less padding.
        seed: base seed; epoch ``e`` uses ``seed + e``.
        num_replicas, rank: data-parallel world size and this process's rank.
        drop_last: drop a final short batch instead of keeping it.
        max_tokens: also end a batch before its padded size (examples x longest
            length) would pass this many tokens; ``batch_size`` stays the most
            examples a batch holds. An example longer than the budget forms a batch
            of its own.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        pool_factor: int = 50,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        max_tokens: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if drop_last and max_tokens is not None:
            raise ValueError("drop_last and max_tokens do not combine: batches vary in size")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.pool_factor = pool_factor
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.max_tokens = max_tokens
        self.epoch = 0
        self._skip = 0
        # Lightning calls ``set_epoch`` on a loader's ``sampler`` and on its
        # ``batch_sampler.sampler`` (torch's BatchSampler wraps a sampler), never on the
        # batch sampler itself: without this the order would be the same every epoch.
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_next(self, batches: int) -> None:
        """Continue an interrupted epoch: the next iteration leaves out its first
        ``batches`` batches (those this rank had already taken)."""
        self._skip = batches

    def _all_batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=gen).tolist()
        else:
            order = list(range(n))
        pool = self.batch_size * self.pool_factor if self.shuffle else max(n, 1)
        batches: list[list[int]] = []
        for start in range(0, n, pool):
            chunk = order[start : start + pool]
            batches += length_sorted_batches(
                chunk, self.lengths.__getitem__, self.batch_size, self.max_tokens
            )
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            perm = torch.randperm(len(batches), generator=gen).tolist()
            batches = [batches[i] for i in perm]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        if self.num_replicas > 1 and batches:
            total = math.ceil(len(batches) / self.num_replicas) * self.num_replicas
            # repeat cyclically: with fewer batches than ranks one copy may not be enough
            filler = total - len(batches)
            batches = batches + (batches * math.ceil(filler / len(batches)))[:filler]
            batches = batches[self.rank :: self.num_replicas]
        skip, self._skip = self._skip, 0
        return iter(batches[skip:])

    def __len__(self) -> int:
        n = len(self._all_batches()) if self.drop_last or self.max_tokens else self._count()
        return math.ceil(n / self.num_replicas) if n else 0

    def _count(self) -> int:
        n = len(self.lengths)
        if not self.shuffle:
            return math.ceil(n / self.batch_size)
        pool = self.batch_size * self.pool_factor
        full, rest = divmod(n, pool)
        return full * math.ceil(pool / self.batch_size) + math.ceil(rest / self.batch_size)


def pad_2d(rows: Sequence[Sequence[int]], pad: int = 0) -> torch.Tensor:
    """Stack integer rows of unequal length: (batch, max_len) (``pad_rows``)."""
    return torch.from_numpy(pad_rows(rows, pad)[0])


def pad_with_lengths(
    rows: Sequence[Sequence[int]], pad: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``pad_2d(rows)`` (batch, max_len), the row lengths (batch,) and the mask of real
    positions (batch, max_len), True on each row's first ``length`` positions."""
    padded, lengths = (torch.from_numpy(a) for a in pad_rows(rows, pad))
    return padded, lengths, torch.arange(padded.size(1))[None, :] < lengths[:, None]


def pad_3d(rows: Sequence[Sequence[Sequence[int]]], pad: int = 0) -> torch.Tensor:
    """Stack nested rows (e.g. characters of words): (batch, max_words, max_chars)."""
    words = max((len(r) for r in rows), default=0)
    chars = max(max((len(w) for r in rows for w in r), default=0), 1)
    empty = [pad] * chars
    return torch.tensor(
        [
            [*([*w, *([pad] * (chars - len(w)))] for w in r), *([empty] * (words - len(r)))]
            for r in rows
        ],
        dtype=torch.long,
    ).view(len(rows), words, chars)


def example_ids_of(examples: Sequence[dict]) -> torch.Tensor | None:
    """The examples' ``example_id`` values (batch,), or None when they have none."""
    if not examples or "example_id" not in examples[0]:
        return None
    return torch.tensor([e["example_id"] for e in examples], dtype=torch.long)
