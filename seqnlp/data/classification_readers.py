"""Readers for labelled text: records ``{"text": str, "label": str}``.

Formats: ``labeltext`` ("label text" lines, as in the SST-2 files), ``tsv`` and
``csv`` (label and text columns chosen by name, with a header row, or by index,
negative from the end), ``jsonl`` (fields named by the column options, ``label``
and ``text`` by default). One record per line. Bad input raises ``ValueError``
naming the file, the line and what was expected.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from seqnlp.data.lines import column_width, iter_json_lines, iter_lines

TextFormat = Literal["auto", "labeltext", "tsv", "csv", "jsonl"]


def text_format(path: str | Path, fmt: TextFormat = "auto") -> str:
    if fmt != "auto":
        return fmt
    suffix = Path(path).suffix.lower()
    return {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(
        suffix, "labeltext"
    )


def tsv_cell_problem(cell: str) -> str | None:
    """Why ``cell`` cannot be written as a TSV cell that the ``tsv`` reader reads back
    (None when it can): a tab, a line break, a carriage return or a NUL inside it."""
    if any(c in cell for c in "\t\n\r\x00"):
        return "it holds a tab, a line break, a carriage return or a NUL"
    return None


def read_labelled_text(
    path: str | Path,
    fmt: TextFormat = "auto",
    label_column: int | str = 0,
    text_column: int | str = -1,
    header: bool | None = None,
    encoding: str = "utf-8",
) -> list[dict[str, str]]:
    """Read a whole labelled-text file.

    ``header`` (tsv/csv): whether the first row names the columns; by default, when
    a column is given by name.
    """
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file")
    kind = text_format(path, fmt)
    if kind == "labeltext":
        records = list(_label_text(path, encoding))
    elif kind == "jsonl":
        records = list(_jsonl(path, label_column, text_column, encoding))
    elif kind in ("tsv", "csv"):
        records = list(_delimited(path, kind, label_column, text_column, header, encoding))
    else:
        raise ValueError(f"unknown labelled-text format {fmt!r}: labeltext, tsv, csv or jsonl")
    if not records:
        raise ValueError(f"{path}: expected at least one labelled example, found none")
    return records


def _label_text(path: str | Path, encoding: str) -> Iterator[dict[str, str]]:
    for lineno, line in iter_lines(path, encoding):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f"{path}:{lineno}: expected '<label> <text>', found {line!r}")
        yield {"label": parts[0], "text": parts[1]}


def _jsonl(
    path: str | Path, label_column: int | str, text_column: int | str, encoding: str
) -> Iterator[dict[str, str]]:
    label_key = label_column if isinstance(label_column, str) else "label"
    text_key = text_column if isinstance(text_column, str) else "text"
    for lineno, obj in iter_json_lines(path, encoding):
        if not isinstance(obj, dict) or text_key not in obj or label_key not in obj:
            raise ValueError(
                f"{path}:{lineno}: expected an object with {text_key!r} and {label_key!r}"
            )
        text, label = obj[text_key], obj[label_key]
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{path}:{lineno}: expected {text_key!r} to be non-empty text")
        if not isinstance(label, str | int) or isinstance(label, bool) or not str(label).strip():
            raise ValueError(
                f"{path}:{lineno}: expected {label_key!r} to be a non-empty string or integer"
            )
        yield {"label": str(label), "text": text}


def _delimited(
    path: str | Path,
    kind: str,
    label_column: int | str,
    text_column: int | str,
    header: bool | None,
    encoding: str,
) -> Iterator[dict[str, str]]:
    by_name = isinstance(label_column, str) or isinstance(text_column, str)
    has_header = by_name if header is None else header
    if by_name and not has_header:
        raise ValueError(f"{path}: columns given by name need a header row (header: true)")
    lines = iter_lines(path, encoding)
    numbers: list[int] = []

    def numbered() -> Iterator[str]:
        for lineno, line in lines:
            numbers.append(lineno)
            yield line + "\n"  # keeps the line break inside a quoted cell spanning lines

    if kind == "tsv":  # TSV cells are not quoted: a quote is text
        reader = csv.reader(numbered(), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:  # strict: a quote left open must not swallow the rest of the file
        reader = csv.reader(numbered(), delimiter=",", strict=True)
    label_idx, text_idx = label_column, text_column
    first = True
    while True:
        start = len(numbers) + 1  # the row's first line is the next one read
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:  # e.g. a bare carriage return inside a line
            opened = numbers[start - 1] if start <= len(numbers) else numbers[-1]
            if "unexpected end of data" in str(err):
                raise ValueError(
                    f"{path}:{opened}: a quoted CSV field opened on this line runs to the end "
                    f"of the file (an unbalanced \"; a quote inside a quoted field is "
                    f"written twice, \"\")"
                ) from None
            raise ValueError(
                f"{path}:{numbers[-1]}: cannot read {kind.upper()} line: {err}"
            ) from None
        lineno = numbers[-1]
        if not any(cell.strip() for cell in row):
            continue
        if first and has_header:
            names = [c.strip() for c in row]
            label_idx = _column(path, lineno, names, label_column)
            text_idx = _column(path, lineno, names, text_column)
            first = False
            continue
        first = False
        assert isinstance(label_idx, int) and isinstance(text_idx, int)
        # A label and a separate text: a lone cell is not both label and text.
        needed = max(column_width(label_idx), column_width(text_idx), 2)
        if len(row) < needed:
            raise ValueError(
                f"{path}:{lineno}: expected at least {needed} {kind.upper()} columns (label "
                f"column {label_column}, text column {text_column}), found {len(row)}"
            )
        if label_idx % len(row) == text_idx % len(row):
            raise ValueError(
                f"{path}:{lineno}: label column {label_column} and text column {text_column} "
                f"are the same cell on this line of {len(row)} columns"
            )
        label, text = row[label_idx].strip(), row[text_idx].strip()
        if not label or not text:
            raise ValueError(f"{path}:{lineno}: expected a non-empty label and text")
        yield {"label": label, "text": text}


def _column(path: str | Path, lineno: int, names: list[str], column: int | str) -> int:
    if isinstance(column, int):
        return column
    if column not in names:
        raise ValueError(
            f"{path}:{lineno}: expected a header with a column {column!r}, found {names}"
        )
    return names.index(column)
