"""Prediction files: inputs read as records, outputs written atomically, chunks, the
output format and the progress line (``ranks.predict_file`` puts them together)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from seqnlp.data.lines import check_encoding, decode_lines, iter_json_lines, iter_lines
from seqnlp.data.tagging_readers import read_conll
from seqnlp.predict.base import Predictor

InputFormat = Literal["auto", "text", "conll", "jsonl"]


def read_inputs(
    path: str, fmt: InputFormat = "auto", jsonl_field: str = "text", encoding: str = "utf-8"
) -> Iterator[Any]:
    """Yield the items of a prediction input file, one per record.

    ``text``: one item per line, the line as it is (an empty line is an empty
    item); ``conll``: token lists of blank-line separated column files (tokens in
    column 0); ``jsonl``: the ``jsonl_field`` of each object (an empty line is an
    empty item). ``-`` reads standard input as text. ``encoding``: the text encoding.
    """
    if fmt == "auto":
        fmt = "conll" if path.endswith(".conll") else "jsonl" if path.endswith(".jsonl") else "text"
    if path == "-":  # read as bytes: undecodable input is an error with its line
        for _, line in decode_lines(sys.stdin.buffer, "<stdin>", check_encoding(encoding)):
            yield line
        return
    if not os.path.exists(path):  # a file, or a pipe such as <(...)
        raise ValueError(f"{path}: no such input file")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, not an input file")
    if fmt == "conll":
        for record in read_conll(path, tag_column=None, encoding=encoding):
            yield record["tokens"]
    elif fmt == "jsonl":
        for lineno, obj in iter_json_lines(path, encoding, keep_blank=True):
            if obj is None:
                yield ""
            elif isinstance(obj, dict) and _is_input(obj.get(jsonl_field), jsonl_field):
                yield obj[jsonl_field]
            else:
                kind = "a string" + (" or a list of strings" if jsonl_field == "tokens" else "")
                found = (
                    f"{repr(obj)[:60]}, not an object" if not isinstance(obj, dict)
                    else "no such field" if jsonl_field not in obj
                    else repr(obj[jsonl_field])[:60]
                )  # fmt: skip
                raise ValueError(f"{path}:{lineno}: expected an object with {jsonl_field!r}: "
                                 f"{kind}, found {found}")  # fmt: skip
    else:
        for _, line in iter_lines(path, encoding):
            yield line


def _is_input(value: Any, field: str) -> bool:
    """A JSON-lines prediction input: text, or for ``tokens`` a list of strings too."""
    if isinstance(value, str):
        return True
    return field == "tokens" and isinstance(value, list) and all(isinstance(t, str) for t in value)


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


#: the output formats of every task, by which an output's extension is read.
OUTPUT_FORMATS = ("jsonl", "conll", "tsv", "text")


def output_format(predictor: Predictor, output_path: str, fmt: str = "auto") -> str:
    """The output format: as asked, else by the output's extension (``.jsonl`` or one of
    the predictor's text formats), else the predictor's default. An extension that
    names another task's format (``.tsv`` for a tagger) is refused, not ignored."""
    known = ", ".join(("jsonl", *predictor.text_formats))
    if fmt == "auto":
        suffix = Path(output_path).suffix.lstrip(".").lower()
        if suffix == "jsonl" or suffix in predictor.text_formats:
            return suffix
        if suffix in OUTPUT_FORMATS:
            raise ValueError(
                f"--output {output_path}: a {predictor.task} model writes {known}, not "
                f"{suffix}; name the file for one of those or give --output_format"
            )
        return predictor.default_format
    if fmt != "jsonl" and fmt not in predictor.text_formats:
        raise ValueError(f"output format {fmt!r} does not fit a {predictor.task} model: {known}")
    return fmt


def count_lines(path: str) -> int:
    """Lines of a file as ``read_inputs`` sees them (a last line may lack its newline),
    counted in blocks: constant memory."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


@contextmanager
def progress_bar(
    input_path: str, input_format: InputFormat = "auto", enabled: bool = True
) -> Iterator[Any]:
    """A tqdm line on standard error, ``update(n)`` per batch; a no-op when not enabled.

    Text and JSON-lines files are counted first (one record per line) for a
    percentage and time left; CoNLL files and standard input show the count alone.
    """
    from tqdm.auto import tqdm

    conll = input_format == "conll" or (input_format == "auto" and input_path.endswith(".conll"))
    countable = enabled and not conll and Path(input_path).is_file()
    total = count_lines(input_path) if countable else None
    unit = "sentences" if conll else "lines"
    known = "{percentage:3.0f}% {n_fmt}/{total_fmt} " if total is not None else "{n_fmt} "
    bar = tqdm(
        total=total, disable=not enabled, file=sys.stderr, unit=" sentences",
        desc="predict", mininterval=0.5 if sys.stderr.isatty() else 10.0, smoothing=0.1,
        bar_format="{desc}: " + known + unit + " [{elapsed}"
        + ("<{remaining}" if total is not None else "") + ", {rate_fmt}]",
    )  # fmt: skip
    try:
        yield bar
    finally:
        bar.close()
