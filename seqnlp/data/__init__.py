"""Readers, data sources, batching and the task DataModules."""

from seqnlp.data.base import SeqDataModule
from seqnlp.data.tagging import TaggingDataModule, TaggingVocab

__all__ = ["SeqDataModule", "TaggingDataModule", "TaggingVocab"]
