"""Prediction from a checkpoint: raw text in, labels out, in the input order.

The one place that turns ids back into text for users. ``load(path)`` reads a
checkpoint (no recipe, no data files) and returns the task's predictor; the
predictors' ``predict`` takes a list, ``predict_file`` streams a file, and
``predict_file_on_every_rank`` shares that among the processes of ``--devices N``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

import torch
import torch.distributed as dist
from lightning_fabric.utilities.apply_func import move_data_to_device

from seqnlp.data.batching import pad_2d
from seqnlp.data.classification import collate_classification
from seqnlp.data.readers import (
    decode_lines,
    iter_json_lines,
    iter_lines,
    read_conll,
    read_tagging_file,
)
from seqnlp.data.tagging import TaggingBatch, collate_distinct_tokens
from seqnlp.data.tagschemes import spans
from seqnlp.data.text_readers import read_labelled_text
from seqnlp.data.translation import collate_translation
from seqnlp.distributed import rank_and_world
from seqnlp.metrics import classification_scores, entity_scores
from seqnlp.tasks.base import System
from seqnlp.tasks.classifier import Classifier
from seqnlp.tasks.tagger import Tagger
from seqnlp.tasks.translator import Translator, corpus_scores

Record = dict[str, Any]
T = TypeVar("T")
log = logging.getLogger(__name__)


class Predictor:
    """Base: batches inputs sorted by length, restores the input order."""

    #: the JSON-lines input field, and the output formats besides ``jsonl``.
    jsonl_field: str = "text"
    text_formats: tuple[str, ...] = ()
    #: a budget of padded ``length`` units (inputs x the longest) per batch; None: no budget.
    max_tokens: int | None = None
    #: on CPU, batches predicted at once, each in its own thread with an equal share of
    #: torch's threads (``--parallel_batches``); 1: one batch at a time on all of them.
    parallel_batches: int = 1

    def __init__(self, system: System, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.system = system.eval()
        self.batch_size = batch_size

    def predict(
        self, inputs: Sequence[Any], on_batch: Callable[[int], object] | None = None
    ) -> list[Record]:
        """One record per input, in the input order.

        ``on_batch(n)`` is called after each batch with its size (progress display).
        """
        results: list[Record | None] = [None] * len(inputs)
        lengths = [self.length(item) for item in inputs]
        order = sorted(range(len(inputs)), key=lengths.__getitem__)
        batches = list(self.batches(order, lengths))
        for idx, records in zip(batches, self._records_by_batch(inputs, batches), strict=True):
            for i, record in zip(idx, records, strict=True):
                results[i] = record
            if on_batch is not None:
                on_batch(len(idx))
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _records_by_batch(
        self, inputs: Sequence[Any], batches: list[list[int]]
    ) -> Iterator[list[Record]]:
        """Each batch's records, in order: one batch at a time or, with
        ``parallel_batches`` > 1 on CPU, that many at once in threads (torch releases
        the GIL in its operations): small recurrent products use two cores better as
        two one-thread products than as one two-thread product. torch's thread count
        is process-wide: it is shared out among the threads while they run, then
        restored."""

        def run(idx: list[int]) -> list[Record]:
            return self.predict_batch([inputs[i] for i in idx])

        workers = min(self.parallel_batches, len(batches))
        if workers <= 1 or self.system.device.type != "cpu":
            yield from map(run, batches)
            return
        threads = torch.get_num_threads()
        share = max(1, threads // workers)
        torch.set_num_threads(share)
        try:  # OpenMP's count is per thread: each worker sets its own
            init = {"initializer": torch.set_num_threads, "initargs": (share,)}
            with ThreadPoolExecutor(workers, **init) as pool:
                yield from pool.map(run, batches)
        finally:
            torch.set_num_threads(threads)

    def length(self, item: Any) -> int:
        raise NotImplementedError

    def batches(self, order: list[int], lengths: list[int]) -> Iterator[list[int]]:
        """``order`` (by length) cut into batches of at most ``batch_size`` inputs and, with
        ``max_tokens``, at most that many padded length units: a long input does not pad a
        whole batch to its length, and one over the budget is a batch of its own."""
        batch: list[int] = []
        for i in order:
            over = self.max_tokens is not None and (len(batch) + 1) * lengths[i] > self.max_tokens
            if batch and (len(batch) == self.batch_size or over):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def to_device(self, batch: T) -> T:
        """A collated (CPU) batch on the system's device (a GPU under ``--devices``)."""
        device = self.system.device
        return batch if device.type == "cpu" else move_data_to_device(batch, device)

    def predict_batch(self, items: Sequence[Any]) -> list[Record]:
        raise NotImplementedError

    def format_record(self, record: Record, fmt: str) -> str:
        """One record as output text (``jsonl`` here; subclasses add formats)."""
        return json.dumps(record, ensure_ascii=False) + "\n"


