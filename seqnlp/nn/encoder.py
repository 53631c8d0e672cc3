"""The recurrent encoder shared by every task: RNN, LSTM or GRU over padded batches."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqnlp.nn.padded_rnn import prefers_padded, run_padded

Cell = Literal["rnn", "lstm", "gru"]
_CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class RNNEncoder(nn.Module):
    """Stacked, optionally bidirectional recurrent encoder over padded batches.

    Padding never enters the recurrence. On CPU the padded batch is run one layer
    and direction at a time (``run_padded``: oneDNN's fused LSTM, one input matmul
    for all steps); on GPU, and int8-quantized, it is packed (cuDNN's kernels). Both
    give the same results.

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

    def learned_initial(self, batch: int) -> State | None:
        """The learned initial state expanded to ``batch`` (None when not learned)."""
        if self.initial_h is None:
            return None
        h = self.initial_h.expand(-1, batch, -1).contiguous()
        if self.initial_c is not None:
            return h, self.initial_c.expand(-1, batch, -1).contiguous()
        return h

    def forward(
        self, inputs: torch.Tensor, lengths: torch.Tensor, initial: State | None = None
    ) -> tuple[torch.Tensor, State]:
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
        if prefers_padded(self.rnn, inputs):
            return run_padded(self.rnn, inputs, lengths, initial)
        packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed, initial)
        outputs, _ = pad_packed_sequence(out, batch_first=True, total_length=inputs.size(1))
        return outputs, final[0] if isinstance(final, tuple) else final

    def last_states(
        self, inputs: torch.Tensor, lengths: torch.Tensor, initial: State | None = None
    ) -> torch.Tensor:
        """The top layer's final states, (batch, output_size): the forward direction's
        state at the last real token, then the backward direction's at the first."""
        _, final = self(inputs, lengths, initial)  # (layers * directions, batch, hidden)
        directions = 2 if self.rnn.bidirectional else 1
        return torch.cat(list(final[-directions:]), dim=-1)
