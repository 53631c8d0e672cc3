"""The recurrent encoder shared by every task: RNN, LSTM or GRU over packed sequences."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

Cell = Literal["rnn", "lstm", "gru"]
_CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class RNNEncoder(nn.Module):
    """Stacked, optionally bidirectional recurrent encoder over padded batches.

    Sequences are packed, so padding never enters the recurrence (and cuDNN's
    fused kernels run on GPU).

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
            final: the last real state of each layer and direction,
                (layers * directions, batch, hidden) (a pair for LSTM).
        """
        out, final = self._run(inputs, lengths, initial)
        outputs, _ = pad_packed_sequence(out, batch_first=True, total_length=inputs.size(1))
        return outputs, final

    def last_states(
        self, inputs: torch.Tensor, lengths: torch.Tensor, initial: State | None = None
    ) -> torch.Tensor:
        """The top layer's final states, (batch, output_size): the forward direction's
        state at the last real token, then the backward direction's at the first (both
        directions' final states). Skips unpacking the per-step outputs."""
        _, final = self._run(inputs, lengths, initial)
        h = final[0] if isinstance(final, tuple) else final  # (layers * directions, batch, hidden)
        directions = 2 if self.rnn.bidirectional else 1
        return torch.cat(list(h[-directions:]), dim=-1)

    def _run(
        self, inputs: torch.Tensor, lengths: torch.Tensor, initial: State | None
    ) -> tuple[PackedSequence, State]:
        packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
        if initial is None:
            initial = self.learned_initial(inputs.size(0))
        return self.rnn(packed, initial)