class TaggingPredictor(Predictor):
    """Tags whitespace-tokenised sentences (strings) or token lists.

    Each record is ``{"tokens", "tags", "entities"}``; tags are IOB2 and each entity
    is ``{"type", "start", "end", "text", "confidence"}`` (``end`` exclusive). The
    confidence is the lowest posterior probability, under the model, of the
    predicted tag on any of the entity's tokens (CRF marginals, or the softmax).
    With ``n_best`` > 1 a record also has ``"n_best"``: up to that many distinct
    ``{"tags", "probability"}``, from the CRF's k-best paths in order (the first is
    the Viterbi path); BIOES paths that read as the same IOB2 tags are merged and
    their probabilities summed.
    """

    system: Tagger
    jsonl_field = "tokens"
    text_formats = ("conll",)
    token_cache_size = 200_000

    def __init__(
        self, system: Tagger, batch_size: int = 64, confidence: bool = True, n_best: int = 1
    ) -> None:
        super().__init__(system, batch_size)
        if n_best < 1:
            raise ValueError(f"n_best must be at least 1, got {n_best}")
        if n_best > 1 and system.crf is None:
            raise ValueError("n-best paths need the CRF head (this tagger has a softmax head)")
        self.confidence = confidence
        self.n_best = n_best
        # token -> (word id, char ids): text repeats its words (Zipf), so each distinct
        # token is encoded once; at most ``token_cache_size``, cleared when full.
        self._encoded: dict[str, tuple[int, list[int]]] = {}

    def encode_token(self, token: str) -> tuple[int, list[int]]:
        """The word id and character ids of ``token`` (cached; do not modify the list)."""
        hit = self._encoded.get(token)
        if hit is None:
            if len(self._encoded) >= self.token_cache_size:
                self._encoded.clear()
            word_ids, char_ids = self.system.vocab.encode_tokens([token])
            hit = self._encoded[token] = (word_ids[0], char_ids[0])
        return hit

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
        batch: TaggingBatch = self.to_device(
            collate_distinct_tokens([sentences[i] for i in real], self.encode_token)
        )
        emissions = self.system.emissions(batch)  # (batch, time, tags)
        paths = self.system.decode(emissions, batch.mask)
        path_probs: list[list[float]] | None = None  # each path's tag posteriors (batch, time)
        if self.confidence:
            probs = self.system.tag_probabilities(emissions, batch.mask)  # (batch, time, tags)
            chosen = pad_2d(paths).to(probs.device)  # (batch, time)
            path_probs = probs.gather(2, chosen.unsqueeze(-1)).squeeze(-1).tolist()
        # Ask for extra paths: several BIOES paths can read as the same IOB2 tags.
        nbest = (
            self.system.nbest(emissions, batch.mask, 3 * self.n_best) if self.n_best > 1 else None
        )
        for row, (i, path) in enumerate(zip(real, paths, strict=True)):
            tokens = sentences[i]
            tags = vocab.decode_tags(path)
            entities = []
            for kind, start, end in spans(tags):
                entity: Record = {
                    "type": kind, "start": start, "end": end, "text": " ".join(tokens[start:end]),
                }  # fmt: skip
                if path_probs is not None:
                    entity["confidence"] = round(min(path_probs[row][start:end]), 4)
                entities.append(entity)
            records[i] = {"tokens": tokens, "tags": tags, "entities": entities}
            if nbest is not None:
                records[i]["n_best"] = self._distinct(nbest[row])
        return records

    def _distinct(self, paths: list[tuple[list[int], float]]) -> list[Record]:
        """Up to ``n_best`` distinct IOB2 tag sequences, in the order of their best path;
        each probability sums the paths that read as that sequence."""
        merged: dict[tuple[str, ...], float] = {}
        for path, log_prob in paths:
            tags = tuple(self.system.vocab.decode_tags(path))
            if tags in merged or len(merged) < self.n_best:
                merged[tags] = merged.get(tags, 0.0) + math.exp(log_prob)
        return [{"tags": list(t), "probability": round(p, 4)} for t, p in merged.items()]

    def format_record(self, record: Record, fmt: str) -> str:
        """``conll``: ``token<TAB>tag`` lines closed by one blank line."""
        if fmt != "conll":
            return super().format_record(record, fmt)
        rows = "".join(f"{w}\t{t}\n" for w, t in zip(record["tokens"], record["tags"], strict=True))
        return rows + "\n"

    def evaluate(self, path: str | Path, **reader_options: Any) -> dict[str, Any]:
        """Entity scores of the model on a labelled tagging file."""
        gold = read_tagging_file(path, **reader_options)
        pred = self.predict([r["tokens"] for r in gold])
        scores = entity_scores([r["tags"] for r in gold], [p["tags"] for p in pred])
        return {"sentences": float(len(gold)), **scores}


