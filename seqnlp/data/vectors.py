"""Pretrained word vectors: files read one vector at a time, the vocabulary extended with
the words that have one, and the vectors copied into embedding rows.

Formats (``vectors_format``; ``auto`` tells them apart by the first bytes):

- ``word2vec``: text, a ``COUNT DIM`` header line, then ``word v1 ... vDIM`` lines;
  fastText's ``.vec`` files are the same (``fasttext`` is an alias).
- ``word2vec_binary``: the same header, then per vector the word, one space and
  DIM little-endian float32 numbers (a newline after each optional), as word2vec's
  ``-binary 1`` and gensim write it.
- ``glove``: text lines without a header; the vector size is the first line's.
- ``fasttext_bin``: a whole fastText model (fastText's ``.bin``, as ``seqnlp vectors
  --model_output`` writes it), read through gensim, whose character n-grams give every
  word a vector (``seqnlp.data.subword_vectors``); ``auto`` knows it by its first bytes.

In text files a line's last DIM fields are its vector and everything before them is
the word, so GloVe's tokens that contain spaces (``. . .``) are read whole. Files may
be gzip, xz or bzip2 compressed (told by their first bytes). Reading streams the file:
only the vectors asked for are ever parsed and kept.
"""

from __future__ import annotations

import bz2
import gzip
import io
import itertools
import logging
import lzma
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np
import torch

from seqnlp.data.subword_vectors import fit_subword_vectors, is_fasttext_model
from seqnlp.tokenization import Vocab

log = logging.getLogger(__name__)

VectorsFormat = Literal[
    "auto", "word2vec", "word2vec_binary", "glove", "fasttext", "fasttext_bin"
]
ExtendVocab = Literal["data", "all", "none"]
_MAGIC = ((b"\x1f\x8b", gzip.open), (b"\xfd7zXZ\x00", lzma.open), (b"BZh", bz2.open))
_MAX_WORD_BYTES = 4096


def open_binary(path: str | Path) -> IO[bytes]:
    """``path`` opened for reading bytes, decompressed when it is gzip, xz or bzip2."""
    with open(path, "rb") as handle:
        head = handle.read(6)
    for magic, opener in _MAGIC:
        if head.startswith(magic):
            return io.BufferedReader(opener(path, "rb"), buffer_size=1 << 20)  # type: ignore[operator]
    return open(path, "rb", buffering=1 << 20)


def _header(line: bytes) -> tuple[int, int] | None:
    """``(count, dim)`` of a word2vec header line, None for any other line."""
    parts = line.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


