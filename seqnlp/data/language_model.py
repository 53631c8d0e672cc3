"""Language-model data: raw text as one stream of token ids, laid out as parallel streams
and cut into segments for truncated back-propagation through time (AWD-LSTM's and
flair's ``batchify``).

The training text (one paragraph per line; ``.txt``, ``.xz`` or ``.gz``) is read twice,
line by line, never whole: one pass fits the codec (``LanguageModelCodec.fit``), one
encodes every paragraph followed by the boundary into a flat file of ids in the cache,
memory-mapped from then on (``seqnlp.data.text_streams``). A stream of ``N`` ids makes
``N - 1`` predictions, dealt to ``S`` rows of ``L`` consecutive ones each
(``StreamLayout``); segment ``i`` is steps ``i * bptt`` to ``(i + 1) * bptt - 1`` of every
row, so that the recurrent state after one segment is where the next one starts.
Training: ``S = batch_size x processes``, rank ``r`` owns rows ``r * batch_size`` to
``(r + 1) * batch_size - 1`` (a contiguous share of the text) and the remainder of
``N - 1`` over ``S`` (fewer than ``S`` ids) is left out. Evaluation: ``S =
eval_batch_size`` for any number of processes, the rows dealt to ranks in contiguous
blocks, the last rows shorter (masked) so that every prediction is made exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from seqnlp.data.base import SeqDataModule
from seqnlp.data.catalog import CATALOG
from seqnlp.data.lm_codec import LanguageModelCodec, LMDirection, LMLevel
from seqnlp.data.resumable import MidEpochState
from seqnlp.data.text_streams import TextSource, encoded_ids, paragraphs, text_corpora

SPLITS = ("train", "validation", "test")


@dataclass
class LanguageModelBatch:
    """One segment of every row: inputs and targets (batch, time) ids, the target one
    step ahead; mask (batch, time) bool, True where a target is real (None: all are);
    ``segment``: its index in the epoch (0: the rows start, from the initial state);
    example_ids (batch,): row x segments + segment, unique in the split (evaluation)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor | None
    segment: int
    example_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.inputs.size(0)


@dataclass(frozen=True)
class StreamLayout:
    """Where each row of each segment reads in a stream of ``tokens`` ids.

    Row ``s`` predicts ids ``s * L + 1`` to ``s * L + L`` from ids ``s * L`` to
    ``s * L + L - 1`` (``L``: ``row_length``). ``cover``: ``L`` is rounded up and the
    last rows end early (masked), so every prediction is made once; otherwise it is
    rounded down and the remainder is dropped.
    """

    tokens: int
    streams: int
    bptt: int
    cover: bool = False

    @property
    def row_length(self) -> int:
        predictions = max(self.tokens - 1, 0)
        if self.cover:
            return math.ceil(predictions / self.streams)
        return predictions // self.streams

    @property
    def segments(self) -> int:
        return math.ceil(self.row_length / self.bptt)

    def positions(self, rows: range, segment: int) -> tuple[np.ndarray, np.ndarray]:
        """Input positions (rows, time) of ``segment`` for ``rows``, and which of them are
        real (rows, time) bool; targets are at the positions plus one."""
        length = self.row_length
        start = segment * self.bptt
        time = min(self.bptt, length - start)
        assert start >= 0 and time > 0, "segment outside the layout"
        row_starts = np.asarray(rows, dtype=np.int64) * length  # (rows,)
        pos = row_starts[:, None] + start + np.arange(time, dtype=np.int64)  # (rows, time)
        real = pos < np.minimum(row_starts + length, self.tokens - 1)[:, None]
        return np.minimum(pos, self.tokens - 2), real


