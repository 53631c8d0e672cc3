"""Chunk tag schemes: IOB1, IOB2 and BIOES, detection and conversion.

All readers convert their input to IOB2, the scheme seqeval and conlleval score
in; a model may train on BIOES (Lample et al. 2016 found it slightly better) and
its predictions are converted back to IOB2 before scoring or output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal

Scheme = Literal["iob1", "iob2", "bioes"]
_TAG = re.compile(r"^(O|[BIES]-.+)$")


def is_valid_tag(tag: str) -> bool:
    """True for ``O`` and ``B-X`` / ``I-X`` / ``E-X`` / ``S-X``."""
    return bool(_TAG.match(tag))


def split_tag(tag: str) -> tuple[str, str | None]:
    """``'B-PER' -> ('B', 'PER')``, ``'O' -> ('O', None)``."""
    if tag == "O":
        return "O", None
    return tag[0], tag[2:]


def detect_scheme(sentences: Iterable[Sequence[str]]) -> Scheme:
    """Guess the scheme of a whole file's tags.

    Any ``E-``/``S-`` prefix means BIOES; an ``I-X`` that opens a chunk (after
    ``O`` or another type, or first in a sentence) means IOB1; otherwise IOB2.
    """
    iob1 = False
    for tags in sentences:
        prev_type: str | None = None
        for tag in tags:
            prefix, kind = split_tag(tag)
            if prefix in ("E", "S"):
                return "bioes"
            if prefix == "I" and kind != prev_type:
                iob1 = True
            prev_type = kind
    return "iob1" if iob1 else "iob2"


def to_iob2(tags: Sequence[str], scheme: Scheme) -> list[str]:
    """Convert one sentence's tags from ``scheme`` to IOB2.

    Ill-formed IOB2 (an ``I-X`` that opens a chunk) is repaired to ``B-X``, as
    conlleval reads it.
    """
    out: list[str] = []
    prev_type: str | None = None
    for tag in tags:
        prefix, kind = split_tag(tag)
        if prefix == "O":
            out.append("O")
        elif scheme == "bioes":
            # I-/E- after O, E-, S- or another type opens a chunk, as conlleval reads it
            opens = prefix in ("B", "S") or kind != prev_type
            out.append(f"B-{kind}" if opens else f"I-{kind}")
        elif prefix == "I" and kind != prev_type:
            out.append(f"B-{kind}")
        else:
            out.append(tag)
        prev_type = None if scheme == "bioes" and prefix in ("E", "S") else kind
    return out


def iob2_to_bioes(tags: Sequence[str]) -> list[str]:
    """IOB2 to BIOES: a chunk of one token is ``S-``, a chunk's last token ``E-``."""
    out: list[str] = []
    for i, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        nxt = tags[i + 1] if i + 1 < len(tags) else "O"
        continues = nxt == f"I-{kind}"
        if prefix == "O":
            out.append("O")
        elif prefix == "B":
            out.append(f"B-{kind}" if continues else f"S-{kind}")
        else:
            out.append(f"I-{kind}" if continues else f"E-{kind}")
    return out


def convert(tags: Sequence[str], source: Scheme, target: Literal["iob2", "bioes"]) -> list[str]:
    iob2 = to_iob2(tags, source)
    return iob2 if target == "iob2" else iob2_to_bioes(iob2)


def spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entity spans ``(type, start, end)`` (end exclusive) of IOB2 tags."""
    found: list[tuple[str, int, int]] = []
    start: int | None = None
    kind: str | None = None
    for i, tag in enumerate([*tags, "O"]):
        prefix, t = split_tag(tag)
        if start is not None and (prefix != "I" or t != kind):
            assert kind is not None
            found.append((kind, start, i))
            start, kind = None, None
        if prefix in ("B", "I") and start is None:
            start, kind = i, t
    return found
