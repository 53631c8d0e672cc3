"""Checkpoint files: safe reading, the systems they hold, older layouts, averaging.

A seqnlp checkpoint is a Lightning checkpoint with a ``seqnlp`` entry: the task, the
system's class, the codec (tokenizers, vocabularies, label set, as plain data) and
the layout ``format``. It is read with ``torch.load(weights_only=True)``, so reading
one runs no pickled code, and ``load_system`` rebuilds a working system from the file
alone.

Layouts: format 1 (seqnlp 0.1.0) kept the layers on the system itself
(``word_embedding.weight``) and the codec under ``vocab``; format 2 keeps them on the
system's network (``network.word_embedding.weight``) and the codec under ``codec``.
``upgrade`` maps a format-1 checkpoint to format 2 in memory, wherever one is read.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from seqnlp.tasks.base import System

CKPT_KEY = "seqnlp"
#: per-rank random state of a training checkpoint (see seqnlp/tasks/rng.py).
RNG_KEY = "seqnlp_rng"
#: the layout this version writes.
FORMAT = 2

#: format 1 -> 2: every weight moved under ``network.``, and the character LSTM's
#: ``lstm`` became the shared recurrent encoder's ``encoder.rnn``.
_RENAMED_PREFIXES = (("network.char_features.lstm.", "network.char_features.encoder.rnn."),)


def upgrade(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """``checkpoint`` in today's layout (changed in place, and returned)."""
    meta = checkpoint[CKPT_KEY]
    if meta.get("format", 1) >= FORMAT:
        return checkpoint
    if "vocab" in meta:
        meta["codec"] = meta.pop("vocab")
    state = {}
    for key, value in checkpoint.get("state_dict", {}).items():
        key = f"network.{key}"
        for old, new in _RENAMED_PREFIXES:
            if key.startswith(old):
                key = new + key.removeprefix(old)
        state[key] = value
    checkpoint["state_dict"] = state
    meta["format"] = FORMAT
    return checkpoint


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A seqnlp checkpoint read with ``weights_only`` loading (no arbitrary pickled
    code), in today's layout. Raises ``ValueError`` with one line for a missing,
    damaged or foreign file."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for damaged files
        raise ValueError(
            f"{path}: cannot read checkpoint ({type(err).__name__}: {err})".split("\n")[0]
        ) from None
    if not isinstance(ckpt, dict) or CKPT_KEY not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a seqnlp checkpoint (expected weights and vocabularies)")
    return upgrade(ckpt)


def system_class(class_path: str) -> type[System]:
    """The seqnlp system class a checkpoint names; refuses any class outside seqnlp
    before importing its module."""
    from seqnlp.tasks.base import System

    module, _, name = class_path.rpartition(".")
    if not module.startswith("seqnlp."):
        raise ValueError(f"checkpoint names class {class_path!r}, not a seqnlp system")
    found = getattr(importlib.import_module(module), name, None)
    if not (isinstance(found, type) and issubclass(found, System)):
        raise ValueError(f"checkpoint names class {class_path!r}, not a seqnlp system")
    return found


def hyper_parameters(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The system's constructor arguments saved in ``checkpoint`` (LightningCLI's
    private keys such as ``_class_path`` left out)."""
    saved = checkpoint.get("hyper_parameters", {})
    return {k: v for k, v in saved.items() if not k.startswith("_")}


def load_system(path: str | Path, expected: type[System] | None = None) -> System:
    """Rebuild a system from a checkpoint file alone, in eval mode on the CPU.

    ``expected``: refuse a checkpoint of any other system class (and its subclasses)."""
    ckpt = read_checkpoint(path)
    meta = ckpt[CKPT_KEY]
    cls = system_class(meta["class_path"])
    if expected is not None and not issubclass(cls, expected):
        raise ValueError(
            f"{path}: a {meta['task']} checkpoint, expected a {expected.task or 'seqnlp'} one"
        )
    hparams = hyper_parameters(ckpt)
    for name in cls.training_only_hparams:
        hparams.pop(name, None)
    system = cls(codec=cls.codec_type.from_state(meta["codec"]), **hparams)
    system.load_state_dict(ckpt["state_dict"])
    return system.eval()


def average_checkpoints(paths: list[str | Path], output: str | Path) -> int:
    """Write a checkpoint whose weights are the mean of ``paths``' weights.

    The checkpoints must be of the same model: same task, codec, hyper-parameters and
    weight names and shapes. Everything but the weights (hyper-parameters, codec) comes
    from the first; optimiser and loop states are dropped, so the result is for
    evaluation and prediction. Integer tensors (counters) are taken from the first.
    Returns the number of checkpoints.
    """
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least 2 checkpoints, got {len(paths)}")
    first = read_checkpoint(paths[0])
    total = {k: v.double() if v.is_floating_point() else v for k, v in first["state_dict"].items()}
    for path in paths[1:]:
        ckpt = read_checkpoint(path)
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