class VectorFile:
    """A word-vector file, read one vector at a time (never held whole).

    Args:
        path: the file (optionally gzip / xz / bzip2 compressed).
        format: see the module docstring; ``auto`` reads a ``COUNT DIM`` first line as
            word2vec's header (binary when the bytes after it are not a text line of
            DIM numbers) and a first line of a word and numbers as GloVe.

    ``dim`` is the vector size and ``count`` the header's vector count (None for GloVe).
    """

    def __init__(self, path: str | Path, format: VectorsFormat = "auto") -> None:
        self.path = str(path)
        if not Path(path).is_file():
            raise ValueError(f"{path}: no such word-vector file")
        if format == "fasttext_bin" or is_fasttext_model(path):
            raise ValueError(
                f"{path}: a whole fastText model (.bin), not a file of word vectors: give it "
                f"to data.vectors, which reads it with its character n-grams"
            )
        with open_binary(path) as handle:
            first = handle.readline(_MAX_WORD_BYTES * 64)
            after = handle.peek(1 << 16)[: 1 << 16] if hasattr(handle, "peek") else b""
        header = _header(first)
        if format == "fasttext":
            format = "word2vec"
        if format == "auto":
            format = "glove" if header is None else self._sniff(header[1], after)
        if format in ("word2vec", "word2vec_binary") and header is None:
            raise ValueError(
                f"{path}:1: expected a word2vec 'COUNT DIM' header line (vectors_format "
                f"{format}); a file without one is GloVe text: set vectors_format glove or auto"
            )
        if format == "glove" and header is not None:
            raise ValueError(
                f"{path}:1: a 'COUNT DIM' header line, so word2vec or fastText text, not "
                f"GloVe: set vectors_format word2vec (or auto)"
            )
        self.format: VectorsFormat = format
        if header is not None:
            self.count: int | None = header[0]
            self.dim = header[1]
        else:
            self.count = None
            fields = first.rstrip(b"\r\n ").split(b" ")
            if len(fields) < 2:
                raise ValueError(f"{path}:1: expected a word and its numbers (GloVe text)")
            self.dim = len(fields) - 1
        if self.dim < 1:
            raise ValueError(f"{path}:1: the header gives vectors of {self.dim} numbers")

    @staticmethod
    def _sniff(dim: int, after: bytes) -> VectorsFormat:
        """``word2vec`` when the bytes after the header start a text line of DIM numbers."""
        line = after.split(b"\n", 1)[0]
        try:
            fields = line.decode("utf-8").rstrip("\r ").split(" ")
            np.array(fields[-dim:], dtype=np.float32)
        except (UnicodeDecodeError, ValueError):
            return "word2vec_binary"
        return "word2vec" if len(fields) > dim else "word2vec_binary"

    def __repr__(self) -> str:
        return f"VectorFile({self.path!r}, format={self.format!r}, dim={self.dim})"

    def read(
        self, keep: Callable[[str], bool] | None = None, max_vectors: int | None = None
    ) -> Iterator[tuple[int, str, np.ndarray]]:
        """``(index, word, vector)`` of each vector in file order (index from 0), for the
        words ``keep`` accepts (all by default), from the first ``max_vectors`` only
        when given. Vectors are float32 arrays (dim,). Every line is checked for its
        shape; only the numbers of kept lines are parsed."""
        keep = keep or (lambda word: True)
        entries = self._binary() if self.format == "word2vec_binary" else self._text()
        # islice stops before the generator reads line N + 1 (which may be malformed).
        for index, (word, where, payload) in enumerate(itertools.islice(entries, max_vectors)):
            if keep(word):
                yield index, word, self._vector(payload, where)

    def _vector(self, payload: str | bytes, where: str) -> np.ndarray:
        if isinstance(payload, bytes):
            return np.frombuffer(payload, dtype="<f4").astype(np.float32)
        try:
            vector = np.array(payload.split(" "), dtype=np.float32)
        except ValueError:
            bad = next(x for x in payload.split(" ") if not _is_number(x))
            raise ValueError(
                f"{where}: expected {self.dim} numbers after the word, found {bad!r}"
            ) from None
        return vector

    def _text(self) -> Iterator[tuple[str, str, str]]:
        """``(word, "path:line", numbers)`` of each line; the numbers unparsed."""
        dim, path = self.dim, self.path
        seen = 0
        with open_binary(path) as handle:
            for lineno, raw in enumerate(handle, start=1):
                if lineno == 1 and self.count is not None:
                    continue
                try:
                    line = raw.decode("utf-8").rstrip("\r\n ")
                except UnicodeDecodeError as err:
                    raise ValueError(f"{path}:{lineno}: not UTF-8 text ({err.reason})") from None
                if self.count is not None and seen == self.count:
                    if line:  # as word2vec and gensim do, read no more than the header says
                        log.warning("%s:%d: lines after the header's count of %d vectors are "
                                    "not read", path, lineno, self.count)  # fmt: skip
                    return
                word, _, numbers = line.partition(" ")
                if numbers.count(" ") != dim - 1 or not word:  # a word with spaces, or bad
                    fields = line.split(" ")
                    if len(fields) <= dim or not fields[0]:
                        raise ValueError(
                            f"{path}:{lineno}: expected a word and {dim} numbers, "
                            f"found {max(len(fields) - 1, 0)} fields after the first"
                        )
                    word, numbers = " ".join(fields[:-dim]), " ".join(fields[-dim:])
                seen += 1
                yield word, f"{path}:{lineno}", numbers
        if self.count is not None and seen < self.count:
            raise ValueError(f"{path}: the header says {self.count} vectors, the file has {seen}")

    def _binary(self) -> Iterator[tuple[str, str, bytes]]:
        """``(word, "path: vector N", float32 bytes)`` of each binary vector."""
        assert self.count is not None
        size, path = 4 * self.dim, self.path
        with open_binary(path) as handle:
            handle.readline()
            buffer, offset = b"", 0
            for n in range(1, self.count + 1):
                if len(buffer) - offset < _MAX_WORD_BYTES + size + 1:
                    buffer = buffer[offset:] + handle.read(1 << 20)
                    offset = 0
                while buffer[offset : offset + 1] in (b"\n", b"\r"):
                    offset += 1
                space = buffer.find(b" ", offset, offset + _MAX_WORD_BYTES)
                where = f"{path}: vector {n}"
                if space < 0 or len(buffer) - space - 1 < size:
                    if offset >= len(buffer):
                        raise ValueError(f"{where}: the file ends (its header says {self.count})")
                    raise ValueError(f"{where}: expected a word, a space and {size} bytes")
                try:
                    word = buffer[offset:space].decode("utf-8")
                except UnicodeDecodeError:
                    raise ValueError(f"{where}: the word is not UTF-8") from None
                offset = space + 1 + size
                yield word, where, buffer[space + 1 : offset]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass
