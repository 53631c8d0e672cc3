"""run_folded (inference from a table of first-layer input projections) must give what
the embeddings run through the RNN give, and the classifier must use it only where it
is exact and never with a stale table."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from seqnlp.data.classification import collate_classification
from seqnlp.nn import folded_rnn
from seqnlp.nn.encoder import RNNEncoder
from seqnlp.nn.folded_rnn import input_table, run_folded
from seqnlp.quantize import quantize
from seqnlp.tasks import Classifier
from tests.test_classifier import SAMPLE, _batch, _codec
from tests.test_padded_rnn import CELLS, packed_reference


@pytest.mark.parametrize("cell", ["rnn", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("lengths", [[5, 1, 3, 5, 2], [4, 4, 4], [1], [2, 6, 6, 1]])
@pytest.mark.parametrize("with_initial", [False, True])
def test_run_folded_equals_the_packed_rnn(cell, layers, bidirectional, lengths, with_initial):
    torch.manual_seed(0)
    rnn = CELLS[cell](3, 4, num_layers=layers, batch_first=True, bidirectional=bidirectional)
    rnn.eval()
    vocab, batch, time = 11, len(lengths), max(lengths)
    embedding = torch.randn(vocab, 3)
    ids = torch.randint(0, vocab, (batch, time))
    lengths_t = torch.tensor(lengths)
    initial = None
    if with_initial:
        shape = (layers * (2 if bidirectional else 1), batch, 4)
        initial = torch.randn(shape)
    with torch.no_grad():
        out_ref, h_ref = packed_reference(rnn, embedding[ids], lengths_t, initial)
        out, h = run_folded(rnn, input_table(embedding, rnn), ids, lengths_t, initial)
    torch.testing.assert_close(out, out_ref)
    torch.testing.assert_close(h, h_ref)
    for b, n in enumerate(lengths):  # exactly zero at padding, as unpacking gives
        assert out[b, n:].abs().sum() == 0


def test_run_folded_needs_inference_and_no_lstm():
    rnn = nn.GRU(3, 4, batch_first=True)
    table = input_table(torch.randn(5, 3), rnn)
    ids, lengths = torch.zeros(1, 2, dtype=torch.long), torch.tensor([2])
    with pytest.raises(RuntimeError, match="inference"):
        run_folded(rnn, table, ids, lengths)
    with torch.no_grad(), pytest.raises(ValueError, match="LSTM"):
        run_folded(nn.LSTM(3, 4, batch_first=True), table, ids, lengths)


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_input_table_without_biases(cell):
    torch.manual_seed(0)
    rnn = CELLS[cell](3, 4, batch_first=True, bias=False, bidirectional=True).eval()
    embedding, ids = torch.randn(6, 3), torch.tensor([[1, 5, 2], [4, 0, 0]])
    lengths = torch.tensor([3, 1])
    with torch.no_grad():
        out_ref, h_ref = packed_reference(rnn, embedding[ids], lengths, None)
        out, h = run_folded(rnn, input_table(embedding, rnn), ids, lengths)
    torch.testing.assert_close(out, out_ref)
    torch.testing.assert_close(h, h_ref)


def _model(**kwargs) -> Classifier:
    torch.manual_seed(0)
    args = {"embedding_dim": 8, "cell": "gru", "hidden_size": 6, **kwargs}
    return Classifier(_codec(), **args)


TEXTS = ["the film is good .", SAMPLE[0], "a dull movie with a dull cast and a weak ending ."]


def _folds(model: Classifier, token_ids: torch.Tensor) -> bool:
    network = model.network
    return network.encoder.recurrence(token_ids, network.embedding) == "folded"


def _unfolded_logits(model: Classifier, batch) -> torch.Tensor:
    with torch.enable_grad():  # autograd on: the encoder does not fold, the usual path runs
        assert not _folds(model, batch.token_ids)
        return model.logits(batch).detach()


@pytest.mark.parametrize("cell", ["rnn", "gru"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, True)])
def test_classifier_inference_from_the_table_equals_the_usual_path(
    cell, pooling, layers, bidirectional
):
    model = _model(cell=cell, pooling=pooling, num_layers=layers, bidirectional=bidirectional,
                   learn_initial_state=True).eval()  # fmt: skip
    with torch.no_grad():
        model.network.encoder.initial_h.normal_()  # a non-zero learned state
        batch = _batch(model.codec, TEXTS)
        assert _folds(model, batch.token_ids)
        torch.testing.assert_close(model.logits(batch), _unfolded_logits(model, batch))


def test_folding_only_in_inference_on_a_float_gru_or_rnn(monkeypatch):
    model = _model()
    ids = _batch(model.codec, TEXTS).token_ids
    with torch.no_grad():
        lstm = _model(cell="lstm").eval()
        assert not _folds(lstm, ids)  # oneDNN's LSTM kernel instead
        assert not _folds(model, ids)  # training mode: dropout is on
        model.eval()
        assert _folds(model, ids)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not _folds(model, ids)
        monkeypatch.setattr(folded_rnn, "MAX_TABLE_BYTES", 100)
        assert not _folds(model, ids)  # the table would be too large
        monkeypatch.undo()
        quantize(model.network, "int8")
        assert model.network.encoder.recurrence(ids, model.network.embedding) == "packed"


@pytest.mark.parametrize("fused", [False, True])
def test_the_table_follows_every_weight_update(fused):
    model = _model(cell="gru", bidirectional=True)
    batch = _batch(model.codec, TEXTS, [0, 1, 2])
    optimiser = torch.optim.Adam(model.parameters(), lr=0.1, fused=fused)
    for _ in range(3):  # eval (the table is built), a training step, eval again
        model.eval()
        with torch.no_grad():
            torch.testing.assert_close(model.logits(batch), _unfolded_logits(model, batch))
        model.train()
        optimiser.zero_grad()
        model.training_loss(batch).backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        model.network.embedding.weight.mul_(2.0)  # in place, outside any optimiser
        torch.testing.assert_close(model.logits(batch), _unfolded_logits(model, batch))
        other = _model(cell="gru", bidirectional=True).eval()
        other.logits(batch)  # builds other's table from its own first weights
        other.load_state_dict(model.state_dict())  # copies into those weights in place
        torch.testing.assert_close(other.logits(batch), model.logits(batch))


def test_copies_and_pickles_do_not_carry_the_table():
    encoder = RNNEncoder(8, 6, cell="gru").eval()
    embedding = nn.Embedding(20, 8)
    ids, lengths = torch.randint(0, 20, (2, 5)), torch.tensor([5, 3])
    with torch.no_grad():
        encoder.encode_tokens(embedding, ids, lengths)
    assert copy.deepcopy(encoder)._table._entry is None
    assert pickle.loads(pickle.dumps(encoder))._table._entry is None
    assert encoder._table._entry is not None


def test_collated_batches_in_any_order():
    # Rows arrive unsorted from a predictor; the result must follow the input order.
    model = _model(cell="gru", bidirectional=True, pooling="max").eval()
    examples = [{"token_ids": model.codec.encode_text(t)} for t in TEXTS]
    with torch.no_grad():
        forward = model.logits(collate_classification(examples))
        backward = model.logits(collate_classification(examples[::-1]))
    torch.testing.assert_close(forward, backward.flip(0))


def test_importing_seqnlp_registers_no_process_wide_hook():
    import subprocess
    import sys

    code = (
        "import torch.optim.optimizer as o, torch.nn.modules.module as m\n"
        "import seqnlp.cli, seqnlp.models, seqnlp.nn.folded_rnn, seqnlp.predict, seqnlp.tasks\n"
        "print(len(o._global_optimizer_pre_hooks), len(o._global_optimizer_post_hooks),\n"
        "      len(m._global_forward_hooks), len(m._global_forward_pre_hooks))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["0", "0", "0", "0"]


def test_the_table_is_computed_anew_after_a_mode_change():
    encoder = RNNEncoder(8, 6, cell="gru").eval()
    embedding = nn.Embedding(20, 8)
    ids, lengths = torch.randint(0, 20, (2, 5)), torch.tensor([5, 3])
    with torch.no_grad():
        encoder.encode_tokens(embedding, ids, lengths)
        assert encoder._table._entry is not None
        encoder.train().eval()  # as around a training phase: weights may have changed
        assert encoder._table._entry is None
        # a fused optimiser's step does not bump version counters; the mode change is
        # what invalidates the table, as the next call shows
        embedding.weight.data.add_(1.0)
        folded = encoder.encode_tokens(embedding, ids, lengths)[0]
    with torch.enable_grad():
        plain = encoder(embedding(ids), lengths)[0].detach()
    torch.testing.assert_close(folded, plain)
