"""ONNX export and the ONNX Runtime predictors (tagger, classifier): the same records
as torch from the same folder, int8 graphs that run and mostly agree, the NumPy CRF
against brute force, and prediction in a process where torch cannot be imported."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import seqnlp
from seqnlp.export.folder import read_config
from seqnlp.export.writer import export_model
from seqnlp.onnx_runtime.crf import NumpyCRF

onnxruntime = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints" / "v0.1.0"
SAMPLES = Path(seqnlp.__file__).parent / "samples"
TAGGERS = ["tagger_lstm_crf", "tagger_cnn_softmax"]
CLASSIFIERS = ["classifier_gru_attention", "classifier_lstm_last", "classifier_rnn_max"]
INT8 = ["tagger_lstm_crf", "classifier_gru_attention"]
EMPTY = ["", "   "]


def _inputs(name: str) -> list[str]:
    return json.loads((FIXTURES / f"{name}.json").read_text())["inputs"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Each fixture exported with ONNX graphs (fp32); the ``INT8`` ones also with int8."""
    root = tmp_path_factory.mktemp("onnx")
    out = {n: export_model(FIXTURES / f"{n}.ckpt", root / n, onnx=True).folder
           for n in TAGGERS + CLASSIFIERS}  # fmt: skip
    for n in INT8:
        out[f"{n}.int8"] = export_model(FIXTURES / f"{n}.ckpt", root / f"{n}.int8", onnx=True,
                                        quantize="int8").folder  # fmt: skip
    return out


def assert_records_close(got: Any, want: Any, where: str = "") -> None:
    """Equal records, floats within 1e-3 (ONNX Runtime and torch round differently)."""
    if isinstance(want, float) and isinstance(got, float):
        assert got == pytest.approx(want, abs=1e-3), where
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for key in want:
            assert_records_close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_records_close(g, w, f"{where}[{i}]")
    else:
        assert got == want, where


def test_the_graphs_are_checked_onnx_and_described_in_the_config(folders):
    for name in TAGGERS + CLASSIFIERS + [f"{n}.int8" for n in INT8]:
        folder = folders[name]
        entry = read_config(folder)["onnx"]
        assert entry["opset"] >= 17 and entry["max_abs_diff"] <= 1e-4
        for key in ("graph", "int8"):
            if entry[key] is not None:
                onnx.checker.check_model(str(folder / entry[key]))
        assert (entry["int8"] is not None) == name.endswith(".int8")
        if name == "tagger_lstm_crf":
            assert entry["head"] == "crf" and len(entry["crf"]["transitions"]) == len(
                entry["crf"]["start"]
            )


@pytest.mark.parametrize("name", TAGGERS)
def test_tagger_records_equal_torch(name, folders):
    folder = folders[name]
    raw = _inputs(name)[:12]
    tokens = [s.split() for s in raw[:5]] + [[], [""], ["", "Madrid", ""]]
    n_best = {"n_best": 3} if "crf" in name else {}
    for options in ({}, {"confidence": False}, n_best, {"pretokenized": True}):
        torch_tagger = seqnlp.load(folder, **options)
        onnx_tagger = seqnlp.load(folder, runtime="onnx", batch_size=4, threads=2, **options)
        inputs = raw + EMPTY + tokens
        assert_records_close(onnx_tagger.predict(inputs), torch_tagger.predict(inputs), name)
    documents = [" ".join(raw[:3]), "", raw[4]]
    want = seqnlp.load(folder, documents=True).predict(documents)
    got = seqnlp.load(folder, runtime="onnx", documents=True).predict(documents)
    assert_records_close(got, want, "documents")


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_records_equal_torch(name, folders):
    folder = folders[name]
    inputs = _inputs(name) + EMPTY + ["Great film!", "?!"]
    for options in ({}, {"pretokenized": True}):
        want = seqnlp.load(folder, **options).predict(inputs)
        got = seqnlp.load(folder, runtime="onnx", batch_size=5, threads=1, **options).predict(
            inputs)  # fmt: skip
        assert_records_close(got, want, name)


def test_evaluation_scores_equal_torch(folders):
    tagger = folders["tagger_lstm_crf"]
    source = str(SAMPLES / "ner" / "validation.conll")
    want = seqnlp.load(tagger).evaluate(source)
    assert seqnlp.load(tagger, runtime="onnx").evaluate(source) == want
    classifier = folders["classifier_lstm_last"]
    source = str(SAMPLES / "sentiment" / "validation.txt")
    want = seqnlp.load(classifier).evaluate(source)
    assert seqnlp.load(classifier, runtime="onnx").evaluate(source) == want


