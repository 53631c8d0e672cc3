"""A model's score on a test set given as its pre-tokenized file and as raw text made
from it (``raw_text.py``), with the model's own pretokenizer and normaliser and, as
the baseline, with seqnlp 0.1's handling of raw text (split on white space, nothing
normalised).

    python scripts/raw_text_scores.py --ckpt_path NER.ckpt --task ner --lang es
    python scripts/raw_text_scores.py --ckpt_path SST2.ckpt --task sst2

NER is scored by entities: on the tokenized file as ``evaluate`` does, and on raw
text by each entity's type and character span against the gold entities' spans in
the detokenized sentence. SST-2 by accuracy. Needs sacremoses and SEQNLP_DATA.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from raw_text import detokenize_tokens, entity_spans, sst2_raw

from seqnlp.checkpoints import load_system
from seqnlp.metrics import entity_scores
from seqnlp.predict import PREDICTORS
from seqnlp.text import RawText, Tokenized


def span_f1(gold: list[set], pred: list[set]) -> float:
    right = sum(len(g & p) for g, p in zip(gold, pred, strict=True))
    found, wanted = sum(map(len, pred)), sum(map(len, gold))
    precision, recall = right / max(found, 1), right / max(wanted, 1)
    return 100 * 2 * precision * recall / max(precision + recall, 1e-12)


class Candidate:
    """Another tokenizer in the pretokenizer's place (``measure_tokenizers.candidates``)."""

    def __init__(self, spans) -> None:
        self.spans = spans


def predictor(system, legacy: bool = False, tokenizer=None, **options):
    """The checkpoint's predictor; ``legacy``: one reading raw text as seqnlp 0.1 did;
    ``tokenizer``: one whose pretokenizer is that candidate (same normaliser)."""
    codec = system.codec
    if legacy or tokenizer is not None:
        codec = copy.copy(codec)
        if legacy:
            codec.raw = RawText() if system.task == "tagging" else None
        else:
            raw = codec.raw
            codec.raw = RawText(Candidate(tokenizer), raw.normalizer, raw.whole)
    return PREDICTORS[system.task](system.network, codec, batch_size=256, **options)


CANDIDATES: dict = {}  # name -> spans function, filled by --candidates


def ner(system, path: Path, lang: str) -> dict[str, float]:
    from seqnlp.data.tagging_readers import read_tagging_file

    gold = read_tagging_file(path)
    raw, spans, entities = [], [], []
    for record in gold:
        text, token_spans = detokenize_tokens(record["tokens"], lang)
        raw.append(text)
        spans.append(token_spans)
        entities.append(entity_spans(record["tags"], token_spans))
    out: dict[str, float] = {"sentences": len(gold)}
    start = time.perf_counter()
    tokenized = predictor(system).predict([r["tokens"] for r in gold])
    out["pretokenized_f1"] = entity_scores([r["tags"] for r in gold],
                                           [r["tags"] for r in tokenized])["f1"]  # fmt: skip
    # the same, by character spans in the detokenized text (a check of the scoring)
    out["pretokenized_char_f1"] = span_f1(
        entities, [entity_spans(r["tags"], s) for r, s in zip(tokenized, spans, strict=True)]
    )
    runs = [("raw_f1", {}), ("raw_f1_seqnlp_0.1", {"legacy": True})]
    runs += [(f"raw_f1 with {name}", {"tokenizer": f}) for name, f in CANDIDATES.items()]
    for name, how in runs:
        records = predictor(system, **how).predict(raw)
        found = [{(e["type"], e["start_char"], e["end_char"]) for e in r["entities"]}
                 for r in records]  # fmt: skip
        out[name] = span_f1(entities, found)
    out["seconds"] = time.perf_counter() - start
    return out


def sst2(system, path: Path) -> dict[str, float]:
    rows = [line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines()]
    labels = [label for label, _ in rows]
    raw = [sst2_raw(text) for _, text in rows]

    def accuracy(records: list[dict]) -> float:
        return 100 * sum(r["label"] == y for r, y in zip(records, labels, strict=True)) / len(rows)

    start = time.perf_counter()
    out: dict[str, float] = {"examples": len(rows)}
    out["pretokenized_accuracy"] = accuracy(
        predictor(system).predict([Tokenized(t) for _, t in rows])
    )
    out["raw_accuracy"] = accuracy(predictor(system).predict(raw))
    out["raw_accuracy_seqnlp_0.1"] = accuracy(predictor(system, legacy=True).predict(raw))
    for name, f in CANDIDATES.items():
        out[f"raw_accuracy with {name}"] = accuracy(predictor(system, tokenizer=f).predict(raw))
    out["seconds"] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--task", choices=["ner", "sst2"], required=True)
    parser.add_argument("--lang", default="es", help="ner: es or nl")
    parser.add_argument("--json", help="also write the scores here")
    parser.add_argument("--candidates", action="store_true",
                        help="also score raw text with the other tokenizers of "
                        "measure_tokenizers.py in the pretokenizer's place")  # fmt: skip
    args = parser.parse_args()
    if args.candidates:
        from measure_tokenizers import candidates

        lang = args.lang if args.task == "ner" else "en"
        CANDIDATES.update((k, v) for k, v in candidates(lang).items() if "spacy" not in k)
    data = Path(os.environ["SEQNLP_DATA"])
    system = load_system(args.ckpt_path)
    if args.task == "ner":
        test = data / "conll2002" / f"{'esp' if args.lang == 'es' else 'ned'}.testb"
        scores = ner(system, test, args.lang)
    else:
        scores = sst2(system, data / "sst2" / "stsa.binary.test")
    scores["raw_text"] = system.codec.raw.describe() if system.codec.raw else "none"
    text = json.dumps(scores, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
