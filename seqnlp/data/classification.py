"""Text-classification data: the codec (tokenizer and labels), batches, the DataModule."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch

from seqnlp.data.base import SeqDataModule
from seqnlp.data.batching import example_ids_of, pad_3d, pad_with_lengths
from seqnlp.data.classification_readers import TextFormat, read_labelled_text
from seqnlp.data.codecs import ClassificationCodec
from seqnlp.data.vectors import ExtendVocab, VectorsFormat, fit_vectors
from seqnlp.text import PretokenizerKind, RawText, TextNormalizer, whole_tokens
from seqnlp.tokenization import (
    SentencePieceTokenizer,
    Tokenizer,
    Vocab,
    WordTokenizer,
)

log = logging.getLogger(__name__)


@dataclass
class ClassificationBatch:
    """token_ids: (batch, time); mask: (batch, time) bool; lengths: (batch,);
    labels: (batch,) or None; example_ids: (batch,) positions in the split, or None;
    char_ids: (batch, time, chars) each token's character ids (0: padding) where the
    codec has characters, else None."""

    token_ids: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor | None = None
    example_ids: torch.Tensor | None = None
    char_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.token_ids.size(0)


class _Split:
    """Tokenized texts as token lists (re-iterable, lazy)."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.texts = texts

    def __iter__(self) -> Iterator[list[str]]:
        return (text.split() for text in self.texts)


class _Joined:
    """Raw texts as the pretokenizer and normaliser make them (re-iterable, lazy)."""

    def __init__(self, texts: Iterable[str], raw: RawText) -> None:
        self.texts, self.raw = texts, raw

    def __iter__(self) -> Iterator[str]:
        return (" ".join(self.raw.tokenize(text)[0]) for text in self.texts)


def _pieces(codec: ClassificationCodec, text: str) -> list[str]:
    """The vocabulary entries ``codec.encode_text`` looks ``text`` up as."""
    if not codec.pretokenized and codec.raw is not None:
        text = " ".join(codec.raw.tokenize(text)[0])
    assert isinstance(codec.tokenizer, WordTokenizer)
    return codec.tokenizer.pieces(text)


def encode_classification(
    batch: dict[str, list[Any]], codec: ClassificationCodec
) -> dict[str, list[Any]]:
    """``Dataset.map`` function (batched): text and label to ids (and each token's
    character ids, where the codec has characters)."""
    examples = [codec.encode_example(codec.text_form(t)) for t in batch["text"]]
    out: dict[str, list[Any]] = {"token_ids": [e["token_ids"] for e in examples]}
    if codec.chars is not None:
        out["char_ids"] = [e["char_ids"] for e in examples]
    if "label" in batch:
        out["label_id"] = [codec.labels.index(label) for label in batch["label"]]
    return out


def collate_classification(examples: Sequence[dict[str, Any]]) -> ClassificationBatch:
    """Pad encoded examples (``token_ids``; ``label_id``, ``char_ids``, ``example_id``
    where they have them)."""
    token_ids, lengths, mask = pad_with_lengths([e["token_ids"] for e in examples])
    labels = (
        torch.tensor([e["label_id"] for e in examples], dtype=torch.long)
        if "label_id" in examples[0]
        else None
    )
    chars = pad_3d([e["char_ids"] for e in examples]) if "char_ids" in examples[0] else None
    return ClassificationBatch(token_ids, mask, lengths, labels, example_ids_of(examples), chars)


