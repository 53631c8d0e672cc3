"""``predict`` and ``evaluate``: a checkpoint and raw or labelled text, no recipe.

Wiring only: the options are parsed, the processes of ``--devices`` started, and the
predictor built once with every option (``seqnlp.predict.load``); the reading,
predicting, writing and scoring are the predictor's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightning_fabric import Fabric

    from seqnlp.predict import Predictor

#: per task, the ``evaluate`` options that become the reader's options.
READER_OPTIONS = {
    "tagging": ("format:fmt", "token_column", "tag_column", "scheme", "encoding"),
    "classification": ("format:fmt", "label_column", "text_column", "header", "encoding"),
    "translation": ("format:fmt", "src_lang", "tgt_lang", "encoding"),
    "language_model": ("encoding",),
}


def predict_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seqnlp predict", description="Label or translate raw text.")
    _add_model(p)
    p.add_argument("--input", required=True, help="input file, or - for standard input")
    p.add_argument("--output", default="-", help="output file (default: standard output)")
    p.add_argument(
        "--input_format", default="auto", choices=["auto", "text", "document", "conll", "jsonl"],
        help="text: one item per line, raw text (or tokens with --pretokenized); document "
        "(tagging): a line holds several sentences; conll (tagging); jsonl (field tokens for "
        "tagging, text otherwise; see --text_field). auto: by extension, else text",
    )  # fmt: skip
    p.add_argument("--text_field", default=None,
                   help="jsonl input: the field that holds the text (default: tokens for a "
                   "tagger, a string or a list; text otherwise)")  # fmt: skip
    p.add_argument(
        "--pretokenized", action="store_true", default=None,
        help="tagging, classification: each line is tokens separated by white space already, "
        "not raw text (the model's pretokenizer is not used)",
    )  # fmt: skip
    p.add_argument(
        "--output_format", default="auto", choices=["auto", "jsonl", "conll", "tsv", "text"],
        help="jsonl, conll (tagging), tsv (classification) or text (translation: one "
        "translation per line). auto: by extension; else text for translation, jsonl otherwise",
    )  # fmt: skip
    p.add_argument("--batch_size", type=_positive_int, default=64)
    p.add_argument(
        "--no_confidence", dest="confidence", action="store_false", default=None,
        help="tagging: skip entity confidences",
    )  # fmt: skip
    p.add_argument(
        "--n_best", type=_positive_int, default=None,
        help="tagging: also the N most probable tag sequences (CRF head); translation: the N "
        "best translations (JSON lines)",
    )  # fmt: skip
    _add_search(p)
    _add_common(p)
    shown = p.add_mutually_exclusive_group()
    shown.add_argument(
        "--progress", dest="progress", action="store_true", default=None,
        help="show a progress line on standard error (default: when it is a terminal)",
    )  # fmt: skip
    shown.add_argument("--no_progress", dest="progress", action="store_false")
    return p


def evaluate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqnlp evaluate", description="Score a checkpoint on a labelled file."
    )
    _add_model(p)
    p.add_argument("--input", required=True, help="labelled file, or NAME:SPLIT of a named dataset")
    p.add_argument("--batch_size", type=_positive_int, default=64)
    p.add_argument("--output", help="also write the metrics as JSON to this file")
    p.add_argument(
        "--format", default="auto",
        choices=["auto", "conll", "jsonl", "labeltext", "tsv", "csv", "files"],
        help="tagging: conll or jsonl; classification: labeltext, tsv, csv or jsonl; "
        "translation: files (PREFIX.SRC and PREFIX.TGT), tsv or jsonl",
    )  # fmt: skip
    tagging = p.add_argument_group("tagging")
    tagging.add_argument("--token_column", type=int, default=0)
    tagging.add_argument("--tag_column", type=int, default=-1)
    tagging.add_argument("--scheme", default="auto", choices=["auto", "iob1", "iob2", "bioes"])
    classification = p.add_argument_group("classification")
    classification.add_argument("--label_column", type=int_or_str, default=0,
                                help="index or name")  # fmt: skip
    classification.add_argument("--text_column", type=int_or_str, default=-1,
                                help="index or name")  # fmt: skip
    classification.add_argument("--header", action=argparse.BooleanOptionalAction, default=None)
    classification.add_argument(
        "--pretokenized", action=argparse.BooleanOptionalAction, default=None,
        help="the texts are tokenized already (default: as the model's training text was)",
    )  # fmt: skip
    translation = p.add_argument_group("translation")
    translation.add_argument("--src_lang", help="source side: PREFIX.SRC_LANG")
    translation.add_argument("--tgt_lang", help="target side: PREFIX.TGT_LANG")
    _add_search(translation)
    _add_common(p)
    return p


def _add_search(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--beam_size", type=_positive_int, default=None,
                   help="translation: beam size (default 5; 1: greedy)")  # fmt: skip
    p.add_argument("--length_penalty", type=float, default=None,
                   help="translation: GNMT length-penalty alpha (default: the model's)")


def _add_model(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--ckpt_path", help="checkpoint written by `seqnlp fit`")
    which.add_argument("--model", help="model folder written by `seqnlp export`, hf://ORG/NAME "
                       "(a folder on the Hugging Face Hub), or a checkpoint")  # fmt: skip
    p.add_argument(
        "--runtime", choices=["torch", "onnx"], default="torch",
        help="onnx: run an exported folder's ONNX graphs with ONNX Runtime and NumPy "
        "(`seqnlp export --format onnx`; pip install 'seqnlp[onnx]'); torch is not imported",
    )  # fmt: skip
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="--runtime onnx: batches predicted at once, each on one thread "
                   "(default: ONNX Runtime's own threading)")  # fmt: skip
    p.add_argument("--vectors", default=None,
                   help="taggers: word vectors (a file as data.vectors takes, or a whole "
                   "fastText model .bin) that give the input's words the model lacks rows "
                   "of their own, as extend_vocab did in training")  # fmt: skip


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoding", default="utf-8",
                   help="the input's text encoding (default utf-8; e.g. latin-1, cp1252)")
    p.add_argument(
        "--quantize", choices=["int8"], default=None,
        help="int8 dynamic quantization of the LSTM / GRU / linear layers: faster CPU "
        "prediction, slightly different scores (CPU only; the checkpoint is unchanged)",
    )  # fmt: skip
    p.add_argument(
        "--parallel_batches", type=_positive_int, default=1,
        help="CPU: predict this many batches at once, in threads sharing torch's threads "
        "(2 on a 2-core machine: two one-thread batches instead of one two-thread batch; "
        "docs/benchmarks.md)",
    )  # fmt: skip
    group = p.add_argument_group("several devices and nodes (Lightning DDP; README: Many devices)")
    group.add_argument(
        "--devices", type=int_or_str, default=1,
        help="processes per node, one per device: N, a list such as 0,1, or auto (default 1: "
        "this process alone)",
    )  # fmt: skip
    group.add_argument(
        "--num_nodes", type=int, default=1, help="nodes (processes started by torchrun or SLURM)"
    )
    group.add_argument(
        "--accelerator", choices=["auto", "cpu", "gpu", "cuda", "mps"], default=None,
        help="default: auto when --devices or --num_nodes asks for more than one process, "
        "else the CPU",
    )  # fmt: skip
    group.add_argument("--strategy", choices=["ddp"], default="ddp", help="(default: ddp)")


def int_or_str(text: str) -> int | str:
    """A number, or else the text as it is: ``--devices`` (a count, or ``auto`` / ``0,1``
    for Lightning to read) and the classification columns (an index or a name)."""
    try:
        return int(text)
    except ValueError:
        return text


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _launch(args: argparse.Namespace) -> Fabric | None:
    """The processes that ``--devices`` / ``--num_nodes`` / ``--accelerator`` ask for.

    None for the default, this process alone on the CPU. Otherwise Lightning Fabric
    starts this command again once per further local device, as the Trainer does
    (or joins the processes that torchrun or SLURM started), and sets up the process
    group; the caller puts the model on ``fabric.device``.
    """
    if args.devices == 1 and args.num_nodes == 1 and args.accelerator is None:
        return None
    if args.runtime == "onnx":
        raise ValueError("--runtime onnx runs in this process on the CPU: --devices, "
                         "--num_nodes and --accelerator are for the torch runtime")  # fmt: skip
    from lightning_fabric import Fabric  # shipped inside the pytorch-lightning package

    fabric = Fabric(accelerator=args.accelerator or "auto", devices=args.devices,
                    num_nodes=args.num_nodes, strategy=args.strategy)  # fmt: skip
    fabric.launch()
    return fabric


def _finish(fabric: Fabric | None) -> None:
    """Close the process group of ``_launch`` once every rank is done."""
    if fabric is None:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _load(args: argparse.Namespace, fabric: Fabric | None, **task_options: Any) -> Predictor:
    """The predictor, built once with every option given on the command line."""
    from seqnlp import load

    given = {k: v for k, v in task_options.items() if v is not None}
    if args.vectors is not None:
        given["vectors"] = args.vectors
    if args.runtime == "onnx":
        if args.parallel_batches != 1:
            raise ValueError("--parallel_batches is for the torch runtime (ONNX Runtime uses "
                             "its own threads)")  # fmt: skip
        return load(args.model or args.ckpt_path, runtime="onnx", quantize=args.quantize,
                    batch_size=args.batch_size, threads=args.threads, **given)  # fmt: skip
    if args.threads is not None:
        raise ValueError("--threads is for --runtime onnx (torch: --parallel_batches)")
    return load(args.model or args.ckpt_path, device=fabric.device if fabric is not None else
                "cpu", quantize=args.quantize, batch_size=args.batch_size,
                parallel_batches=args.parallel_batches, **given)  # fmt: skip


def run_predict(argv: Sequence[str]) -> None:
    from seqnlp.predict import loaded_objects_frozen, predict_file

    args = predict_parser().parse_args(argv)
    fabric = _launch(args)
    documents = args.input_format == "document"
    predictor = _load(args, fabric, confidence=args.confidence, n_best=args.n_best,
                      beam_size=args.beam_size, length_penalty=args.length_penalty,
                      pretokenized=args.pretokenized, documents=documents or None)  # fmt: skip
    start = time.perf_counter()
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    # Several processes: each predicts its share of every chunk, rank 0 writes them all.
    input_format = "text" if documents else args.input_format
    with loaded_objects_frozen():
        n = predict_file(predictor, args.input, args.output, input_format, args.output_format,
                         progress=progress, encoding=args.encoding,
                         jsonl_field=args.text_field)  # fmt: skip
    elapsed = time.perf_counter() - start
    rate = n / max(elapsed, 1e-9)
    if fabric is None or fabric.global_rank == 0:
        print(f"predicted {n} records in {elapsed:.1f}s ({rate:.0f}/s)", file=sys.stderr)
    _finish(fabric)


def run_evaluate(argv: Sequence[str]) -> None:
    from seqnlp.outputs import atomic_output, refuse_overwriting_input
    from seqnlp.predict import loaded_objects_frozen

    args = evaluate_parser().parse_args(argv)
    if args.output:
        refuse_overwriting_input(args.input, args.output)
    fabric = _launch(args)
    predictor = _load(args, fabric, beam_size=args.beam_size, length_penalty=args.length_penalty,
                      pretokenized=args.pretokenized)
    reader_options = {}
    for option in READER_OPTIONS[predictor.task]:
        name, _, keyword = option.partition(":")
        reader_options[keyword or name] = getattr(args, name)
    writes = args.output and (fabric is None or fabric.global_rank == 0)
    with ExitStack() as stack:
        # Opened before scoring, so that an output that cannot be written fails at once;
        # it appears only once the scores are in it.
        out = stack.enter_context(atomic_output(args.output)) if writes else None
        # Several processes: every rank reads the file and predicts its share of it.
        if fabric is not None:
            from seqnlp.predict import RankShared

            scorer = RankShared(predictor)
        else:
            scorer = predictor
        with loaded_objects_frozen():
            scores = scorer.evaluate(args.input, **reader_options)
        _finish(fabric)
        if fabric is not None and fabric.global_rank != 0:
            return  # every rank has the same scores; rank 0 reports them
        rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}
        text = json.dumps(rounded, indent=2, ensure_ascii=False)
        print(text)
        if out is not None:
            out.write(text + "\n")
