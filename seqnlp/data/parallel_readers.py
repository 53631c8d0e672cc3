"""Readers for parallel text (translation): records ``{"source": str, "target": str}``.

Formats:

- ``files``: two line-aligned files ``{path}.{src_lang}`` and ``{path}.{tgt_lang}``,
  one sentence per line (the Moses / JoeyNMT convention: ``data/train`` with ``de``
  and ``en`` is ``data/train.de`` and ``data/train.en``). The direction follows the
  languages, so the same files serve de->en and en->de;
- ``tsv``: one pair per line, ``source<TAB>target``, no quoting;
- ``jsonl``: one object per line with the source and target fields.

Sentences are kept as written, only the line break is removed. Pairs keep the file
order. Bad input raises ``ValueError`` naming the file, the line and what was
expected.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from seqnlp.data.lines import iter_json_lines, iter_lines

ParallelFormat = Literal["auto", "files", "tsv", "jsonl"]
FORMATS = ("auto", "files", "tsv", "jsonl")


def language_files(path: str | Path, src_lang: str, tgt_lang: str) -> tuple[Path, Path]:
    """The two files of the ``files`` format: ``{path}.{src_lang}`` and ``{path}.{tgt_lang}``."""
    return Path(f"{path}.{src_lang}"), Path(f"{path}.{tgt_lang}")


def parallel_format(
    path: str | Path,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
    fmt: ParallelFormat = "auto",
) -> Literal["files", "tsv", "jsonl"]:
    """The format ``read_parallel`` uses for ``path``; ``auto`` looks at the disk and suffix.

    ``auto`` is ``files`` when both language files exist, else ``tsv`` for a ``.tsv``
    path and ``jsonl`` for a ``.jsonl`` path; anything else raises ``ValueError``
    listing what was looked for.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown parallel format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    looked: list[str] = []
    if src_lang and tgt_lang:
        src_file, tgt_file = language_files(path, src_lang, tgt_lang)
        if src_file.is_file() and tgt_file.is_file():
            return "files"
        state = ", ".join(
            f"{f} ({'found' if f.is_file() else 'missing'})" for f in (src_file, tgt_file)
        )
        looked.append(f"the line-aligned files {state}")
    else:
        looked.append(
            f"the line-aligned files {path}.SRC and {path}.TGT (not tried: give both "
            f"src_lang and tgt_lang, got {src_lang!r} and {tgt_lang!r})"
        )
    suffix = Path(path).suffix.lower()
    if suffix == ".tsv":
        return "tsv"
    if suffix == ".jsonl":
        return "jsonl"
    looked.append(f"{path} as a .tsv or .jsonl file (its name ends in neither)")
    raise ValueError(
        f"{path}: cannot tell the parallel-text format; looked for {' and for '.join(looked)}. "
        f"Give both language files, a .tsv or .jsonl file, or set the format"
    )


def read_parallel(
    path: str,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
    fmt: ParallelFormat = "auto",
    source_field: str = "source",
    target_field: str = "target",
    encoding: str = "utf-8",
) -> list[dict[str, str]]:
    """Read a whole parallel corpus as ``{"source": ..., "target": ...}`` records.

    Args:
        path: the file (``tsv``, ``jsonl``) or the common prefix of the two language
            files (``files``: ``data/train`` for ``data/train.de`` + ``data/train.en``).
        src_lang, tgt_lang: the language suffixes of the ``files`` format; the source
            side is ``{path}.{src_lang}``. Required for it, ignored by the others.
        fmt: ``files``, ``tsv``, ``jsonl``, or ``auto`` (see ``parallel_format``).
        source_field, target_field: the ``jsonl`` fields holding the two sentences.
        encoding: text encoding of the files.

    Raises:
        ValueError: on a missing file, misaligned or malformed input (with the file
            and line), or when no sentence pair is found.
    """
    kind = parallel_format(path, src_lang, tgt_lang, fmt)
    if kind == "files":
        if not src_lang or not tgt_lang:
            raise ValueError(
                f"{path}: the 'files' format needs both src_lang and tgt_lang (the "
                f"suffixes of {path}.SRC and {path}.TGT), got {src_lang!r} and {tgt_lang!r}"
            )
        src_file, tgt_file = language_files(path, src_lang, tgt_lang)
        records = _files(src_file, tgt_file, encoding)
        where = f"{src_file} and {tgt_file}"
    else:
        if not Path(path).is_file():
            raise ValueError(f"{path}: no such file")
        if kind == "tsv":
            records = list(_tsv(path, encoding))
        else:
            records = list(_jsonl(path, source_field, target_field, encoding))
        where = path
    if not records:
        raise ValueError(f"{where}: expected at least one sentence pair, found none")
    return records


def _files(src_file: Path, tgt_file: Path, encoding: str) -> list[dict[str, str]]:
    for file in (src_file, tgt_file):
        if not file.is_file():
            raise ValueError(f"{file}: no such file")
    src = [line for _, line in iter_lines(src_file, encoding)]
    tgt = [line for _, line in iter_lines(tgt_file, encoding)]
    if len(src) != len(tgt):
        raise ValueError(
            f"{src_file} has {len(src)} lines but {tgt_file} has {len(tgt)}: expected "
            f"line-aligned files, one sentence per line, with the same number of lines"
        )
    records: list[dict[str, str]] = []
    for lineno, (source, target) in enumerate(zip(src, tgt, strict=True), start=1):
        src_empty, tgt_empty = not source.strip(), not target.strip()
        if src_empty and tgt_empty:
            continue
        if src_empty or tgt_empty:
            empty, other = (src_file, tgt_file) if src_empty else (tgt_file, src_file)
            raise ValueError(
                f"{empty}:{lineno}: expected a sentence, found an empty line while line "
                f"{lineno} of {other} has one (the files must be line-aligned; leave a "
                f"pair out by emptying the line on both sides)"
            )
        records.append({"source": source, "target": target})
    return records


def _tsv(path: str | Path, encoding: str) -> Iterator[dict[str, str]]:
    for lineno, line in iter_lines(path, encoding):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != 2:
            raise ValueError(
                f"{path}:{lineno}: expected 2 tab-separated columns (source, target), "
                f"found {len(cells)}"
            )
        source, target = cells
        if not source.strip() or not target.strip():
            side = "source" if not source.strip() else "target"
            raise ValueError(
                f"{path}:{lineno}: expected a non-empty source and target, the {side} is empty"
            )
        yield {"source": source, "target": target}


def _jsonl(
    path: str | Path, source_field: str, target_field: str, encoding: str
) -> Iterator[dict[str, str]]:
    for lineno, obj in iter_json_lines(path, encoding):
        if not isinstance(obj, dict):
            raise ValueError(
                f"{path}:{lineno}: expected an object with {source_field!r} and "
                f"{target_field!r}, found {type(obj).__name__}"
            )
        values = []
        for field in (source_field, target_field):
            value = obj.get(field)
            if not isinstance(value, str) or not value.strip():
                found = "no such field" if field not in obj else repr(value)[:60]
                raise ValueError(
                    f"{path}:{lineno}: expected {field!r} to be a non-empty string, found {found}"
                )
            values.append(value)
        yield {"source": values[0], "target": values[1]}
