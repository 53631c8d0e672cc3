"""Readers of labelled tagging files: CoNLL-style columns and JSON lines.

Records are ``{"tokens": list[str], "tags": list[str]}``. Bad input raises a
``ValueError`` that names the file, the line number and what was expected.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from seqnlp.data.lines import column_width, iter_json_lines, iter_lines
from seqnlp.data.tagschemes import Scheme, detect_scheme, is_valid_tag, to_iob2

DOCSTART = "-DOCSTART-"
TaggingFormat = Literal["auto", "conll", "jsonl"]


def conll_cell_problem(cell: str) -> str | None:
    """Why ``cell`` cannot be written as a CoNLL column that ``read_conll`` reads back as
    it is (None when it can): empty, a tab or line break inside, white space around it
    (read back stripped), or ``-DOCSTART-`` (read back as a document boundary)."""
    if not cell:
        return "it is empty"
    if "\t" in cell or "\n" in cell or "\r" in cell:
        return "it holds a tab or a line break"
    if cell != cell.strip():
        return "it has white space around it"
    if cell == DOCSTART:
        return f"{DOCSTART} is read as a document boundary"
    return None


def split_columns(line: str) -> list[str]:
    """Tab-separated when the line has a tab (tokens may then hold spaces), else whitespace.
    White space at the end of the line, tabs included, is not a column."""
    line = line.rstrip()
    if "\t" in line:
        return [c.strip() for c in line.split("\t")]
    return line.split()


def read_conll(
    path: str | Path,
    token_column: int = 0,
    tag_column: int | None = -1,
    encoding: str = "utf-8",
    with_lines: bool = False,
) -> Iterator[dict[str, list]]:
    """Read a CoNLL-style column file, one token per line, blank lines between sentences.

    ``-DOCSTART-`` lines are dropped wherever they stand, also when one is glued to
    the start of a sentence (as in the CoNLL-2002 Dutch files). With ``tag_column``
    None the records have tokens only. Tags are returned as written. ``with_lines``:
    each record also has ``lines``, every token's line number (for error messages).
    """
    needed = column_width(token_column)
    if tag_column is not None:
        needed = max(needed, column_width(tag_column))
    if tag_column is not None:
        needed = max(needed, 2)  # a token and a separate tag: a lone "O" is not token "O" + tag "O"
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []

    def record() -> dict[str, list]:
        out: dict[str, list] = {"tokens": tokens}
        if tag_column is not None:
            out["tags"] = tags
        if with_lines:
            out["lines"] = lines
        return out

    for lineno, line in iter_lines(path, encoding):
        if not line.strip():
            if tokens:
                yield record()
                tokens, tags, lines = [], [], []
            continue
        cols = split_columns(line)
        if cols[0] == DOCSTART:
            # A document boundary ends any open sentence (it may stand glued to one).
            if tokens:
                yield record()
                tokens, tags, lines = [], [], []
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
        lines.append(lineno)
        if tag_column is not None:
            tag = cols[tag_column]
            if not is_valid_tag(tag):
                raise ValueError(
                    f"{path}:{lineno}: expected a tag O, B-X, I-X, E-X or S-X in column "
                    f"{tag_column}, found {tag!r}: {line!r}"
                )
            tags.append(tag)
    if tokens:
        yield record()


def read_tagging_jsonl(
    path: str | Path, encoding: str = "utf-8", require_tags: bool = True,
    with_lines: bool = False,
) -> Iterator[dict[str, list]]:  # fmt: skip
    """Read JSON lines with ``tokens`` and ``tags`` lists of equal length (``with_lines``:
    and each token's line number, ``lines``)."""
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
        yield {"tokens": obj["tokens"], "tags": tags,
               **({"lines": [lineno] * len(tags)} if with_lines else {})}  # fmt: skip


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
    with_lines: bool = False,
) -> list[dict[str, list]]:
    """Read a labelled tagging file whole and convert its tags to IOB2. ``with_lines``:
    each record also has ``lines`` (every token's line number) and ``written`` (its tags
    as the file writes them), for error messages."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file")
    if tagging_format(path, fmt) == "jsonl":
        records = list(read_tagging_jsonl(path, encoding, with_lines=with_lines))
    else:
        records = list(read_conll(path, token_column, tag_column, encoding, with_lines))
    if not records:
        raise ValueError(f"{path}: expected at least one sentence, found none")
    source = detect_scheme(r["tags"] for r in records) if scheme == "auto" else scheme
    if with_lines:
        return [{**r, "tags": to_iob2(r["tags"], source), "written": r["tags"]} for r in records]
    return [{"tokens": r["tokens"], "tags": to_iob2(r["tags"], source)} for r in records]


def is_raw_entity_file(path: str | Path, encoding: str = "utf-8") -> bool:
    """Whether a JSON-lines file holds raw text with character-span entities
    (``{"text", "entities"}``) rather than ``tokens`` and ``tags``."""
    for _, obj in iter_json_lines(path, encoding):
        return isinstance(obj, dict) and "text" in obj and "tokens" not in obj
    return False


def read_raw_entities(path: str | Path, encoding: str = "utf-8") -> list[dict[str, Any]]:
    """Raw text labelled by character spans: JSON lines ``{"text": str, "entities":
    [{"type": str, "start_char": int, "end_char": int}, ...]}`` (end exclusive), as
    ``seqnlp predict`` writes them. Records: ``{"text", "entities", "line"}``, the
    entities a set of ``(type, start_char, end_char)``."""
    records = []
    for lineno, obj in iter_json_lines(path, encoding):
        where = f"{path}:{lineno}"
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise ValueError(f"{where}: expected an object with 'text' (a string) and 'entities'")
        entities = obj.get("entities")
        if not isinstance(entities, list):
            raise ValueError(f"{where}: expected 'entities': a list of objects")
        spans = set()
        for entity in entities:
            ok = isinstance(entity, dict) and isinstance(entity.get("type"), str) and all(
                isinstance(entity.get(k), int) and not isinstance(entity.get(k), bool)
                for k in ("start_char", "end_char")
            )
            if not ok or not 0 <= entity["start_char"] < entity["end_char"] <= len(obj["text"]):
                raise ValueError(
                    f"{where}: expected each entity as {{'type': str, 'start_char': int, "
                    f"'end_char': int}} within the text's {len(obj['text'])} characters, found "
                    f"{str(entity)[:80]}"
                )
            spans.add((entity["type"], entity["start_char"], entity["end_char"]))
        records.append({"text": obj["text"], "entities": spans, "line": lineno})
    if not records:
        raise ValueError(f"{path}: expected at least one text, found none")
    return records
