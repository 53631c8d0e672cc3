"""Readers, data sources, batching and the task DataModules."""

from seqnlp.data.base import SeqDataModule
from seqnlp.data.classification import ClassificationDataModule, ClassificationVocab
from seqnlp.data.tagging import TaggingDataModule, TaggingVocab
from seqnlp.data.translation import TranslationDataModule, TranslationVocab

__all__ = [
    "ClassificationDataModule",
    "ClassificationVocab",
    "SeqDataModule",
    "TaggingDataModule",
    "TaggingVocab",
    "TranslationDataModule",
    "TranslationVocab",
]
