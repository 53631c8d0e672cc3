"""run_padded (CPU: one layer and direction at a time over the padded batch) must give
what packing gives: the same outputs, final states and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqnlp.nn import padded_rnn
from seqnlp.nn.embeddings import CharLSTM
from seqnlp.nn.encoder import RNNEncoder
from seqnlp.nn.padded_rnn import reversal_index, reverse_within, run_padded

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def packed_reference(rnn, x, lengths, initial):
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, final = rnn(packed, initial)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    return out, final[0] if isinstance(final, tuple) else final


def test_reverse_within_reverses_real_steps_only():
    x = torch.arange(8.0).view(2, 4, 1)
    index = reversal_index(torch.tensor([3, 4]), 4)
    out = reverse_within(x, index)
    assert out.squeeze(-1).tolist() == [[2, 1, 0, 3], [7, 6, 5, 4]]
    assert torch.equal(reverse_within(out, index), x)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("lengths", [[5, 1, 3, 5, 2], [4, 4, 4]])
@pytest.mark.parametrize("with_initial", [False, True])
def test_run_padded_equals_packed(cell, layers, bidirectional, lengths, with_initial):
    torch.manual_seed(0)
    rnn = CELLS[cell](3, 4, num_layers=layers, batch_first=True, bidirectional=bidirectional)
    batch, time = len(lengths), max(lengths)
    x = torch.randn(batch, time, 3)
    lengths_t = torch.tensor(lengths)
    for b, n in enumerate(lengths):
        x[b, n:] = torch.randn(time - n, 3) * 100  # padding must not leak in
    initial = None
    if with_initial:
        shape = (layers * (2 if bidirectional else 1), batch, 4)
        initial = torch.randn(shape)
        if cell == "lstm":
            initial = (initial, torch.randn(shape))

    x_ref = x.clone().requires_grad_()
    out_ref, h_ref = packed_reference(rnn, x_ref, lengths_t, initial)
    (out_ref.square().sum() + h_ref.sum()).backward()
    grads_ref = [p.grad.clone() for p in rnn.parameters()]
    rnn.zero_grad()

    x_new = x.clone().requires_grad_()
    out, h = run_padded(rnn, x_new, lengths_t, initial)
    (out.square().sum() + h.sum()).backward()

    torch.testing.assert_close(out, out_ref)
    torch.testing.assert_close(h, h_ref)
    for b, n in enumerate(lengths):
        assert (out[b, n:] == 0).all() and (out[b, :n] != 0).any()  # zeros at padding only
    torch.testing.assert_close(x_new.grad, x_ref.grad)
    for p, g in zip(rnn.parameters(), grads_ref, strict=True):
        torch.testing.assert_close(p.grad, g)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_initial", [False, True])
def test_prediction_packs_a_batch_that_is_mostly_padding(
    cell, bidirectional, with_initial, monkeypatch
):
    """In prediction a batch under ``PACK_BELOW`` real steps runs packed: the same
    outputs and final states as the padded path, in the caller's row order."""
    torch.manual_seed(0)
    rnn = CELLS[cell](3, 4, num_layers=2, batch_first=True, bidirectional=bidirectional).eval()
    lengths = torch.tensor([2, 9, 1, 3, 2])  # 17 real steps of 45: 0.38
    x = torch.randn(5, 9, 3)
    initial = None
    if with_initial:
        shape = (2 * (2 if bidirectional else 1), 5, 4)
        initial = (torch.randn(shape), torch.randn(shape)) if cell == "lstm" else torch.randn(shape)
    calls = []
    real_pack = padded_rnn._run_packed
    monkeypatch.setattr(padded_rnn, "_run_packed", lambda *a: calls.append(1) or real_pack(*a))
    with torch.no_grad():
        out, h = run_padded(rnn, x, lengths, initial)
        assert calls == [1]
        monkeypatch.setattr(padded_rnn, "PACK_BELOW", 0.0)  # never packs
        out_padded, h_padded = run_padded(rnn, x, lengths, initial)
        assert calls == [1]
    torch.testing.assert_close(out, out_padded, atol=1e-6, rtol=0)
    torch.testing.assert_close(h, h_padded, atol=1e-6, rtol=0)
    for b, n in enumerate(lengths.tolist()):
        assert (out[b, n:] == 0).all()
    # with autograd, or in training mode, it never packs
    monkeypatch.setattr(padded_rnn, "PACK_BELOW", 1.0)
    run_padded(rnn, x, lengths, initial)
    with torch.no_grad():
        run_padded(rnn.train(), x, lengths, initial)
    assert calls == [1]


def test_run_padded_dropout_only_between_layers_in_training():
    torch.manual_seed(0)
    rnn = nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True, dropout=0.5)
    x, lengths = torch.randn(3, 5, 3), torch.tensor([5, 2, 4])
    rnn.eval()
    torch.testing.assert_close(
        run_padded(rnn, x, lengths)[0], packed_reference(rnn, x, lengths, None)[0]
    )
    rnn.train()
    a, b = run_padded(rnn, x, lengths)[0], run_padded(rnn, x, lengths)[0]
    assert not torch.allclose(a, b)  # dropout between the layers is on


def test_run_padded_rejects_time_major():
    with pytest.raises(ValueError, match="batch_first"):
        run_padded(nn.GRU(3, 4), torch.randn(2, 3, 3), torch.tensor([3, 3]))


def test_encoder_top_states_are_the_final_real_states():
    torch.manual_seed(0)
    encoder = RNNEncoder(3, 4, num_layers=2, cell="gru", bidirectional=True).eval()
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 2, 4])
    out, final = encoder(x, lengths)
    last = encoder.top_states(final)
    forward = out[torch.arange(3), lengths - 1, :4]
    backward = out[:, 0, 4:]
    torch.testing.assert_close(last, torch.cat([forward, backward], dim=-1))


def test_char_lstm_equals_packed():
    torch.manual_seed(0)
    chars = CharLSTM(num_chars=10, char_dim=5, hidden=4).eval()
    ids = torch.tensor([[[1, 2, 3], [4, 0, 0], [0, 0, 0]], [[5, 6, 0], [7, 8, 9], [0, 0, 0]]])
    out = chars(ids)  # (2, 3, 8)
    flat = ids.view(-1, 3)
    lengths = (flat != 0).sum(1)
    real = lengths > 0
    _, h = packed_reference(chars.encoder.rnn, chars.embedding(flat[real]), lengths[real], None)
    torch.testing.assert_close(out.view(-1, 8)[real], torch.cat([h[0], h[1]], dim=-1))
    assert (out.view(-1, 8)[~real] == 0).all()
