"""Data-parallel runs on CPU (gloo): 2-process DDP gives the numbers of 1 process.

Each test runs the real command line in subprocesses; the 2-process fits are made
once per module and shared (a fit, then 1- and 2-process validation and prediction
of its checkpoint).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import write_conll
from test_translation_data import write_pairs

from seqnlp.predict import load

ROOT = Path(__file__).resolve().parents[1]
NER = str(ROOT / "recipes" / "quickstart" / "ner.yaml")
MT = str(ROOT / "recipes" / "quickstart" / "translation.yaml")
DDP = str(ROOT / "recipes" / "trainer" / "ddp.yaml")
TWO = ["--trainer.accelerator", "cpu", "--trainer.devices", "2"]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gloo DDP test runs on POSIX")

NAN_ON_RANK_1 = '''
from pytorch_lightning import Callback


class NanOnRankOne(Callback):
    """Rank 1's training loss becomes NaN at step 2; rank 0's stays finite."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == 1 and trainer.global_step == 2:
            loss_of = pl_module.training_loss
            pl_module.training_loss = lambda batch: loss_of(batch) * float("nan")
'''


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "seqnlp", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def _seqnlp(args: list[str], cwd: Path) -> str:
    proc = _run(args, cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def _last_metrics(run_root: Path, version: int, key: str) -> dict[str, str]:
    with open(run_root / "csv" / f"version_{version}" / "metrics.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get(key)]
    return rows[-1]


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory) -> dict[str, Any]:
    """A 2-process fit of the NER quickstart on tiny data (3 epochs)."""
    cwd = tmp_path_factory.mktemp("ner")
    train = write_conll(cwd / "train.conll", 120, seed=1)
    dev = write_conll(cwd / "dev.conll", 30, seed=2)
    # 30 validation sentences in batches of 7: 5 batches, one repeated on 2 ranks.
    data = ["--data.dataset", "null", "--data.train", str(train), "--data.validation", str(dev),
            "--data.eval_batch_size", "7", "--data.cache_dir", str(cwd / "hf"),
            "--trainer.enable_progress_bar", "false"]  # fmt: skip
    _seqnlp(["fit", NER, DDP, *data, *TWO, "--trainer.max_epochs", "3",
             "--optimizer.init_args.lr", "0.01"], cwd)  # fmt: skip
    run_root = cwd / "runs" / "quickstart-ner"
    ckpt = run_root / "tb" / "version_0" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return {"cwd": cwd, "data": data, "run_root": run_root, "ckpt": ckpt}


@pytest.fixture(scope="module")
def mt_run(tmp_path_factory) -> dict[str, Any]:
    """A 2-process fit of a tiny translator on a word-for-word 'language pair'."""
    cwd = tmp_path_factory.mktemp("mt")
    train = write_pairs(cwd / "train", 300, 0)
    dev = write_pairs(cwd / "dev", 25, 1)
    # 25 validation pairs in batches of 4: 7 batches, so one is repeated on 2 ranks.
    data = ["--data.dataset", "null", "--data.train", str(train), "--data.validation", str(dev),
            "--data.vocab_size", "60", "--data.batch_size", "8", "--data.eval_batch_size", "4",
            "--data.cache_dir", str(cwd / "hf"), "--model.embedding_dim", "32",
            "--model.hidden_size", "32", "--trainer.enable_progress_bar", "false"]  # fmt: skip
    _seqnlp(["fit", MT, DDP, *data, *TWO, "--trainer.max_epochs", "4",
             "--optimizer.init_args.lr", "0.01"], cwd)  # fmt: skip
    run_root = cwd / "runs" / "quickstart-translation"
    ckpt = run_root / "tb" / "version_0" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return {"cwd": cwd, "data": data, "run_root": run_root, "ckpt": ckpt}


def _validate_on_one_and_two(run: dict, recipe: str, metric: str) -> tuple[dict, dict]:
    """Validate the run's checkpoint with 1 process and with 2: their last metrics rows."""
    run_root, data, cwd, ckpt = run["run_root"], run["data"], run["cwd"], str(run["ckpt"])
    _seqnlp(["validate", recipe, *data, "--trainer.accelerator", "cpu", "--trainer.devices", "1",
             "--ckpt_path", ckpt], cwd)  # fmt: skip
    _seqnlp(["validate", recipe, DDP, *data, *TWO, "--ckpt_path", ckpt], cwd)
    return _last_metrics(run_root, 1, metric), _last_metrics(run_root, 2, metric)


def test_two_process_fit_and_validation_equal_one_process(ner_run):
    assert float(_last_metrics(ner_run["run_root"], 0, "val/f1")["val/f1"]) > 0  # on 2 ranks
    # One checkpoint validated by 1 process and by 2: identical corpus-level numbers,
    # although the 30 sentences are split across ranks (with repeated padding batches).
    one, both = _validate_on_one_and_two(ner_run, NER, "val/f1")
    for key in ("val/f1", "val/precision", "val/recall", "val/f1_PER", "val/support_PER"):
        assert float(one[key]) == pytest.approx(float(both[key]), abs=1e-6), key


def test_two_process_translator_fit_and_validation_equal_one_process(mt_run):
    run_root, cwd, ckpt = mt_run["run_root"], mt_run["cwd"], str(mt_run["ckpt"])
    assert float(_last_metrics(run_root, 0, "val/bleu")["val/bleu"]) > 0  # learnt on 2 ranks

    # 25 pairs in 7 batches of 4: each rank translates 4 batches, one of them twice.
    one, both = _validate_on_one_and_two(mt_run, MT, "val/bleu")
    for key in ("val/bleu", "val/chrf"):
        assert float(one[key]) == pytest.approx(float(both[key]), abs=1e-6), key

    # `evaluate --devices 2` scores the 25 pairs shared by 2 processes as one process does.
    scores = cwd / "scores.json"
    _seqnlp(["evaluate", "--ckpt_path", ckpt, "--input", str(cwd / "dev"), "--src_lang", "de",
             "--tgt_lang", "en", "--beam_size", "2", "--output", str(scores), "--devices", "2",
             "--accelerator", "cpu"], cwd)  # fmt: skip
    alone = load(ckpt, beam_size=2).evaluate(str(cwd / "dev"), src_lang="de", tgt_lang="en")
    shared = json.loads(scores.read_text(encoding="utf-8"))
    assert shared["pairs"] == 25
    for key in ("bleu", "chrf"):
        assert shared[key] == pytest.approx(round(alone[key], 4), abs=1e-6), key


@pytest.mark.parametrize(
    ("run", "lines"),
    [
        ("ner_run", ["Ana vive en Lima", "", "Luis dijo que Repsol", "hoy", "la de Quito ."]),
        ("mt_run", ["der hund läuft", "", "die katze schläft im park", "rot", "haus im park"]),
    ],
)
def test_two_process_predict_writes_the_one_process_output(run, lines, request, tmp_path):
    found = request.getfixturevalue(run)
    # An odd number of lines, one empty: the ranks get 4 and 3 of these 7.
    source = tmp_path / "input.txt"
    source.write_text("\n".join([*lines, "Marta y Pedro", "ayer"]) + "\n", encoding="utf-8")
    common = ["predict", "--ckpt_path", str(found["ckpt"]), "--input", str(source)]
    one, two = tmp_path / "one.out", tmp_path / "two.out"
    _seqnlp([*common, "--output", str(one)], tmp_path)
    log = _seqnlp([*common, "--output", str(two), "--devices", "2", "--accelerator", "cpu"],
                  tmp_path)  # fmt: skip
    assert "MEMBER: 2/2" in log and log.count("predicted 7 records") == 1  # rank 0 reports
    expected = one.read_text(encoding="utf-8").splitlines()
    assert len(expected) == 7
    assert two.read_text(encoding="utf-8").splitlines() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.txt", "one.out", "two.out"]


def test_non_finite_loss_on_one_rank_stops_every_rank(tmp_path):
    # Only rank 1's loss turns NaN (at step 2): both ranks must stop at that step with
    # the one-line error, rather than rank 0 waiting in the gradient all-reduce.
    (tmp_path / "nanrank.py").write_text(NAN_ON_RANK_1, encoding="utf-8")
    train = write_conll(tmp_path / "train.conll", 80, seed=1)
    dev = write_conll(tmp_path / "dev.conll", 10, seed=2)
    start = time.monotonic()
    proc = _run(["fit", NER, DDP, *TWO, "--data.dataset", "null", "--data.train", str(train),
                 "--data.validation", str(dev), "--data.cache_dir", str(tmp_path / "hf"),
                 "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
                 "--trainer.callbacks+=nanrank.NanOnRankOne"], tmp_path, timeout=120)  # fmt: skip
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("seqnlp: error:")]
    # Both ranks raise the same error at the same step. Whether rank 0 prints its line
    # before Lightning's launcher ends it on seeing rank 1's process exit is a race, so
    # one line or two; never gloo's "connection closed" from a rank left waiting.
    assert 1 <= len(errors) <= 2, proc.stderr[-3000:]
    for line in errors:
        assert "training loss is nan on rank 1 at step 2" in line, line
    assert "Connection closed by peer" not in proc.stderr, proc.stderr[-3000:]
    assert time.monotonic() - start < 120
