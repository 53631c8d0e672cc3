"""What every seqnlp system (LightningModule) shares: checkpoints that stand alone."""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision, Precision
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import GradClipAlgorithmType

from seqnlp.distributed import rank_and_world
from seqnlp.metrics import gather_unique
from seqnlp.tasks import rng

CKPT_KEY = "seqnlp"
#: per-rank random state of a training checkpoint (see seqnlp/tasks/rng.py).
RNG_KEY = "seqnlp_rng"


class System(pl.LightningModule):
    """Base of the task systems.

    A subclass takes its vocabularies as ``vocab`` (linked from the DataModule by
    the CLI) and its hyper-parameters as typed arguments. Its checkpoints carry the
    vocabularies and the task name, so ``System.load`` rebuilds a working model
    from the file alone.
    """

    task: ClassVar[str] = ""
    vocab_type: ClassVar[type]
    #: hyper-parameters that point at training-time files, cleared when loading.
    training_only_hparams: ClassVar[tuple[str, ...]] = ()

    #: corpus-level metrics shown in the progress bar (logged as ``stage/name``).
    main_metrics: ClassVar[tuple[str, ...]] = ()

    vocab: Any

    def __init__(self) -> None:
        super().__init__()
        self._eval_outputs: list[Any] = []
        self._rng_to_restore: list[dict[str, Any]] | None = None

    # -- what a task provides ----------------------------------------------------
    def training_loss(self, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def evaluate_batch(self, batch: Any) -> tuple[torch.Tensor, list[Any]]:
        """The batch's loss and one output per example, for ``corpus_scores``."""
        raise NotImplementedError

    def corpus_scores(self, outputs: list[Any], stage: str) -> dict[str, float]:
        """Metrics over the outputs of the whole validation or test set."""
        raise NotImplementedError

    # -- shared loop hooks ---------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.training_loss(batch)
        # Every rank sees every rank's loss (one tiny all-gather a step under DDP), so all
        # ranks stop together at a step where any loss is not finite, rather than the
        # others waiting in the gradient all-reduce for a rank that stopped.
        own = loss.detach().reshape(1)
        parts = [own]
        _, world = rank_and_world()
        if world > 1:
            parts = [torch.empty_like(own) for _ in range(world)]
            torch.distributed.all_gather(parts, own)
        losses = torch.cat(parts).tolist()  # one per rank
        bad = [(rank, value) for rank, value in enumerate(losses) if not math.isfinite(value)]
        if bad:
            # Stop before the optimiser step: the weights and the last checkpoint stay good.
            rank, value = bad[0]
            where = f" on rank {rank}" if len(losses) > 1 else ""
            raise ValueError(
                f"training loss is {value}{where} at step {self.global_step} (epoch "
                f"{self.current_epoch}, batch {batch_idx}); lower the learning rate or "
                f"clip gradients (trainer.gradient_clip_val)"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def _eval_step(self, batch: Any, stage: str) -> None:
        loss, outputs = self.evaluate_batch(batch)
        self.log(f"{stage}/loss", loss, batch_size=len(batch), sync_dist=True)
        ids = batch.example_ids.tolist() if batch.example_ids is not None else [None] * len(outputs)
        self._eval_outputs.extend(zip(ids, outputs, strict=True))

    def _eval_epoch_end(self, stage: str) -> None:
        # Every rank receives all outputs, once each, so every rank logs the same
        # corpus-level numbers, whatever the number of ranks.
        outputs = gather_unique(self._eval_outputs)
        self._eval_outputs = []
        if not outputs or self.trainer.sanity_checking:
            return
        scores = self.corpus_scores(outputs, stage)
        self.log_dict({f"{stage}/{k}": scores.pop(k) for k in self.main_metrics}, prog_bar=True)
        self.log_dict({f"{stage}/{k}": v for k, v in scores.items()})

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # -- checkpoints -----------------------------------------------------------------
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Resuming: take back the random state saved with the checkpoint just before
        # the first step, after anything else the restart may have drawn.
        if self._rng_to_restore is not None:
            rng.restore_own_rank(self._rng_to_restore)
            self._rng_to_restore = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CKPT_KEY] = {
            "task": self.task,
            "class_path": f"{type(self).__module__}.{type(self).__name__}",
            "vocab": self.vocab.state_dict(),
        }
        if self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING:
            checkpoint[RNG_KEY] = rng.capture_all_ranks()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(CKPT_KEY)
        if meta is None:
            raise ValueError("not a seqnlp checkpoint (it has no vocabularies)")
        if meta["task"] != self.task:
            raise ValueError(f"checkpoint of a {meta['task']} model given to a {self.task} model")
        if meta["vocab"] != self.vocab.state_dict():
            raise ValueError(
                "the checkpoint's vocabularies differ from those built from this recipe's "
                "training data; use the same training data and vocabulary settings"
            )
        self._rng_to_restore = checkpoint.get(RNG_KEY)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip as Lightning does, except under bf16-mixed with a fused optimizer (the
        recipes' Adam): Lightning refuses to clip there because a fused step unscales
        the gradients itself, but bf16 has no loss scaler, so the gradients are already
        unscaled and are clipped here directly."""
        plugin = self.trainer.precision_plugin
        if (
            gradient_clip_val
            and isinstance(plugin, MixedPrecision)
            and plugin.scaler is None
            and getattr(optimizer, "_step_supports_amp_scaling", False)
        ):
            algorithm = GradClipAlgorithmType(gradient_clip_algorithm or "norm")
            Precision.clip_gradients(plugin, optimizer, gradient_clip_val, algorithm)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam at 1e-3 unless the recipe's ``optimizer`` section says otherwise."""
        return torch.optim.Adam(self.parameters(), lr=1e-3)

    @staticmethod
    def read_checkpoint(path: str | Path) -> dict[str, Any]:
        """Read a checkpoint with ``weights_only`` loading (no arbitrary pickled code)."""
        if not Path(path).is_file():
            raise ValueError(f"{path}: no such checkpoint file")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for damaged files
            raise ValueError(
                f"{path}: cannot read checkpoint ({type(err).__name__}: {err})".split("\n")[0]
            ) from None
        if not isinstance(ckpt, dict) or CKPT_KEY not in ckpt or "state_dict" not in ckpt:
            raise ValueError(f"{path}: not a seqnlp checkpoint (expected weights and vocabularies)")
        return ckpt

    @classmethod
    def load(cls, path: str | Path) -> System:
        """Rebuild a system from a checkpoint file alone, in eval mode on the CPU."""
        ckpt = cls.read_checkpoint(path)
        meta = ckpt[CKPT_KEY]
        system_cls = _system_class(meta["class_path"])
        if not issubclass(system_cls, cls):
            raise ValueError(
                f"{path}: a {meta['task']} checkpoint, expected a {cls.task or 'seqnlp'} one"
            )
        # LightningCLI records private keys such as ``_class_path`` beside the arguments.
        hparams = {
            k: v for k, v in ckpt.get("hyper_parameters", {}).items() if not k.startswith("_")
        }
        for name in system_cls.training_only_hparams:
            hparams.pop(name, None)
        model = system_cls(vocab=system_cls.vocab_type.from_state(meta["vocab"]), **hparams)
        model.load_state_dict(ckpt["state_dict"])
        return model.eval()


def _system_class(class_path: str) -> type[System]:
    module, _, name = class_path.rpartition(".")
    if not module.startswith("seqnlp."):
        raise ValueError(f"checkpoint names class {class_path!r}, not a seqnlp system")
    found = getattr(importlib.import_module(module), name, None)
    if not (isinstance(found, type) and issubclass(found, System)):
        raise ValueError(f"checkpoint names class {class_path!r}, not a seqnlp system")
    return found
