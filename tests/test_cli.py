"""End-to-end CLI runs on tiny data made in the test: fit, test, evaluate, predict."""

from __future__ import annotations

import csv
import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest

from seqnlp.checkpoints import CKPT_KEY, read_checkpoint
from seqnlp.cli import main, positional_recipes

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "quickstart" / "ner.yaml")


def _data_args(tiny_ner: dict[str, Path], tmp_path: Path) -> list[str]:
    return [
        "--data.dataset", "null",
        "--data.train", str(tiny_ner["train"]),
        "--data.validation", str(tiny_ner["validation"]),
        "--data.test", str(tiny_ner["test"]),
        "--data.cache_dir", str(tmp_path / "hf"),
    ]  # fmt: skip


def test_positional_recipes_become_config_options():
    assert positional_recipes(["fit", "a.yaml", "b.yaml", "--x", "1"]) == [
        "fit", "--config", "a.yaml", "--config", "b.yaml", "--x", "1",
    ]  # fmt: skip
    assert positional_recipes(["test", "--config", "a.yaml"]) == ["test", "--config", "a.yaml"]
    assert positional_recipes(["predict", "x"]) == ["predict", "x"]


@pytest.fixture()
def trained(tiny_ner, tmp_path, monkeypatch) -> dict[str, Path]:
    """Fit the quickstart recipe on the tiny files (overridden from the command line)."""
    monkeypatch.chdir(tmp_path)
    main(["fit", RECIPE, *_data_args(tiny_ner, tmp_path),
          "--trainer.max_epochs", "6", "--trainer.enable_progress_bar", "false",
          "--optimizer.init_args.lr", "0.01"])  # fmt: skip
    run = tmp_path / "runs" / "quickstart-ner" / "tb" / "version_0"
    best = sorted((run / "checkpoints").glob("best-*.ckpt"))
    assert len(best) == 1 and (run / "checkpoints" / "last.ckpt").is_file()
    return {"run": run, "best": best[0], **tiny_ner}


def test_fit_saves_resolved_config_and_logs(trained):
    config = (trained["run"] / "config.yaml").read_text(encoding="utf-8")
    assert str(trained["train"]) in config  # the command-line override is recorded
    assert "seqnlp.tasks.Tagger" in config
    metrics = (trained["run"].parents[1] / "csv" / "version_0" / "metrics.csv").read_text()
    assert "val/f1" in metrics and "train/loss" in metrics


