"""The recurrent language model: token ids and a state in, next-token scores and the
state after the last step out."""

from __future__ import annotations

import torch
from torch import nn

from seqnlp.nn.dropout import DropoutMode, SequenceDropout
from seqnlp.nn.encoder import Cell, Init, RNNEncoder, State


class LanguageModelNetwork(nn.Module):
    """Embeddings -> unidirectional recurrent stack -> [projection] -> output layer.

    The state after a call is where the next call on the following text starts
    (truncated back-propagation through time, streaming); ``step`` runs one token in
    constant memory and gives what ``forward`` gives at that position.

    Args:
        num_tokens: vocabulary size (the output layer's too).
        embedding_dim: token embedding size.
        cell, hidden_size, num_layers, dropout, dropout_mode, weight_drop, residual,
            layer_norm, init, forget_bias, learn_initial_state: the recurrent options
            every task shares (``seqnlp.nn.encoder.RNNEncoder``); ``dropout`` is between
            stacked layers.
        embedding_dropout: dropout on the token embeddings.
        output_dropout: dropout on the top layer's outputs, before the output layer.
            Both follow ``dropout_mode`` (``locked``: one mask per row and segment).
        tie_embeddings: the output layer's weights are the embeddings (Press and Wolf
            2017; Inan et al. 2017); with ``hidden_size`` other than ``embedding_dim`` a
            linear projection of the top outputs to ``embedding_dim`` comes first.
    """

    def __init__(
        self,
        num_tokens: int,
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
        self.embedding = nn.Embedding(num_tokens, embedding_dim)
        bound = (3.0 / embedding_dim) ** 0.5  # variance 1 / dim, as the other tasks
        nn.init.uniform_(self.embedding.weight, -bound, bound)
        self.embedding_dropout = SequenceDropout(embedding_dropout, dropout_mode)
        self.encoder = RNNEncoder(
            embedding_dim, hidden_size, num_layers, cell, bidirectional=False, dropout=dropout,
            learn_initial_state=learn_initial_state, init=init, residual=residual,
            layer_norm=layer_norm, dropout_mode=dropout_mode, weight_drop=weight_drop,
            forget_bias=forget_bias,
        )  # fmt: skip
        self.output_dropout = SequenceDropout(output_dropout, dropout_mode)
        project = tie_embeddings and hidden_size != embedding_dim
        self.projection = nn.Linear(hidden_size, embedding_dim) if project else None
        self.output = nn.Linear(embedding_dim if tie_embeddings else hidden_size, num_tokens)
        if tie_embeddings:
            self.output.weight = self.embedding.weight

    @property
    def hidden_size(self) -> int:
        return self.encoder.hidden_size

    def hidden_states(
        self, token_ids: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """The top layer's outputs (batch, time, hidden) over token ids (batch, time), and
        the state after the last step; ``state`` None: the initial state (learned or
        zeros). Rows run their whole length (right padding only affects what follows)."""
        inputs = self.embedding_dropout(self.embedding(token_ids))  # (batch, time, emb)
        return self.encoder.run(inputs, None, state)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Next-token scores (..., tokens) of top-layer outputs (..., hidden)."""
        outputs = self.output_dropout(outputs)
        if self.projection is not None:
            outputs = self.projection(outputs)  # (..., embedding_dim)
        return self.output(outputs)

    def forward(
        self, token_ids: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """Next-token scores (batch, time, tokens) of token ids (batch, time), and the
        state after the last step."""
        outputs, state = self.hidden_states(token_ids, state)  # (batch, time, hidden)
        return self.scores(outputs), state

    def step_hidden(
        self, token_ids: torch.Tensor, state: State | None
    ) -> tuple[torch.Tensor, State]:
        """One token of each row, token ids (batch,): the top layer's output (batch,
        hidden) and the new state, in constant memory."""
        inputs = self.embedding_dropout(self.embedding(token_ids))  # (batch, emb)
        return self.encoder.step(inputs, state)

    def step(self, token_ids: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        """One token of each row, token ids (batch,): next-token scores (batch, tokens)
        and the new state, in constant memory."""
        outputs, state = self.step_hidden(token_ids, state)  # (batch, hidden)
        return self.scores(outputs), state


def detach_state(state: State) -> State:
    """``state`` cut from the graph that made it (truncated back-propagation)."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()
