"""Command line: ``python -m seqnlp {fit,validate,test,predict,evaluate,export,serve,...}``.

Wiring only, no model or data logic: ``trainer`` runs the LightningCLI subcommands
from YAML recipes, ``inference`` predicts and evaluates with a checkpoint alone,
``tools`` averages checkpoints and draws attention maps. A ``ValueError`` anywhere
ends as one line, ``seqnlp: error: ...``, and exit status 2.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

#: each command's module and function, imported when it runs: ``predict --runtime onnx``
#: then never imports torch or Lightning.
COMMANDS = {
    "predict": "inference:run_predict", "evaluate": "inference:run_evaluate",
    "average": "tools:run_average", "attention": "tools:run_attention",
    "export": "tools:run_export", "serve": "serving:run_serve",
    "vectors": "vectors:run_vectors", "generate": "generate:run_generate",
    "gates": "tools:run_gates",
}  # fmt: skip

USAGE = """usage: seqnlp COMMAND ...

commands:
  fit       RECIPE.yaml [...] [--key value ...]   train from a recipe
  validate  RECIPE.yaml [...] --ckpt_path CKPT     score a checkpoint on the validation split
  test      RECIPE.yaml [...] --ckpt_path CKPT     score a checkpoint on the test split
  evaluate  --ckpt_path CKPT --input FILE          score a checkpoint on a labelled file
  predict   --ckpt_path CKPT --input FILE          label or translate raw text with a checkpoint
            (or --model DIR: an exported folder, or hf://ORG/NAME; --runtime onnx)
  export    --ckpt_path CKPT --output DIR          write a model folder (safetensors, card, ONNX)
  average   CKPT CKPT [...] --output CKPT          average the weights of checkpoints of one run
  attention --ckpt_path CKPT --source TEXT --output PNG   draw a translation's attention
  gates     --ckpt_path CKPT --text TEXT --output PNG [--json]   draw a model's gates per token
  serve     MODEL [--host H] [--port P]           serve a model as JSON over HTTP
  vectors   --input TEXT --output FILE.vec        train word vectors on raw text (gensim)
  generate  --ckpt_path LM --prompt TEXT          continue a text with a language model

`seqnlp COMMAND --help` lists a command's options; `seqnlp --version` the version."""


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return
    if args[0] in ("-V", "--version"):
        from seqnlp import __version__

        print(f"seqnlp {__version__}")
        return
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args and args[0] in COMMANDS:
            # SIGTERM (timeout, schedulers) unwinds like Ctrl-C, so that a partial output
            # is removed rather than left beside the file (serve: uvicorn's graceful stop).
            if args[0] != "serve":
                signal.signal(signal.SIGTERM, _terminate)
            _command(args[0])(args[1:])
        else:
            _command("trainer:run_trainer_command")(args)
    except BrokenPipeError:
        # The reader of standard output went away (`seqnlp predict ... | head -1`): stop
        # quietly, as other command-line tools do; Python must not write to it again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141) from None
    except ValueError as err:
        if os.environ.get("SEQNLP_DEBUG"):
            raise
        # jsonargparse wraps errors raised while linking (e.g. data that cannot be read
        # while fitting the vocabularies) in its own ValueError: report the original.
        while isinstance(err.__cause__, ValueError):
            err = err.__cause__
        print(f"seqnlp: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _command(name: str) -> Callable[[list[str]], Any]:
    module, _, function = COMMANDS.get(name, name).partition(":")
    return getattr(importlib.import_module(f"seqnlp.cli.{module}"), function)


def positional_recipes(argv: Sequence[str]) -> list[str]:
    """``fit a.yaml b.yaml --x 1`` -> ``fit --config a.yaml --config b.yaml --x 1``."""
    from seqnlp.cli.trainer import positional_recipes as expand

    return expand(argv)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


__all__ = ["main", "positional_recipes"]
