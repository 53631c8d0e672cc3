"""Export a checkpoint as fp32, bf16 and fp16 folders (and int8 for a translator) and
compare them with the checkpoint on a labelled file: sizes, scores, and the share of
inputs whose prediction (tags, label, translation) is identical.

    python scripts/export_check.py --ckpt_path runs/ner/.../best.ckpt \\
        --input conll2002_es:validation --output docs/export-ner.json

Prints JSON (and writes it to ``--output``): the checkpoint's size, each folder's size
and its ratio to the checkpoint, each variant's scores, and ``identical``: the share
of inputs predicted exactly as the checkpoint predicts them.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import seqnlp
from seqnlp.export.writer import export_model

#: the field that must match for a prediction to count as identical, per task.
KEYS = {"tagging": "tags", "classification": "label", "translation": "translation"}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt_path", required=True)
    p.add_argument("--input", required=True, help="labelled file or NAME:SPLIT")
    p.add_argument("--src_lang")
    p.add_argument("--tgt_lang")
    p.add_argument("--output")
    args = p.parse_args()
    reader = {k: v for k, v in (("src_lang", args.src_lang), ("tgt_lang", args.tgt_lang)) if v}
    reference = seqnlp.load(args.ckpt_path)
    task = reference.task
    inputs, gold = reference.read_labelled(args.input, **reader)
    expected = reference.predict(inputs)
    key = KEYS[task]
    ckpt_size = Path(args.ckpt_path).stat().st_size
    report: dict = {
        "checkpoint": str(args.ckpt_path), "input": args.input, "task": task,
        "examples": len(inputs), "checkpoint_bytes": ckpt_size,
        "checkpoint_scores": _main_scores(reference.score(gold, expected)),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip(),
        "machine": platform.processor() or platform.machine(), "variants": {},
    }  # fmt: skip
    variants = [("fp32", {}), ("bf16", {"precision": "bf16"}), ("fp16", {"precision": "fp16"})]
    if task == "translation":
        variants.append(("int8", {"quantize": "int8"}))
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in variants:
            started = time.perf_counter()
            folder = export_model(args.ckpt_path, Path(tmp) / name, **options).folder
            exported = time.perf_counter() - started
            started = time.perf_counter()
            predictor = seqnlp.load(folder)
            loaded = time.perf_counter() - started
            got = predictor.predict(inputs)
            same = sum(a[key] == b[key] for a, b in zip(got, expected, strict=True))
            size = folder_bytes(folder)
            report["variants"][name] = {
                "folder_bytes": size,
                "weights_bytes": (folder / "model.safetensors").stat().st_size,
                "checkpoint_over_folder": round(ckpt_size / size, 2),
                "identical": round(same / max(len(inputs), 1), 4),
                "scores": _main_scores(predictor.score(gold, got)),
                "export_seconds": round(exported, 2), "load_seconds": round(loaded, 2),
            }  # fmt: skip
    text = json.dumps(report, indent=1)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")


def _main_scores(scores: dict) -> dict:
    keep = ("f1", "precision", "recall", "accuracy", "macro_f1", "bleu", "chrf")
    return {k: round(scores[k], 2) for k in keep if k in scores}


if __name__ == "__main__":
    main()
