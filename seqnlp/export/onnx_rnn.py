"""The recurrent encoders of a network as ONNX ``LSTM`` / ``GRU`` / ``RNN`` nodes that
skip padding, for export.

Traced as it runs on the CPU (``seqnlp.nn.padded_rnn``), each direction of each layer
becomes an ONNX RNN node over the padded batch, with the backward direction's rows
reversed within their lengths by gathers before and after it: ONNX Runtime then runs
every padded step, and the gathers, transposes and concatenations cost a fifth of a
tagger's graph. Packed sequences, which ONNX's ``sequence_lens`` expresses, do not
export (torch's exporter fails on the unsorted packing of ``RNNEncoder``).

``onnx_recurrences`` gives a copy of a network whose ``RNNEncoder``s run each layer
through ``_Layer``: in torch the padded recurrence (so tracing and the checks see the
same numbers), in the graph one node per layer with both directions and
``sequence_lens``, which skips each row's padding and reverses each row within its
own length itself. ``CharLSTM``s run every word, those without characters too (length
0: zero states). The network itself is not changed.
"""

from __future__ import annotations

import contextlib
import copy
import types
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from seqnlp.nn.embeddings import CharLSTM
from seqnlp.nn.encoder import RNNEncoder, State
from seqnlp.nn.padded_rnn import run_padded

#: the single-layer RNNs being exported, by key (``_Layer``'s symbolic reads their weights).
_LAYERS: dict[int, nn.RNNBase] = {}
#: ONNX's gate order as indices into torch's (LSTM: i o f c from i f g o; GRU: z r h
#: from r z n).
_GATES = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2], "RNN_TANH": [0], "RNN_RELU": [0]}
_ONNX_OP = {"LSTM": "LSTM", "GRU": "GRU", "RNN_TANH": "RNN", "RNN_RELU": "RNN"}


@contextlib.contextmanager
def onnx_recurrences(network: nn.Module) -> Iterator[nn.Module]:
    """A copy of ``network`` in eval mode whose ``RNNEncoder``s export each layer as one
    ONNX RNN node with ``sequence_lens`` (valid inside the ``with`` block)."""
    exported = copy.deepcopy(network).eval()
    keys = []
    for module in exported.modules():
        if isinstance(module, RNNEncoder):
            layers = [_single_layer(module.rnn, i) for i in range(module.rnn.num_layers)]
            for layer in layers:
                keys.append(id(layer))
                _LAYERS[id(layer)] = layer
            module._onnx_layers = layers  # type: ignore[assignment]
            module.forward = types.MethodType(_encoder_forward, module)  # type: ignore[method-assign]
        elif isinstance(module, CharLSTM):
            module.forward = types.MethodType(_char_lstm_forward, module)  # type: ignore[method-assign]
    try:
        yield exported
    finally:
        for key in keys:
            _LAYERS.pop(key, None)


def _single_layer(rnn: nn.RNNBase, layer: int) -> nn.RNNBase:
    """Layer ``layer`` of ``rnn`` as a one-layer RNN of the same kind and directions."""
    kwargs = {"nonlinearity": "relu" if rnn.mode == "RNN_RELU" else "tanh"} if (
        rnn.mode.startswith("RNN")
    ) else {}  # fmt: skip
    single = type(rnn)(
        rnn.input_size if layer == 0 else rnn.hidden_size * (2 if rnn.bidirectional else 1),
        rnn.hidden_size, num_layers=1, bias=rnn.bias, batch_first=True,
        bidirectional=rnn.bidirectional, **kwargs,
    )  # fmt: skip
    with torch.no_grad():
        for name, param in single.named_parameters():
            param.copy_(getattr(rnn, name.replace("_l0", f"_l{layer}")))
    return single.requires_grad_(False).eval()


