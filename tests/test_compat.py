"""Checkpoints written by earlier releases load and predict exactly as they did.

``tests/fixtures/checkpoints/v0.1.0`` holds checkpoints that ``seqnlp fit`` wrote at
the release's commit (``COMMIT``), made by ``scripts/make_compat_fixtures.py``, each
with the records ``predict`` and the scores ``evaluate`` gave for it there. Floats are
compared to 2e-4 (the records round to 4 decimals, and another CPU may sum in another
order); tags, labels and translations exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from contract import records_close

import seqnlp
from seqnlp.checkpoints import CKPT_KEY, FORMAT, load_system, read_checkpoint
from seqnlp.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"
RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "quickstart"
SAMPLES = Path(seqnlp.__file__).parent / "samples"
CASES = sorted(FIXTURES.glob("*/*.json"))


def _expected(case: Path) -> dict:
    return json.loads(case.read_text(encoding="utf-8"))


def _as_written_then(got, expected):
    """``got`` with only the fields that ``expected`` has: records gained fields since
    (character offsets), and those that were there must be as they were."""
    if isinstance(got, dict) and isinstance(expected, dict):
        return {k: _as_written_then(got[k], expected[k]) for k in expected if k in got}
    if isinstance(got, list) and isinstance(expected, list) and len(got) == len(expected):
        return [_as_written_then(g, e) for g, e in zip(got, expected, strict=True)]
    return got


def _id(case: Path) -> str:
    return f"{case.parent.name}/{case.stem}"


def test_there_are_fixtures_of_every_task():
    recipes = {_expected(case)["recipe"] for case in CASES}
    assert recipes == {"ner", "sentiment", "translation"}


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_an_old_checkpoint_predicts_as_it_did(case):
    expected = _expected(case)
    ckpt = case.with_suffix(".ckpt")
    if expected["recipe"] == "translation":
        greedy = seqnlp.load(ckpt, beam_size=1).predict(expected["inputs"])
        records_close(_as_written_then(greedy, expected["greedy"]), expected["greedy"])
        beam = seqnlp.load(ckpt, beam_size=3, n_best=2).predict(expected["inputs"])
        records_close(_as_written_then(beam, expected["beam"]), expected["beam"])
    else:
        crf = expected["recipe"] == "ner" and "softmax" not in case.stem
        predictor = seqnlp.load(ckpt, **({"n_best": 3} if crf else {}))
        got = predictor.predict(expected["inputs"])
        records_close(_as_written_then(got, expected["predict"]), expected["predict"])


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_an_old_checkpoint_scores_as_it_did(case):
    expected = _expected(case)
    ckpt = case.with_suffix(".ckpt")
    if expected["recipe"] == "translation":
        scores = seqnlp.load(ckpt, beam_size=1).evaluate(
            str(SAMPLES / "translation" / "test"), src_lang="de", tgt_lang="en"
        )
    else:
        folder, name = {"ner": ("ner", "test.conll"), "sentiment": ("sentiment", "test.txt")}[
            expected["recipe"]
        ]
        scores = seqnlp.load(ckpt).evaluate(str(SAMPLES / folder / name))
    old = expected["evaluate"]
    assert scores.keys() >= {k for k, v in old.items() if not isinstance(v, str)}
    for key, value in old.items():
        if isinstance(value, float):
            assert scores[key] == pytest.approx(value, abs=1e-3), key
        else:
            assert scores[key] == value, key


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_an_old_checkpoint_is_read_in_todays_layout(case):
    ckpt = read_checkpoint(case.with_suffix(".ckpt"))
    assert ckpt[CKPT_KEY]["format"] == FORMAT and "codec" in ckpt[CKPT_KEY]
    system = load_system(case.with_suffix(".ckpt"))
    assert ckpt["state_dict"].keys() == system.state_dict().keys()
    raw = torch.load(case.with_suffix(".ckpt"), weights_only=True)
    assert "format" not in raw[CKPT_KEY] and "vocab" in raw[CKPT_KEY]  # written by 0.1.0


def _recipe_command(expected: dict) -> list[str]:
    return [str(RECIPES / f"{expected['recipe']}.yaml"), *expected["overrides"]]


@pytest.mark.parametrize(
    "name", ["tagger_lstm_crf", "classifier_gru_attention", "translator_lstm_tied"]
)
def test_lightning_validates_and_resumes_from_an_old_checkpoint(name, tmp_path, monkeypatch):
    import csv

    case = FIXTURES / "v0.1.0" / f"{name}.json"
    expected = _expected(case)
    ckpt = str(case.with_suffix(".ckpt"))
    monkeypatch.chdir(tmp_path)
    common = ["--data.cache_dir", str(tmp_path / "hf"), "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.logger", "false"]
    main(["validate", *_recipe_command(expected), *common, "--ckpt_path", ckpt])
    # Resuming: the weights, the optimiser's state and the loops continue one more epoch.
    epochs = int(expected["overrides"][expected["overrides"].index("--trainer.max_epochs") + 1])
    logger = ["--trainer.logger", "pytorch_lightning.loggers.CSVLogger",
              "--trainer.logger.save_dir", str(tmp_path / "csv")]  # fmt: skip
    main(["fit", *_recipe_command(expected), *common[:-2], *logger,
          "--trainer.max_epochs", str(epochs + 1), "--ckpt_path", ckpt])  # fmt: skip
    metrics = next((tmp_path / "csv").glob("**/metrics.csv"))
    with open(metrics) as handle:
        epochs_logged = {row["epoch"] for row in csv.DictReader(handle) if row.get("epoch")}
    assert epochs_logged == {str(epochs)}  # only the one new epoch was trained
