"""Train a recipe once per recurrent variant and seed; score each on the test split.

A variant is a name and recipe overrides (``--model.cell peephole_lstm`` ...). For each
variant and seed: `seqnlp fit` in a folder of its own, then the checkpoint of the best
validation epoch is scored on the test split with `seqnlp.load(...).evaluate`. Each
finished run is appended to --json at once (a long sweep keeps what it has done);
at the end, a Markdown table of mean ± std per variant.

    SEQNLP_DATA=../shared/data python scripts/variants.py --task sst2 --grid cells \
        --seeds 1 2 3 --out /tmp/variants --json docs/variants-sst2.json -- --trainer.max_epochs 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import seqnlp
from seqnlp.data.sources import resolve_named

ROOT = Path(__file__).resolve().parents[1]
TASKS = {  # recipe, run folder under runs/, test source, validation metric, test metric
    "sst2": ("sentiment.yaml", "sentiment", "sst2", "val/accuracy", "accuracy"),
    "conll_es": ("ner.yaml", "ner", "conll2002_es", "val/f1", "f1"),
}
CELLS = ["rnn", "rnn_relu", "gru", "lstm", "peephole_lstm", "cifg_lstm", "layernorm_lstm",
         "layernorm_gru"]  # fmt: skip
GRIDS: dict[str, dict[str, list[str]]] = {
    "cells": {f"{c}-uni": ["--model.cell", c, "--model.bidirectional", "false"] for c in CELLS},
    "cells-bi": {f"{c}-bi": ["--model.cell", c, "--model.bidirectional", "true"] for c in CELLS},
    "depth": {
        f"lstm-{n}layers{'-residual-ln' if res else ''}": [
            "--model.cell", "lstm", "--model.num_layers", str(n), "--model.dropout", "0.2",
            "--model.residual", str(res).lower(), "--model.layer_norm", str(res).lower(),
        ]
        for n in (1, 2, 4, 8) for res in (False, True)
    },
    "dropout": {
        name: ["--model.cell", "lstm", "--model.num_layers", "2", "--model.dropout", "0.3", *extra]
        for name, extra in (
            ("standard", []),
            ("locked", ["--model.dropout_mode", "locked"]),
            ("weight-drop", ["--model.weight_drop", "0.3"]),
        )
    },
}  # fmt: skip


def validation_scores(run: Path, folder: str, metric: str) -> list[float]:
    with open(next(run.glob(f"runs/{folder}/csv/version_*/metrics.csv"))) as handle:
        return [float(r[metric]) for r in csv.DictReader(handle) if r.get(metric)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="sst2")
    parser.add_argument("--grid", choices=sorted(GRIDS), required=True)
    parser.add_argument("--only", nargs="*", help="run only these variants of the grid")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", required=True, help="folder for the runs")
    parser.add_argument("--json", required=True, help="append the results here")
    parser.add_argument("overrides", nargs="*", help="recipe overrides for every run (after --)")
    args = parser.parse_args()
    recipe, folder, dataset, val_metric, test_metric = TASKS[args.task]
    if args.task == "conll_es" and args.grid == "cells":
        parser.error("the tagger's word encoder is always bidirectional: use --grid cells-bi")
    test_source = f"{dataset}:test"
    resolve_named(dataset, "test")  # fails now, in one line, where the data is missing
    out_json = Path(args.json)
    done = json.loads(out_json.read_text()) if out_json.exists() else {"meta": {}, "runs": []}
    done["meta"] = {
        "task": args.task, "recipe": f"recipes/{recipe}", "overrides": args.overrides,
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                 capture_output=True, text=True).stdout.strip(),
    }  # fmt: skip
    for name, variant in GRIDS[args.grid].items():
        if args.only and name not in args.only:
            continue
        if args.task == "conll_es" and "--model.bidirectional" in variant:  # always bidirectional
            flag = variant.index("--model.bidirectional")
            variant = variant[:flag] + variant[flag + 2 :]
        for seed in args.seeds:
            if any(r["variant"] == name and r["seed"] == seed for r in done["runs"]):
                continue
            run = Path(args.out).resolve() / f"{args.task}-{args.grid}-{name}-seed{seed}"
            run.mkdir(parents=True, exist_ok=True)
            command = [
                sys.executable, "-m", "seqnlp", "fit", str(ROOT / "recipes" / recipe),
                "--seed_everything", str(seed), *variant,
                "--trainer.enable_progress_bar", "false", *args.overrides,
            ]  # fmt: skip
            start = time.perf_counter()
            with open(run / "fit.log", "w") as log:
                code = subprocess.run(command, cwd=run, stdout=log, stderr=subprocess.STDOUT)
            wall = time.perf_counter() - start
            if code.returncode != 0:
                print(f"{name} seed {seed}: fit failed, see {run / 'fit.log'}", file=sys.stderr)
                continue
            best = next(run.glob(f"runs/{folder}/tb/version_*/checkpoints/best-*.ckpt"))
            scores = seqnlp.load(str(best), batch_size=256).evaluate(test_source)
            val = validation_scores(run, folder, val_metric)
            row = {
                "grid": args.grid, "variant": name, "seed": seed, "overrides": variant,
                "epochs": len(val), "best_epoch": val.index(max(val)), "val": max(val),
                "test": scores[test_metric], "fit_wall_s": round(wall, 1),
                "s_per_epoch": round(wall / len(val), 1), "checkpoint": str(best),
            }  # fmt: skip
            done["runs"].append(row)
            out_json.write_text(json.dumps(done, indent=1) + "\n")
            print(json.dumps(row), file=sys.stderr, flush=True)
    print_table([r for r in done["runs"] if r["grid"] == args.grid])


def print_table(runs: list[dict]) -> None:
    """Mean ± std (sample) of validation and test scores per variant, and seconds/epoch."""
    print("| variant | seeds | val | test | s / epoch |")
    print("|---|---:|---:|---:|---:|")
    for name in dict.fromkeys(r["variant"] for r in runs):
        rows = [r for r in runs if r["variant"] == name]

        def spread(key: str, rows: list[dict] = rows) -> str:
            values = [r[key] for r in rows]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):.2f} ± {std:.2f}"

        speed = statistics.mean(r["s_per_epoch"] for r in rows)
        print(f"| {name} | {len(rows)} | {spread('val')} | {spread('test')} | {speed:.0f} |")


if __name__ == "__main__":
    main()
