"""A training DataLoader that Lightning can checkpoint in the middle of an epoch.

Lightning saves the ``state_dict()`` of a training loader that has one into every
checkpoint and, when fitting resumes from it, calls ``load_state_dict()`` before
iterating again. The state here is the epoch and the number of batches already
handed to the training loop in it; the bucket sampler then skips exactly those
batches, so a run killed mid-epoch and resumed sees the batches an uninterrupted
run would have seen, in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from seqnlp.data.batching import BucketBatchSampler


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a ``BucketBatchSampler`` with a mid-epoch state.

    The count is of batches delivered to the caller, so batches that worker
    processes have prefetched but the loop has not taken are not counted as done.
    (Lightning does not prefetch from a loader that has a length.)
    """

    batch_sampler: BucketBatchSampler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.batch_sampler, BucketBatchSampler):
            raise TypeError("ResumableDataLoader needs a BucketBatchSampler as batch_sampler")
        self._epoch = 0
        self._delivered = 0

    def __iter__(self) -> Iterator[Any]:
        # A generator: the sampler's epoch is read when the first batch is asked for,
        # after Lightning's ``set_epoch``.
        sampler = self.batch_sampler
        resume = sampler._resume
        self._epoch = sampler.epoch
        self._delivered = resume[1] if resume is not None and resume[0] == sampler.epoch else 0
        for batch in super().__iter__():
            self._delivered += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches_done": self._delivered}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.resume(int(state["epoch"]), int(state["batches_done"]))
