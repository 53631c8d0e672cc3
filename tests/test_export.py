"""``seqnlp export``: model folders that load without unpickling anything and predict
exactly as the checkpoint they came from; their model card; the Hub path offline."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import seqnlp
from seqnlp.checkpoints import CKPT_KEY, read_checkpoint
from seqnlp.cli import main
from seqnlp.export.folder import CONFIG, WEIGHTS, read_config
from seqnlp.export.writer import export_model

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints" / "v0.1.0"
CHECKPOINTS = sorted(FIXTURES.glob("*.ckpt"))
CASES = {p.stem: json.loads(p.with_suffix(".json").read_text()) for p in CHECKPOINTS}


def _inputs(name: str) -> list:
    return CASES[name]["inputs"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exported")
    return {p.stem: export_model(p, root / p.stem).folder for p in CHECKPOINTS}


def test_the_folder_has_the_hub_layout_and_no_pickle(exported):
    for name, folder in exported.items():
        files = {p.name for p in folder.iterdir()}
        assert {CONFIG, WEIGHTS, "codec.json", "README.md"} <= files, name
        assert not any(p.suffix in (".ckpt", ".pt", ".pkl", ".bin") for p in folder.iterdir())
        for path in folder.iterdir():  # no file is a pickle (protocol 2+ starts with 0x80)
            assert not path.read_bytes().startswith(b"\x80"), path
        config = read_config(folder)
        assert config["task"] in ("tagging", "classification", "translation")
        if config["task"] == "translation":
            assert "source.model" in files  # the SentencePiece model, as a file of its own
        else:
            assert any(f.startswith("vocab.") for f in files)


@pytest.mark.parametrize("name", [p.stem for p in CHECKPOINTS])
def test_a_folder_predicts_exactly_as_its_checkpoint(name, exported, monkeypatch):
    ckpt = FIXTURES / f"{name}.ckpt"
    options = {"beam_size": 3, "n_best": 2} if name.startswith("translator") else {}
    if name.startswith("tagger"):
        options = {"n_best": 2} if "crf" in name else {}
    expected = seqnlp.load(ckpt, **options).predict(_inputs(name))

    def refuse(*args, **kwargs):
        raise AssertionError("a model folder was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    got = seqnlp.load(exported[name], **options).predict(_inputs(name))
    assert got == expected


def test_predict_and_evaluate_take_a_folder(exported, tmp_path, capsys):
    folder, ckpt = exported["tagger_lstm_crf"], FIXTURES / "tagger_lstm_crf.ckpt"
    source = tmp_path / "in.txt"
    source.write_text("Ana García vive en Lima, Perú.\nRepsol abrió en Madrid.\n", encoding="utf-8")
    for flag, model, out in (("--model", folder, "a"), ("--ckpt_path", ckpt, "b")):
        main(["predict", flag, str(model), "--input", str(source),
              "--output", str(tmp_path / f"{out}.jsonl")])  # fmt: skip
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()

    labelled = tmp_path / "gold.conll"
    labelled.write_text("Ana B-PER\nGarcía I-PER\nvive O\nen O\nLima B-LOC\n\n"
                        "La O\nONU B-ORG\nabrió O\n\n")
    capsys.readouterr()
    scores = []
    for flag, model in (("--model", folder), ("--ckpt_path", ckpt)):
        main(["evaluate", flag, str(model), "--input", str(labelled)])
        scores.append(json.loads(capsys.readouterr().out))
    assert scores[0] == scores[1] and scores[0]["sentences"] == 2


def test_the_model_card_carries_the_recorded_scores(tmp_path):
    ckpt = read_checkpoint(FIXTURES / "tagger_lstm_crf.ckpt")
    ckpt[CKPT_KEY]["scores"] = {"validation": {"f1": 71.25, "precision": 70.0, "recall": 72.5},
                                "test": {"f1": 69.5}}  # fmt: skip
    ckpt[CKPT_KEY]["run"] = {"command": "python -m seqnlp fit recipes/ner.yaml",
                             "recipe": "fit:\n  seed_everything: 13\n", "hardware": "test CPU",
                             "train_seconds": 812.4}  # fmt: skip
    path = tmp_path / "scored.ckpt"
    torch.save(ckpt, path)
    folder = export_model(path, tmp_path / "es-ner", name="seqnlp/es-ner").folder
    card = (folder / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "seqnlp" and front["pipeline_tag"] == "token-classification"
    results = front["model-index"][0]["results"]
    found = {(r["dataset"]["split"], m["type"]): m["value"] for r in results for m in r["metrics"]}
    assert found[("validation", "f1")] == 71.25 and found[("test", "f1")] == 69.5
    assert front["model-index"][0]["name"] == "seqnlp/es-ner"
    for text in ("python -m seqnlp fit recipes/ner.yaml", "812 s", "test CPU",
                 "Intended use and limitations", "LOC, MISC, ORG, PER"):  # fmt: skip
        assert text in card
    assert (folder / "recipe.yaml").read_text() == "fit:\n  seed_everything: 13\n"
    assert seqnlp.load(folder).metadata()["card"]["scores"]["test"]["f1"] == 69.5


def test_half_precision_halves_the_weights_and_keeps_the_tags(exported, tmp_path):
    ckpt = FIXTURES / "tagger_lstm_crf.ckpt"
    inputs = _inputs("tagger_lstm_crf")
    full = seqnlp.load(exported["tagger_lstm_crf"]).predict(inputs)
    for precision in ("bf16", "fp16"):
        folder = export_model(ckpt, tmp_path / precision, precision=precision).folder
        full_size = (exported["tagger_lstm_crf"] / WEIGHTS).stat().st_size
        ratio = (folder / WEIGHTS).stat().st_size / full_size
        assert 0.45 < ratio < 0.56
        half = seqnlp.load(folder).predict(inputs)
        same = sum(a["tags"] == b["tags"] for a, b in zip(full, half, strict=True))
        assert same >= 0.9 * len(inputs), precision


def test_int8_is_offered_where_it_pays(tmp_path, capsys):
    with pytest.raises(ValueError, match="does not pay off for a tagging model"):
        export_model(FIXTURES / "tagger_lstm_crf.ckpt", tmp_path / "t", quantize="int8")
    assert not (tmp_path / "t").exists()
    folder = export_model(FIXTURES / "translator_gru.ckpt", tmp_path / "mt", quantize="int8").folder
    predictor = seqnlp.load(folder, beam_size=1)
    assert "Quantized" in type(predictor.network.decoder.output).__name__ or any(
        "quantized" in type(m).__module__ for m in predictor.network.modules()
    )
    assert read_config(folder)["weights"]["quantize"] == "int8"


def test_export_never_replaces_and_leaves_nothing_when_it_fails(tmp_path, monkeypatch, capsys):
    ckpt = FIXTURES / "classifier_rnn_max.ckpt"
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(ckpt), "--output", str(tmp_path / "taken")])
    assert exit_info.value.code == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep"

    import seqnlp.export.writer as writer

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(writer, "model_card", broken)
    with pytest.raises(OSError):
        export_model(ckpt, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_a_damaged_folder_is_one_line(exported, tmp_path, capsys):
    import shutil

    folder = tmp_path / "damaged"
    shutil.copytree(exported["classifier_rnn_max"], folder)
    (folder / WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match=r"model\.safetensors cannot be read"):
        seqnlp.load(folder)
    config = json.loads((folder / CONFIG).read_text())
    config["class_path"] = "os.system"
    (folder / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not a seqnlp system"):
        seqnlp.load(folder)
    (folder / CONFIG).unlink()
    with pytest.raises(SystemExit):
        main(["predict", "--model", str(folder), "--input", "-"])
    assert "not a seqnlp model folder (no config.json" in capsys.readouterr().err


def _hub_cache(root: Path, name: str, folder: Path) -> None:
    """``folder`` laid out as huggingface_hub caches a downloaded repository."""
    import shutil

    repo = root / "hub" / f"models--{name.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)


def test_hub_models_load_from_the_cache_offline_and_fail_fast_otherwise(exported, tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    _hub_cache(tmp_path / "hf", "seqnlp/tiny-ner", exported["tagger_lstm_crf"])
    code = ("import seqnlp, sys; p = seqnlp.load(sys.argv[1]); "
            "print(p.predict(['Ana vive en Lima .'])[0]['tags'])")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code, "hf://seqnlp/tiny-ner"], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    expected = seqnlp.load(exported["tagger_lstm_crf"]).predict(["Ana vive en Lima ."])[0]["tags"]
    assert run.stdout.strip() == str(expected)

    for extra, why in (({}, "offline"),
                       ({"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"},
                        "could not be reached")):  # fmt: skip
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "seqnlp", "predict", "--model", "hf://seqnlp/missing",
             "--input", "-"], env={**env, **extra}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 2
        line = run.stderr.strip().splitlines()[-1]
        assert line.startswith("seqnlp: error: hf://seqnlp/missing:") and why in line, line
        assert "--local-dir" in line
        assert time.monotonic() - started < 60  # seconds of start-up, no long network wait
