"""Readers of labelled tagging files: CoNLL-style columns and JSON lines.

Records are ``{"tokens": list[str], "tags": list[str]}``. Bad input raises a
``ValueError`` that names the file, the line number and what was expected.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from seqnlp.data.lines import column_width, iter_json_lines, iter_lines
from seqnlp.data.tagschemes import Scheme, detect_scheme, is_valid_tag, to_iob2

DOCSTART = "-DOCSTART-"
TaggingFormat = Literal["auto", "conll", "jsonl"]


def split_columns(line: str) -> list[str]:
    """Tab-separated when the line has a tab (tokens may then hold spaces), else whitespace."""
    if "\t" in line:
        return [c.strip() for c in line.split("\t")]
    return line.split()


def read_conll(
    path: str | Path,
    token_column: int = 0,
    tag_column: int | None = -1,
    encoding: str = "utf-8",
) -> Iterator[dict[str, list[str]]]:
    """Read a CoNLL-style column file, one token per line, blank lines between sentences.

    ``-DOCSTART-`` lines are dropped wherever they stand, also when one is glued to
    the start of a sentence (as in the CoNLL-2002 Dutch files). With ``tag_column``
    None the records have tokens only. Tags are returned as written.
    """
    needed = column_width(token_column)
    if tag_column is not None:
        needed = max(needed, column_width(tag_column))
    if tag_column is not None:
        needed = max(needed, 2)  # a token and a separate tag: a lone "O" is not token "O" + tag "O"
    tokens: list[str] = []
    tags: list[str] = []
    for lineno, line in iter_lines(path, encoding):
        if not line.strip():
            if tokens:
                yield _record(tokens, tags, tag_column)
                tokens, tags = [], []
            continue
        cols = split_columns(line)
        if cols[0] == DOCSTART:
            # A document boundary ends any open sentence (it may stand glued to one).
            if tokens:
                yield _record(tokens, tags, tag_column)
                tokens, tags = [], []
            continue
        if len(cols) < needed:
            raise ValueError(
                f"{path}:{lineno}: expected at least {needed} columns (token column "
                f"{token_column}, tag column {tag_column}), found {len(cols)}: {line!r}"
            )
        if tag_column is not None and token_column % len(cols) == tag_column % len(cols):
            raise ValueError(
                f"{path}:{lineno}: token column {token_column} and tag column {tag_column} are "
                f"the same field on this line of {len(cols)} columns: {line!r}"
            )
        tokens.append(cols[token_column])
        if tag_column is not None:
            tag = cols[tag_column]
            if not is_valid_tag(tag):
                raise ValueError(
                    f"{path}:{lineno}: expected a tag O, B-X, I-X, E-X or S-X in column "
                    f"{tag_column}, found {tag!r}: {line!r}"
                )
            tags.append(tag)
    if tokens:
        yield _record(tokens, tags, tag_column)


def _record(tokens: list[str], tags: list[str], tag_column: int | None) -> dict[str, list[str]]:
    return {"tokens": tokens, "tags": tags} if tag_column is not None else {"tokens": tokens}


def read_tagging_jsonl(
    path: str | Path, encoding: str = "utf-8", require_tags: bool = True
) -> Iterator[dict[str, list[str]]]:
    """Read JSON lines with ``tokens`` and ``tags`` lists of equal length."""
    for lineno, obj in iter_json_lines(path, encoding):
        if not isinstance(obj, dict) or not _is_str_list(obj.get("tokens")):
            raise ValueError(f"{path}:{lineno}: expected an object with 'tokens': list of strings")
        if not require_tags and "tags" not in obj:
            yield {"tokens": obj["tokens"]}
            continue
        tags = obj.get("tags")
        if not _is_str_list(tags) or len(tags) != len(obj["tokens"]):
            raise ValueError(
                f"{path}:{lineno}: expected 'tags': a list of strings as long as 'tokens' "
                f"({len(obj['tokens'])})"
            )
        bad = [t for t in tags if not is_valid_tag(t)]
        if bad:
            raise ValueError(
                f"{path}:{lineno}: expected tags O, B-X, I-X, E-X or S-X, found {bad[0]!r}"
            )
        yield {"tokens": obj["tokens"], "tags": tags}


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def tagging_format(path: str | Path, fmt: TaggingFormat = "auto") -> Literal["conll", "jsonl"]:
    if fmt != "auto":
        return fmt
    return "jsonl" if str(path).endswith((".jsonl", ".json")) else "conll"


def read_tagging_file(
    path: str | Path,
    fmt: TaggingFormat = "auto",
    token_column: int = 0,
    tag_column: int = -1,
    scheme: Scheme | Literal["auto"] = "auto",
    encoding: str = "utf-8",
) -> list[dict[str, list[str]]]:
    """Read a labelled tagging file whole and convert its tags to IOB2."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file")
    if tagging_format(path, fmt) == "jsonl":
        records = list(read_tagging_jsonl(path, encoding))
    else:
        records = list(read_conll(path, token_column, tag_column, encoding))
    if not records:
        raise ValueError(f"{path}: expected at least one sentence, found none")
    source = detect_scheme(r["tags"] for r in records) if scheme == "auto" else scheme
    return [{"tokens": r["tokens"], "tags": to_iob2(r["tags"], source)} for r in records]
