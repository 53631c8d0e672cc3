"""The ONNX Runtime predictor base: a model folder's graph in an ``InferenceSession``,
batches padded in NumPy as the torch collate functions pad them. No torch."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from seqnlp.data.codecs import distinct_tokens
from seqnlp.data.sorting import pad_rows
from seqnlp.predict.base import Predictor, Record

INSTALL = "pip install 'seqnlp[onnx]'"


def import_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a one-line ValueError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise ValueError(f"the onnx runtime needs onnxruntime: {INSTALL}") from None
    return onnxruntime


def inference_session(graph: str | Path, threads: int | None = 1) -> Any:
    """An ``onnxruntime.InferenceSession`` of ``graph`` on the CPU, with every graph
    optimisation, operators run one at a time on ``threads`` intra-op threads (1: in
    the calling thread, and several calls can run in the session at once; None: ONNX
    Runtime's default, one per physical core)."""
    ort = import_onnxruntime()
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no warnings about unused initialisers
    try:
        return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{graph}: ONNX Runtime cannot load the graph ({reason})") from None


class OnnxPredictor(Predictor):
    """A predictor that runs an ONNX graph with ONNX Runtime on the CPU.

    ``threads`` batches are predicted at once, each in a Python thread of its own that
    runs the graph on one ONNX Runtime thread (ONNX Runtime releases the GIL while a
    graph runs; one thread's NumPy and record building overlap another's graph). On
    two cores this predicted the CoNLL-2002 BiLSTM-CRF tagger about 1.5x faster than
    one batch at a time on two intra-op threads, whose per-operator hand-offs cost
    more than they share out for a recurrent network's small products, and the SST-2
    LSTM classifier (256 units) about as fast (scripts/onnx_check.py).

    Args:
        graph: the ``.onnx`` file.
        codec, batch_size: as ``Predictor``.
        threads: batches at once (default: the CPUs this process may use).
    """

    def __init__(
        self, graph: str | Path, codec: Any, batch_size: int = 64, threads: int | None = None
    ) -> None:
        super().__init__(codec, batch_size)
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.graph = Path(graph)
        self.threads = threads or available_cpus()
        self.session = inference_session(graph)
        #: the graph's inputs (an input the network does not use is not in the graph).
        self.input_names = {i.name for i in self.session.get_inputs()}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's outputs for ``feeds`` (inputs the graph lacks are left out)."""
        return self.session.run(None, {k: v for k, v in feeds.items() if k in self.input_names})

    def _records_by_batch(
        self, inputs: Sequence[Any], batches: list[list[int]]
    ) -> Iterator[list[Record]]:
        """Each batch's records, in order; up to ``threads`` batches at once."""

        def run(idx: list[int]) -> list[Record]:
            return self.predict_batch([inputs[i] for i in idx])

        workers = min(self.threads, len(batches))
        if workers <= 1:
            yield from map(run, batches)
            return
        with ThreadPoolExecutor(workers) as pool:
            yield from pool.map(run, batches)


def available_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def collate_distinct(
    sentences: Sequence[Sequence[str]], encode: Callable[[str], tuple[int, list[int]]]
) -> dict[str, np.ndarray]:
    """``seqnlp.data.tagging.collate_distinct_tokens`` in NumPy: ``word_ids`` (batch,
    time), ``char_ids`` (words, chars) with each distinct token once (row 0 the
    padding's empty word; at least one column, for tokens without characters),
    ``lengths`` (batch,) and ``char_rows`` (batch, time)."""
    word_ids, chars, char_rows, _ = distinct_tokens(sentences, encode)
    words, lengths = pad_rows(word_ids)
    return {"word_ids": words, "char_ids": pad_rows(chars, min_width=1)[0], "lengths": lengths,
            "char_rows": pad_rows(char_rows)[0]}  # fmt: skip
