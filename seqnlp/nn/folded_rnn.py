"""Inference with the token embeddings folded into the first recurrent layer.

When the first recurrent layer reads token embeddings directly (dropout is the
identity in eval mode), its input projection ``W_ih e(token) + b_ih`` depends on the
token alone. ``input_table`` computes it once for every vocabulary entry, and
``run_folded`` starts each batch from a gather in that table instead of a matmul
over every position. For the flair-sized GRU classifier (embeddings 300, GRU 256)
that matmul is about a third of the FLOPs of a batch.

The recurrence is a step loop written here, with fewer kernels per step than
PyTorch's CPU cells: 6 for a GRU, 2 for a tanh / ReLU RNN. Rows are sorted by
length, longest first, so the rows still inside their sequence at a step are a
prefix of the batch and padding is never computed. Each step writes its hidden
state straight into a (time + 1, batch, hidden) buffer: for the forward direction
slot ``t + 1`` holds the state after step ``t`` and slot 0 the initial state; for
the backward direction slot ``t`` holds the state after step ``t`` and slot
``time`` the initial state. A row that is not running at a step keeps whatever its
slot was filled with (zeros, or the initial state), which is where a backward row
starts from when its own last position comes.

GRU and tanh / ReLU RNNs only. An LSTM on CPU runs oneDNN's fused kernel
(``padded_rnn``), which a step loop like this one beat only with wide embeddings
and batches of 64 or more, and lost to by up to 3x with embeddings of 100 or
batches of 16 (docs/benchmarks.md, optimisation log entry 16).

Inference only: the steps write in place, so autograd cannot follow them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

#: The largest input table ``RNNEncoder`` folds (bytes); beyond it a batch is
#: embedded and projected as usual. A 20k-word vocabulary with a GRU of 256 takes
#: 59 MiB; a bidirectional GRU of 512 over 100k words would take 1.1 GiB.
MAX_TABLE_BYTES = 512 * 2**20

FOLDABLE = ("GRU", "RNN_TANH", "RNN_RELU")  # ``nn.RNNBase.mode``s that run_folded runs

def table_bytes(vocab_size: int, rnn: nn.RNNBase) -> int:
    """Size of ``input_table`` for ``vocab_size`` entries, in bytes (float32)."""
    directions = 2 if rnn.bidirectional else 1
    gates = 3 if rnn.mode == "GRU" else 1
    return vocab_size * directions * gates * rnn.hidden_size * 4


def _weights(
    rnn: nn.RNNBase, layer: int, direction: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One layer and direction's weights: w_ih (gates * hidden, in), input bias
    (gates * hidden,), w_hh_t (hidden, gates * hidden), recurrent bias (gates *
    hidden,). The input bias carries both biases except for the GRU, whose
    recurrent bias of the new gate is inside ``r * (W_hn h + b_hn)``."""
    suffix = f"_l{layer}" + ("_reverse" if direction else "")
    w_ih = getattr(rnn, "weight_ih" + suffix)
    w_hh = getattr(rnn, "weight_hh" + suffix)
    if rnn.bias:
        b_ih, b_hh = getattr(rnn, "bias_ih" + suffix), getattr(rnn, "bias_hh" + suffix)
    else:
        b_ih = b_hh = w_ih.new_zeros(w_ih.size(0))
    b_in = b_ih if rnn.mode == "GRU" else b_ih + b_hh
    return w_ih, b_in, w_hh.t(), b_hh


def input_table(embedding: torch.Tensor, rnn: nn.RNNBase) -> torch.Tensor:
    """The first layer's input projection of every embedding row.

    Args:
        embedding: (vocab, input_size), the rows the first layer reads.
        rnn: an ``nn.GRU`` or ``nn.RNN`` with ``input_size`` inputs.

    Returns:
        (directions, vocab, gates * hidden), biases included as ``_weights`` says.
    """
    directions = 2 if rnn.bidirectional else 1
    tables = []
    for direction in range(directions):
        w_ih, b_in, _, _ = _weights(rnn, 0, direction)
        tables.append(torch.addmm(b_in, embedding, w_ih.t()))
    return torch.stack(tables)


Step = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], None]


def _gru_step(g: Tensor, h: Tensor, w_hh_t: Tensor, b_hh: Tensor, out: Tensor) -> None:
    """g: (n, 3H) input gates r, z, n; h: (n, H); writes the new state into out."""
    size = h.size(1)
    gh = torch.addmm(b_hh, h, w_hh_t)  # (n, 3H)
    rz = gh[:, : 2 * size].add_(g[:, : 2 * size]).sigmoid_()
    new = torch.addcmul(g[:, 2 * size :], rz[:, :size], gh[:, 2 * size :]).tanh_()
    torch.lerp(new, h, rz[:, size:], out=out)  # new + z * (h - new)


