"""Strings to ids and back. Knows nothing of torch models.

`Vocab` maps symbols (words, characters, labels) to contiguous ids. It is fit on
the training split only, serialises to a plain dict (so a checkpoint can hold it
without pickled classes) and round-trips exactly.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

PAD = "<pad>"
UNK = "<unk>"

_DIGITS = re.compile(r"\d")


class StateEquality:
    """Equality by ``state_dict()``: two vocabularies are equal when they serialise alike."""

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.state_dict() == other.state_dict()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]


class Vocab(StateEquality):
    """An ordered symbol table with optional padding and unknown entries.

    Ids are assigned in this order: the special symbols (``pad`` first, so the
    padding id is 0 when present), then the symbols by descending frequency, ties
    broken alphabetically so that fitting is deterministic on every rank.
    """

    def __init__(
        self,
        symbols: Sequence[str],
        pad: str | None = PAD,
        unk: str | None = UNK,
    ) -> None:
        specials = [s for s in (pad, unk) if s is not None]
        self.pad = pad
        self.unk = unk
        self.itos: list[str] = [*specials, *(s for s in symbols if s not in specials)]
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("Vocab symbols must be unique")

    @classmethod
    def fit(
        cls,
        sequences: Iterable[Iterable[str]],
        min_freq: int = 1,
        max_size: int | None = None,
        pad: str | None = PAD,
        unk: str | None = UNK,
    ) -> Vocab:
        """Count symbols over ``sequences`` and keep those seen ``min_freq`` times."""
        counts: Counter[str] = Counter()
        for seq in sequences:
            counts.update(seq)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = [s for s, c in ranked if c >= min_freq]
        if max_size is not None:
            kept = kept[:max_size]
        return cls(kept, pad=pad, unk=unk)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self.stoi

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, pad={self.pad!r}, unk={self.unk!r})"

    @property
    def pad_id(self) -> int:
        assert self.pad is not None, "this vocabulary has no padding symbol"
        return self.stoi[self.pad]

    @property
    def unk_id(self) -> int:
        assert self.unk is not None, "this vocabulary has no unknown symbol"
        return self.stoi[self.unk]

    def index(self, symbol: str) -> int:
        """Id of ``symbol``; the unknown id when absent (KeyError without ``unk``)."""
        i = self.stoi.get(symbol)
        if i is not None:
            return i
        if self.unk is None:
            raise KeyError(symbol)
        return self.stoi[self.unk]

    def encode(self, symbols: Iterable[str]) -> list[int]:
        """``index`` of each symbol (one dictionary lookup each: this is on the
        prediction path of every word-level model)."""
        stoi = self.stoi
        if self.unk is None:
            return [stoi[s] for s in symbols]  # KeyError(symbol), as ``index``
        unk = stoi[self.unk]
        return [stoi.get(s, unk) for s in symbols]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def state_dict(self) -> dict[str, Any]:
        specials = {s for s in (self.pad, self.unk) if s is not None}
        return {
            "symbols": [s for s in self.itos if s not in specials],
            "pad": self.pad,
            "unk": self.unk,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Vocab:
        return cls(state["symbols"], pad=state["pad"], unk=state["unk"])


def normalize_word(word: str, lowercase: bool = False, zero_digits: bool = False) -> str:
    """The form under which a word is looked up in the word vocabulary.

    ``zero_digits`` maps every digit to 0 (Lample et al. 2016), so that numbers
    share embeddings; character features still see the original form.
    """
    if lowercase:
        word = word.lower()
    if zero_digits:
        word = _DIGITS.sub("0", word)
    return word


class WordTokenizer:
    """Whitespace tokenisation onto a word ``Vocab`` (``<pad>`` = 0, ``<unk>`` = 1)."""

    kind = "word"

    def __init__(self, vocab: Vocab, lowercase: bool = False) -> None:
        self.vocab = vocab
        self.lowercase = lowercase

    @classmethod
    def fit(
        cls, texts: Iterable[str], min_freq: int = 1, max_size: int | None = None,
        lowercase: bool = False,
    ) -> WordTokenizer:  # fmt: skip
        words = (cls.split(t, lowercase) for t in texts)
        return cls(Vocab.fit(words, min_freq=min_freq, max_size=max_size), lowercase)

    @staticmethod
    def split(text: str, lowercase: bool = False) -> list[str]:
        return (text.lower() if lowercase else text).split()

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def pad_id(self) -> int:
        return self.vocab.pad_id

    @property
    def unk_id(self) -> int:
        return self.vocab.unk_id

    def pieces(self, text: str) -> list[str]:
        return self.split(text, self.lowercase)

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(self.pieces(text))

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.vocab.decode(i for i in ids if i != self.pad_id))

    def id_to_piece(self, i: int) -> str:
        return self.vocab.itos[i]

    def as_vocab(self) -> Vocab:
        return self.vocab

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab": self.vocab.state_dict(), "lowercase": self.lowercase}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WordTokenizer:
        return cls(Vocab.from_state(state["vocab"]), state["lowercase"])


class SentencePieceTokenizer:
    """A SentencePiece model (unigram or BPE) trained in memory on training text.

    Ids: ``<pad>`` = 0, ``<unk>`` = 1, with ``bos_eos`` ``<s>`` = 2 and ``</s>`` = 3,
    then the pieces. The model is kept as its serialised bytes, so a checkpoint
    carries it without files or pickled classes.
    """

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, lowercase: bool = False) -> None:
        import sentencepiece as spm

        self.model_proto = model_proto
        self.lowercase = lowercase
        self.processor = spm.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def fit(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8000,
        model_type: str = "unigram",
        lowercase: bool = False,
        character_coverage: float = 1.0,
        bos_eos: bool = False,
        max_sentences: int | None = None,
    ) -> SentencePieceTokenizer:
        """Train on ``texts`` (deterministic: one thread). With ``max_sentences``, on a
        uniform sample of that many non-empty lines (reservoir sampling with a fixed
        seed), so that a streamed corpus needs memory for the sample only."""
        import io

        import sentencepiece as spm

        if model_type not in ("unigram", "bpe"):
            raise ValueError(f"sentencepiece model_type must be unigram or bpe, got {model_type!r}")
        nonempty = ((t.lower() if lowercase else t) for t in texts if t.strip())
        lines = list(nonempty) if max_sentences is None else _reservoir(nonempty, max_sentences)
        if not lines:
            raise ValueError("cannot train a SentencePiece model on no text")
        buffer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=buffer, vocab_size=vocab_size,
            model_type=model_type, character_coverage=character_coverage, pad_id=0,
            unk_id=1, bos_id=2 if bos_eos else -1, eos_id=3 if bos_eos else -1,
            hard_vocab_limit=False, num_threads=1,
            input_sentence_size=0, minloglevel=2,
        )  # fmt: skip
        return cls(buffer.getvalue(), lowercase)

    def __len__(self) -> int:
        return self.processor.get_piece_size()

    pad_id = 0
    unk_id = 1

    @property
    def bos_id(self) -> int:
        """Id of ``<s>`` (-1 when the model was trained without ``bos_eos``)."""
        return self.processor.bos_id()

    @property
    def eos_id(self) -> int:
        """Id of ``</s>`` (-1 when the model was trained without ``bos_eos``)."""
        return self.processor.eos_id()

    def encode(self, text: str) -> list[int]:
        return self.processor.encode(text.lower() if self.lowercase else text)

    def decode(self, ids: Iterable[int]) -> str:
        specials = {self.pad_id, self.bos_id, self.eos_id}
        return self.processor.decode([i for i in ids if i not in specials])

    def id_to_piece(self, i: int) -> str:
        return self.processor.id_to_piece(i)

    def as_vocab(self) -> Vocab:
        """The pieces as a ``Vocab`` with the same ids (for loading vectors by piece)."""
        return Vocab([self.processor.id_to_piece(i) for i in range(2, len(self))])

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model_proto": self.model_proto, "lowercase": self.lowercase}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SentencePieceTokenizer:
        return cls(state["model_proto"], state["lowercase"])


Tokenizer = WordTokenizer | SentencePieceTokenizer


def _reservoir(items: Iterable[str], k: int, seed: int = 0) -> list[str]:
    """A uniform sample of ``k`` items of a stream, in stream order (Algorithm R)."""
    rng = random.Random(seed)
    sample: list[tuple[int, str]] = []
    for i, item in enumerate(items):
        if i < k:
            sample.append((i, item))
        elif (j := rng.randint(0, i)) < k:
            sample[j] = (i, item)
    return [item for _, item in sorted(sample)]


def tokenizer_from_state(state: dict[str, Any]) -> Tokenizer:
    kinds: dict[str, Any] = {"word": WordTokenizer, "sentencepiece": SentencePieceTokenizer}
    return kinds[state["kind"]].from_state(state)
