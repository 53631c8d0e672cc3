"""Speed benchmark: training and prediction throughput at a recipe's model size.

For each task (tagging on CoNLL-2002 Spanish, classification on SST-2, translation
on Multi30k de-en, from ``$SEQNLP_DATA``), after a warm-up, it measures:

- training throughput: sentences/s and real tokens/s (source + target, and target
  alone, for translation) over ``--steps`` optimiser steps (forward, backward, Adam
  step) on length-bucketed batches of the recipe;
- padding waste: padded positions / real positions over one epoch of batches;
- prediction throughput: sentences/s of the predictor on the validation split
  (greedy and beam 5 for translation), the median of ``--predict_repeats`` passes;
- peak RSS of the process;
- the achieved matmul rate: the FLOPs of the recurrent, projection and output
  layers per training step (forward + backward = 3x forward; packed sequences do
  no work on padding) divided by the step time, as a fraction of this machine's
  fp32 rate measured in the same run with a 2048 x 2048 ``torch.mm``;
- with ``--quantize``: fp32 against int8 dynamic quantization (``seqnlp.quantize``)
  on the first ``--quantize_examples`` validation examples: prediction sentences/s
  of both, their speed-up, and the task's quality metric of both and its change
  (tagging entity F1, classification accuracy, translation BLEU and chrF, greedy
  and beam 5). The model compared is the freshly built one after its ``--steps``
  training steps (its metric then means little), or a trained checkpoint given as
  ``--checkpoint TASK=PATH``.

It prints a table and writes JSON. Numbers, never pass/fail:

    SEQNLP_DATA=../shared/data python scripts/bench.py --threads 2 --json bench.json
    SEQNLP_DATA=../shared/data python scripts/bench.py --threads 2 --quantize \
        --checkpoint tagging=runs/ner/tb/version_0/checkpoints/best-epoch=24.ckpt
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml

from seqnlp.checkpoints import load_system
from seqnlp.data import ClassificationDataModule, TaggingDataModule, TranslationDataModule
from seqnlp.metrics import entity_scores, translation_scores
from seqnlp.predict import PREDICTORS
from seqnlp.quantize import quantize
from seqnlp.tasks import Classifier, Tagger, Translator
from seqnlp.tasks.base import System

ROOT = Path(__file__).resolve().parents[1]
GATES = {"rnn": 1, "lstm": 4, "gru": 3}

#: ``--size peer``: the model, data and optimiser of the peer each task is compared
#: with in issue 6 (flair 0.15.1 for tagging and classification, JoeyNMT 2.3.0 for
#: translation), over the recipe's own settings: (model, data, optimiser, lr).
# fmt: off
PEER: dict[str, tuple[dict[str, Any], dict[str, Any], str, float]] = {
    # flair SequenceTagger: from-scratch word embeddings, character embeddings (a
    # BiLSTM of 25 over 25-dim characters), BiLSTM 256, CRF; SGD lr 0.1, batch 32.
    "tagging": (
        {"word_dim": 100, "char_encoder": "lstm", "char_dim": 25, "char_hidden": 25,
         "hidden_size": 256, "num_layers": 1, "head": "crf"},
        {"batch_size": 32, "max_vocab_size": 9000}, "sgd", 0.1,
    ),
    # flair TextClassifier: from-scratch word embeddings 300, one GRU 256 (the final
    # state), SGD lr 0.1, batch 32; 1.96 M parameters (a vocabulary of 5,000 words).
    "classification": (
        {"embedding_dim": 300, "cell": "gru", "hidden_size": 256, "num_layers": 1,
         "bidirectional": False, "pooling": "last"},
        {"batch_size": 32, "max_vocab_size": 5000}, "sgd", 0.1,
    ),
    # JoeyNMT's Multi30k RNN: the translation recipe's sizes already (joint
    # SentencePiece 8k, embeddings 256, bi-GRU 512, GRU decoder 512, batch 64, Adam).
    "translation": ({}, {}, "adam", 1e-3),
}
# fmt: on


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


def time_training(
    model, loader, steps: int, warmup: int, lr: float, flops_of, counts_of, optimiser: str = "adam"
) -> dict:
    """Time ``steps`` optimiser steps after ``warmup``; ``counts_of(batch)`` gives the token
    counts to report per second (e.g. ``{"tokens": ...}``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    # fused: as the recipes (SGD for the peers, as they use it)
    opt = (torch.optim.SGD(params, lr=lr) if optimiser == "sgd"
           else torch.optim.Adam(params, lr=lr, fused=True))  # fmt: skip
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
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
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


def predictor(model: System, args: argparse.Namespace, **options: Any) -> Any:
    """The model's predictor as ``seqnlp.load`` builds it (``--predict_batch`` inputs a
    batch, ``--parallel_batches`` batches at once)."""
    options = {**model.predictor_options(), **options}
    return PREDICTORS[model.task](model.network, model.codec, batch_size=args.predict_batch,
                                  parallel_batches=args.parallel_batches, **options)  # fmt: skip


def timed_predict(predictor, items: list) -> tuple[float, list[dict]]:
    """Sentences/s of the predictor over ``items`` after a one-batch warm-up, and its records."""
    predictor.predict(items[: predictor.batch_size])  # warm-up
    start = time.perf_counter()
    records = predictor.predict(items)
    return len(items) / (time.perf_counter() - start), records


def time_prediction(
    out: dict[str, Any], key: str, make_predictor: Callable[[], Any], items: list,
    args: argparse.Namespace,
) -> None:  # fmt: skip
    """``out[key]``: the median sentences/s of ``--predict_repeats`` timed passes over
    ``items``, each by a fresh predictor (no cache carried over) after a one-batch
    warm-up; ``out[key + "_runs"]``: every pass."""
    runs = sorted(timed_predict(make_predictor(), items)[0]
                  for _ in range(args.predict_repeats))  # fmt: skip
    out[key] = runs[len(runs) // 2]
    out[key + "_runs"] = runs


def compare_int8(
    task: str,
    model: System,
    make_predictors: Callable[[System], dict[str, Any]],
    items: list,
    score: Callable[[list[dict]], dict[str, float]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """fp32 against int8 dynamic quantization on the same model and examples.

    ``make_predictors(model)`` gives ``{suffix: predictor}`` (e.g. one per beam size);
    ``score(records)`` gives the quality metrics of one run's records. Keys:
    ``{fp32,int8}_predict_sentences_per_s{suffix}``, ``{fp32,int8}_{metric}{suffix}``,
    ``speedup{suffix}`` (int8 / fp32 sentences/s), ``delta_{metric}{suffix}`` (int8 -
    fp32). Sentences/s is the best of ``--quantize_repeats`` runs. With ``--checkpoint
    TASK=PATH`` the checkpoint replaces ``model``. The model is quantized in place:
    call this last.
    """
    path = args.checkpoints.get(task)
    if path:
        model = load_system(path)
    out: dict[str, Any] = {
        "model": f"checkpoint {path}" if path else f"fresh, {args.steps} training steps",
        "examples": len(items),
    }
    for precision in ("fp32", "int8"):
        if precision == "int8":
            out["quantized_modules"] = quantize(model.network, "int8")
        for suffix in make_predictors(model):
            runs = [
                timed_predict(make_predictors(model)[suffix], items)
                for _ in range(args.quantize_repeats)
            ]  # fresh predictors: no warm caches
            rate, records = max(runs, key=lambda run: run[0])  # the least disturbed run
            out[f"{precision}_predict_sentences_per_s{suffix}"] = rate
            for metric, value in score(records).items():
                out[f"{precision}_{metric}{suffix}"] = value
    rate = "predict_sentences_per_s"
    for key in [k for k in out if k.startswith("fp32_")]:
        name = key.removeprefix("fp32_")
        if name.startswith(rate):
            out["speedup" + name.removeprefix(rate)] = out[f"int8_{name}"] / out[key]
        else:
            out[f"delta_{name}"] = out[f"int8_{name}"] - out[key]
    return out


def build(
    recipe: str, data_cls: type, model_cls: type, args: argparse.Namespace, task: str
) -> tuple[Any, Any, float]:
    """The recipe's DataModule (set up for fitting), its model and its learning rate, at
    the recipe's sizes or (``--size peer``) the peer's; sets ``args.optimiser``."""
    model_args, data_args, lr = recipe_args(recipe)
    args.optimiser = "adam"
    if args.size == "peer":
        model_peer, data_peer, args.optimiser, lr = PEER[task]
        model_args, data_args = {**model_args, **model_peer}, {**data_args, **data_peer}
    data = data_cls(**data_args)
    data.setup("fit")
    return data, model_cls(data.codec, **model_args), lr


def real_tokens(batch) -> dict[str, int]:
    return {"tokens": int(batch.lengths.sum())}


def training_stats(
    model, data, lr: float, args: argparse.Namespace, flops_of, counts_of=real_tokens
) -> dict[str, Any]:
    """Training throughput and FLOP rate, padding waste over an epoch, parameter count."""
    loader = data.train_dataloader()
    out = time_training(model, loader, args.steps, args.warmup, lr, flops_of, counts_of,
                        args.optimiser)  # fmt: skip
    sampler = loader.batch_sampler
    out["padding_waste"] = padding_waste(sampler.lengths, list(sampler))
    out["parameters"] = sum(p.numel() for p in model.parameters())
    model.eval()
    return out


def bench_tagging(args: argparse.Namespace) -> dict[str, Any]:
    data, model, lr = build("ner.yaml", TaggingDataModule, Tagger, args, "tagging")
    h = model.hparams

    def flops_of(batch) -> float:
        n = int(batch.lengths.sum())
        chars = int((batch.char_ids != 0).sum())
        encoder = model.network.encoder
        f = rnn_flops(n, encoder.rnn.input_size, h.hidden_size, "lstm", 2, h.num_layers)
        if h.char_encoder == "lstm":
            f += rnn_flops(chars, h.char_dim, h.char_hidden, "lstm", 2, 1)
        return f + n * 2 * encoder.output_size * len(data.codec.tags)

    out = training_stats(model, data, lr, args, flops_of)
    sentences = [r["tokens"] for r in data.raw("validation")]
    for confidence in (False, True):
        key = f"predict_sentences_per_s{'_with_confidence' if confidence else ''}"
        make = partial(predictor, model, args, confidence=confidence)
        time_prediction(out, key, make, sentences, args)
    if args.quantize:
        gold = data.raw("validation")["tags"][: args.quantize_examples]

        def f1(records: list[dict]) -> dict[str, float]:
            return {"f1": entity_scores(gold, [r["tags"] for r in records])["f1"]}

        out["int8"] = compare_int8(
            "tagging", model, lambda m: {"": predictor(m, args, confidence=False)},
            sentences[: args.quantize_examples], f1, args,
        )  # fmt: skip
    return out


def bench_classification(args: argparse.Namespace) -> dict[str, Any]:
    data, model, lr = build("sentiment.yaml", ClassificationDataModule, Classifier, args,
                              "classification")  # fmt: skip
    h = model.hparams
    directions = 2 if h.bidirectional else 1

    def flops_of(batch) -> float:
        n = int(batch.lengths.sum())
        f = rnn_flops(n, h.embedding_dim, h.hidden_size, h.cell, directions, h.num_layers)
        return f + len(batch) * 2 * model.network.encoder.output_size * len(data.codec.labels)

    out = training_stats(model, data, lr, args, flops_of)
    texts = list(data.raw("validation")["text"])
    time_prediction(out, "predict_sentences_per_s", partial(predictor, model, args), texts, args)
    if args.quantize:
        gold = data.raw("validation")["label"][: args.quantize_examples]

        def accuracy(records: list[dict]) -> dict[str, float]:
            right = sum(r["label"] == g for r, g in zip(records, gold, strict=True))
            return {"accuracy": 100 * right / len(gold)}

        out["int8"] = compare_int8(
            "classification", model, lambda m: {"": predictor(m, args)},
            texts[: args.quantize_examples], accuracy, args,
        )  # fmt: skip
    return out


def bench_translation(args: argparse.Namespace) -> dict[str, Any]:
    data, model, lr = build("translation.yaml", TranslationDataModule, Translator, args,
                              "translation")  # fmt: skip
    h = model.hparams
    enc, dec, vocab = (
        2 * h.hidden_size,
        h.decoder_hidden_size or h.hidden_size,
        len(data.codec.target),
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
        make = partial(predictor, model, args, beam_size=beam)
        time_prediction(out, f"predict_sentences_per_s_beam{beam}", make, sources, args)
    out["predict_sentences_per_s"] = out["predict_sentences_per_s_beam1"]
    if args.quantize:
        references = data.raw("validation")["target"][: args.quantize_examples]

        def bleu(records: list[dict]) -> dict[str, float]:
            scores = translation_scores([r["translation"] for r in records], references)
            return {"bleu": scores["bleu"], "chrf": scores["chrf"]}

        out["int8"] = compare_int8(
            "translation", model,
            lambda m: {f"_beam{b}": predictor(m, args, beam_size=b) for b in (1, 5)},
            sources[: args.quantize_examples], bleu, args,
        )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="tagging,classification,translation")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--steps", type=int, default=60, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--predict_batch", type=int, default=64)
    parser.add_argument(
        "--parallel_batches", type=int, default=1,
        help="prediction: batches at once in threads sharing torch's threads (as predict's "
        "--parallel_batches)",
    )  # fmt: skip
    parser.add_argument(
        "--predict_repeats", type=int, default=3,
        help="timed prediction passes over the validation split; the median is reported",
    )  # fmt: skip
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 CPU autocast")
    parser.add_argument(
        "--size", choices=["recipe", "peer"], default="recipe",
        help="model sizes of the recipes, or of the peer toolkits (flair, JoeyNMT) with "
        "their optimisers, for a like-for-like comparison",
    )  # fmt: skip
    parser.add_argument(
        "--quantize", action="store_true",
        help="also compare int8 dynamic quantization with fp32: speed and quality",
    )  # fmt: skip
    parser.add_argument(
        "--quantize_examples", type=int, default=1000,
        help="validation examples (the first N) for the fp32 / int8 comparison",
    )  # fmt: skip
    parser.add_argument(
        "--quantize_repeats", type=int, default=3,
        help="timed runs of each fp32 / int8 prediction; the fastest is reported",
    )  # fmt: skip
    parser.add_argument(
        "--checkpoint", action="append", default=[], metavar="TASK=PATH",
        help="a trained checkpoint for the fp32 / int8 comparison of TASK (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    args.checkpoints = dict(c.split("=", 1) for c in args.checkpoint)
    unknown = set(args.checkpoints) - {"tagging", "classification", "translation"}
    if unknown:
        parser.error(f"--checkpoint: unknown tasks {sorted(unknown)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    peak = matmul_gflops()
    runs = {
        "tagging": bench_tagging, "classification": bench_classification,
        "translation": bench_translation,
    }  # fmt: skip
    results: dict[str, Any] = {}
    for task in args.tasks.split(","):
        # bf16: matmuls and recurrent layers in bfloat16 under CPU autocast (training
        # steps and prediction), the rest in fp32.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            results[task] = runs[task](args)
        results[task]["matmul_fraction"] = results[task]["train_gflops"] / peak
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    meta = {
        "commit": commit, "threads": args.threads, "torch": torch.__version__,
        "machine": platform.machine(), "matmul_gflops_fp32": peak,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "steps": args.steps, "predict_batch": args.predict_batch, "size": args.size,
        "parallel_batches": args.parallel_batches,
        "precision": "bf16 autocast" if args.bf16 else "fp32",
        "quantize_examples": args.quantize_examples if args.quantize else None,
    }  # fmt: skip
    print(f"commit {commit}, {args.size} sizes, {meta['precision']}, {args.threads} threads, "
          f"fp32 torch.mm "
          f"{peak:.0f} GFLOP/s, "
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
    if args.quantize:
        print_int8_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


def print_int8_table(results: dict[str, Any]) -> None:
    """fp32 / int8 prediction speed and quality, one row per task and search setting."""
    print("\n| task | model | examples | fp32 sent/s | int8 sent/s | speed-up | metric | fp32 "
          "| int8 | change |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---|---:|---:|---:|")
    for task, r in results.items():
        q = r.get("int8")
        if not q:
            continue
        for suffix in sorted(k.removeprefix("speedup") for k in q if k.startswith("speedup")):
            name = task + (f" ({suffix.strip('_')})" if suffix else "")
            for delta in [k for k in q if k.startswith("delta_") and k.endswith(suffix)]:
                key = delta.removeprefix("delta_")
                metric = key.removesuffix(suffix) if suffix else key
                cells = [
                    name, q["model"], str(q["examples"]),
                    f"{q[f'fp32_predict_sentences_per_s{suffix}']:.0f}",
                    f"{q[f'int8_predict_sentences_per_s{suffix}']:.0f}",
                    f"{q[f'speedup{suffix}']:.2f}x", metric, f"{q[f'fp32_{key}']:.2f}",
                    f"{q[f'int8_{key}']:.2f}", f"{q[f'delta_{key}']:+.2f}",
                ]  # fmt: skip
                print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
