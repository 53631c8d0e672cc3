"""Write the small German-English sample shipped in the package (seqnlp/samples/translation/).

Pairs are generated from templates and a small lexicon written for seqnlp (no
corpus text): articles agree with their nouns, adjectives precede them, and the
verb moves in subordinate clauses ("..., weil der Hund im Park schläft"), so that
a translator must learn reordering and attention, not a word-for-word table.
For the quickstart recipe and smoke tests, not a benchmark. Deterministic.
"""

from __future__ import annotations

import random
from pathlib import Path

NOUNS = {  # German noun, its article (nominative), English
    "Hund": ("der", "dog"),
    "Katze": ("die", "cat"),
    "Kind": ("das", "child"),
    "Mann": ("der", "man"),
    "Frau": ("die", "woman"),
    "Vogel": ("der", "bird"),
    "Pferd": ("das", "horse"),
    "Junge": ("der", "boy"),
    "Mädchen": ("das", "girl"),
}
ADJECTIVES = {"rote": "red", "kleine": "small", "große": "big", "alte": "old", "junge": "young"}
VERBS = {
    "läuft": "runs",
    "schläft": "sleeps",
    "spielt": "plays",
    "sitzt": "sits",
    "wartet": "waits",
}
PLACES = {
    "im Park": "in the park",
    "am Strand": "on the beach",
    "im Garten": "in the garden",
    "auf der Straße": "on the street",
    "im Haus": "in the house",
}
REASONS = {"weil": "because", "während": "while"}


def phrase(rng: random.Random) -> tuple[str, str]:
    noun = rng.choice(list(NOUNS))
    article, english = NOUNS[noun]
    if rng.random() < 0.5:
        adjective = rng.choice(list(ADJECTIVES))
        return f"{article} {adjective} {noun}", f"the {ADJECTIVES[adjective]} {english}"
    return f"{article} {noun}", f"the {english}"


def clause(rng: random.Random) -> tuple[str, str, str, str, str, str]:
    (de_np, en_np), verb, place = phrase(rng), rng.choice(list(VERBS)), rng.choice(list(PLACES))
    return de_np, verb, place, en_np, VERBS[verb], PLACES[place]


def pair(rng: random.Random) -> tuple[str, str]:
    de_np, verb, place, en_np, en_verb, en_place = clause(rng)
    de, en = f"{de_np} {verb} {place}", f"{en_np} {en_verb} {en_place}"
    if rng.random() < 0.4:  # subordinate clause: the German verb goes last
        de_np2, verb2, place2, en_np2, en_verb2, en_place2 = clause(rng)
        word = rng.choice(list(REASONS))
        de += f" , {word} {de_np2} {place2} {verb2}"
        en += f" {REASONS[word]} {en_np2} {en_verb2} {en_place2}"
    return de[0].upper() + de[1:] + " .", en[0].upper() + en[1:] + " ."


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "seqnlp" / "samples" / "translation"
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(30)
    for split, n in (("train", 2000), ("validation", 200), ("test", 200)):
        pairs = [pair(rng) for _ in range(n)]
        for side, lang in ((0, "de"), (1, "en")):
            (out / f"{split}.{lang}").write_text(
                "".join(p[side] + "\n" for p in pairs), encoding="utf-8"
            )


if __name__ == "__main__":
    main()
