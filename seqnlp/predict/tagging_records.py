"""What every tagging predictor shares, whatever runs its network (torch, ONNX
Runtime): inputs as sentences, documents, records with entities, offsets and
confidences, n-best merging, output formats and evaluation.

Torch-free: ``TaggingPredictor`` (``seqnlp.predict.tagger``) and the ONNX Runtime
tagger (``seqnlp.onnx_runtime.tagger``) inherit ``TaggingRecords`` and add only the
network's call (``tag_batch``), so their records are built by the same code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from seqnlp.data.codecs import TaggingCodec, unseen_tag
from seqnlp.data.sources import labelled_file
from seqnlp.data.tagging_readers import (
    conll_cell_problem,
    is_raw_entity_file,
    read_raw_entities,
    read_tagging_file,
    tagging_format,
)
from seqnlp.data.tagschemes import spans as entity_spans
from seqnlp.metrics import entity_scores, span_scores
from seqnlp.predict.base import Predictor, Record


@dataclass
class Sentence:
    """A sentence to tag: its tokens as written (substrings of ``text``), in the model's
    form, and each token's (start, end) character offsets in ``text``."""

    text: str
    tokens: list[str]
    model_tokens: list[str]
    spans: list[tuple[int, int]]


@dataclass
class TaggedBatch:
    """What a runtime's network and head give for a batch of non-empty sentences, as
    Python lists (one entry per sentence, in the batch's order).

    paths: the best tag ids (length,) of each sentence (Viterbi, or argmax).
    path_probs: each sentence's posterior probability of its path's tag at each token
        (length,) (CRF marginals, or the softmax); None without confidences.
    nbest: each sentence's most probable paths ``(tag ids, log-probability)``, best
        first; None unless n-best paths were asked for.
    """

    paths: list[list[int]]
    path_probs: list[list[float]] | None = None
    nbest: list[list[tuple[list[int], float]]] | None = None


