"""Run a ``torch.nn`` RNN / LSTM / GRU over a right-padded batch, one layer and one
direction at a time, with the same results as packing the batch.

Why: on CPU, PyTorch runs an LSTM over a *padded* tensor with oneDNN's fused kernel,
but over a ``PackedSequence`` with a step-by-step loop that also multiplies the inputs
one step at a time; GRU and tanh RNN get one input matmul for all steps when padded.
On this project's benchmark machine the padded path is 1.2-2.8x faster for LSTMs
(inference and training) and 1.4-1.5x for GRU training (docs/benchmarks.md).

Except where most of a batch is padding, in prediction: a batch of random lengths
(the server's micro-batches: 31 sentences of 2 to 100+ words) is mostly padding, and
there the packed loop, which steps only the rows still running, is faster
(``PACK_BELOW``; docs/benchmarks.md). Training always runs padded.

Padding must not reach a real position. Forwards, the padding comes after each
sequence's end, so it cannot. Backwards, each sequence is reversed within its own
length (its padding stays at the end), run forwards with the reverse weights, and
reversed back. Outputs at padded positions are set to zero, as unpacking gives.
"""

from __future__ import annotations

import torch
from torch import _VF, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

#: prediction packs a batch whose real steps are less than this share of its padded
#: size, sum(lengths) / (batch * time) (docs/benchmarks.md, "Serving over HTTP")
PACK_BELOW = 0.45


def reversal_index(lengths: torch.Tensor, time: int) -> torch.Tensor:
    """(batch, time) positions that put each row's first ``length`` steps in reverse
    order and leave padded steps in place (``reverse_within``); lengths: (batch,)."""
    steps = torch.arange(time, device=lengths.device)  # (time,)
    ends = lengths.unsqueeze(1)  # (batch, 1)
    return torch.where(steps < ends, ends - 1 - steps, steps)


