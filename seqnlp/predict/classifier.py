"""Classification prediction: texts in, labels and their probabilities out."""

from __future__ import annotations

from typing import Any

import torch

from seqnlp.data.classification import ClassificationCodec, collate_classification
from seqnlp.models.classifier import ClassifierNetwork
from seqnlp.predict.classification_records import ClassificationRecords
from seqnlp.predict.streaming import ClassificationStream
from seqnlp.predict.torch_base import TorchPredictor


class ClassificationPredictor(ClassificationRecords, TorchPredictor):
    """Labels raw texts: each is split into tokens and normalised as the training text
    was (``codec.raw``: "Great film!" reads as "great film !" for a model trained on
    SST-2), or with ``pretokenized`` taken as tokens separated by white space.

    Each record is ``{"text", "label", "probability", "probabilities"}``
    (probabilities by label). Text that is empty or only whitespace gives
    ``label`` and ``probability`` null and no probabilities.

    The records are built by ``ClassificationRecords`` (torch-free, shared with the
    ONNX Runtime classifier); this class adds the torch network's call.

    Args:
        network, codec, batch_size, parallel_batches: as ``Predictor``.
        pretokenized: texts are tokenized already. Default: ``predict`` takes raw
            text, ``evaluate`` reads a labelled file as the training text was.
    """

    network: ClassifierNetwork
    codec: ClassificationCodec

    def __init__(
        self, network: ClassifierNetwork, codec: ClassificationCodec, batch_size: int = 64,
        parallel_batches: int = 1, pretokenized: bool | None = None,
    ) -> None:  # fmt: skip
        super().__init__(network, codec, batch_size, parallel_batches)
        self.pretokenized = pretokenized

    def stream(self) -> ClassificationStream:
        """A ``ClassificationStream``: one token at a time, in constant memory, with the
        probabilities of the text so far after each (unidirectional models without
        character language models)."""
        return ClassificationStream(self)

    @torch.inference_mode()
    def class_probabilities(self, examples: list[dict[str, list[Any]]]) -> list[list[float]]:
        batch = self.to_device(collate_classification(examples))
        logits = self.network(batch.token_ids, batch.lengths, batch.char_ids)  # (batch, classes)
        return logits.softmax(dim=-1).tolist()
