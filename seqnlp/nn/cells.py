"""The recurrent cells torch has no fused kernel for: peephole and coupled-gate LSTMs,
and layer-normalised LSTM and GRU cells. One module is one direction of one layer.

Each runs as the fused ``torch.nn`` kernels do: the input-side products of the whole
sequence in one matrix product (``input_products``), then a Python loop over time
whose body is one ``addmm`` and a handful of element-wise operations (``step``). The
layer-norm LSTM runs its sequences gate-major (``_run_layernorm_lstm``: one batched
product of the four gate blocks a step, which uses a second thread where one product
does not); ``step`` (streaming, the gate inspector) is the same cell batch-major. The
peephole and layer-norm LSTMs run their loops through ``seqnlp.nn.cell_loops``, whose
hand-written backward takes the place of a dozen autograd nodes a step.
TorchScript and ``torch.compile`` were measured on this loop and did not make it
faster on the CPU (docs/benchmarks.md, "Recurrent cells against nn.LSTM").

Gate layouts (rows of ``weight_ih`` / ``weight_hh``, ``hidden`` rows each):

- ``peephole_lstm`` (Gers & Schmidhuber 2000), torch's LSTM order ``i, f, g, o``::

      i = σ(W_i x + U_i h + p_i ⊙ c)        f = σ(W_f x + U_f h + p_f ⊙ c)
      c' = f ⊙ c + i ⊙ tanh(W_g x + U_g h)  o = σ(W_o x + U_o h + p_o ⊙ c')
      h' = o ⊙ tanh(c')

  (biases ``b_ih + b_hh`` inside every gate; zero peepholes make it ``nn.LSTM``);
- ``cifg_lstm`` (coupled input and forget gates, Greff et al. 2017), order ``f, o, g``:
  the LSTM above without peepholes and with ``i = 1 - f``;
- ``layernorm_lstm`` (Ba et al. 2016), order ``i, f, o, g``: every gate's input and
  recurrent products are layer-normalised apart (gains ``ln_ih``, ``ln_hh``), then
  ``bias`` is added; ``h' = o ⊙ tanh(LN(c'))`` (gain and shift ``ln_cell``);
- ``layernorm_gru``, torch's GRU order ``r, z, n``::

      r = σ(LN(W_r x) + LN(U_r h) + b_r)    z = σ(LN(W_z x) + LN(U_z h) + b_z)
      n = tanh(LN(W_n x) + b_n + r ⊙ LN(U_n h))     h' = (1 - z) ⊙ n + z ⊙ h
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from seqnlp.nn.cell_loops import LayerNormLSTMLoop, PeepholeLoop, run_loop

TORCH_CELLS = ("rnn", "rnn_relu", "gru", "lstm")
CUSTOM_CELLS = ("peephole_lstm", "cifg_lstm", "layernorm_lstm", "layernorm_gru")
CELLS = TORCH_CELLS + CUSTOM_CELLS
#: cells whose state is a pair (hidden, cell)
LSTM_LIKE = ("lstm", "peephole_lstm", "cifg_lstm", "layernorm_lstm")
#: each custom cell's gates, in the order of its weight rows
GATES: dict[str, tuple[str, ...]] = {
    "peephole_lstm": ("input", "forget", "candidate", "output"),
    "cifg_lstm": ("forget", "output", "candidate"),
    "layernorm_lstm": ("input", "forget", "output", "candidate"),
    "layernorm_gru": ("reset", "update", "candidate"),
}

State = tuple[Tensor, ...]  # (h,) or (h, c), each (batch, hidden)


def _group_norm(x: Tensor, gain: Tensor) -> Tensor:
    """Layer-normalise each gate's block of x (..., gates * hidden) apart, then scale by
    ``gain`` (gates, hidden); no shift (the cell's bias follows). (A group norm with a
    group per gate gives the same numbers, 2.7 times slower on the CPU.)"""
    gates, hidden = gain.shape
    shape = x.shape
    y = F.layer_norm(x.reshape(*shape[:-1], gates, hidden), (hidden,))  # (..., gates, hidden)
    return (y * gain).reshape(shape)


def _group_norm_add(x: Tensor, gain: Tensor, other: Tensor) -> Tensor:
    """``other + _group_norm(x, gain)`` with the scaling and the sum in one kernel."""
    gates, hidden = gain.shape
    y = F.layer_norm(x.reshape(*x.shape[:-1], gates, hidden), (hidden,))
    return torch.addcmul(other, y.reshape(x.shape), gain.reshape(-1))


class CustomCell(nn.Module):
    """One direction of one layer of a custom recurrent cell.

    Args:
        kind: one of ``CUSTOM_CELLS``.
        input_size: features per time step.
        hidden_size: units.
    """

    def __init__(self, kind: str, input_size: int, hidden_size: int) -> None:
        super().__init__()
        if kind not in GATES:
            raise ValueError(f"unknown custom cell {kind!r}: expected one of {CUSTOM_CELLS}")
        self.kind = kind
        self.hidden_size = hidden_size
        self.lstm_like = kind in LSTM_LIKE
        self.layernorm = kind.startswith("layernorm")
        size = len(GATES[kind]) * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(size))
        # Layer-normalised cells add one bias after the norms; the others keep torch's two.
        self.bias_hh = None if self.layernorm else nn.Parameter(torch.empty(size))
        peephole = kind == "peephole_lstm"
        self.peephole = nn.Parameter(torch.empty(3, hidden_size)) if peephole else None
        if self.layernorm:
            self.ln_ih = nn.Parameter(torch.ones(len(GATES[kind]), hidden_size))
            self.ln_hh = nn.Parameter(torch.ones(len(GATES[kind]), hidden_size))
            if self.lstm_like:
                self.ln_cell = nn.Parameter(torch.stack([torch.ones(hidden_size),
                                                         torch.zeros(hidden_size)]))  # fmt: skip
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's RNN default: every weight and bias uniform in ±1/sqrt(hidden); norm
        gains 1 (and the cell norm's shift 0)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, p in self.named_parameters():
            if not name.startswith("ln_"):
                nn.init.uniform_(p, -bound, bound)

    def gate_rows(self, gate: str) -> slice:
        """The rows of ``weight_ih`` / ``weight_hh`` / ``bias_ih`` that make ``gate``."""
        k = GATES[self.kind].index(gate)
        return slice(k * self.hidden_size, (k + 1) * self.hidden_size)

    def initial(self, batch: int, like: Tensor) -> State:
        """Zero state for ``batch`` rows."""
        h = like.new_zeros(batch, self.hidden_size)
        return (h, torch.zeros_like(h)) if self.lstm_like else (h,)

    def input_products(self, x: Tensor) -> Tensor:
        """The input side of every gate for every step at once: x (..., input_size) ->
        (..., gates * hidden), with the biases that do not depend on the state."""
        if self.layernorm:
            return _group_norm_add(F.linear(x, self.weight_ih), self.ln_ih, self.bias_ih)
        assert self.bias_hh is not None
        return F.linear(x, self.weight_ih, self.bias_ih + self.bias_hh)

    def step(self, xw: Tensor, state: State, weight_hh_t: Tensor) -> State:
        """One step from the input products xw (batch, gates * hidden), the state and
        the recurrent matrix transposed, (hidden, gates * hidden). Returns the new
        state, hidden first; the output is the hidden state."""
        n = self.hidden_size
        h = state[0]
        if self.kind == "peephole_lstm":
            c = state[1]
            assert self.peephole is not None
            g = torch.addmm(xw, h, weight_hh_t)  # (batch, 4n)
            i = torch.sigmoid(torch.addcmul(g[:, :n], self.peephole[0], c))
            f = torch.sigmoid(torch.addcmul(g[:, n : 2 * n], self.peephole[1], c))
            c = torch.addcmul(f * c, i, torch.tanh(g[:, 2 * n : 3 * n]))
            o = torch.sigmoid(torch.addcmul(g[:, 3 * n :], self.peephole[2], c))
            return o * torch.tanh(c), c
        if self.kind == "cifg_lstm":
            c = state[1]
            g = torch.addmm(xw, h, weight_hh_t)  # (batch, 3n): f, o, g
            fo = torch.sigmoid(g[:, : 2 * n])
            cand = torch.tanh(g[:, 2 * n :])
            c = torch.addcmul(cand, fo[:, :n], c - cand)  # f c + (1 - f) g
            return fo[:, n:] * torch.tanh(c), c
        if self.kind == "layernorm_lstm":
            c = state[1]
            g = _group_norm_add(h @ weight_hh_t, self.ln_hh, xw)  # (batch, 4n): i, f, o, g
            ifo = torch.sigmoid(g[:, : 3 * n])
            c = torch.addcmul(ifo[:, n : 2 * n] * c, ifo[:, :n], torch.tanh(g[:, 3 * n :]))
            normed = F.layer_norm(c, (n,), self.ln_cell[0], self.ln_cell[1])
            return ifo[:, 2 * n :] * torch.tanh(normed), c
        # layernorm_gru
        hu = _group_norm(h @ weight_hh_t, self.ln_hh)  # (batch, gates * n)
        rz = torch.sigmoid(xw[:, : 2 * n] + hu[:, : 2 * n])
        cand = torch.tanh(torch.addcmul(xw[:, 2 * n :], rz[:, :n], hu[:, 2 * n :]))
        return (torch.addcmul(cand, rz[:, n:], h - cand),)

    def run(
        self,
        x: Tensor,
        state: State,
        weight_hh: Tensor | None = None,
        state_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Run forwards over every step of x (batch, time, input_size).

        Args:
            state: the initial state, each (batch, hidden).
            weight_hh: the recurrent matrix to use (weight drop); default ``weight_hh``.
            state_mask: (batch, hidden) locked dropout mask applied to the hidden state
                before every recurrent product (variational RNN, Gal & Ghahramani 2016).

        Returns:
            hidden states (batch, time, hidden), and for LSTM-like cells the cell
            states (batch, time, hidden) (None otherwise).
        """
        if self.kind == "layernorm_lstm":
            return self._run_layernorm_lstm(x, state, weight_hh, state_mask)
        xw = self.input_products(x)  # (batch, time, gates * hidden)
        w_t = (self.weight_hh if weight_hh is None else weight_hh).t()
        if self.kind == "peephole_lstm":
            assert self.peephole is not None
            return run_loop(PeepholeLoop, xw.transpose(0, 1), state[0], state[1], w_t,
                            self.peephole, state_mask)  # fmt: skip
        hs, cs = [], []
        for t in range(x.size(1)):
            if state_mask is not None:
                state = (state[0] * state_mask, *state[1:])
            state = self.step(xw[:, t], state, w_t)
            hs.append(state[0])
            if self.lstm_like:
                cs.append(state[1])
        return torch.stack(hs, dim=1), (torch.stack(cs, dim=1) if self.lstm_like else None)

    def _run_layernorm_lstm(
        self, x: Tensor, state: State, weight_hh: Tensor | None, state_mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """``run`` for ``layernorm_lstm``, gate-major: the gates laid out (gates, batch,
        hidden), so that the recurrent product is one batched product of the four
        (hidden, hidden) blocks and each gate's norm and activation run on a contiguous
        block. On 2 threads MKL spreads the batched product over both, where one
        (batch, hidden) x (hidden, 4 hidden) product gains nothing from the second
        (docs/benchmarks.md). x (batch, time, input_size) -> hidden and cell states,
        each (batch, time, hidden)."""
        batch, time, _ = x.shape
        n = self.hidden_size
        w = self.weight_hh if weight_hh is None else weight_hh
        w_blocks = w.view(4, n, n).transpose(1, 2)  # (gates, hidden in, hidden out)
        xw = self.input_products(x).view(batch, time, 4, n).permute(1, 2, 0, 3)  # (time, 4, b, n)
        return run_loop(LayerNormLSTMLoop, xw, state[0], state[1], w_blocks,
                        self.ln_hh.unsqueeze(1), self.ln_cell, state_mask)  # fmt: skip

    def gate_values(self, x: Tensor, state: State) -> tuple[dict[str, Tensor], Tensor]:
        """Each gate's activations (time, hidden) over one sequence x (time, input_size)
        from ``state`` (each (1, hidden)), and the hidden states (time, hidden): what
        the gate inspector draws."""
        xw = self.input_products(x.unsqueeze(0))[0]  # (time, gates * n)
        n, w_t = self.hidden_size, self.weight_hh.t()
        values: dict[str, list[Tensor]] = {}
        hs = []
        for t in range(x.size(0)):
            h = state[0]
            if self.layernorm:
                g = xw[t : t + 1] + _group_norm(h @ w_t, self.ln_hh)
            else:
                g = torch.addmm(xw[t : t + 1], h, w_t)
            blocks = dict(zip(GATES[self.kind], g.split(n, dim=1), strict=True))
            if self.kind == "peephole_lstm":
                assert self.peephole is not None
                blocks["input"] = blocks["input"] + self.peephole[0] * state[1]
                blocks["forget"] = blocks["forget"] + self.peephole[1] * state[1]
            new = self.step(xw[t : t + 1], state, w_t)
            if self.kind == "peephole_lstm":
                assert self.peephole is not None
                blocks["output"] = blocks["output"] + self.peephole[2] * new[1]
            for name, pre in blocks.items():
                if name != "candidate":
                    values.setdefault(name, []).append(torch.sigmoid(pre)[0])
            if self.kind == "cifg_lstm":
                values.setdefault("input", []).append(1 - torch.sigmoid(blocks["forget"])[0])
            state = new
            hs.append(state[0][0])
        return {k: torch.stack(v) for k, v in values.items()}, torch.stack(hs)
