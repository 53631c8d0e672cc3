"""Readers, data sources, batching, the codecs and the task DataModules.

Names are imported on first use (PEP 562), so that the torch-free parts (readers,
tag schemes, ``seqnlp.data.codecs``) can be imported without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "SeqDataModule": "seqnlp.data.base",
    "ClassificationCodec": "seqnlp.data.codecs",
    "TaggingCodec": "seqnlp.data.codecs",
    "TranslationCodec": "seqnlp.data.codecs",
    "LanguageModelCodec": "seqnlp.data.codecs",
    "ClassificationDataModule": "seqnlp.data.classification",
    "TaggingDataModule": "seqnlp.data.tagging",
    "TranslationDataModule": "seqnlp.data.translation",
    "LanguageModelDataModule": "seqnlp.data.language_model",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'seqnlp.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


__all__ = sorted(_HOMES)
