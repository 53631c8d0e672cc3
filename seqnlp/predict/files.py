"""Prediction files: inputs read as records, outputs written atomically, chunks, the
output format and the progress line (``ranks.predict_file`` puts them together)."""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TextIO

from seqnlp.data.lines import check_encoding, decode_lines, iter_json_lines, iter_lines
from seqnlp.data.tagging_readers import read_conll
from seqnlp.predict.base import Predictor

log = logging.getLogger(__name__)
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


def refuse_overwriting_input(input_path: str, output_path: str) -> None:
    """Raise ValueError when the output would replace the input (the same file, by any
    path: a symlink, a hard link, another spelling)."""
    if "-" in (input_path, output_path) or not os.path.exists(output_path):
        return
    if os.path.exists(input_path) and os.path.samefile(input_path, output_path):
        raise ValueError(f"--output {output_path} is the input file {input_path}: writing it "
                         f"would destroy the input; choose another output")  # fmt: skip


def _part_files(target: Path) -> Iterator[tuple[Path, int | None]]:
    """The partial outputs beside ``target`` (``.NAME.PID.part``), each with the process
    that was writing it (None when the name holds no process id)."""
    for part in target.parent.glob(f".{target.name}.*.part"):
        middle = part.name[len(target.name) + 2 : -len(".part")]
        yield part, int(middle) if middle.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_stale_parts(target: Path) -> None:
    """Partial outputs of ``target`` left by runs that were killed (SIGKILL, a power cut)."""
    for part, pid in _part_files(target):
        if pid is None:  # named by seqnlp 0.1.0, without its process
            log.warning("%s is the partial output of an earlier run: remove it unless a run "
                        "is writing %s now", part, target)  # fmt: skip
        elif pid != os.getpid() and not _alive(pid):
            part.unlink(missing_ok=True)
            log.warning("removed %s, the partial output of an interrupted run (process %d)",
                        part, pid)  # fmt: skip


def _new_file_mode(target: Path) -> int:
    """An existing output keeps its permissions; a new one gets what the umask allows."""
    if target.exists():
        return stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_output(path: str) -> Iterator[TextIO]:
    """An output file that appears only once complete: written to ``.NAME.PID.part``
    beside it and renamed over it, so that an interrupted run leaves any previous
    output as it was. ``-`` is standard output.

    A symlink is written through (its target is replaced, the link stays); a device,
    FIFO or socket (``/dev/null``, ``>(...)``) is written to directly. The file keeps
    an existing output's permissions, or gets the umask's. Partial outputs of the same
    file left by killed runs are removed first; the caller's own is removed when it
    fails or is interrupted (SIGINT, and SIGTERM under the command line).
    """
    if path == "-":
        yield sys.stdout
        return
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise ValueError(f"--output {path}: is a directory; give a file name")
    if target.exists() and not target.is_file():  # a device, FIFO or socket
        try:
            handle = open(target, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as err:
            raise ValueError(f"--output {path}: cannot write ({err.strerror})") from None
        with handle:
            yield handle
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_parts(target)
        part = target.parent / f".{target.name}.{os.getpid()}.part"
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"--output {path}: a file stands where a folder of its path "
                         f"should be") from None  # fmt: skip
    except OSError as err:
        raise ValueError(f"--output {path}: cannot write there ({err.strerror})") from None
    try:
        os.chmod(part, _new_file_mode(target))
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


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
