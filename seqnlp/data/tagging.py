"""Sequence-labelling data: the codec (vocabularies), encoding, batches and the DataModule."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch

from seqnlp.data.base import SeqDataModule
from seqnlp.data.batching import example_ids_of, pad_2d, pad_3d, pad_with_lengths
from seqnlp.data.codecs import TaggingCodec, distinct_tokens, unseen_tag
from seqnlp.data.sources import parse_source
from seqnlp.data.tagging_readers import TaggingFormat, read_tagging_file
from seqnlp.data.tagschemes import Scheme, detect_scheme, to_iob2
from seqnlp.data.vectors import ExtendVocab, VectorsFormat, fit_vectors
from seqnlp.text import PretokenizerKind
from seqnlp.tokenization import normalize_word

log = logging.getLogger(__name__)


@dataclass
class TaggingBatch:
    """A padded batch of sentences.

    word_ids: (batch, time); char_ids: (batch, time, chars); mask: (batch, time)
    bool, True on real tokens; lengths: (batch,); tags: (batch, time) or None;
    example_ids: (batch,) positions in the split, or None. With ``char_rows``
    (batch, time) (prediction batches, ``collate_distinct_tokens``), ``char_ids``
    is (words, chars) instead: each distinct token once, row 0 the empty word of
    the padding, and ``char_rows`` the row of each position; ``char_tokens`` then
    names the token of each row after the first.
    """

    word_ids: torch.Tensor
    char_ids: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor
    tags: torch.Tensor | None = None
    example_ids: torch.Tensor | None = None
    char_rows: torch.Tensor | None = None
    char_tokens: list[str] | None = None

    def __len__(self) -> int:
        return self.word_ids.size(0)


def encode_tagging(batch: dict[str, list[Any]], codec: TaggingCodec) -> dict[str, list[Any]]:
    """``Dataset.map`` function (batched): tokens and tags to ids."""
    word_ids, char_ids = [], []
    for tokens in batch["tokens"]:
        w, c = codec.encode_tokens(tokens)
        word_ids.append(w)
        char_ids.append(c)
    out: dict[str, list[Any]] = {"word_ids": word_ids, "char_ids": char_ids}
    if "tags" in batch:
        out["tag_ids"] = [codec.encode_tags(t) for t in batch["tags"]]
    return out


def collate_tagging(examples: Sequence[dict[str, Any]]) -> TaggingBatch:
    """Pad encoded examples (``word_ids``, ``char_ids``, optional ``tag_ids``)."""
    word_ids, lengths, mask = pad_with_lengths([e["word_ids"] for e in examples])
    tags = pad_2d([e["tag_ids"] for e in examples]) if "tag_ids" in examples[0] else None
    char_ids = pad_3d([e["char_ids"] for e in examples])
    return TaggingBatch(word_ids, char_ids, mask, lengths, tags, example_ids_of(examples))


def collate_distinct_tokens(
    sentences: Sequence[Sequence[str]], encode: Callable[[str], tuple[int, list[int]]]
) -> TaggingBatch:
    """A prediction batch of non-empty token lists whose characters are given once per
    distinct token (``char_ids`` (words, chars) and ``char_rows``, see ``TaggingBatch``):
    a batch repeats its frequent words many times, and the characters of a word are
    all that its character features depend on. ``encode(token)`` gives the token's
    word id and character ids (``TaggingCodec.encode_tokens`` for one token)."""
    word_ids, chars, char_rows, tokens = distinct_tokens(sentences, encode)
    words, lengths, mask = pad_with_lengths(word_ids)
    return TaggingBatch(words, pad_2d(chars), mask, lengths, char_rows=pad_2d(char_rows),
                        char_tokens=tokens)  # fmt: skip


class TaggingDataModule(SeqDataModule):
    """CoNLL / JSONL / hub tagging data with vocabularies fit on the training split.

    Args:
        dataset: a named dataset (``conll2002_es``, ``conll2002_nl``) whose train,
            validation and test splits are used; leave null to give file paths.
        train, validation, test: data sources (a file path, ``NAME:SPLIT`` or
            ``hf:REPO[:CONFIG]:SPLIT``); not together with ``dataset``.
        format: ``conll`` (column file), ``jsonl`` or ``auto`` (by file extension).
        token_column, tag_column: columns of a CoNLL file (0-based; negative from the end).
        input_scheme: tag scheme of the files: ``iob1``, ``iob2``, ``bioes`` or ``auto``.
        tag_scheme: scheme the model is trained in (predictions are given in IOB2).
        min_word_freq: words seen fewer times in training map to ``<unk>``.
        lowercase, zero_digits: word normalisation for the word vocabulary.
        encoding: the text encoding of the files (default UTF-8).
        pretokenizer, language: how the model splits raw text into tokens when it
            predicts: ``spacy`` (spaCy's rule-based tokenizer for ``language``; default
            the named dataset's language, else ``xx``, many languages) or
            ``whitespace``. Training files are read as tokenized already.
        hub_tokens_field, hub_tags_field: column names of hub datasets.
        vectors: a file of pretrained word vectors (word2vec text or binary, GloVe,
            fastText ``.vec``; optionally compressed). Words that have a vector but are
            not training words get rows of their own (``extend_vocab``), and the
            tagger starts its word embeddings from the vectors; prediction needs no
            vector file (README "Pretrained word vectors").
        vectors_format: ``auto`` (told from the file), ``word2vec``,
            ``word2vec_binary``, ``glove`` or ``fasttext``.
        max_vectors: read only the file's first N vectors (file order).
        extend_vocab: which words with a vector join the vocabulary: ``data`` (the
            words of every split: train, validation, test), ``all`` (also every vector
            read; needs ``max_vectors``) or ``none``.
    """

    length_column = "word_ids"

    def __init__(
        self,
        dataset: str | None = None,
        train: str | None = None,
        validation: str | None = None,
        test: str | None = None,
        format: TaggingFormat = "auto",
        token_column: int = 0,
        tag_column: int = -1,
        input_scheme: Scheme | Literal["auto"] = "auto",
        tag_scheme: Literal["iob2", "bioes"] = "bioes",
        min_word_freq: int = 1,
        max_vocab_size: int | None = None,
        lowercase: bool = False,
        zero_digits: bool = True,
        max_word_chars: int = 40,
        encoding: str = "utf-8",
        pretokenizer: PretokenizerKind = "spacy",
        language: str | None = None,
        hub_tokens_field: str = "tokens",
        hub_tags_field: str = "ner_tags",
        vectors: str | None = None,
        vectors_format: VectorsFormat = "auto",
        max_vectors: int | None = None,
        extend_vocab: ExtendVocab = "data",
        batch_size: int = 32,
        eval_batch_size: int = 128,
        pool_factor: int = 1000,
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | None = None,
        streaming: bool = False,
        shuffle_buffer: int = 10_000,
    ) -> None:
        super().__init__(
            dataset,
            train,
            validation,
            test,
            batch_size,
            eval_batch_size,
            pool_factor,
            num_workers,
            seed,
            cache_dir,
            streaming,
            shuffle_buffer,
        )
        self.save_hyperparameters()

    def from_hub(self, hub: Any) -> list[dict[str, list[str]]]:
        h = self.hparams
        names = hub.features[h.hub_tags_field].feature.names
        tokens = [list(t) for t in hub[h.hub_tokens_field]]
        tags = [[names[i] for i in row] for row in hub[h.hub_tags_field]]
        source = detect_scheme(tags) if h.input_scheme == "auto" else h.input_scheme
        return [
            {"tokens": w, "tags": to_iob2(t, source)} for w, t in zip(tokens, tags, strict=True)
        ]

    def fit_codec(self, train: Any) -> TaggingCodec:
        h = self.hparams
        codec = TaggingCodec.fit(
            train, h.min_word_freq, h.max_vocab_size, h.tag_scheme, h.lowercase, h.zero_digits,
            h.max_word_chars, self.pretokenizer(),
        )  # fmt: skip
        codec.training_words = len(codec.words)
        if h.vectors:
            norm = partial(normalize_word, lowercase=h.lowercase, zero_digits=h.zero_digits)
            words = (norm(t) for split in self.all_splits(train) for r in split
                     for t in r["tokens"])  # fmt: skip
            codec.words, codec.vectors = fit_vectors(
                h.vectors, codec.words, words, norm, h.vectors_format, h.max_vectors,
                h.extend_vocab,
            )  # fmt: skip
        log.info("vocabularies: %d words, %d characters, tags %s; raw text: %s", len(codec.words),
                 len(codec.chars), codec.tags.itos, codec.raw.describe())  # fmt: skip
        return codec

    def check_split(self, split: str, dataset: Any) -> None:
        found = unseen_tag(({"tags": tags} for tags in dataset["tags"]), self.codec)
        if found is None:
            return
        source = parse_source(self.source_of(split))
        if source.kind != "hub":  # read the file again, with line numbers, to say where
            path = self.resolve(source)[0]
            records = self.file_reader()(path, with_lines=True)
            found = unseen_tag(records, self.codec) or found
            raise ValueError(f"{path}{found}")
        raise ValueError(f"{source.spec}{found}")

    def file_reader(self) -> Callable[[str], list[dict[str, Any]]]:
        h = self.hparams
        return partial(
            read_tagging_file,
            fmt=h.format,
            token_column=h.token_column,
            tag_column=h.tag_column,
            scheme=h.input_scheme,
            encoding=h.encoding,
        )

    def encoder(self) -> Callable[[dict[str, list[Any]]], dict[str, list[Any]]]:
        return partial(encode_tagging, codec=self.codec)

    def collate(self, examples: Sequence[dict[str, Any]]) -> TaggingBatch:
        return collate_tagging(examples)
