"""Parity and speed of ONNX Runtime translation against torch, on a parallel corpus.

Exports a translator checkpoint twice (ONNX fp32, and ONNX with int8 graphs),
translates the sources with torch fp32, torch int8 (dynamic quantization), ONNX
Runtime fp32 and ONNX Runtime int8, greedy and with beam search, and prints JSON:
per search, the share of translations identical to torch's (ONNX fp32 against torch
fp32, ONNX int8 against torch int8 and against torch fp32), each runtime's BLEU and
chrF, and its speed (sentences per second, the best of ``--passes``, torch and ONNX
Runtime each on ``--threads`` threads: by default two batches at once, each on one
thread, the faster way for both on two cores)::

    SEQNLP_DATA=../shared/data python scripts/onnx_translator_check.py \\
        runs/translation/tb/version_0/checkpoints/best-epoch=09.ckpt
    python scripts/onnx_translator_check.py CKPT --data multi30k:test --beams 1 5

The goal for fp32: at least 99 % identical translations, BLEU within 0.1 of torch's.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import seqnlp
from seqnlp.export.writer import export_model
from seqnlp.predict.base import Predictor, Record

RUNTIMES = ("torch_fp32", "torch_int8", "onnx_fp32", "onnx_int8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a translator checkpoint")
    parser.add_argument("--data", default="multi30k:validation",
                        help="parallel data: NAME:SPLIT or a PREFIX of .SRC/.TGT files")
    parser.add_argument("--src_lang", default="de")
    parser.add_argument("--tgt_lang", default="en")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5],
                        help="beam sizes (1: greedy)")  # fmt: skip
    parser.add_argument("--limit", type=int, default=0, help="the first N pairs (0: all)")
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads")
    parser.add_argument("--parallel_batches", type=int, default=2,
                        help="batches at once, sharing the threads (torch's parallel_batches, "
                        "ONNX Runtime's threads: one thread a batch)")  # fmt: skip
    parser.add_argument("--passes", type=int, default=3, help="timed passes (the best counts)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--work", default=None, help="where the folders go (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write the JSON to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("seqnlp.predict").setLevel(logging.ERROR)  # length-limit warnings
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        report = check(args, work)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")


def predictors(args: argparse.Namespace, work: Path, beam: int) -> dict[str, Predictor]:
    """The four runtimes' predictors for one beam size."""
    fp32, int8 = work / "onnx_fp32", work / "onnx_int8"
    options = {"batch_size": args.batch_size, "beam_size": beam}
    onnx = {"runtime": "onnx", "threads": args.parallel_batches, **options}
    torch_options = {"parallel_batches": args.parallel_batches, **options}
    return {
        "torch_fp32": seqnlp.load(fp32, **torch_options),
        "torch_int8": seqnlp.load(fp32, quantize="int8", **torch_options),
        "onnx_fp32": seqnlp.load(fp32, **onnx),
        "onnx_int8": seqnlp.load(int8, quantize="int8", **onnx),
    }


def check(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    started = time.perf_counter()
    fp32 = export_model(args.checkpoint, work / "onnx_fp32", onnx=True)
    int8 = export_model(args.checkpoint, work / "onnx_int8", onnx=True, quantize="int8")
    export_s = time.perf_counter() - started
    config = json.loads((fp32.folder / "config.json").read_text(encoding="utf-8"))
    reader = seqnlp.load(fp32.folder, runtime="onnx", beam_size=1)
    sources, references = reader.read_labelled(args.data, src_lang=args.src_lang,
                                               tgt_lang=args.tgt_lang)  # fmt: skip
    if args.limit:
        sources, references = sources[: args.limit], references[: args.limit]
    report: dict[str, Any] = {
        "checkpoint": str(args.checkpoint), "data": args.data, "pairs": len(sources),
        "threads": args.threads, "parallel_batches": args.parallel_batches,
        "batch_size": args.batch_size, "passes": args.passes,
        "network": config["network"], "prediction": config["prediction"],
        "export": {"seconds": round(export_s, 1),
                   "max_abs_diff_vs_torch": config["onnx"]["max_abs_diff"],
                   "onnx_fp32_bytes": _bytes(fp32.files, ".onnx", "int8"),
                   "onnx_int8_bytes": _bytes(int8.files, ".int8.onnx")},
    }  # fmt: skip
    for beam in args.beams:
        outputs: dict[str, list[Record]] = {}
        speed: dict[str, float] = {}
        for name, predictor in predictors(args, work, beam).items():
            outputs[name], speed[name] = _timed(predictor, sources, args.passes)
        scores = {name: reader.score(references, records) for name, records in outputs.items()}
        report["greedy" if beam == 1 else f"beam{beam}"] = {
            "identical_pct": {f"{a}_vs_{b}": _identical(outputs[a], outputs[b]) for a, b in
                              [("onnx_fp32", "torch_fp32"), ("onnx_int8", "torch_int8"),
                               ("onnx_int8", "torch_fp32"), ("torch_int8", "torch_fp32")]},
            "bleu": {name: round(scores[name]["bleu"], 2) for name in RUNTIMES},
            "chrf": {name: round(scores[name]["chrf"], 2) for name in RUNTIMES},
            "sentences_per_s": {name: round(speed[name], 1) for name in RUNTIMES},
            "speedup_vs_torch_fp32": {name: round(speed[name] / speed["torch_fp32"], 2)
                                      for name in RUNTIMES},
        }  # fmt: skip
        entry = report["greedy" if beam == 1 else f"beam{beam}"]
        entry["fp32_goal_met"] = (
            entry["identical_pct"]["onnx_fp32_vs_torch_fp32"] >= 99.0
            and abs(scores["onnx_fp32"]["bleu"] - scores["torch_fp32"]["bleu"]) <= 0.1
        )
    report["bleu_signature"] = scores["torch_fp32"]["bleu_signature"]
    return report


def _timed(predictor: Predictor, sources: list[str], passes: int) -> tuple[list[Record], float]:
    """The records of ``sources`` and the best sentences per second of ``passes`` runs."""
    best, records = float("inf"), []
    for _ in range(passes):
        started = time.perf_counter()
        records = predictor.predict(sources)
        best = min(best, time.perf_counter() - started)
    return records, len(sources) / best


def _identical(a: list[Record], b: list[Record]) -> float:
    same = sum(x["translation"] == y["translation"] for x, y in zip(a, b, strict=True))
    return round(100.0 * same / max(len(a), 1), 2)


def _bytes(files: dict[str, int], suffix: str, without: str = "\0") -> int:
    """The bytes of the folder's files named ``*suffix`` without ``without`` in the name."""
    return sum(s for name, s in files.items() if name.endswith(suffix) and without not in name)


if __name__ == "__main__":
    main()
