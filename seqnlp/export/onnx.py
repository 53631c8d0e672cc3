"""ONNX graphs of a model folder (``seqnlp export --format onnx``), for ONNX Runtime.

The graphs are the network's ``forward`` and nothing more: tensors in, scores out.
What surrounds them at prediction (text to ids, padding, the CRF's Viterbi and
marginals, records) is Python and NumPy in ``seqnlp.onnx_runtime``, sharing the
torch predictors' code wherever it is not torch.

- tagger: ``onnx/tagger.onnx``: ``word_ids`` (batch, time), ``char_features`` (words,
  features), ``lengths`` (batch,) and ``char_rows`` (batch, time) -> ``emissions``
  (batch, time, tags), where ``char_features`` has one row per distinct token of the
  batch (row 0 the padding's empty word) and ``char_rows`` gives each position's row:
  ``collate_distinct_tokens``'s batch, as the torch predictor feeds it, with the
  character features computed apart by ``onnx/tagger.chars.onnx``: ``char_ids`` (words,
  chars) -> ``char_features`` (words, features). Apart, so that ONNX Runtime can run
  the distinct words in groups of similar length (``seqnlp.onnx_runtime.tagger``).
  Without character features the tagger graph takes ``word_ids`` and ``lengths``
  only. The CRF's scores (start, transitions, end) go into ``config.json`` under
  ``onnx.crf`` for the NumPy Viterbi and forward-backward (``seqnlp.onnx_runtime.crf``).
- classifier: ``onnx/classifier.onnx``: ``token_ids`` (batch, time) and ``lengths``
  (batch,) -> ``logits`` (batch, classes). Where the first layer is a forward LSTM,
  its float32 graph folds the embedding into the layer's input weights
  (``seqnlp.export.onnx_fold``: 1.6x faster in ONNX Runtime, a larger file);
  ``folded_embedding`` in its entry says whether it did.
- translator: ``seqnlp.export.onnx_translator``.

Exported with torch's TorchScript exporter (``dynamo=False``), each recurrent layer as
one ONNX RNN node that skips padding (``seqnlp.export.onnx_rnn``). Tracing fixes Python
branches to the example batch, so the example is ragged and every export is checked
against torch on other batches (ragged, of one sentence, of equal lengths, of words
without characters) before it is kept. With ``quantize="int8"`` int8 graphs
(``onnxruntime.quantization.quantize_dynamic``) are written beside the fp32 ones.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqnlp.export.onnx_rnn import onnx_recurrences, weights_as_initializers

#: the ONNX opset the graphs are written in.
OPSET = 17
#: the largest difference from torch an exported graph may show on the check batches.
TOLERANCE = 1e-4
ONNX_DIR = "onnx"
#: each graph: its inputs with their dynamic axes, and its outputs with theirs.
_AXES = {
    "word_ids": {0: "batch", 1: "time"}, "char_features": {0: "words"},
    "lengths": {0: "batch"}, "char_rows": {0: "batch", 1: "time"},
    "emissions": {0: "batch", 1: "time"}, "char_ids": {0: "words", 1: "chars"},
    "token_ids": {0: "batch", 1: "time"}, "logits": {0: "batch"},
}  # fmt: skip


def write_graphs(system: Any, folder: str | Path, quantize: str | None = None) -> dict[str, Any]:
    """Write ``system``'s network as ONNX graphs under ``folder/onnx`` and return what
    ``config.json`` keeps of them (its ``onnx`` entry): ``opset``; ``graph``, ``int8``
    (or None), ``inputs`` and ``outputs`` of the task's graph; for a tagger ``chars``
    (the character graph's, or None), ``head`` and ``crf`` (the CRF's scores, or
    None); ``max_abs_diff`` (the largest difference from torch on the check batches).

    Args:
        system: a ``seqnlp.tasks`` system (float32 network).
        folder: the model folder being written.
        quantize: ``int8``: also int8 graphs beside the fp32 ones.
    """
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be int8, got {quantize!r}")
    check_exportable(system.network)
    _need_onnx()
    if system.task == "translation":
        from seqnlp.export.onnx_translator import write_translator_graphs

        return write_translator_graphs(system, folder, quantize)
    if system.task not in ("tagging", "classification"):
        raise ValueError(f"no ONNX export for task {system.task!r}")
    network = system.network.float().eval()
    out = Path(folder) / ONNX_DIR
    out.mkdir(exist_ok=True)
    tagger = system.task == "tagging"
    with onnx_recurrences(network) as exported:
        if tagger:
            graphs = {"tagger": _export(_Emissions(exported), exported, out / "tagger.onnx")}
            if network.char_features is not None:
                graphs["chars"] = _export(_CharFeatures(exported), exported,
                                          out / "tagger.chars.onnx")  # fmt: skip
        else:
            graphs = {"classifier": _export(exported, exported, out / "classifier.onnx")}
    for entry in graphs.values():  # int8 from the graphs as traced (int8 LSTM kernels)
        entry["int8"] = None
        if quantize == "int8":
            int8 = out / Path(entry["graph"]).name.replace(".onnx", ".int8.onnx")
            quantize_graph(out / Path(entry["graph"]).name, int8)
            entry["int8"] = f"{ONNX_DIR}/{int8.name}"
    if not tagger:
        graphs["classifier"]["folded_embedding"] = _fold(out / "classifier.onnx")
    worst = (_check_tagger if tagger else _check_classifier)(network, out, graphs)
    main = graphs.pop("tagger" if tagger else "classifier")
    info: dict[str, Any] = {"opset": OPSET, **main, "max_abs_diff": worst,
                            "exporter": f"torch {torch.__version__} (TorchScript, dynamo=False)"}
    if tagger:
        info.update(chars=graphs.get("chars"), head="crf" if network.crf is not None else "softmax",
                    crf=_crf_parameters(network))  # fmt: skip
    return info


def check_exportable(network: nn.Module) -> None:
    """Refuse, in one line, recurrent layers that have no ONNX node: each layer is
    exported as one ONNX ``RNN`` / ``GRU`` / ``LSTM`` node, which runs torch's cells
    alone, with nothing between layers."""
    from seqnlp.nn.contextual import ContextualCharFeatures
    from seqnlp.nn.encoder import RNNEncoder

    for name, module in network.named_modules():
        if isinstance(module, ContextualCharFeatures):
            raise ValueError(
                "the ONNX graphs have no character language models (contextual string "
                "embeddings): export without --format onnx (the folder predicts with torch)"
            )
        if not isinstance(module, RNNEncoder):
            continue
        if module.cells is not None:
            raise ValueError(
                f"ONNX has no node for the {module.cell} cell ({name}): export without "
                f"--format onnx (the folder predicts with torch)"
            )
        if module.residual or module.norms is not None or name.endswith("decoder.rnn"):
            raise ValueError(
                f"the ONNX graphs run each recurrent stack as plain ONNX nodes; {name} has "
                f"residual connections, layer norm or options of its own: export without "
                f"--format onnx (the folder predicts with torch)"
            )


def _fold(graph: Path) -> bool:
    """Fold the classifier graph's embedding into its first LSTM layer where it can
    (``seqnlp.export.onnx_fold``; float32 only: the int8 graph keeps ONNX Runtime's
    int8 LSTM); whether it did."""
    import onnx

    from seqnlp.export.onnx_fold import fold_first_lstm

    model = onnx.load(str(graph))
    if not fold_first_lstm(model):
        return False
    onnx.save(model, str(graph))
    onnx.checker.check_model(str(graph))
    return True


def quantize_graph(graph: Path, int8: Path) -> None:
    """An int8 copy of ``graph``: dynamic quantization (int8 weights, activations
    quantized per batch) of its matrix products and LSTMs (GRUs and tanh RNNs stay
    float32: ONNX Runtime has no int8 kernel for them); checked."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # its advice on the root logger, about every tensor
    try:
        quantize_dynamic(graph, int8, weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    onnx.checker.check_model(str(int8))


# -- the graphs' modules: the network's own forward ----------------------------------
class _Emissions(nn.Module):
    """The tagger's emissions (batch, time, tags) from word ids (batch, time), the
    distinct words' character features (words, features), lengths (batch,) and rows
    (batch, time): ``TaggerNetwork.forward`` with the character features given."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(
        self, word_ids: torch.Tensor, char_features: torch.Tensor, lengths: torch.Tensor,
        char_rows: torch.Tensor,
    ) -> torch.Tensor:  # fmt: skip
        network, features = self.network, self.network.char_features
        if features is None:
            return network(word_ids, word_ids, lengths)
        network.char_features = _Given()  # the features are computed: take them as they are
        try:
            return network(word_ids, char_features, lengths, char_rows)
        finally:
            network.char_features = features


class _CharFeatures(nn.Module):
    """Character features (words, features) of distinct words' char ids (words, chars)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.char_features = network.char_features

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        return self.char_features(char_ids.unsqueeze(0))[0]


class _Given(nn.Module):
    """Character features that are given: (1, words, features) in and out."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


# -- export and checks --------------------------------------------------------------
def _inputs_of(module: nn.Module) -> list[str]:
    if isinstance(module, _CharFeatures):
        return ["char_ids"]
    if isinstance(module, _Emissions):
        chars = module.network.char_features is not None
        return ["word_ids", "char_features", "lengths", "char_rows"] if chars else [
            "word_ids", "lengths"]  # fmt: skip
    return ["token_ids", "lengths"]


def _export(module: nn.Module, network: nn.Module, path: Path) -> dict[str, Any]:
    """Trace ``module`` (a graph of ``network``) on the example batch into ``path``
    (checked by ``onnx.checker``); its entry: the file, inputs and outputs."""
    import onnx

    inputs = _inputs_of(module)
    outputs = {"_CharFeatures": ["char_features"], "_Emissions": ["emissions"]}.get(
        type(module).__name__, ["logits"])  # fmt: skip
    example = _batch(network, _EXAMPLE, seed=0)
    args = tuple(torch.from_numpy(example[name]) for name in inputs)
    # Autograd on while tracing: ``RNNEncoder.recurrence`` then runs the recurrence
    # through ``forward``, not the folded step loop that tracing would unroll.
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings: the checks stand for them
        torch.onnx.export(
            module, args, str(path), dynamo=False, opset_version=OPSET,
            input_names=inputs, output_names=outputs,
            dynamic_axes={k: _AXES[k] for k in inputs + outputs}, do_constant_folding=True,
        )  # fmt: skip
    onnx.save(weights_as_initializers(onnx.load(str(path))), str(path))
    onnx.checker.check_model(str(path))
    return {"graph": f"{ONNX_DIR}/{path.name}", "inputs": inputs, "outputs": outputs}


#: the traced example (ragged: tracing keeps the branches taken for it), then the
#: batches every graph is checked on: ragged, one sentence, equal lengths, long, and
#: (the last) words without characters.
_EXAMPLE = [5, 2, 7, 1]
_CHECKS = [[3, 9, 1, 4, 4], [6], [1], [4, 4, 4], [1, 1], [30, 2, 17], [2, 1]]


def _batch(network: nn.Module, lengths: list[int], seed: int, chars: bool = True) -> dict:
    """A random batch of ``lengths`` as the predictors collate them: ``token_ids`` and
    ``lengths`` (classifier); ``word_ids``, ``char_ids`` (words, chars) of distinct
    words with row 0 empty, ``lengths``, ``char_rows`` and ``char_features`` (from
    the network) (tagger); without ``chars``, every word without characters."""
    rng = np.random.default_rng(seed)
    batch, time = len(lengths), max(lengths)
    if not hasattr(network, "crf"):  # a classifier
        token_ids = np.zeros((batch, time), dtype=np.int64)
        for b, n in enumerate(lengths):
            token_ids[b, :n] = rng.integers(1, network.embedding.num_embeddings, size=n)
        return {"token_ids": token_ids, "lengths": np.array(lengths)}
    words = int(rng.integers(2, 9))  # distinct words, the padding's empty one first
    word_len = rng.integers(1, 7, size=words) * chars
    word_len[0] = 0
    char_ids = np.zeros((words, max(int(word_len.max()), 1)), dtype=np.int64)
    num_chars = network.char_features.embedding.num_embeddings if network.char_features else 2
    for row, n in enumerate(word_len):
        char_ids[row, :n] = rng.integers(1, num_chars, size=n)
    word_ids = np.zeros((batch, time), dtype=np.int64)
    rows = np.zeros((batch, time), dtype=np.int64)
    for b, n in enumerate(lengths):
        word_ids[b, :n] = rng.integers(1, network.word_embedding.num_embeddings, size=n)
        rows[b, :n] = rng.integers(1, words, size=n)
    out = {"word_ids": word_ids, "char_ids": char_ids, "lengths": np.array(lengths),
           "char_rows": rows}  # fmt: skip
    if network.char_features is not None:
        with torch.inference_mode():
            features = network.char_features(torch.from_numpy(char_ids)[None])[0]
        out["char_features"] = features.numpy()
    return out


def _check_tagger(network: nn.Module, out: Path, graphs: dict[str, Any]) -> float:
    """The largest difference between the tagger graphs' emissions in ONNX Runtime
    (the character graph's features fed to the tagger graph) and the network's in
    torch, at real positions of the check batches; ValueError above ``TOLERANCE``."""
    tagger = _session(out / "tagger.onnx")
    chars = _session(out / "tagger.chars.onnx") if "chars" in graphs else None
    worst = 0.0
    for seed, lengths in enumerate(_CHECKS, start=1):
        batch = _batch(network, lengths, seed, chars=seed != len(_CHECKS))
        feeds = {k: batch[k] for k in graphs["tagger"]["inputs"]}
        if chars is not None:
            features = chars.run(None, {"char_ids": batch["char_ids"]})[0]
            worst = max(worst, float(np.abs(features - batch["char_features"]).max()))
            feeds["char_features"] = features
        got = tagger.run(None, feeds)[0]
        with torch.inference_mode():
            args = [torch.from_numpy(batch[k]) for k in ("word_ids", "char_ids", "lengths")]
            want = network(*args, torch.from_numpy(batch["char_rows"])).numpy()
        real = np.arange(got.shape[1]) < np.array(lengths)[:, None]  # padding does not count
        worst = max(worst, float(np.abs(got[real] - want[real]).max()))
    return _verdict(worst, "tagger")


def _check_classifier(network: nn.Module, out: Path, graphs: dict[str, Any]) -> float:
    """The largest difference between the classifier graph's logits in ONNX Runtime
    and the network's in torch on the check batches; ValueError above ``TOLERANCE``."""
    session = _session(out / "classifier.onnx")
    worst = 0.0
    for seed, lengths in enumerate(_CHECKS, start=1):
        batch = _batch(network, lengths, seed)
        got = session.run(None, batch)[0]
        with torch.inference_mode():
            want = network(*(torch.from_numpy(batch[k]) for k in ("token_ids", "lengths")))
        worst = max(worst, float(np.abs(got - want.numpy()).max()))
    return _verdict(worst, "classifier")


def _verdict(worst: float, name: str) -> float:
    if not worst <= TOLERANCE:
        raise ValueError(f"the {name} ONNX graph differs from the torch network by "
                         f"{worst:.2g} (> {TOLERANCE}); it cannot be used")  # fmt: skip
    return worst


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _crf_parameters(network: nn.Module) -> dict[str, Any] | None:
    """The CRF's start (tags,), transition (from, to) and end (tags,) scores as lists
    of floats (float32 values, exact in JSON), or None for a softmax head."""
    if network.crf is None:
        return None
    crf = network.crf.crf
    return {"start": crf.start_transitions.detach().tolist(),
            "transitions": crf.transitions.detach().tolist(),
            "end": crf.end_transitions.detach().tolist()}  # fmt: skip


def _need_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ValueError("ONNX export needs onnx and onnxruntime: pip install "
                         "'seqnlp[onnx]'") from None  # fmt: skip
