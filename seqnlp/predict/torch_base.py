"""The torch runtime's predictor base: a network on a device, several CPU batches at
once in threads sharing torch's threads."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch
from pytorch_lightning.utilities import move_data_to_device
from torch import nn

from seqnlp.nn.contextual import ContextualCharFeatures
from seqnlp.predict.base import Predictor, Record

T = TypeVar("T")


class TorchPredictor(Predictor):
    """A predictor that runs a torch network (``seqnlp.models``).

    Args:
        network: the task's network, on the device it runs on.
        codec, batch_size: as ``Predictor``.
        parallel_batches: on a CPU, batches predicted at once, each in its own
            thread with an equal share of torch's threads; 1: one batch at a time on
            all of them.
    """

    def __init__(
        self, network: nn.Module, codec: Any, batch_size: int = 64, parallel_batches: int = 1
    ) -> None:
        super().__init__(codec, batch_size)
        if parallel_batches < 1:
            raise ValueError(f"parallel_batches must be at least 1, got {parallel_batches}")
        self.network = network.eval()
        self.parallel_batches = parallel_batches
        for module in network.modules():  # texts to predict seldom come twice, and a
            if isinstance(module, ContextualCharFeatures):  # server must not grow
                module.cache_mb = 0.0
                module.clear_cache()

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def _records_by_batch(
        self, inputs: Sequence[Any], batches: list[list[int]]
    ) -> Iterator[list[Record]]:
        """Each batch's records, in order: one batch at a time or, with
        ``parallel_batches`` > 1 on CPU, that many at once in threads (torch releases
        the GIL in its operations): small recurrent products use two cores better as
        two one-thread products than as one two-thread product. torch's thread count
        is process-wide: it is shared out among the threads while they run, then
        restored."""

        def run(idx: list[int]) -> list[Record]:
            return self.predict_batch([inputs[i] for i in idx])

        workers = min(self.parallel_batches, len(batches))
        if workers <= 1 or self.device.type != "cpu":
            yield from map(run, batches)
            return
        threads = torch.get_num_threads()
        share = max(1, threads // workers)
        torch.set_num_threads(share)
        try:  # OpenMP's count is per thread: each worker sets its own
            init = {"initializer": torch.set_num_threads, "initargs": (share,)}
            with ThreadPoolExecutor(workers, **init) as pool:
                yield from pool.map(run, batches)
        finally:
            torch.set_num_threads(threads)

    def to_device(self, batch: T) -> T:
        """A collated (CPU) batch on the network's device (a GPU under ``--devices``)."""
        device = self.device
        return batch if device.type == "cpu" else move_data_to_device(batch, device)
