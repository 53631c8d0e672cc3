"""The DataModule machinery that every task shares.

A task's DataModule says how to read one file (``file_reader``), how to turn a
hub dataset into canonical records (``from_hub``), how to fit its codec (its
tokenizers, vocabularies and label set: ``codec``), how to encode records to ids
(``encoder``) and how to pad a batch
(``collate``). This base resolves the data sources, caches raw and encoded splits
as Hugging Face datasets, and builds length-bucketed, rank-aware loaders.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import datasets
import pytorch_lightning as pl
import torch
from datasets.exceptions import DatasetGenerationError
from torch.utils.data import DataLoader

from seqnlp.data.batching import BucketBatchSampler
from seqnlp.data.catalog import CATALOG, NamedDataset
from seqnlp.data.resumable import ResumableDataLoader
from seqnlp.data.sources import (
    Source,
    checksummed,
    load_hub,
    parse_source,
    resolve_named,
)
from seqnlp.data.streaming import (
    RecordStream,
    StreamingBatches,
    StreamingDataLoader,
    count_kept,
)
from seqnlp.text import Pretokenizer

log = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")
_STAGE_SPLITS = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",)}


def _generate(reader: Callable[[str], list[dict[str, Any]]], path: str, sha256: str):
    """Generator for ``Dataset.from_generator``; ``sha256`` keys the cache to the file's content."""
    del sha256
    yield from reader(path)


def _with_example_ids(
    batch: dict[str, list[Any]], indices: list[int], encode: Callable[..., dict[str, list[Any]]]
) -> dict[str, list[Any]]:
    """Encode a batch and keep each example's position in its split (``example_id``), by
    which gathered evaluation outputs are de-duplicated under data parallelism."""
    return {**encode(batch), "example_id": list(indices)}


