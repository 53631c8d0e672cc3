"""Parity and speed of ONNX Runtime prediction against torch, on a labelled file.

Exports a tagger or classifier checkpoint twice (ONNX fp32, and ONNX with int8
graphs), predicts a labelled file with torch fp32, torch int8 (dynamic
quantization), ONNX Runtime fp32 and ONNX Runtime int8, and prints JSON: each
runtime's scores, how many tags / labels are identical to torch fp32's, the largest
confidence / probability difference, and the prediction speed (inputs per second,
best of ``--passes`` taken in turns, on ``--threads`` threads: torch's intra-op
threads (and, as a further row, ``parallel_batches``), ONNX Runtime's batches at once
(``seqnlp.onnx_runtime.base.OnnxPredictor``); ``cpu_s``: the best pass's process CPU
time, which a busy machine disturbs less than the wall time at one thread)::

    SEQNLP_DATA=../shared/data python scripts/onnx_check.py runs/ner/.../best.ckpt \\
        conll2002_es:validation
    SEQNLP_DATA=../shared/data python scripts/onnx_check.py runs/sentiment/.../best.ckpt \\
        sst2:validation
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import seqnlp
from seqnlp.export.writer import export_model
from seqnlp.predict.base import Predictor, Record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a tagger or classifier checkpoint")
    parser.add_argument("labelled", help="a labelled file or NAME:SPLIT")
    parser.add_argument("--threads", default="2",
                        help="torch and ONNX Runtime threads, or several: 1,2")  # fmt: skip
    parser.add_argument("--passes", type=int, default=3, help="timed passes (the best counts)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--gc_freeze", action="store_true",
                        help="freeze the objects loaded before timing (gc.freeze), so that "
                        "garbage collections scan only what prediction allocates")  # fmt: skip
    parser.add_argument("--work", default=None, help="where the folders go (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        print(json.dumps(check(args, work), indent=1))


def check(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    started = time.perf_counter()
    fp32 = export_model(args.checkpoint, work / "onnx_fp32", onnx=True).folder
    int8 = export_model(args.checkpoint, work / "onnx_int8", onnx=True, quantize="int8").folder
    export_s = time.perf_counter() - started
    threads = [int(n) for n in str(args.threads).split(",")]
    batch = {"batch_size": args.batch_size}
    torch_fp32 = seqnlp.load(fp32, **batch)
    predictors: dict[str, Predictor] = {
        "torch_fp32": torch_fp32,
        "torch_int8": seqnlp.load(fp32, quantize="int8", **batch),
    }
    for n in threads:
        if n > 1:  # torch's own way of using several cores for small recurrent products
            predictors[f"torch_fp32_parallel_batches@{n}"] = seqnlp.load(
                fp32, parallel_batches=n, **batch)  # fmt: skip
        predictors[f"onnx_fp32@{n}"] = seqnlp.load(fp32, runtime="onnx", threads=n, **batch)
        predictors[f"onnx_int8@{n}"] = seqnlp.load(int8, runtime="onnx", threads=n, **batch)
    inputs, gold = torch_fp32.read_labelled(args.labelled)
    report: dict[str, Any] = {
        "checkpoint": str(args.checkpoint), "labelled": args.labelled,
        "task": torch_fp32.task, "inputs": len(inputs), "batch_size": args.batch_size,
        "export_s": round(export_s, 1), "gc_freeze": args.gc_freeze, "quality": {}, "speed": {},
    }  # fmt: skip
    records = {name: p.predict(inputs) for name, p in predictors.items()}
    for name, predictor in predictors.items():
        if "parallel" not in name and (name.endswith("@1") or "@" not in name or len(threads) == 1):
            entry = {"scores": _headline(predictor.score(gold, records[name])),
                     **_agreement(records[name], records["torch_fp32"])}  # fmt: skip
            report["quality"][name.split("@")[0]] = entry
    gc.collect()
    if args.gc_freeze:
        gc.freeze()
    for n in threads:  # the runtimes take turns, pass by pass: a busy machine slows all alike
        torch.set_num_threads(n)
        timed = {k: p for k, p in predictors.items() if "@" not in k or k.endswith(f"@{n}")}
        wall: dict[str, list[float]] = {k: [] for k in timed}
        cpu: dict[str, list[float]] = {k: [] for k in timed}
        for _ in range(args.passes):
            for name, predictor in timed.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                predictor.predict(inputs)
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
        base = min(wall["torch_fp32"])
        report["speed"][f"{n}_threads"] = {
            name.split("@")[0]: {
                "inputs_per_s": round(len(inputs) / min(wall[name]), 1),
                "speedup_vs_torch_fp32": round(base / min(wall[name]), 2),
                "cpu_s": round(min(cpu[name]), 3), "wall_s": [round(s, 3) for s in wall[name]],
            }
            for name in timed
        }  # fmt: skip
    return report


def _agreement(records: list[Record], reference: list[Record]) -> dict[str, Any]:
    """How many records' tags (or labels) equal the reference's, and the largest
    difference of an entity confidence (or class probability) where they do."""
    same, worst = 0, 0.0
    for got, want in zip(records, reference, strict=True):
        if "tags" in want:
            equal = got["tags"] == want["tags"]
            pairs = zip(got["entities"], want["entities"], strict=True) if equal else []
            diffs = [abs(a.get("confidence", 0.0) - b.get("confidence", 0.0)) for a, b in pairs]
        else:
            equal = got["label"] == want["label"]
            probs = got["probabilities"] if equal else {}
            diffs = [abs(p - want["probabilities"][k]) for k, p in probs.items()]
        same += equal
        worst = max([worst, *diffs])
    return {"identical": same, "of": len(reference), "max_confidence_diff": round(worst, 4)}


def _headline(scores: dict[str, Any]) -> dict[str, Any]:
    """The scores worth a line: the overall numbers, not per-type tables."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()
            if isinstance(v, (int, float))}  # fmt: skip


if __name__ == "__main__":
    main()
