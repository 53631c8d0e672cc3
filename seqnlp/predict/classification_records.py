"""What every classification predictor shares, whatever runs its network (torch,
ONNX Runtime): texts encoded as the training text was, records with labels and
probabilities, output formats and evaluation.

Torch-free: ``ClassificationPredictor`` (``seqnlp.predict.classifier``) and the ONNX
Runtime classifier (``seqnlp.onnx_runtime.classifier``) inherit
``ClassificationRecords`` and add only the network's call (``class_probabilities``),
so their records are built by the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seqnlp.data.classification_readers import read_labelled_text, tsv_cell_problem
from seqnlp.data.codecs import ClassificationCodec
from seqnlp.data.sources import labelled_file
from seqnlp.metrics import classification_scores
from seqnlp.predict.base import Predictor, Record
from seqnlp.text import Tokenized


class ClassificationRecords(Predictor):
    """The classification predictors' records (see ``ClassificationPredictor`` for what
    they hold); a runtime adds ``class_probabilities`` and sets ``pretokenized``."""

    task = "classification"
    options = ("pretokenized",)
    text_formats = ("tsv",)
    codec: ClassificationCodec
    #: texts are tokenized already (None: ``predict`` takes raw text, ``evaluate``
    #: reads a labelled file as the training text was).
    pretokenized: bool | None = None

    def labels(self) -> dict[str, list[str]]:
        return {"labels": list(self.codec.labels.itos)}

    def length(self, item: str) -> int:
        return len(item.split())

    def class_probabilities(self, examples: list[dict[str, list[Any]]]) -> list[list[float]]:
        """The runtime's part: class probabilities (batch, classes) of encoded texts
        (``ClassificationCodec.encode_example``: non-empty ``token_ids``, and
        ``char_ids`` where the codec has characters)."""
        raise NotImplementedError

    def predict_batch(self, items: Sequence[str]) -> list[Record]:
        records: list[Record] = [self.empty_record(t) for t in items]
        codec = self.codec
        encoded = {
            i: codec.encode_example(
                (codec.pretokenized_form if self.pretokenized or isinstance(t, Tokenized)
                 else codec.raw_form)(t)
            )
            for i, t in enumerate(items) if t.strip()
        }  # fmt: skip
        encoded = {i: example for i, example in encoded.items() if example["token_ids"]}
        if not encoded:
            return records
        probs = self.class_probabilities(list(encoded.values()))  # (batch, classes)
        for row, i in zip(probs, encoded, strict=True):
            records[i] = self.record(items[i], row)
        return records

    @staticmethod
    def empty_record(text: str) -> Record:
        """The record of a text without tokens: no label."""
        return {"text": text, "label": None, "probability": None, "probabilities": {}}

    def record(self, text: str, probabilities: Sequence[float]) -> Record:
        """The record of ``text`` whose class probabilities are ``probabilities``."""
        labels = self.codec.labels.itos
        best = max(range(len(probabilities)), key=probabilities.__getitem__)
        return {
            "text": text, "label": labels[best], "probability": round(probabilities[best], 4),
            "probabilities": {
                label: round(p, 4) for label, p in zip(labels, probabilities, strict=True)
            },
        }  # fmt: skip

    def format_record(self, record: Record, fmt: str) -> str:
        """``tsv``: ``label<TAB>probability<TAB>text`` (empty cells for empty text)."""
        if fmt != "tsv":
            return super().format_record(record, fmt)
        problem = tsv_cell_problem(record["text"])
        if problem:
            raise ValueError(f"text {record['text'][:40]!r} cannot be written as TSV ({problem}): "
                             f"write JSON lines instead (--output_format jsonl)")  # fmt: skip
        prob = "" if record["probability"] is None else f"{record['probability']:.4f}"
        return f"{record['label'] or ''}\t{prob}\t{record['text']}\n"

    def read_labelled(self, source: str, **reader_options: Any) -> tuple[list[str], list[int]]:
        """Texts and gold class ids of a labelled-text file or ``NAME:SPLIT`` (``fmt``,
        ``label_column``, ``text_column``, ``header``, ``encoding``: as
        ``read_labelled_text``). Its texts are tokenized if ``pretokenized`` says so,
        or by default if the training text was."""
        path = labelled_file(source)
        tokenized = self.codec.pretokenized if self.pretokenized is None else self.pretokenized
        gold = read_labelled_text(path, **reader_options)
        labels = self.codec.labels
        unseen = sorted({r["label"] for r in gold} - set(labels.itos))
        if unseen:
            raise ValueError(f"{path}: labels {unseen} are not among the model's {labels.itos}")
        texts = [Tokenized(r["text"]) if tokenized else r["text"] for r in gold]
        return texts, [labels.index(r["label"]) for r in gold]

    def score(self, gold: list[int], records: list[Record]) -> dict[str, Any]:
        """Accuracy, macro-F1, per-class scores, the confusion matrix and the labels."""
        labels = self.codec.labels
        predicted = [labels.index(r["label"]) for r in records]
        scores = classification_scores(gold, predicted, labels.itos)
        return {"examples": float(len(gold)), **scores, "labels": labels.itos}
