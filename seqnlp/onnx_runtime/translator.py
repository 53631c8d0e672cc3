"""Translation with ONNX Runtime and NumPy, torch-free: an exported folder's encoder
and decoder-step graphs (``seqnlp.export.onnx_translator``) driven by greedy and beam
searches that mirror ``seqnlp.nn.search`` (same scores, length penalty, end
conditions, length limits and n-best lists), batched over sentences. Records come from
``TranslationRecords``, the code the torch predictor uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seqnlp.data.sorting import pad_rows
from seqnlp.onnx_runtime.base import OnnxPredictor, available_cpus, inference_session
from seqnlp.predict.base import Predictor, Record
from seqnlp.predict.translation_records import Hypothesis, TranslationRecords

#: a step: previous tokens (rows,), state tensors (layers, rows, hidden) each, memory
#: tensors (rows, ...) each -> log-probabilities (rows, vocab) float32 and the new state.
StepFn = Callable[[np.ndarray, list[np.ndarray], list[np.ndarray]],
                  tuple[np.ndarray, list[np.ndarray]]]  # fmt: skip


def greedy_search(
    step: StepFn, state: list[np.ndarray], memory: list[np.ndarray], bos: int, eos: int,
    limits: np.ndarray,
) -> list[Hypothesis]:  # fmt: skip
    """``seqnlp.nn.search.greedy_search``: the most probable token at every step (the
    first on ties), up to ``limits`` (batch,) tokens a sentence, ``eos`` counted. Only
    the sentences still going are run: rows do not see each other, so the outputs
    are those of running all of them."""
    batch = len(limits)
    tokens = np.full(batch, bos, dtype=np.int64)
    finished = np.zeros(batch, dtype=bool)
    log_prob = np.zeros(batch, dtype=np.float64)
    out: list[list[int]] = [[] for _ in range(batch)]
    live = np.arange(batch)  # the sentences that state and memory hold, in their order
    for t in range(int(limits.max()) if batch else 0):
        log_probs, state = step(tokens[live], state, memory)  # (live, vocab)
        chosen = log_probs.argmax(axis=-1)  # (live,)
        best = np.take_along_axis(log_probs, chosen[:, None], axis=1)[:, 0]
        tokens[live] = chosen
        log_prob[live] += best.astype(np.float64)
        for i, token in zip(live.tolist(), chosen.tolist(), strict=True):
            if token != eos:
                out[i].append(token)
        finished[live] = (chosen == eos) | (t + 1 >= limits[live])
        if finished.all():
            break
        keep = ~finished[live]
        if not keep.all():
            live = live[keep]
            state = [s[:, keep] for s in state]
            memory = [m[keep] for m in memory]
    return [Hypothesis(o, float(lp), float(lp)) for o, lp in zip(out, log_prob, strict=True)]


def length_penalty(lengths: np.ndarray, alpha: float) -> np.ndarray:
    """GNMT's ((5 + length) / 6) ** alpha (float64); 1 when alpha is 0."""
    return ((5.0 + lengths.astype(np.float64)) / 6.0) ** alpha