def _tanh_step(g: Tensor, h: Tensor, w_hh_t: Tensor, b_hh: Tensor, out: Tensor) -> None:
    torch.tanh(torch.addmm(g, h, w_hh_t), out=out)


def _relu_step(g: Tensor, h: Tensor, w_hh_t: Tensor, b_hh: Tensor, out: Tensor) -> None:
    torch.clamp_min(torch.addmm(g, h, w_hh_t), 0.0, out=out)


_STEPS: dict[str, Step] = {
    "GRU": _gru_step, "RNN_TANH": _tanh_step, "RNN_RELU": _relu_step,
}  # fmt: skip


def _direction(
    rnn: nn.RNNBase,
    gates: torch.Tensor,
    active: list[int],
    h0: torch.Tensor,
    w_hh_t: torch.Tensor,
    b_hh: torch.Tensor,
    backward: bool,
    fill: bool,
) -> torch.Tensor:
    """One layer and direction over rows sorted longest first.

    Args:
        gates: (time, batch, gates * hidden) input projections.
        active: rows inside their sequence at each step (non-increasing).
        h0: (batch, hidden) initial states.
        fill: fill the buffer with h0 (a non-zero initial state) instead of zeros.

    Returns:
        the (time + 1, batch, hidden) state buffer described in the module docstring.
    """
    time, batch, _ = gates.shape
    if fill:
        buffer = h0.unsqueeze(0).repeat(time + 1, 1, 1)
    else:
        buffer = h0.new_zeros(time + 1, batch, rnn.hidden_size)
    step = _STEPS[rnn.mode]
    steps = range(time - 1, -1, -1) if backward else range(time)
    for t in steps:
        n = active[t]
        read, write = (t + 1, t) if backward else (t, t + 1)
        step(gates[t, :n], buffer[read, :n], w_hh_t, b_hh, buffer[write, :n])
    return buffer


def run_folded(
    rnn: nn.RNNBase,
    table: torch.Tensor,
    token_ids: torch.Tensor,
    lengths: torch.Tensor,
    initial: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``rnn`` over token ids whose first-layer inputs are rows of ``table``.

    The same results as ``run_padded`` over the embedded tokens (up to float
    rounding), for inference: no autograd.

    Args:
        rnn: an ``nn.GRU`` or ``nn.RNN`` (``batch_first``).
        table: (directions, vocab, gates * hidden) from ``input_table``.
        token_ids: (batch, time), right-padded.
        lengths: (batch,) real lengths, each in 1..time.
        initial: (layers * directions, batch, hidden), or None for zeros.

    Returns:
        outputs: (batch, time, directions * hidden), zeros at padded positions.
        final: (layers * directions, batch, hidden), each layer and direction's hidden
            state after its last real step.
    """
    if torch.is_grad_enabled():
        raise RuntimeError("run_folded is for inference: run it under torch.no_grad()")
    if rnn.mode not in FOLDABLE:
        raise ValueError(f"run_folded runs {FOLDABLE}, not {rnn.mode}")
    batch, time = token_ids.shape
    directions = 2 if rnn.bidirectional else 1
    lengths = lengths.to(token_ids.device)
    order = lengths.argsort(descending=True)
    ordered = lengths[order]
    steps = torch.arange(time, device=lengths.device)
    active = (ordered.unsqueeze(0) > steps.unsqueeze(1)).sum(1).tolist()  # rows at step t
    ids = token_ids[order].t()  # (time, batch)
    shape = (rnn.num_layers * directions, batch, rnn.hidden_size)
    h0 = table.new_zeros(shape) if initial is None else initial[:, order]
    fill = initial is not None
    x: torch.Tensor | None = None
    finals: list[torch.Tensor] = []
    rows = torch.arange(batch, device=lengths.device)
    for layer in range(rnn.num_layers):
        outputs = []
        for direction in range(directions):
            s = layer * directions + direction
            w_ih, b_in, w_hh_t, b_hh = _weights(rnn, layer, direction)
            if x is None:
                gates = nn.functional.embedding(ids, table[direction])  # (time, batch, G)
            else:
                gates = torch.addmm(b_in, x.flatten(0, 1), w_ih.t()).view(time, batch, -1)
            buffer = _direction(rnn, gates, active, h0[s], w_hh_t, b_hh, bool(direction), fill)
            if direction:
                outputs.append(buffer[:time])
                finals.append(buffer[0])
            else:
                outputs.append(buffer[1:])
                finals.append(buffer[ordered, rows])
        x = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
    assert x is not None
    if fill:  # the buffers were filled with the initial state: zero the padding
        mask = steps.unsqueeze(1) < ordered.unsqueeze(0)  # (time, batch)
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
    inverse = torch.empty_like(order)
    inverse[order] = rows
    return x[:, inverse].transpose(0, 1), torch.stack(finals)[:, inverse]