class TaggingRecords(Predictor):
    """The tagging predictors' records (see ``TaggingPredictor`` for what they hold);
    a runtime adds ``tag_batch`` and calls ``_set_tagging_options`` when built."""

    task = "tagging"
    options = ("confidence", "n_best", "pretokenized", "documents")
    jsonl_field = "tokens"
    text_formats = ("conll",)
    codec: TaggingCodec

    def _set_tagging_options(
        self, confidence: bool, n_best: int, pretokenized: bool, documents: bool,
        token_cache_size: int, crf: bool,
    ) -> None:  # fmt: skip
        """Check and keep the tagging options (``crf``: the model has a CRF head)."""
        if n_best < 1:
            raise ValueError(f"n_best must be at least 1, got {n_best}")
        if n_best > 1 and not crf:
            raise ValueError("n-best paths need the CRF head (this tagger has a softmax head)")
        if documents and pretokenized:
            raise ValueError("documents are raw text: they cannot also be pre-tokenized")
        self.confidence = confidence
        self.n_best = n_best
        self.pretokenized = pretokenized
        self.documents = documents
        self.token_cache_size = token_cache_size
        # token -> (word id, char ids): text repeats its words (Zipf), so each distinct
        # token is encoded once; at most ``token_cache_size``, cleared when full.
        self._encoded: dict[str, tuple[int, list[int]]] = {}

    def encode_token(self, token: str) -> tuple[int, list[int]]:
        """The word id and character ids of ``token`` (cached; do not modify the list)."""
        hit = self._encoded.get(token)
        if hit is None:
            if len(self._encoded) >= self.token_cache_size:
                self._encoded.clear()
            word_ids, char_ids = self.codec.encode_tokens([token])
            hit = self._encoded[token] = (word_ids[0], char_ids[0])
        return hit

    def sentence(self, item: str | Sequence[str]) -> Sentence:
        """An input as a sentence to tag: a string through the model's pretokenizer and
        normaliser (or split on white space when ``pretokenized``), a token list as it is
        (its offsets in the tokens joined by single spaces)."""
        raw = self.codec.raw
        if isinstance(item, str) and not self.pretokenized:
            model_tokens, spans = raw.tokenize(item)
            return Sentence(item, [item[s:e] for s, e in spans], model_tokens, spans)
        if isinstance(item, str):
            spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", item)]
            tokens, text = [item[s:e] for s, e in spans], item
        else:
            tokens, text, spans, start = list(item), " ".join(item), [], 0
            for token in tokens:
                spans.append((start, start + len(token)))
                start += len(token) + 1
        return Sentence(text, tokens, [raw.normalizer.normalize(t) for t in tokens], spans)

    def predict(
        self, inputs: Sequence[Any], on_batch: Callable[[int], object] | None = None
    ) -> list[Record]:
        """One record per input, in the input order (a document's per sentence inside)."""
        if not self.documents:
            sentences = [self.sentence(item) for item in inputs]
            self.before_batches(sentences)
            return super().predict(sentences, on_batch)
        if any(not isinstance(item, str) for item in inputs):
            raise ValueError("documents are strings of raw text, not token lists")
        split = [self.codec.raw.sentences(text) for text in inputs]
        flat = [
            Sentence(text, [text[s:e] for s, e in spans], tokens, spans)
            for text, sentences in zip(inputs, split, strict=True)
            for tokens, spans in sentences
        ]
        self.before_batches(flat)
        records = iter(super().predict(flat, on_batch))
        out = []
        for text, sentences in zip(inputs, split, strict=True):
            found = [next(records) for _ in sentences]
            for record, (_, spans) in zip(found, sentences, strict=True):
                record["start_char"], record["end_char"] = spans[0][0], spans[-1][1]
            entities = [e for record in found for e in record["entities"]]
            out.append({"text": text, "sentences": found, "entities": entities})
        return out

    def before_batches(self, sentences: list[Sentence]) -> None:
        """What a runtime does with all the sentences of a ``predict`` call before their
        batches are tagged (a torch tagger: extend its vocabulary); nothing here."""

    def labels(self) -> dict[str, list[str]]:
        tags = self.codec.decode_tags(range(len(self.codec.tags)))
        types = sorted({t.partition("-")[2] for t in tags if t != "O"})
        return {"entity_types": types, "tags": list(self.codec.tags.itos)}

    def length(self, item: Sentence) -> int:
        return len(item.tokens)

    def tag_batch(self, sentences: list[list[str]]) -> TaggedBatch:
        """The runtime's part: tag ids (and, as the options ask, their posteriors and the
        n-best paths) of non-empty sentences of model tokens."""
        raise NotImplementedError

    def predict_batch(self, items: Sequence[Sentence]) -> list[Record]:
        real = [i for i, s in enumerate(items) if s.tokens]
        records: list[Record] = [
            {"tokens": [], "token_offsets": [], "tags": [], "entities": []} for _ in items
        ]
        if not real:
            return records
        tagged = self.tag_batch([items[i].model_tokens for i in real])
        path_probs, nbest = tagged.path_probs, tagged.nbest
        for row, (i, path) in enumerate(zip(real, tagged.paths, strict=True)):
            sentence = items[i]
            tags = self.codec.decode_tags(path)
            entities = []
            for kind, start, end in entity_spans(tags):
                first, last = sentence.spans[start][0], sentence.spans[end - 1][1]
                entity: Record = {
                    "type": kind, "start": start, "end": end, "start_char": first,
                    "end_char": last, "text": sentence.text[first:last],
                }  # fmt: skip
                if path_probs is not None:
                    entity["confidence"] = round(min(path_probs[row][start:end]), 4)
                entities.append(entity)
            records[i] = {"tokens": sentence.tokens,
                          "token_offsets": [list(span) for span in sentence.spans],
                          "tags": tags, "entities": entities}  # fmt: skip
            if nbest is not None:
                records[i]["n_best"] = self._distinct(nbest[row])
        return records

    def _distinct(self, paths: list[tuple[list[int], float]]) -> list[Record]:
        """Up to ``n_best`` distinct IOB2 tag sequences, in the order of their best path;
        each probability sums the paths that read as that sequence."""
        merged: dict[tuple[str, ...], float] = {}
        for path, log_prob in paths:
            tags = tuple(self.codec.decode_tags(path))
            if tags in merged or len(merged) < self.n_best:
                merged[tags] = merged.get(tags, 0.0) + math.exp(log_prob)
        return [{"tags": list(t), "probability": round(p, 4)} for t, p in merged.items()]

    def format_record(self, record: Record, fmt: str) -> str:
        """``conll``: ``token<TAB>tag`` lines closed by one blank line (a document: each
        of its sentences so)."""
        if fmt != "conll":
            return super().format_record(record, fmt)
        if "sentences" in record:
            return "".join(self.format_record(s, fmt) for s in record["sentences"])
        for i, token in enumerate(record["tokens"], start=1):
            problem = conll_cell_problem(token)
            if problem:
                raise ValueError(f"token {i}, {token!r}, cannot be written as CoNLL ({problem}): "
                                 f"write JSON lines instead (--output_format jsonl)")  # fmt: skip
        rows = "".join(f"{w}\t{t}\n" for w, t in zip(record["tokens"], record["tags"], strict=True))
        return rows + "\n"

    def read_labelled(self, source: str, **reader_options: Any) -> tuple[list[Any], list[Any]]:
        """Token lists and gold IOB2 tags of a CoNLL / JSONL file or ``NAME:SPLIT``
        (``fmt``, ``token_column``, ``tag_column``, ``scheme``, ``encoding``: as
        ``read_tagging_file``); or raw texts and their character-span entities, for a
        JSON-lines file of ``{"text", "entities"}`` (``read_raw_entities``), scored by
        characters. A tag or type the model cannot predict is refused with its line:
        the model would score it as a miss without saying why."""
        path = labelled_file(source)
        encoding = reader_options.get("encoding", "utf-8")
        if tagging_format(path, reader_options.get("fmt", "auto")) == "jsonl" and (
            is_raw_entity_file(path, encoding)
        ):
            texts = read_raw_entities(path, encoding)
            known = {t.partition("-")[2] for t in self.codec.tags.itos if t != "O"}
            for record in texts:
                unknown = sorted({kind for kind, _, _ in record["entities"]} - known)
                if unknown:
                    raise ValueError(f"{path}:{record['line']}: entity type {unknown[0]} is not "
                                     f"one the model predicts ({', '.join(sorted(known))})")
            return [r["text"] for r in texts], [_Spans(r["entities"]) for r in texts]
        gold = read_tagging_file(path, **reader_options, with_lines=True)
        unseen = unseen_tag(gold, self.codec)
        if unseen is not None:
            raise ValueError(f"{path}{unseen}")
        return [r["tokens"] for r in gold], [r["tags"] for r in gold]

    def score(self, gold: list[Any], records: list[Record]) -> dict[str, Any]:
        """Entity precision, recall and F1 (micro and per type) and the sentence count;
        by character spans for raw texts."""
        if gold and isinstance(gold[0], _Spans):
            found = [{(e["type"], e["start_char"], e["end_char"]) for e in r["entities"]}
                     for r in records]  # fmt: skip
            return {"texts": float(len(gold)), **span_scores(gold, found)}
        scores = entity_scores(gold, [r["tags"] for r in records])
        return {"sentences": float(len(gold)), **scores}


class _Spans(set):
    """Gold entities of a raw text, ``(type, start_char, end_char)``."""