def topk(candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest of each row of ``candidates`` (rows, n), largest first (the
    lower index first on ties): values and indices, (rows, k) each."""
    if candidates.shape[1] > k:
        index = np.argpartition(-candidates, k - 1, axis=1)[:, :k]
    else:
        index = np.broadcast_to(np.arange(candidates.shape[1]), candidates.shape)
    values = np.take_along_axis(candidates, index, axis=1)
    order = np.lexsort((index, -values), axis=-1)
    return np.take_along_axis(values, order, axis=1), np.take_along_axis(index, order, axis=1)


def beam_search(
    step: StepFn, state: list[np.ndarray], memory: list[np.ndarray], bos: int, eos: int,
    limits: np.ndarray, beam_size: int = 5, alpha: float = 0.0, n_best: int = 1,
) -> list[list[Hypothesis]]:  # fmt: skip
    """``seqnlp.nn.search.beam_search``: beams ranked by log-probability while
    searching, finished hypotheses by log-probability / ``length_penalty(length,
    alpha)``; per sentence the ``n_best`` best first.

    A sentence whose beams have all finished stops running: in torch its finished
    beams would go on emitting ``eos`` at no cost, which changes nothing (frozen rows
    keep their place and are recorded as finished, with themselves as parents).
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}), got {n_best}")
    batch, k = len(limits), beam_size
    every = np.arange(batch * k)
    limits_k = np.repeat(limits, k)  # (batch * k,)
    state = [np.repeat(s, k, axis=1) for s in state]
    memory = [np.repeat(m, k, axis=0) for m in memory]
    tokens = np.full(batch * k, bos, dtype=np.int64)
    scores = np.full((batch, k), -np.inf, dtype=np.float64)
    scores[:, 0] = 0.0  # one live beam per sentence to start
    finished = np.zeros(batch * k, dtype=bool)
    lengths = np.zeros(batch * k, dtype=np.int64)
    live = np.arange(batch)  # the sentences that state and memory hold
    history: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for _ in range(int(limits.max()) if batch else 0):
        rows = (live[:, None] * k + np.arange(k)).reshape(-1)  # (live * k,) global rows
        log_probs, state = step(tokens[rows], state, memory)  # (live * k, vocab)
        vocab = log_probs.shape[-1]
        log_probs = log_probs.astype(np.float64)
        # A finished beam continues once, at no cost, so that it keeps its place.
        done_rows = finished[rows]
        log_probs[done_rows] = -np.inf
        log_probs[done_rows, eos] = 0.0
        candidates = (scores[live].reshape(-1, 1) + log_probs).reshape(len(live), k * vocab)
        best, index = topk(candidates, k)  # (live, k)
        local = (index // vocab + np.arange(len(live))[:, None] * k).reshape(-1)
        state = [s[:, local] for s in state]
        parents, tokens = every.copy(), np.full(batch * k, eos, dtype=np.int64)
        parents[rows], tokens[rows] = rows[local], (index % vocab).reshape(-1)
        scores[live] = best
        was_finished = finished[parents]
        lengths = lengths[parents] + (~was_finished)
        finished = was_finished | (tokens == eos) | (lengths >= limits_k)
        history.append((tokens, parents, was_finished))
        if finished.all():
            break
        keep = ~finished.reshape(batch, k)[live].all(axis=1)  # (live,)
        if not keep.all():
            kept = np.repeat(keep, k)
            live = live[keep]
            state = [s[:, kept] for s in state]
            memory = [m[kept] for m in memory]
    return _backtrack(history, scores, lengths, batch, k, eos, alpha, n_best)


def _backtrack(
    history: list[tuple[np.ndarray, np.ndarray, np.ndarray]], scores: np.ndarray,
    lengths: np.ndarray, batch: int, k: int, eos: int, alpha: float, n_best: int,
) -> list[list[Hypothesis]]:  # fmt: skip
    """``seqnlp.nn.search._backtrack``: each final row's tokens, followed back through
    its parents, and its scores."""
    flat = scores.reshape(-1)
    ranked = (flat / length_penalty(lengths, alpha)).tolist()
    steps = [(t.tolist(), p.tolist(), w.tolist()) for t, p, w in history]
    results: list[list[Hypothesis]] = []
    for b in range(batch):
        hyps: list[Hypothesis] = []
        for row in range(b * k, (b + 1) * k):
            if flat[row] == -np.inf:  # fewer live hypotheses than beams
                continue
            out, r = [], row
            for tokens, parents, was_finished in reversed(steps):
                if not was_finished[r] and tokens[r] != eos:
                    out.append(tokens[r])
                r = parents[r]
            hyps.append(Hypothesis(out[::-1], float(flat[row]), ranked[row]))
        hyps.sort(key=lambda h: -h.score)
        results.append(hyps[:n_best])
    return results


class OnnxTranslationPredictor(TranslationRecords, Predictor):
    """Translates raw source sentences with an exported folder's ONNX graphs.

    Records, options and output formats are those of the torch
    ``TranslationPredictor`` (``TranslationRecords``); so are the batches (at most
    ``batch_size`` sentences and ``max_tokens`` padded source pieces). As in
    ``OnnxPredictor``, ``threads`` batches are translated at once, each in a Python
    thread of its own that runs the graphs on one ONNX Runtime thread: on two cores
    this translated Multi30k about twice as fast as one batch at a time on two
    intra-op threads (greedy and beam 5, fp32 and int8), the search's NumPy work of
    one batch overlapping the graphs of the other.

    Args:
        folder: the model folder; ``config``: its ``config.json`` (with ``"onnx"``).
        codec: its ``TranslationCodec``.
        batch_size, beam_size, n_best, length_penalty, max_tokens, max_length_ratio,
            max_length_offset: as ``TranslationPredictor``.
        quantize: ``int8``: run the folder's int8 graphs (exported with ``--quantize
            int8``); None: the float32 ones.
        threads: batches at once (default: the CPUs this process may use).
    """

    def __init__(
        self, folder: Path, config: dict[str, Any], codec: Any, batch_size: int,
        beam_size: int, n_best: int, length_penalty: float, max_tokens: int,
        max_length_ratio: float, max_length_offset: int, quantize: str | None,
        threads: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__(codec, batch_size)
        self.init_translation_options(beam_size, n_best, length_penalty, max_tokens,
                                      max_length_ratio, max_length_offset)  # fmt: skip
        folder = Path(folder)
        info = config.get("onnx") or {}
        if info.get("task") != "translation" or "decoder_step" not in info:
            raise ValueError(f"{folder}: no ONNX translator graphs (export it with --format "
                             f"onnx)")  # fmt: skip
        if quantize not in (None, "int8"):
            raise ValueError(f"quantize must be int8, got {quantize!r}")
        if quantize == "int8" and "int8" not in info:
            raise ValueError(f"{folder}: no int8 graphs (export it with --format onnx "
                             f"--quantize int8)")  # fmt: skip
        graphs = info["int8"] if quantize == "int8" else info
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.quantize = quantize
        self.threads = threads or available_cpus()
        self.state_names: list[str] = list(info["state"])
        self.memory_names: list[str] = list(info["memory"])
        self.encoder = _session(folder / graphs["encoder"])
        self.decoder = _session(folder / graphs["decoder_step"])

    #: up to ``threads`` batches at once, each in its own Python thread (both sessions
    #: run on one ONNX Runtime thread, and several calls at once).
    _records_by_batch = OnnxPredictor._records_by_batch

    def encode(self, src_ids: np.ndarray, src_lengths: np.ndarray) -> tuple[list, list]:
        """The decoder's starting state (``state_names``, (layers, batch, hidden) each)
        and memory (``memory_names``, batch first) of right-padded source ids (batch,
        src) with lengths (batch,)."""
        out = self.encoder.run(None, {"src_ids": src_ids, "src_lengths": src_lengths})
        n = len(self.state_names)
        return out[:n], out[n:]

    def step(
        self, tokens: np.ndarray, state: list[np.ndarray], memory: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One decoder step: tokens (rows,) -> log-probabilities (rows, vocab), new state."""
        feed = {"tokens": tokens, **dict(zip(self.state_names, state, strict=True)),
                **dict(zip(self.memory_names, memory, strict=True))}  # fmt: skip
        out = self.decoder.run(None, feed)
        return out[0], out[1 : 1 + len(self.state_names)]

    def predict_batch(self, items: Sequence[str]) -> list[Record]:
        codec = self.codec
        real = [i for i, t in enumerate(items) if t.strip()]
        if not real:
            return self.records(items, [], [], [])
        src_ids, lengths = pad_rows([codec.encode_source(items[i]) for i in real])
        limits = np.array([self.max_length(n) for n in lengths.tolist()], dtype=np.int64)
        state, memory = self.encode(src_ids, lengths)
        bos, eos = codec.target.bos_id, codec.target.eos_id
        if self.beam_size == 1 and self.n_best == 1:
            found = [[h] for h in greedy_search(self.step, state, memory, bos, eos, limits)]
        else:
            found = beam_search(self.step, state, memory, bos, eos, limits, self.beam_size,
                                self.length_penalty, self.n_best)  # fmt: skip
        return self.records(items, real, found, limits.tolist())


def _session(path: Path) -> Any:
    """A one-thread ONNX Runtime session of the graph ``path``."""
    if not path.is_file():
        raise ValueError(f"{path}: not in the model folder (its config.json names it): "
                         f"export it again with --format onnx")  # fmt: skip
    return inference_session(path, threads=1)
