"""This process's place in a torch.distributed process group, if there is one."""

from __future__ import annotations

import sys


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0 and 1 without a process group).

    Imports no torch: where ``torch.distributed`` was never imported (ONNX Runtime
    prediction), there is no process group."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
