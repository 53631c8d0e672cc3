"""Fold a classifier graph's embedding into its first LSTM layer, for ONNX Runtime.

The first layer's input gates are ``W x_t + b`` with ``x_t`` an embedding row, so a
table of ``E W^T + b`` (vocabulary, 4 hidden) gives each token's input gates by one
lookup, and the ``(batch x time, embedding) x (embedding, 4 hidden)`` product that is
about 45% of the layer's time in ONNX Runtime's LSTM kernel goes away. ONNX's
``LSTM`` node has no input for precomputed gates, so the folded layer is an ONNX
``Loop`` over time: per step one ``(batch, hidden) x (hidden, 4 hidden)`` product and
the gates' element-wise operations, each row's state held once its length is past.
Its outputs are the ``LSTM`` node's (``Y`` zero past each row's length, ``Y_h``,
``Y_c``), so the rest of the graph is unchanged.

The price is size: the table holds 4 hidden floats per word instead of the
embedding's width (a 300-wide embedding and 256 hidden: 3.4x the embedding's bytes).
Folded only where the graph is ``Gather(embedding, token_ids)`` -> ``Transpose`` ->
a forward ``LSTM`` with torch's defaults (no peepholes, clip or other activations);
anything else is left as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: the largest folded table written (bytes); a larger vocabulary keeps the LSTM node
#: (400,000 GloVe words and 256 hidden units would make a table of 1.6 GB).
MAX_TABLE_BYTES = 256 * 2**20


def fold_first_lstm(model: Any) -> bool:
    """Rewrite ``model`` (an ``onnx.ModelProto`` of the classifier graph) in place:
    the forward LSTM fed by ``Gather(embedding, token_ids)`` becomes a ``Loop`` over a
    folded table of input gates. Returns whether it found one to fold (and its table
    is at most ``MAX_TABLE_BYTES``)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        if node.op_type != "LSTM" or not _plain(node):
            continue
        transpose = producers.get(node.input[0])
        if transpose is None or transpose.op_type != "Transpose":
            continue
        if list(_attr(transpose, "perm", [])) != [1, 0, 2]:
            continue
        gather = producers.get(transpose.input[0])
        if gather is None or gather.op_type != "Gather" or gather.input[0] not in inits:
            continue
        if not all(name in inits for name in node.input[1:4] if name):
            continue
        readers = [n for n in graph.node if gather.output[0] in n.input]
        if all(n is transpose or (n.op_type == "Shape" and not n.attribute) for n in readers):
            break  # the embedded batch is read for its shape only, elsewhere
    else:
        return False
    hidden = int(_attr(node, "hidden_size"))
    vocabulary = int(inits[gather.input[0]].dims[0])
    if vocabulary * 4 * hidden * 4 > MAX_TABLE_BYTES:
        return False
    table = _folded_table(
        numpy_helper.to_array(inits[gather.input[0]]),
        numpy_helper.to_array(inits[node.input[1]])[0],  # (4 hidden, embedding)
        numpy_helper.to_array(inits[node.input[3]])[0] if len(node.input) > 3 and node.input[3]
        else np.zeros(8 * hidden, np.float32),
    )  # fmt: skip
    recurrent = numpy_helper.to_array(inits[node.input[2]])[0].T.copy()  # (hidden, 4 hidden)
    prefix = (node.name or node.output[0]).replace("/", "_").strip("_") + "_folded"
    names = _Names(prefix)
    new_inits = [
        numpy_helper.from_array(table, names("table")),
        numpy_helper.from_array(recurrent, names("recurrent")),
        numpy_helper.from_array(np.array([hidden] * 4, np.int64), names("split")),
        numpy_helper.from_array(np.array([0], np.int64), names("axis0")),
        numpy_helper.from_array(np.array([1], np.int64), names("axis1")),
        numpy_helper.from_array(np.array([hidden], np.int64), names("hidden")),
        numpy_helper.from_array(np.array(0, np.int64), names("zero")),
        numpy_helper.from_array(np.array(1, np.int64), names("one")),
    ]
    gates, lengths, steps = names("gates"), names("lengths"), names("steps")
    nodes = [
        helper.make_node("Gather", [names("table"), gather.input[1]], [names("rows")]),
        # (time, batch, 4 hidden)
        helper.make_node("Transpose", [names("rows")], [gates], perm=[1, 0, 2]),
        helper.make_node("Shape", [gates], [names("shape")]),
        helper.make_node("Gather", [names("shape"), names("zero")], [steps], axis=0),
        helper.make_node("Gather", [names("shape"), names("one")], [names("batch")], axis=0),
        helper.make_node("Unsqueeze", [names("batch"), names("axis0")], [names("batch1")]),
    ]  # fmt: skip
    seq_lens = node.input[4] if len(node.input) > 4 and node.input[4] else None
    if seq_lens:
        nodes.append(helper.make_node("Cast", [seq_lens], [names("lengths64")], to=7))
    else:  # every row runs the whole time
        nodes.append(helper.make_node("Expand", [steps, names("batch1")], [names("lengths64")]))
    nodes += [
        helper.make_node("Unsqueeze", [names("lengths64"), names("axis1")], [lengths]),
        helper.make_node("Concat", [names("batch1"), names("hidden")], [names("state_shape")],
                         axis=0),
        helper.make_node("ConstantOfShape", [names("state_shape")], [names("zeros")],
                         value=helper.make_tensor("zero", 1, [1], [0.0])),
        helper.make_node("Constant", [], [names("true")],
                         value=helper.make_tensor("true", 9, [], [True])),
    ]  # fmt: skip
    initial = []
    for k, which in ((5, "h0"), (6, "c0")):
        if len(node.input) > k and node.input[k]:  # (1, batch, hidden)
            nodes.append(helper.make_node("Squeeze", [node.input[k], names("axis0")],
                                          [names(which)]))  # fmt: skip
            initial.append(names(which))
        else:
            initial.append(names("zeros"))
    outputs = list(node.output) + [""] * (3 - len(node.output))
    last_h, last_c, every = names("h_last"), names("c_last"), names("every")
    nodes.append(helper.make_node(
        "Loop", [steps, names("true"), *initial], [last_h, last_c, every],
        body=_body(names, gates, lengths, hidden),
    ))  # fmt: skip
    for output, source, axis in ((0, every, "axis1"), (1, last_h, "axis0"), (2, last_c, "axis0")):
        if outputs[output]:
            nodes.append(helper.make_node("Unsqueeze", [source, names(axis)], [outputs[output]]))
    width = int(inits[gather.input[0]].dims[1])
    new_inits.append(numpy_helper.from_array(np.array([width], np.int64), names("width")))
    for k, reader in enumerate(r for r in readers if r is not transpose):
        # Shape(embedded (batch, time, width)) = Shape(token_ids) + [width]
        ids_shape = names(f"ids_shape{k}")
        graph.node.insert(list(graph.node).index(reader),
                          helper.make_node("Shape", [gather.input[1]], [ids_shape]))
        reader.input[0] = ids_shape
        reader.op_type = "Concat"
        reader.input.append(names("width"))
        del reader.attribute[:]
        reader.attribute.append(helper.make_attribute("axis", 0))
    where = list(graph.node).index(node)
    graph.node.remove(node)
    for offset, new in enumerate(nodes):
        graph.node.insert(where + offset, new)
    graph.initializer.extend(new_inits)
    _drop_unused(graph)
    return True


