"""seqnlp: recurrent sequence models on text, on PyTorch Lightning."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from seqnlp.predict import Predictor

try:  # the one version string is pyproject.toml's, as installed
    __version__ = version("seqnlp")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


def load(path: str | Path, **options: Any) -> Predictor:
    """Load a checkpoint for prediction: ``seqnlp.load(path).predict(texts)``.

    Every prediction option is given here (``device``, ``quantize="int8"``,
    ``batch_size``, ``parallel_batches``, ``confidence``, ``n_best``, ``beam_size``,
    ``length_penalty``, ``max_tokens``): see ``seqnlp.predict.load``. ``path`` is a
    checkpoint, a folder written by ``seqnlp export`` or ``hf://ORG/NAME``;
    ``runtime="onnx"`` runs a folder's ONNX graphs with ONNX Runtime and NumPy alone.
    """
    if options.get("runtime", "torch") == "onnx":  # never imports torch
        from seqnlp.onnx_runtime import load as load_onnx

        options.pop("runtime")
        return load_onnx(path, **options)
    from seqnlp.predict import load as _load

    return _load(path, **options)


__all__ = ["__version__", "load"]
