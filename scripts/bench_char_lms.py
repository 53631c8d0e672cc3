"""Tagger prediction speed with and without character language models as features.

The tagger of recipes/ner.yaml on CoNLL-2002 Spanish (``$SEQNLP_DATA``), built as the
recipe builds it, predicts the validation split (token lists) without LM features,
then with the LM checkpoints given (``--char_lms``, forward and backward: contextual
string embeddings); the median sentences/s of ``--predict_repeats`` passes each,
interleaved. Untrained tagger weights: speed does not depend on them.

    SEQNLP_DATA=../shared/data python scripts/bench_char_lms.py --threads 2 \
        --char_lms fwd.ckpt bwd.ckpt --json docs/bench-char-lms.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

import torch
from bench import predictor, recipe_args, timed_predict

from seqnlp.data import TaggingDataModule
from seqnlp.tasks import Tagger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--char_lms", nargs="+", required=True, help="LM checkpoints")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--predict_batch", type=int, default=64)
    parser.add_argument("--parallel_batches", type=int, default=1)
    parser.add_argument("--predict_repeats", type=int, default=3)
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_args, data_args, _ = recipe_args("ner.yaml")
    data = TaggingDataModule(**data_args)
    data.setup("fit")
    sentences = [r["tokens"] for r in data.raw("validation")]
    models = {
        "without": Tagger(data.codec, **model_args).eval(),
        "with": Tagger(data.codec, **model_args, char_lms=args.char_lms).eval(),
    }
    runs: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.predict_repeats):
        for name, model in models.items():  # in turns: load on the machine hits both
            runs[name].append(timed_predict(predictor(model, args, confidence=False),
                                            sentences)[0])  # fmt: skip
    out = {
        name: {"sentences_per_s": statistics.median(r), "runs": r,
               "parameters": sum(p.numel() for p in models[name].parameters())}
        for name, r in runs.items()
    }  # fmt: skip
    out["meta"] = {"threads": args.threads, "sentences": len(sentences),
                   "char_lms": args.char_lms, "torch": torch.__version__,
                   "machine": platform.processor() or platform.machine()}  # fmt: skip
    for name in models:
        print(f"{name} LM features: {out[name]['sentences_per_s']:,.0f} sentences/s "
              f"({out[name]['parameters']:,} parameters)")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