class PretrainedRows:
    """Vectors for some rows of a vocabulary: ``ids`` (n,) and ``vectors`` (n, dim)
    float32, from ``source``. A training-time value: codecs carry it from the
    DataModule to the system, never into a checkpoint."""

    ids: list[int]
    vectors: np.ndarray
    source: str

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def fit_vectors(
    path: str | Path,
    vocab: Vocab,
    data_words: Iterable[str] = (),
    normalize: Callable[[str], str] | None = None,
    format: VectorsFormat = "auto",
    max_vectors: int | None = None,
    extend: ExtendVocab = "data",
) -> tuple[Vocab, PretrainedRows]:
    """The training vocabulary extended with words that have a vector, and the vectors of
    its rows (Lample et al. 2016; NCRF++), in one pass over the file. A whole fastText
    model gives every word a vector (``fit_subword_vectors``).

    A row's vector is that of its word as the file writes it (after ``normalize``, the
    vocabulary's own normalisation, e.g. digits to 0), else of its lowercase form.
    ``extend``: ``data`` adds the ``data_words`` (the words of every split the data
    knows, normalised) that have a vector; ``all`` also adds every vector read (needs
    ``max_vectors``); ``none`` adds nothing. Added words come in file order, after the
    training words, so ids are the same on every rank. ``max_vectors``: read only the
    file's first N vectors. ``<pad>`` keeps its row of zeros.
    """
    if extend not in ("data", "all", "none"):
        raise ValueError(f"data.extend_vocab must be data, all or none, not {extend!r}")
    if max_vectors is not None and max_vectors < 1:
        raise ValueError(f"data.max_vectors must be at least 1, not {max_vectors}")
    if extend == "all" and max_vectors is None:
        raise ValueError(
            "data.extend_vocab all gives a row to every vector read: set data.max_vectors "
            "(the file's first N vectors) so that the whole file is not kept"
        )
    whole_model = is_fasttext_model(path)
    if format == "fasttext_bin" and not whole_model and Path(path).is_file():
        raise ValueError(f"{path}: not a fastText model (.bin): set vectors_format auto")
    if whole_model and format in ("auto", "fasttext_bin"):
        return fit_subword_vectors(path, vocab, data_words, normalize, max_vectors, extend)
    started = time.perf_counter()
    file = VectorFile(path, format)
    specials = {s for s in (vocab.pad, vocab.unk) if s is not None}
    known = [w for w in vocab.itos if w not in specials]
    extra = [] if extend == "none" else sorted(set(data_words) - set(vocab.stoi) - specials)
    wanted = {*known, *extra}
    wanted |= {w.lower() for w in wanted}
    normalize = normalize or (lambda word: word)
    found: dict[str, tuple[int, np.ndarray]] = {}
    keep = None if extend == "all" else (lambda word: normalize(word) in wanted)
    for index, word, vector in file.read(keep, max_vectors):
        found.setdefault(normalize(word), (index, vector))  # the first of a form wins

    def lookup(word: str) -> tuple[int, np.ndarray] | None:
        return found.get(word) or found.get(word.lower())

    if extend == "all":
        extra = sorted({*extra, *found} - set(vocab.stoi) - specials)
    with_vector = [(hit[0], w) for w in extra if (hit := lookup(w)) is not None]
    added = [w for _, w in sorted(with_vector)]
    if added:
        vocab = Vocab([*known, *added], pad=vocab.pad, unk=vocab.unk)
    rows = [(i, hit[1]) for i, w in enumerate(vocab.itos) if w != vocab.pad
            and (hit := lookup(w)) is not None]  # fmt: skip
    ids = [i for i, _ in rows]
    matrix = np.stack([v for _, v in rows]) if rows else np.zeros((0, file.dim), np.float32)
    log.info(
        "word vectors: %d of %d vocabulary entries from %s (%s, %d dimensions; %d words added "
        "beyond the training vocabulary) in %.1f s", len(ids), len(vocab), path, file.format,
        file.dim, len(added), time.perf_counter() - started,
    )  # fmt: skip
    return vocab, PretrainedRows(ids, matrix, str(path))