class SeqDataModule(pl.LightningDataModule):
    """Shared base of the task DataModules (see the subclasses for their arguments).

    Arguments every task takes:
        batch_size, eval_batch_size: examples per training / evaluation batch.
        pool_factor: training batches are cut from length-sorted pools of
            ``pool_factor * batch_size`` shuffled examples (default 1000: for most
            corpora one pool, a global sort with ties broken at random, then the
            batch order shuffled; padding waste on CoNLL-2002 Spanish at batch 16 is
            1.4%, against 12.6% with pools of 50 batches).
        num_workers: DataLoader worker processes.
        seed: base of the shuffling seeds (epoch ``e`` uses ``seed + e``).
        cache_dir: where Hugging Face ``datasets`` caches read and encoded splits.
        streaming: read the training split lazily every epoch instead of caching it
            (for corpora larger than memory; see ``seqnlp/data/streaming.py``).
            Validation and test splits are still read whole.
        shuffle_buffer: streaming: examples shuffled together before pooling.
    """

    length_column: str = ""
    #: a token budget per training batch (None: ``batch_size`` examples).
    max_tokens: int | None = None
    #: streaming: SentencePiece is trained on a uniform sample of this many lines.
    streaming_sentencepiece_sample: int = 1_000_000

    @property
    def sentencepiece_sample(self) -> int | None:
        """Lines SentencePiece trains on (None: all; a sample when streaming)."""
        return self.streaming_sentencepiece_sample if self.streaming else None

    def __init__(
        self,
        dataset: str | None,
        train: str | None,
        validation: str | None,
        test: str | None,
        batch_size: int,
        eval_batch_size: int,
        pool_factor: int,
        num_workers: int,
        seed: int,
        cache_dir: str | None,
        streaming: bool = False,
        shuffle_buffer: int = 10_000,
    ) -> None:
        super().__init__()
        given = {
            k: v for k, v in (("train", train), ("validation", validation), ("test", test)) if v
        }
        if dataset is not None and given:
            raise ValueError(
                f"data.dataset={dataset!r} and data.{'/'.join(given)} are both set: to use your "
                f"own files, also set --data.dataset null"
            )
        if dataset is None and train is None:
            raise ValueError("no training data: set data.dataset or data.train")
        self.sources: dict[str, str | None] = (
            {s: f"{dataset}:{s}" for s in SPLITS}
            if dataset
            else {"train": train, "validation": validation, "test": test}
        )
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.pool_factor = pool_factor
        self.num_workers = num_workers
        self.seed = seed
        self.cache_dir = cache_dir
        self.streaming = streaming
        self.shuffle_buffer = shuffle_buffer
        self._train_kept: bytearray | None = None  # streaming: one flag per example
        self.datasets: dict[str, datasets.Dataset] = {}
        self._raw: dict[str, datasets.Dataset] = {}
        self._codec: Any = None
        self._checked: set[str] = set()  # splits whose labels check_split has seen

    # -- what a task provides -------------------------------------------------
    def file_reader(self) -> Callable[[str], list[dict[str, Any]]]:
        raise NotImplementedError

    def from_hub(self, hub: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    def encoder(self) -> Callable[[dict[str, list[Any]]], dict[str, list[Any]]]:
        raise NotImplementedError

    def collate(self, examples: Sequence[dict[str, Any]]) -> Any:
        raise NotImplementedError

    def check_split(self, split: str, dataset: datasets.Dataset) -> None:
        """Raise ValueError when a split holds labels that training never saw."""

    def fit_codec(self, train: datasets.Dataset | RecordStream) -> Any:
        """The task's codec (tokenizers, vocabularies, label set) fit on the training records
        (a ``RecordStream`` when streaming: iterate it, or a column of it, in one pass)."""
        raise NotImplementedError

    def train_filter(self) -> Callable[[dict[str, Any]], bool] | None:
        """A predicate on encoded training examples (those it rejects are dropped)."""
        return None

    @property
    def codec(self) -> Any:
        """The codec, fit on the training split on first use and kept."""
        if self._codec is None:
            train = RecordStream(self.stream("train")) if self.streaming else self.raw("train")
            self._codec = self.fit_codec(train)
        return self._codec

    # -- shared machinery -----------------------------------------------------
    def all_splits(self, train: Any) -> Iterator[Any]:
        """The records of every split this DataModule knows: ``train`` (as ``fit_codec``
        has it), then validation and test when set; pretrained vectors give their words
        rows of their own (``data.vectors``)."""
        yield train
        for split in ("validation", "test"):
            if self.sources.get(split):
                yield self.raw(split)

    def catalog_entry(self) -> NamedDataset | None:
        """The named dataset the training split comes from, if it is one."""
        source = parse_source(self.sources["train"] or "")
        return CATALOG[source.name] if source.kind == "named" else None

    def pretokenizer(self) -> Pretokenizer:
        """How a model trained on this data splits raw text: ``data.pretokenizer`` in
        ``data.language`` (default: the named dataset's language, else ``xx``)."""
        h = self.hparams
        entry = self.catalog_entry()
        language = h.get("language") or (entry.language if entry else "xx")
        return Pretokenizer(h.get("pretokenizer", "spacy"), language)

    def source_of(self, split: str) -> str:
        source = self.sources.get(split)
        if not source:
            raise ValueError(f"no {split} data: set data.{split} (or data.dataset)")
        return source

    def raw(self, split: str) -> datasets.Dataset:
        """The split's records with canonical columns, read once and cached on disk."""
        if split not in self._raw:
            source = parse_source(self.source_of(split))
            if source.kind == "hub":
                self._raw[split] = datasets.Dataset.from_list(self.from_hub(load_hub(source)))
            else:
                self._raw[split] = self._read_cached(*self.resolve(source))
            log.info("%s: %d examples from %s", split, len(self._raw[split]), source.spec)
        return self._raw[split]

    def stream(self, split: str) -> datasets.IterableDataset:
        """The split's records read lazily from their file, never held whole."""
        source = parse_source(self.source_of(split))
        if source.kind == "hub":
            raise ValueError(
                f"{source.spec}: data.streaming reads files and named datasets; save the hub "
                f"split to a file first"
            )
        path, checksum = self.resolve(source)
        return datasets.IterableDataset.from_generator(
            _generate, gen_kwargs={"reader": self.file_reader(), "path": path, "sha256": checksum}
        )

    def resolve(self, source: Source) -> tuple[str, str]:
        """The path that ``file_reader()`` reads for a file or named source, and the
        SHA-256 that keys its cache (a task whose sources span several files
        overrides this)."""
        if source.kind == "named":
            if CATALOG[source.name].task == "language_model":
                raise ValueError(f"{source.spec} is raw text for language models, without "
                                 f"labels: give a labelled file or dataset")  # fmt: skip
            # resolve_named has verified the file against the catalog's digest.
            path = resolve_named(source.name, source.split)
            return str(path), CATALOG[source.name].splits[source.split].sha256
        return checksummed(source.spec)

    def _read_cached(self, path: str, checksum: str) -> datasets.Dataset:
        """Read ``path`` through ``Dataset.from_generator``, cached under ``checksum``."""
        reader = self.file_reader()
        try:
            return datasets.Dataset.from_generator(
                _generate,
                gen_kwargs={"reader": reader, "path": path, "sha256": checksum},
                cache_dir=self.cache_dir,
            )
        except DatasetGenerationError as err:
            # Bad input raises the reader's ValueError (file, line, expectation), not the
            # builder's wrapper.
            if isinstance(err.__cause__, ValueError):
                raise err.__cause__ from None
            raise

    def setup(self, stage: str) -> None:
        encode = self.encoder()
        if stage == "fit" and self.sources.get("test") and "test" not in self._checked:
            # Test data the model could not be scored on (an unseen label) fails now,
            # not after hours of training.
            self.check_split("test", self.raw("test"))
            self._checked.add("test")
        for split in _STAGE_SPLITS.get(stage, ()):
            if split == "validation" and not self.sources.get(split):
                continue
            if split == "train" and self.streaming:
                if self._train_kept is None:
                    self._train_kept = count_kept(self.stream("train"), encode, self.train_filter())
                    log.info("streaming train: %d examples", sum(self._train_kept))
                continue
            if split in self.datasets:
                continue
            raw = self.raw(split)
            if split not in self._checked:
                self.check_split(split, raw)
                self._checked.add(split)
            self.datasets[split] = raw.map(
                partial(_with_example_ids, encode=encode),
                batched=True,
                with_indices=True,
                remove_columns=raw.column_names,
                desc=f"encoding {split}",
            )

    def example_length(self, example: dict[str, Any]) -> int:
        """An encoded example's bucketing length (streaming; ``example_lengths`` in bulk)."""
        return len(example[self.length_column])

    def example_lengths(self, split: str) -> list[int]:
        """The length by which examples are bucketed (tokens of ``length_column``)."""
        return [len(x) for x in self.datasets[split][self.length_column]]

    def _rank_and_world(self) -> tuple[int, int]:
        """This process's rank in the trainer's data-parallel world and the world's size
        (0 and 1 alone), in the order of ``seqnlp.distributed.rank_and_world``."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer else (0, 1)

    def _sampler(self, split: str, batch_size: int, shuffle: bool) -> BucketBatchSampler:
        rank, world = self._rank_and_world()
        lengths = self.example_lengths(split)
        return BucketBatchSampler(
            lengths,
            batch_size,
            shuffle=shuffle,
            pool_factor=self.pool_factor,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            max_tokens=self.max_tokens if shuffle else None,
        )

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        # The training loader checkpoints its place in the epoch. Every loader draws its
        # workers' base seed from a generator of its own, not the global one, so that
        # starting an iterator does not move the random stream that dropout uses (a
        # resumed run then draws the masks an uninterrupted one draws).
        loader_class = ResumableDataLoader if shuffle else DataLoader
        return loader_class(
            self.datasets[split],
            batch_sampler=self._sampler(split, batch_size, shuffle),
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        if self.streaming:
            return self._streaming_loader()
        return self._loader("train", self.batch_size, shuffle=True)

    def _streaming_loader(self) -> StreamingDataLoader:
        if self.max_tokens is not None:
            raise ValueError("data.streaming and data.max_tokens do not combine: set batch_size")
        if self._train_kept is None:
            self.setup("fit")
        assert self._train_kept is not None
        rank, world = self._rank_and_world()
        batches = StreamingBatches(
            self.stream("train"), self.encoder(), self.train_filter(), self._train_kept,
            self.example_length, self.collate, self.batch_size, self.pool_factor,
            self.shuffle_buffer, self.seed, world, rank, self.num_workers,
        )  # fmt: skip
        return StreamingDataLoader(batches, self._current_epoch, self.num_workers)

    def _current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def val_dataloader(self) -> DataLoader | list:
        if "validation" not in self.datasets:
            return []
        return self._loader("validation", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)
