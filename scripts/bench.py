"""Speed benchmark: training and prediction throughput at a recipe's model size.

For each task (tagging on CoNLL-2002 Spanish, classification on SST-2, translation
on Multi30k de-en, from ``$SEQNLP_DATA``), after a warm-up, it measures:

- training throughput: sentences/s and real tokens/s (source + target, and target
  alone, for translation) over ``--steps`` optimiser steps (forward, backward, Adam
  step) on length-bucketed batches of the recipe;
- padding waste: padded positions / real positions over one epoch of batches;
- prediction throughput: sentences/s of the predictor on the validation split
  (greedy and beam 5 for translation);
- peak RSS of the process;
- the achieved matmul rate: the FLOPs of the recurrent, projection and output
  layers per training step (forward + backward = 3x forward; packed sequences do
  no work on padding) divided by the step time, as a fraction of this machine's
  fp32 rate measured in the same run with a 2048 x 2048 ``torch.mm``.

It prints a table and writes JSON. Numbers, never pass/fail:

    SEQNLP_DATA=../shared/data python scripts/bench.py --threads 2 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from seqnlp.data import ClassificationDataModule, TaggingDataModule, TranslationDataModule
from seqnlp.predict import ClassificationPredictor, TaggingPredictor, TranslationPredictor
from seqnlp.tasks import Classifier, Tagger, Translator

ROOT = Path(__file__).resolve().parents[1]
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def recipe_args(name: str) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Model and data init_args, and the learning rate, of a recipe (sizes as trained)."""
    recipe = yaml.safe_load((ROOT / "recipes" / name).read_text())
    lr = recipe.get("optimizer", {}).get("init_args", {}).get("lr", 1e-3)
    return recipe["model"]["init_args"], recipe["data"]["init_args"], lr


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def rnn_flops(
    tokens: int, inputs: int, hidden: int, cell: str, directions: int, layers: int
) -> float:
    """Forward FLOPs of a stacked recurrent layer over ``tokens`` real steps."""
    total, size = 0.0, inputs
    for _ in range(layers):
        total += directions * tokens * 2 * GATES[cell] * hidden * (size + hidden)
        size = hidden * directions
    return total


def padding_waste(lengths: list[int], batches: list[list[int]]) -> float:
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    real = sum(lengths[i] for b in batches for i in b)
    return (padded - real) / real


