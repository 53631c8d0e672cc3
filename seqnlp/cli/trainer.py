"""``fit``, ``validate`` and ``test``: LightningCLI subcommands driven by YAML recipes
(given positionally or with ``--config``; several compose, later ones win, and any
value can be overridden as ``--section.key value``)."""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

from jsonargparse import ArgumentError, Namespace
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from seqnlp.checkpoints import CKPT_KEY, hyper_parameters, read_checkpoint, system_class
from seqnlp.data.base import SeqDataModule
from seqnlp.tasks.base import System

TRAINER_COMMANDS = ("fit", "validate", "test")
log = logging.getLogger("seqnlp")


class SeqnlpCLI(LightningCLI):
    """LightningCLI whose systems take their codec from the DataModule."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Vocabularies and label sets (their sizes) come from the data, never from a recipe.
        parser.link_arguments(
            "data", "model.init_args.codec", compute_fn=_codec_of, apply_on="instantiate"
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
        ckpt = read_checkpoint(ckpt_path)  # a missing or damaged file: one line
        meta = ckpt[CKPT_KEY]
        system_class(meta["class_path"])  # refuses a class outside seqnlp before importing it
        wanted_path = self.config[subcommand].get("model.class_path")
        if wanted_path:
            module, _, name = wanted_path.rpartition(".")
            wanted = getattr(importlib.import_module(module), name)
            if meta["task"] != wanted.task:
                raise ValueError(
                    f"{ckpt_path}: checkpoint of a {meta['task']} model given to a "
                    f"{wanted.task} model ({wanted_path} in the recipe)"
                )
        model = {"class_path": meta["class_path"], "init_args": hyper_parameters(ckpt)}
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


def _codec_of(data: SeqDataModule) -> object:
    return data.codec


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