class ClassificationDataModule(SeqDataModule):
    """Labelled text with a tokenizer and label set fit on the training split.

    Args:
        dataset: a named dataset (``sst2``, ``sample_sentiment``); or null and
            ``train`` / ``validation`` / ``test`` sources (file, ``NAME:SPLIT``,
            ``hf:REPO[:CONFIG]:SPLIT``).
        format: ``labeltext`` ("label text" lines), ``tsv``, ``csv``, ``jsonl`` or
            ``auto`` (by extension: .tsv, .csv, .jsonl, else labeltext).
        label_column, text_column: column names (tsv/csv with a header row, jsonl
            fields) or indices (negative from the end).
        header: tsv/csv files start with a header row (default: when a column is named).
        tokenizer: ``word`` (whitespace, vocabulary of training words) or
            ``sentencepiece`` (trained on the training text).
        vocab_size, sp_model_type: SentencePiece vocabulary size and ``unigram`` / ``bpe``.
        min_word_freq, max_vocab_size: word-vocabulary limits.
        lowercase: lowercase text before tokenising.
        encoding: the text encoding of the files (default UTF-8).
        pretokenized: the texts are tokenized (and normalised) already, as SST-2's
            are; default: what the named dataset says, else false (raw text, split by
            the pretokenizer for training too).
        pretokenizer, language: how the model splits raw text: ``spacy`` (spaCy's
            rule-based tokenizer for ``language``; default the named dataset's
            language, else ``xx``) or ``whitespace``. What the training tokens imply
            (lowercase, PTB brackets and quotes, split clitics) is learned and applied
            to raw text in the same way.
        hub_text_field, hub_label_field: column names of hub datasets.
        vectors, vectors_format, max_vectors, extend_vocab: pretrained word vectors,
            as for ``TaggingDataModule`` (README "Pretrained word vectors"): words with
            a vector that training lacks get rows of their own (``word`` tokenizer;
            SentencePiece pieces take the vectors of their own form, and no row is
            added).
        chars: also each token's characters (``codec.chars``, fit on the training
            tokens; ``word`` tokenizer only), which ``model.char_lms`` reads.
    """

    length_column = "token_ids"

    def __init__(
        self,
        dataset: str | None = None,
        train: str | None = None,
        validation: str | None = None,
        test: str | None = None,
        format: TextFormat = "auto",
        label_column: int | str = 0,
        text_column: int | str = -1,
        header: bool | None = None,
        tokenizer: Literal["word", "sentencepiece"] = "word",
        vocab_size: int = 8000,
        sp_model_type: Literal["unigram", "bpe"] = "unigram",
        min_word_freq: int = 1,
        max_vocab_size: int | None = None,
        lowercase: bool = False,
        encoding: str = "utf-8",
        pretokenized: bool | None = None,
        pretokenizer: PretokenizerKind = "spacy",
        language: str | None = None,
        hub_text_field: str = "sentence",
        hub_label_field: str = "label",
        vectors: str | None = None,
        vectors_format: VectorsFormat = "auto",
        max_vectors: int | None = None,
        extend_vocab: ExtendVocab = "data",
        chars: bool = False,
        batch_size: int = 32,
        eval_batch_size: int = 256,
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
        if chars and tokenizer != "word":
            raise ValueError(f"data.chars gives each word its characters: it needs data.tokenizer "
                             f"word, not {tokenizer}")  # fmt: skip
        self.save_hyperparameters()

    def file_reader(self) -> Callable[[str], list[dict[str, Any]]]:
        h = self.hparams
        return partial(
            read_labelled_text, fmt=h.format, label_column=h.label_column,
            text_column=h.text_column, header=h.header, encoding=h.encoding,
        )  # fmt: skip

    def from_hub(self, hub: Any) -> list[dict[str, Any]]:
        h = self.hparams
        feature = hub.features[h.hub_label_field]
        names = getattr(feature, "names", None)
        return [
            {"text": row[h.hub_text_field],
             "label": names[row[h.hub_label_field]] if names else str(row[h.hub_label_field])}
            for row in hub
        ]  # fmt: skip

    def is_pretokenized(self) -> bool:
        """Whether the training texts are tokenized already (``data.pretokenized``)."""
        if self.hparams.pretokenized is not None:
            return bool(self.hparams.pretokenized)
        entry = self.catalog_entry()
        return bool(entry and entry.pretokenized)

    def fit_codec(self, train: Any) -> ClassificationCodec:
        h = self.hparams
        pretokenized = self.is_pretokenized()
        raw = RawText(self.pretokenizer())
        if pretokenized:
            raw.normalizer = TextNormalizer.fit(w for text in train["text"] for w in text.split())
            raw.whole = frozenset(whole_tokens(_Split(train["text"]), raw.pretokenizer))
            texts: Any = train["text"]
        else:  # raw training text goes through the pretokenizer, as raw input will
            split = raw.pretokenizer.spans
            raw.normalizer = TextNormalizer.fit(
                text[s:e] for text in train["text"] for s, e in split(text)
            )
            texts = _Joined(train["text"], raw)
        tokenizer: Tokenizer
        if h.tokenizer == "sentencepiece":
            tokenizer = SentencePieceTokenizer.fit(
                texts, h.vocab_size, h.sp_model_type, h.lowercase,
                max_sentences=self.sentencepiece_sample,
            )  # fmt: skip
        else:
            tokenizer = WordTokenizer.fit(texts, h.min_word_freq, h.max_vocab_size, h.lowercase)
        labels = Vocab(sorted(set(train["label"])), pad=None, unk=None)
        chars = ClassificationCodec.fit_chars(texts) if h.chars else None
        log.info(
            "tokenizer: %s, %d ids; labels %s; raw text: %s%s",
            h.tokenizer,
            len(tokenizer),
            labels.itos,
            raw.describe(),
            "" if pretokenized else " (training text too)",
        )
        codec = ClassificationCodec(tokenizer, labels, raw, pretokenized, chars)
        return self._with_vectors(codec, train)

    def _with_vectors(self, codec: ClassificationCodec, train: Any) -> ClassificationCodec:
        """``codec`` with its pretrained vectors (``data.vectors``, if set), a word
        tokenizer's vocabulary extended with the words of every split that have one."""
        h = self.hparams
        codec.training_words = len(codec.tokenizer)
        if not h.vectors:
            return codec
        tokenizer = codec.tokenizer
        if isinstance(tokenizer, WordTokenizer):
            words = (w for split in self.all_splits(train) for text in split["text"]
                     for w in _pieces(codec, text))  # fmt: skip
            lower = str.lower if tokenizer.lowercase else None
            vocab, codec.vectors = fit_vectors(
                h.vectors, tokenizer.vocab, words, lower, h.vectors_format, h.max_vectors,
                h.extend_vocab,
            )  # fmt: skip
            codec.tokenizer = WordTokenizer(vocab, tokenizer.lowercase)
        else:  # pieces: the vocabulary is the SentencePiece model's own
            _, codec.vectors = fit_vectors(
                h.vectors, tokenizer.as_vocab(), (), None, h.vectors_format, h.max_vectors,
                "none",
            )  # fmt: skip
        return codec

    def check_split(self, split: str, dataset: Any) -> None:
        unseen = sorted(set(dataset["label"]) - set(self.codec.labels.itos))
        if unseen:
            raise ValueError(
                f"{self.source_of(split)}: labels {unseen} never occur in the training data "
                f"(known: {self.codec.labels.itos}); a model trained on it cannot predict them"
            )

    def encoder(self) -> Callable[[dict[str, list[Any]]], dict[str, list[Any]]]:
        return partial(encode_classification, codec=self.codec)

    def collate(self, examples: Sequence[dict[str, Any]]) -> ClassificationBatch:
        return collate_classification(examples)
