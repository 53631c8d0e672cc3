"""Checkpoint files: averaging the weights of several checkpoints of one run."""

from __future__ import annotations

from pathlib import Path

import torch

from seqnlp.tasks.base import CKPT_KEY, System


def average_checkpoints(paths: list[str | Path], output: str | Path) -> int:
    """Write a checkpoint whose weights are the mean of ``paths``' weights.

    The checkpoints must be of the same model: same task, vocabularies,
    hyper-parameters and weight names and shapes. Everything but the weights
    (hyper-parameters, vocabularies) comes from the first; optimiser and loop
    states are dropped, so the result is for evaluation and prediction. Integer
    tensors (counters) are taken from the first. Returns the number of checkpoints.
    """
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least 2 checkpoints, got {len(paths)}")
    first = System.read_checkpoint(paths[0])
    total = {k: v.double() if v.is_floating_point() else v for k, v in first["state_dict"].items()}
    for path in paths[1:]:
        ckpt = System.read_checkpoint(path)
        for key in (CKPT_KEY, "hyper_parameters"):
            if ckpt.get(key) != first.get(key):
                raise ValueError(f"{path}: not the same model as {paths[0]} ({key} differ)")
        state = ckpt["state_dict"]
        if state.keys() != total.keys() or any(state[k].shape != total[k].shape for k in state):
            raise ValueError(f"{path}: its weights do not match those of {paths[0]}")
        for key, value in state.items():
            if value.is_floating_point():
                total[key] += value.double()
    averaged = {
        k: (v / len(paths)).to(first["state_dict"][k].dtype) if v.is_floating_point() else v
        for k, v in total.items()
    }
    keep = {
        k: first[k]
        for k in (CKPT_KEY, "hyper_parameters", "pytorch-lightning_version")
        if k in first
    }
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    torch.save({**keep, "state_dict": averaged, "averaged_from": [str(p) for p in paths]}, tmp)
    tmp.replace(out)
    return len(paths)
