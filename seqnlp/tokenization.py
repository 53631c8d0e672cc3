"""Strings to ids and back. Knows nothing of torch models.

`Vocab` maps symbols (words, characters, labels) to contiguous ids. It is fit on
the training split only, serialises to a plain dict (so a checkpoint can hold it
without pickled classes) and round-trips exactly.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

PAD = "<pad>"
UNK = "<unk>"

_DIGITS = re.compile(r"\d")


class Vocab:
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

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.state_dict() == other.state_dict()

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
        return [self.index(s) for s in symbols]

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
