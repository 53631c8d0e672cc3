"""Translation data: the codec (SentencePiece models), batches and the DataModule."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch

from seqnlp.data.base import SeqDataModule
from seqnlp.data.batching import example_ids_of, pad_2d, pad_with_lengths
from seqnlp.data.catalog import CATALOG
from seqnlp.data.codecs import TranslationCodec
from seqnlp.data.parallel_readers import ParallelFormat, language_files, read_parallel
from seqnlp.data.sources import Source, checksummed, resolve_named, sha256sum
from seqnlp.text import TextNormalizer

log = logging.getLogger(__name__)


@dataclass
class TranslationBatch:
    """Padded sentence pairs.

    src_ids: (batch, src) ending in ``</s>``; src_mask: (batch, src) bool;
    src_lengths: (batch,); tgt_in: (batch, tgt) ``<s>`` + target, tgt_out: (batch,
    tgt) target + ``</s>``, tgt_mask: (batch, tgt) bool (all None without targets);
    example_ids: (batch,) positions in the split, or None.
    """

    src_ids: torch.Tensor
    src_mask: torch.Tensor
    src_lengths: torch.Tensor
    tgt_in: torch.Tensor | None = None
    tgt_out: torch.Tensor | None = None
    tgt_mask: torch.Tensor | None = None
    example_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.src_ids.size(0)


def encode_translation(
    batch: dict[str, list[Any]], codec: TranslationCodec
) -> dict[str, list[Any]]:
    """``Dataset.map`` function (batched): text pairs to ids."""
    out: dict[str, list[Any]] = {"source_ids": [codec.encode_source(t) for t in batch["source"]]}
    if "target" in batch:
        out["target_ids"] = [codec.encode_target(t) for t in batch["target"]]
    return out


def collate_translation(examples: Sequence[dict[str, Any]], bos: int, eos: int) -> TranslationBatch:
    src, src_lengths, src_mask = pad_with_lengths([e["source_ids"] for e in examples])
    ids = example_ids_of(examples)
    if "target_ids" not in examples[0]:
        return TranslationBatch(src, src_mask, src_lengths, example_ids=ids)
    tgt_in, _, tgt_mask = pad_with_lengths([[bos, *e["target_ids"]] for e in examples])
    tgt_out = pad_2d([[*e["target_ids"], eos] for e in examples])
    return TranslationBatch(src, src_mask, src_lengths, tgt_in, tgt_out, tgt_mask, ids)


def resolve_parallel(
    source: Source, src_lang: str | None, tgt_lang: str | None, fmt: ParallelFormat = "auto",
    checksum: bool = True,
) -> tuple[str, str]:  # fmt: skip
    """The path that ``read_parallel`` reads for a file or named source, and the SHA-256
    that keys its cache ("" without ``checksum``).

    A named dataset's split is its two language files, verified against the catalog
    and read through their common prefix; a prefix whose line-aligned language files
    exist is read as those (keyed by both); anything else is one file (TSV, JSONL).
    """
    if source.kind == "named":
        paths, digests = [], []
        for lang in (src_lang, tgt_lang):
            key = f"{source.split}.{lang}"
            if key not in CATALOG[source.name].splits:
                raise ValueError(f"named dataset {source.name!r} has no {lang!r} side")
            paths.append(resolve_named(source.name, key))
            digests.append(CATALOG[source.name].splits[key].sha256)
        return str(paths[0].with_suffix("")), "+".join(digests)
    if src_lang and tgt_lang and fmt in ("auto", "files"):
        files = language_files(source.spec, src_lang, tgt_lang)
        if all(f.is_file() for f in files):
            return source.spec, "+".join(sha256sum(f) for f in files) if checksum else ""
    return checksummed(source.spec) if checksum else (source.spec, "")


def _within_length(example: dict[str, Any], limit: int) -> bool:
    """Whether a pair fits ``max_train_length`` pieces a side (the source's </s> aside)."""
    return len(example["source_ids"]) <= limit + 1 and len(example["target_ids"]) <= limit


class TranslationDataModule(SeqDataModule):
    """Parallel text with SentencePiece models trained on the training split.

    Args:
        dataset: a named dataset (``multi30k``); or null and ``train`` /
            ``validation`` / ``test`` sources: a file prefix whose ``.{src_lang}`` and
            ``.{tgt_lang}`` files are line-aligned, a TSV (source, target) or JSONL
            file, ``NAME:SPLIT``, or ``hf:REPO[:CONFIG]:SPLIT``.
        src_lang, tgt_lang: the translation direction (file suffixes; keys of a hub
            dataset's ``translation`` column).
        format: ``files``, ``tsv``, ``jsonl`` or ``auto``.
        source_field, target_field: JSONL field names (and hub columns when the hub
            dataset has no ``translation`` column).
        joint_vocab: one SentencePiece model for both languages, or one each.
        target_pieces: with a joint model, ``used``: the target side (decoder
            embedding and output layer) keeps only the pieces the training targets
            use, as JoeyNMT does; ``all``: every piece of the joint model.
        vocab_size, sp_model_type, character_coverage: SentencePiece settings.
        max_train_length: drop training pairs with more source or target pieces
            than this (the count is logged); null keeps all.
        encoding: the text encoding of the files (default UTF-8).
        max_tokens: a budget of padded source + target tokens per training batch
            (``batch_size`` stays the most pairs in one batch).
    """

    length_column = "source_ids"

    def __init__(
        self,
        dataset: str | None = None,
        train: str | None = None,
        validation: str | None = None,
        test: str | None = None,
        src_lang: str = "de",
        tgt_lang: str = "en",
        format: ParallelFormat = "auto",
        source_field: str = "source",
        target_field: str = "target",
        joint_vocab: bool = True,
        target_pieces: Literal["used", "all"] = "used",
        vocab_size: int = 8000,
        sp_model_type: Literal["unigram", "bpe"] = "unigram",
        character_coverage: float = 1.0,
        max_train_length: int | None = None,
        encoding: str = "utf-8",
        max_tokens: int | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 128,
        pool_factor: int = 1000,
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | None = None,
        streaming: bool = False,
        shuffle_buffer: int = 10_000,
    ) -> None:
        super().__init__(
            dataset, train, validation, test, batch_size, eval_batch_size, pool_factor,
            num_workers, seed, cache_dir, streaming, shuffle_buffer,
        )  # fmt: skip
        self.save_hyperparameters()
        self.max_tokens = max_tokens
        self._length_filtered = False

    def file_reader(self) -> Callable[[str], list[dict[str, Any]]]:
        h = self.hparams
        return partial(
            read_parallel, src_lang=h.src_lang, tgt_lang=h.tgt_lang, fmt=h.format,
            source_field=h.source_field, target_field=h.target_field, encoding=h.encoding,
        )  # fmt: skip

    def resolve(self, source: Source) -> tuple[str, str]:
        """A parallel source spans two files: read the prefix, key the cache by both."""
        h = self.hparams
        return resolve_parallel(source, h.src_lang, h.tgt_lang, h.format)

    def from_hub(self, hub: Any) -> list[dict[str, Any]]:
        h = self.hparams
        if "translation" in hub.column_names:
            return [{"source": r[h.src_lang], "target": r[h.tgt_lang]} for r in hub["translation"]]
        return [{"source": r[h.source_field], "target": r[h.target_field]} for r in hub]

    def fit_codec(self, train: Any) -> TranslationCodec:
        h = self.hparams
        codec = TranslationCodec.fit(
            train["source"], train["target"], h.joint_vocab, h.vocab_size, h.sp_model_type,
            h.character_coverage, self.sentencepiece_sample, h.target_pieces == "used",
        )  # fmt: skip
        # Only the characters are normalised (the sources are raw text for SentencePiece):
        # Unicode NFC, and quotes and case as the training sources write them.
        normalizer = TextNormalizer.fit(w for text in train["source"] for w in text.split())
        codec.source_normalizer = TextNormalizer(
            lowercase=normalizer.lowercase, straight_quotes=normalizer.straight_quotes
        )
        log.info("sentencepiece: %s, %d / %d pieces", "joint" if h.joint_vocab else "separate",
                 len(codec.source), len(codec.target))  # fmt: skip
        return codec

    def encoder(self) -> Callable[[dict[str, list[Any]]], dict[str, list[Any]]]:
        return partial(encode_translation, codec=self.codec)

    def train_filter(self) -> Callable[[dict[str, Any]], bool] | None:
        limit = self.hparams.max_train_length
        return None if limit is None else partial(_within_length, limit=limit)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        keep = self.train_filter()
        if keep is None or "train" not in self.datasets or self._length_filtered:
            return
        train = self.datasets["train"]
        kept = train.filter(keep, desc="dropping long training pairs")
        log.info("max_train_length %d: dropped %d of %d training pairs",
                 self.hparams.max_train_length, len(train) - len(kept), len(train))  # fmt: skip
        self.datasets["train"] = kept
        self._length_filtered = True

    def example_length(self, example: dict[str, Any]) -> int:
        return len(example["source_ids"]) + len(example["target_ids"]) + 1

    def example_lengths(self, split: str) -> list[int]:
        """Source + target pieces: batches are bucketed (and budgeted) on both sides."""
        data = self.datasets[split]
        if "target_ids" not in data.column_names:
            return super().example_lengths(split)
        return [
            len(s) + len(t) + 1 for s, t in zip(data["source_ids"], data["target_ids"], strict=True)
        ]

    def collate(self, examples: Sequence[dict[str, Any]]) -> TranslationBatch:
        target = self.codec.target
        return collate_translation(examples, target.bos_id, target.eos_id)
