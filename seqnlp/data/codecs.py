"""The codecs: how each task turns text into a network's ids and ids back into text.

A codec holds a task's tokenizers, vocabularies, label set and raw-text handling
(``seqnlp.text.RawText``) as plain data (``state_dict`` / ``from_state``), so a
checkpoint or an exported model folder carries it without pickled classes. This
module imports no torch: ONNX Runtime prediction (``seqnlp.onnx``) uses the same
codecs as the torch predictors.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from seqnlp.data.tagschemes import convert, iob2_to_bioes, to_iob2
from seqnlp.text import Pretokenizer, RawText, TextNormalizer, whole_tokens
from seqnlp.tokenization import (
    SentencePieceTokenizer,
    StateEquality,
    Tokenizer,
    Vocab,
    normalize_word,
    tokenizer_from_state,
)

if TYPE_CHECKING:
    from seqnlp.data.vectors import PretrainedRows


class TaggingCodec(StateEquality):
    """The tagger's codec: everything needed to turn text into model inputs and tag ids
    back into tags: word, character and tag vocabularies, the word normalisation, the
    tag scheme, and ``raw`` (how raw text becomes tokens: ``seqnlp.text.RawText``).

    Stored in every tagger checkpoint, so prediction needs no data files. (A plain
    class, not a dataclass, so that the CLI links it whole instead of exposing its
    fields as options.)
    """

    def __init__(
        self,
        words: Vocab,
        chars: Vocab,
        tags: Vocab,
        tag_scheme: Literal["iob2", "bioes"] = "bioes",
        lowercase: bool = False,
        zero_digits: bool = True,
        max_word_chars: int = 40,
        raw: RawText | None = None,
    ) -> None:
        self.raw = raw or RawText()
        self.words = words
        self.chars = chars
        self.tags = tags
        self.tag_scheme = tag_scheme
        self.lowercase = lowercase
        self.zero_digits = zero_digits
        self.max_word_chars = max_word_chars
        #: pretrained vectors for rows of ``words`` (``data.vectors``): set by the DataModule
        #: that fits the codec, read by the tagger when training starts, never saved.
        self.vectors: PretrainedRows | None = None
        #: how many of ``words`` are training words (the rest came with vectors): set by
        #: the DataModule that fits the codec, read when training starts, never saved.
        self.training_words: int | None = None

    @classmethod
    def fit(
        cls,
        records: Iterable[dict[str, list[str]]],
        min_word_freq: int = 1,
        max_vocab_size: int | None = None,
        tag_scheme: Literal["iob2", "bioes"] = "bioes",
        lowercase: bool = False,
        zero_digits: bool = True,
        max_word_chars: int = 40,
        pretokenizer: Pretokenizer | None = None,
    ) -> TaggingCodec:
        """Fit on training records (tags already in IOB2); ``pretokenizer`` splits raw text
        for the model, and what the training tokens imply is learned for it."""
        # Generators, one pass each: a streamed corpus is never held whole.
        norm = ([normalize_word(w, lowercase, zero_digits) for w in r["tokens"]] for r in records)
        words = Vocab.fit(norm, min_freq=min_word_freq, max_size=max_vocab_size)
        chars = Vocab.fit(list(w) for r in records for w in r["tokens"])
        schemed = (convert(r["tags"], "iob2", tag_scheme) for r in records)
        tags = Vocab.fit(schemed, pad=None, unk=None)
        normalizer = TextNormalizer.fit(w for r in records for w in r["tokens"])
        pretokenizer = pretokenizer or Pretokenizer()
        whole = whole_tokens(_Tokens(records), pretokenizer)
        raw = RawText(pretokenizer, normalizer, whole)
        return cls(words, chars, tags, tag_scheme, lowercase, zero_digits, max_word_chars, raw)

    def encode_tokens(self, tokens: Sequence[str]) -> tuple[list[int], list[list[int]]]:
        """Word ids (time,) and character ids (time, chars<=max_word_chars)."""
        word_ids = [
            self.words.index(normalize_word(t, self.lowercase, self.zero_digits)) for t in tokens
        ]
        char_ids = [self.chars.encode(t[: self.max_word_chars]) for t in tokens]
        return word_ids, char_ids

    def schemed(self, tags: Sequence[str]) -> list[str]:
        """IOB2 tags in the training scheme."""
        return iob2_to_bioes(tags) if self.tag_scheme == "bioes" else list(tags)

    def encode_tags(self, tags: Sequence[str]) -> list[int]:
        """IOB2 tags to ids in the training scheme."""
        return self.tags.encode(self.schemed(tags))

    def decode_tags(self, ids: Sequence[int]) -> list[str]:
        """Tag ids to IOB2 tags (ill-formed sequences repaired as conlleval reads them)."""
        return to_iob2(self.tags.decode(ids), self.tag_scheme)

    def state_dict(self) -> dict[str, Any]:
        return {
            "words": self.words.state_dict(),
            "chars": self.chars.state_dict(),
            "tags": self.tags.state_dict(),
            "tag_scheme": self.tag_scheme,
            "lowercase": self.lowercase,
            "zero_digits": self.zero_digits,
            "max_word_chars": self.max_word_chars,
            "raw": self.raw.state_dict(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TaggingCodec:
        return cls(
            Vocab.from_state(state["words"]),
            Vocab.from_state(state["chars"]),
            Vocab.from_state(state["tags"]),
            state["tag_scheme"],
            state["lowercase"],
            state["zero_digits"],
            state["max_word_chars"],
            RawText.from_state(state.get("raw")),  # absent before seqnlp 0.2: whitespace
        )


class _Tokens:
    """The token lists of re-iterable records (a Dataset or a stream), re-iterable."""

    def __init__(self, records: Iterable[dict[str, Any]]) -> None:
        self.records = records

    def __iter__(self) -> Iterator[list[str]]:
        return (r["tokens"] for r in self.records)


_BIOES_MEANING = {
    "S": "a one-token {} entity", "B": "the first token of a longer {} entity",
    "I": "inside a longer {} entity", "E": "the last token of a longer {} entity",
}  # fmt: skip


def unseen_tag(records: Iterable[dict[str, Any]], codec: TaggingCodec) -> str | None:
    """Where and what the first tag of ``records`` (IOB2 tags, and ``lines`` and
    ``written`` when read ``with_lines``) is that the codec's tag set lacks, as
    ":LINE: ..." text for an error message; None when every tag is known."""
    known = set(codec.tags.itos)
    for record in records:
        for i, schemed in enumerate(codec.schemed(record["tags"])):
            if schemed in known:
                continue
            where = f":{record['lines'][i]}" if "lines" in record else ""
            written = record.get("written", record["tags"])[i]
            meaning = ""
            if codec.tag_scheme == "bioes":
                prefix, _, kind = schemed.partition("-")
                described = _BIOES_MEANING[prefix].format(kind)
                meaning = f" ({described}, {schemed} in the model's BIOES)"
            return (
                f"{where}: tag {written}{meaning} never occurs in the training data, so a "
                f"model trained on it cannot predict it (the model's tags: "
                f"{', '.join(codec.tags.itos)})"
            )
    return None



def distinct_tokens(
    sentences: Sequence[Sequence[str]], encode: Callable[[str], tuple[int, list[int]]]
) -> tuple[list[list[int]], list[list[int]], list[list[int]], list[str]]:
    """Word ids (per sentence), the character ids of each distinct token once (row 0 the
    padding's empty word), each token's row among them (per sentence), and the distinct
    tokens (row i + 1 is token i): what the torch and ONNX prediction batches are
    padded from. ``encode(token)`` gives the token's word id and character ids."""
    rows: dict[str, int] = {}
    chars: list[list[int]] = [[]]  # row 0: the padding's empty word
    word_ids, char_rows = [], []
    for tokens in sentences:
        sentence_words, sentence_rows = [], []
        for token in tokens:
            word, token_chars = encode(token)
            row = rows.get(token)
            if row is None:
                row = rows[token] = len(chars)
                chars.append(token_chars)
            sentence_words.append(word)
            sentence_rows.append(row)
        word_ids.append(sentence_words)
        char_rows.append(sentence_rows)
    return word_ids, chars, char_rows, list(rows)


class ClassificationCodec(StateEquality):
    """The classifier's codec: the tokenizer, the label set and how raw text becomes the
    training text's tokens; stored in every classifier checkpoint.

    Labels are ordered alphabetically, so class ids do not depend on frequencies.

    A text reaches the tokenizer in the training text's *form* (``text_form``,
    ``raw_form``, ``pretokenized_form``: tokens joined by single spaces); ``encode_example``
    gives a form's ids.

    Args:
        tokenizer, labels: the vocabulary tokenizer (words or pieces) and label set.
        raw: how raw text becomes tokens in the training text's form
            (``seqnlp.text.RawText``); None for a codec saved before seqnlp 0.2, whose
            text goes to the tokenizer as it is.
        pretokenized: the training text was tokenized (and normalised) already.
        chars: the characters of the training tokens (``<pad>`` = 0, ``<unk>`` = 1), for
            models that read each token's characters (character language models);
            None: examples carry token ids only.
        max_token_chars: a token's characters kept (its first ones), with ``chars``.
    """

    def __init__(
        self, tokenizer: Tokenizer, labels: Vocab, raw: RawText | None = None,
        pretokenized: bool = True, chars: Vocab | None = None, max_token_chars: int = 40,
    ) -> None:  # fmt: skip
        self.tokenizer = tokenizer
        self.labels = labels
        self.raw = raw
        self.pretokenized = pretokenized
        self.chars = chars
        self.max_token_chars = max_token_chars
        #: pretrained vectors for rows of the tokenizer (``data.vectors``): set by the
        #: DataModule that fits the codec, read when training starts, never saved.
        self.vectors: PretrainedRows | None = None
        #: how many of the tokenizer's ids are training tokens (the rest came with
        #: vectors): set by the DataModule that fits the codec, never saved.
        self.training_words: int | None = None

    @staticmethod
    def fit_chars(forms: Iterable[str]) -> Vocab:
        """The character vocabulary of the tokens of training texts in their form."""
        return Vocab.fit(list(token) for form in forms for token in form.split())

    def text_form(self, text: str) -> str:
        """``text`` written as the training text was, in the form the tokenizer reads."""
        return text if self.pretokenized else self.raw_form(text)

    def raw_form(self, text: str) -> str:
        """Raw ``text`` split and normalised as the training text was."""
        return text if self.raw is None else " ".join(self.raw.tokenize(text)[0])

    def pretokenized_form(self, text: str) -> str:
        """White-space separated tokens, each normalised (for a corpus in the training
        text's form, a no-op)."""
        if self.raw is None:
            return text
        normalize = self.raw.normalizer.normalize
        return " ".join(normalize(t) for t in text.split())

    def encode_example(self, form: str) -> dict[str, list[Any]]:
        """``token_ids`` of a text in its form and, with ``chars``, ``char_ids``: each
        token's character ids (tokens, chars), its unknown characters ``<unk>``."""
        example: dict[str, list[Any]] = {"token_ids": self.tokenizer.encode(form)}
        if self.chars is not None:
            n = self.max_token_chars
            example["char_ids"] = [self.chars.encode(t[:n]) for t in form.split()]
        return example

    def encode_text(self, text: str) -> list[int]:
        """Token ids of ``text`` written as the training text was."""
        return self.tokenizer.encode(self.text_form(text))

    def encode_raw(self, text: str) -> list[int]:
        """Token ids of raw ``text``: split and normalised as the training text was."""
        return self.tokenizer.encode(self.raw_form(text))

    def encode_pretokenized(self, text: str) -> list[int]:
        """Token ids of white-space separated tokens, each normalised (for a corpus in
        the training text's form, a no-op)."""
        return self.tokenizer.encode(self.pretokenized_form(text))

    def state_dict(self) -> dict[str, Any]:
        state = {"tokenizer": self.tokenizer.state_dict(), "labels": self.labels.state_dict()}
        if self.raw is not None:
            state.update(raw=self.raw.state_dict(), pretokenized=self.pretokenized)
        if self.chars is not None:  # absent before character language models
            state.update(chars=self.chars.state_dict(), max_token_chars=self.max_token_chars)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ClassificationCodec:
        raw = RawText.from_state(state["raw"]) if "raw" in state else None
        chars = Vocab.from_state(state["chars"]) if "chars" in state else None
        return cls(tokenizer_from_state(state["tokenizer"]), Vocab.from_state(state["labels"]),
                   raw, state.get("pretokenized", True), chars,
                   state.get("max_token_chars", 40))  # fmt: skip


class TargetPieces(StateEquality):
    """The pieces of a (joint) SentencePiece model that the target side uses, as a
    tokenizer with ids of its own: ``0 .. len - 1``, the four specials first.

    A joint model's pieces include every source-only piece; an output layer over
    them all spends most of a translator's arithmetic on pieces the target text
    never holds (Multi30k de-en, joint 8k: 8,000 against 3,9xx used in English).
    JoeyNMT builds its target vocabulary the same way. A target piece unseen in
    training encodes as ``<unk>``.
    """

    def __init__(self, base: SentencePieceTokenizer, kept: Sequence[int]) -> None:
        kept = sorted(set(kept) | set(range(4)))
        if base.bos_id != 2 or base.eos_id != 3:
            raise ValueError("target pieces need a model with <s> = 2 and </s> = 3")
        self.base = base
        self.kept = kept
        self.local = {piece: i for i, piece in enumerate(kept)}

    @classmethod
    def fit(cls, base: SentencePieceTokenizer, texts: Iterable[str]) -> TargetPieces:
        used: set[int] = set()
        for text in texts:
            used.update(base.encode(text))
        return cls(base, sorted(used))

    pad_id = 0
    unk_id = 1
    bos_id = 2
    eos_id = 3

    def __len__(self) -> int:
        return len(self.kept)

    def encode(self, text: str) -> list[int]:
        return [self.local.get(i, self.unk_id) for i in self.base.encode(text)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.base.decode([self.kept[i] for i in ids])

    def id_to_piece(self, i: int) -> str:
        return self.base.id_to_piece(self.kept[i])

    def state_dict(self) -> dict[str, Any]:
        return {"base": self.base.state_dict(), "kept": list(self.kept)}


class TranslationCodec(StateEquality):
    """The translator's codec: source and target SentencePiece models (one shared
    model when ``joint``).

    Stored in every translator checkpoint. Source ids end with ``</s>``; target
    ids carry no ``<s>``/``</s>``, which batching adds. With a joint model and
    ``target_pieces``, the target side keeps only the pieces its training text
    uses (``TargetPieces``), so the decoder's embedding and output layer are that
    much smaller.
    """

    def __init__(
        self,
        source: SentencePieceTokenizer,
        target: SentencePieceTokenizer | TargetPieces,
        joint: bool,
        source_normalizer: TextNormalizer | None = None,
    ) -> None:
        if target.bos_id < 0 or target.eos_id < 0 or source.eos_id < 0:
            raise ValueError("translation tokenizers need <s> and </s> ids (bos_eos=True)")
        self.source = source
        self.target = target
        self.joint = joint
        self.source_normalizer = source_normalizer

    @classmethod
    def fit(
        cls, sources: Iterable[str], targets: Iterable[str], joint: bool = True,
        vocab_size: int = 8000, model_type: str = "unigram", character_coverage: float = 1.0,
        max_sentences: int | None = None, target_pieces: bool = False,
    ) -> TranslationCodec:  # fmt: skip
        """Train SentencePiece on the training text: one model on both sides, or one each
        (on a sample of ``max_sentences`` lines a model, when given). ``target_pieces``
        (joint only): restrict the target side to the pieces its text uses (one more
        pass over the targets)."""
        fit = partial(SentencePieceTokenizer.fit, vocab_size=vocab_size, model_type=model_type,
                      character_coverage=character_coverage, bos_eos=True,
                      max_sentences=max_sentences)  # fmt: skip
        if joint:
            shared = fit(itertools.chain(sources, targets))
            target = TargetPieces.fit(shared, targets) if target_pieces else shared
            return cls(shared, target, joint=True)
        return cls(fit(sources), fit(targets), joint=False)

    def encode_source(self, text: str) -> list[int]:
        """Source ids of raw text, ``</s>`` last; put in Unicode NFC and given the training
        sources' quotes and case first (``source_normalizer``; none before seqnlp 0.2)."""
        if self.source_normalizer is not None:
            text = self.source_normalizer.normalize(unicodedata.normalize("NFC", text))
        return [*self.source.encode(text), self.source.eos_id]

    def encode_target(self, text: str) -> list[int]:
        return self.target.encode(text)

    def decode_target(self, ids: Sequence[int]) -> str:
        """Target ids to detokenised text (specials dropped)."""
        return self.target.decode(ids)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "source": self.source.state_dict(),
            "target": None if self.joint else self.target.state_dict(),
            "joint": self.joint,
        }
        if isinstance(self.target, TargetPieces):
            state["target_pieces"] = list(self.target.kept)
        if self.source_normalizer is not None:
            state["source_normalizer"] = self.source_normalizer.state_dict()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TranslationCodec:
        source = SentencePieceTokenizer.from_state(state["source"])
        target: SentencePieceTokenizer | TargetPieces = (
            source if state["joint"] else SentencePieceTokenizer.from_state(state["target"])
        )
        if state.get("target_pieces") is not None:  # absent in checkpoints before it existed
            target = TargetPieces(source, state["target_pieces"])
        normalizer = state.get("source_normalizer")
        return cls(source, target, state["joint"],
                   TextNormalizer.from_state(normalizer) if normalizer else None)  # fmt: skip
