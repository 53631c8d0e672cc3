"""Write the small sentiment sample shipped in the package (seqnlp/samples/sentiment/).

Reviews are generated from templates and word lists written for seqnlp (no corpus
text), "label text" lines with labels 0 (negative) and 1 (positive). Negation and
contrast ("not good", "good acting but a dull story") make word counting
insufficient, so a recurrent model has something to learn. For the quickstart
recipe and smoke tests, not a benchmark. Deterministic.
"""

from __future__ import annotations

import random
from pathlib import Path

POS = [
    "good",
    "great",
    "wonderful",
    "moving",
    "funny",
    "clever",
    "charming",
    "superb",
    "gripping",
    "beautiful",
    "fresh",
    "delightful",
]
NEG = [
    "bad",
    "dull",
    "boring",
    "awful",
    "tedious",
    "clumsy",
    "flat",
    "lifeless",
    "stale",
    "messy",
    "predictable",
    "weak",
]
THINGS = [
    "film",
    "movie",
    "story",
    "script",
    "cast",
    "ending",
    "soundtrack",
    "acting",
    "direction",
    "dialogue",
]
OPENERS = ["", "honestly ,", "in the end ,", "overall ,", "sadly ,", "frankly ,"]


def review(rng: random.Random) -> tuple[int, str]:
    label = rng.randint(0, 1)
    good, bad = (POS, NEG) if label else (NEG, POS)
    thing, other = rng.sample(THINGS, 2)
    form = rng.randrange(4)
    if form == 0:
        text = f"the {thing} is {rng.choice(good)}"
    elif form == 1:  # negated opposite
        text = f"the {thing} is not {rng.choice(bad)} at all"
    elif form == 2:  # contrast: the clause after "but" decides
        text = f"the {other} is {rng.choice(bad)} but the {thing} is {rng.choice(good)}"
    else:
        text = f"a {rng.choice(good)} {thing} with a {rng.choice(good)} {other}"
    opener = rng.choice(OPENERS)
    return label, f"{opener} {text} .".strip()


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "seqnlp" / "samples" / "sentiment"
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(2013)
    for split, n in (("train", 800), ("validation", 200), ("test", 200)):
        with open(out / f"{split}.txt", "w", encoding="utf-8") as handle:
            for _ in range(n):
                label, text = review(rng)
                handle.write(f"{label} {text}\n")


if __name__ == "__main__":
    main()
