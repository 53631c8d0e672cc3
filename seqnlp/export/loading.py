"""Reading a model back for torch prediction: a checkpoint, an exported folder, or a
folder on the Hugging Face Hub (``hf://ORG/NAME[@REVISION]``), with no unpickling."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqnlp.export.folder import WEIGHTS, is_model_folder, read_codec_state, read_config

if TYPE_CHECKING:
    from seqnlp.tasks.base import System

HUB_PREFIX = "hf://"


def resolve(path: str | Path) -> Path:
    """A local path for ``path``: itself, or for ``hf://ORG/NAME[@REVISION]`` the folder
    fetched from the Hub (``hub_folder``)."""
    text = str(path)
    return hub_folder(text) if text.startswith(HUB_PREFIX) else Path(path)


def hub_folder(url: str, timeout: float = 10.0) -> Path:
    """The local copy of a model folder on the Hugging Face Hub, fetched once through
    ``huggingface_hub`` (cached under ``HF_HOME``).

    Offline (``HF_HUB_OFFLINE=1``) only the cache is used; a Hub that cannot be
    reached fails within about ``timeout`` seconds. Either way the error says how to
    bring the folder over by hand.
    """
    name, _, revision = url.removeprefix(HUB_PREFIX).strip("/").partition("@")
    if name.count("/") != 1 or not all(name.split("/")):
        raise ValueError(f"{url}: expected hf://ORG/NAME or hf://ORG/NAME@REVISION")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise ValueError(f"{url}: loading from the Hub needs huggingface_hub "
                         f"(pip install huggingface_hub)") from None  # fmt: skip
    by_hand = (f"download it where there is a connection (`hf download {name} --local-dir "
               f"DIR`) and load DIR instead")  # fmt: skip
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    started = time.monotonic()
    try:
        folder = snapshot_download(name, revision=revision or None, local_files_only=offline,
                                   etag_timeout=timeout)  # fmt: skip
    except LocalEntryNotFoundError:
        why = ("offline (HF_HUB_OFFLINE is set) and not in the local cache" if offline else
               f"the Hub could not be reached in {time.monotonic() - started:.0f} s")
        raise ValueError(f"{url}: {why}: {by_hand}") from None
    except Exception as err:  # huggingface_hub and requests raise many kinds
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{url}: cannot fetch from the Hub ({reason}): {by_hand}") from None
    if not is_model_folder(folder):
        raise ValueError(f"{url}: the repository holds no seqnlp model folder (no config.json)")
    return Path(folder)


def open_model(path: str | Path) -> tuple[System, dict[str, Any]]:
    """The system of a checkpoint or model folder (local or ``hf://``), in eval mode on
    the CPU, and the folder's ``config.json`` (empty for a checkpoint)."""
    from seqnlp.checkpoints import load_system

    local = resolve(path)
    if local.is_dir():
        return load_folder(local, shown=str(path))
    return load_system(local), {}


def load_folder(folder: str | Path, shown: str | None = None) -> tuple[System, dict[str, Any]]:
    """The system of an exported folder and its config: hyper-parameters and codec from
    JSON, weights from safetensors (reading either runs no code)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    from seqnlp.checkpoints import build_system, system_class

    shown = shown or str(folder)
    config = read_config(folder)
    cls = system_class(config["class_path"])
    system = build_system(cls, read_codec_state(folder), config["hyper_parameters"], None, shown)
    weights = Path(folder) / WEIGHTS
    if not weights.is_file():
        raise ValueError(f"{shown}: no {WEIGHTS} in the model folder")
    try:  # load_model restores weights shared between layers (tied embeddings)
        missing, unexpected = load_model(system.network, weights, strict=False)
    except (SafetensorError, OSError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0]
        raise ValueError(f"{shown}: {WEIGHTS} cannot be read ({reason})") from None
    if missing or unexpected:
        first = sorted([*missing, *unexpected])[0]
        raise ValueError(f"{shown}: {WEIGHTS} does not fit the model config.json describes "
                         f"({len(missing)} missing, {len(unexpected)} unexpected, first "
                         f"{first})")  # fmt: skip
    return system.eval(), config
