"""Classification with ONNX Runtime: the classifier graph's logits and the records
of ``ClassificationRecords`` (the torch classifier's own code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seqnlp.data.codecs import ClassificationCodec
from seqnlp.data.sorting import pad_rows
from seqnlp.onnx_runtime.base import OnnxPredictor
from seqnlp.predict.classification_records import ClassificationRecords


class OnnxClassificationPredictor(ClassificationRecords, OnnxPredictor):
    """``ClassificationPredictor``'s records (see it for what they hold), from an
    exported classifier graph run by ONNX Runtime.

    Args:
        graph: the classifier graph (``onnx/classifier.onnx`` or its int8 copy).
        codec, batch_size, threads: as ``OnnxPredictor``.
        pretokenized: as ``ClassificationPredictor``.
    """

    codec: ClassificationCodec

    def __init__(
        self, graph: str | Path, codec: ClassificationCodec, batch_size: int = 64,
        threads: int | None = None, pretokenized: bool | None = None,
    ) -> None:  # fmt: skip
        super().__init__(graph, codec, batch_size, threads)
        self.pretokenized = pretokenized

    def class_probabilities(self, examples: list[dict[str, list[Any]]]) -> list[list[float]]:
        ids, lengths = pad_rows([e["token_ids"] for e in examples])  # (batch, time), (batch,)
        logits = self.run({"token_ids": ids, "lengths": lengths})[0]  # (batch, classes)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (shifted / shifted.sum(axis=1, keepdims=True)).tolist()
