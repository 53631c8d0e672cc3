"""The recurrent cells and the stack's options (issue 18): each custom cell against a
direct transcription of its equations, gradients in float64, the stack's paths
against each other, and the options' effects."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from seqnlp.nn.cells import CELLS, CUSTOM_CELLS, CustomCell
from seqnlp.nn.dropout import SequenceDropout, drop_weight
from seqnlp.nn.encoder import RNNEncoder
from seqnlp.nn.padded_rnn import run_padded


def _ln(x: torch.Tensor, gain: torch.Tensor | None = None, shift: torch.Tensor | None = None):
    """Layer norm of a vector, written out: (x - mean) / sqrt(var + 1e-5) * gain + shift."""
    y = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-5)
    return y * (1 if gain is None else gain) + (0 if shift is None else shift)


def _reference_step(cell: CustomCell, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None):
    """One step for one example (vectors), transcribed gate by gate from the equations."""
    n = cell.hidden_size
    W, U, b1 = cell.weight_ih, cell.weight_hh, cell.bias_ih
    sig, tanh = torch.sigmoid, torch.tanh

    def rows(k: int) -> slice:
        return slice(k * n, (k + 1) * n)

    if cell.kind == "peephole_lstm":
        b = b1 + cell.bias_hh
        p = cell.peephole
        i = sig(W[rows(0)] @ x + U[rows(0)] @ h + b[rows(0)] + p[0] * c)
        f = sig(W[rows(1)] @ x + U[rows(1)] @ h + b[rows(1)] + p[1] * c)
        g = tanh(W[rows(2)] @ x + U[rows(2)] @ h + b[rows(2)])
        c2 = f * c + i * g
        o = sig(W[rows(3)] @ x + U[rows(3)] @ h + b[rows(3)] + p[2] * c2)
        return o * tanh(c2), c2
    if cell.kind == "cifg_lstm":
        b = b1 + cell.bias_hh
        f = sig(W[rows(0)] @ x + U[rows(0)] @ h + b[rows(0)])
        o = sig(W[rows(1)] @ x + U[rows(1)] @ h + b[rows(1)])
        g = tanh(W[rows(2)] @ x + U[rows(2)] @ h + b[rows(2)])
        c2 = f * c + (1 - f) * g
        return o * tanh(c2), c2

    def pre(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        wx = _ln(W[rows(k)] @ x, cell.ln_ih[k])
        uh = _ln(U[rows(k)] @ h, cell.ln_hh[k])
        return wx + b1[rows(k)], uh

    if cell.kind == "layernorm_lstm":
        i, f, o, g = (sum(pre(k)) for k in range(4))
        c2 = sig(f) * c + sig(i) * tanh(g)
        return sig(o) * tanh(_ln(c2, cell.ln_cell[0], cell.ln_cell[1])), c2
    assert cell.kind == "layernorm_gru"
    r = sig(sum(pre(0)))
    z = sig(sum(pre(1)))
    wx, uh = pre(2)
    n_ = tanh(wx + r * uh)
    return (1 - z) * n_ + z * h, None


def _randomise(module: nn.Module) -> None:
    """Every parameter random (norm gains and peepholes included), so that no term of
    an equation can hide behind an initial one or zero."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)


