"""A translator as two ONNX graphs that a search drives from NumPy
(``seqnlp.onnx_runtime.translator``):

- ``onnx/encoder.onnx``: ``src_ids`` (batch, src) int64 and ``src_lengths`` (batch,)
  int64 -> the decoder's starting state ``hidden`` (layers, batch, hidden) (and
  ``cell``, same shape, for an LSTM decoder) and its memory: ``keys`` (batch, src,
  encoder size), ``projected`` (batch, src, attention size; not for ``dot``
  attention, whose projected keys are the keys) and ``mask`` (batch, src) bool;
- ``onnx/decoder_step.onnx``: ``tokens`` (rows,) int64, the state and the memory ->
  ``log_probs`` (rows, vocab) float32, the new state (``new_hidden`` [, ``new_cell``])
  and the attention ``weights`` (rows, src).

Every batch, source and row axis is dynamic. The encoder's recurrent layers are
ONNX RNN nodes that skip padding (``seqnlp.export.onnx_rnn``, as for the other
tasks). Both graphs are checked (``onnx.checker``) and compared with the torch
network on ragged batches before they are kept; ``quantize="int8"`` adds
``*.int8.onnx`` versions (``seqnlp.export.onnx.quantize_graph``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqnlp.export.onnx import OPSET, TOLERANCE, quantize_graph
from seqnlp.export.onnx_rnn import onnx_recurrences, weights_as_initializers
from seqnlp.models.translator import TranslatorNetwork
from seqnlp.nn.encoder import lengths_mask

ENCODER, DECODER = "onnx/encoder.onnx", "onnx/decoder_step.onnx"
INT8 = {"encoder": "onnx/encoder.int8.onnx", "decoder_step": "onnx/decoder_step.int8.onnx"}


def state_names(network: TranslatorNetwork) -> list[str]:
    """The decoder state's tensors, each (layers, rows, hidden)."""
    return ["hidden", "cell"] if network.decoder.cell == "lstm" else ["hidden"]


def memory_names(network: TranslatorNetwork) -> list[str]:
    """The encoder memory's tensors, each with rows first."""
    dot = network.decoder.attention.method == "dot"
    return ["keys", "mask"] if dot else ["keys", "projected", "mask"]


