"""The recurrent language model as a Lightning system: truncated back-propagation
through time, with the recurrent state carried from one segment to the next."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn

from seqnlp.data.language_model import LanguageModelBatch
from seqnlp.data.lm_codec import LanguageModelCodec
from seqnlp.distributed import rank_and_world
from seqnlp.metrics import stream_scores
from seqnlp.models.language_model import LanguageModelNetwork, detach_state
from seqnlp.nn.dropout import DropoutMode
from seqnlp.nn.encoder import Cell, Init, State
from seqnlp.tasks.base import System

log = logging.getLogger(__name__)
#: checkpoint entry: the carried training state of every rank, rank order.
CARRY_KEY = "seqnlp_lm_state"


class LanguageModel(System):
    """Trains a ``LanguageModelNetwork`` on a stream of text with truncated
    back-propagation through time (``seqnlp.data.LanguageModelDataModule``'s segments).

    The state after each training segment is detached and carried into the next, per
    row (each row is a contiguous stream of the text) and per process; it starts from
    the initial state at the first segment of every epoch, and is saved in every
    training checkpoint, so that a run resumed mid-epoch carries on from the state
    that the uninterrupted run had there. Evaluation carries its own state over the
    whole held-out stream and reports the mean negative log-likelihood per token
    (``nll``, nats) and ``bpc`` (bits per character, character models) or ``ppl``
    (perplexity, word and piece models).

    Args:
        codec: the symbols and direction (linked from the DataModule).
        embedding_dim, cell, hidden_size, num_layers, dropout, dropout_mode, weight_drop,
            residual, layer_norm, init, forget_bias, learn_initial_state,
            embedding_dropout, output_dropout, tie_embeddings: the network's
            (``seqnlp.models.LanguageModelNetwork``).
    """

    task = "language_model"
    codec_type = LanguageModelCodec
    network: LanguageModelNetwork
    codec: LanguageModelCodec

    def __init__(
        self,
        codec: LanguageModelCodec,
        embedding_dim: int = 100,
        cell: Cell = "lstm",
        hidden_size: int = 512,
        num_layers: int = 1,
        dropout: float = 0.0,
        dropout_mode: DropoutMode = "standard",
        weight_drop: float = 0.0,
        residual: bool = False,
        layer_norm: bool = False,
        init: Init = "default",
        forget_bias: float | None = None,
        learn_initial_state: bool = False,
        embedding_dropout: float = 0.0,
        output_dropout: float = 0.0,
        tie_embeddings: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["codec"])
        self.codec = codec
        self.main_metrics = ("bpc",) if codec.level == "char" else ("ppl",)  # type: ignore[misc]
        self.network = LanguageModelNetwork(
            len(codec), **self.network_options(LanguageModelNetwork)
        )
        #: the state carried between segments: in training, and in evaluation.
        self._carry: dict[str, State | None] = {"train": None, "eval": None}
        self._warned_no_carry = False

    def _initial(self, batch: LanguageModelBatch, kind: str) -> State | None:
        """The state that ``batch`` starts from: none (the initial state) at an epoch's
        first segment, else the one carried from the previous segment."""
        if batch.segment == 0:
            return None
        state = self._carry[kind]
        if state is None:
            if kind == "eval":
                raise AssertionError("evaluation segments must come in order")
            if not self._warned_no_carry:
                log.warning("segment %d: no carried state (the checkpoint resumed from has "
                            "none for this process); starting from the initial state",
                            batch.segment)  # fmt: skip
                self._warned_no_carry = True
            return None
        return _on(state, batch.inputs.device)

    def training_loss(self, batch: LanguageModelBatch) -> torch.Tensor:
        scores, state = self.network(batch.inputs, self._initial(batch, "train"))
        self._carry["train"] = detach_state(state)
        # (batch * time, tokens) against (batch * time,)
        return nn.functional.cross_entropy(scores.flatten(0, 1), batch.targets.flatten())

    def evaluate_batch(
        self, batch: LanguageModelBatch
    ) -> tuple[torch.Tensor, list[tuple[float, int]]]:
        """The segment's mean loss and, per row, (summed negative log-likelihood in nats,
        predictions) over its real targets."""
        scores, state = self.network(batch.inputs, self._initial(batch, "eval"))
        self._carry["eval"] = state
        nll = nn.functional.cross_entropy(
            scores.transpose(1, 2), batch.targets, reduction="none"
        ).double()  # (batch, time)
        counts = torch.full_like(batch.targets[:, 0], batch.targets.size(1))  # (batch,)
        if batch.mask is not None:
            nll = nll.masked_fill(~batch.mask, 0.0)
            counts = batch.mask.sum(dim=1)
        sums = nll.sum(dim=1)  # (batch,)
        loss = (sums.sum() / counts.sum().clamp(min=1)).float()
        return loss, list(zip(sums.tolist(), counts.tolist(), strict=True))

    def corpus_scores(self, outputs: list[tuple[float, int]], stage: str) -> dict[str, float]:
        return stream_scores(math.fsum(n for n, _ in outputs), sum(c for _, c in outputs),
                             self.codec.level)  # fmt: skip

    # -- the carried state in checkpoints -------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING:
            checkpoint[CARRY_KEY] = _all_ranks(_on(self._carry["train"], torch.device("cpu")))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        states = checkpoint.get(CARRY_KEY)
        rank, world = rank_and_world()
        self._carry["train"] = None
        if states is not None and len(states) == world:
            self._carry["train"] = states[rank]
        elif states is not None:
            log.warning("the checkpoint holds the carried state of %d process(es), this run "
                        "has %d: a resumed epoch starts from the initial state",
                        len(states), world)  # fmt: skip


def _on(state: State | None, device: torch.device) -> State | None:
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else state.to(device)
    return tuple(s.to(device) for s in state)  # type: ignore[return-value]


def _all_ranks(value: Any) -> list[Any]:
    """Every rank's ``value``, rank order (a collective call under data parallelism)."""
    _, world = rank_and_world()
    if world == 1:
        return [value]
    gathered: list[Any] = [None] * world
    torch.distributed.all_gather_object(gathered, value)
    return gathered
