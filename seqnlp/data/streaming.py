"""Streaming a training corpus larger than memory (``data.streaming: true``).

The training split is read lazily as a Hugging Face ``IterableDataset``, never
materialised: one pass fits the vocabularies (counts, or a bounded sample for
SentencePiece) and counts the examples, then every epoch streams the file again.
Examples are dealt round-robin to ranks and to DataLoader workers
(``split_dataset_by_node`` over ranks x workers), shuffled through a buffer, sorted
by length within pools of ``pool_factor * batch_size`` and cut into batches.

Every rank must take the same number of batches (or the gradient all-reduce of
the last step hangs), so each stream of examples is topped up to the same length
by repeating its first examples, as the map-style sampler repeats batches: with
``E`` examples, ``W`` ranks and ``K`` workers each stream holds
``ceil(E / (W * K))`` examples and gives ``ceil(that / batch_size)`` batches.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import datasets
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from seqnlp.data.resumable import MidEpochState
from seqnlp.data.sorting import length_sorted_batches


class RecordStream:
    """Re-iterable records of a streamed split, with column access for vocabulary
    fitting (``stream["text"]`` iterates one column; nothing is held in memory)."""

    def __init__(self, dataset: datasets.IterableDataset) -> None:
        self.dataset = dataset

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.dataset)

    def __getitem__(self, column: str) -> Iterable[Any]:
        return _Column(self.dataset, column)


class _Column:
    def __init__(self, dataset: datasets.IterableDataset, column: str) -> None:
        self.dataset, self.column = dataset, column

    def __iter__(self) -> Iterator[Any]:
        return (record[self.column] for record in self.dataset)


class StreamingBatches(IterableDataset):
    """Length-bucketed batches of a streamed, encoded training split.

    Args:
        records: the raw training records, as an ``IterableDataset``.
        encode: the task's batched encoder (``Dataset.map`` function).
        keep: a predicate on encoded examples (e.g. a length limit), or None.
        kept: one flag per example of a pass, 1 where ``keep`` accepts it
            (``count_kept``); streams are topped up to the longest one's count.
        length_of: an encoded example's bucketing length.
        collate: turns a list of encoded examples into a batch.
        batch_size, pool_factor, shuffle_buffer, seed: as for the map-style sampler;
            ``shuffle_buffer`` examples are shuffled before pooling.
        num_replicas, rank, num_workers: this process's place in the data-parallel
            world and its DataLoader's worker count.
    """

    def __init__(
        self,
        records: datasets.IterableDataset,
        encode: Callable[[dict[str, list[Any]]], dict[str, list[Any]]],
        keep: Callable[[dict[str, Any]], bool] | None,
        kept: bytearray,
        length_of: Callable[[dict[str, Any]], int],
        collate: Callable[[list[dict[str, Any]]], Any],
        batch_size: int,
        pool_factor: int,
        shuffle_buffer: int,
        seed: int,
        num_replicas: int,
        rank: int,
        num_workers: int,
    ) -> None:
        if records.n_shards != 1:
            raise ValueError("streaming deals examples round-robin and needs a one-shard source")
        if not any(kept):
            raise ValueError("the streamed training split holds no examples")
        self.records = records
        self.encode, self.keep = encode, keep
        self.length_of = length_of
        self.collate = collate
        self.batch_size, self.pool_factor = batch_size, pool_factor
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.num_workers = max(num_workers, 1)
        self.epoch = 0
        shards = num_replicas * self.num_workers
        #: the longest stream's kept examples; every stream is topped up to this.
        self.examples_per_stream = max(sum(kept[s::shards]) for s in range(shards))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches this rank takes in an epoch (all workers together)."""
        return self.num_workers * math.ceil(self.examples_per_stream / self.batch_size)

    def _stream(self, worker: int) -> Iterator[dict[str, Any]]:
        """This rank-and-worker's encoded examples, shuffled, topped up to length."""
        shards = self.num_replicas * self.num_workers
        mine = split_dataset_by_node(self.records, self.rank * self.num_workers + worker, shards)
        encoded = _encoded(mine, self.encode)
        if self.keep is not None:
            encoded = encoded.filter(self.keep)
        encoded = encoded.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
        encoded.set_epoch(self.epoch)
        first: list[dict[str, Any]] = []  # kept to top up a short stream
        count = 0
        for example in encoded:
            if count < self.batch_size:
                first.append(example)
            count += 1
            yield example
        if count == 0:
            raise ValueError(
                f"rank {self.rank}, worker {worker}: no streamed training examples; use "
                f"fewer ranks or workers than examples"
            )
        for i in range(self.examples_per_stream - count):
            yield first[i % len(first)]

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        gen = random.Random(self.seed * 1_000_003 + self.epoch * 1_009 + self.rank * 101 + worker)
        pool_size = self.batch_size * self.pool_factor
        stream = self._stream(worker)
        while pool := list(itertools.islice(stream, pool_size)):
            batches = length_sorted_batches(pool, self.length_of, self.batch_size)
            gen.shuffle(batches)
            for batch in batches:
                yield self.collate(batch)


def count_kept(
    records: datasets.IterableDataset,
    encode: Callable[[dict[str, list[Any]]], dict[str, list[Any]]],
    keep: Callable[[dict[str, Any]], bool] | None,
) -> bytearray:
    """One flag per example of a streamed pass: 1 where ``keep`` accepts it (one byte
    an example, the only per-example state that streaming holds)."""
    if keep is None:
        return bytearray(b"\x01" * sum(1 for _ in records))
    return bytearray(1 if keep(e) else 0 for e in _encoded(records, encode))


def _encoded(
    records: datasets.IterableDataset,
    encode: Callable[[dict[str, list[Any]]], dict[str, list[Any]]],
) -> datasets.IterableDataset:
    """The records encoded lazily, with only the encoder's columns."""
    raw_columns = list(next(iter(records), {}))  # a generator's columns are known on reading
    return records.map(encode, batched=True, remove_columns=raw_columns)


class StreamingDataLoader(MidEpochState, DataLoader):
    """The DataLoader of ``StreamingBatches``: one batch per item, the epoch taken
    from the trainer when an epoch's first batch is asked for (Lightning's
    ``set_epoch`` does not reach an iterable dataset), and the mid-epoch state of
    ``ResumableDataLoader``: resuming reads the stream again and drops the batches
    already taken (a stream cannot be entered in its middle).
    """

    dataset: StreamingBatches

    def __init__(
        self, dataset: StreamingBatches, epoch_of: Callable[[], int], num_workers: int = 0
    ) -> None:
        super().__init__(dataset, batch_size=None, num_workers=num_workers)
        self.epoch_of = epoch_of

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch_of()
        self.dataset.set_epoch(epoch)  # before the workers take their copies
        skip = self._begin_epoch(epoch)
        for taken, batch in enumerate(super().__iter__()):
            if taken >= skip:
                self._delivered += 1
                yield batch
