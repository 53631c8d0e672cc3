"""The attention translation network (Bahdanau et al. 2015): a bidirectional encoder,
a bridge and an attention decoder with a step API that every search drives."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seqnlp.nn.attention import Scoring
from seqnlp.nn.decoder import AttentionDecoder
from seqnlp.nn.dropout import DropoutMode, SequenceDropout
from seqnlp.nn.encoder import Cell, Init, RNNEncoder, lengths_mask
from seqnlp.nn.search import Hypothesis, beam_search, forced_decode, greedy_search

#: The decoder state that searches carry: ``hidden`` (layers, rows, hidden) (a pair for
#: LSTM), ``keys`` (rows, src, encoder size), ``projected`` (rows, src, *), ``mask``
#: (rows, src) and, once beams have moved rows between sentences, ``sentence`` (rows,).
DecoderState = dict[str, Any]


def max_target_lengths(src_lengths: torch.Tensor, ratio: float, offset: int) -> torch.Tensor:
    """The most target pieces to generate per sentence (batch,): ``ceil(ratio x source
    pieces) + offset``; src_lengths (batch,)."""
    return (src_lengths.float() * ratio).ceil().long() + offset


class TranslatorNetwork(nn.Module):
    """Bidirectional RNN encoder, bridge, attention decoder.

    Args:
        src_vocab_size, tgt_vocab_size: source and target vocabulary sizes.
        embedding_dim: source and target embedding size.
        hidden_size: encoder size per direction (and the decoder's, by default).
        decoder_hidden_size: decoder size when it differs; ``dot`` attention needs
            it equal to the encoder's output size, ``2 * hidden_size``.
        encoder_layers, decoder_layers: stacked layers.
        cell: the encoder's and decoder's cell (``seqnlp.nn.cells.CELLS``).
        attention: ``additive`` (Bahdanau), ``dot`` or ``general`` (Luong).
        dropout: on embeddings, between layers and before the output layers.
        tie_embeddings: the output layer shares the target embedding matrix.
        src_pad_id, tgt_pad_id: padding ids.
        residual, layer_norm, dropout_mode, weight_drop, init, forget_bias,
            learn_initial_state: the recurrent options every task shares
            (``seqnlp.nn.encoder.RNNEncoder``; README "Recurrent cells and options");
            ``learn_initial_state`` applies to the encoder (the decoder starts from
            the bridge).
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        embedding_dim: int = 256,
        hidden_size: int = 512,
        decoder_hidden_size: int | None = None,
        encoder_layers: int = 1,
        decoder_layers: int = 1,
        cell: Cell = "gru",
        attention: Scoring = "additive",
        dropout: float = 0.2,
        tie_embeddings: bool = False,
        src_pad_id: int = 0,
        tgt_pad_id: int = 0,
        residual: bool = False,
        layer_norm: bool = False,
        dropout_mode: DropoutMode = "standard",
        weight_drop: float = 0.0,
        init: Init = "default",
        forget_bias: float | None = None,
        learn_initial_state: bool = False,
    ) -> None:
        super().__init__()
        self.src_embedding = nn.Embedding(src_vocab_size, embedding_dim, padding_idx=src_pad_id)
        self.dropout = SequenceDropout(dropout, dropout_mode)
        options = {
            "residual": residual, "layer_norm": layer_norm, "dropout_mode": dropout_mode,
            "weight_drop": weight_drop, "init": init, "forget_bias": forget_bias,
        }  # fmt: skip
        self.encoder = RNNEncoder(
            embedding_dim, hidden_size, encoder_layers, cell, True, dropout, learn_initial_state,
            **options,
        )  # fmt: skip
        decoder_size = decoder_hidden_size or hidden_size
        if attention == "dot" and decoder_size != self.encoder.output_size:
            raise ValueError(
                f"dot attention compares decoder states ({decoder_size}) with encoder states "
                f"({self.encoder.output_size}): set decoder_hidden_size to "
                f"{self.encoder.output_size}, or use additive or general attention"
            )
        self.decoder = AttentionDecoder(
            tgt_vocab_size, embedding_dim, decoder_size, self.encoder.output_size,
            bridge_size=self.encoder.output_size, num_layers=decoder_layers, cell=cell,
            attention=attention, dropout=dropout, tie_embeddings=tie_embeddings,
            pad_id=tgt_pad_id, **options,
        )  # fmt: skip

    def encode(self, src_ids: torch.Tensor, src_lengths: torch.Tensor) -> DecoderState:
        """The decoder's starting state for right-padded source ids (batch, src) with
        real lengths (batch,), each >= 1."""
        x = self.dropout(self.src_embedding(src_ids))  # (batch, src, embedding_dim)
        # keys: (batch, src, 2 * hidden); h: (layers * 2, batch, hidden)
        keys, h = self.encoder(x, src_lengths)
        summary = torch.cat([h[-2], h[-1]], dim=-1)  # last layer, both directions
        return {
            "hidden": self.decoder.initial_state(summary),
            "keys": keys,
            "projected": self.decoder.attention.project_keys(keys),
            "mask": lengths_mask(src_lengths, src_ids.size(1)),
        }

    def forward(
        self, src_ids: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced scores (batch, tgt, vocab) for the previous target tokens
        ``tgt_in`` (batch, tgt) (``<s>`` first)."""
        return self.teacher_forced(self.encode(src_ids, src_lengths), tgt_in)

    def teacher_forced(self, state: DecoderState, tgt_in: torch.Tensor) -> torch.Tensor:
        """``forward`` from an encoded state: the output layers run once over all steps."""
        return self.decoder.teacher_forced(
            tgt_in, state["hidden"], state["keys"], state["projected"], state["mask"]
        )

    # -- the step API -------------------------------------------------------------
    def step(
        self, tokens: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        """One decoding step: previous tokens (rows,) -> logits (rows, vocab), the new
        state and the attention weights (rows, src)."""
        logits, hidden, weights = self.decoder.step(
            tokens, state["hidden"], state["keys"], state["projected"], state["mask"]
        )
        return logits, {**state, "hidden": hidden}, weights

    def log_prob_step(
        self, tokens: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState]:
        """``step`` as the searches take it: log-probabilities (rows, vocab) and the state."""
        logits, state, _ = self.step(tokens, state)
        return logits.log_softmax(dim=-1), state

    @staticmethod
    def select(state: DecoderState, index: torch.Tensor) -> DecoderState:
        """The state's rows picked by ``index`` (rows,), for beam search."""
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

    # -- searches -------------------------------------------------------------------
    @torch.no_grad()
    def translate(
        self, state: DecoderState, bos: int, eos: int, max_lengths: torch.Tensor,
        beam_size: int = 1, n_best: int = 1, length_penalty: float = 0.0,
    ) -> list[list[Hypothesis]]:  # fmt: skip
        """The ``n_best`` translations (target ids, without ``bos`` / ``eos``) of each
        encoded source: greedy with ``beam_size`` and ``n_best`` 1, else beam search.
        max_lengths: (batch,) the most pieces per sentence."""
        batch, device = len(state["mask"]), state["mask"].device
        if beam_size == 1 and n_best == 1:
            found = greedy_search(self.log_prob_step, state, batch, bos, eos, max_lengths, device)
            return [[h] for h in found]
        return beam_search(self.log_prob_step, self.select, state, batch, bos, eos, max_lengths,
                           beam_size, length_penalty, n_best, device)  # fmt: skip

    @torch.no_grad()
    def attention_map(
        self, state: DecoderState, bos: int, eos: int, max_length: int,
        target: list[int] | None = None,
    ) -> tuple[list[int], torch.Tensor]:  # fmt: skip
        """The attention of one encoded sentence: (target ids, weights (steps, src)).

        With ``target`` (ids, without ``bos`` / ``eos``) the decoder is fed it (teacher
        forcing); otherwise it translates greedily, up to ``max_length`` pieces. Each
        row is one step's attention; the last is the step that emits ``eos`` (when one
        does)."""
        rows: list[torch.Tensor] = []

        def recording(tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, Any]:
            logits, state, weights = self.step(tokens, state)
            rows.append(weights[0])  # (src,)
            return logits.log_softmax(dim=-1), state

        if target is None:
            found = greedy_search(recording, state, 1, bos, eos, max_length, state["mask"].device)
            target = found[0].tokens
        else:
            forced = torch.tensor([[bos, *target]], device=state["mask"].device)
            forced_decode(recording, state, forced)
        return target, torch.stack(rows)
