"""``generate``: continue a text with a language-model checkpoint, one token at a time.

Wiring only: the options are parsed, the predictor built once (``seqnlp.predict.load``)
and its ``generate`` called; the prompt and the generated text go to standard output.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence


def generate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqnlp generate",
        description="Continue a text with a language model, one token at a time with the "
        "recurrent state carried (constant memory per token).",
    )
    p.add_argument("--ckpt_path", required=True, help="a language-model checkpoint")
    p.add_argument("--prompt", default="", help="the text to continue (default: none, a new "
                   "paragraph); a backward model writes what comes before it")  # fmt: skip
    p.add_argument("--max_length", type=_positive_int, default=200,
                   help="most tokens to generate (characters, words or pieces)")  # fmt: skip
    p.add_argument("--temperature", type=float, default=1.0,
                   help="0: the most probable token each time (greedy); else sampled from "
                   "softmax(scores / T) (default 1)")  # fmt: skip
    p.add_argument("--seed", type=int, default=None, help="the sampling seed (reproducible)")
    p.add_argument("--stop_at_boundary", action="store_true",
                   help="stop at the end of the paragraph")  # fmt: skip
    return p


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run_generate(argv: Sequence[str]) -> None:
    from seqnlp.predict import LanguageModelPredictor, load

    args = generate_parser().parse_args(argv)
    predictor = load(args.ckpt_path)
    if not isinstance(predictor, LanguageModelPredictor):
        raise ValueError(f"{args.ckpt_path}: a {predictor.task} model; generate needs a "
                         f"language model (seqnlp.tasks.LanguageModel)")  # fmt: skip
    start = time.perf_counter()
    ids = predictor.generate_ids(args.prompt, args.max_length, args.temperature, args.seed,
                                 args.stop_at_boundary)  # fmt: skip
    elapsed = time.perf_counter() - start
    print(predictor.join(args.prompt, predictor.codec.decode(ids)))
    unit = predictor.codec.unit
    print(f"generated {len(ids)} {unit}s in {elapsed:.2f}s ({len(ids) / max(elapsed, 1e-9):.0f} "
          f"{unit}s/s)", file=sys.stderr)  # fmt: skip