class ClassificationPredictor(Predictor):
    """Labels raw texts.

    Each record is ``{"text", "label", "probability", "probabilities"}``
    (probabilities by label). Text that is empty or only whitespace gives
    ``label`` and ``probability`` null and no probabilities.
    """

    system: Classifier
    text_formats = ("tsv",)

    def length(self, item: str) -> int:
        return len(item.split())

    @torch.inference_mode()
    def predict_batch(self, items: Sequence[str]) -> list[Record]:
        vocab = self.system.vocab
        records: list[Record] = [
            {"text": t, "label": None, "probability": None, "probabilities": {}} for t in items
        ]
        encoded = {i: vocab.encode_text(t) for i, t in enumerate(items) if t.strip()}
        encoded = {i: ids for i, ids in encoded.items() if ids}
        if not encoded:
            return records
        batch = self.to_device(
            collate_classification([{"token_ids": ids} for ids in encoded.values()])
        )
        probs = self.system.logits(batch).softmax(dim=-1)  # (batch, classes)
        labels = vocab.labels.itos
        for row, i in zip(probs.tolist(), encoded, strict=True):
            best = max(range(len(row)), key=row.__getitem__)
            records[i].update(
                label=labels[best],
                probability=round(row[best], 4),
                probabilities={label: round(p, 4) for label, p in zip(labels, row, strict=True)},
            )
        return records

    def format_record(self, record: Record, fmt: str) -> str:
        """``tsv``: ``label<TAB>probability<TAB>text`` (empty cells for empty text)."""
        if fmt != "tsv":
            return super().format_record(record, fmt)
        prob = "" if record["probability"] is None else f"{record['probability']:.4f}"
        return f"{record['label'] or ''}\t{prob}\t{record['text']}\n"

    def evaluate(self, path: str | Path, **reader_options: Any) -> dict[str, Any]:
        """Accuracy, macro-F1, per-class scores and confusion matrix on a labelled file."""
        gold = read_labelled_text(path, **reader_options)
        labels = self.system.vocab.labels
        unseen = sorted({r["label"] for r in gold} - set(labels.itos))
        if unseen:
            raise ValueError(f"{path}: labels {unseen} are not among the model's {labels.itos}")
        pred = self.predict([r["text"] for r in gold])
        scores = classification_scores(
            [labels.index(r["label"]) for r in gold],
            [labels.index(p["label"]) for p in pred],
            labels.itos,
        )
        return {"examples": float(len(gold)), **scores, "labels": labels.itos}


