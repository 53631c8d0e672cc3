"""ONNX translators: the exported graphs against the torch network, the NumPy searches
against ``seqnlp.nn.search``, records against the torch predictor's, and prediction
in a process where torch cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import seqnlp
from seqnlp.export.onnx_translator import write_translator_graphs
from seqnlp.export.writer import export_model
from seqnlp.models.translator import TranslatorNetwork, max_target_lengths
from seqnlp.nn import search
from seqnlp.onnx_runtime import translator as onnx_search
from seqnlp.predict.translation_records import max_target_length

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints" / "v0.1.0"
MODELS = ("translator_gru", "translator_lstm_tied")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Each fixture checkpoint exported with its ONNX graphs."""
    root = tmp_path_factory.mktemp("onnx_translators")
    return {name: export_model(FIXTURES / f"{name}.ckpt", root / name, onnx=True).folder
            for name in MODELS}  # fmt: skip


@pytest.fixture(scope="module")
def inputs() -> list[str]:
    """The fixtures' 32 sentences (an empty one and a one-word one among them), and as
    many again with their words shuffled: a few dozen sources of ragged lengths."""
    base = json.loads((FIXTURES / "translator_gru.json").read_text(encoding="utf-8"))["inputs"]
    rng = np.random.default_rng(0)
    return [*base, *(" ".join(rng.permutation(s.split())) for s in base if s)]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("beam_size, n_best", [(1, 1), (3, 2)])
def test_onnx_records_equal_torch_records(folders, inputs, name, beam_size, n_best):
    options = {"beam_size": beam_size, "n_best": n_best, "batch_size": 16}
    torch_records = seqnlp.load(folders[name], **options).predict(inputs)
    onnx_records = seqnlp.load(folders[name], runtime="onnx", **options).predict(inputs)
    same = sum(a == b for a, b in zip(torch_records, onnx_records, strict=True))
    assert same >= 0.99 * len(inputs), [
        (a, b) for a, b in zip(torch_records, onnx_records, strict=True) if a != b
    ][:3]


@pytest.mark.parametrize("name", MODELS)
def test_one_step_log_probs_equal_torch(folders, name):
    torch_predictor = seqnlp.load(folders[name])
    predictor = seqnlp.load(folders[name], runtime="onnx")
    codec, network = predictor.codec, torch_predictor.network
    ids = [codec.encode_source(s) for s in ("Der Hund schläft im Park .", "Hund", "Die Katze")]
    src = np.zeros((len(ids), max(map(len, ids))), dtype=np.int64)
    for row, s in zip(src, ids, strict=True):
        row[: len(s)] = s
    lengths = np.array([len(s) for s in ids])
    tokens = np.array([codec.target.bos_id, 5, 9])
    state, memory = predictor.encode(src, lengths)
    log_probs, _ = predictor.step(tokens, state, memory)
    with torch.no_grad():
        encoded = network.encode(torch.from_numpy(src), torch.from_numpy(lengths))
        expected, _ = network.log_prob_step(torch.from_numpy(tokens), encoded)
    np.testing.assert_allclose(log_probs, expected.numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "cell, attention, layers, tie",
    [("gru", "dot", 2, False), ("lstm", "additive", 2, True), ("gru", "general", 1, True)],
)
def test_every_cell_attention_and_depth_exports(tmp_path, cell, attention, layers, tie):
    torch.manual_seed(0)
    network = TranslatorNetwork(
        40, 30, embedding_dim=8, hidden_size=6, decoder_hidden_size=12, encoder_layers=layers,
        decoder_layers=layers, cell=cell, attention=attention, tie_embeddings=tie,
    ).eval()  # fmt: skip
    # the export itself compares both graphs with torch on a ragged batch (raises if not)
    info = write_translator_graphs(SimpleNamespace(network=network), tmp_path, None)
    assert info["max_abs_diff"] <= 1e-4
    assert info["state"] == (["hidden", "cell"] if cell == "lstm" else ["hidden"])
    assert ("projected" in info["memory"]) == (attention != "dot")
    assert (tmp_path / info["encoder"]).is_file() and (tmp_path / info["decoder_step"]).is_file()


@pytest.mark.parametrize("ratio", [1.1, 1.2, 1.5, 2.3])
def test_length_limits_equal_torchs(ratio):
    lengths = torch.arange(1, 500)  # 1.1 x 10 is 11 in float32, 11.000000000000002 in float64
    expected = max_target_lengths(lengths, ratio, 10).tolist()
    assert [max_target_length(n, ratio, 10) for n in lengths.tolist()] == expected


