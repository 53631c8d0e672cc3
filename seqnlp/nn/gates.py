"""What a recurrent encoder's gates do over one sequence: each gate's activations and
the hidden state at every step, layer by layer and direction by direction, computed
from the encoder's own weights (the gate inspector, ``seqnlp gates``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from seqnlp.nn.cells import CustomCell
from seqnlp.nn.encoder import RNNEncoder

#: the gates of torch's cells, in the order of their weight rows
_TORCH_GATES = {"LSTM": ("input", "forget", "candidate", "output"),
                "GRU": ("reset", "update", "candidate")}  # fmt: skip


@dataclass
class LayerTrace:
    """One layer and direction over a sequence of ``time`` steps: ``gates`` maps each
    gate's name to its activations (time, hidden) (sigmoid gates only: LSTM forget,
    input, output; GRU update, reset), ``hidden`` is the hidden state (time, hidden),
    in the text's order for both directions."""

    layer: int
    direction: str  # "forward" or "backward"
    gates: dict[str, Tensor]
    hidden: Tensor


def _torch_cell_trace(
    encoder: RNNEncoder, layer: int, reverse: bool, x: Tensor
) -> tuple[dict[str, Tensor], Tensor]:
    """Gates and hidden states of one torch layer and direction over x (time, in)."""
    rnn = encoder.rnn
    assert rnn is not None
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    w_ih, w_hh = getattr(rnn, "weight_ih" + suffix), getattr(rnn, "weight_hh" + suffix)
    b_ih, b_hh = getattr(rnn, "bias_ih" + suffix), getattr(rnn, "bias_hh" + suffix)
    n = encoder.hidden_size
    h = x.new_zeros(n)
    c = x.new_zeros(n)
    values: dict[str, list[Tensor]] = {}
    hs = []
    for t in range(x.size(0)):
        wx, uh = w_ih @ x[t] + b_ih, w_hh @ h + b_hh
        if rnn.mode == "LSTM":
            i, f, g, o = (wx + uh).split(n)
            i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
            c = f * c + i * torch.tanh(g)
            h = o * torch.tanh(c)
            step = {"input": i, "forget": f, "output": o}
        elif rnn.mode == "GRU":
            r = torch.sigmoid(wx[:n] + uh[:n])
            z = torch.sigmoid(wx[n : 2 * n] + uh[n : 2 * n])
            cand = torch.tanh(wx[2 * n :] + r * uh[2 * n :])
            h = (1 - z) * cand + z * h
            step = {"reset": r, "update": z}
        else:  # a plain RNN has no gates
            pre = wx + uh
            h = torch.tanh(pre) if rnn.mode == "RNN_TANH" else torch.relu(pre)
            step = {}
        for name, value in step.items():
            values.setdefault(name, []).append(value)
        hs.append(h)
    return {k: torch.stack(v) for k, v in values.items()}, torch.stack(hs)


@torch.no_grad()
def trace_gates(encoder: RNNEncoder, x: Tensor) -> list[LayerTrace]:
    """Every layer's and direction's gates over one sequence x (time, input_size),
    from the encoder's zero (or learned) initial state, in eval mode (no dropout).
    The top layer's hidden states are the encoder's outputs for x."""
    if encoder.initial_h is not None:
        raise ValueError("the gate inspector starts from zeros; this encoder learned its "
                         "initial state")  # fmt: skip
    traces = []
    for layer in range(encoder.num_layers):
        outputs = []
        for d in range(encoder.directions):
            seq = x if d == 0 else x.flip(0)
            if encoder.cells is not None:
                cell = encoder.cells[layer * encoder.directions + d]
                assert isinstance(cell, CustomCell)
                gates, hidden = cell.gate_values(seq, cell.initial(1, seq))
            else:
                gates, hidden = _torch_cell_trace(encoder, layer, d == 1, seq)
            if d == 1:
                gates = {k: v.flip(0) for k, v in gates.items()}
                hidden = hidden.flip(0)
            direction = "forward" if d == 0 else "backward"
            traces.append(LayerTrace(layer, direction, gates, hidden))
            outputs.append(hidden)
        out = torch.cat(outputs, dim=-1)  # (time, directions * hidden)
        if encoder.residual and layer > 0:
            out = out + x
        if encoder.norms is not None and layer < encoder.num_layers - 1:
            out = encoder.norms[layer](out)
        x = out
    return traces
