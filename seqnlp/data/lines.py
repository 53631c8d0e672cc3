"""Reading text files line by line, as every reader does: bytes split at ``\n``, decoded
with the line number in any error, JSON lines, and column indices.

Every reader reports bad input as a ``ValueError`` that names the file, the line
number and what was expected.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def check_encoding(encoding: str) -> str:
    """``encoding`` if Python knows it; a ValueError that says so otherwise."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(
            f"unknown text encoding {encoding!r} (e.g. utf-8, latin-1, cp1252)"
        ) from None
    return encoding


def iter_lines(path: str | Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` (1-based, newline stripped).

    Decoding errors name the file and the line instead of a byte offset. A UTF-8
    byte-order mark at the start of the file (as some Windows editors write) is dropped.
    """
    check_encoding(encoding)
    with open(path, "rb") as handle:
        yield from decode_lines(handle, str(path), encoding)


def decode_lines(
    handle: Iterable[bytes], name: str, encoding: str = "utf-8"
) -> Iterator[tuple[int, str]]:
    """``iter_lines`` of an open binary stream (standard input), named ``name`` in errors."""
    for lineno, raw in enumerate(handle, start=1):
        try:
            line = raw.decode(encoding)
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{name}:{lineno}: cannot decode line as {encoding} ({err.reason} at byte "
                f"{err.start}); convert the file to {encoding}, or give its encoding "
                f"(--encoding for predict and evaluate, data.encoding in a recipe)"
            ) from None
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            line = line.removeprefix("\ufeff")
        yield lineno, line.rstrip("\r\n")


def iter_json_lines(
    path: str | Path, encoding: str = "utf-8", keep_blank: bool = False
) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` of a JSON-lines file.

    Blank lines are skipped, or yielded as ``None`` with ``keep_blank``. A line that
    is not JSON raises ``ValueError`` naming the file and line.
    """
    for lineno, line in iter_lines(path, encoding):
        if not line.strip():
            if keep_blank:
                yield lineno, None
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{lineno}: expected a JSON object: {err.msg}") from None
        except (ValueError, RecursionError) as err:  # huge integers, very deep nesting
            raise ValueError(f"{path}:{lineno}: expected a JSON object: {err}") from None
        if _SURROGATE_ESCAPE.search(line) and _has_lone_surrogate(obj):
            raise ValueError(
                f"{path}:{lineno}: expected text, found a lone UTF-16 surrogate escape "
                f"(\\ud800-\\udfff without its pair), which is not a character"
            )
        yield lineno, obj


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(obj: Any) -> bool:
    """Whether a decoded JSON value holds a string that is not valid Unicode text
    (walked without recursion: the value may be nested as deep as json allows)."""
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(value, dict):
            stack += [*value.keys(), *value.values()]
        elif isinstance(value, list):
            stack += value
    return False


def column_width(column: int) -> int:
    """How many columns a line needs so that index ``column`` exists (negative from the end)."""
    return column + 1 if column >= 0 else -column
