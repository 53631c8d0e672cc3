"""Training DataLoaders that Lightning can checkpoint in the middle of an epoch.

Lightning saves the ``state_dict()`` of a training loader that has one into every
checkpoint and, when fitting resumes from it, calls ``load_state_dict()`` before
iterating again. The state here is the epoch and the number of batches already
handed to the training loop in it; the next iteration of that epoch skips exactly
those batches, so a run killed mid-epoch and resumed sees the batches an
uninterrupted run would have seen, in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from seqnlp.data.batching import BucketBatchSampler


class MidEpochState:
    """A loader's place in an epoch: the epoch and the batches delivered in it.

    Counted as batches handed to the caller, so batches that worker processes have
    prefetched but the loop has not taken are not counted as done. (Lightning does
    not prefetch from a loader that has a length.)
    """

    _epoch = 0
    _delivered = 0
    _resume: tuple[int, int] | None = None

    def _begin_epoch(self, epoch: int) -> int:
        """Start counting ``epoch``'s batches; returns how many of them a loaded state
        has taken already (0 unless it is of this epoch), which count as delivered."""
        resume, self._resume = self._resume, None
        skip = resume[1] if resume is not None and resume[0] == epoch else 0
        self._epoch, self._delivered = epoch, skip
        return skip

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches_done": self._delivered}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = (int(state["epoch"]), int(state["batches_done"]))


class ResumableDataLoader(MidEpochState, DataLoader):
    """A ``DataLoader`` over a ``BucketBatchSampler`` with a mid-epoch state; the
    sampler drops the batches already taken before any is loaded."""

    batch_sampler: BucketBatchSampler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.batch_sampler, BucketBatchSampler):
            raise TypeError("ResumableDataLoader needs a BucketBatchSampler as batch_sampler")

    def __iter__(self) -> Iterator[Any]:
        # A generator: the sampler's epoch is read when the first batch is asked for,
        # after Lightning's ``set_epoch``.
        self.batch_sampler.skip_next(self._begin_epoch(self.batch_sampler.epoch))
        for batch in super().__iter__():
            self._delivered += 1
            yield batch

    def load_state_dict(self, state: dict[str, int]) -> None:
        super().load_state_dict(state)
        self.batch_sampler.set_epoch(int(state["epoch"]))  # the epoch the state is of