def time_training(model, loader, steps: int, warmup: int, lr: float, flops_of, counts_of) -> dict:
    """Time ``steps`` optimiser steps after ``warmup``; ``counts_of(batch)`` gives the token
    counts to report per second (e.g. ``{"tokens": ...}``)."""
    optimiser = torch.optim.Adam((p for p in model.parameters() if p.requires_grad), lr=lr)
    model.train()
    sentences = 0
    totals: dict[str, int] = {}
    flops = 0.0
    batches = iter(loader)
    for step in range(warmup + steps):
        batch = next(batches)
        if step == warmup:
            start = time.perf_counter()
        loss = model.training_loss(batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimiser.step()
        if step >= warmup:
            sentences += len(batch)
            for key, value in counts_of(batch).items():
                totals[key] = totals.get(key, 0) + value
            flops += 3 * flops_of(batch)
    elapsed = time.perf_counter() - start
    out = {"train_sentences_per_s": sentences / elapsed, "train_gflops": flops / elapsed / 1e9,
           "train_step_s": elapsed / steps}  # fmt: skip
    out.update({f"train_{key}_per_s": value / elapsed for key, value in totals.items()})
    return out


def time_prediction(predictor, items: list, batch_size: int) -> float:
    predictor.batch_size = batch_size
    predictor.predict(items[:batch_size])  # warm-up
    start = time.perf_counter()
    predictor.predict(items)
    return len(items) / (time.perf_counter() - start)


def build(recipe: str, data_cls: type, model_cls: type) -> tuple[Any, Any, float]:
    """The recipe's DataModule (set up for fitting), its model, and its learning rate."""
    model_args, data_args, lr = recipe_args(recipe)
    data = data_cls(**data_args)
    data.setup("fit")
    return data, model_cls(data.vocab, **model_args), lr


def real_tokens(batch) -> dict[str, int]:
    return {"tokens": int(batch.lengths.sum())}


def training_stats(
    model, data, lr: float, args: argparse.Namespace, flops_of, counts_of=real_tokens
) -> dict[str, Any]:
    """Training throughput and FLOP rate, padding waste over an epoch, parameter count."""
    loader = data.train_dataloader()
    out = time_training(model, loader, args.steps, args.warmup, lr, flops_of, counts_of)
    sampler = loader.batch_sampler
    out["padding_waste"] = padding_waste(sampler.lengths, list(sampler))
    out["parameters"] = sum(p.numel() for p in model.parameters())
    model.eval()
    return out


def bench_tagging(args: argparse.Namespace) -> dict[str, Any]:
    data, model, lr = build("ner.yaml", TaggingDataModule, Tagger)
    h = model.hparams

    def flops_of(batch) -> float:
        n = int(batch.lengths.sum())
        chars = int((batch.char_ids != 0).sum())
        f = rnn_flops(n, model.encoder.rnn.input_size, h.hidden_size, "lstm", 2, h.num_layers)
        if h.char_encoder == "lstm":
            f += rnn_flops(chars, h.char_dim, h.char_hidden, "lstm", 2, 1)
        return f + n * 2 * model.encoder.output_size * len(data.vocab.tags)

    out = training_stats(model, data, lr, args, flops_of)
    sentences = [r["tokens"] for r in data.raw("validation")]
    for confidence in (False, True):
        predictor = TaggingPredictor(model, confidence=confidence)
        key = f"predict_sentences_per_s{'_with_confidence' if confidence else ''}"
        out[key] = time_prediction(predictor, sentences, args.predict_batch)
    return out


def bench_classification(args: argparse.Namespace) -> dict[str, Any]:
    data, model, lr = build("sentiment.yaml", ClassificationDataModule, Classifier)
    h = model.hparams
    directions = 2 if h.bidirectional else 1

    def flops_of(batch) -> float:
        n = int(batch.lengths.sum())
        f = rnn_flops(n, h.embedding_dim, h.hidden_size, h.cell, directions, h.num_layers)
        return f + len(batch) * 2 * model.encoder.output_size * len(data.vocab.labels)

    out = training_stats(model, data, lr, args, flops_of)
    texts = list(data.raw("validation")["text"])
    out["predict_sentences_per_s"] = time_prediction(
        ClassificationPredictor(model), texts, args.predict_batch
    )
    return out


def bench_translation(args: argparse.Namespace) -> dict[str, Any]:
    data, model, lr = build("translation.yaml", TranslationDataModule, Translator)
    h = model.hparams
    enc, dec, vocab = (
        2 * h.hidden_size,
        h.decoder_hidden_size or h.hidden_size,
        len(data.vocab.target),
    )

    def flops_of(batch) -> float:
        src, tgt = int(batch.src_lengths.sum()), int(batch.tgt_mask.sum())
        f = rnn_flops(src, h.embedding_dim, h.hidden_size, h.cell, 2, h.encoder_layers)
        f += src * 2 * enc * dec  # attention keys, once per source token
        f += rnn_flops(tgt, h.embedding_dim + enc, dec, h.cell, 1, h.decoder_layers)
        pairs = batch.src_mask.size(1) * tgt  # each target step attends to the padded source
        f += tgt * 2 * dec * dec + pairs * 2 * dec + pairs * 2 * enc  # query, scores, context
        f += tgt * 2 * ((dec + enc + h.embedding_dim) * dec + dec * vocab)  # pre-output, output
        return f

    def counts_of(batch) -> dict[str, int]:  # source + target, and target alone
        target = int(batch.tgt_mask.sum())
        return {"tokens": int(batch.src_lengths.sum()) + target, "target_tokens": target}

    out = training_stats(model, data, lr, args, flops_of, counts_of)
    sources = list(data.raw("validation")["source"])
    for beam in (1, 5):
        predictor = TranslationPredictor(model, beam_size=beam)
        out[f"predict_sentences_per_s_beam{beam}"] = time_prediction(
            predictor, sources, args.predict_batch
        )
    out["predict_sentences_per_s"] = out["predict_sentences_per_s_beam1"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="tagging,classification,translation")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--steps", type=int, default=60, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--predict_batch", type=int, default=64)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    peak = matmul_gflops()
    runs = {
        "tagging": bench_tagging, "classification": bench_classification,
        "translation": bench_translation,
    }  # fmt: skip
    results: dict[str, Any] = {}
    for task in args.tasks.split(","):
        results[task] = runs[task](args)
        results[task]["matmul_fraction"] = results[task]["train_gflops"] / peak
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    meta = {
        "commit": commit, "threads": args.threads, "torch": torch.__version__,
        "machine": platform.machine(), "matmul_gflops_fp32": peak,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "steps": args.steps, "predict_batch": args.predict_batch,
    }  # fmt: skip
    print(f"commit {commit}, {args.threads} threads, fp32 torch.mm {peak:.0f} GFLOP/s, "
          f"peak RSS {meta['peak_rss_mb']:.0f} MB")  # fmt: skip
    print("| task | params | train sent/s | train tok/s | padding waste | GFLOP/s (share of mm) "
          "| predict sent/s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for task, r in results.items():
        predict = f"{r['predict_sentences_per_s']:.0f}"
        if "predict_sentences_per_s_with_confidence" in r:
            predict += f" ({r['predict_sentences_per_s_with_confidence']:.0f} with confidences)"
        if "predict_sentences_per_s_beam5" in r:
            predict += f" greedy, {r['predict_sentences_per_s_beam5']:.0f} beam 5"
        if "train_target_tokens_per_s" in r:
            predict += f"; training {r['train_target_tokens_per_s']:.0f} target tok/s"
        cells = [
            task, f"{r['parameters']:,}", f"{r['train_sentences_per_s']:.0f}",
            f"{r['train_tokens_per_s']:.0f}", f"{100 * r['padding_waste']:.1f}%",
            f"{r['train_gflops']:.1f} ({100 * r['matmul_fraction']:.0f}%)", predict,
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