def rank_rows(streams: int, rank: int, world: int) -> range:
    """Rank ``rank``'s contiguous block of ``streams`` rows (blocks differ by at most one)."""
    return range(rank * streams // world, (rank + 1) * streams // world)


class SegmentStream(IterableDataset):
    """The segments of ``rows`` of a layout over ``ids`` (a flat array, memory-mapped),
    from segment ``start`` on, as ``LanguageModelBatch``es."""

    def __init__(self, ids: np.ndarray, layout: StreamLayout, rows: range) -> None:
        self.ids, self.layout, self.rows = ids, layout, rows
        self.start = 0

    def __len__(self) -> int:
        return self.layout.segments

    def batch(self, segment: int) -> LanguageModelBatch:
        pos, real = self.layout.positions(self.rows, segment)
        inputs = torch.from_numpy(self.ids[pos].astype(np.int64))  # (rows, time)
        targets = torch.from_numpy(self.ids[pos + 1].astype(np.int64))  # (rows, time)
        mask = None if real.all() else torch.from_numpy(real)
        rows = torch.tensor(list(self.rows), dtype=torch.long)
        return LanguageModelBatch(inputs, targets, mask, segment,
                                  rows * self.layout.segments + segment)  # fmt: skip

    def __iter__(self) -> Iterator[LanguageModelBatch]:
        return (self.batch(i) for i in range(self.start, len(self)))


class SegmentLoader(MidEpochState, DataLoader):
    """The training loader: segments in order, with the mid-epoch state of
    ``ResumableDataLoader`` (a resumed epoch starts at the first segment not taken)."""

    dataset: SegmentStream

    def __init__(self, dataset: SegmentStream, epoch_of: Callable[[], int]) -> None:
        super().__init__(dataset, batch_size=None)
        self.epoch_of = epoch_of

    def __iter__(self) -> Iterator[Any]:
        self.dataset.start = self._begin_epoch(self.epoch_of())
        for batch in super().__iter__():
            self._delivered += 1
            yield batch


class LanguageModelDataModule(SeqDataModule):
    """Raw text for a language model: one paragraph per line, read as one stream.

    Args:
        dataset: a named corpus: ``sample_charlm`` (shipped, train and validation),
            ``unlabeled_es`` or ``unlabeled_nl`` (under ``$SEQNLP_DATA``, train only:
            carve a validation split with ``holdout_every``); or null and ``train`` /
            ``validation`` / ``test`` sources: text files (``.txt``, ``.xz``, ``.gz``) or
            ``NAME:SPLIT`` of a named corpus.
        holdout_every: hold out every k-th line of the training source (lines k, 2k, ...)
            as the validation split, kept out of training and of the vocabulary; 0: none.
        level: ``char``, ``word`` (white-space words) or ``sentencepiece``.
        direction: ``forward``, or ``backward``: each paragraph is read from its end
            (paragraphs stay in file order, so a file is still read in one pass).
        min_freq, max_vocab_size: characters or words kept in the vocabulary (the
            ``max_vocab_size`` most frequent of those seen ``min_freq`` times).
        lowercase: lowercase the text.
        vocab_size, sp_model_type, sp_sample_lines: SentencePiece's size, model and the
            lines it is trained on (a uniform sample of that many training lines).
        encoding: the files' text encoding.
        batch_size: parallel streams per process in training.
        bptt: steps per training segment (the truncation of back-propagation).
        eval_batch_size: parallel streams of an evaluation split, for all processes.
        eval_bptt: steps per evaluation segment (default ``bptt``).
        cache_dir: where the id files are kept (default: the ``datasets`` cache).
    """

    def __init__(
        self,
        dataset: str | None = None,
        train: str | None = None,
        validation: str | None = None,
        test: str | None = None,
        holdout_every: int = 0,
        level: LMLevel = "char",
        direction: LMDirection = "forward",
        min_freq: int = 1,
        max_vocab_size: int | None = None,
        lowercase: bool = False,
        vocab_size: int = 8000,
        sp_model_type: Literal["unigram", "bpe"] = "unigram",
        sp_sample_lines: int = 200_000,
        encoding: str = "utf-8",
        batch_size: int = 32,
        bptt: int = 250,
        eval_batch_size: int = 16,
        eval_bptt: int | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(dataset, train, validation, test, batch_size, eval_batch_size,
                         pool_factor=1, num_workers=0, seed=0, cache_dir=cache_dir)  # fmt: skip
        self.save_hyperparameters()
        for name, value in (("batch_size", batch_size), ("bptt", bptt),
                            ("eval_batch_size", eval_batch_size),
                            ("eval_bptt", 1 if eval_bptt is None else eval_bptt),
                            ("sp_sample_lines", sp_sample_lines)):  # fmt: skip
            if value < 1:
                raise ValueError(f"data.{name} must be at least 1, got {value}")
        if holdout_every < 0 or holdout_every == 1:
            raise ValueError(f"data.holdout_every must be 0 (none) or at least 2, got "
                             f"{holdout_every}")  # fmt: skip
        if holdout_every and validation:
            raise ValueError("data.holdout_every and data.validation are both set: the "
                             "validation split is one or the other")  # fmt: skip
        if dataset is not None:
            if dataset not in text_corpora():
                raise ValueError(f"data.dataset {dataset!r} is not a named corpus of raw text "
                                 f"({', '.join(text_corpora())})")  # fmt: skip
            self.sources = {s: f"{dataset}:{s}" if s in CATALOG[dataset].splits else None
                            for s in SPLITS}  # fmt: skip
        self.text = {split: TextSource.parse(spec, encoding) if spec else None
                     for split, spec in self.sources.items()}  # fmt: skip
        if holdout_every and dataset and self.text.get("validation") is not None:
            raise ValueError(f"data.holdout_every: {dataset} has a validation split of its own")
        self._ids: dict[str, np.ndarray] = {}

    def _lines(self, split: str, part: Literal["all", "kept", "held"] = "all") -> Iterator[str]:
        """The paragraphs of ``split`` (train: ``kept`` or ``held`` out by holdout_every)."""
        source = self.text.get(split)
        if source is None:
            raise ValueError(f"no {split} text: set data.{split} (or data.dataset)")
        return paragraphs(source, self.hparams.holdout_every, part)

    @property
    def codec(self) -> LanguageModelCodec:
        """The codec, fit on the training paragraphs (held-out lines excluded) once."""
        if self._codec is None:
            h = self.hparams
            self._codec = LanguageModelCodec.fit(
                self._lines("train", "kept"), h.level, h.direction, h.min_freq,
                h.max_vocab_size, h.lowercase, h.vocab_size, h.sp_model_type, h.sp_sample_lines,
            )  # fmt: skip
        return self._codec

    def has_split(self, split: str) -> bool:
        if split == "validation" and self.hparams.holdout_every:
            return True
        return self.text.get(split) is not None

    def setup(self, stage: str) -> None:
        wanted = {"fit": ("train", "validation"), "validate": ("validation",),
                  "test": ("test",)}.get(stage, ())  # fmt: skip
        for split in wanted:
            if split not in self._ids and self.has_split(split):
                self._ids[split] = self._encode(split)

    def _encode(self, split: str) -> np.ndarray:
        held = split == "validation" and self.hparams.holdout_every > 0
        source = self.text["train" if held else split]
        assert source is not None
        part = "held" if held else "kept" if split == "train" else "all"
        ids = encoded_ids(source, self.codec, self.hparams.holdout_every, part, self.cache_dir)
        if len(ids) < 2:
            raise ValueError(f"{source.spec}: the {split} text holds {len(ids)} "
                             f"{self.codec.unit}s; a language model needs at least 2")  # fmt: skip
        return ids

    def split_ids(self, split: str) -> np.ndarray:
        """The split's ids (boundary after each paragraph), encoded by ``setup``."""
        if not self.has_split(split):
            raise ValueError(f"no {split} text: set data.{split} (or data.dataset)")
        if split not in self._ids:
            self.setup({"train": "fit", "validation": "validate", "test": "test"}[split])
        return self._ids[split]

    def train_dataloader(self) -> SegmentLoader:
        rank, world = self._rank_and_world()
        h = self.hparams
        ids = self.split_ids("train")
        layout = StreamLayout(len(ids), h.batch_size * world, h.bptt)
        if layout.row_length < 1:
            raise ValueError(
                f"{self.text['train'].spec}: {len(ids)} {self.codec.unit}s of training text "  # type: ignore[union-attr]
                f"are too few for {layout.streams} streams (data.batch_size {h.batch_size} x "
                f"{world} processes)"
            )
        rows = range(rank * h.batch_size, (rank + 1) * h.batch_size)
        return SegmentLoader(SegmentStream(ids, layout, rows), self._current_epoch)

    def _eval_loader(self, split: str) -> DataLoader:
        rank, world = self._rank_and_world()
        h = self.hparams
        if h.eval_batch_size < world:
            raise ValueError(f"data.eval_batch_size ({h.eval_batch_size}) must be at least the "
                             f"number of processes ({world})")  # fmt: skip
        ids = self.split_ids(split)
        layout = StreamLayout(len(ids), h.eval_batch_size, h.eval_bptt or h.bptt, cover=True)
        stream = SegmentStream(ids, layout, rank_rows(h.eval_batch_size, rank, world))
        return DataLoader(stream, batch_size=None)

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader("validation") if self.has_split("validation") else []

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