def test_test_and_evaluate_agree_on_the_whole_test_set(trained, tmp_path):
    main(["test", RECIPE, *_data_args(trained, tmp_path), "--ckpt_path", str(trained["best"]),
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    # The test run logs beside the fit run: version_1 of the CSV logger.
    with open(trained["run"].parents[1] / "csv" / "version_1" / "metrics.csv") as handle:
        tested = next(row for row in csv.DictReader(handle) if row.get("test/f1"))

    out = tmp_path / "metrics.json"
    main(["evaluate", "--ckpt_path", str(trained["best"]), "--input", str(trained["test"]),
          "--output", str(out)])  # fmt: skip
    scores = json.loads(out.read_text())
    assert scores["sentences"] == 30
    assert scores["f1"] > 80
    # The trainer's test F1 (over the whole set) equals the predictor's.
    assert float(tested["test/f1"]) == pytest.approx(scores["f1"], abs=1e-3)
    assert float(tested["test/precision"]) == pytest.approx(scores["precision"], abs=1e-3)
    # ... and the test run recorded its scores in the checkpoint (for the model card),
    # beside the validation scores and the run that fit wrote there.
    meta = read_checkpoint(trained["best"])[CKPT_KEY]
    assert meta["scores"]["test"]["f1"] == pytest.approx(float(tested["test/f1"]), abs=1e-3)
    assert meta["scores"]["validation"]["f1"] > 0
    assert meta["run"]["command"].startswith("python -m seqnlp fit ")
    assert "seqnlp.tasks.Tagger" in meta["run"]["recipe"] and meta["run"]["train_seconds"] > 0
    assert "fused" in read_checkpoint(trained["best"])["optimizer_states"][0]["param_groups"][0]


def test_predict_keeps_one_record_per_line_in_order(trained, tmp_path):
    lines = ["Ana vive en Lima .", "", "   ", "Pedro dijo que Repsol y Naciones Unidas", "hoy"]
    src = tmp_path / "input.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out" / "pred.jsonl"
    main(["predict", "--ckpt_path", str(trained["best"]), "--input", str(src),
          "--output", str(out)])  # fmt: skip
    assert gc.get_freeze_count() == 0  # the loaded objects were frozen while it predicted only
    records = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["tokens"] for r in records] == [ln.split() for ln in lines]
    empty = {"tokens": [], "token_offsets": [], "tags": [], "entities": []}
    assert records[1] == records[2] == empty
    first = records[0]
    assert first["tags"][0] == "B-PER" and first["tags"][3] == "B-LOC"
    assert {"type": "PER", "start": 0, "end": 1, "text": "Ana"}.items() <= first["entities"][
        0
    ].items()
    assert 0 < first["entities"][0]["confidence"] <= 1
    assert not list(out.parent.glob(".*.part"))  # no temporary file left behind

    conll = tmp_path / "pred.conll"
    main(["predict", "--ckpt_path", str(trained["best"]), "--input", str(src),
          "--output", str(conll), "--no_confidence"])  # fmt: skip
    # Each record is its token lines closed by one blank line (an empty record: the blank line).
    blocks: list[list[str]] = [[]]
    for row in conll.read_text(encoding="utf-8").splitlines():
        if row:
            blocks[-1].append(row)
        else:
            blocks.append([])
    assert blocks.pop() == []
    assert [[r.split("\t")[0] for r in b] for b in blocks] == [ln.split() for ln in lines]
    assert blocks[0][0] == "Ana\tB-PER"
    # Two batches at once (threads on the CPU): the same tags.
    parallel = tmp_path / "parallel.conll"
    main(["predict", "--ckpt_path", str(trained["best"]), "--input", str(src),
          "--batch_size", "2", "--output", str(parallel), "--no_confidence",
          "--parallel_batches", "2"])  # fmt: skip
    assert parallel.read_text(encoding="utf-8") == conll.read_text(encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["predict", "--ckpt_path", str(trained["best"]), "--input", str(src),
              "--output", str(parallel), "--parallel_batches", "0"])  # fmt: skip

    # A CoNLL file as input: one record per sentence, tags in the file ignored.
    again = tmp_path / "again.jsonl"
    main(["predict", "--ckpt_path", str(trained["best"]), "--input", str(trained["test"]),
          "--input_format", "conll", "--output", str(again)])  # fmt: skip
    assert len(again.read_text(encoding="utf-8").splitlines()) == 30


def test_console_entry_point_predicts_from_stdin(trained):
    proc = subprocess.run(
        [sys.executable, "-m", "seqnlp", "predict", "--ckpt_path", str(trained["best"]),
         "--input", "-"],
        input="Ana vive en Lima\n\nLuis\n", capture_output=True, text=True, timeout=120,
        check=True,
    )  # fmt: skip
    records = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [r["tokens"] for r in records] == [["Ana", "vive", "en", "Lima"], [], ["Luis"]]


def test_config_typo_fails_loudly(tiny_ner, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", RECIPE, *_data_args(tiny_ner, tmp_path), "--model.init_args.hiden_size", "8"])
    assert exit_info.value.code != 0
    assert "hiden_size" in capsys.readouterr().err


def test_malformed_training_file_names_file_and_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.conll"
    bad.write_text("Ana B-PER\nvive O\nen\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", RECIPE, "--data.dataset", "null", "--data.train", str(bad),
              "--data.cache_dir", str(tmp_path / "hf"), "--trainer.max_epochs", "1"])  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()  # progress bars may stand before it
    assert [e for e in err if "error" in e] == err[-1:] and err[-1].startswith("seqnlp: error: ")
    assert "bad.conll:3: expected at least 2 columns" in err[-1]


def test_predict_with_missing_checkpoint_is_one_clear_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--ckpt_path", str(tmp_path / "none.ckpt"), "--input", "x.txt"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"seqnlp: error: {tmp_path / 'none.ckpt'}: no such checkpoint file"


SENTIMENT = str(ROOT / "recipes" / "quickstart" / "sentiment.yaml")


def _write_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    return path


def test_classifier_fit_test_evaluate_predict_end_to_end(tmp_path, monkeypatch, capsys):
    import random

    rng = random.Random(0)
    good, bad = ["good", "great", "fine", "superb"], ["bad", "dull", "awful", "weak"]

    def rows(n: int) -> list[tuple[str, str]]:
        out = []
        for _ in range(n):
            y = rng.randrange(2)
            out.append((f"the film is {rng.choice(good if y else bad)} .", "pos" if y else "neg"))
        return out

    train = _write_tsv(tmp_path / "train.tsv", rows(200))
    dev = _write_tsv(tmp_path / "dev.tsv", rows(40))
    test = _write_tsv(tmp_path / "test.tsv", rows(40))
    monkeypatch.chdir(tmp_path)
    data = ["--data.dataset", "null", "--data.train", str(train), "--data.validation", str(dev),
            "--data.test", str(test), "--data.label_column", "label", "--data.text_column",
            "sentence", "--data.cache_dir", str(tmp_path / "hf")]  # fmt: skip
    main(["fit", SENTIMENT, *data, "--trainer.max_epochs", "5", "--trainer.enable_progress_bar",
          "false", "--model.cell", "gru", "--data.tokenizer", "sentencepiece",
          "--data.vocab_size", "40"])  # fmt: skip
    run = tmp_path / "runs" / "quickstart-sentiment" / "tb" / "version_0"
    best = next((run / "checkpoints").glob("best-*.ckpt"))
    assert "sentencepiece" in (run / "config.yaml").read_text()

    capsys.readouterr()
    main(["test", SENTIMENT, *data, "--data.tokenizer", "sentencepiece", "--data.vocab_size", "40",
          "--model.cell", "gru", "--ckpt_path", str(best), "--trainer.enable_progress_bar",
          "false"])  # fmt: skip
    assert "test/accuracy" in capsys.readouterr().out

    out = tmp_path / "metrics.json"
    main(["evaluate", "--ckpt_path", str(best), "--input", str(test), "--label_column", "label",
          "--text_column", "sentence", "--output", str(out)])  # fmt: skip
    scores = json.loads(out.read_text())
    assert scores["examples"] == 40 and scores["accuracy"] > 90
    assert scores["labels"] == ["neg", "pos"]
    assert sum(map(sum, scores["confusion"])) == 40

    src = tmp_path / "reviews.txt"
    src.write_text("the film is superb .\n\nthe film is awful .\n", encoding="utf-8")
    pred = tmp_path / "labels.tsv"
    main(["predict", "--ckpt_path", str(best), "--input", str(src), "--output", str(pred)])
    rows_out = pred.read_text(encoding="utf-8").splitlines()
    assert [r.split("\t")[0] for r in rows_out] == ["pos", "", "neg"]
    assert rows_out[1] == "\t\t"
    jsonl = tmp_path / "labels.jsonl"
    main(["predict", "--ckpt_path", str(best), "--input", str(src), "--output", str(jsonl)])
    records = [json.loads(x) for x in jsonl.read_text(encoding="utf-8").splitlines()]
    assert records[0]["label"] == "pos" and 0.5 < records[0]["probability"] <= 1
    assert set(records[0]["probabilities"]) == {"neg", "pos"}

    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--ckpt_path", str(best), "--input", str(src), "--output_format", "conll"])
    assert exit_info.value.code == 2
    assert "does not fit a classification model" in capsys.readouterr().err


def test_top_level_help_lists_every_command(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "evaluate", "predict"):
        assert f"\n  {command} " in out


def test_missing_named_dataset_is_one_line_saying_what_to_put_where(tmp_path, monkeypatch, capsys):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("SEQNLP_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", str(ROOT / "recipes" / "ner.yaml"), "--data.cache_dir", str(tmp_path / "hf")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # the link's wrapper is peeled off
    assert err[0].startswith("seqnlp: error: named dataset conll2002_es:train not found at ")
    assert str(tmp_path / "data" / "conll2002" / "esp.train") in err[0]
    assert "Set $SEQNLP_DATA" in err[0] and "network disabled" in err[0]


def test_version_is_the_one_in_pyproject():
    import re
    from importlib.metadata import version

    import seqnlp

    declared = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert declared is not None
    assert seqnlp.__version__ == version("seqnlp") == declared.group(1)
    run = subprocess.run([sys.executable, "-m", "seqnlp", "--version"], capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert run.stdout == f"seqnlp {declared.group(1)}\n"


def test_an_option_for_another_task_is_refused(trained, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("Ana vive en Lima\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--ckpt_path", str(trained["best"]), "--input", str(src),
              "--beam_size", "3"])  # fmt: skip
    assert exit_info.value.code == 2
    assert "a tagging model takes no beam_size option" in capsys.readouterr().err
