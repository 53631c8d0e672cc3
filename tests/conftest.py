"""Shared fixtures: tiny tagging data made inside the tests, no network."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

NAMES = ["Ana", "Luis", "Marta", "Pedro", "Elena", "Jorge", "Sofía", "Diego"]
PLACES = ["Madrid", "Lima", "Quito", "Roma", "París", "Bilbao"]
ORGS = ["Iberia", "Repsol", "Telefónica", "Naciones Unidas"]
FILLER = ["el", "la", "de", "que", "ayer", "hoy", "dijo", "vive", "en", "con", "y", "."]


def make_sentence(rng: random.Random) -> list[tuple[str, str]]:
    """A random sentence whose entities follow learnable cues (capitalised names)."""
    out: list[tuple[str, str]] = []
    for _ in range(rng.randint(2, 9)):
        r = rng.random()
        if r < 0.15:
            out.append((rng.choice(NAMES), "B-PER"))
        elif r < 0.25:
            out += [("en", "O"), (rng.choice(PLACES), "B-LOC")]
        elif r < 0.32:
            words = rng.choice(ORGS).split()
            out += [(w, ("B-ORG" if i == 0 else "I-ORG")) for i, w in enumerate(words)]
        else:
            out.append((rng.choice(FILLER), "O"))
    return out


def write_conll(path: Path, n: int, seed: int, sep: str = " ") -> Path:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(n):
            for token, tag in make_sentence(rng):
                handle.write(f"{token}{sep}{tag}\n")
            handle.write("\n")
    return path


@pytest.fixture()
def tiny_ner(tmp_path: Path) -> dict[str, Path]:
    """Train / validation / test CoNLL files of generated sentences."""
    return {
        "train": write_conll(tmp_path / "train.conll", 120, seed=1),
        "validation": write_conll(tmp_path / "dev.conll", 30, seed=2),
        "test": write_conll(tmp_path / "test.conll", 30, seed=3),
    }


def real_data() -> Path | None:
    value = os.environ.get("SEQNLP_DATA")
    return Path(value) if value and (Path(value) / "conll2002" / "esp.train").is_file() else None