def _folded_table(embedding: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(vocabulary, 4 hidden) float32: ``embedding @ weight.T`` plus both biases (ONNX's
    ``B`` is the input and the recurrent bias, (8 hidden,)), in float64 then rounded."""
    four = weight.shape[0]
    folded = embedding.astype(np.float64) @ weight.T.astype(np.float64)
    folded += bias[:four].astype(np.float64) + bias[four:].astype(np.float64)
    return folded.astype(np.float32)


def _body(names: _Names, gates: str, lengths: str, hidden: int) -> Any:
    """The loop's body: step ``i`` of the LSTM from the folded input gates ``gates``
    (time, batch, 4 hidden) in ONNX's gate order (input, output, forget, cell), the
    state kept for rows whose length (``lengths``, (batch, 1)) is past."""
    from onnx import TensorProto, helper

    def value(name: str, kind: int, shape: list) -> Any:
        return helper.make_tensor_value_info(name, kind, shape)

    h, c = names("h"), names("c")
    step = [
        helper.make_node("Identity", [names("cond")], [names("cond_out")]),
        helper.make_node("Gather", [gates, names("i")], [names("x")], axis=0),  # (batch, 4h)
        helper.make_node("MatMul", [h, names("recurrent")], [names("hr")]),
        helper.make_node("Add", [names("x"), names("hr")], [names("sum")]),
        helper.make_node("Split", [names("sum"), names("split")],
                         [names("gi"), names("go"), names("gf"), names("gc")], axis=1),
        helper.make_node("Sigmoid", [names("gi")], [names("si")]),
        helper.make_node("Sigmoid", [names("go")], [names("so")]),
        helper.make_node("Sigmoid", [names("gf")], [names("sf")]),
        helper.make_node("Tanh", [names("gc")], [names("tc")]),
        helper.make_node("Mul", [names("sf"), c], [names("fc")]),
        helper.make_node("Mul", [names("si"), names("tc")], [names("ic")]),
        helper.make_node("Add", [names("fc"), names("ic")], [names("c_new")]),
        helper.make_node("Tanh", [names("c_new")], [names("tanh_c")]),
        helper.make_node("Mul", [names("so"), names("tanh_c")], [names("h_new")]),
        helper.make_node("Less", [names("i"), lengths], [names("alive")]),  # (batch, 1)
        helper.make_node("Where", [names("alive"), names("h_new"), h], [names("h_out")]),
        helper.make_node("Where", [names("alive"), names("c_new"), c], [names("c_out")]),
        helper.make_node("Where", [names("alive"), names("h_new"), names("nothing")],
                         [names("y")]),  # zero past the row's length, as the LSTM node
    ]  # fmt: skip
    return helper.make_graph(
        step, names("body"),
        [value(names("i"), TensorProto.INT64, []), value(names("cond"), TensorProto.BOOL, []),
         value(h, TensorProto.FLOAT, ["batch", hidden]),
         value(c, TensorProto.FLOAT, ["batch", hidden])],
        [value(names("cond_out"), TensorProto.BOOL, []),
         value(names("h_out"), TensorProto.FLOAT, ["batch", hidden]),
         value(names("c_out"), TensorProto.FLOAT, ["batch", hidden]),
         value(names("y"), TensorProto.FLOAT, ["batch", hidden])],
        [helper.make_tensor(names("nothing"), TensorProto.FLOAT, [], [0.0])],
    )  # fmt: skip


class _Names:
    """Names of the folded layer's tensors, prefixed so that none clashes."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, name: str) -> str:
        return f"{self.prefix}_{name}"


def _plain(node: Any) -> bool:
    """A forward LSTM node with ONNX's defaults for everything torch does not set."""
    direction = _attr(node, "direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction != "forward" or _attr(node, "layout", 0) != 0:
        return False
    if _attr(node, "clip", None) is not None or _attr(node, "input_forget", 0):
        return False
    activations = [a.decode() if isinstance(a, bytes) else a
                   for a in _attr(node, "activations", [])]  # fmt: skip
    if activations and activations != ["Sigmoid", "Tanh", "Tanh"]:
        return False
    return not (len(node.input) > 7 and node.input[7])  # no peepholes


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _drop_unused(graph: Any) -> None:
    """Remove nodes whose outputs nothing reads (the old embedding lookup) and
    initializers nothing reads (the embedding and the LSTM's weights), repeatedly."""
    outputs = {o.name for o in graph.output}
    while True:
        read = outputs | _subgraph_inputs(graph)
        dead = [n for n in graph.node if n.output and not any(o in read for o in n.output)]
        for node in dead:
            graph.node.remove(node)
        if not dead:
            break
    for init in [t for t in graph.initializer if t.name not in read]:
        graph.initializer.remove(init)


def _subgraph_inputs(subgraph: Any) -> set[str]:
    """Every name a graph's nodes read, in its subgraphs too (outer names among them)."""
    read: set[str] = set()
    for node in subgraph.node:
        read.update(node.input)
        for attribute in node.attribute:
            if attribute.HasField("g"):
                read.update(_subgraph_inputs(attribute.g))
    return read
