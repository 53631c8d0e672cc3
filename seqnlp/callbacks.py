"""Training callbacks that the recipes use beside Lightning's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.trainer.states import TrainerFn


class LastCheckpoint(Checkpoint):
    """Keep ``last.ckpt`` the newest state of a fit, for ``--ckpt_path last``.

    Saved every ``every_n_train_steps`` optimiser steps (0: never mid-epoch), at the
    end of every training epoch (after its validation) and when training ends, so a
    killed run loses at most that many steps. Lightning's
    ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only when it also saves
    a top-k checkpoint (when the monitored metric improved), so its ``last`` can be
    epochs old; this one is always the latest. A ``Checkpoint``
    subclass, so Lightning runs it after the other callbacks (early stopping's state
    is then current) and, like ``ModelCheckpoint``, in the logger's version folder:
    ``SAVE_DIR/NAME/VERSION/checkpoints/last.ckpt``. Writes are atomic
    (``trainer.save_checkpoint`` writes a temporary file and renames it).

    Args:
        every_n_train_steps: steps between mid-epoch saves.
        dirpath: the folder (default: the first logger's version folder, as above).
        filename: the file name.
    """

    def __init__(
        self, every_n_train_steps: int = 0, dirpath: str | None = None, filename: str = "last.ckpt"
    ) -> None:
        if every_n_train_steps < 0:
            raise ValueError(f"every_n_train_steps must be >= 0, got {every_n_train_steps}")
        self.every_n_train_steps = every_n_train_steps
        self.dirpath = dirpath
        self.filename = filename
        self._saved_at_step = -1

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = trainer.strategy.broadcast(str(_version_dir(trainer) / "checkpoints"))

    @property
    def path(self) -> Path:
        return Path(self.dirpath or ".") / self.filename

    def _save(self, trainer: pl.Trainer) -> None:
        fitting = trainer.state.fn == TrainerFn.FITTING
        if not fitting or trainer.sanity_checking or trainer.fast_dev_run:
            return
        if self._saved_at_step == trainer.global_step:
            return
        self._saved_at_step = trainer.global_step
        # every rank takes part; rank 0 writes. The whole state (optimiser, loops), said
        # explicitly: Lightning logs a line on every save that leaves it unset.
        trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
    ) -> None:
        n = self.every_n_train_steps
        if n and trainer.global_step % n == 0:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # At the epoch's end, after its validation and after early stopping's check (a
        # Checkpoint runs last): where ModelCheckpoint saves, the state that Lightning
        # resumes from as a finished epoch. (Saved at validation end instead, a resumed
        # run would replay the epoch's end without its validation metrics.)
        self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"dirpath": self.dirpath, "every_n_train_steps": self.every_n_train_steps}


def _version_dir(trainer: pl.Trainer) -> Path:
    """The folder that ``ModelCheckpoint`` would save in, less ``checkpoints``."""
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    save_dir = logger.save_dir or trainer.default_root_dir
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(save_dir) / str(logger.name) / version