@pytest.mark.parametrize("name", INT8)
def test_int8_graphs_run_and_mostly_agree(name, folders):
    folder = folders[f"{name}.int8"]
    inputs = _inputs(name)
    int8 = seqnlp.load(folder, runtime="onnx")  # the folder's default: its int8 graph
    assert int8.graph.name.endswith(".int8.onnx")
    fp32 = seqnlp.load(folders[name], runtime="onnx")
    key = "tags" if name.startswith("tagger") else "label"
    same = [a[key] == b[key] for a, b in zip(int8.predict(inputs), fp32.predict(inputs),
                                             strict=True)]  # fmt: skip
    assert sum(same) >= 0.8 * len(same)


def test_errors_say_what_to_do(folders, tmp_path, monkeypatch):
    plain = export_model(FIXTURES / "classifier_rnn_max.ckpt", tmp_path / "plain").folder
    with pytest.raises(ValueError, match="export it with --format onnx"):
        seqnlp.load(plain, runtime="onnx")
    with pytest.raises(ValueError, match="--quantize int8"):
        seqnlp.load(folders["classifier_rnn_max"], runtime="onnx", quantize="int8")
    with pytest.raises(ValueError, match="takes no beam_size"):
        seqnlp.load(folders["tagger_lstm_crf"], runtime="onnx", beam_size=3)
    with pytest.raises(ValueError, match="softmax head"):
        seqnlp.load(folders["tagger_cnn_softmax"], runtime="onnx", n_best=2)
    with pytest.raises(ValueError, match="not a checkpoint"):
        seqnlp.load(FIXTURES / "tagger_lstm_crf.ckpt", runtime="onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(ValueError, match=r"pip install 'seqnlp\[onnx\]'"):
        seqnlp.load(folders["classifier_rnn_max"], runtime="onnx")


# -- the NumPy CRF against brute force -------------------------------------------------
def _brute_force(crf: NumpyCRF, emissions: np.ndarray, length: int) -> dict[tuple, float]:
    """Every path's score for one sequence (emissions (time, tags), float64)."""
    em = emissions.astype(np.float64)
    start, trans, end = crf._start64, crf._trans64, crf._end64
    scores = {}
    for path in itertools.product(range(crf.num_tags), repeat=length):
        s = start[path[0]] + end[path[-1]] + sum(em[t, k] for t, k in enumerate(path))
        scores[path] = s + sum(trans[a, b] for a, b in itertools.pairwise(path))
    return scores


@pytest.mark.parametrize("seed", range(4))
def test_numpy_crf_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    tags, time = 3, 4
    crf = NumpyCRF(rng.normal(size=tags), rng.normal(size=(tags, tags)) * 2, rng.normal(size=tags))
    lengths = np.array([4, 1, 3, 2])
    emissions = rng.normal(size=(len(lengths), time, tags)).astype(np.float32) * 2
    paths = crf.decode(emissions, lengths)
    marginals = crf.marginals(emissions, lengths)
    np.testing.assert_allclose(crf.log_marginals(emissions, lengths), marginals, atol=1e-12)
    log_z = crf.log_partition(emissions, lengths)
    nbest = crf.nbest(emissions, lengths, 5)
    for b, n in enumerate(lengths):
        scores = _brute_force(crf, emissions[b], n)
        ranked = sorted(scores, key=scores.__getitem__, reverse=True)
        assert tuple(paths[b]) == ranked[0]
        z = np.logaddexp.reduce(list(scores.values()))
        assert log_z[b] == pytest.approx(z, abs=1e-9)
        want = np.zeros((time, tags))
        for path, s in scores.items():
            want[np.arange(n), path] += np.exp(s - z)
        np.testing.assert_allclose(marginals[b], want, atol=1e-9)
        assert [tuple(p) for p, _ in nbest[b]] == ranked[: min(5, len(ranked))]
        for path, s in nbest[b]:
            assert s == pytest.approx(scores[tuple(path)], abs=1e-4)


def test_numpy_crf_marginals_survive_scores_hundreds_apart():
    rng = np.random.default_rng(0)
    crf = NumpyCRF(rng.normal(size=4), rng.normal(size=(4, 4)) * 400, rng.normal(size=4))
    emissions = (rng.normal(size=(3, 6, 4)) * 400).astype(np.float32)
    lengths = np.array([6, 2, 1])
    marginals = crf.marginals(emissions, lengths)  # where a step underflows: in log space
    np.testing.assert_allclose(marginals, crf.log_marginals(emissions, lengths), atol=1e-12)
    np.testing.assert_allclose(marginals.sum(axis=2), np.arange(6) < lengths[:, None])


def test_numpy_crf_equals_the_torch_crf():
    from seqnlp.nn.crf import LinearChainCRF

    torch.manual_seed(0)
    crf = LinearChainCRF(5)
    for p in crf.parameters():
        torch.nn.init.normal_(p)
    emissions = torch.randn(6, 9, 5)
    lengths = torch.tensor([9, 1, 4, 9, 2, 6])
    mask = torch.arange(9) < lengths[:, None]
    ours = NumpyCRF(crf.crf.start_transitions.tolist(), crf.crf.transitions.tolist(),
                    crf.crf.end_transitions.tolist())  # fmt: skip
    em, lens = emissions.numpy(), lengths.numpy()
    assert ours.decode(em, lens) == crf.decode(emissions, mask)
    np.testing.assert_allclose(ours.marginals(em, lens), crf.marginals(emissions, mask), atol=1e-5)
    want = crf.nbest(emissions, mask, 4)
    got = ours.nbest(em, lens, 4)
    assert [[p for p, _ in row] for row in got] == [[p for p, _ in row] for row in want]


# -- without torch --------------------------------------------------------------------
_BLOCK_TORCH = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "pytorch_lightning", "lightning_fabric"):
            raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, Block())
