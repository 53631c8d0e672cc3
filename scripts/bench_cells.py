"""Time every recurrent cell of ``RNNEncoder`` against ``nn.LSTM`` of the same size.

For each cell: a forward pass in inference (no autograd) and a training step (forward
and backward) over a batch of the sentiment recipe's shape, median of ``--repeats``
runs after warm-up; and, for reference, the custom peephole loop run under
TorchScript and ``torch.compile`` (the ways the issue suggested; neither is used).

    python scripts/bench_cells.py --threads 2 --json docs/bench-cells.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from seqnlp.nn.cells import CELLS, CustomCell
from seqnlp.nn.encoder import RNNEncoder


def timed(run: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of ``run`` after two warm-up calls."""
    for _ in range(2):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def interleaved(
    run: Callable[[], object], reference: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median milliseconds of ``run`` and of ``reference``, timed in turns after warm-up."""
    for _ in range(2):
        run()
        reference()
    ours, theirs = [], []
    for _ in range(repeats):
        for fn, times in ((run, ours), (reference, theirs)):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(ours), statistics.median(theirs)


def compiled_variants(args: argparse.Namespace, x: torch.Tensor) -> dict[str, float]:
    """The peephole cell's loop as written, under TorchScript and torch.compile."""
    cell = CustomCell("peephole_lstm", args.input, args.hidden).eval()
    state = cell.initial(args.batch, x)

    def loop(xw: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w: torch.Tensor,
             p: torch.Tensor) -> torch.Tensor:  # fmt: skip
        n = h.size(1)
        outs = []
        for t in range(xw.size(1)):
            g = torch.addmm(xw[:, t], h, w)
            i = torch.sigmoid(torch.addcmul(g[:, :n], p[0], c))
            f = torch.sigmoid(torch.addcmul(g[:, n : 2 * n], p[1], c))
            c = torch.addcmul(f * c, i, torch.tanh(g[:, 2 * n : 3 * n]))
            o = torch.sigmoid(torch.addcmul(g[:, 3 * n :], p[2], c))
            h = o * torch.tanh(c)
            outs.append(h)
        return torch.stack(outs, 1)

    results = {}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(loop)
        compiled = torch.compile(loop, dynamic=False)
        xw = cell.input_products(x)
        w_t = cell.weight_hh.t()
        for name, fn in (("python", loop), ("torchscript", scripted), ("compile", compiled)):
            start = time.perf_counter()
            fn(xw, *state, w_t, cell.peephole)
            first = time.perf_counter() - start
            results[f"peephole_{name}_ms"] = timed(
                lambda fn=fn: fn(xw, *state, w_t, cell.peephole), args.repeats
            )
            results[f"peephole_{name}_first_call_s"] = first
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--time", type=int, default=30, help="steps per sequence")
    parser.add_argument("--input", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--no_compiled", action="store_true", help="skip TorchScript/compile")
    parser.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS),
                        help="time only these cells (default: all)")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.time, args.input)
    lengths = torch.full((args.batch,), args.time)
    reference = nn.LSTM(args.input, args.hidden, batch_first=True,
                        bidirectional=args.bidirectional)  # fmt: skip
    x_grad = x.clone().requires_grad_()

    def infer_ref() -> None:
        with torch.no_grad():
            reference(x)

    def train_ref() -> None:
        reference(x_grad)[0].sum().backward()

    rows = []
    for cell in args.cells:
        encoder = RNNEncoder(args.input, args.hidden, 1, cell, args.bidirectional)

        def infer(encoder: RNNEncoder = encoder) -> None:
            with torch.no_grad():
                encoder.eval()(x, lengths)

        def train(encoder: RNNEncoder = encoder) -> None:
            encoder.train()(x_grad, lengths)[0].sum().backward()

        # nn.LSTM and the cell in turns, so that a busy machine slows both alike
        row: dict = {"cell": cell}
        for kind, run, ref_run in (("infer", infer, infer_ref), ("train", train, train_ref)):
            ours, ref = interleaved(run, ref_run, args.repeats)
            row[f"{kind}_ms"], row[f"lstm_{kind}_ms"] = ours, ref
            row[f"{kind}_vs_lstm"] = ours / ref
        rows.append(row)
        print(f"{cell:15s} infer {row['infer_ms']:7.2f} ms ({row['infer_vs_lstm']:.2f}x nn.LSTM)"
              f"  train {row['train_ms']:7.2f} ms ({row['train_vs_lstm']:.2f}x)", flush=True)
    ref = {"infer_ms": statistics.median(r["lstm_infer_ms"] for r in rows),
           "train_ms": statistics.median(r["lstm_train_ms"] for r in rows)}  # fmt: skip
    print(f"{'nn.LSTM':15s} infer {ref['infer_ms']:7.2f} ms  train {ref['train_ms']:7.2f} ms")
    compiled = {} if args.no_compiled else compiled_variants(args, x)
    for name, value in compiled.items():
        print(f"{name}: {value:.2f}")
    if args.json:
        meta = {
            "threads": args.threads, "batch": args.batch, "time": args.time,
            "input": args.input, "hidden": args.hidden, "bidirectional": args.bidirectional,
            "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        }  # fmt: skip
        out = {"meta": meta, "nn.LSTM": ref, "cells": rows, "compiled": compiled}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
