"""Data-parallel runs on CPU (gloo): 2-process DDP gives the numbers of 1 process."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NER = str(ROOT / "recipes" / "quickstart" / "ner.yaml")
DDP = str(ROOT / "recipes" / "trainer" / "ddp.yaml")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gloo DDP test runs on POSIX")


def _seqnlp(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "seqnlp", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


def _last_metrics(run_root: Path, version: int) -> dict[str, str]:
    with open(run_root / "csv" / f"version_{version}" / "metrics.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("val/f1")]
    return rows[-1]


def test_two_process_fit_and_validation_equal_one_process(tiny_ner, tmp_path):
    # 30 validation sentences in batches of 7: 5 batches, one repeated on 2 ranks.
    data = ["--data.dataset", "null", "--data.train", str(tiny_ner["train"]),
            "--data.validation", str(tiny_ner["validation"]), "--data.eval_batch_size", "7",
            "--data.cache_dir", str(tmp_path / "hf"),
            "--trainer.enable_progress_bar", "false"]  # fmt: skip
    two = ["--trainer.accelerator", "cpu", "--trainer.devices", "2"]
    _seqnlp(["fit", NER, DDP, *data, *two, "--trainer.max_epochs", "3",
             "--optimizer.init_args.lr", "0.01"], tmp_path)  # fmt: skip
    run_root = tmp_path / "runs" / "quickstart-ner"
    ckpt = run_root / "tb" / "version_0" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    assert float(_last_metrics(run_root, 0)["val/f1"]) > 0  # trained across 2 ranks

    # One checkpoint validated by 1 process and by 2: identical corpus-level numbers,
    # although the 30 sentences are split across ranks (with repeated padding batches).
    _seqnlp(["validate", NER, *data, "--trainer.accelerator", "cpu", "--trainer.devices", "1",
             "--ckpt_path", str(ckpt)], tmp_path)  # fmt: skip
    _seqnlp(["validate", NER, DDP, *data, *two, "--ckpt_path", str(ckpt)], tmp_path)
    one, both = _last_metrics(run_root, 1), _last_metrics(run_root, 2)
    for key in ("val/f1", "val/precision", "val/recall", "val/f1_PER", "val/support_PER"):
        assert float(one[key]) == pytest.approx(float(both[key]), abs=1e-6), key