def reverse_within(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (batch, time, features) with each row's real steps reversed, by a
    ``reversal_index`` (batch, time). Its own inverse."""
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class Padding:
    """A right-padded batch's bookkeeping for running it one direction at a time:
    reversing each row within its length, the state after each row's last real step,
    and zeros at padded positions.

    Args:
        lengths: (batch,) real lengths, each in 1..time.
        time: padded length.
        hidden: features of the outputs whose final states are read.
        backwards: whether any direction runs backwards (only then is the reversal
            index built).
    """

    def __init__(self, lengths: torch.Tensor, time: int, hidden: int, backwards: bool) -> None:
        batch = lengths.size(0)
        self.full = bool((lengths == time).all())
        self.mask = torch.arange(time, device=lengths.device) < lengths.unsqueeze(1)
        self.last = (lengths - 1).view(batch, 1, 1).expand(batch, 1, hidden)
        self.index = None if self.full or not backwards else reversal_index(lengths, time)

    def flip(self, t: torch.Tensor) -> torch.Tensor:
        """t (batch, time, features) with each row's real steps reversed."""
        return t.flip(1) if self.index is None else reverse_within(t, self.index)

    def final(self, out: torch.Tensor, backward: bool) -> torch.Tensor:
        """The state (batch, hidden) after a direction's last real step, from its
        outputs (batch, time, hidden) in sentence order: forwards at each row's last
        real position, backwards at position 0."""
        return out[:, 0] if backward else out.gather(1, self.last).squeeze(1)

    def zero_padding(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, time, features) with zeros at padded positions, as unpacking gives."""
        return x if self.full else x.masked_fill(~self.mask.unsqueeze(-1), 0.0)


def torch_layer(
    rnn: nn.RNNBase, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor | None,
    weights: list[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """One single-direction layer of ``rnn`` over padded x (batch, time, in) with the
    given weights (its own, or a dropped copy): outputs (batch, time, hidden) and, for
    an LSTM, the cell state after the last step (1, batch, hidden), else None."""
    # has_biases, num_layers, dropout, train, bidirectional, batch_first
    args = (rnn.bias, 1, 0.0, rnn.training, False, True)
    if rnn.mode == "LSTM":
        assert c0 is not None
        out, _, c = _VF.lstm(x, (h0, c0), weights, *args)
        return out, c
    run = {"GRU": _VF.gru, "RNN_TANH": _VF.rnn_tanh, "RNN_RELU": _VF.rnn_relu}[rnn.mode]
    return run(x, h0, weights, *args)[0], None


def run_padded(
    rnn: nn.RNNBase,
    inputs: torch.Tensor,
    lengths: torch.Tensor,
    initial: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``rnn`` (``batch_first``, no projections) over a right-padded batch.

    Args:
        rnn: an ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` with ``batch_first=True``.
        inputs: (batch, time, input_size).
        lengths: (batch,) real lengths, each in 1..time.
        initial: (layers * directions, batch, hidden) (a pair for LSTM), or None for zeros.

    Returns:
        outputs: (batch, time, directions * hidden), zeros at padded positions.
        final: (layers * directions, batch, hidden), each layer and direction's hidden
            state after the last real step (the LSTM cell states are not returned).
    """
    if not rnn.batch_first or getattr(rnn, "proj_size", 0):
        raise ValueError("run_padded needs batch_first=True and no projections")
    batch, time, _ = inputs.shape
    lengths = lengths.to(inputs.device)
    if _pack(rnn, lengths, batch * time):
        return _run_packed(rnn, inputs, lengths, initial)
    directions = 2 if rnn.bidirectional else 1
    states = rnn.num_layers * directions
    shape = (states, batch, rnn.hidden_size)
    if initial is None:
        h0 = inputs.new_zeros(shape)
        c0 = inputs.new_zeros(shape) if rnn.mode == "LSTM" else None
    elif isinstance(initial, tuple):
        h0, c0 = initial
    else:
        h0, c0 = initial, None
    # The module's weights in the order its own forward passes them to torch's
    # functional RNNs (``_VF``): layer by layer, direction by direction.
    weights = rnn._flat_weights
    per_state = len(weights) // states
    padding = Padding(lengths, time, rnn.hidden_size, directions == 2)
    x, finals = inputs, []
    for layer in range(rnn.num_layers):
        if layer > 0 and rnn.dropout > 0:
            x = nn.functional.dropout(x, rnn.dropout, rnn.training)
        outputs = []
        for direction in range(directions):
            s = layer * directions + direction
            c = c0[s : s + 1] if c0 is not None else None
            w = weights[s * per_state : (s + 1) * per_state]
            if direction == 0:
                out = torch_layer(rnn, x, h0[s : s + 1], c, w)[0]  # (batch, time, hidden)
            else:
                out = padding.flip(torch_layer(rnn, padding.flip(x), h0[s : s + 1], c, w)[0])
            finals.append(padding.final(out, direction == 1))  # (batch, hidden)
            outputs.append(out)
        x = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
    return padding.zero_padding(x), torch.stack(finals)


def _pack(rnn: nn.RNNBase, lengths: torch.Tensor, padded_steps: int) -> bool:
    """Whether ``run_padded`` packs this batch: in prediction (no autograd, eval mode,
    not being traced for export) when its real steps are under ``PACK_BELOW`` of it."""
    if torch.is_grad_enabled() or rnn.training or torch.jit.is_tracing():
        return False
    return int(lengths.sum()) < PACK_BELOW * padded_steps


def _run_packed(
    rnn: nn.RNNBase,
    inputs: torch.Tensor,
    lengths: torch.Tensor,
    initial: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``run_padded``'s results through torch's packed loop: outputs (batch, time,
    directions * hidden), zeros at padded positions, and the final hidden states
    (layers * directions, batch, hidden)."""
    packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
    if initial is None:
        out, state = rnn(packed)
    elif rnn.mode == "LSTM":
        out, state = rnn(packed, initial)
    else:
        out, state = rnn(packed, initial[0] if isinstance(initial, tuple) else initial)
    outputs, _ = pad_packed_sequence(out, batch_first=True, total_length=inputs.size(1))
    return outputs, state[0] if rnn.mode == "LSTM" else state
