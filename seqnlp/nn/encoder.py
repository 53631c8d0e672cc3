"""The recurrent encoder shared by every task: RNN, LSTM or GRU over padded batches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqnlp.nn import folded_rnn
from seqnlp.nn.padded_rnn import run_padded

Cell = Literal["rnn", "lstm", "gru"]
Recurrence = Literal["folded", "padded", "packed"]
_CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def lengths_mask(lengths: torch.Tensor, time: int) -> torch.Tensor:
    """(batch, time) bool, True on each row's first ``length`` positions; lengths (batch,)."""
    return torch.arange(time, device=lengths.device) < lengths.unsqueeze(1)


class RNNEncoder(nn.Module):
    """Stacked, optionally bidirectional recurrent encoder over padded batches.

    Padding never enters the recurrence. ``recurrence`` chooses how it runs (padded
    on CPU, packed on GPU and for int8 models, and in CPU inference over token ids
    from a table of first-layer input projections); all give the same results.

    Args:
        input_size: features per time step.
        hidden_size: units per direction.
        num_layers: stacked layers; ``dropout`` is applied between them.
        cell: ``rnn`` (tanh), ``lstm`` or ``gru``.
        bidirectional: run a backward layer too; outputs concatenate both.
        learn_initial_state: start from a learned state instead of zeros.
        orthogonal_init: initialise the recurrent (hidden-to-hidden) matrices
            orthogonally, gate by gate (Saxe et al. 2014), and biases at zero.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        cell: Cell = "lstm",
        bidirectional: bool = True,
        dropout: float = 0.0,
        learn_initial_state: bool = False,
        orthogonal_init: bool = False,
    ) -> None:
        super().__init__()
        self.cell = cell
        self.rnn = _CELLS[cell](
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.output_size = hidden_size * (2 if bidirectional else 1)
        states = num_layers * (2 if bidirectional else 1)
        self.initial_h: nn.Parameter | None = None
        self.initial_c: nn.Parameter | None = None
        if learn_initial_state:
            self.initial_h = nn.Parameter(torch.zeros(states, 1, hidden_size))
            if cell == "lstm":
                self.initial_c = nn.Parameter(torch.zeros(states, 1, hidden_size))
        if orthogonal_init:
            for name, weight in self.rnn.named_parameters():
                if name.startswith("weight_hh"):
                    for gate in weight.data.split(hidden_size, dim=0):  # (hidden, hidden) each
                        nn.init.orthogonal_(gate)
                elif name.startswith("bias"):
                    nn.init.zeros_(weight.data)
        self._table = _TableCache()

    def learned_initial(self, batch: int) -> State | None:
        """The learned initial state expanded to ``batch`` (None when not learned)."""
        if self.initial_h is None:
            return None
        h = self.initial_h.expand(-1, batch, -1).contiguous()
        if self.initial_c is not None:
            return h, self.initial_c.expand(-1, batch, -1).contiguous()
        return h

    def recurrence(
        self, inputs: torch.Tensor, embedding: nn.Embedding | None = None
    ) -> Recurrence:
        """How this encoder runs over ``inputs`` (batch, time[, features]): the one place
        that chooses among the ways, which all give the same results (to float rounding).

        - ``folded``: ``encode_tokens`` reads the first layer's input projections of the
          token ids from a table computed once per entry of ``embedding``: in inference
          (eval mode, no autograd, no autocast) on the CPU, for a float32 ``torch.nn``
          GRU or tanh / ReLU RNN reading ``embedding`` directly, with a table of at most
          ``folded_rnn.MAX_TABLE_BYTES`` (an LSTM keeps oneDNN's fused kernel, which a
          step loop beats only in a corner of shapes);
        - ``padded``: a ``torch.nn`` RNN on the CPU runs over the padded batch one layer
          and direction at a time (``run_padded``: oneDNN's fused LSTM, one input matmul
          for all steps);
        - ``packed``: on a GPU (cuDNN runs packed batches well) and for int8 dynamically
          quantized RNNs, which have kernels of their own.
        """
        if inputs.device.type != "cpu" or not isinstance(self.rnn, nn.RNNBase):
            return "packed"
        if (
            embedding is not None
            and self.rnn.mode in folded_rnn.FOLDABLE
            and not self.training
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")
            and embedding.weight.dtype == torch.float32
            and embedding.embedding_dim == self.rnn.input_size
            and folded_rnn.table_bytes(embedding.num_embeddings, self.rnn)
            <= folded_rnn.MAX_TABLE_BYTES
        ):
            return "folded"
        return "padded"

    def forward(
        self, inputs: torch.Tensor, lengths: torch.Tensor, initial: State | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode.

        Args:
            inputs: (batch, time, input_size).
            lengths: (batch,) real lengths, each >= 1.
            initial: optional initial state, (layers * directions, batch, hidden)
                (a pair of those for LSTM); default the learned state, or zeros.

        Returns:
            outputs: (batch, time, output_size), zeros at padded positions.
            final: the hidden state after the last real step of each layer and
                direction, (layers * directions, batch, hidden) (for LSTM the
                hidden state, not the cell state).
        """
        if initial is None:
            initial = self.learned_initial(inputs.size(0))
        if self.recurrence(inputs) == "padded":
            return run_padded(self.rnn, inputs, lengths, initial)
        packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed, initial)
        outputs, _ = pad_packed_sequence(out, batch_first=True, total_length=inputs.size(1))
        return outputs, final[0] if isinstance(final, tuple) else final

    def encode_tokens(
        self,
        embedding: nn.Embedding,
        token_ids: torch.Tensor,
        lengths: torch.Tensor,
        embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
        initial: State | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``self(embed(token_ids), lengths, initial)``, or the same from the input table
        where ``recurrence`` says ``folded``.

        Args:
            embedding: the token embeddings that the first layer reads in inference.
            token_ids: (batch, time), right-padded.
            lengths: (batch,) real lengths, each >= 1.
            embed: token ids to inputs (batch, time, input_size), with whatever
                training-time noise the caller adds (word dropout, dropout); it must be
                ``embedding`` itself in eval mode. Default: ``embedding``.

        Returns:
            outputs (batch, time, output_size) and final (layers * directions, batch,
            hidden), as ``forward``.

        The table is computed on first use and again after the module's mode changes
        (``train()`` / ``eval()``, as around every training phase) or the storage or
        version counter of a weight it depends on changes (``load_state_dict``,
        in-place edits, non-fused optimisers). A fused optimiser's step in eval mode,
        or a write through a weight's ``.data``, is not seen: switch modes after it.
        """
        if self.recurrence(token_ids, embedding) != "folded":
            inputs = (embed or embedding)(token_ids)  # (batch, time, input_size)
            return self(inputs, lengths, initial)
        if initial is None:
            initial = self.learned_initial(token_ids.size(0))
        params = self.rnn.named_parameters()
        first = [w for name, w in params if name.endswith(("_l0", "_l0_reverse"))]
        key = tuple((w.data_ptr(), w._version) for w in [embedding.weight, *first])
        table = self._table.get(key)
        if table is None:
            table = self._table.put(key, folded_rnn.input_table(embedding.weight, self.rnn))
        return folded_rnn.run_folded(self.rnn, table, token_ids, lengths, initial)

    def train(self, mode: bool = True) -> RNNEncoder:
        self._table.clear()  # weights may change in training: compute the table anew
        return super().train(mode)

    def top_states(self, final: torch.Tensor) -> torch.Tensor:
        """The top layer's final states, (batch, output_size), from ``final`` (layers *
        directions, batch, hidden): the forward direction's state at the last real
        token, then the backward direction's at the first."""
        directions = 2 if self.rnn.bidirectional else 1
        return torch.cat(list(final[-directions:]), dim=-1)


class _TableCache:
    """One input table and the key of the weights it was computed from. Not part of
    the module's state: copies and pickles start empty."""

    def __init__(self) -> None:
        self._entry: tuple[tuple, torch.Tensor] | None = None

    def get(self, key: tuple) -> torch.Tensor | None:
        entry = self._entry
        return entry[1] if entry is not None and entry[0] == key else None

    def put(self, key: tuple, table: torch.Tensor) -> torch.Tensor:
        self._entry = (key, table)
        return table

    def clear(self) -> None:
        self._entry = None

    def __deepcopy__(self, memo: dict) -> _TableCache:
        return _TableCache()

    def __getstate__(self) -> dict:
        return {"_entry": None}
