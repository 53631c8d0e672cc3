"""Language-model speed on this CPU: training, batched scoring and generation in
characters (tokens) per second, and the share of training time in matrix products.

For each hidden size: a ``LanguageModelNetwork`` over a character vocabulary, trained
on random ids in segments of ``--bptt`` steps of ``--batch`` streams with the state
carried (fused Adam, gradient clipping), as ``seqnlp fit`` trains it; scored in eval
mode (``--eval_batch`` streams, as validation and contextual features run it); and
generating one character at a time (greedy, ``LanguageModelPredictor.generate_ids``,
``encoder.step``: one row, constant memory). ``torch.profiler`` over a few training
steps gives each operator's self time: the matmul share is that of ``aten::addmm``,
``aten::mm``, ``aten::bmm``, ``aten::matmul``, ``aten::linear``; the fused recurrent
kernel (oneDNN's LSTM forward and backward, whose time is itself mostly the LSTM's
matrix products, which the profiler cannot split out) is reported apart.

    OMP_NUM_THREADS=2 python scripts/bench_lm.py --threads 2 --hidden 256 512 1024 \\
        --json docs/bench_lm.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch.profiler import ProfilerActivity, profile

from seqnlp.data.lm_codec import LanguageModelCodec
from seqnlp.models.language_model import LanguageModelNetwork, detach_state
from seqnlp.predict.language_model import LanguageModelPredictor

MATMUL = ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear")
RECURRENT = ("aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward", "aten::lstm",
             "aten::gru", "aten::_thnn_fused_lstm_cell")  # fmt: skip


def _codec(vocab: int) -> LanguageModelCodec:
    symbols = [chr(0x20 + i) for i in range(vocab - 2)]
    return LanguageModelCodec.fit(["".join(symbols)], "char")


def bench(args: argparse.Namespace, hidden: int) -> dict:
    torch.manual_seed(0)
    codec = _codec(args.vocab)
    network = LanguageModelNetwork(len(codec), args.embedding, args.cell, hidden, args.layers)
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-3, fused=True)
    ids = torch.randint(0, len(codec), (args.batch, args.bptt + 1))
    state = None

    def train_step() -> None:
        nonlocal state
        scores, new = network(ids[:, :-1], state)  # (batch, bptt, vocab)
        loss = torch.nn.functional.cross_entropy(scores.flatten(0, 1), ids[:, 1:].flatten())
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 0.25)
        optimiser.step()
        state = detach_state(new)

    network.train()
    for _ in range(3):
        train_step()
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step()
    train_s = (time.perf_counter() - start) / args.steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            train_step()
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(self_us.values())
    matmul = sum(v for k, v in self_us.items() if k in MATMUL)
    fused = sum(v for k, v in self_us.items() if k in RECURRENT)
    top = sorted(self_us.items(), key=lambda kv: -kv[1])[:6]

    network.eval()
    scoring = torch.randint(0, len(codec), (args.eval_batch, args.bptt))
    with torch.inference_mode():
        network(scoring)
        start = time.perf_counter()
        for _ in range(args.steps):
            network(scoring)
        score_s = (time.perf_counter() - start) / args.steps
    predictor = LanguageModelPredictor(network, codec)
    predictor.generate_ids("ab", 20, temperature=0)
    start = time.perf_counter()
    generated = predictor.generate_ids("ab", args.generate, temperature=0)
    generate_s = time.perf_counter() - start
    return {
        "hidden": hidden,
        "parameters": sum(p.numel() for p in network.parameters()),
        "train_chars_per_s": round(args.batch * args.bptt / train_s),
        "score_chars_per_s": round(args.eval_batch * args.bptt / score_s),
        "generate_chars_per_s": round(len(generated) / generate_s),
        "matmul_share": round(matmul / total, 3),
        "fused_rnn_share": round(fused / total, 3),
        "top_ops_self_ms": {k: round(v / 3e3, 2) for k, v in top},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--embedding", type=int, default=64)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--cell", default="lstm")
    p.add_argument("--vocab", type=int, default=180, help="characters (es corpus: ~180)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--eval_batch", type=int, default=32)
    p.add_argument("--bptt", type=int, default=250)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--generate", type=int, default=500, help="characters generated")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        "runs": [],
    }
    for hidden in args.hidden:
        run = bench(args, hidden)
        results["runs"].append(run)
        print(json.dumps(run), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1)
            handle.write("\n")


if __name__ == "__main__":
    main()
