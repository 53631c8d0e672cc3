"""Command line: ``python -m seqnlp {fit,validate,test,predict,evaluate} ...``.

``fit``, ``validate`` and ``test`` are LightningCLI subcommands driven by YAML
recipes (given positionally or with ``--config``; several compose, later ones
win, and any value can be overridden as ``--section.key value``). ``predict`` and
``evaluate`` need only a checkpoint. Wiring only: no model or data logic here.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from jsonargparse import ArgumentError, Namespace
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from seqnlp.data.base import SeqDataModule
from seqnlp.tasks.base import CKPT_KEY, System, _system_class

if TYPE_CHECKING:
    from lightning_fabric import Fabric

TRAINER_COMMANDS = ("fit", "validate", "test")
log = logging.getLogger("seqnlp")


class SeqnlpCLI(LightningCLI):
    """LightningCLI whose models take their vocabularies from the DataModule."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Vocabulary and label-set sizes come from the data, never from a recipe.
        parser.link_arguments(
            "data", "model.init_args.vocab", compute_fn=_vocab_of, apply_on="instantiate"
        )

    def _parse_ckpt_path(self) -> None:
        """Check ``--ckpt_path`` against the recipe's model, then take the model's
        hyper-parameters from the checkpoint (they win over the recipe's).

        Replaces LightningCLI's version, which swaps in whatever model class a
        checkpoint names (a classifier checkpoint given to a tagging recipe then fails
        in argument linking with a many-line message) and rejects checkpoints saved
        by a plain ``Trainer`` (no ``_class_path``). Errors are one-line ValueErrors.
        This hooks a private LightningCLI method (pytorch-lightning 2.6); the tests in
        tests/test_robustness.py fail if a Lightning release stops calling it.
        """
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path == "last":
            ckpt_path = self.config[subcommand]["ckpt_path"] = _last_checkpoint(
                self.config[subcommand]
            )
        if not ckpt_path or ckpt_path in ("best", "hpc") or ckpt_path.startswith("registry"):
            return  # none, or a checkpoint that Lightning finds itself
        ckpt = System.read_checkpoint(ckpt_path)  # a missing or damaged file: one line
        meta = ckpt[CKPT_KEY]
        _system_class(meta["class_path"])  # refuses a class outside seqnlp before importing it
        wanted_path = self.config[subcommand].get("model.class_path")
        if wanted_path:
            module, _, name = wanted_path.rpartition(".")
            wanted = getattr(importlib.import_module(module), name)
            if meta["task"] != wanted.task:
                raise ValueError(
                    f"{ckpt_path}: checkpoint of a {meta['task']} model given to a "
                    f"{wanted.task} model ({wanted_path} in the recipe)"
                )
        hparams = {
            k: v for k, v in ckpt.get("hyper_parameters", {}).items() if not k.startswith("_")
        }
        model = {"class_path": meta["class_path"], "init_args": hparams}
        exit_on_error, self.parser.exit_on_error = self.parser.exit_on_error, False
        try:
            self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)
        except ArgumentError as err:
            first = str(err).strip().splitlines()[0]
            raise ValueError(f"{ckpt_path}: its hyper-parameters do not fit: {first}") from None
        finally:
            self.parser.exit_on_error = exit_on_error


def _last_checkpoint(config: Namespace) -> str | None:
    """The newest ``last*.ckpt`` under the run's directories, for ``--ckpt_path last``.

    Lightning looks only in the new run's own checkpoint folder, which a versioned
    logger makes empty on every restart; this looks under the trainer's
    ``default_root_dir``, every logger's ``save_dir`` and every checkpoint callback's
    ``dirpath``. With none found, training starts afresh with a warning (a job that
    is requeued after preemption uses one command for its first start and its
    restarts).
    """
    trainer = config.get("trainer") or {}
    root = trainer.get("default_root_dir")
    roots = {root} if root else {"lightning_logs", "checkpoints"}  # Lightning's defaults
    for section in ("logger", "callbacks"):
        entries = trainer.get(section)
        for entry in entries if isinstance(entries, list) else []:
            args = entry.get("init_args") if hasattr(entry, "get") else None
            for key in ("save_dir", "dirpath"):
                if args is not None and args.get(key):
                    roots.add(str(args.get(key)))
    found = [p for root in roots for p in Path(root).glob("**/last*.ckpt") if p.is_file()]
    if not found:
        log.warning(
            "--ckpt_path last: no last*.ckpt under %s; starting afresh", ", ".join(sorted(roots))
        )
        return None
    newest = max(found, key=lambda p: p.stat().st_mtime)
    log.info("--ckpt_path last: resuming from %s", newest)
    return str(newest)


def _vocab_of(data: SeqDataModule) -> object:
    return data.vocab


def positional_recipes(argv: Sequence[str]) -> list[str]:
    """``fit a.yaml b.yaml --x 1`` -> ``fit --config a.yaml --config b.yaml --x 1``."""
    args = list(argv)
    if not args or args[0] not in TRAINER_COMMANDS:
        return args
    out = [args[0]]
    i = 1
    while i < len(args) and not args[i].startswith("-"):
        out += ["--config", args[i]]
        i += 1
    return out + args[i:]


