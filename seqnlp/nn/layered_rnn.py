"""Run a recurrent stack one layer and one direction at a time, with what goes between
layers: dropout (standard or locked), residual connections and layer normalisation;
weight drop on the recurrent matrices; and the custom cells of ``seqnlp.nn.cells``.

``torch.nn`` cells (RNN, LSTM, GRU) still run each layer with torch's fused kernel
(``_VF``), given their weights explicitly, so a dropped recurrent matrix feeds the
kernel as an ordinary weight. Over a right-padded batch, as ``padded_rnn``: backwards,
each sequence is reversed within its own length, run forwards and reversed back; the
outputs at padded positions are zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seqnlp.nn.cells import CustomCell
from seqnlp.nn.dropout import drop_weight, locked_mask
from seqnlp.nn.padded_rnn import Padding, torch_layer


@dataclass
class Stack:
    """What ``run_layered`` runs: either ``rnn`` (a ``torch.nn`` RNN / LSTM / GRU with
    every layer) or ``cells`` (layers * directions custom cells, layer-major)."""

    rnn: nn.RNNBase | None
    cells: nn.ModuleList | None
    num_layers: int
    directions: int
    hidden_size: int
    lstm_like: bool
    dropout: float
    locked: bool
    weight_drop: float
    residual: bool
    norms: nn.ModuleList | None  # num_layers - 1 LayerNorms, after every layer but the top
    training: bool


def run_layered(
    stack: Stack, inputs: Tensor, lengths: Tensor, h0: Tensor, c0: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Run ``stack`` over a right-padded batch.

    Args:
        inputs: (batch, time, input_size).
        lengths: (batch,) real lengths, each in 1..time.
        h0, c0: initial states (layers * directions, batch, hidden); c0 for LSTM-like
            cells only.

    Returns:
        outputs (batch, time, directions * hidden), zeros at padded positions; the
        final hidden states (layers * directions, batch, hidden) after each row's last
        real step; and for LSTM-like cells the final cell states likewise, or None
        where a torch LSTM ran over a batch with padding (its fused kernel keeps only
        the state after the last padded step).
    """
    time = inputs.size(1)
    padding = Padding(lengths.to(inputs.device), time, stack.hidden_size, stack.directions == 2)
    flip = padding.flip
    flat = stack.rnn._flat_weights if stack.rnn is not None else []
    per_state = len(flat) // (stack.num_layers * stack.directions) if flat else 0
    x, h_finals, c_finals = inputs, [], []
    cells_known = stack.lstm_like
    for layer in range(stack.num_layers):
        layer_input = x
        if layer > 0 and stack.dropout > 0 and stack.training:
            x = x * locked_mask(x, stack.dropout) if stack.locked else (
                nn.functional.dropout(x, stack.dropout, True))  # fmt: skip
        outputs = []
        for direction in range(stack.directions):
            s = layer * stack.directions + direction
            seq = x if direction == 0 else flip(x)
            h_s = h0[s]  # (batch, hidden)
            c_s = c0[s] if c0 is not None else None
            c_final: Tensor | None = None
            if stack.rnn is not None:
                w = list(flat[s * per_state : (s + 1) * per_state])
                w[1] = drop_weight(w[1], stack.weight_drop, stack.training)  # weight_hh
                c_in = c_s.unsqueeze(0) if c_s is not None else None
                out, c_last = torch_layer(stack.rnn, seq, h_s.unsqueeze(0), c_in, w)
                if c_last is not None and padding.full:
                    c_final = c_last[0]
                elif c_last is not None:
                    cells_known = False
            else:
                assert stack.cells is not None
                cell: CustomCell = stack.cells[s]  # type: ignore[assignment]
                w_hh = drop_weight(cell.weight_hh, stack.weight_drop, stack.training)
                state_mask = None
                if stack.locked and stack.dropout > 0 and stack.training:
                    state_mask = locked_mask(h_s.unsqueeze(1), stack.dropout)[:, 0]
                state = (h_s, c_s) if c_s is not None else (h_s,)
                out, cs = cell.run(seq, state, w_hh, state_mask)
                if cs is not None:
                    c_final = padding.final(cs if direction == 0 else flip(cs), direction == 1)
            if direction == 1:
                out = flip(out)
            h_finals.append(padding.final(out, direction == 1))  # (batch, hidden)
            if c_final is not None:
                c_finals.append(c_final)
            outputs.append(out)
        x = torch.cat(outputs, dim=-1) if stack.directions == 2 else outputs[0]
        if stack.residual and layer > 0:
            x = x + layer_input
        if stack.norms is not None and layer < stack.num_layers - 1:
            x = stack.norms[layer](x)
    c_out = torch.stack(c_finals) if cells_known and c_finals else None
    return padding.zero_padding(x), torch.stack(h_finals), c_out
