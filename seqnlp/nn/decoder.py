"""Recurrent decoder with attention over encoder states (Bahdanau et al. 2015)."""

from __future__ import annotations

import torch
from torch import nn

from seqnlp.nn.attention import Attention, Scoring
from seqnlp.nn.cells import LSTM_LIKE
from seqnlp.nn.dropout import DropoutMode, SequenceDropout
from seqnlp.nn.encoder import Cell, Init, RNNEncoder, State


class AttentionDecoder(nn.Module):
    """One step at a time: attend with the previous state, update the RNN, predict.

    At step t, with previous target token y (embedded e) and previous top-layer state
    s: ``c = attention(s, encoder states)``, ``s' = RNN([e; c], state)``, logits =
    ``W_out tanh(W_pre [s'; c; e])``. The initial state is a bridge from the
    encoder's final states: ``tanh(W_bridge h_enc)`` for every layer (LSTM cells
    start at zero). With ``tie_embeddings`` the output layer shares the target
    embedding matrix (``W_pre`` then maps to the embedding size).

    The recurrent layers are a ``torch.nn`` GRU / LSTM / RNN stepped once per token;
    with a custom cell or the stack options (``residual``, ``layer_norm``,
    ``weight_drop``, locked dropout) a unidirectional ``RNNEncoder`` stepped the same
    way (weight drop then draws a matrix per step, and locked dropout between layers
    a mask per step: at one step at a time there is no sequence to lock it over).

    Args:
        vocab_size, embedding_dim, pad_id: target vocabulary and embedding.
        hidden_size, num_layers, cell: the recurrent layer(s): any cell of
            ``seqnlp.nn.cells.CELLS``.
        encoder_size: size of each encoder state (the attention's keys and values).
        bridge_size: size of the encoder summary fed to the bridge.
        attention: ``additive``, ``dot`` or ``general``.
        dropout: on embeddings, between layers and before the output layers.
        residual, layer_norm, dropout_mode, weight_drop, init, forget_bias: the
            recurrent options of ``RNNEncoder``.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        encoder_size: int,
        bridge_size: int,
        num_layers: int = 1,
        cell: Cell = "gru",
        attention: Scoring = "additive",
        dropout: float = 0.0,
        tie_embeddings: bool = False,
        pad_id: int = 0,
        residual: bool = False,
        layer_norm: bool = False,
        dropout_mode: DropoutMode = "standard",
        weight_drop: float = 0.0,
        init: Init = "default",
        forget_bias: float | None = None,
    ) -> None:
        super().__init__()
        self.cell = cell
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.rnn: nn.RNNBase | RNNEncoder = RNNEncoder(
            embedding_dim + encoder_size, hidden_size, num_layers, cell, False, dropout,
            False, init, residual=residual, layer_norm=layer_norm,
            dropout_mode=dropout_mode, weight_drop=weight_drop, forget_bias=forget_bias,
        )  # fmt: skip
        if self.rnn.rnn is not None and not self.rnn.layered() and dropout_mode == "standard":
            # torch's own module, stepped directly (and exported to ONNX as one node)
            self.rnn = self.rnn.rnn
        self.attention = Attention(hidden_size, encoder_size, attention)
        self.bridge = nn.Linear(bridge_size, hidden_size)
        pre_size = embedding_dim if tie_embeddings else hidden_size
        self.pre_output = nn.Linear(hidden_size + encoder_size + embedding_dim, pre_size)
        self.output = nn.Linear(pre_size, vocab_size, bias=False)
        if tie_embeddings:
            self.output.weight = self.embedding.weight
        self.dropout = SequenceDropout(dropout, dropout_mode)

    def initial_state(self, summary: torch.Tensor) -> State:
        """(batch, bridge_size) encoder summary -> (layers, batch, hidden) state."""
        h = torch.tanh(self.bridge(summary))  # (batch, hidden)
        h = h.unsqueeze(0).expand(self.num_layers, -1, -1).contiguous()  # (layers, batch, hidden)
        return (h, torch.zeros_like(h)) if self.cell in LSTM_LIKE else h

    def top(self, state: State) -> torch.Tensor:
        """The last layer's hidden state (batch, hidden): the attention query."""
        h = state[0] if isinstance(state, tuple) else state
        return h[-1]

    def step(
        self,
        tokens: torch.Tensor,
        state: State,
        keys: torch.Tensor,
        projected_keys: torch.Tensor,
        src_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """One decoding step.

        tokens: (batch,) previous target tokens; keys: (batch, src, encoder_size);
        projected_keys: ``attention.project_keys(keys)``; src_mask: (batch, src).
        Returns logits (batch, vocab), the new state, attention weights (batch, src).
        """
        embedded = self.dropout(self.embedding(tokens))  # (batch, embedding_dim)
        out, context, state, weights = self.recur(embedded, state, keys, projected_keys, src_mask)
        return self.predict(out, context, embedded), state, weights

    def recur(
        self,
        embedded: torch.Tensor,
        state: State,
        keys: torch.Tensor,
        projected_keys: torch.Tensor,
        src_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, State, torch.Tensor]:
        """The recurrent part of a step: attend, then update the RNN.

        embedded: (batch, embedding_dim) previous tokens, embedded (dropout applied).
        Returns the top-layer output (batch, hidden), the context (batch,
        encoder_size), the new state and the attention weights (batch, src).
        """
        context, weights = self.attention(self.top(state), keys, src_mask, projected_keys)
        x = torch.cat([embedded, context], dim=-1)  # (batch, embedding_dim + encoder_size)
        if isinstance(self.rnn, RNNEncoder):
            out, state = self.rnn.step(x, state)
            return out, context, state, weights
        out, state = self.rnn(x.unsqueeze(1), state)
        return out.squeeze(1), context, state, weights

    def predict(
        self, out: torch.Tensor, context: torch.Tensor, embedded: torch.Tensor
    ) -> torch.Tensor:
        """Logits (..., vocab) from ``recur``'s outputs: (..., hidden), (..., encoder_size)
        and (..., embedding_dim), for one step or, stacked, for all steps at once."""
        pre = torch.tanh(self.pre_output(self.dropout(torch.cat([out, context, embedded], dim=-1))))
        return self.output(self.dropout(pre))

    def teacher_forced(
        self,
        tokens: torch.Tensor,
        state: State,
        keys: torch.Tensor,
        projected_keys: torch.Tensor,
        src_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Logits (batch, tgt, vocab) for the given previous tokens (batch, tgt).

        Only attention and the RNN run step by step; the embeddings before the loop,
        and the pre-output and output layers (most of the decoder's arithmetic: the
        output layer is ``hidden x vocab``) after it, in one matrix product over all
        steps rather than one small product per step.
        """
        embedded = self.dropout(self.embedding(tokens))  # (batch, tgt, embedding_dim)
        outs, contexts = [], []
        for t in range(tokens.size(1)):
            out, context, state, _ = self.recur(
                embedded[:, t], state, keys, projected_keys, src_mask
            )
            outs.append(out)
            contexts.append(context)
        return self.predict(torch.stack(outs, dim=1), torch.stack(contexts, dim=1), embedded)