def run_trainer_command(argv: Sequence[str]) -> None:
    warnings.filterwarnings("ignore", message=".*configure_optimizers.*will be overridden.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within.*")
    SeqnlpCLI(
        System,
        SeqDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=positional_recipes(argv),
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "seqnlp"},
    )


def predict_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seqnlp predict", description="Label or translate raw text.")
    p.add_argument("--ckpt_path", required=True, help="checkpoint written by `seqnlp fit`")
    p.add_argument("--input", required=True, help="input file, or - for standard input")
    p.add_argument("--output", default="-", help="output file (default: standard output)")
    p.add_argument(
        "--input_format", default="auto", choices=["auto", "text", "conll", "jsonl"],
        help="text: one item per line (tagging: whitespace-tokenised); conll (tagging); jsonl "
        "(field tokens for tagging, text otherwise). auto: by extension, else text",
    )  # fmt: skip
    p.add_argument(
        "--output_format", default="auto", choices=["auto", "jsonl", "conll", "tsv", "text"],
        help="jsonl, conll (tagging), tsv (classification) or text (translation: one "
        "translation per line). auto: by extension; else text for translation, jsonl otherwise",
    )  # fmt: skip
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--no_confidence", action="store_true", help="tagging: skip entity confidences")
    p.add_argument(
        "--n_best", type=int, default=1,
        help="tagging: also the N most probable tag sequences (CRF head); translation: the N "
        "best translations (JSON lines)",
    )  # fmt: skip
    p.add_argument("--beam_size", type=int, default=5, help="translation: beam size (1: greedy)")
    p.add_argument(
        "--length_penalty", type=float, default=None,
        help="translation: GNMT length-penalty alpha (default: the model's)",
    )  # fmt: skip
    _add_quantize(p)
    _add_parallel_batches(p)
    _add_devices(p)
    shown = p.add_mutually_exclusive_group()
    shown.add_argument(
        "--progress", dest="progress", action="store_true", default=None,
        help="show a progress line on standard error (default: when it is a terminal)",
    )  # fmt: skip
    shown.add_argument("--no_progress", dest="progress", action="store_false")
    return p


def _add_parallel_batches(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--parallel_batches", type=_positive_int, default=1,
        help="CPU: predict this many batches at once, in threads sharing torch's threads "
        "(2 on a 2-core machine: two one-thread batches instead of one two-thread batch; "
        "docs/benchmarks.md)",
    )  # fmt: skip


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_quantize(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quantize", choices=["int8"], default=None,
        help="int8 dynamic quantization of the LSTM / GRU / linear layers: faster CPU "
        "prediction, slightly different scores (CPU only; the checkpoint is unchanged)",
    )  # fmt: skip


