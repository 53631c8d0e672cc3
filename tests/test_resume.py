"""Resumption: a fit killed with SIGKILL mid-epoch and restarted with
``--ckpt_path last`` ends exactly where an uninterrupted fit ends."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NER = str(ROOT / "recipes" / "quickstart" / "ner.yaml")

KILLER = '''
import os
import signal

from pytorch_lightning import Callback


class KillAtStep(Callback):
    """SIGKILL this process just before optimiser step $KILL_AT_STEP (no clean-up)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == int(os.environ["KILL_AT_STEP"]):
            os.kill(os.getpid(), signal.SIGKILL)
'''

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


def _fit(cwd: Path, data: list[str], *extra: str, kill_at: int | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(cwd)}
    args = [sys.executable, "-m", "seqnlp", "fit", NER, *data, *extra]
    if kill_at is not None:
        env["KILL_AT_STEP"] = str(kill_at)
        args += ["--trainer.callbacks+=killer.KillAtStep"]
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _val_rows(run_root: Path) -> list[dict[str, str]]:
    rows = []
    for version in sorted((run_root / "csv").glob("version_*")):
        with open(version / "metrics.csv") as handle:
            rows += [r for r in csv.DictReader(handle) if r.get("val/f1")]
    return rows


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tiny_ner, tmp_path):
    # 120 sentences in batches of 4: 30 steps an epoch; last.ckpt every 20 steps (the
    # recipe's setting), so the kill at step 50 resumes from step 40, mid-epoch 2,
    # with dropout, word dropout, Adam and early stopping all in play.
    def data(cwd: Path) -> list[str]:
        return ["--data.dataset", "null", "--data.train", str(tiny_ner["train"]),
                "--data.validation", str(tiny_ner["validation"]), "--data.batch_size", "4",
                "--data.cache_dir", str(cwd / "hf"), "--trainer.max_epochs", "3",
                "--trainer.enable_progress_bar", "false"]  # fmt: skip

    whole, broken = tmp_path / "whole", tmp_path / "broken"
    for cwd in (whole, broken):
        cwd.mkdir()
        (cwd / "killer.py").write_text(KILLER)
    proc = _fit(whole, data(whole))
    assert proc.returncode == 0, proc.stderr[-3000:]

    killed = _fit(broken, data(broken), kill_at=50)
    assert killed.returncode == -9, killed.stderr[-3000:]
    run_root = broken / "runs" / "quickstart-ner"
    state = _load(run_root / "tb" / "version_0" / "checkpoints" / "last.ckpt")
    assert state["global_step"] == 40 and state["epoch"] == 1  # saved mid-epoch
    loader_state = state["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state == [{"epoch": 1, "batches_done": 10}]

    resumed = _fit(broken, [*data(broken), "--ckpt_path", "last"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr and "version_0" in resumed.stderr

    # The same validation scores at every epoch end, and the same final state.
    want = [r["val/f1"] for r in _val_rows(whole / "runs" / "quickstart-ner")]
    got = [r["val/f1"] for r in _val_rows(run_root)]
    assert len(want) == 3 and got == want
    end = _load(whole / "runs" / "quickstart-ner" / "tb" / "version_0" / "checkpoints/last.ckpt")
    end_resumed = _load(run_root / "tb" / "version_1" / "checkpoints" / "last.ckpt")
    assert end["global_step"] == end_resumed["global_step"] == 90
    for name, tensor in end["state_dict"].items():
        assert torch.equal(tensor, end_resumed["state_dict"][name]), name
    adam, adam_resumed = (c["optimizer_states"][0]["state"] for c in (end, end_resumed))
    for key, value in adam.items():
        assert torch.equal(value["exp_avg_sq"], adam_resumed[key]["exp_avg_sq"]), key
    # A finished run's last.ckpt resumes too, to a larger max_epochs: the next epoch
    # runs whole (no replay of the finished one's end, which would lack its metrics).
    more = _fit(broken, [*data(broken), "--ckpt_path", "last", "--trainer.max_epochs", "4"])
    assert more.returncode == 0, more.stderr[-3000:]
    assert _load(run_root / "tb" / "version_2" / "checkpoints" / "last.ckpt")["global_step"] == 120
    assert len(_val_rows(run_root)) == 4

    stops = [k for k in end["callbacks"] if k.startswith("EarlyStopping")]
    assert stops
    for key in stops:
        for field in ("wait_count", "stopped_epoch", "best_score"):
            assert end["callbacks"][key][field] == end_resumed["callbacks"][key][field], field


def test_ckpt_path_last_with_nothing_to_resume_starts_afresh(tiny_ner, tmp_path):
    data = ["--data.dataset", "null", "--data.train", str(tiny_ner["train"]),
            "--data.validation", str(tiny_ner["validation"]), "--trainer.max_epochs", "1",
            "--data.cache_dir", str(tmp_path / "hf"), "--trainer.enable_progress_bar", "false",
            "--ckpt_path", "last"]  # fmt: skip
    proc = _fit(tmp_path, data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no last*.ckpt under runs/quickstart-ner; starting afresh" in proc.stderr
