"""Lightning systems, one per task."""

from seqnlp.tasks.base import System
from seqnlp.tasks.classifier import Classifier
from seqnlp.tasks.tagger import Tagger
from seqnlp.tasks.translator import Translator

__all__ = ["Classifier", "System", "Tagger", "Translator"]
