"""One network per task: plain ``nn.Module``s built from typed sizes, tensors in and out.

No Lightning, no file I/O and no vocabularies inside: the systems in ``seqnlp.tasks``
train them, the predictors in ``seqnlp.predict`` run them, ``seqnlp.quantize`` turns
them to int8.
"""

from seqnlp.models.classifier import ClassifierNetwork
from seqnlp.models.language_model import LanguageModelNetwork
from seqnlp.models.tagger import TaggerNetwork
from seqnlp.models.translator import TranslatorNetwork

__all__ = ["ClassifierNetwork", "LanguageModelNetwork", "TaggerNetwork", "TranslatorNetwork"]
