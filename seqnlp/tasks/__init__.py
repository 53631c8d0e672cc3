"""Lightning systems, one per task."""

from seqnlp.tasks.base import System
from seqnlp.tasks.classifier import Classifier
from seqnlp.tasks.language_model import LanguageModel
from seqnlp.tasks.tagger import Tagger
from seqnlp.tasks.translator import Translator

__all__ = ["Classifier", "LanguageModel", "System", "Tagger", "Translator"]