import seqnlp
inputs = json.loads(sys.argv[2])
records = seqnlp.load(sys.argv[1], runtime="onnx").predict(inputs)
assert not any(m.split(".")[0] == "torch" for m in sys.modules)
print(json.dumps(records))
"""


@pytest.mark.parametrize("name", ["tagger_lstm_crf", "classifier_gru_attention"])
def test_prediction_runs_where_torch_cannot_be_imported(name, folders):
    folder = folders[name]
    inputs = [*_inputs(name)[:6], ""]
    done = subprocess.run([sys.executable, "-c", _BLOCK_TORCH, str(folder), json.dumps(inputs)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout)
    assert_records_close(got, seqnlp.load(folder).predict(inputs), name)


FOLDS = [  # classifier options, and whether the first layer's embedding is folded
    ({"cell": "lstm"}, True),
    ({"cell": "lstm", "num_layers": 2, "learn_initial_state": True, "pooling": "mean"}, True),
    ({"cell": "lstm", "pooling": "max", "forget_bias": 1.0}, True),
    ({"cell": "lstm", "bidirectional": True}, False),
    ({"cell": "gru"}, False),
]


@pytest.mark.parametrize(("options", "folded"), FOLDS)
def test_the_classifier_graph_folds_its_embedding_into_a_forward_lstm(options, folded, tmp_path):
    """Folded or not as the first layer allows; either way the logits equal the torch
    network's on padded batches, a batch of one and one-token rows."""
    from types import SimpleNamespace

    from seqnlp.export.onnx import write_graphs
    from seqnlp.models.classifier import ClassifierNetwork

    torch.manual_seed(0)
    network = ClassifierNetwork(50, 3, embedding_dim=7, hidden_size=5, **options)
    if options.get("learn_initial_state"):  # non-zero learned states
        with torch.no_grad():
            for p in network.encoder.parameters():
                p.add_(0.1 * torch.randn_like(p))
    info = write_graphs(SimpleNamespace(task="classification", network=network), tmp_path)
    assert info["folded_embedding"] is folded and info["max_abs_diff"] <= 1e-4
    graph = onnx.load(str(tmp_path / info["graph"])).graph
    kinds = {node.op_type for node in graph.node}
    assert ("Loop" in kinds) is folded and ("embedding.weight" in {
        t.name for t in graph.initializer}) is not folded  # fmt: skip
    session = onnxruntime.InferenceSession(str(tmp_path / info["graph"]),
                                           providers=["CPUExecutionProvider"])  # fmt: skip
    rng = np.random.default_rng(1)
    for lengths in ([4, 1, 9, 2], [1], [3, 3]):
        ids = np.zeros((len(lengths), max(lengths)), dtype=np.int64)
        for row, n in enumerate(lengths):
            ids[row, :n] = rng.integers(1, 50, size=n)
        got = session.run(None, {"token_ids": ids, "lengths": np.array(lengths)})[0]
        with torch.inference_mode():
            want = network.eval()(torch.from_numpy(ids), torch.tensor(lengths)).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_table_too_large_is_not_folded(tmp_path, monkeypatch):
    """Past ``MAX_TABLE_BYTES`` the graph keeps its LSTM node, and still matches torch."""
    from types import SimpleNamespace

    from seqnlp.export import onnx_fold
    from seqnlp.export.onnx import write_graphs
    from seqnlp.models.classifier import ClassifierNetwork

    monkeypatch.setattr(onnx_fold, "MAX_TABLE_BYTES", 50 * 4 * 5 * 4 - 1)  # one byte short
    network = ClassifierNetwork(50, 3, embedding_dim=7, hidden_size=5)
    info = write_graphs(SimpleNamespace(task="classification", network=network), tmp_path)
    assert info["folded_embedding"] is False and info["max_abs_diff"] <= 1e-4
    kinds = {node.op_type for node in onnx.load(str(tmp_path / info["graph"])).graph.node}
    assert "LSTM" in kinds and "Loop" not in kinds
