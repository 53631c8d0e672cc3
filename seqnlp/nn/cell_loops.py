"""The time loops of the peephole and layer-norm LSTMs, with a hand-written backward.

Under autograd, a Python loop over time records a dozen small operations a step, and
the backward replays each as its own node, with its own output allocation, and takes
the recurrent matrix's gradient one (batch, hidden) product at a time. Here each loop
is one ``torch.autograd.Function``: the forward keeps what the backward needs (gate
activations, normalised values, inverse standard deviations), and the backward runs
back through time with a few fused element-wise operations a step. It makes the gate
gradients of all steps into one (time, ...) tensor, and takes the recurrent matrix's
gradient from it in one product at the end, as torch's fused LSTM backward does. The
same forward serves prediction, keeping nothing.

The input products ``xw`` are time-major here: (time, batch, 4 hidden) for the peephole
LSTM and (time, 4, batch, hidden) (gate-major) for the layer-norm LSTM. The states
come out batch-major, (batch, time, hidden), as ``CustomCell.run`` returns them.
The equations are those of ``seqnlp.nn.cells``; ``tests/test_cells.py`` checks both
loops against their transcription and with gradcheck.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

EPS = 1e-5  # F.layer_norm's


def run_loop(
    loop: type[PeepholeLoop] | type[LayerNormLSTMLoop], *args: Any
) -> tuple[Tensor, Tensor]:
    """A loop's hidden and cell states (batch, time, hidden): through its autograd
    Function when gradients are on, else its forward alone, which keeps nothing."""
    if torch.is_grad_enabled():
        return loop.apply(*args)
    hs, cs, _ = loop.run(*args, keep=False)
    return hs, cs


def _ln_backward(dy: Tensor, y: Tensor, rstd: Tensor) -> Tensor:
    """The gradient of a non-affine layer norm over the last dimension at its input,
    given the gradient ``dy`` at its output ``y`` and the inverse deviations ``rstd``
    (..., 1)."""
    mean_dy = dy.mean(-1, keepdim=True)
    mean_dy_y = (dy * y).mean(-1, keepdim=True)
    return rstd * (dy - mean_dy - y * mean_dy_y)


def peephole_forward(
    xw: Tensor, h: Tensor, c: Tensor, w_t: Tensor, peep: Tensor, mask: Tensor | None,
    keep: bool,
) -> tuple[Tensor, Tensor, dict[str, list[Any]] | None]:  # fmt: skip
    """The peephole LSTM over xw (time, batch, 4 hidden) from h, c (batch, hidden),
    with w_t (hidden, 4 hidden) and peepholes (3, hidden). Returns the hidden and cell
    states (batch, time, hidden) and, with ``keep``, what the backward needs."""
    n = h.size(1)
    hs, cs = [], []
    kept: dict[str, list[Any]] | None = {"hm": [], "c": [c], "ifuo": [], "tc": []} if keep else None
    for t in range(xw.size(0)):
        hm = h * mask if mask is not None else h
        g = torch.addmm(xw[t], hm, w_t)  # (batch, 4n): i, f, g, o
        i = torch.sigmoid(torch.addcmul(g[:, :n], peep[0], c))
        f = torch.sigmoid(torch.addcmul(g[:, n : 2 * n], peep[1], c))
        u = torch.tanh(g[:, 2 * n : 3 * n])
        c = torch.addcmul(f * c, i, u)
        o = torch.sigmoid(torch.addcmul(g[:, 3 * n :], peep[2], c))
        tc = torch.tanh(c)
        h = o * tc
        hs.append(h)
        cs.append(c)
        if kept is not None:
            kept["hm"].append(hm)
            kept["c"].append(c)
            kept["ifuo"].append((i, f, u, o))
            kept["tc"].append(tc)
    return torch.stack(hs, 1), torch.stack(cs, 1), kept


class PeepholeLoop(torch.autograd.Function):
    """``peephole_forward`` under autograd: (xw, h0, c0, w_t, peep, mask) -> (hs, cs)."""

    run = staticmethod(peephole_forward)

    @staticmethod
    def forward(ctx: Any, xw: Tensor, h: Tensor, c: Tensor, w_t: Tensor, peep: Tensor,
                mask: Tensor | None) -> tuple[Tensor, Tensor]:  # fmt: skip
        hs, cs, kept = peephole_forward(xw, h, c, w_t, peep, mask, keep=True)
        assert kept is not None
        ctx.kept, ctx.mask = kept, mask
        ctx.save_for_backward(w_t, peep)
        return hs, cs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_hs: Tensor, d_cs: Tensor) -> tuple[Tensor | None, ...]:
        w_t, peep = ctx.saved_tensors
        kept, mask = ctx.kept, ctx.mask
        batch, time, n = d_hs.shape
        w = w_t.t()  # (4n, n)
        dg_all = d_hs.new_empty(time, batch, 4 * n)
        dh = d_hs.new_zeros(batch, n)
        dc = d_hs.new_zeros(batch, n)
        d_peep = torch.zeros_like(peep)
        for t in range(time - 1, -1, -1):
            i, f, u, o = kept["ifuo"][t]
            tc, c_prev, c_new = kept["tc"][t], kept["c"][t], kept["c"][t + 1]
            dh = dh + d_hs[:, t]
            dgo = dh * tc * o * (1 - o)
            dc = dc + d_cs[:, t] + dh * o * (1 - tc * tc) + dgo * peep[2]
            dgi = dc * u * i * (1 - i)
            dgf = dc * c_prev * f * (1 - f)
            dgu = dc * i * (1 - u * u)
            torch.cat((dgi, dgf, dgu, dgo), dim=1, out=dg_all[t])
            d_peep[0] += (dgi * c_prev).sum(0)
            d_peep[1] += (dgf * c_prev).sum(0)
            d_peep[2] += (dgo * c_new).sum(0)
            dc = torch.addcmul(dc * f, dgi, peep[0]).addcmul_(dgf, peep[1])
            dh = dg_all[t] @ w
            if mask is not None:
                dh = dh * mask
        hm = torch.stack(kept["hm"]).view(time * batch, n)
        d_w_t = hm.t() @ dg_all.view(time * batch, 4 * n) if ctx.needs_input_grad[3] else None
        return dg_all, dh, dc, d_w_t, d_peep, None


def layernorm_lstm_forward(
    xw: Tensor, h: Tensor, c: Tensor, w_blocks: Tensor, gain: Tensor, cell_ln: Tensor,
    mask: Tensor | None, keep: bool,
) -> tuple[Tensor, Tensor, dict[str, list[Any]] | None]:  # fmt: skip
    """The layer-norm LSTM, gate-major, over xw (time, 4, batch, hidden) from h, c
    (batch, hidden), with the recurrent blocks w_blocks (4, hidden in, hidden out), the
    recurrent norm's gains (4, 1, hidden) and the cell norm's gain and shift cell_ln
    (2, hidden). Returns the hidden and cell states (batch, time, hidden) and, with
    ``keep``, what the backward needs."""
    batch, n = h.shape
    hs, cs = [], []
    names = ("hm", "c", "a_hat", "a_rstd", "ifo", "u", "c_mean", "c_rstd", "tl")
    kept: dict[str, list[Any]] | None = {k: [] for k in names} if keep else None
    for t in range(xw.size(0)):
        hm = h * mask if mask is not None else h
        a_hat, _, a_rstd = torch.native_layer_norm(
            torch.bmm(hm.expand(4, batch, n), w_blocks), (n,), None, None, EPS
        )
        g = torch.addcmul(xw[t], a_hat, gain)  # (4, batch, n): i, f, o, g
        ifo = torch.sigmoid(g[:3])
        u = torch.tanh(g[3])
        c_prev, c = c, torch.addcmul(ifo[1] * c, ifo[0], u)
        normed, c_mean, c_rstd = torch.native_layer_norm(c, (n,), cell_ln[0], cell_ln[1], EPS)
        tl = torch.tanh(normed)
        h = ifo[2] * tl
        hs.append(h)
        cs.append(c)
        if kept is not None:
            for k, v in zip(names, (hm, c_prev, a_hat, a_rstd, ifo, u, c_mean, c_rstd, tl),
                            strict=True):  # fmt: skip
                kept[k].append(v)
    if kept is not None:
        kept["c"].append(c)
    return torch.stack(hs, 1), torch.stack(cs, 1), kept


class LayerNormLSTMLoop(torch.autograd.Function):
    """``layernorm_lstm_forward`` under autograd:
    (xw, h0, c0, w_blocks, gain, cell_ln, mask) -> (hs, cs)."""

    run = staticmethod(layernorm_lstm_forward)

    @staticmethod
    def forward(ctx: Any, xw: Tensor, h: Tensor, c: Tensor, w_blocks: Tensor, gain: Tensor,
                cell_ln: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:  # fmt: skip
        hs, cs, kept = layernorm_lstm_forward(xw, h, c, w_blocks, gain, cell_ln, mask,
                                              keep=True)  # fmt: skip
        assert kept is not None
        ctx.kept, ctx.mask = kept, mask
        ctx.save_for_backward(w_blocks, gain, cell_ln)
        return hs, cs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_hs: Tensor, d_cs: Tensor) -> tuple[Tensor | None, ...]:
        w_blocks, gain, cell_ln = ctx.saved_tensors
        kept, mask = ctx.kept, ctx.mask
        batch, time, n = d_hs.shape
        w_back = w_blocks.transpose(1, 2)  # (4, hidden out, hidden in)
        dg_all = d_hs.new_empty(time, 4, batch, n)  # gradients at the gates' inputs
        da_all = d_hs.new_empty(time, 4, batch, n)  # ... at the recurrent products
        d_gain = torch.zeros_like(gain)
        d_cell_ln = torch.zeros_like(cell_ln)
        dh = d_hs.new_zeros(batch, n)
        dc = d_hs.new_zeros(batch, n)
        for t in range(time - 1, -1, -1):
            i, f, o = kept["ifo"][t]
            u, tl, c_prev, c_new = kept["u"][t], kept["tl"][t], kept["c"][t], kept["c"][t + 1]
            c_rstd = kept["c_rstd"][t]
            dh = dh + d_hs[:, t]
            d_normed = dh * o * (1 - tl * tl)
            c_hat = (c_new - kept["c_mean"][t]) * c_rstd  # the cell norm's output, unscaled
            d_cell_ln[0] += (d_normed * c_hat).sum(0)
            d_cell_ln[1] += d_normed.sum(0)
            dc = dc + d_cs[:, t] + _ln_backward(d_normed * cell_ln[0], c_hat, c_rstd)
            dg = dg_all[t]
            torch.mul(dc * u, i * (1 - i), out=dg[0])
            torch.mul(dc * c_prev, f * (1 - f), out=dg[1])
            torch.mul(dh * tl, o * (1 - o), out=dg[2])
            torch.mul(dc * i, 1 - u * u, out=dg[3])
            dc = dc * f
            a_hat = kept["a_hat"][t]
            d_gain += (dg * a_hat).sum(1, keepdim=True)
            da_all[t] = _ln_backward(dg * gain, a_hat, kept["a_rstd"][t])
            dh = torch.bmm(da_all[t], w_back).sum(0)
            if mask is not None:
                dh = dh * mask
        d_w = None
        if ctx.needs_input_grad[3]:
            hm = torch.stack(kept["hm"]).view(time * batch, n)
            # (4, hidden out, time * batch) @ (time * batch, hidden in), as (4, in, out)
            da = da_all.permute(1, 3, 0, 2).reshape(4, n, time * batch)
            d_w = (da @ hm).transpose(1, 2)
        return dg_all, dh, dc, d_w, d_gain, d_cell_ln, None