class _Toy:
    """A deterministic decoder on float32 NumPy arithmetic, for both searches: vocab 7,
    bos 2, eos 3; the state (rows, 4) and memory (rows, 4) both shape the scores."""

    vocab, bos, eos = 7, 2, 3

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.table = rng.normal(size=(self.vocab, 4)).astype(np.float32)
        self.out = rng.normal(size=(4, self.vocab)).astype(np.float32) * 2

    def numpy_step(self, tokens, state, memory):
        h = np.tanh(state[0][0] + self.table[tokens] + memory[0])  # (rows, 4)
        # elementwise, so that a row's numbers do not depend on the rows beside it
        logits = sum(h[:, j, None] * self.out[j] for j in range(4))
        logits = logits + (tokens[:, None] == self.eos) * 4  # eos tends to repeat
        logits = (logits - logits.max(-1, keepdims=True)).astype(np.float32)
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        return log_probs.astype(np.float32), [h[None]]

    def torch_step(self, tokens, state):
        h, m = state
        log_probs, (h,) = self.numpy_step(tokens.numpy(), [h.numpy()[None]], [m.numpy()])
        return torch.from_numpy(log_probs), (torch.from_numpy(h[0]), m)

    @staticmethod
    def select(state, index):
        return tuple(s.index_select(0, index) for s in state)


@pytest.mark.parametrize("seed", range(6))
def test_numpy_searches_mirror_torch_searches(seed):
    toy = _Toy(seed)
    rng = np.random.default_rng(seed)
    batch = 9
    h0 = rng.normal(size=(batch, 4)).astype(np.float32)
    memory = rng.normal(size=(batch, 4)).astype(np.float32)
    limits = rng.integers(1, 12, size=batch)
    start = (torch.from_numpy(h0), torch.from_numpy(memory))
    greedy_t = search.greedy_search(toy.torch_step, start, batch, toy.bos, toy.eos,
                                    torch.from_numpy(limits))  # fmt: skip
    greedy_n = onnx_search.greedy_search(toy.numpy_step, [h0[None]], [memory], toy.bos, toy.eos,
                                         limits)  # fmt: skip
    assert [(h.tokens, h.log_prob) for h in greedy_t] == [(h.tokens, h.log_prob) for h in greedy_n]
    for beam, alpha, n_best in [(3, 0.0, 3), (4, 0.6, 2), (1, 1.0, 1)]:
        beam_t = search.beam_search(toy.torch_step, toy.select, start, batch, toy.bos, toy.eos,
                                    torch.from_numpy(limits), beam, alpha, n_best)  # fmt: skip
        beam_n = onnx_search.beam_search(toy.numpy_step, [h0[None]], [memory], toy.bos, toy.eos,
                                         limits, beam, alpha, n_best)  # fmt: skip
        assert [[(h.tokens, h.log_prob, h.score) for h in hyps] for hyps in beam_t] == [
            [(h.tokens, h.log_prob, h.score) for h in hyps] for hyps in beam_n
        ]


def test_int8_graphs_translate(folders, inputs, tmp_path):
    ckpt = FIXTURES / "translator_gru.ckpt"
    folder = export_model(ckpt, tmp_path / "int8", onnx=True, quantize="int8").folder
    assert {"encoder.int8.onnx", "decoder_step.int8.onnx"} <= {p.name for p in folder.rglob("*")}
    fp32 = seqnlp.load(folders["translator_gru"], runtime="onnx", beam_size=1).predict(inputs)
    int8 = seqnlp.load(folder, runtime="onnx", beam_size=1, quantize="int8").predict(inputs)
    assert [r["source"] for r in int8] == inputs
    same = sum(a == b for a, b in zip(fp32, int8, strict=True))
    assert same >= len(inputs) // 2  # int8 rounding moves a few translations, not most


def test_onnx_prediction_never_imports_torch(folders, inputs):
    code = textwrap.dedent(f"""
        import importlib.abc, json, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in ("torch", "pytorch_lightning", "lightning_fabric"):
                    raise ImportError(name + " is blocked")
        sys.meta_path.insert(0, Block())
        import seqnlp
        predictor = seqnlp.load({str(folders["translator_lstm_tied"])!r}, runtime="onnx",
                                beam_size=3, n_best=2)
        print(json.dumps(predictor.predict({inputs[:6]!r})))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    expected = seqnlp.load(folders["translator_lstm_tied"], runtime="onnx", beam_size=3,
                           n_best=2).predict(inputs[:6])  # fmt: skip
    assert json.loads(done.stdout.splitlines()[-1]) == expected
