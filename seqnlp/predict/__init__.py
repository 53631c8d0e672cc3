"""Prediction: a checkpoint in, a predictor out; raw text in, records out, in order.

The one place that turns ids back into text for users. ``load(path, **options)``
reads a checkpoint (no recipe, no data files) and builds the task's predictor once,
with every prediction option; its ``predict`` takes a list, ``evaluate`` scores a
labelled file, and ``predict_file`` streams a file, on one process or shared among
the processes of ``--devices N``.
"""

from __future__ import annotations

import importlib
from typing import Any

#: where each name lives; imported on first use (PEP 562), so that the torch-free parts
#: (``base``, ``files``) import without torch, for ONNX Runtime prediction.
_HOMES = {
    "PREDICTORS": "seqnlp.predict.api",
    "load": "seqnlp.predict.api",
    "ClassificationPredictor": "seqnlp.predict.classifier",
    "LanguageModelPredictor": "seqnlp.predict.language_model",
    "Predictor": "seqnlp.predict.base",
    "Record": "seqnlp.predict.base",
    "loaded_objects_frozen": "seqnlp.predict.base",
    "TorchPredictor": "seqnlp.predict.torch_base",
    "RankShared": "seqnlp.predict.ranks",
    "predict_file": "seqnlp.predict.ranks",
    "predict_on_every_rank": "seqnlp.predict.ranks",
    "read_inputs": "seqnlp.predict.files",
    "TaggingPredictor": "seqnlp.predict.tagger",
    "TranslationPredictor": "seqnlp.predict.translator",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'seqnlp.predict' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


__all__ = sorted(_HOMES)
