"""Prediction from a checkpoint: raw text in, labels out, in the input order.

The one place that turns ids back into text for users. ``load(path)`` reads a
checkpoint (no recipe, no data files) and returns the task's predictor.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TextIO

import torch

from seqnlp.data.readers import iter_lines, read_conll, read_tagging_file
from seqnlp.data.tagging import TaggingBatch, collate_tagging
from seqnlp.data.tagschemes import spans
from seqnlp.metrics import entity_scores
from seqnlp.tasks.base import System
from seqnlp.tasks.tagger import Tagger

Record = dict[str, Any]


class Predictor:
    """Base: batches inputs sorted by length, restores the input order."""

    def __init__(self, system: System, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.system = system.eval()
        self.batch_size = batch_size

    def predict(self, inputs: Sequence[Any]) -> list[Record]:
        """One record per input, in the input order."""
        results: list[Record | None] = [None] * len(inputs)
        order = sorted(range(len(inputs)), key=lambda i: self.length(inputs[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            for i, record in zip(idx, self.predict_batch([inputs[i] for i in idx]), strict=True):
                results[i] = record
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def length(self, item: Any) -> int:
        raise NotImplementedError

    def predict_batch(self, items: Sequence[Any]) -> list[Record]:
        raise NotImplementedError


class TaggingPredictor(Predictor):
    """Tags whitespace-tokenised sentences (strings) or token lists.

    Each record is ``{"tokens", "tags", "entities"}``; tags are IOB2 and each entity
    is ``{"type", "start", "end", "text", "confidence"}`` (``end`` exclusive). The
    confidence is the lowest posterior probability, under the model, of the
    predicted tag on any of the entity's tokens (CRF marginals, or the softmax).
    """

    system: Tagger

    def __init__(self, system: Tagger, batch_size: int = 64, confidence: bool = True) -> None:
        super().__init__(system, batch_size)
        self.confidence = confidence

    @staticmethod
    def tokens_of(item: str | Sequence[str]) -> list[str]:
        return item.split() if isinstance(item, str) else list(item)

    def length(self, item: str | Sequence[str]) -> int:
        return len(self.tokens_of(item))

    @torch.inference_mode()
    def predict_batch(self, items: Sequence[str | Sequence[str]]) -> list[Record]:
        sentences = [self.tokens_of(item) for item in items]
        real = [i for i, s in enumerate(sentences) if s]
        records: list[Record] = [{"tokens": [], "tags": [], "entities": []} for _ in sentences]
        if not real:
            return records
        vocab = self.system.vocab
        encoded = []
        for i in real:
            word_ids, char_ids = vocab.encode_tokens(sentences[i])
            encoded.append({"word_ids": word_ids, "char_ids": char_ids})
        batch: TaggingBatch = collate_tagging(encoded)
        emissions = self.system.emissions(batch)
        paths = self.system.decode(emissions, batch.mask)
        probs = self.system.tag_probabilities(emissions, batch.mask) if self.confidence else None
        for row, (i, path) in enumerate(zip(real, paths, strict=True)):
            tokens = sentences[i]
            tags = vocab.decode_tags(path)
            entities = []
            for kind, start, end in spans(tags):
                entity: Record = {
                    "type": kind,
                    "start": start,
                    "end": end,
                    "text": " ".join(tokens[start:end]),
                }
                if probs is not None:
                    p = probs[row, torch.arange(start, end), torch.tensor(path[start:end])]
                    entity["confidence"] = round(float(p.min()), 4)
                entities.append(entity)
            records[i] = {"tokens": tokens, "tags": tags, "entities": entities}
        return records

    def evaluate(self, path: str | Path, **reader_options: Any) -> dict[str, float]:
        """Entity scores of the model on a labelled tagging file."""
        gold = read_tagging_file(path, **reader_options)
        pred = self.predict([r["tokens"] for r in gold])
        scores = entity_scores([r["tags"] for r in gold], [p["tags"] for p in pred])
        return {"sentences": float(len(gold)), **scores}


def load(path: str | Path, batch_size: int = 64) -> Predictor:
    """The predictor for a checkpoint, whatever its task."""
    system = System.load(path)
    if isinstance(system, Tagger):
        return TaggingPredictor(system, batch_size)
    raise ValueError(f"{path}: no predictor for task {system.task!r}")


# -- files ------------------------------------------------------------------------
InputFormat = Literal["auto", "text", "conll", "jsonl"]
OutputFormat = Literal["auto", "jsonl", "conll"]


def read_inputs(path: str, fmt: InputFormat = "auto") -> Iterator[list[str]]:
    """Yield the token lists of a prediction input file, one per record.

    ``text``: one whitespace-tokenised sentence per line (an empty line is an empty
    sentence); ``conll``: blank-line separated column files (tokens in column 0);
    ``jsonl``: objects with ``tokens``. ``-`` reads standard input as text.
    """
    if fmt == "auto":
        fmt = (
            "conll"
            if path.endswith((".conll", ".iob", ".bio", ".txt.conll"))
            else ("jsonl" if path.endswith(".jsonl") else "text")
        )
    if path == "-":
        for line in sys.stdin:
            yield line.split()
        return
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such input file")
    if fmt == "conll":
        for record in read_conll(path, tag_column=None):
            yield record["tokens"]
    elif fmt == "jsonl":
        for lineno, line in iter_lines(path):
            if not line.strip():
                yield []
                continue
            try:
                tokens = json.loads(line)["tokens"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path}:{lineno}: expected an object with 'tokens'") from None
            yield [str(t) for t in tokens]
    else:
        for _, line in iter_lines(path):
            yield line.split()


def format_record(record: Record, fmt: Literal["jsonl", "conll"]) -> str:
    if fmt == "jsonl":
        return json.dumps(record, ensure_ascii=False) + "\n"
    rows = "".join(f"{w}\t{t}\n" for w, t in zip(record["tokens"], record["tags"], strict=True))
    return rows + "\n"


@contextmanager
def atomic_output(path: str) -> Iterator[TextIO]:
    """Write to a temporary file beside ``path``; rename only once complete."""
    if path == "-":
        yield sys.stdout
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predict_file(
    predictor: Predictor,
    input_path: str,
    output_path: str,
    input_format: InputFormat = "auto",
    output_format: OutputFormat = "auto",
    chunk_size: int = 10_000,
) -> int:
    """Stream ``input_path`` through the predictor; returns the number of records written."""
    fmt: Literal["jsonl", "conll"] = (
        ("conll" if output_path.endswith(".conll") else "jsonl")
        if output_format == "auto"
        else output_format
    )
    count = 0
    with atomic_output(output_path) as out:
        for chunk in chunked(read_inputs(input_path, input_format), chunk_size):
            for record in predictor.predict(chunk):
                out.write(format_record(record, fmt))
                count += 1
    return count


__all__ = ["Predictor", "TaggingPredictor", "load", "predict_file", "read_inputs"]
