"""How well candidate tokenizers turn raw text back into a corpus's tokens.

For CoNLL-2002 (es, nl) test sentences detokenized (``raw_text.detokenize_tokens``):
token-span F1 against the gold tokens, and the share of gold entities whose first
and last characters fall on token boundaries (an entity can only be found whole
then). For SST-2 test sentences made raw (``raw_text.sst2_raw``): the share of
sentences whose tokens, lowercased and PTB-escaped, equal the corpus's. Also the
tokenizer's speed. Needs the candidates installed (spacy, syntok, segtok,
sacremoses) and SEQNLP_DATA.

    python scripts/measure_tokenizers.py --json docs/tokenizers.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from raw_text import PTB_ESCAPES, detokenize_tokens, entity_spans, sst2_raw

Spans = list[tuple[int, int]]


def aligned(text: str, tokens: list[str]) -> Spans:
    """Character spans of ``tokens`` found in order in ``text`` (tokenizers without offsets)."""
    spans, cursor = [], 0
    for token in tokens:
        start = text.find(token, cursor)
        if start < 0:  # the tokenizer rewrote the token (e.g. quotes): skip it
            continue
        spans.append((start, start + len(token)))
        cursor = start + len(token)
    return spans


def candidates(lang: str) -> dict[str, Callable[[str], Spans]]:
    import sacremoses
    import segtok.tokenizer
    import spacy
    import syntok.tokenizer

    nlp = spacy.blank(lang)
    syn = syntok.tokenizer.Tokenizer()
    moses = sacremoses.MosesTokenizer(lang)
    return {
        "whitespace": lambda t: aligned(t, t.split()),
        f"spacy blank:{lang}": lambda t: [(w.idx, w.idx + len(w.text)) for w in nlp(t)],
        "syntok": lambda t: [(w.offset, w.offset + len(w.value)) for w in syn.tokenize(t)],
        "segtok web": lambda t: aligned(t, segtok.tokenizer.web_tokenizer(t)),
        f"sacremoses:{lang}": lambda t: aligned(t, moses.tokenize(t, escape=False)),
    }


def read_conll(path: Path) -> list[tuple[list[str], list[str]]]:
    sentences, tokens, tags = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if tokens:
                sentences.append((tokens, tags))
            tokens, tags = [], []
        elif not line.startswith("-DOCSTART-"):
            cols = line.split()
            tokens.append(cols[0])
            tags.append(cols[-1])
    return sentences


def conll(lang: str, path: Path) -> dict[str, dict[str, float]]:
    raw = []
    for tokens, tags in read_conll(path):
        text, spans = detokenize_tokens(tokens, lang)
        raw.append((text, set(spans), entity_spans(tags, spans)))
    out = {}
    for name, tokenize in candidates(lang).items():
        found = right = gold = ents = whole = 0
        start = time.perf_counter()
        predicted = [set(tokenize(text)) for text, _, _ in raw]
        seconds = time.perf_counter() - start
        for (_, spans, entities), mine in zip(raw, predicted, strict=True):
            found += len(mine)
            gold += len(spans)
            right += len(mine & spans)
            starts, ends = {s for s, _ in mine}, {e for _, e in mine}
            ents += len(entities)
            whole += sum(s in starts and e in ends for _, s, e in entities)
        precision, recall = right / found, right / gold
        out[name] = {
            "token_f1": 100 * 2 * precision * recall / (precision + recall),
            "entities_on_boundaries": 100 * whole / ents,
            "sentences_per_s": len(raw) / seconds,
        }
    return out


def ptb(tokens: list[str]) -> list[str]:
    """Tokens as SST-2 writes them: lowercased, brackets and quotes PTB-escaped."""
    inverse = {v: k for k, v in PTB_ESCAPES.items() if v not in '"'}
    out, opened = [], False
    for token in tokens:
        token = token.lower()
        if token in ('"', "“", "”"):
            token, opened = ("''" if opened else "``"), not opened
        out.append(inverse.get(token, token))
    return out


def sst2(path: Path) -> dict[str, dict[str, float]]:
    rows = [line.split(" ", 1)[1] for line in path.read_text(encoding="utf-8").splitlines()]
    raw = [sst2_raw(text) for text in rows]
    out = {}
    for name, tokenize in candidates("en").items():
        start = time.perf_counter()
        tokens = [[text[s:e] for s, e in tokenize(text)] for text in raw]
        seconds = time.perf_counter() - start
        same = sum(ptb(t) == gold.split() for t, gold in zip(tokens, rows, strict=True))
        out[name] = {"sentences_identical": 100 * same / len(rows),
                     "sentences_per_s": len(rows) / seconds}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    data = Path(os.environ["SEQNLP_DATA"])
    results = {
        "conll2002_es test": conll("es", data / "conll2002" / "esp.testb"),
        "conll2002_nl test": conll("nl", data / "conll2002" / "ned.testb"),
        "sst2 test": sst2(data / "sst2" / "stsa.binary.test"),
    }
    for corpus, rows in results.items():
        print(f"\n{corpus}")
        for name, scores in rows.items():
            print(f"  {name:22s} " + "  ".join(f"{k} {v:8.2f}" for k, v in scores.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