def _add_devices(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("several devices and nodes (Lightning DDP; README: Many devices)")
    group.add_argument(
        "--devices", type=_devices, default=1,
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


def _devices(value: str) -> int | str:
    """``--devices``: a count, or a string Lightning reads (``auto``, ``0,1``)."""
    try:
        return int(value)
    except ValueError:
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
    from lightning_fabric import Fabric

    fabric = Fabric(accelerator=args.accelerator or "auto", devices=args.devices,
                    num_nodes=args.num_nodes, strategy=args.strategy)  # fmt: skip
    fabric.launch()
    if args.quantize is not None:
        from seqnlp.quantize import check_cpu

        check_cpu(fabric.device)  # refused before loading, on every rank alike
    return fabric


def _finish(fabric: Fabric | None) -> None:
    """Close the process group of ``_launch`` once every rank is done."""
    import torch.distributed as dist

    if fabric is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _column(value: str) -> int | str:
    """A column given by index (possibly negative) or by name."""
    try:
        return int(value)
    except ValueError:
        return value


def evaluate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqnlp evaluate", description="Score a checkpoint on a labelled file."
    )
    p.add_argument("--ckpt_path", required=True)
    p.add_argument("--input", required=True, help="labelled file, or NAME:SPLIT of a named dataset")
    p.add_argument("--batch_size", type=int, default=64)
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
    classification.add_argument("--label_column", type=_column, default=0, help="index or name")
    classification.add_argument("--text_column", type=_column, default=-1, help="index or name")
    classification.add_argument("--header", action=argparse.BooleanOptionalAction, default=None)
    translation = p.add_argument_group("translation")
    translation.add_argument("--src_lang", help="source side: PREFIX.SRC_LANG")
    translation.add_argument("--tgt_lang", help="target side: PREFIX.TGT_LANG")
    translation.add_argument("--beam_size", type=int, default=5, help="1: greedy")
    translation.add_argument("--length_penalty", type=float, default=None)
    _add_quantize(p)
    _add_parallel_batches(p)
    _add_devices(p)
    return p


def run_predict(argv: Sequence[str]) -> None:
    from seqnlp.predict import (
        TaggingPredictor,
        TranslationPredictor,
        load,
        predict_file,
        predict_file_on_every_rank,
    )

    args = predict_parser().parse_args(argv)
    fabric = _launch(args)
    predictor = load(args.ckpt_path, batch_size=args.batch_size, quantize=args.quantize)
    if fabric is not None:
        predictor.system.to(fabric.device)
    if isinstance(predictor, TaggingPredictor):
        confidence = not args.no_confidence
        predictor = TaggingPredictor(predictor.system, args.batch_size, confidence, args.n_best)
    elif isinstance(predictor, TranslationPredictor):
        predictor = TranslationPredictor(predictor.system, args.batch_size, args.beam_size,
                                         args.n_best, args.length_penalty)  # fmt: skip
        if args.output_format == "auto" and not args.output.endswith(".jsonl"):
            args.output_format = "jsonl" if args.n_best > 1 else "text"
    predictor.parallel_batches = args.parallel_batches
    start = time.perf_counter()
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    # Several processes: each predicts its share of every chunk, rank 0 writes them all.
    write = predict_file if fabric is None else predict_file_on_every_rank
    n = write(predictor, args.input, args.output, args.input_format, args.output_format,
              progress=progress)  # fmt: skip
    elapsed = time.perf_counter() - start
    rate = n / max(elapsed, 1e-9)
    if fabric is None or fabric.global_rank == 0:
        print(f"predicted {n} records in {elapsed:.1f}s ({rate:.0f}/s)", file=sys.stderr)
    _finish(fabric)


def run_evaluate(argv: Sequence[str]) -> None:
    from seqnlp.data.sources import parse_source, resolve_named
    from seqnlp.predict import TaggingPredictor, TranslationPredictor, load, share_across_ranks

    args = evaluate_parser().parse_args(argv)
    fabric = _launch(args)
    predictor = load(args.ckpt_path, batch_size=args.batch_size, quantize=args.quantize)
    if fabric is not None:
        predictor.system.to(fabric.device)
    source = parse_source(args.input)
    path = args.input
    options: dict = {"fmt": args.format}
    if isinstance(predictor, TranslationPredictor):
        predictor = TranslationPredictor(predictor.system, args.batch_size, args.beam_size,
                                         length_penalty=args.length_penalty)  # fmt: skip
        single_file = source.kind != "named" and args.input.endswith((".tsv", ".jsonl"))
        if (
            args.format in ("auto", "files")
            and not single_file
            and not (args.src_lang and args.tgt_lang)
        ):
            raise ValueError("a translator is scored on PREFIX.SRC and PREFIX.TGT files: "
                             "give --src_lang and --tgt_lang")  # fmt: skip
        if source.kind == "named":  # both sides verified, read through their common prefix
            sides = [resolve_named(source.name, f"{source.split}.{lang}")
                     for lang in (args.src_lang, args.tgt_lang)]  # fmt: skip
            path = str(sides[0].with_suffix(""))
        options.update(src_lang=args.src_lang, tgt_lang=args.tgt_lang)
    else:
        if source.kind == "named":
            path = str(resolve_named(source.name, source.split))
        if isinstance(predictor, TaggingPredictor):
            options.update(token_column=args.token_column, tag_column=args.tag_column,
                           scheme=args.scheme)  # fmt: skip
        else:
            options.update(label_column=args.label_column, text_column=args.text_column,
                           header=args.header)  # fmt: skip
    predictor.parallel_batches = args.parallel_batches
    if fabric is not None:  # every rank reads the file and predicts its share of it
        predictor = share_across_ranks(predictor)
    scores = predictor.evaluate(path, **options)  # type: ignore[attr-defined]
    _finish(fabric)
    if fabric is not None and fabric.global_rank != 0:
        return  # every rank has the same scores; rank 0 reports them
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}
    text = json.dumps(rounded, indent=2, ensure_ascii=False)
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")


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


USAGE = """usage: seqnlp COMMAND ...

commands:
  fit       RECIPE.yaml [...] [--key value ...]   train from a recipe
  validate  RECIPE.yaml [...] --ckpt_path CKPT     score a checkpoint on the validation split
  test      RECIPE.yaml [...] --ckpt_path CKPT     score a checkpoint on the test split
  evaluate  --ckpt_path CKPT --input FILE          score a checkpoint on a labelled file
  predict   --ckpt_path CKPT --input FILE          label or translate raw text with a checkpoint
  average   CKPT CKPT [...] --output CKPT          average the weights of checkpoints of one run
  attention --ckpt_path CKPT --source TEXT --output PNG   draw a translation's attention

`seqnlp COMMAND --help` lists a command's options."""


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    commands = {
        "predict": run_predict, "evaluate": run_evaluate, "average": run_average,
        "attention": run_attention,
    }  # fmt: skip
    try:
        if args and args[0] in commands:
            commands[args[0]](args[1:])
        else:
            run_trainer_command(args)
    except ValueError as err:
        if os.environ.get("SEQNLP_DEBUG"):
            raise
        # jsonargparse wraps errors raised while linking (e.g. data that cannot be read
        # while fitting the vocabularies) in its own ValueError: report the original.
        while isinstance(err.__cause__, ValueError):
            err = err.__cause__
        print(f"seqnlp: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