class EncoderGraph(nn.Module):
    """``TranslatorNetwork.encode`` as flat tensors: (src_ids, src_lengths) -> state
    tensors (``state_names``), then memory tensors (``memory_names``)."""

    def __init__(self, network: TranslatorNetwork) -> None:
        super().__init__()
        self.network = network
        self.dot = network.decoder.attention.method == "dot"

    def forward(self, src_ids: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        state = self.network.encode(src_ids, src_lengths)
        projected = [] if self.dot else [state["projected"]]
        return (*_tuple(state), state["keys"], *projected, state["mask"])


class DecoderStepGraph(nn.Module):
    """``TranslatorNetwork.step`` as flat tensors: (tokens, *state, *memory) ->
    (log_probs, *new state, weights)."""

    def __init__(self, network: TranslatorNetwork) -> None:
        super().__init__()
        self.network = network
        self.lstm = network.decoder.cell == "lstm"
        self.dot = network.decoder.attention.method == "dot"

    def forward(self, tokens: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = 2 if self.lstm else 1
        state: Any = tuple(tensors[:n]) if self.lstm else tensors[0]
        keys, mask = tensors[n], tensors[-1]
        projected = keys if self.dot else tensors[n + 1]
        logits, new, weights = self.network.decoder.step(tokens, state, keys, projected, mask)
        new = new if isinstance(new, tuple) else (new,)
        return (logits.log_softmax(dim=-1), *new, weights)


def _example(network: TranslatorNetwork, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Random source ids (batch, max length), padded with the embedding's padding id,
    and their lengths (batch,)."""
    generator = torch.Generator().manual_seed(len(lengths))
    vocab = network.src_embedding.num_embeddings
    ids = torch.randint(4, vocab, (len(lengths), max(lengths)), generator=generator)
    ids = ids.masked_fill(~lengths_mask(torch.tensor(lengths), max(lengths)), 0)
    return ids, torch.tensor(lengths)


def write_translator_graphs(
    system: Any, folder: str | Path, quantize: str | None
) -> dict[str, Any]:
    """Write the translator ``system``'s ONNX graphs under ``folder/onnx`` and return what
    ``config.json`` keeps of them (under ``"onnx"``): the graph files, the opset, the
    state and memory tensor names and the largest difference from torch measured."""
    import onnx

    folder = Path(folder)
    (folder / "onnx").mkdir(parents=True, exist_ok=True)
    network: TranslatorNetwork = system.network.float().eval()
    states, memory = state_names(network), memory_names(network)
    src_ids, src_lengths = _example(network, [5, 3, 1])
    decoder = DecoderStepGraph(network).eval()
    with torch.no_grad():
        encoded = EncoderGraph(network)(src_ids, src_lengths)
        tokens = torch.tensor([2, 5, 7]) % network.decoder.embedding.num_embeddings
    enc_out = [*states, *memory]
    dec_out = ["log_probs", *(f"new_{s}" for s in states), "weights"]
    axes = {"src_ids": {0: "batch", 1: "src"}, "src_lengths": {0: "batch"},
            "tokens": {0: "batch"}, "log_probs": {0: "batch"}, "weights": {0: "batch", 1: "src"},
            **{name: {1: "batch"} for name in [*states, *dec_out[1:-1]]},
            **{name: {0: "batch", 1: "src"} for name in memory}}  # fmt: skip
    with onnx_recurrences(network) as exported:  # recurrent layers that skip padding
        _export(EncoderGraph(exported).eval(), (src_ids, src_lengths), folder / ENCODER,
                ["src_ids", "src_lengths"], enc_out, axes)  # fmt: skip
    _export(decoder, (tokens, *encoded), folder / DECODER, ["tokens", *enc_out], dec_out, axes)
    for path in (ENCODER, DECODER):
        onnx.checker.check_model(str(folder / path), full_check=True)
    info: dict[str, Any] = {
        "task": "translation", "opset": OPSET, "encoder": ENCODER, "decoder_step": DECODER,
        "state": states, "memory": memory, "attention": network.decoder.attention.method,
        "cell": network.decoder.cell,
        "exporter": f"torch {torch.__version__} (TorchScript, dynamo=False)",
        "max_abs_diff": verify_graphs(network, folder / ENCODER, folder / DECODER, states),
    }  # fmt: skip
    if quantize == "int8":
        for name, path in (("encoder", ENCODER), ("decoder_step", DECODER)):
            quantize_graph(folder / path, folder / INT8[name])
        info["int8"] = dict(INT8)
    elif quantize is not None:
        raise ValueError(f"quantize must be int8, got {quantize!r}")
    return info


def _export(
    module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: list[str],
    outputs: list[str], axes: dict[str, dict[int, str]],
) -> None:  # fmt: skip
    """Export ``module`` called on ``args`` to ``path``, with the dynamic axes of its
    named inputs and outputs (``axes`` may name others too)."""
    import warnings

    import onnx

    axes = {name: axes[name] for name in [*inputs, *outputs]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings: ``verify_graphs`` stands for them
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)  # fmt: skip
    # the RNN nodes' weights as initialisers, where the int8 quantizer looks for them
    onnx.save(weights_as_initializers(onnx.load(str(path))), str(path))


def verify_graphs(
    network: TranslatorNetwork, encoder_path: Path, decoder_path: Path, states: list[str]
) -> float:
    """Run both graphs with ONNX Runtime against the torch network (``encode``, then
    three ``log_prob_step``s) on batches other than the export's (ragged, of one
    sentence, of equal lengths); return the largest absolute difference, or raise
    ``ValueError`` above ``TOLERANCE``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    enc = ort.InferenceSession(str(encoder_path), options, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(decoder_path), options, providers=["CPUExecutionProvider"])
    enc_names = [o.name for o in enc.get_outputs()]
    vocab = network.decoder.embedding.num_embeddings
    diffs = []
    for lengths in ([2, 7, 4, 7, 1], [6], [1], [3, 3], [30, 2, 17]):
        src_ids, src_lengths = _example(network, lengths)
        feed = {"src_ids": src_ids.numpy(), "src_lengths": src_lengths.numpy()}
        encoded = dict(zip(enc_names, enc.run(None, feed), strict=True))
        with torch.no_grad():
            state = network.encode(src_ids, src_lengths)
            diffs += [_diff(encoded[s], h) for s, h in zip(states, _tuple(state), strict=True)]
            diffs += [_diff(encoded["keys"], state["keys"])]
            diffs += [float((encoded["mask"] != state["mask"].numpy()).sum())]
            tokens = (torch.arange(len(lengths)) * 7 + 2) % vocab
            for _ in range(3):
                log_probs, state = network.log_prob_step(tokens, state)
                out = dec.run(None, {"tokens": tokens.numpy(), **encoded})
                new = out[1 : 1 + len(states)]
                diffs += [_diff(out[0], log_probs)]
                diffs += [_diff(o, h) for o, h in zip(new, _tuple(state), strict=True)]
                encoded.update(zip(states, new, strict=True))
                tokens = log_probs.argmax(-1)
    worst = max(diffs)
    if not worst <= TOLERANCE:
        raise ValueError(f"the ONNX graphs differ from the torch network by {worst:.2g} "
                         f"(at most {TOLERANCE} expected): not written")  # fmt: skip
    return float(worst)


def _tuple(state: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """A decoder state's hidden tensors: (hidden,) or (hidden, cell)."""
    hidden = state["hidden"]
    return hidden if isinstance(hidden, tuple) else (hidden,)


def _diff(array: np.ndarray, tensor: torch.Tensor) -> float:
    return float(np.abs(array - tensor.numpy()).max())
