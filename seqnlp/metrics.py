"""Corpus-level metrics, computed once on the predictions of every rank."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.distributed as dist
from seqeval.metrics import classification_report


def gather_lists(items: list[Any]) -> list[Any]:
    """Concatenate a per-rank list over all ranks (identity on one process).

    Every rank receives the whole list, in rank order.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return items
    parts: list[list[Any] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in (part or [])]


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
