"""``average``, ``attention`` and ``export``: tools on checkpoints."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def run_average(argv: Sequence[str]) -> None:
    from seqnlp.checkpoints import average_checkpoints

    description = "Average the weights of checkpoints of one run."
    p = argparse.ArgumentParser(prog="seqnlp average", description=description)
    p.add_argument("checkpoints", nargs="+", help="checkpoint files, e.g. the last N of a run")
    p.add_argument("--output", required=True, help="the averaged checkpoint")
    args = p.parse_args(argv)
    n = average_checkpoints(args.checkpoints, args.output)
    print(f"averaged {n} checkpoints into {args.output}", file=sys.stderr)


def run_attention(argv: Sequence[str]) -> None:
    import torch

    from seqnlp.plot import plot_attention
    from seqnlp.predict import TranslationPredictor, load

    description = "Draw a translation's attention as a PNG heat map."
    p = argparse.ArgumentParser(prog="seqnlp attention", description=description)
    p.add_argument("--ckpt_path", required=True, help="a translator checkpoint")
    p.add_argument("--source", required=True, help="the source sentence")
    p.add_argument("--target", help="a target sentence to attend for (default: translate)")
    p.add_argument("--output", required=True, help="the PNG file")
    args = p.parse_args(argv)
    predictor = load(args.ckpt_path)
    if not isinstance(predictor, TranslationPredictor):
        raise ValueError(f"{args.ckpt_path}: attention maps are for translators")
    found = predictor.attention(args.source, args.target)
    weights = torch.tensor(found["weights"])
    plot_attention(found["source_pieces"], found["target_pieces"], weights, args.output)
    print(found["translation"])


def run_gates(argv: Sequence[str]) -> None:
    import json

    from seqnlp.gate_inspector import gate_report
    from seqnlp.outputs import atomic_output
    from seqnlp.predict import load

    description = ("Draw what a model's recurrent gates do, token by token, on a text: each "
                   "gate's mean activation and the hidden state's norm, per layer.")  # fmt: skip
    p = argparse.ArgumentParser(prog="seqnlp gates", description=description)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt_path", help="a checkpoint written by `seqnlp fit`")
    source.add_argument("--model", help="an exported model folder")
    p.add_argument("--text", required=True, help="the text to read")
    p.add_argument("--output", help="the PNG file to draw")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="write the numbers as JSON to FILE (no FILE: standard output)")  # fmt: skip
    args = p.parse_args(argv)
    if not args.output and not args.json:
        p.error("give --output PNG, --json, or both")
    report = gate_report(load(args.ckpt_path or args.model), args.text)
    if args.output:
        from seqnlp.plot import plot_gates

        plot_gates(report["tokens"], report["layers"], args.output)
    if args.json == "-":
        print(json.dumps(report, ensure_ascii=False))
    elif args.json:
        with atomic_output(args.json) as handle:
            handle.write(json.dumps(report, ensure_ascii=False, indent=1) + "\n")


def run_export(argv: Sequence[str]) -> None:
    from seqnlp.export.writer import export_model

    description = ("Write a checkpoint's model folder (Hugging Face Hub layout: config.json, "
                   "model.safetensors, codec files, recipe, model card; no pickle).")
    p = argparse.ArgumentParser(prog="seqnlp export", description=description)
    p.add_argument("--ckpt_path", required=True, help="checkpoint written by `seqnlp fit`")
    p.add_argument("--output", required=True, help="the folder to write (must not exist)")
    p.add_argument("--format", dest="formats", action="append", choices=["safetensors", "onnx"],
                   help="onnx: also ONNX graphs, for `--runtime onnx` (repeatable; the "
                   "safetensors folder is always written)")  # fmt: skip
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="int8: loaded quantized (torch: translation, where it pays; ONNX: "
                   "int8 graphs beside the fp32 ones, every task)")  # fmt: skip
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="the stored weights' dtype: bf16/fp16 halve the folder; prediction "
                   "computes in float32 on the CPU")  # fmt: skip
    p.add_argument("--name", help="the model's name on its card (default: the folder's name)")
    args = p.parse_args(argv)
    report = export_model(args.ckpt_path, args.output, onnx="onnx" in (args.formats or []),
                          quantize=args.quantize, precision=args.precision,
                          name=args.name)  # fmt: skip
    print(report.summary(), file=sys.stderr)