class TranslationPredictor(Predictor):
    """Translates raw source sentences.

    Each record is ``{"source", "translation"}``, plus with ``n_best`` > 1
    ``"n_best"``: ``{"translation", "log_prob", "score"}`` best first (``score`` is
    the length-penalised ranking score). An empty line gives an empty translation.

    Sources are never cut. A batch holds at most ``max_tokens`` padded source pieces
    (sentences x the longest), so that one long source does not pad a whole batch to
    its length; a longer source is translated alone. A translation that reaches the
    model's length limit (``max_length_ratio`` x source pieces + ``max_length_offset``)
    without ending is kept and logged as a warning, with the start of its source.
    """

    system: Translator
    text_formats = ("text",)

    def __init__(
        self, system: Translator, batch_size: int = 64, beam_size: int = 5, n_best: int = 1,
        length_penalty: float | None = None, max_tokens: int = 8192,
    ) -> None:  # fmt: skip
        super().__init__(system, batch_size)
        if not 1 <= n_best <= beam_size:
            raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}), got {n_best}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        self.beam_size = beam_size
        self.n_best = n_best
        self.length_penalty = length_penalty
        self.max_tokens = max_tokens

    def length(self, item: str) -> int:
        """Source pieces, ``</s>`` included."""
        return len(self.system.vocab.encode_source(item))

    @torch.inference_mode()
    def predict_batch(self, items: Sequence[str]) -> list[Record]:
        vocab = self.system.vocab
        records: list[Record] = [{"source": t, "translation": ""} for t in items]
        real = [i for i, t in enumerate(items) if t.strip()]
        if not real:
            return records
        batch = collate_translation([{"source_ids": vocab.encode_source(items[i])} for i in real],
                                    vocab.target.bos_id, vocab.target.eos_id)  # fmt: skip
        batch = self.to_device(batch)
        found = self.system.translate(batch, self.beam_size, self.n_best, self.length_penalty)
        limits = self.system.max_lengths(batch).tolist()
        for i, hyps, limit in zip(real, found, limits, strict=True):
            records[i]["translation"] = vocab.decode_target(hyps[0].tokens)
            if len(hyps[0].tokens) >= limit:
                log.warning("translation stopped at the length limit of %d pieces (max_length_ratio"
                            " x source pieces + max_length_offset) without ending, may be cut; "
                            "source: %.80r", limit, items[i])  # fmt: skip
            if self.n_best > 1:
                records[i]["n_best"] = [
                    {"translation": vocab.decode_target(h.tokens),
                     "log_prob": round(h.log_prob, 4), "score": round(h.score, 4)}
                    for h in hyps
                ]  # fmt: skip
        return records

    @torch.inference_mode()
    def attention(self, source: str, target: str | None = None) -> Record:
        """Attention of one pair: ``{"source_pieces", "target_pieces", "weights"}``, the
        weights a (target pieces + ``</s>``) x (source pieces + ``</s>``) list of rows.
        Without ``target`` the model translates greedily and its output is used."""
        vocab = self.system.vocab
        if not source.strip():
            raise ValueError("attention needs a non-empty source sentence")
        src_ids = vocab.encode_source(source)
        batch = collate_translation([{"source_ids": src_ids}], vocab.target.bos_id,
                                    vocab.target.eos_id)  # fmt: skip
        forced = vocab.encode_target(target) if target is not None else None
        out, weights = self.system.attention_weights(batch, forced)
        pieces = [vocab.source.id_to_piece(i) for i in src_ids]
        tgt_pieces = [vocab.target.id_to_piece(i) for i in out] + ["</s>"]
        return {"source_pieces": pieces, "target_pieces": tgt_pieces[: len(weights)],
                "translation": vocab.decode_target(out), "weights": weights.tolist()}  # fmt: skip

    def format_record(self, record: Record, fmt: str) -> str:
        """``text``: the translation alone, one line per input line."""
        if fmt != "text":
            return super().format_record(record, fmt)
        return record["translation"].replace("\n", " ") + "\n"

    def evaluate(self, path: str | Path, **reader_options: Any) -> dict[str, Any]:
        """Corpus BLEU and chrF (sacreBLEU, detokenised) on a parallel file set."""
        from seqnlp.data.parallel_readers import read_parallel

        pairs = read_parallel(str(path), **reader_options)
        found = self.predict([p["source"] for p in pairs])
        scores = corpus_scores([f["translation"] for f in found], [p["target"] for p in pairs])
        return {"pairs": float(len(pairs)), "beam_size": float(self.beam_size), **scores}


