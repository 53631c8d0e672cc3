"""seqnlp: recurrent sequence models on text, on PyTorch Lightning."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from seqnlp.predict import Predictor


def load(path: str, batch_size: int = 64, quantize: str | None = None) -> Predictor:
    """Load a checkpoint for prediction: ``seqnlp.load(path).predict(texts)``.

    ``quantize="int8"`` quantizes the recurrent and linear layers (CPU only).
    """
    from seqnlp.predict import load as _load

    return _load(path, batch_size=batch_size, quantize=quantize)


__all__ = ["__version__", "load"]
