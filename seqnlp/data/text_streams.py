"""Raw text for language models: named corpora, paragraphs read from plain or compressed
files line by line, and their ids encoded once into a memory-mapped file.

Bad input is a one-line ``ValueError`` naming the file (and the line, for text that does
not decode or a compressed stream that breaks off).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np

from seqnlp.data.catalog import CATALOG
from seqnlp.data.lines import check_encoding, decode_lines
from seqnlp.data.lm_codec import LanguageModelCodec
from seqnlp.data.sources import resolve_named, sha256sum

_NAMED = re.compile(r"^([A-Za-z][\w.-]*):(train|validation|test)$")
#: bump when the id files' layout changes (it keys the cache).
_ID_FORMAT = 1


@dataclass(frozen=True)
class TextSource:
    """A text file to read: as written in the recipe (``spec``), its path, its SHA-256
    (which keys the id cache) and its encoding."""

    spec: str
    path: Path
    sha256: str
    encoding: str = "utf-8"

    @classmethod
    def parse(cls, spec: str, encoding: str = "utf-8") -> TextSource:
        """A file path, or ``NAME:SPLIT`` of a named corpus (checked against its SHA-256)."""
        check_encoding(encoding)
        if spec.startswith("hf:"):
            raise ValueError(f"{spec}: a language model reads text files and named corpora; "
                             f"save the hub split to a text file first")  # fmt: skip
        match = _NAMED.match(spec)
        if match and not Path(spec).exists():
            name, split = match.groups()
            corpus = CATALOG.get(name)
            if corpus is None or corpus.task != "language_model" or split not in corpus.splits:
                known = ", ".join(f"{n}:{s}" for n in text_corpora() for s in CATALOG[n].splits)
                raise ValueError(f"data source {spec!r} is neither an existing file nor a named "
                                 f"corpus of raw text ({known})")  # fmt: skip
            path = resolve_named(name, split, download=False)  # checked against its SHA-256
            return cls(spec, path, corpus.splits[split].sha256, encoding)
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"{spec}: no such text file")
        try:
            return cls(spec, path, sha256sum(path), encoding)
        except OSError as err:
            raise ValueError(f"{spec}: cannot read data file ({err.strerror})") from None


def text_corpora() -> list[str]:
    """The catalog's named corpora of raw text (``seqnlp.data.sources.CATALOG``)."""
    return [name for name, entry in CATALOG.items() if entry.task == "language_model"]


def _open_binary(path: Path) -> IO[bytes]:
    if path.suffix == ".xz":
        return lzma.open(path, "rb")
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def paragraphs(
    source: TextSource, holdout_every: int = 0, part: Literal["all", "kept", "held"] = "all"
) -> Iterator[str]:
    """The non-blank lines of ``source``, read lazily. ``holdout_every`` k: paragraphs
    k, 2k, ... (counting non-blank lines from 1) are ``held``, the others ``kept``."""
    count = 0
    lineno = 0
    try:
        with _open_binary(source.path) as handle:
            for number, line in decode_lines(handle, str(source.spec), source.encoding):
                lineno = number
                if not line.strip():
                    continue
                count += 1
                held = holdout_every > 0 and count % holdout_every == 0
                if part == "all" or held == (part == "held"):
                    yield line
    except (lzma.LZMAError, EOFError, OSError, zlib.error) as err:
        raise ValueError(f"{source.spec}:{lineno + 1}: cannot read the text "
                         f"({type(err).__name__}: {err})") from None  # fmt: skip


def id_dtype(vocabulary: int) -> type[np.unsignedinteger]:
    """The smallest unsigned integer type that holds ids below ``vocabulary``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocabulary <= np.iinfo(dtype).max + 1:
            return dtype
    raise ValueError(f"a vocabulary of {vocabulary} symbols is too large")


def encode_paragraphs(lines: Iterable[str], codec: LanguageModelCodec) -> np.ndarray:
    """The ids of ``lines``, each paragraph followed by the boundary, in reading order."""
    dtype = id_dtype(len(codec))
    if codec.level != "char":
        flat: list[int] = []
        for line in lines:
            flat += codec.encode(line)
            flat.append(codec.boundary_id)
        return np.asarray(flat, dtype=dtype)
    # Characters: one table lookup per code point, the boundary being "\n" itself.
    assert codec.vocab is not None
    singles = {s: i for s, i in codec.vocab.stoi.items() if len(s) == 1}
    table = np.full(max(map(ord, singles)) + 2, codec.vocab.unk_id, dtype=dtype)
    for symbol, i in singles.items():
        table[ord(symbol)] = i
    backward = codec.direction == "backward"
    text = "".join((line[::-1] if backward else line) + "\n" for line in lines)
    if codec.lowercase:
        text = text.lower()
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return table[np.minimum(points, len(table) - 1)]


def encoded_ids(
    source: TextSource, codec: LanguageModelCodec, holdout_every: int,
    part: Literal["all", "kept", "held"], cache_dir: str | None, chunk_lines: int = 20_000,
) -> np.ndarray:  # fmt: skip
    """The ids of ``source``'s paragraphs (``part`` of them), memory-mapped from a file in
    the cache keyed by the file's SHA-256, the codec and the part; encoded on first use
    ``chunk_lines`` lines at a time and written whole (renamed into place)."""
    state = json.dumps(codec.state_dict(), sort_keys=True,
                       default=lambda b: hashlib.sha256(b).hexdigest())  # fmt: skip
    key = hashlib.sha256(
        f"{_ID_FORMAT}|{source.sha256}|{source.encoding}|{holdout_every}|{part}|{state}".encode()
    ).hexdigest()[:32]
    dtype = id_dtype(len(codec))
    folder = Path(cache_dir) if cache_dir else _default_cache()
    path = folder / f"{key}.{np.dtype(dtype).name}.ids"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        work = path.with_name(f".{path.name}.{os.getpid()}.part")
        try:
            with open(work, "wb") as out:
                chunk: list[str] = []
                for line in paragraphs(source, holdout_every, part):
                    chunk.append(line)
                    if len(chunk) == chunk_lines:
                        encode_paragraphs(chunk, codec).tofile(out)
                        chunk = []
                encode_paragraphs(chunk, codec).tofile(out)
            work.replace(path)
        finally:
            work.unlink(missing_ok=True)
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def _default_cache() -> Path:
    import datasets

    return Path(datasets.config.HF_DATASETS_CACHE) / "seqnlp_lm"
