"""Inference with the token embeddings folded into the first recurrent layer.

When the first recurrent layer reads token embeddings directly (dropout is the
identity in eval mode), its input projection ``W_ih e(token) + b_ih`` depends on the
token alone. ``input_table`` computes it once for every vocabulary entry, and
``run_folded`` starts each batch from a gather in that table instead of a matmul
over every position. For the flair-sized GRU classifier (embeddings 300, GRU 256)
that matmul is about a third of the FLOPs of a batch.

The recurrence is a step loop written here, with fewer kernels per step than
PyTorch's CPU cells: 6 for a GRU, 7 for an LSTM (its gates reordered to i, f, o, g
so that one sigmoid covers three of them), 2 for a tanh / ReLU RNN. Rows are sorted
by length, longest first, so the rows still inside their sequence at a step are a
prefix of the batch and padding is never computed. Each step writes its hidden
state straight into a (time + 1, batch, hidden) buffer: for the forward direction
slot ``t + 1`` holds the state after step ``t`` and slot 0 the initial state; for
the backward direction slot ``t`` holds the state after step ``t`` and slot
``time`` the initial state. A row that is not running at a step keeps whatever its
slot was filled with (zeros, or the initial state), which is where a backward row
starts from when its own last position comes.

Inference only: the steps write in place, so autograd cannot follow them.
``docs/benchmarks.md`` has the measured speed-ups.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook

#: The largest input table ``RNNEncoder`` folds (bytes); beyond it a batch is
#: embedded and projected as usual. A 20k-word vocabulary with an LSTM of 256 takes
#: 80 MiB; a bidirectional LSTM of 512 over 100k words would take 1.6 GiB.
MAX_TABLE_BYTES = 512 * 2**20

_LSTM_ORDER = (0, 1, 3, 2)  # PyTorch's i, f, g, o -> i, f, o, g

_optimiser_steps = 0


def _count_step(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
    global _optimiser_steps
    _optimiser_steps += 1


# Fused optimisers (Adam(fused=True), as the recipes use) update parameters without
# bumping their version counters, so a table's key also counts every optimiser step.
register_optimizer_step_post_hook(_count_step)


def optimiser_steps() -> int:
    """Optimiser steps taken in this process (any optimiser), for ``input_table`` keys."""
    return _optimiser_steps


def gate_count(rnn: nn.RNNBase) -> int:
    return {"LSTM": 4, "GRU": 3}.get(rnn.mode, 1)


def table_bytes(vocab_size: int, rnn: nn.RNNBase) -> int:
    """Size of ``input_table`` for ``vocab_size`` entries, in bytes (float32)."""
    directions = 2 if rnn.bidirectional else 1
    return vocab_size * directions * gate_count(rnn) * rnn.hidden_size * 4


def _reorder(rnn: nn.RNNBase, t: torch.Tensor) -> torch.Tensor:
    """Gate blocks along dim 0 of a (gates * hidden, ...) tensor in this module's order."""
    if rnn.mode != "LSTM":
        return t
    blocks = t.split(rnn.hidden_size, dim=0)
    return torch.cat([blocks[i] for i in _LSTM_ORDER], dim=0)