def load(path: str | Path, batch_size: int = 64, quantize: str | None = None) -> Predictor:
    """The predictor for a checkpoint, whatever its task.

    ``quantize="int8"``: int8 dynamic quantization of the recurrent and linear
    layers for faster CPU prediction (see ``seqnlp.quantize``); the file is unchanged.
    """
    system = System.load(path)
    if quantize is not None:
        from seqnlp.quantize import quantize as quantize_system

        quantize_system(system, quantize)
    if isinstance(system, Tagger):
        return TaggingPredictor(system, batch_size)
    if isinstance(system, Classifier):
        return ClassificationPredictor(system, batch_size)
    if isinstance(system, Translator):
        return TranslationPredictor(system, batch_size)
    raise ValueError(f"{path}: no predictor for task {system.task!r}")


# -- files ------------------------------------------------------------------------
InputFormat = Literal["auto", "text", "conll", "jsonl"]


def read_inputs(path: str, fmt: InputFormat = "auto", jsonl_field: str = "text") -> Iterator[Any]:
    """Yield the items of a prediction input file, one per record.

    ``text``: one item per line, the line as it is (an empty line is an empty
    item); ``conll``: token lists of blank-line separated column files (tokens in
    column 0); ``jsonl``: the ``jsonl_field`` of each object (an empty line is an
    empty item). ``-`` reads standard input as text.
    """
    if fmt == "auto":
        fmt = "conll" if path.endswith(".conll") else "jsonl" if path.endswith(".jsonl") else "text"
    if path == "-":  # read as bytes: undecodable input is an error with its line
        for _, line in decode_lines(sys.stdin.buffer, "<stdin>"):
            yield line
        return
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such input file")
    if fmt == "conll":
        for record in read_conll(path, tag_column=None):
            yield record["tokens"]
    elif fmt == "jsonl":
        for lineno, obj in iter_json_lines(path, keep_blank=True):
            if obj is None:
                yield ""
            elif isinstance(obj, dict) and _is_input(obj.get(jsonl_field), jsonl_field):
                yield obj[jsonl_field]
            else:
                kind = "a string" + (" or a list of strings" if jsonl_field == "tokens" else "")
                found = (
                    f"{repr(obj)[:60]}, not an object" if not isinstance(obj, dict)
                    else "no such field" if jsonl_field not in obj
                    else repr(obj[jsonl_field])[:60]
                )  # fmt: skip
                raise ValueError(f"{path}:{lineno}: expected an object with {jsonl_field!r}: "
                                 f"{kind}, found {found}")  # fmt: skip
    else:
        for _, line in iter_lines(path):
            yield line