@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no_grad"])
@pytest.mark.parametrize("kind", CUSTOM_CELLS)
def test_each_cell_matches_its_equations(kind, grad):
    # and without autograd, as prediction runs (no graph, no gradient through the state)
    cell = CustomCell(kind, 5, 4)
    _randomise(cell)
    x = torch.randn(3, 6, 5)
    h0 = torch.randn(3, 4)
    c0 = torch.randn(3, 4) if cell.lstm_like else None
    state = (h0, c0) if c0 is not None else (h0,)
    with torch.set_grad_enabled(grad):
        hs, cs = cell.run(x, state)
    for b in range(3):
        h, c = h0[b], (c0[b] if c0 is not None else None)
        for t in range(6):
            h, c = _reference_step(cell, x[b, t], h, c)
            torch.testing.assert_close(hs[b, t], h, atol=1e-5, rtol=0)
            if c is not None:
                torch.testing.assert_close(cs[b, t], c, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", CELLS)
def test_gradients_pass_gradcheck_in_float64(kind):
    torch.manual_seed(0)
    encoder = RNNEncoder(3, 2, 2, kind, True, residual=True, layer_norm=True).double()
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 2])
    params = list(encoder.parameters())
    # fast mode: the analytical and numerical Jacobians compared along random directions
    assert torch.autograd.gradcheck(lambda x: encoder(x, lengths)[0], (x,), atol=1e-6,
                                    fast_mode=True)  # fmt: skip
    # and with respect to every weight: their gradients against finite differences
    weights = [p.detach().clone().requires_grad_() for p in params]

    def by_weights(*ws):
        out = torch.func.functional_call(
            encoder, dict(zip([n for n, _ in encoder.named_parameters()], ws, strict=True)),
            (x.detach(), lengths),
        )  # fmt: skip
        return out[0]

    assert torch.autograd.gradcheck(by_weights, tuple(weights), atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("kind", ["peephole_lstm", "layernorm_lstm"])
def test_the_hand_written_backward_equals_autograd_through_the_steps(kind):
    """The peephole and layer-norm LSTM loops have their own backward
    (``seqnlp.nn.cell_loops``). Their gradients, at the inputs, the initial state and
    every weight, with a locked-dropout mask on the state and a weight-dropped
    recurrent matrix, equal autograd's through ``step`` run one step at a time; and
    they pass gradcheck in float64."""
    cell = CustomCell(kind, 5, 4).double()
    _randomise(cell)
    torch.manual_seed(2)
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    h0, c0 = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    mask = (torch.rand(3, 4) > 0.3).double() / 0.7
    keep = (torch.rand(cell.weight_hh.shape) > 0.2).double()
    d_hs, d_cs = torch.randn(2, 3, 6, 4, dtype=torch.float64)
    grads = []
    for by_steps in (False, True):
        twin = copy.deepcopy(cell)
        xs, h, c = (t.clone().requires_grad_() for t in (x, h0, c0))
        w_hh = twin.weight_hh * keep
        if by_steps:
            xw = twin.input_products(xs)
            hs, cs = [], []
            for t in range(6):
                h_t, c_t = twin.step(xw[:, t], ((hs[-1] if hs else h) * mask,
                                                 cs[-1] if cs else c), w_hh.t())  # fmt: skip
                hs.append(h_t)
                cs.append(c_t)
            out = torch.stack(hs, 1), torch.stack(cs, 1)
        else:
            out = twin.run(xs, (h, c), w_hh, mask)
        ((out[0] * d_hs).sum() + (out[1] * d_cs).sum()).backward()
        grads.append([xs.grad, h.grad, c.grad] + [p.grad for p in twin.parameters()])
    for ours, reference in zip(*grads, strict=True):
        torch.testing.assert_close(ours, reference, atol=1e-10, rtol=0)

    def run(xs, h, c, w_hh):
        return cell.run(xs, (h, c), w_hh * keep, mask)

    inputs = (x, h0, c0, cell.weight_hh.detach())
    assert torch.autograd.gradcheck(run, tuple(t.clone().requires_grad_() for t in inputs))


def test_peephole_lstm_with_zero_peepholes_is_lstm():
    torch.manual_seed(0)
    lstm = RNNEncoder(5, 4, 2, "lstm", True).eval()
    peep = RNNEncoder(5, 4, 2, "peephole_lstm", True).eval()
    with torch.no_grad():
        for layer in range(2):
            for d, suffix in enumerate(("", "_reverse")):
                cell = peep.cells[layer * 2 + d]
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, name).copy_(getattr(lstm.rnn, f"{name}_l{layer}{suffix}"))
                cell.peephole.zero_()
    x, lengths = torch.randn(3, 7, 5), torch.tensor([7, 4, 1])
    out_l, h_l = lstm(x, lengths)
    out_p, h_p = peep(x, lengths)
    torch.testing.assert_close(out_p, out_l, atol=1e-5, rtol=0)
    torch.testing.assert_close(h_p, h_l, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_batch_equals_one_by_one(kind, bidirectional):
    torch.manual_seed(0)
    encoder = RNNEncoder(4, 5, 2, kind, bidirectional, residual=True, layer_norm=True).eval()
    x, lengths = torch.randn(3, 6, 4), torch.tensor([6, 3, 1])
    out, h = encoder(x, lengths)
    assert out[1, 3:].abs().sum() == 0 and out[2, 1:].abs().sum() == 0  # padding is zero
    for i in range(3):
        n = int(lengths[i])
        alone, h_alone = encoder(x[i : i + 1, :n], lengths[i : i + 1])
        torch.testing.assert_close(out[i, :n], alone[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(h[:, i], h_alone[:, 0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_the_layernorm_lstm_gives_the_same_without_autograd(bidirectional):
    """Through the encoder (both directions, padding, two layers with residual and
    layer norm), prediction without autograd gives what training's forward pass gives:
    the same outputs and final states."""
    encoder = RNNEncoder(4, 5, 2, "layernorm_lstm", bidirectional, residual=True,
                         layer_norm=True).eval()  # fmt: skip
    _randomise(encoder)
    x, lengths = torch.randn(3, 6, 4), torch.tensor([6, 3, 1])
    out, h = encoder(x, lengths)
    assert out.requires_grad
    with torch.no_grad():
        out_fast, h_fast = encoder(x, lengths)
    torch.testing.assert_close(out_fast, out.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(h_fast, h.detach(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_layer_by_layer_equals_torchs_own_kernels(kind):
    """The layered path (taken for weight drop, locked dropout, residual, layer norm)
    runs torch's cells as ``run_padded`` does when none of them is on."""
    torch.manual_seed(0)
    encoder = RNNEncoder(4, 5, 3, kind, True, weight_drop=0.5).train()
    x, lengths = torch.randn(3, 6, 4), torch.tensor([6, 3, 1])
    encoder.weight_drop = 0.0  # layered by construction below, nothing dropped
    out, h, _ = encoder._run_layered(x, lengths, None)
    ref_out, ref_h = run_padded(encoder.rnn, x, lengths)
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=0)
    torch.testing.assert_close(h, ref_h, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", CELLS)
def test_step_by_step_equals_the_whole_sequence(kind):
    torch.manual_seed(0)
    encoder = RNNEncoder(4, 5, 2, kind, False, residual=True).eval()
    x = torch.randn(2, 7, 4)
    whole, final = encoder.run(x)
    state, outs = None, []
    for t in range(7):
        out, state = encoder.step(x[:, t], state)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), whole, atol=1e-5, rtol=0)
    for a, b in zip(state if isinstance(state, tuple) else (state,),
                    final if isinstance(final, tuple) else (final,), strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_a_bidirectional_encoder_refuses_to_step():
    with pytest.raises(ValueError, match="bidirectional encoder reads the whole text"):
        RNNEncoder(4, 5, 1, "lstm", True).step(torch.randn(1, 4), None)


def test_default_options_build_torchs_module_with_the_same_weights():
    """Recipes that set none of the new keys get the modules (and initial weights) of
    before: an ``nn.LSTM`` under ``rnn`` drawn as torch draws it."""
    torch.manual_seed(3)
    encoder = RNNEncoder(4, 5, 2, "lstm", True, 0.1)
    torch.manual_seed(3)
    plain = nn.LSTM(4, 5, 2, batch_first=True, bidirectional=True, dropout=0.1)
    assert encoder.cells is None and encoder.norms is None
    for (name, a), (_, b) in zip(encoder.rnn.named_parameters(), plain.named_parameters(),
                                 strict=True):  # fmt: skip
        assert torch.equal(a, b), name
    assert encoder.recurrence(torch.zeros(1, 1, 4)) == "padded"


def test_locked_dropout_draws_one_mask_per_sequence():
    torch.manual_seed(0)
    drop = SequenceDropout(0.5, "locked").train()
    y = drop(torch.ones(4, 9, 6))
    assert torch.equal(y, y[:, :1].expand_as(y))  # the same at every step
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert not torch.equal(y[0], y[1]) or not torch.equal(y[1], y[2])  # per sequence
    standard = SequenceDropout(0.5, "standard").train()(torch.ones(4, 9, 6))
    assert not torch.equal(standard, standard[:, :1].expand_as(standard))
    assert torch.equal(drop.eval()(torch.ones(2, 3, 4)), torch.ones(2, 3, 4))


def test_locked_dropout_reaches_the_recurrent_state_of_custom_cells():
    torch.manual_seed(0)
    encoder = RNNEncoder(3, 8, 2, "cifg_lstm", False, 0.5, dropout_mode="locked").train()
    x = torch.randn(2, 5, 3)
    a, _ = encoder(x, torch.tensor([5, 5]))
    b, _ = encoder(x, torch.tensor([5, 5]))
    assert not torch.allclose(a, b)  # masks drawn anew for every batch
    encoder.eval()
    torch.testing.assert_close(encoder(x, torch.tensor([5, 5]))[0],
                               encoder(x, torch.tensor([5, 5]))[0])  # fmt: skip


def test_weight_drop_drops_recurrent_entries_in_training_only():
    torch.manual_seed(0)
    w = torch.ones(100, 10)
    dropped = drop_weight(w, 0.3, True)
    share = (dropped == 0).float().mean().item()
    assert 0.2 < share < 0.4
    torch.testing.assert_close(dropped.unique(), torch.tensor([0.0, 1 / 0.7]))
    assert drop_weight(w, 0.3, False) is w
    encoder = RNNEncoder(3, 4, 1, "lstm", False, weight_drop=0.5).train()
    x, lengths = torch.randn(2, 5, 3), torch.tensor([5, 5])
    assert encoder.recurrence(x) == "layered"
    assert not torch.allclose(encoder(x, lengths)[0], encoder(x, lengths)[0])
    encoder.eval()
    assert encoder.recurrence(x) == "padded"  # the fused kernels, untouched weights
    out, _ = encoder(x, lengths)
    encoder.weight_drop = 0.0
    torch.testing.assert_close(out, encoder(x, lengths)[0])
    # the dropped matrix reaches the gradient of the raw weights
    encoder.train()
    encoder.weight_drop = 0.5
    encoder(x, lengths)[0].sum().backward()
    assert encoder.rnn.weight_hh_l0.grad is not None


def _layer(stack: RNNEncoder, layer: int, input_size: int) -> RNNEncoder:
    """Layer ``layer`` of a torch-cell ``stack`` as an encoder of its own."""
    alone = RNNEncoder(input_size, stack.hidden_size, 1, stack.cell, stack.bidirectional).eval()
    weights = {k.replace(f"_l{layer}", "_l0"): v for k, v in stack.rnn.state_dict().items()
               if f"_l{layer}" in k}  # fmt: skip
    alone.rnn.load_state_dict(weights)
    return alone


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_residual_and_layer_norm_between_layers_by_hand(residual, layer_norm):
    torch.manual_seed(0)
    stack = RNNEncoder(6, 3, 3, "gru", True, residual=residual, layer_norm=layer_norm).eval()
    if layer_norm:
        _randomise(stack.norms)
    x, lengths = torch.randn(2, 4, 6), torch.tensor([4, 4])
    y = x
    for layer in range(3):
        out, _ = _layer(stack, layer, 6)(y, lengths)
        if residual and layer > 0:
            out = out + y
        if layer_norm and layer < 2:
            out = stack.norms[layer](out)
        y = out
    torch.testing.assert_close(stack(x, lengths)[0], y, atol=1e-6, rtol=0)


def test_init_and_forget_bias():
    torch.manual_seed(0)
    encoder = RNNEncoder(4, 6, 1, "lstm", False, init="orthogonal", forget_bias=1.0)
    for gate in encoder.rnn.weight_hh_l0.detach().split(6):
        torch.testing.assert_close(gate @ gate.T, torch.eye(6), atol=1e-5, rtol=0)
    assert torch.equal(encoder.rnn.bias_ih_l0[6:12], torch.ones(6))
    assert encoder.rnn.bias_hh_l0.abs().sum() == 0 and encoder.rnn.bias_ih_l0[:6].abs().sum() == 0
    xavier = RNNEncoder(4, 6, 1, "cifg_lstm", False, init="xavier", forget_bias=2.0)
    cell = xavier.cells[0]
    bound = (6 / (4 + 6)) ** 0.5
    assert cell.weight_ih.abs().max() <= bound and cell.bias_hh.abs().sum() == 0
    assert torch.equal(cell.bias_ih[cell.gate_rows("forget")], torch.full((6,), 2.0))
    with pytest.raises(ValueError, match="cell gru has no forget gate"):
        RNNEncoder(4, 6, 1, "gru", forget_bias=1.0)
    with pytest.raises(ValueError, match="unknown cell 'lstmm'"):
        RNNEncoder(4, 6, 1, "lstmm")
    with pytest.raises(ValueError, match="unknown init"):
        RNNEncoder(4, 6, 1, "lstm", init="he")


@pytest.mark.parametrize("kind", ["lstm", "layernorm_lstm", "gru"])
def test_learned_initial_state_is_learned(kind):
    encoder = RNNEncoder(3, 4, 2, kind, True, learn_initial_state=True)
    assert (encoder.initial_c is not None) == (kind != "gru")
    out, _ = encoder(torch.randn(2, 5, 3), torch.tensor([5, 2]))
    out.sum().backward()
    assert encoder.initial_h.grad is not None and encoder.initial_h.grad.abs().sum() > 0


def test_int8_quantization_refuses_custom_cells_and_layer_options():
    from seqnlp.quantize import quantize

    for encoder, match in (
        (RNNEncoder(3, 4, 1, "peephole_lstm"), "no kernels for the peephole_lstm cell"),
        (RNNEncoder(3, 4, 2, "lstm", residual=True), "residual connections or layer norm"),
    ):
        with pytest.raises(ValueError, match=match):
            quantize(nn.Sequential(encoder))
    quantize(nn.Sequential(RNNEncoder(3, 4, 2, "lstm", weight_drop=0.3)))  # eval: plain


@pytest.mark.parametrize("kind", CELLS)
def test_the_gate_trace_rebuilds_the_encoders_outputs(kind):
    """The inspector recomputes every gate from the weights: its hidden states must be
    the encoder's own, layer after layer (residual and layer norm included)."""
    from seqnlp.nn.gates import trace_gates

    torch.manual_seed(0)
    encoder = RNNEncoder(4, 5, 2, kind, True, residual=True, layer_norm=True).eval()
    _randomise(encoder)
    x = torch.randn(6, 4)
    traces = trace_gates(encoder, x)
    assert [(t.layer, t.direction) for t in traces] == [
        (0, "forward"), (0, "backward"), (1, "forward"), (1, "backward")]  # fmt: skip
    top = torch.cat([traces[2].hidden, traces[3].hidden], dim=-1)  # (time, 2 * hidden)
    expected = encoder(x.unsqueeze(0), torch.tensor([6]))[0][0]
    # the top layer's residual is added after its cell: compare the cells' own states
    if encoder.residual:
        below = torch.cat([traces[0].hidden, traces[1].hidden], dim=-1)
        expected = expected - encoder.norms[0](below)
    torch.testing.assert_close(top, expected, atol=1e-5, rtol=0)
    gates = {"lstm": {"input", "forget", "output"}, "gru": {"reset", "update"}, "rnn": set()}
    family = "lstm" if "lstm" in kind else "gru" if "gru" in kind else "rnn"
    for trace in traces:
        assert set(trace.gates) == gates[family]
        for values in trace.gates.values():
            assert values.shape == (6, 5) and bool(((values > 0) & (values < 1)).all())


@pytest.mark.parametrize("kind", ["gru", "lstm", "rnn_relu"])
def test_steps_from_a_learned_initial_state_and_in_training(kind):
    torch.manual_seed(0)
    encoder = RNNEncoder(4, 5, 3, kind, False, 0.0, learn_initial_state=True)
    with torch.no_grad():
        encoder.initial_h.normal_()
    x = torch.randn(2, 3, 4)
    whole, _ = encoder.train().run(x)  # training mode, no dropout: the same numbers
    state, outs = None, []
    for t in range(3):
        out, state = encoder.step(x[:, t], state)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), whole, atol=1e-5, rtol=0)