def _weights(
    rnn: nn.RNNBase, layer: int, direction: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One layer and direction's weights in this module's gate order:
    w_ih (gates * hidden, in), input bias (gates * hidden,), w_hh_t (hidden,
    gates * hidden), recurrent bias (gates * hidden,). The input bias carries both
    biases except for the GRU, whose recurrent bias of the new gate is inside
    ``r * (W_hn h + b_hn)``."""
    suffix = f"_l{layer}" + ("_reverse" if direction else "")
    w_ih = getattr(rnn, "weight_ih" + suffix)
    w_hh = getattr(rnn, "weight_hh" + suffix)
    if rnn.bias:
        b_ih, b_hh = getattr(rnn, "bias_ih" + suffix), getattr(rnn, "bias_hh" + suffix)
    else:
        b_ih = b_hh = w_ih.new_zeros(w_ih.size(0))
    b_in = b_ih if rnn.mode == "GRU" else b_ih + b_hh
    return _reorder(rnn, w_ih), _reorder(rnn, b_in), _reorder(rnn, w_hh).t(), _reorder(rnn, b_hh)


def input_table(embedding: torch.Tensor, rnn: nn.RNNBase) -> torch.Tensor:
    """The first layer's input projection of every embedding row.

    Args:
        embedding: (vocab, input_size), the rows the first layer reads.
        rnn: an ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` with ``input_size`` inputs.

    Returns:
        (directions, vocab, gates * hidden), biases included as ``_weights`` says.
    """
    directions = 2 if rnn.bidirectional else 1
    tables = []
    for direction in range(directions):
        w_ih, b_in, _, _ = _weights(rnn, 0, direction)
        tables.append(torch.addmm(b_in, embedding, w_ih.t()))
    return torch.stack(tables)


Step = Callable[[Tensor, Tensor, Tensor | None, Tensor, Tensor, Tensor], None]


def _gru_step(
    g: Tensor, h: Tensor, c: Tensor | None, w_hh_t: Tensor, b_hh: Tensor, out: Tensor
) -> None:
    """g: (n, 3H) input gates r, z, n; h: (n, H); writes the new state into out."""
    size = h.size(1)
    gh = torch.addmm(b_hh, h, w_hh_t)  # (n, 3H)
    rz = gh[:, : 2 * size].add_(g[:, : 2 * size]).sigmoid_()
    new = torch.addcmul(g[:, 2 * size :], rz[:, :size], gh[:, 2 * size :]).tanh_()
    torch.lerp(new, h, rz[:, size:], out=out)  # new + z * (h - new)


def _lstm_step(
    g: Tensor, h: Tensor, c: Tensor | None, w_hh_t: Tensor, b_hh: Tensor, out: Tensor
) -> None:
    """g: (n, 4H) input gates i, f, o, g (both biases in); c: (n, H) updated in place."""
    assert c is not None
    size = h.size(1)
    z = torch.addmm(g, h, w_hh_t)  # (n, 4H)
    z[:, : 3 * size].sigmoid_()
    z[:, 3 * size :].tanh_()
    c.mul_(z[:, size : 2 * size]).addcmul_(z[:, :size], z[:, 3 * size :])
    torch.mul(z[:, 2 * size : 3 * size], c.tanh(), out=out)


def _tanh_step(
    g: Tensor, h: Tensor, c: Tensor | None, w_hh_t: Tensor, b_hh: Tensor, out: Tensor
) -> None:
    torch.tanh(torch.addmm(g, h, w_hh_t), out=out)


def _relu_step(
    g: Tensor, h: Tensor, c: Tensor | None, w_hh_t: Tensor, b_hh: Tensor, out: Tensor
) -> None:
    torch.clamp_min(torch.addmm(g, h, w_hh_t), 0.0, out=out)


_STEPS: dict[str, Step] = {
    "GRU": _gru_step, "LSTM": _lstm_step, "RNN_TANH": _tanh_step, "RNN_RELU": _relu_step,
}  # fmt: skip


def _direction(
    rnn: nn.RNNBase,
    gates: torch.Tensor,
    active: list[int],
    h0: torch.Tensor,
    c0: torch.Tensor | None,
    w_hh_t: torch.Tensor,
    b_hh: torch.Tensor,
    backward: bool,
    fill: bool,
) -> torch.Tensor:
    """One layer and direction over rows sorted longest first.

    Args:
        gates: (time, batch, gates * hidden) input projections.
        active: rows inside their sequence at each step (non-increasing).
        h0, c0: (batch, hidden) initial states (c0 for LSTM only).
        fill: fill the buffer with h0 (a non-zero initial state) instead of zeros.

    Returns:
        the (time + 1, batch, hidden) state buffer described in the module docstring.
    """
    time, batch, _ = gates.shape
    if fill:
        buffer = h0.unsqueeze(0).repeat(time + 1, 1, 1)
    else:
        buffer = h0.new_zeros(time + 1, batch, rnn.hidden_size)
    c = c0.clone() if c0 is not None else None
    step = _STEPS[rnn.mode]
    steps = range(time - 1, -1, -1) if backward else range(time)
    for t in steps:
        n = active[t]
        read, write = (t + 1, t) if backward else (t, t + 1)
        step(gates[t, :n], buffer[read, :n], c[:n] if c is not None else None, w_hh_t, b_hh,
             buffer[write, :n])  # fmt: skip
    return buffer


def run_folded(
    rnn: nn.RNNBase,
    table: torch.Tensor,
    token_ids: torch.Tensor,
    lengths: torch.Tensor,
    initial: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``rnn`` over token ids whose first-layer inputs are rows of ``table``.

    The same results as ``run_padded`` over the embedded tokens (up to float
    rounding), for inference: no autograd.

    Args:
        rnn: an ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` (``batch_first``, no projections).
        table: (directions, vocab, gates * hidden) from ``input_table``.
        token_ids: (batch, time), right-padded.
        lengths: (batch,) real lengths, each in 1..time.
        initial: (layers * directions, batch, hidden) (a pair for LSTM), or None for zeros.

    Returns:
        outputs: (batch, time, directions * hidden), zeros at padded positions.
        final: (layers * directions, batch, hidden), each layer and direction's hidden
            state after its last real step.
    """
    if torch.is_grad_enabled():
        raise RuntimeError("run_folded is for inference: run it under torch.no_grad()")
    batch, time = token_ids.shape
    directions = 2 if rnn.bidirectional else 1
    lengths = lengths.to(token_ids.device)
    order = lengths.argsort(descending=True)
    ordered = lengths[order]
    steps = torch.arange(time, device=lengths.device)
    active = (ordered.unsqueeze(0) > steps.unsqueeze(1)).sum(1).tolist()  # rows at step t
    ids = token_ids[order].t()  # (time, batch)
    shape = (rnn.num_layers * directions, batch, rnn.hidden_size)
    c0: torch.Tensor | None = None
    if initial is None:
        h0 = table.new_zeros(shape)
        c0 = table.new_zeros(shape) if rnn.mode == "LSTM" else None
    elif isinstance(initial, tuple):
        h0, c0 = initial[0][:, order], initial[1][:, order]
    else:
        h0 = initial[:, order]
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
            c = c0[s] if c0 is not None else None
            buffer = _direction(rnn, gates, active, h0[s], c, w_hh_t, b_hh, bool(direction), fill)
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
