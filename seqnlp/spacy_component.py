"""seqnlp models inside spaCy pipelines: ``nlp.add_pipe("seqnlp", config={"model": PATH})``.

A tagger sets ``doc.ents`` (its entities, by their character offsets in the text,
aligned to the doc's tokens) and a classifier ``doc.cats`` (its label
probabilities). The model reads ``doc.text`` with its own pretokenizer, as
``seqnlp predict`` does, so it sees what it was trained on whatever tokenizer the
pipeline has. The factory is registered with spaCy through the ``spacy_factories``
entry point, so a pipeline finds it without importing seqnlp first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Literal

from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import filter_spans, minibatch

from seqnlp.predict import ClassificationPredictor, Predictor, TaggingPredictor, load


class SeqnlpComponent:
    """Runs a seqnlp tagger or classifier over spaCy docs.

    Args:
        model: a checkpoint written by ``seqnlp fit``.
        batch_size: docs predicted together.
        alignment_mode: how an entity whose characters do not fall on the doc's token
            boundaries is aligned (``strict``: dropped; ``contract`` / ``expand``:
            to the tokens inside / around it, as ``Doc.char_span``).
        overwrite_ents: replace entities set earlier in the pipeline (else the longest
            of overlapping spans are kept).
    """

    def __init__(
        self, name: str, model: str, batch_size: int = 64,
        alignment_mode: Literal["strict", "contract", "expand"] = "expand",
        overwrite_ents: bool = True,
    ) -> None:  # fmt: skip
        self.name = name
        self.model = model
        self.batch_size = batch_size
        self.alignment_mode = alignment_mode
        self.overwrite_ents = overwrite_ents
        self.predictor: Predictor = load(model, batch_size=batch_size)
        if not isinstance(self.predictor, TaggingPredictor | ClassificationPredictor):
            raise ValueError(f"{model}: a {self.predictor.task} model has no place in a spaCy "
                             f"pipeline (taggers set doc.ents, classifiers doc.cats)")  # fmt: skip

    def __call__(self, doc: Doc) -> Doc:
        return next(self.pipe([doc]))

    def pipe(self, docs: Iterable[Doc], batch_size: int | None = None) -> Iterator[Doc]:
        for batch in minibatch(docs, size=batch_size or self.batch_size):
            records = self.predictor.predict([doc.text for doc in batch])
            for doc, record in zip(batch, records, strict=True):
                yield self._set(doc, record)

    def _set(self, doc: Doc, record: dict[str, Any]) -> Doc:
        if isinstance(self.predictor, ClassificationPredictor):
            doc.cats = dict(record["probabilities"])
            return doc
        spans = []
        for entity in record["entities"]:
            span = doc.char_span(entity["start_char"], entity["end_char"], label=entity["type"],
                                 alignment_mode=self.alignment_mode)  # fmt: skip
            if span is not None:
                spans.append(span)
        doc.ents = filter_spans(spans if self.overwrite_ents else [*doc.ents, *spans])
        return doc


@Language.factory(
    "seqnlp",
    default_config={"model": None, "batch_size": 64, "alignment_mode": "expand",
                    "overwrite_ents": True},
)  # fmt: skip
def make_seqnlp(
    nlp: Language, name: str, model: str | None, batch_size: int, alignment_mode: str,
    overwrite_ents: bool,
) -> SeqnlpComponent:  # fmt: skip
    if not model:
        raise ValueError('the seqnlp component needs config={"model": PATH}: a seqnlp checkpoint')
    return SeqnlpComponent(name, model, batch_size, alignment_mode, overwrite_ents)  # type: ignore[arg-type]