def _is_input(value: Any, field: str) -> bool:
    """A JSON-lines prediction input: text, or for ``tokens`` a list of strings too."""
    if isinstance(value, str):
        return True
    return field == "tokens" and isinstance(value, list) and all(isinstance(t, str) for t in value)


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


def output_format(predictor: Predictor, output_path: str, fmt: str = "auto") -> str:
    """The output format: as asked, else by the output's extension, else ``jsonl``."""
    if fmt == "auto":
        suffix = Path(output_path).suffix.lstrip(".")
        fmt = suffix if suffix in predictor.text_formats else "jsonl"
    if fmt != "jsonl" and fmt not in predictor.text_formats:
        known = ", ".join(("jsonl", *predictor.text_formats))
        raise ValueError(
            f"output format {fmt!r} does not fit a {predictor.system.task} model: {known}"
        )
    return fmt


def predict_file(
    predictor: Predictor,
    input_path: str,
    output_path: str,
    input_format: InputFormat = "auto",
    output_fmt: str = "auto",
    chunk_size: int = 10_000,
    progress: bool = False,
) -> int:
    """Stream ``input_path`` through the predictor in chunks; returns the records written.

    Memory holds one chunk of inputs and records at a time, whatever the file's size.
    ``progress``: a progress line on standard error (records done, sentences/s; the
    percentage too when the input is a text or JSON-lines file, counted first).
    """
    fmt = output_format(predictor, output_path, output_fmt)
    count = 0
    items = read_inputs(input_path, input_format, predictor.jsonl_field)
    with atomic_output(output_path) as out, progress_bar(input_path, input_format, progress) as bar:
        for chunk in chunked(items, chunk_size):
            for record in predictor.predict(chunk, on_batch=bar.update):
                out.write(predictor.format_record(record, fmt))
                count += 1
    return count


