"""What every seqnlp system (LightningModule) shares: the training and evaluation
loops' hooks, and checkpoints that stand alone."""

from __future__ import annotations

import inspect
import math
import time
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision, Precision
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import GradClipAlgorithmType
from torch import nn

from seqnlp.checkpoints import CKPT_KEY, FORMAT, RNG_KEY, upgrade
from seqnlp.distributed import rank_and_world
from seqnlp.metrics import gather_unique
from seqnlp.tasks import rng


class System(pl.LightningModule):
    """Base of the task systems: each holds one plain network (``network``, an
    ``nn.Module`` of ``seqnlp.models``) and adds the loss, metrics, optimisers and
    logging around it.

    A subclass takes its codec as ``codec`` (linked from the DataModule by the CLI) and
    its hyper-parameters as typed arguments. Its checkpoints carry the codec and the
    task name, so ``seqnlp.checkpoints.load_system`` rebuilds a working model from the
    file alone.
    """

    task: ClassVar[str] = ""
    codec_type: ClassVar[type]
    #: hyper-parameters that point at training-time files, cleared when loading.
    training_only_hparams: ClassVar[tuple[str, ...]] = ()

    #: corpus-level metrics shown in the progress bar (logged as ``stage/name``).
    main_metrics: ClassVar[tuple[str, ...]] = ()

    codec: Any
    network: nn.Module

    def __init__(self) -> None:
        super().__init__()
        self._eval_outputs: list[Any] = []
        self._rng_to_restore: list[dict[str, Any]] | None = None
        #: the last corpus scores of each stage (``val``, ``test``), with notes such as
        #: sacreBLEU's signature: written into checkpoints (``scores``) for model cards.
        self.recorded_scores: dict[str, dict[str, Any]] = {}
        #: how the model was trained (command, recipe, hardware, training seconds),
        #: set by the CLI at ``fit`` and kept across resumptions (``run``).
        self.run_info: dict[str, Any] = {}
        self._fit_started: float | None = None

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
        self.recorded_scores[stage] = {
            **{k: round(float(v), 4) for k, v in scores.items()}, **self.score_notes()
        }
        self.log_dict({f"{stage}/{k}": scores.pop(k) for k in self.main_metrics}, prog_bar=True)
        self.log_dict({f"{stage}/{k}": v for k, v in scores.items()})

    def score_notes(self) -> dict[str, str]:
        """What the last corpus scores need to be read right (the translator's sacreBLEU
        signatures); recorded with them."""
        return {}

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
            "codec": self.codec.state_dict(),
            "format": FORMAT,
        }
        scores = {_STAGE_NAMES[k]: v for k, v in self.recorded_scores.items() if k in _STAGE_NAMES}
        if scores:
            checkpoint[CKPT_KEY]["scores"] = scores
        if self.run_info:
            run = dict(self.run_info)
            if self._fit_started is not None:
                run["train_seconds"] = round(
                    run.get("train_seconds", 0.0) + time.monotonic() - self._fit_started, 1
                )
            checkpoint[CKPT_KEY]["run"] = run
        if self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING:
            checkpoint[RNG_KEY] = rng.capture_all_ranks()

    def on_fit_start(self) -> None:
        self._fit_started = time.monotonic()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if checkpoint.get(CKPT_KEY) is None:
            raise ValueError("not a seqnlp checkpoint (it has no vocabularies)")
        meta = upgrade(checkpoint)[CKPT_KEY]  # an older layout's weights, renamed in place
        if meta["task"] != self.task:
            raise ValueError(f"checkpoint of a {meta['task']} model given to a {self.task} model")
        if _trained_part(meta["codec"]) != _trained_part(self.codec.state_dict(), meta["codec"]):
            raise ValueError(
                "the checkpoint's vocabularies differ from those built from this recipe's "
                "training data; use the same training data and vocabulary settings"
            )
        mine = self.state_dict()
        theirs = checkpoint["state_dict"]
        wrong = sorted(set(mine) ^ set(theirs)) or [
            k for k in mine if tuple(mine[k].shape) != tuple(theirs[k].shape)
        ]
        if wrong:
            raise ValueError(
                f"the checkpoint's weights do not fit this model ({len(wrong)} differ in name "
                f"or shape, first {wrong[0]}): the recipe and the checkpoint describe "
                f"different models"
            )
        self._rng_to_restore = checkpoint.get(RNG_KEY)
        # A resumed run keeps its scores so far and adds to its training time.
        stages = {v: k for k, v in _STAGE_NAMES.items()}
        for name, scores in (meta.get("scores") or {}).items():
            if name in stages and isinstance(scores, dict):
                self.recorded_scores.setdefault(stages[name], dict(scores))
        if isinstance(meta.get("run"), dict) and "train_seconds" in meta["run"]:
            self.run_info["train_seconds"] = meta["run"]["train_seconds"]

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

    def network_options(self, network_class: type[nn.Module]) -> dict[str, Any]:
        """This system's hyper-parameters that ``network_class`` takes, by name: a recipe's
        network sizes are the system's arguments and the network's alike."""
        accepted = inspect.signature(network_class).parameters
        return {name: value for name, value in self.hparams.items() if name in accepted}

    def predictor_options(self) -> dict[str, Any]:
        """Prediction settings this system's hyper-parameters fix (the translator's
        length limits and length penalty): the predictor's defaults."""
        return {}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam at 1e-3 unless the recipe's ``optimizer`` section says otherwise."""
        return torch.optim.Adam(self.parameters(), lr=1e-3)


#: the stage names of ``recorded_scores`` as checkpoints and model cards write them.
_STAGE_NAMES = {"val": "validation", "test": "test"}

#: codec entries that say how raw input is read, not what the weights were trained on:
#: a run resumed with other settings (or from a checkpoint older than them) keeps going.
_RAW_INPUT_KEYS = ("raw", "source_normalizer")


def _trained_part(codec: dict[str, Any], other: dict[str, Any] | None = None) -> dict[str, Any]:
    """The codec's vocabularies and training-text settings, for comparing a checkpoint's
    with a recipe's (``pretokenized`` only where ``other`` has it too)."""
    drop = set(_RAW_INPUT_KEYS)
    if other is not None and "pretokenized" not in other:
        drop.add("pretokenized")
    return {k: v for k, v in codec.items() if k not in drop}
