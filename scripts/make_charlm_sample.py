"""Make the character language model sample shipped in seqnlp/samples/charlm/.

A deterministic slice of the unlabeled Spanish corpus (../shared/data/unlabeled/es.txt.xz:
19th-century novels of CoNHa19, Public Domain Mark, and Uruguayan laws, Uruguay
open-data licence with attribution): every ``--every``-th paragraph of the corpus, so
that both parts are represented in file order; of those, every ``--validation_every``-th
goes to validation.txt, the others to train.txt. Prints each file's size and SHA-256
(the catalog's checksums in seqnlp/data/text_streams.py).

    python scripts/make_charlm_sample.py --corpus ../shared/data/unlabeled/es.txt.xz
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "seqnlp" / "samples" / "charlm"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="../shared/data/unlabeled/es.txt.xz")
    p.add_argument("--every", type=int, default=550, help="keep every N-th paragraph")
    p.add_argument("--validation_every", type=int, default=8)
    p.add_argument("--max_chars", type=int, default=1200, help="skip longer paragraphs")
    args = p.parse_args()
    kept: list[str] = []
    with lzma.open(args.corpus, "rt", encoding="utf-8") as handle:
        for i, line in enumerate(handle, start=1):
            line = line.rstrip("\n")
            if i % args.every == 0 and line.strip() and len(line) <= args.max_chars:
                kept.append(line)
    splits = {
        "train": [x for i, x in enumerate(kept, 1) if i % args.validation_every],
        "validation": [x for i, x in enumerate(kept, 1) if not i % args.validation_every],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    for name, lines in splits.items():
        data = ("\n".join(lines) + "\n").encode("utf-8")
        path = OUT / f"{name}.txt"
        path.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        print(f"{path}: {len(lines)} paragraphs, {len(data)} bytes, sha256 {digest}")


if __name__ == "__main__":
    main()
