"""Train recipes/sentiment.yaml once per cell type and direction; print the table.

For each of rnn / lstm / gru, uni- and bidirectional: `seqnlp fit` in a folder of
its own (all other settings from the recipe plus any extra overrides given here),
then the best checkpoint (by validation accuracy) is scored on the SST-2 test set.
Writes a Markdown table to stdout and all numbers to --json.

    SEQNLP_DATA=../shared/data python scripts/sst2_cells.py --out runs/sst2-cells \
        --json docs/sst2_cells.json -- --model.pooling max
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

import seqnlp
from seqnlp.data.sources import resolve_named

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "sentiment.yaml"


def val_accuracies(run: Path) -> list[float]:
    with open(next(run.glob("runs/sentiment/csv/version_*/metrics.csv"))) as handle:
        return [float(r["val/accuracy"]) for r in csv.DictReader(handle) if r.get("val/accuracy")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/sst2-cells", help="folder for the runs")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--cells", default="rnn,lstm,gru")
    parser.add_argument("overrides", nargs="*", help="extra recipe overrides (after --)")
    args = parser.parse_args()
    test_path = resolve_named("sst2", "test")
    results = []
    for cell in args.cells.split(","):
        for bidirectional in (False, True):
            name = f"{cell}-{'bi' if bidirectional else 'uni'}"
            run = Path(args.out).resolve() / name
            run.mkdir(parents=True, exist_ok=True)
            command = [
                sys.executable, "-m", "seqnlp", "fit", str(RECIPE), "--model.cell", cell,
                "--model.bidirectional", str(bidirectional).lower(),
                "--trainer.enable_progress_bar", "false", *args.overrides,
            ]  # fmt: skip
            start = time.perf_counter()
            with open(run / "fit.log", "w") as log:
                subprocess.run(command, cwd=run, stdout=log, stderr=subprocess.STDOUT, check=True)
            wall = time.perf_counter() - start
            best = next(run.glob("runs/sentiment/tb/version_*/checkpoints/best-*.ckpt"))
            predictor = seqnlp.load(str(best), batch_size=256)
            network = predictor.network
            scores = predictor.evaluate(test_path)
            accuracies = val_accuracies(run)
            row = {
                "model": name,
                "parameters": sum(p.numel() for p in network.parameters()),
                "encoder_parameters": sum(p.numel() for p in network.encoder.parameters()),
                "embedding_parameters": network.embedding.weight.numel(),
                "epochs": len(accuracies),
                "best_epoch": accuracies.index(max(accuracies)),
                "val_accuracy": max(accuracies),
                "test_accuracy": scores["accuracy"],
                "test_macro_f1": scores["macro_f1"],
                "fit_wall_s": wall,
                "s_per_epoch": wall / len(accuracies),
                "checkpoint": str(best),
            }
            results.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print("| model | parameters (recurrent) | epochs (best) | s / epoch | val acc | test acc |"
          " test macro-F1 |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        cells = [
            r["model"], f"{r['parameters']:,} ({r['encoder_parameters']:,})",
            f"{r['epochs']} ({r['best_epoch']})", f"{r['s_per_epoch']:.0f}",
            f"{r['val_accuracy']:.1f}", f"{r['test_accuracy']:.2f}", f"{r['test_macro_f1']:.2f}",
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    if args.json:
        meta = {
            "overrides": args.overrides, "torch_threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        }  # fmt: skip
        Path(args.json).write_text(json.dumps({"meta": meta, "runs": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
