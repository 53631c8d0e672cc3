"""Streaming prediction benchmark: memory stays flat on a large input file.

Writes an N-line input file (default 1,000,000 lines) of sentences sampled from the
shipped sample of the checkpoint's task (``seqnlp/samples``: NER sentences,
sentiment texts, German sources), then runs ``seqnlp.predict.predict_file`` on it,
as ``seqnlp predict`` does, while a thread samples the process's resident set size
(``VmRSS`` in ``/proc/self/status``) every ``--interval`` seconds. It prints RSS
after the model is loaded and after 10%, 50% and 100% of the lines (the current
value and the peak so far), and the sentences/s. Flat memory shows as RSS at 100%
close to RSS at 10%. Numbers, never pass/fail:

    python scripts/bench_predict_stream.py --lines 1000000 --threads 2 --json stream.json \\
        --ckpt_path runs/ner/tb/version_0/checkpoints/best-epoch=24.ckpt

A translator predicts about 100 to 200 lines/s greedily on 2 cores: give it fewer
``--lines`` (and ``--beam_size 1``). Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from seqnlp.checkpoints import CKPT_KEY, read_checkpoint
from seqnlp.data.lines import iter_lines
from seqnlp.data.sources import resolve_named
from seqnlp.data.tagging_readers import read_conll
from seqnlp.predict import (
    ClassificationPredictor,
    Predictor,
    TaggingPredictor,
    load,
    predict_file,
)

MILESTONES = (0.1, 0.5, 1.0)


def rss_mb() -> float:
    """The current resident set size of this process, in MB (``VmRSS``)."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


class RSSSampler(threading.Thread):
    """Samples ``rss_mb()`` every ``interval`` seconds; ``peak`` is the largest seen."""

    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = rss_mb()
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.peak = max(self.peak, rss_mb())
            self.samples += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, rss_mb())


def sample_sentences(predictor: Predictor, source_lang: str) -> list[str]:
    """Whitespace-tokenised sentences of the shipped sample of the predictor's task."""
    if isinstance(predictor, TaggingPredictor):
        path = resolve_named("sample_ner", "train")
        return [" ".join(r["tokens"]) for r in read_conll(path)]
    if isinstance(predictor, ClassificationPredictor):
        path = resolve_named("sample_sentiment", "train")
        return [line.split(" ", 1)[1] for _, line in iter_lines(path) if " " in line]
    path = resolve_named("sample_translation", f"train.{source_lang}")
    return [line for _, line in iter_lines(path) if line.strip()]


def write_input(path: Path, sentences: Sequence[str], lines: int, seed: int) -> None:
    """``lines`` sentences drawn at random (with replacement), written as they are drawn."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(lines):
            handle.write(rng.choice(sentences) + "\n")


def instrument(
    predictor: Predictor, total: int, on_milestone: Callable[[float, int], None]
) -> None:
    """Wrap ``predictor.predict`` to call ``on_milestone(fraction, lines)`` when the
    lines predicted so far first reach each of ``MILESTONES``."""
    inner = predictor.predict
    done = [0]
    pending = list(MILESTONES)

    def predict(inputs: Sequence[Any], on_batch: Callable[[int], object] | None = None) -> list:
        def tick(n: int) -> None:
            done[0] += n
            while pending and done[0] >= pending[0] * total:
                on_milestone(pending.pop(0), done[0])
            if on_batch is not None:
                on_batch(n)

        return inner(inputs, on_batch=tick)

    predictor.predict = predict  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--lines", type=int, default=1_000_000, help="input lines to generate")
    parser.add_argument("--input", help="an existing input file instead of a generated one")
    parser.add_argument("--workdir", help="where the input and output go (default: a temp dir)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--chunk_size", type=int, default=10_000, help="predict_file's chunk")
    parser.add_argument("--beam_size", type=int, default=1, help="translation (1: greedy)")
    parser.add_argument("--quantize", choices=["int8"], default=None)
    parser.add_argument("--source_lang", default="de", help="translation: the sample's side")
    parser.add_argument("--interval", type=float, default=0.5, help="RSS sampling period, s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        rss_before_model = rss_mb()
        task = read_checkpoint(args.ckpt_path)[CKPT_KEY]["task"]
        options = {"beam_size": args.beam_size} if task == "translation" else {}
        predictor = load(args.ckpt_path, batch_size=args.batch_size, quantize=args.quantize,
                         **options)  # fmt: skip
        if args.input:
            input_path = Path(args.input)
            lines = sum(1 for _ in iter_lines(input_path))
        else:
            input_path, lines = workdir / "stream_input.txt", args.lines
            start = time.perf_counter()
            write_input(input_path, sample_sentences(predictor, args.source_lang), lines, args.seed)
            print(f"wrote {lines:,} lines to {input_path} in {time.perf_counter() - start:.1f}s")
        sampler = RSSSampler(args.interval)
        rss_loaded = rss_mb()
        print(f"task {predictor.task}, {args.threads} threads, batch {args.batch_size}, "
              f"chunk {args.chunk_size}; RSS {rss_before_model:.0f} MB before the model, "
              f"{rss_loaded:.0f} MB with it loaded")  # fmt: skip
        rows: list[dict[str, float]] = []

        def milestone(fraction: float, done: int) -> None:
            elapsed = time.perf_counter() - start
            row = {"fraction": fraction, "lines": done, "seconds": elapsed,
                   "rss_mb": rss_mb(), "peak_rss_mb": max(sampler.peak, rss_mb()),
                   "sentences_per_s": done / elapsed}  # fmt: skip
            rows.append(row)
            print(f"{100 * fraction:5.0f}%  {done:>10,} lines  {elapsed:8.1f}s  RSS "
                  f"{row['rss_mb']:6.0f} MB (peak so far {row['peak_rss_mb']:.0f} MB)  "
                  f"{row['sentences_per_s']:,.0f} sentences/s", flush=True)  # fmt: skip

        instrument(predictor, lines, milestone)
        sampler.start()
        start = time.perf_counter()
        written = predict_file(predictor, str(input_path), str(workdir / "stream_output.jsonl"),
                               chunk_size=args.chunk_size)  # fmt: skip
        elapsed = time.perf_counter() - start
        sampler.stop()
    assert written == lines, (written, lines)
    result = {
        "checkpoint": args.ckpt_path, "task": predictor.task, "lines": lines,
        "threads": args.threads, "batch_size": args.batch_size, "chunk_size": args.chunk_size,
        "quantize": args.quantize, "seconds": elapsed, "sentences_per_s": lines / elapsed,
        "rss_before_model_mb": rss_before_model, "rss_model_loaded_mb": rss_loaded,
        "peak_rss_sampled_mb": sampler.peak, "rss_samples": sampler.samples,
        "peak_rss_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "milestones": rows,
    }  # fmt: skip
    growth = rows[-1]["rss_mb"] - rows[0]["rss_mb"] if rows else float("nan")
    print(f"{lines:,} lines in {elapsed:.1f}s: {lines / elapsed:,.0f} sentences/s; RSS from 10% "
          f"to 100%: {growth:+.0f} MB; sampled peak {sampler.peak:.0f} MB")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