def _encoder_forward(
    self: RNNEncoder, inputs: torch.Tensor, lengths: torch.Tensor, initial: State | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``RNNEncoder.forward`` layer by layer through ``_Layer``: outputs (batch, time,
    output_size), final (layers * directions, batch, hidden)."""
    rnn = self.rnn
    directions = 2 if rnn.bidirectional else 1
    if initial is None:
        initial = self.learned_initial(inputs.size(0))
    if initial is None:
        zeros = inputs.new_zeros(rnn.num_layers * directions, inputs.size(0), rnn.hidden_size)
        initial = (zeros, zeros) if rnn.mode == "LSTM" else zeros
    h0, c0 = initial if isinstance(initial, tuple) else (initial, None)
    x, finals = inputs, []
    for i, layer in enumerate(self._onnx_layers):  # type: ignore[attr-defined]
        states = slice(i * directions, (i + 1) * directions)
        c = None if c0 is None else c0[states]
        x, final = _Layer.apply(x, lengths, h0[states], c, id(layer))
        finals.append(final)
    return x, torch.cat(finals)


def _char_lstm_forward(self: CharLSTM, char_ids: torch.Tensor) -> torch.Tensor:
    """``CharLSTM.forward`` (char ids (batch, time, chars) -> (batch, time, 2 * hidden))
    over every word: the ONNX node gives a word without characters (length 0) zero
    states, as ``CharLSTM`` does, so the words need not be picked out (a graph that
    picks them out fails on a batch where none has characters)."""
    batch, time, chars = char_ids.shape
    flat = char_ids.reshape(batch * time, chars)
    lengths = (flat != 0).sum(dim=1)  # (words,)
    _, final = self.encoder(self.embedding(flat), lengths)  # (2, words, hidden)
    return self.encoder.top_states(final).view(batch, time, -1)


class _Layer(torch.autograd.Function):
    """One recurrent layer over a right-padded batch: ``run_padded`` in torch; in ONNX
    one RNN node over both directions with ``sequence_lens``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,  # (batch, time, input)
        lengths: torch.Tensor,  # (batch,)
        h0: torch.Tensor,  # (directions, batch, hidden)
        c0: torch.Tensor | None,  # (directions, batch, hidden), LSTM only
        key: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rnn = _LAYERS[key]
        outputs, final = run_padded(rnn, x, lengths.clamp(min=1), h0 if c0 is None else (h0, c0))
        empty = lengths == 0  # (batch,): zero states, as the ONNX node gives them
        outputs = outputs.masked_fill(empty[:, None, None], 0.0)  # (batch, time, features)
        return outputs, final.masked_fill(empty[:, None], 0.0)  # final: (dirs, batch, hidden)

    @staticmethod
    def symbolic(g: Any, x: Any, lengths: Any, h0: Any, c0: Any, key: int) -> tuple[Any, Any]:
        """The ONNX node (graph values in and out)."""
        rnn = _LAYERS[key]
        directions = 2 if rnn.bidirectional else 1
        w, r, b = (g.op("Constant", value_t=t) for t in _onnx_weights(rnn))
        steps = g.op("Transpose", x, perm_i=[1, 0, 2])  # (time, batch, input)
        seq_lens = g.op("Cast", lengths, to_i=6)  # int32
        attrs: dict = {"hidden_size_i": rnn.hidden_size,
                       "direction_s": "bidirectional" if directions == 2 else "forward"}
        if rnn.mode == "GRU":
            attrs["linear_before_reset_i"] = 1  # torch's GRU: r * (W_hn h + b_hn)
        if rnn.mode.startswith("RNN"):
            attrs["activations_s"] = ["Relu" if rnn.mode == "RNN_RELU" else "Tanh"] * directions
        inputs = [steps, w, r, b, seq_lens, h0] + ([c0] if rnn.mode == "LSTM" else [])
        outputs = g.op(_ONNX_OP[rnn.mode], *inputs, outputs=3 if rnn.mode == "LSTM" else 2,
                       **attrs)  # fmt: skip
        y, y_h = outputs[0], outputs[1]  # (time, directions, batch, hidden), (dirs, batch, hidden)
        y = g.op("Transpose", y, perm_i=[2, 0, 1, 3])  # (batch, time, directions, hidden)
        shape = g.op("Constant", value_t=torch.tensor([0, 0, -1]))
        return g.op("Reshape", y, shape), y_h


def _onnx_weights(rnn: nn.RNNBase) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A one-layer RNN's weights in ONNX's layout and gate order: W (directions, gates *
    hidden, input), R (directions, gates * hidden, hidden), B (directions, 2 * gates *
    hidden) (input biases, then recurrent ones)."""
    order = _GATES[rnn.mode]

    def gates(t: torch.Tensor) -> torch.Tensor:  # rows in torch's gate order -> ONNX's
        chunks = t.chunk(len(order), dim=0)
        return torch.cat([chunks[i] for i in order], dim=0)

    ws, rs, bs = [], [], []
    for suffix in ["_l0", "_l0_reverse"][: 2 if rnn.bidirectional else 1]:
        w_ih = getattr(rnn, "weight_ih" + suffix).detach()
        w_hh = getattr(rnn, "weight_hh" + suffix).detach()
        if rnn.bias:
            b_ih = getattr(rnn, "bias_ih" + suffix).detach()
            b_hh = getattr(rnn, "bias_hh" + suffix).detach()
        else:
            b_ih = b_hh = w_ih.new_zeros(w_ih.size(0))
        ws.append(gates(w_ih))
        rs.append(gates(w_hh))
        bs.append(torch.cat([gates(b_ih), gates(b_hh)]))
    return torch.stack(ws), torch.stack(rs), torch.stack(bs)


def weights_as_initializers(model: Any) -> Any:
    """``model`` (an ``onnx.ModelProto``) with the RNN nodes' weights (W, R, B: written
    as ``Constant`` nodes by ``_Layer``) moved into the graph's initialisers, where
    ONNX Runtime's quantizer looks for the weights it quantizes."""
    graph = model.graph
    weights = {name for node in graph.node if node.op_type in ("LSTM", "GRU", "RNN")
               for name in node.input[1:4]}  # fmt: skip
    keep = []
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] in weights:
            tensor = node.attribute[0].t
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    return model
