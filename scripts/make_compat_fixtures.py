"""Write the checkpoint-compatibility fixtures: small checkpoints of every task as
``seqnlp fit`` writes them, with the outputs ``predict`` and ``evaluate`` give for them.

Run at a release's commit, so that later code can be checked against it:

    python scripts/make_compat_fixtures.py --output tests/fixtures/checkpoints/v0.1.0

Each model trains for a few dozen steps on the sample shipped inside the package
(``recipes/quickstart/*.yaml`` with smaller sizes), through the command line only, so
the script runs unchanged on any version. ``tests/test_compat.py`` loads each
checkpoint with the current code and asks for the same outputs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "seqnlp" / "samples"

#: name -> (recipe, overrides)
MODELS: dict[str, tuple[str, list[str]]] = {
    "tagger_lstm_crf": ("ner", [
        "--model.word_dim", "16", "--model.char_dim", "8", "--model.char_hidden", "8",
        "--model.hidden_size", "16", "--trainer.max_epochs", "2",
    ]),
    "tagger_cnn_softmax": ("ner", [
        "--model.word_dim", "16", "--model.char_encoder", "cnn", "--model.char_dim", "8",
        "--model.char_hidden", "12", "--model.hidden_size", "16", "--model.num_layers", "2",
        "--model.head", "softmax", "--data.tag_scheme", "iob2", "--trainer.max_epochs", "5",
    ]),
    "classifier_lstm_last": ("sentiment", [
        "--model.embedding_dim", "16", "--model.hidden_size", "16", "--trainer.max_epochs", "3",
    ]),
    "classifier_gru_attention": ("sentiment", [
        "--model.embedding_dim", "16", "--model.cell", "gru", "--model.hidden_size", "12",
        "--model.bidirectional", "true", "--model.num_layers", "2", "--model.pooling",
        "attention", "--model.attention_size", "8", "--model.mlp_hidden", "[10]",
        "--model.learn_initial_state", "true", "--trainer.max_epochs", "3",
    ]),
    "classifier_rnn_max": ("sentiment", [
        "--model.embedding_dim", "16", "--model.cell", "rnn", "--model.hidden_size", "12",
        "--model.pooling", "max", "--model.orthogonal_init", "true",
        "--trainer.max_epochs", "3",
    ]),
    "translator_gru": ("translation", [
        "--model.embedding_dim", "24", "--model.hidden_size", "32", "--trainer.max_epochs", "2",
    ]),
    "translator_lstm_tied": ("translation", [
        "--model.embedding_dim", "24", "--model.hidden_size", "24", "--model.cell", "lstm",
        "--model.attention", "general", "--model.tie_embeddings", "true",
        "--model.decoder_layers", "2", "--trainer.max_epochs", "2",
    ]),
}


def tagger_inputs() -> list[str]:
    sentences, tokens = [], []
    for line in (SAMPLES / "ner" / "test.conll").read_text(encoding="utf-8").splitlines():
        if line.strip():
            tokens.append(line.split()[0])
        elif tokens:
            sentences.append(" ".join(tokens))
            tokens = []
    return [*sentences[:40], "", "Madrid", "xyzzy Qwerty plugh"]


def classifier_inputs() -> list[str]:
    lines = (SAMPLES / "sentiment" / "test.txt").read_text(encoding="utf-8").splitlines()
    return [*(line.split(" ", 1)[1] for line in lines[:40]), "", "unseenword"]


def translator_inputs() -> list[str]:
    lines = (SAMPLES / "translation" / "test.de").read_text(encoding="utf-8").splitlines()
    return [*lines[:30], "", "Hund"]


def seqnlp(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "seqnlp", *args], cwd=cwd, check=True)


def predict(ckpt: Path, inputs: list[str], out: Path, *options: str, cwd: Path) -> list[dict]:
    source = cwd / "inputs.txt"
    source.write_text("".join(f"{line}\n" for line in inputs), encoding="utf-8")
    target = cwd / "records.jsonl"
    seqnlp("predict", "--ckpt_path", str(ckpt), "--input", str(source), "--output", str(target),
           "--no_progress", *options, cwd=cwd)  # fmt: skip
    return [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]


def evaluate(ckpt: Path, *args: str, cwd: Path) -> dict:
    out = cwd / "scores.json"
    seqnlp("evaluate", "--ckpt_path", str(ckpt), *args, "--output", str(out), cwd=cwd)
    return json.loads(out.read_text(encoding="utf-8"))


def make(name: str, output: Path, work: Path) -> None:
    recipe, overrides = MODELS[name]
    run = work / name
    run.mkdir()
    seqnlp("fit", str(ROOT / "recipes" / "quickstart" / f"{recipe}.yaml"), *overrides,
           "--trainer.default_root_dir", str(run), "--trainer.logger", "false",
           "--trainer.enable_progress_bar", "false", "--data.cache_dir", str(run / "hf"),
           cwd=run)  # fmt: skip
    ckpt = next(run.glob("**/last.ckpt"))
    shutil.copy(ckpt, output / f"{name}.ckpt")
    expected: dict = {"recipe": recipe, "overrides": overrides}
    if recipe == "ner":
        expected["inputs"] = inputs = tagger_inputs()
        n_best = ["--n_best", "3"] if "softmax" not in overrides else []
        expected["predict"] = predict(ckpt, inputs, run, *n_best, cwd=run)
        expected["evaluate"] = evaluate(ckpt, "--input", str(SAMPLES / "ner" / "test.conll"),
                                        cwd=run)  # fmt: skip
    elif recipe == "sentiment":
        expected["inputs"] = inputs = classifier_inputs()
        expected["predict"] = predict(ckpt, inputs, run, cwd=run)
        expected["evaluate"] = evaluate(ckpt, "--input", str(SAMPLES / "sentiment" / "test.txt"),
                                        cwd=run)  # fmt: skip
    else:
        expected["inputs"] = inputs = translator_inputs()
        expected["greedy"] = predict(ckpt, inputs, run, "--beam_size", "1",
                                     "--output_format", "jsonl", cwd=run)  # fmt: skip
        expected["beam"] = predict(ckpt, inputs, run, "--beam_size", "3", "--n_best", "2",
                                   cwd=run)  # fmt: skip
        expected["evaluate"] = evaluate(
            ckpt, "--input", str(SAMPLES / "translation" / "test"), "--src_lang", "de",
            "--tgt_lang", "en", "--beam_size", "1", cwd=run,
        )
    (output / f"{name}.json").write_text(
        json.dumps(expected, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--only", nargs="*", choices=sorted(MODELS), help="(default: all)")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or sorted(MODELS):
            make(name, args.output, Path(tmp))
    (args.output / "COMMIT").write_text(commit + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
