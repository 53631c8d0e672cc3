"""``fit``, ``validate`` and ``test``: LightningCLI subcommands driven by YAML recipes
(given positionally or with ``--config``; several compose, later ones win, and any
value can be overridden as ``--section.key value``)."""

from __future__ import annotations

import importlib
import logging
import re
import shlex
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

import torch
from jsonargparse import ArgumentError, Namespace
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from seqnlp.checkpoints import (
    CKPT_KEY,
    hyper_parameters,
    read_checkpoint,
    system_class,
    upgrade_hparams,
)  # fmt: skip
from seqnlp.data.base import SeqDataModule
from seqnlp.outputs import atomic_output
from seqnlp.tasks.base import System

TRAINER_COMMANDS = ("fit", "validate", "test")
log = logging.getLogger("seqnlp")


class SeqnlpCLI(LightningCLI):
    """LightningCLI whose systems take their codec from the DataModule."""

    #: the command line as given (after ``seqnlp``), for the run's record.
    _argv: ClassVar[list[str]] = []

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Vocabularies and label sets (their sizes) come from the data, never from a recipe.
        parser.link_arguments(
            "data", "model.init_args.codec", compute_fn=_codec_of, apply_on="instantiate"
        )

    # Read and check the data a command needs before Lightning starts (and its loggers
    # make a run folder): bad data then leaves no empty runs/.../version_N behind.
    def before_fit(self) -> None:
        self.datamodule.setup("fit")
        # What a model card says of the run, kept in every checkpoint it writes.
        self.model.run_info = {
            **self.model.run_info,
            "command": " ".join(["python -m seqnlp", *map(shlex.quote, self._argv)]),
            "recipe": self.parser.dump(self.config, skip_none=False, skip_check=True),
            "hardware": hardware(self.trainer),
            "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        }

    def before_validate(self) -> None:
        self.datamodule.setup("validate")

    def before_test(self) -> None:
        self.datamodule.setup("test")

    def after_test(self) -> None:
        """Record the test scores in the checkpoint that was tested (for its model card):
        rewritten atomically, everything else in it kept as it was."""
        path = self.config[self.config["subcommand"]].get("ckpt_path")
        scores = self.model.recorded_scores.get("test")
        if not path or not scores or not Path(path).is_file() or not self.trainer.is_global_zero:
            return
        ckpt = read_checkpoint(path)
        ckpt[CKPT_KEY].setdefault("scores", {})["test"] = scores
        with atomic_output(str(path), binary=True) as handle:
            torch.save(ckpt, handle)
        log.info("test scores recorded in %s", path)

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
        if not subcommand:
            return
        config = self.config[subcommand]
        # Every checkpoint Lightning reads (the one named here, its own pick-up of SLURM's
        # hpc_ckpt_*.ckpt, "best", "registry:...") is read weights-only: even with
        # TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, an explicit weights_only=True unpickles no code.
        if config.get("weights_only") is False:
            raise ValueError(
                "--weights_only false is refused: seqnlp reads checkpoints weights-only, so "
                "that reading one cannot run code (its own checkpoints need nothing else)"
            )
        config["weights_only"] = True
        ckpt_path = config.get("ckpt_path")
        if ckpt_path == "last":
            ckpt_path = config["ckpt_path"] = _last_checkpoint(config)
        elif ckpt_path == "hpc" or (ckpt_path is None and _on_slurm()):
            ckpt_path = config["ckpt_path"] = _hpc_checkpoint(config, ckpt_path == "hpc")
        if not ckpt_path or ckpt_path == "best" or ckpt_path.startswith("registry"):
            return  # none, or one that Lightning finds itself (read weights-only, as above)
        ckpt = read_checkpoint(ckpt_path)  # a missing, damaged or unsafe file: one line
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
        hparams = upgrade_hparams(hyper_parameters(ckpt))
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


def _on_slurm() -> bool:
    from lightning_fabric.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


def _hpc_checkpoint(config: Namespace, asked: bool) -> str | None:
    """The ``hpc_ckpt_N.ckpt`` with the highest N in the trainer's ``default_root_dir``:
    what Lightning resumes from under SLURM when no checkpoint is named (and for
    ``--ckpt_path hpc``). Named here so that seqnlp reads it safely first."""
    root = Path((config.get("trainer") or {}).get("default_root_dir") or ".")
    found = [
        (int(p.stem.removeprefix("hpc_ckpt_")), p)
        for p in root.glob("hpc_ckpt_*.ckpt")
        if p.stem.removeprefix("hpc_ckpt_").isdigit()
    ]
    if not found:
        if asked:
            raise ValueError(f"--ckpt_path hpc: no hpc_ckpt_N.ckpt in {root}")
        return None
    path = str(max(found)[1])
    log.info("resuming from SLURM's %s", path)
    return path


def hardware(trainer: object | None = None) -> str:
    """This machine in a line: CPU model and cores, accelerators, torch's version."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle
                       if line.startswith("model name"))  # fmt: skip
    except (OSError, StopIteration):
        pass
    parts = [f"{cpu}, {os.cpu_count()} cores"]
    if torch.cuda.is_available():
        parts.append(", ".join(torch.cuda.get_device_name(i)
                               for i in range(torch.cuda.device_count())))  # fmt: skip
    if trainer is not None:
        parts.append(f"{getattr(trainer, 'num_devices', 1)} device(s) x "
                     f"{getattr(trainer, 'num_nodes', 1)} node(s)")  # fmt: skip
    return "; ".join([*parts, f"torch {torch.__version__}"])


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
    SeqnlpCLI._argv = list(argv)
    try:
        SeqnlpCLI(
            System,
            SeqDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=positional_recipes(argv),
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "seqnlp", "exit_on_error": False},
        )
    except ArgumentError as err:  # a misspelt key, a value of the wrong type: one line
        command = argv[0] if argv and argv[0] in TRAINER_COMMANDS else "COMMAND"
        raise ValueError(f"{argument_problem(err)} (`seqnlp {command} --help` lists the "
                         f"options)") from None  # fmt: skip


def argument_problem(err: Exception) -> str:
    """jsonargparse's many-line account of a bad recipe value or key, in one line: the
    key (``model.word_dim``), the class it was given to, and what is wrong."""
    keys: list[str] = []
    owner, problem = "", ""
    for raw in str(err).strip().splitlines():
        line = raw.strip().removeprefix("- ")
        if found := re.match(r'Parser key "([^"]+)":', line):
            keys.append(found.group(1))
        elif found := re.match(r"Problem with given class_path '([^']+)':", line):
            owner = found.group(1)
        elif line and not line.startswith(
            ("Does not validate", "Subtypes:", "Errors:", "Expected a <class 'NoneType'>",
             "Given value")
        ):  # fmt: skip
            problem = problem or line
    if not keys:
        return str(err).strip().splitlines()[0]
    where = ".".join(keys) + (f" ({owner})" if owner else "")
    return f"{where}: {problem or str(err).strip().splitlines()[0]}"
