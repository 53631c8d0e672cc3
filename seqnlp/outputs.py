"""Output files that never destroy data: written whole or not at all, through symlinks,
never over their own input, with the umask's permissions.

Every command that writes a file (``predict``, ``evaluate``, ``average``,
``attention``) writes it through ``atomic_output``.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


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
def atomic_output(path: str, binary: bool = False) -> Iterator[IO[Any]]:
    """An output file that appears only once complete: written to ``.NAME.PID.part``
    beside it and renamed over it, so that an interrupted run leaves any previous
    output as it was. ``-`` is standard output. ``binary``: a file of bytes (a
    checkpoint, an image) rather than UTF-8 text.

    A symlink is written through (its target is replaced, the link stays); a device,
    FIFO or socket (``/dev/null``, ``>(...)``) is written to directly. The file keeps
    an existing output's permissions, or gets the umask's. Partial outputs of the same
    file left by killed runs are removed first; the caller's own is removed when it
    fails or is interrupted (SIGINT, and SIGTERM under the command line).
    """
    if path == "-":
        yield sys.stdout.buffer if binary else sys.stdout
        return
    mode, encoding = ("wb", None) if binary else ("w", "utf-8")
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise ValueError(f"--output {path}: is a directory; give a file name")
    if target.exists() and not target.is_file():  # a device, FIFO or socket
        try:
            handle = open(target, mode, encoding=encoding)  # noqa: SIM115
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
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
