"""Encoder-decoder translator with attention (Bahdanau et al. 2015) as a Lightning system."""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from torch import nn

from seqnlp.data.translation import TranslationBatch, TranslationVocab
from seqnlp.nn.attention import Scoring
from seqnlp.nn.decoder import AttentionDecoder
from seqnlp.nn.encoder import RNNEncoder
from seqnlp.nn.search import Hypothesis, beam_search, greedy_search
from seqnlp.tasks.base import System

log = logging.getLogger(__name__)


class Translator(System):
    """Bidirectional RNN encoder, attention decoder, greedy or beam search.

    Args:
        vocab: source and target SentencePiece models (linked from the DataModule).
        embedding_dim: source and target embedding size.
        hidden_size: encoder size per direction (and the decoder's, by default).
        decoder_hidden_size: decoder size when it differs; ``dot`` attention needs
            it equal to the encoder's output size, ``2 * hidden_size``.
        encoder_layers, decoder_layers: stacked layers.
        cell: ``gru`` or ``lstm`` (encoder and decoder).
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
    """

    task = "translation"
    vocab_type = TranslationVocab
    main_metrics = ("bleu", "chrf")

    def __init__(
        self,
        vocab: TranslationVocab,
        embedding_dim: int = 256,
        hidden_size: int = 512,
        decoder_hidden_size: int | None = None,
        encoder_layers: int = 1,
        decoder_layers: int = 1,
        cell: Literal["gru", "lstm"] = "gru",
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["vocab"])
        self.vocab = vocab
        src, tgt = vocab.source, vocab.target
        self.src_embedding = nn.Embedding(len(src), embedding_dim, padding_idx=src.pad_id)
        self.dropout = nn.Dropout(dropout)
        self.encoder = RNNEncoder(embedding_dim, hidden_size, encoder_layers, cell, True, dropout)
        decoder_size = decoder_hidden_size or hidden_size
        if attention == "dot" and decoder_size != self.encoder.output_size:
            raise ValueError(
                f"dot attention compares decoder states ({decoder_size}) with encoder states "
                f"({self.encoder.output_size}): set decoder_hidden_size to "
                f"{self.encoder.output_size}, or use additive or general attention"
            )
        self.decoder = AttentionDecoder(
            len(tgt), embedding_dim, decoder_size, self.encoder.output_size,
            bridge_size=self.encoder.output_size, num_layers=decoder_layers, cell=cell,
            attention=attention, dropout=dropout, tie_embeddings=tie_embeddings, pad_id=tgt.pad_id,
        )  # fmt: skip

    # -- network ----------------------------------------------------------------
    def encode(self, batch: TranslationBatch) -> dict[str, Any]:
        """Encoder states and the decoder's initial state, as a search state."""
        x = self.dropout(self.src_embedding(batch.src_ids))  # (batch, src, embedding_dim)
        # keys: (batch, src, 2 * hidden); h: (layers * 2, batch, hidden)
        keys, h = self.encoder(x, batch.src_lengths)
        summary = torch.cat([h[-2], h[-1]], dim=-1)  # last layer, both directions
        return {
            "hidden": self.decoder.initial_state(summary),
            "keys": keys,
            "projected": self.decoder.attention.project_keys(keys),
            "mask": batch.src_mask,
        }

    def sampling_probability(self) -> float:
        h = self.hparams
        if h.sampling_end == h.sampling_start:
            return h.sampling_start
        progress = min(1.0, self.current_epoch / max(1, h.sampling_epochs))
        return h.sampling_start + progress * (h.sampling_end - h.sampling_start)

    def logits(
        self, batch: TranslationBatch, sampling: float = 0.0, state: dict[str, Any] | None = None
    ) -> torch.Tensor:
        """Teacher-forced (optionally scheduled-sampled) scores (batch, tgt, vocab).

        ``state``: ``encode(batch)`` when the caller has it already."""
        assert batch.tgt_in is not None
        state = self.encode(batch) if state is None else state
        if sampling == 0:  # teacher forcing: output layers once over all steps
            return self.decoder.teacher_forced(
                batch.tgt_in, state["hidden"], state["keys"], state["projected"], state["mask"]
            )
        hidden, outputs = state["hidden"], []
        prev = batch.tgt_in[:, 0]
        for t in range(batch.tgt_in.size(1)):
            logits, hidden, _ = self.decoder.step(
                prev, hidden, state["keys"], state["projected"], state["mask"]
            )
            outputs.append(logits)
            if t + 1 < batch.tgt_in.size(1):
                prev = batch.tgt_in[:, t + 1]
                if sampling > 0:
                    own = torch.rand(prev.shape, device=prev.device) < sampling
                    prev = torch.where(own, logits.argmax(dim=-1), prev)
        return torch.stack(outputs, dim=1)

    def loss(self, logits: torch.Tensor, batch: TranslationBatch) -> torch.Tensor:
        """Label-smoothed cross-entropy per target token (padding ignored)."""
        assert batch.tgt_out is not None
        return nn.functional.cross_entropy(
            logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=self.vocab.target.pad_id,
            label_smoothing=self.hparams.label_smoothing,
        )  # fmt: skip

    # -- decoding ---------------------------------------------------------------
    def _step(self, tokens: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, dict]:
        logits, hidden, _ = self.decoder.step(
            tokens, state["hidden"], state["keys"], state["projected"], state["mask"]
        )
        return logits.log_softmax(dim=-1), {**state, "hidden": hidden}

    @staticmethod
    def _select(state: dict[str, Any], index: torch.Tensor) -> dict[str, Any]:
        hidden = state["hidden"]
        picked = (
            tuple(h.index_select(1, index) for h in hidden)
            if isinstance(hidden, tuple)
            else hidden.index_select(1, index)
        )
        rows = state.get("sentence", torch.arange(len(state["mask"]), device=index.device))
        if torch.equal(rows.index_select(0, index), rows):
            # Every row keeps its sentence (beam search reordering one sentence's beams):
            # the encoder states are unchanged, and copying them at every step would cost
            # (rows, src, keys) memory traffic per step (minutes and GBs on long sources).
            return {**state, "hidden": picked}
        rest = {k: v.index_select(0, index) for k, v in state.items() if k != "hidden"}
        return {**rest, "hidden": picked, "sentence": rows.index_select(0, index)}

    def max_lengths(self, batch: TranslationBatch) -> torch.Tensor:
        h = self.hparams
        return (batch.src_lengths.float() * h.max_length_ratio).ceil().long() + h.max_length_offset

    @torch.no_grad()
    def translate(
        self, batch: TranslationBatch, beam_size: int = 1, n_best: int = 1,
        length_penalty: float | None = None, state: dict[str, Any] | None = None,
    ) -> list[list[Hypothesis]]:  # fmt: skip
        """The ``n_best`` translations (target ids, without <s>/</s>) of each source."""
        target = self.vocab.target
        state = self.encode(batch) if state is None else state
        limits = self.max_lengths(batch)
        device = batch.src_ids.device
        if beam_size == 1 and n_best == 1:
            found = greedy_search(self._step, state, len(batch), target.bos_id, target.eos_id,
                                  limits, device)  # fmt: skip
            return [[h] for h in found]
        alpha = self.hparams.length_penalty if length_penalty is None else length_penalty
        return beam_search(self._step, self._select, state, len(batch), target.bos_id,
                           target.eos_id, limits, beam_size, alpha, n_best, device)  # fmt: skip

    @torch.no_grad()
    def attention_weights(
        self, batch: TranslationBatch, target: list[int] | None = None
    ) -> tuple[list[int], torch.Tensor]:
        """Attention of one sentence pair: (target ids, weights (target, source)).

        With ``target`` (ids, no specials) the decoder is fed that target (teacher
        forcing); otherwise it translates greedily. The last row is the step that
        emits ``</s>``. ``batch`` holds one source sentence.
        """
        assert len(batch) == 1, "attention_weights takes one sentence"
        tgt = self.vocab.target
        state = self.encode(batch)
        hidden, prev, rows, out = state["hidden"], torch.tensor([tgt.bos_id]), [], []
        limit = int(self.max_lengths(batch)[0]) if target is None else len(target) + 1
        for t in range(limit):
            logits, hidden, weights = self.decoder.step(
                prev, hidden, state["keys"], state["projected"], state["mask"]
            )
            rows.append(weights[0])
            token = int(logits.argmax(dim=-1)) if target is None else (
                target[t] if t < len(target) else tgt.eos_id)  # fmt: skip
            if token == tgt.eos_id:
                break
            out.append(token)
            prev = torch.tensor([token])
        return out, torch.stack(rows)

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
            reference = self.vocab.decode_target(ref[: n - 1].tolist())
            outputs.append((self.vocab.decode_target(hyps[0].tokens), reference))
        return loss, outputs

    def corpus_scores(self, outputs: list[tuple[str, str]], stage: str) -> dict[str, float]:
        scores = corpus_scores([h for h, _ in outputs], [r for _, r in outputs])
        bleu_signature, chrf_signature = scores.pop("bleu_signature"), scores.pop("chrf_signature")
        log.info("%s: BLEU %.2f (%s), chrF %.2f (%s)", stage, scores["bleu"], bleu_signature,
                 scores["chrf"], chrf_signature)  # fmt: skip
        return scores


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    """sacreBLEU corpus BLEU and chrF of detokenised text, with their signatures."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(), CHRF()
    bleu_score = bleu.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    return {
        "bleu": bleu_score.score,
        "chrf": chrf_score.score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }
