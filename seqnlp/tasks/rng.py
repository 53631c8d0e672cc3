"""Random-number state carried in training checkpoints, one entry per rank.

Lightning restores weights, optimiser, schedulers, loops and callbacks when a fit
resumes, but not the random streams that dropout and word dropout draw from. A
run resumed from a mid-epoch checkpoint would then draw other masks than the
uninterrupted run and end elsewhere. Every rank's state is stored (ranks draw
different amounts for batches of different shapes) and each rank takes back its
own when the world size is unchanged.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import torch
import torch.distributed as dist

from seqnlp.distributed import rank_and_world

log = logging.getLogger(__name__)


def capture() -> dict[str, Any]:
    """This process's random state: torch CPU, CUDA devices and Python's ``random``."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def capture_all_ranks() -> list[dict[str, Any]]:
    """Every rank's state, rank order (a collective call under data parallelism:
    Lightning builds a checkpoint on every rank, so every rank takes part)."""
    _, world = rank_and_world()
    mine = capture()
    if world == 1:
        return [mine]
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, mine)
    return gathered


def restore_own_rank(states: list[dict[str, Any]]) -> None:
    """Restore this rank's entry of ``capture_all_ranks()``'s list."""
    rank, world = rank_and_world()
    if len(states) != world:
        log.warning(
            "the checkpoint holds the random state of %d rank(s), this run has %d: dropout "
            "masks will differ from an uninterrupted run",
            len(states),
            world,
        )
    restore(states[rank % len(states)])
