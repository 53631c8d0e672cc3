"""Every scorer: entities (seqeval), classification, translation (sacreBLEU), each
computed once on the predictions of every rank gathered, and a language model's
bits per character or perplexity."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from seqeval.metrics import classification_report

from seqnlp.distributed import rank_and_world


def gather_lists(items: list[Any]) -> list[Any]:
    """Concatenate a per-rank list over all ranks (identity on one process).

    Every rank receives the whole list, in rank order.
    """
    _, world = rank_and_world()
    if world == 1:
        return items
    import torch.distributed as dist

    parts: list[list[Any] | None] = [None] * world
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in (part or [])]


def gather_unique(pairs: list[tuple[int | None, Any]]) -> list[Any]:
    """Gather ``(example_id, output)`` pairs from all ranks; one output per example.

    Under data parallelism the sampler repeats a few batches so that every rank has
    the same number; those repeats share their ``example_id`` and count once. The
    result is in ``example_id`` order, so it is the same on every rank and for any
    number of ranks. Pairs without an id (None) are all kept, in gathered order.
    """
    gathered = gather_lists(pairs)
    if not gathered or gathered[0][0] is None:
        return [output for _, output in gathered]
    unique: dict[int, Any] = {}
    for example_id, output in gathered:
        unique.setdefault(example_id, output)
    return [unique[i] for i in sorted(unique)]


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity precision, recall and F1 (percent), micro over all types and per type.

    gold, pred: IOB2 tag sequences, sentence by sentence (conlleval semantics).
    Keys: ``precision``, ``recall``, ``f1``, ``f1_TYPE``, ``precision_TYPE``,
    ``recall_TYPE``, ``support_TYPE`` for each type in the gold or predicted tags.
    """
    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred, strict=True)):
        raise ValueError("gold and predicted tag sequences differ in number or length")
    report = classification_report(
        [list(g) for g in gold], [list(p) for p in pred], output_dict=True, zero_division=0
    )
    micro = report["micro avg"]
    scores = {
        "precision": 100 * micro["precision"],
        "recall": 100 * micro["recall"],
        "f1": 100 * micro["f1-score"],
    }
    for kind, row in report.items():
        if kind.endswith(" avg"):
            continue
        scores[f"precision_{kind}"] = 100 * row["precision"]
        scores[f"recall_{kind}"] = 100 * row["recall"]
        scores[f"f1_{kind}"] = 100 * row["f1-score"]
        scores[f"support_{kind}"] = float(row["support"])
    return scores


def span_scores(
    gold: Sequence[set[tuple[str, int, int]]], pred: Sequence[set[tuple[str, int, int]]]
) -> dict[str, float]:
    """Entity precision, recall and F1 (percent) by exact ``(type, start_char, end_char)``,
    micro over all types and per type, with the keys of ``entity_scores``: raw text is
    scored by characters, where token boundaries are the model's own."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold texts but {len(pred)} predictions")

    def prf(right: int, found: int, wanted: int) -> tuple[float, float, float]:
        p, r = right / found if found else 0.0, right / wanted if wanted else 0.0
        return 100 * p, 100 * r, 100 * (2 * p * r / (p + r) if p + r else 0.0)

    scores: dict[str, float] = {}
    kinds = sorted({k for spans in [*gold, *pred] for k, _, _ in spans})
    for kind in [None, *kinds]:
        g = [{e for e in spans if kind is None or e[0] == kind} for spans in gold]
        p = [{e for e in spans if kind is None or e[0] == kind} for spans in pred]
        right = sum(len(a & b) for a, b in zip(g, p, strict=True))
        precision, recall, f1 = prf(right, sum(map(len, p)), sum(map(len, g)))
        suffix = "" if kind is None else f"_{kind}"
        scores.update({f"precision{suffix}": precision, f"recall{suffix}": recall,
                       f"f1{suffix}": f1})  # fmt: skip
        if kind is not None:
            scores[f"support_{kind}"] = float(sum(map(len, g)))
    return scores


def classification_scores(
    gold: Sequence[int], pred: Sequence[int], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 (percent), per-class precision / recall / F1 / support and
    the confusion matrix (``confusion[g][p]``: examples of class g predicted as p).

    gold, pred: class ids into ``labels``. A class never predicted and never seen
    has precision, recall and F1 of 0 (it still counts in the macro average).
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    k = len(labels)
    confusion = [[0] * k for _ in range(k)]
    for g, p in zip(gold, pred, strict=True):
        confusion[g][p] += 1
    scores: dict[str, Any] = {
        "accuracy": 100 * sum(confusion[i][i] for i in range(k)) / max(len(gold), 1)
    }
    f1s = []
    for i, label in enumerate(labels):
        tp = confusion[i][i]
        predicted = sum(confusion[r][i] for r in range(k))
        support = sum(confusion[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        scores[f"precision_{label}"] = 100 * precision
        scores[f"recall_{label}"] = 100 * recall
        scores[f"f1_{label}"] = 100 * f1
        scores[f"support_{label}"] = float(support)
    scores["macro_f1"] = 100 * sum(f1s) / max(k, 1)
    scores["confusion"] = confusion
    return scores


def translation_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """sacreBLEU corpus BLEU and chrF of detokenised text, with their signatures
    (``bleu_signature``, ``chrf_signature``); one reference per hypothesis."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} translations but {len(references)} references")
    bleu, chrf = BLEU(), CHRF()
    bleu_score = bleu.corpus_score(list(hypotheses), [list(references)])
    chrf_score = chrf.corpus_score(list(hypotheses), [list(references)])
    return {
        "bleu": bleu_score.score,
        "chrf": chrf_score.score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


def stream_scores(nll: float, predictions: int, level: str) -> dict[str, float]:
    """Scores of ``predictions`` next-token predictions whose negative log-likelihoods
    (nats) sum to ``nll``: ``nll`` per token, and ``bpc`` (``level`` char) or ``ppl``."""
    if predictions < 1:
        raise ValueError("no predictions to score")
    mean = nll / predictions
    main = {"bpc": mean / math.log(2)} if level == "char" else {"ppl": math.exp(mean)}
    return {**main, "nll": mean, "predictions": float(predictions)}