@torch.no_grad()
def copy_vectors(
    rows: PretrainedRows, weight: torch.Tensor, size_option: str, scale: float = 1.0
) -> int:
    """Copy ``rows``, times ``scale``, into ``weight`` (vocab, dim); refuse vectors of
    another size, saying which option (``size_option``, e.g. ``model.word_dim``) to set.
    Returns the rows set."""
    if rows.dim != weight.size(1):
        raise ValueError(
            f"{rows.source}: vectors of {rows.dim} numbers for embeddings of "
            f"{weight.size(1)}: set {size_option} {rows.dim} (vectors are not projected)"
        )
    if rows.ids:
        ids = torch.tensor(rows.ids, dtype=torch.long, device=weight.device)
        weight[ids] = scaled_rows(rows.vectors, weight, scale)
    return len(rows.ids)


def scaled_rows(vectors: np.ndarray, like: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``vectors`` (n, dim) as a tensor of ``like``'s device and dtype, times ``scale``:
    the one computation of embedding rows from vectors, so that rows added at
    prediction equal those set when training started, bit for bit."""
    rows = torch.from_numpy(vectors).to(like.device, like.dtype)
    return rows * scale if scale != 1.0 else rows


def std_scale(rows: PretrainedRows, std: float | None) -> float:
    """The one factor that gives ``rows``' vectors, all numbers together, the standard
    deviation ``std`` (1.0 without ``std``, or without vectors)."""
    if std is None or not rows.ids:
        return 1.0
    if std <= 0:
        raise ValueError(f"model.pretrained_std must be positive, not {std}")
    spread = float(rows.vectors.std())
    if spread == 0:
        raise ValueError(f"{rows.source}: every vector number is the same: cannot scale them")
    return std / spread


def initialise_embeddings(
    weight: torch.Tensor,
    vocab: Vocab,
    rows: PretrainedRows | None,
    path: str | None,
    size_option: str,
    std: float | None = None,
) -> float:
    """Start ``weight`` (vocab, dim) from pretrained vectors: the ``rows`` a DataModule
    fit with the vocabulary (``data.vectors``), or the vectors of ``path``
    (``model.pretrained_embeddings``: the training vocabulary only), all multiplied by
    the one factor that gives them the standard deviation ``std`` (``std_scale``).
    Returns that factor (1.0 without ``std`` or without vectors)."""
    if rows is not None and path:
        raise ValueError(
            f"both data.vectors ({rows.source}) and model.pretrained_embeddings ({path}) are "
            f"set: keep data.vectors (it also extends the vocabulary)"
        )
    if path:
        _, rows = fit_vectors(path, vocab, extend="none")
    if rows is None:
        return 1.0
    scale = std_scale(rows, std)
    copy_vectors(rows, weight, size_option, scale)
    return scale


def write_vectors(
    handle: IO[bytes], words: Iterable[str], vectors: np.ndarray, format: VectorsFormat
) -> None:
    """Write ``words`` and their ``vectors`` (n, dim) to a binary ``handle``: ``word2vec``
    (or ``fasttext``) text with its header, ``word2vec_binary`` or ``glove`` text.
    Numbers are written with 6 significant digits in text."""
    vectors = np.asarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if format != "glove":
        handle.write(f"{n} {dim}\n".encode())
    for word, vector in zip(words, vectors, strict=True):
        if format == "word2vec_binary":
            handle.write(word.encode("utf-8") + b" " + vector.astype("<f4").tobytes() + b"\n")
        else:
            numbers = " ".join(f"{x:.6g}" for x in vector.tolist())
            handle.write(f"{word} {numbers}\n".encode())
