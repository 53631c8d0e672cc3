"""Readers, data sources, batching and the task DataModules."""

from seqnlp.data.base import SeqDataModule
from seqnlp.data.classification import ClassificationCodec, ClassificationDataModule
from seqnlp.data.tagging import TaggingCodec, TaggingDataModule
from seqnlp.data.translation import TranslationCodec, TranslationDataModule

__all__ = [
    "ClassificationCodec",
    "ClassificationDataModule",
    "SeqDataModule",
    "TaggingCodec",
    "TaggingDataModule",
    "TranslationCodec",
    "TranslationDataModule",
]
