"""The encoder-decoder translator with attention (Bahdanau et al. 2015) as a Lightning system."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from seqnlp.data.translation import TranslationBatch, TranslationCodec
from seqnlp.metrics import translation_scores
from seqnlp.models.translator import DecoderState, TranslatorNetwork, max_target_lengths
from seqnlp.nn.attention import Scoring
from seqnlp.nn.dropout import DropoutMode
from seqnlp.nn.encoder import Cell, Init
from seqnlp.nn.search import Hypothesis, forced_decode
from seqnlp.tasks.base import System

log = logging.getLogger(__name__)


class Translator(System):
    """Trains a ``TranslatorNetwork`` (bidirectional RNN encoder, attention decoder) with
    label-smoothed cross-entropy, optionally scheduled sampling, and scores its greedy
    or beam-search translations with sacreBLEU BLEU and chrF.

    Args:
        codec: source and target SentencePiece models (linked from the DataModule).
        embedding_dim: source and target embedding size.
        hidden_size: encoder size per direction (and the decoder's, by default).
        decoder_hidden_size: decoder size when it differs; ``dot`` attention needs
            it equal to the encoder's output size, ``2 * hidden_size``.
        encoder_layers, decoder_layers: stacked layers.
        attention: ``additive`` (Bahdanau), ``dot`` or ``general`` (Luong).
        dropout: on embeddings, between layers and before the output layers.
        tie_embeddings: the output layer shares the target embedding matrix.
        label_smoothing: cross-entropy label smoothing.
        sampling_start, sampling_end, sampling_epochs: scheduled sampling (Bengio
            et al. 2015): the probability of feeding the model's own previous
            prediction instead of the reference grows linearly from start to end
            over that many epochs (0 and 0: plain teacher forcing).
        max_length_ratio, max_length_offset: at most ``ratio * source length +
            offset`` target pieces are generated.
        eval_beam_size: beam size for validation and test (1: greedy).
        length_penalty: GNMT length-penalty alpha for beam search.
        cell, residual, layer_norm, dropout_mode, weight_drop, init, forget_bias,
            learn_initial_state: the recurrent options every task shares
            (``seqnlp.nn.encoder.RNNEncoder``; README "Recurrent cells and options").
    """

    task = "translation"
    codec_type = TranslationCodec
    main_metrics = ("bleu", "chrf")
    network: TranslatorNetwork

    def __init__(
        self,
        codec: TranslationCodec,
        embedding_dim: int = 256,
        hidden_size: int = 512,
        decoder_hidden_size: int | None = None,
        encoder_layers: int = 1,
        decoder_layers: int = 1,
        cell: Cell = "gru",
        attention: Scoring = "additive",
        dropout: float = 0.2,
        tie_embeddings: bool = False,
        label_smoothing: float = 0.1,
        sampling_start: float = 0.0,
        sampling_end: float = 0.0,
        sampling_epochs: int = 10,
        max_length_ratio: float = 1.5,
        max_length_offset: int = 10,
        eval_beam_size: int = 1,
        length_penalty: float = 0.0,
        residual: bool = False,
        layer_norm: bool = False,
        dropout_mode: DropoutMode = "standard",
        weight_drop: float = 0.0,
        init: Init = "default",
        forget_bias: float | None = None,
        learn_initial_state: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["codec"])
        self.codec = codec
        self.network = TranslatorNetwork(
            len(codec.source), len(codec.target), src_pad_id=codec.source.pad_id,
            tgt_pad_id=codec.target.pad_id, **self.network_options(TranslatorNetwork),
        )  # fmt: skip

    def encode(self, batch: TranslationBatch) -> DecoderState:
        return self.network.encode(batch.src_ids, batch.src_lengths)

    def sampling_probability(self) -> float:
        h = self.hparams
        if h.sampling_end == h.sampling_start:
            return h.sampling_start
        progress = min(1.0, self.current_epoch / max(1, h.sampling_epochs))
        return h.sampling_start + progress * (h.sampling_end - h.sampling_start)

    def logits(
        self, batch: TranslationBatch, sampling: float = 0.0, state: DecoderState | None = None
    ) -> torch.Tensor:
        """Teacher-forced (optionally scheduled-sampled) scores (batch, tgt, vocab).

        ``state``: ``encode(batch)`` when the caller has it already."""
        assert batch.tgt_in is not None
        state = self.encode(batch) if state is None else state
        if sampling == 0:  # teacher forcing: the output layers once over all steps
            return self.network.teacher_forced(state, batch.tgt_in)

        def step(tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
            logits, state, _ = self.network.step(tokens, state)
            return logits, state

        def choose(logits: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
            own = torch.rand(reference.shape, device=reference.device) < sampling
            return torch.where(own, logits.argmax(dim=-1), reference)

        return forced_decode(step, state, batch.tgt_in, choose)

    def loss(self, logits: torch.Tensor, batch: TranslationBatch) -> torch.Tensor:
        """Label-smoothed cross-entropy per target token (padding ignored)."""
        assert batch.tgt_out is not None
        return nn.functional.cross_entropy(
            logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=self.codec.target.pad_id,
            label_smoothing=self.hparams.label_smoothing,
        )  # fmt: skip

    def max_lengths(self, src_lengths: torch.Tensor) -> torch.Tensor:
        """The most target pieces to generate per sentence (batch,)."""
        h = self.hparams
        return max_target_lengths(src_lengths, h.max_length_ratio, h.max_length_offset)

    def translate(
        self, batch: TranslationBatch, beam_size: int = 1, state: DecoderState | None = None
    ) -> list[list[Hypothesis]]:
        """The best translation (target ids) of each source, as validation scores it."""
        state = self.encode(batch) if state is None else state
        target = self.codec.target
        return self.network.translate(
            state, target.bos_id, target.eos_id, self.max_lengths(batch.src_lengths),
            beam_size=beam_size, length_penalty=self.hparams.length_penalty,
        )  # fmt: skip

    def predictor_options(self) -> dict[str, Any]:
        h = self.hparams
        return {"length_penalty": h.length_penalty, "max_length_ratio": h.max_length_ratio,
                "max_length_offset": h.max_length_offset}  # fmt: skip

    # -- training and evaluation -----------------------------------------------------
    def training_loss(self, batch: TranslationBatch) -> torch.Tensor:
        return self.loss(self.logits(batch, self.sampling_probability()), batch)

    def evaluate_batch(self, batch: TranslationBatch) -> tuple[torch.Tensor, list[tuple[str, str]]]:
        """Loss and (hypothesis, reference) detokenised texts per pair."""
        assert batch.tgt_out is not None and batch.tgt_mask is not None
        state = self.encode(batch)  # once, for the loss and the search
        loss = self.loss(self.logits(batch, state=state), batch)
        found = self.translate(batch, beam_size=self.hparams.eval_beam_size, state=state)
        outputs = []
        for hyps, ref, n in zip(found, batch.tgt_out, batch.tgt_mask.sum(dim=1), strict=True):
            reference = self.codec.decode_target(ref[: n - 1].tolist())
            outputs.append((self.codec.decode_target(hyps[0].tokens), reference))
        return loss, outputs

    def score_notes(self) -> dict[str, str]:
        return dict(getattr(self, "_signatures", {}))

    def corpus_scores(self, outputs: list[tuple[str, str]], stage: str) -> dict[str, float]:
        scores = translation_scores([h for h, _ in outputs], [r for _, r in outputs])
        bleu_signature, chrf_signature = scores.pop("bleu_signature"), scores.pop("chrf_signature")
        self._signatures = {"bleu_signature": bleu_signature, "chrf_signature": chrf_signature}
        log.info("%s: BLEU %.2f (%s), chrF %.2f (%s)", stage, scores["bleu"], bleu_signature,
                 scores["chrf"], chrf_signature)  # fmt: skip
        return scores