def count_lines(path: str) -> int:
    """Lines of a file as ``read_inputs`` sees them (a last line may lack its newline),
    counted in blocks: constant memory."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


@contextmanager
def progress_bar(
    input_path: str, input_format: InputFormat = "auto", enabled: bool = True
) -> Iterator[Any]:
    """A tqdm line on standard error, ``update(n)`` per batch; a no-op when not enabled.

    Text and JSON-lines files are counted first (one record per line) for a
    percentage and time left; CoNLL files and standard input show the count alone.
    """
    from tqdm.auto import tqdm

    conll = input_format == "conll" or (input_format == "auto" and input_path.endswith(".conll"))
    countable = enabled and not conll and Path(input_path).is_file()
    total = count_lines(input_path) if countable else None
    unit = "sentences" if conll else "lines"
    known = "{percentage:3.0f}% {n_fmt}/{total_fmt} " if total is not None else "{n_fmt} "
    bar = tqdm(
        total=total, disable=not enabled, file=sys.stderr, unit=" sentences",
        desc="predict", mininterval=0.5 if sys.stderr.isatty() else 10.0, smoothing=0.1,
        bar_format="{desc}: " + known + unit + " [{elapsed}"
        + ("<{remaining}" if total is not None else "") + ", {rate_fmt}]",
    )  # fmt: skip
    try:
        yield bar
    finally:
        bar.close()


# -- several processes (seqnlp predict --devices N) ------------------------------------
def on_every_rank(step: Callable[[], T]) -> T:
    """``step()`` on this rank, then a check that it succeeded on every rank.

    A rank whose step raised re-raises its error; the others raise a ValueError that
    names that rank, so that no rank is left waiting in a later collective for one
    that stopped. On one process this is ``step()``.
    """
    _, world = rank_and_world()
    if world == 1:
        return step()
    failure: Exception | None = None
    try:
        result = step()
    except Exception as err:
        failure = err
    reports: list[str | None] = [None] * world
    dist.all_gather_object(reports, None if failure is None else _one_line(failure))
    if failure is not None:
        raise failure
    for other, report in enumerate(reports):
        if report is not None:
            raise ValueError(f"stopped: rank {other} failed: {report}")
    return result


def _one_line(err: Exception) -> str:
    text = str(err).strip().split("\n")[0]
    return text if isinstance(err, ValueError) else f"{type(err).__name__}: {text}"


def _from_rank_zero(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (``obj`` itself on one process)."""
    if rank_and_world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def predict_on_every_rank(
    predict: Callable[[Sequence[Any]], list[Record]], inputs: Sequence[Any]
) -> list[Record]:
    """All records of ``inputs`` in the input order, each input predicted once across
    the ranks of the process group; every rank passes the same ``inputs`` and
    receives every record.

    Rank r predicts inputs r, r + world, r + 2 world, ... (a similar mix of lengths
    on every rank). On one process this is ``predict(inputs)``.
    """
    rank, world = rank_and_world()
    if world == 1:
        return predict(inputs)
    mine = on_every_rank(lambda: predict([inputs[i] for i in range(rank, len(inputs), world)]))
    parts: list[list[Record]] = [[] for _ in range(world)]
    dist.all_gather_object(parts, mine)
    return [parts[i % world][i // world] for i in range(len(inputs))]


PredictorT = TypeVar("PredictorT", bound=Predictor)


def share_across_ranks(predictor: PredictorT) -> PredictorT:
    """The predictor, its ``predict`` (and so ``evaluate``) shared by the ranks of the
    process group: every rank passes the same inputs, predicts its share and receives
    every record (``predict_on_every_rank``), so every rank computes the same scores."""
    own = predictor.predict

    def predict(inputs: Sequence[Any], on_batch: Callable[[int], object] | None = None) -> list:
        return predict_on_every_rank(partial(own, on_batch=on_batch), inputs)

    predictor.predict = predict  # type: ignore[method-assign]
    return predictor


def predict_file_on_every_rank(
    predictor: Predictor,
    input_path: str,
    output_path: str,
    input_format: InputFormat = "auto",
    output_fmt: str = "auto",
    chunk_size: int = 10_000,
    progress: bool = False,
) -> int:
    """``predict_file`` shared by the ranks of a process group (``predict --devices N``).

    Every rank calls it with the same arguments. Rank 0 reads the input chunk by
    chunk and sends each chunk to every rank; each rank predicts its share of the
    chunk (``predict_on_every_rank``) and rank 0 writes the records, in the input
    order, to a temporary file renamed once complete. Only rank 0 reads the input
    and writes the output (standard input and output work too), and memory holds one
    chunk per rank. A failure on any rank stops every rank with an error. Returns
    the records written; on one process this is ``predict_file``.
    """
    rank, world = rank_and_world()
    fmt = output_format(predictor, output_path, output_fmt)
    count = 0
    with ExitStack() as stack:

        def start() -> tuple[TextIO | None, Any, Iterator[list[Any]]]:
            if rank != 0:
                return None, None, iter(())
            out = stack.enter_context(atomic_output(output_path))
            bar = stack.enter_context(progress_bar(input_path, input_format, progress))
            items = read_inputs(input_path, input_format, predictor.jsonl_field)
            return out, bar, chunked(items, chunk_size)

        out, bar, chunks = on_every_rank(start)
        predict = partial(predictor.predict, on_batch=bar.update if bar is not None else None)
        while (chunk := _from_rank_zero(on_every_rank(lambda: next(chunks, None)))) is not None:
            records = predict_on_every_rank(predict, chunk)
            if out is not None:
                for record in records:
                    out.write(predictor.format_record(record, fmt))
                bar.update(len(chunk) - len(range(0, len(chunk), world)))  # the other ranks'
            count += len(chunk)
    return count


__all__ = [
    "ClassificationPredictor",
    "Predictor",
    "TaggingPredictor",
    "TranslationPredictor",
    "load",
    "predict_file",
    "predict_file_on_every_rank",
    "predict_on_every_rank",
    "read_inputs",
]
