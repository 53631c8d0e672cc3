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
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from seqnlp.outputs import atomic_output, refuse_overwriting_input

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
    except pickle.UnpicklingError as err:
        # torch's message is several paragraphs with terminal escapes; keep its reason.
        text = _plain(str(err), first_line=False)
        reason = text.partition("WeightsUnpickler error:")[2]
        reason = reason.partition("Check the documentation")[0]
        reason = " ".join(reason.split()) or _plain(str(err))
        if "Unsupported global" in reason:
            reason = reason.partition(" was not an allowed global")[0]
            raise ValueError(
                f"{path}: refused: it holds pickled objects that a weights-only read does not "
                f"load ({reason}); seqnlp never unpickles code, and its own checkpoints need "
                f"none: this is not a seqnlp checkpoint, or it was tampered with"
            ) from None
        raise ValueError(f"{path}: cannot read checkpoint (damaged: {reason})") from None
    except Exception as err:  # torch raises several types for damaged files
        raise ValueError(
            f"{path}: cannot read checkpoint ({type(err).__name__}: {_plain(str(err))})"
        ) from None
    if not isinstance(ckpt, dict) or CKPT_KEY not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a seqnlp checkpoint (expected weights and vocabularies)")
    _check_layout(ckpt, path)
    return upgrade(ckpt)


def _check_layout(ckpt: dict[str, Any], path: str | Path) -> None:
    """Raise ValueError, naming the part, where a checkpoint's insides are not what
    seqnlp writes (so that a damaged file fails here in one line, not deep inside)."""
    meta = ckpt[CKPT_KEY]
    problem = None
    if not isinstance(meta, dict):
        problem = f"its {CKPT_KEY!r} entry is a {type(meta).__name__}, not a mapping"
    else:
        for key in ("task", "class_path"):
            if not isinstance(meta.get(key), str):
                problem = f"its {CKPT_KEY!r} entry has no {key} (a string)"
        if not isinstance(meta.get("codec", meta.get("vocab")), dict):
            problem = problem or f"its {CKPT_KEY!r} entry has no codec (a mapping)"
    state = ckpt["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        problem = problem or "its state_dict is not a mapping of names to tensors"
    if not isinstance(ckpt.get("hyper_parameters", {}), dict):
        problem = problem or "its hyper_parameters are not a mapping"
    if problem:
        raise ValueError(f"{path}: damaged seqnlp checkpoint: {problem}")


def _plain(message: str, first_line: bool = True) -> str:
    """An error message without terminal escape codes (its first line alone by default)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", message).strip()
    return text.split("\n")[0] if first_line else text


def system_class(class_path: str) -> type[System]:
    """The seqnlp system class a checkpoint names; refuses any class outside seqnlp
    before importing its module."""
    from seqnlp.tasks.base import System

    module, _, name = class_path.rpartition(".")
    if not module.startswith("seqnlp."):
        raise ValueError(f"checkpoint names class {class_path!r}, not a seqnlp system")
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError:
        found = None
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
    return build_system(cls, meta["codec"], hyper_parameters(ckpt), ckpt["state_dict"], path)


def upgrade_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """A copy of a saved system's hyper-parameters under today's names: the
    classifier's ``orthogonal_init: bool`` (0.1-0.2) is ``init: orthogonal | default``."""
    hparams = dict(hparams)
    if "orthogonal_init" in hparams:
        hparams["init"] = "orthogonal" if hparams.pop("orthogonal_init") else "default"
    return hparams


def build_system(
    cls: type[System], codec_state: dict[str, Any], hparams: dict[str, Any],
    state: dict[str, torch.Tensor] | None, path: str | Path,
) -> System:  # fmt: skip
    """A system of class ``cls`` from its codec's state and hyper-parameters, in eval mode,
    with the weights ``state`` (None: left as built, for the caller to load). Errors
    are one-line ValueErrors naming ``path`` (a checkpoint or a model folder)."""
    hparams = upgrade_hparams(hparams)
    for name in cls.training_only_hparams:
        hparams.pop(name, None)
    try:
        codec = cls.codec_type.from_state(codec_state)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        raise ValueError(f"{path}: damaged seqnlp checkpoint: its codec cannot be read "
                         f"({type(err).__name__}: {_plain(str(err))})") from None  # fmt: skip
    try:
        system = cls(codec=codec, **hparams)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: its hyper-parameters do not build a {cls.task} model "
                         f"({_plain(str(err))})") from None  # fmt: skip
    if state is not None:
        try:
            system.load_state_dict(state)
        except RuntimeError as err:
            detail = _plain(str(err).partition("\n")[2] or str(err))
            raise ValueError(f"{path}: its weights do not fit the model its hyper-parameters "
                             f"describe ({detail})") from None  # fmt: skip
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
    for path in paths:
        refuse_overwriting_input(str(path), str(output))
    with atomic_output(str(output), binary=True) as handle:
        torch.save({**keep, "state_dict": averaged, "averaged_from": [str(p) for p in paths]},
                   handle)  # fmt: skip
    return len(paths)
