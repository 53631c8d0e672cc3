"""Prediction file I/O: one record per input line, in order, whatever the text."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqnlp.data.classification import ClassificationCodec
from seqnlp.data.tagging import TaggingCodec
from seqnlp.predict import ClassificationPredictor, TaggingPredictor, predict_file
from seqnlp.tasks import Classifier, Tagger
from seqnlp.tokenization import Vocab, WordTokenizer

TAGGING_RECORDS = [
    {"tokens": ["Ana", "vive", "en", "Lima"], "tags": ["B-PER", "O", "O", "B-LOC"]},
    {"tokens": ["Luis", "y", "Repsol"], "tags": ["B-PER", "O", "B-ORG"]},
]

# Lines of arbitrary text without "\n" (the record separator): empty and blank lines,
# other line and paragraph separators, control characters, surrogate-free Unicode.
LINE = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\n"), max_size=30)


@pytest.fixture(scope="module")
def tagger() -> TaggingPredictor:
    codec = TaggingCodec.fit(TAGGING_RECORDS)
    model = Tagger(codec, word_dim=8, char_dim=4, char_hidden=4, hidden_size=4)
    return TaggingPredictor(model.network, codec, batch_size=3)


@pytest.fixture(scope="module")
def classifier() -> ClassificationPredictor:
    codec = ClassificationCodec(WordTokenizer.fit(["a good film", "a bad film"]),
                                Vocab(["neg", "pos"], pad=None, unk=None))  # fmt: skip
    model = Classifier(codec, embedding_dim=4, hidden_size=4)
    return ClassificationPredictor(model.network, codec, batch_size=3)


def _in_parallel(predictor, batches: int = 2):
    """The same predictor, built to predict ``batches`` batches at once."""
    return type(predictor)(predictor.network, predictor.codec, batch_size=predictor.batch_size,
                           parallel_batches=batches)  # fmt: skip


def _round_trip(predictor, lines: list[str], output_name: str) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.txt", Path(tmp) / output_name
        src.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
        assert predict_file(predictor, str(src), str(out)) == len(lines)
        return out.read_text(encoding="utf-8").split("\n")[:-1]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(LINE, min_size=1, max_size=12))
def test_tagging_writes_one_record_per_line_in_order(tagger, lines):
    records = [json.loads(x) for x in _round_trip(tagger, lines, "out.jsonl")]
    assert [r["tokens"] for r in records] == [ln.split() for ln in lines]
    assert all(len(r["tags"]) == len(r["tokens"]) for r in records)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(LINE, min_size=1, max_size=12))
def test_classification_writes_one_record_per_line_in_order(classifier, lines):
    records = [json.loads(x) for x in _round_trip(classifier, lines, "out.jsonl")]
    assert [r["text"] for r in records] == [ln.rstrip("\r") for ln in lines]
    for r in records:
        assert (r["label"] is None) == (not r["text"].strip())


def test_an_interrupted_prediction_leaves_no_output_file(tagger, tmp_path, monkeypatch):
    src = tmp_path / "in.txt"
    src.write_text("Ana vive en Lima\n" * 5, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text("the previous, complete output\n", encoding="utf-8")

    def broken(items):
        raise KeyboardInterrupt

    monkeypatch.setattr(tagger, "predict_batch", broken)
    with pytest.raises(KeyboardInterrupt):
        predict_file(tagger, str(src), str(out))
    assert out.read_text(encoding="utf-8") == "the previous, complete output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.jsonl"]  # no .part left


def _same_records(a: list[dict], b: list[dict]) -> None:
    """Equal records, probabilities to within the rounding of one vs two threads."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            if key in ("probability", "probabilities", "entities"):
                continue  # compared below, to within rounding
            assert x[key] == y[key], key
        for e, f in zip(x.get("entities", []), y.get("entities", []), strict=True):
            assert {k: v for k, v in e.items() if k != "confidence"} == {
                k: v for k, v in f.items() if k != "confidence"
            }
            assert e["confidence"] == pytest.approx(f["confidence"], abs=1e-3)
        if x.get("probability") is not None:
            assert x["probability"] == pytest.approx(y["probability"], abs=1e-3)
            assert x["probabilities"] == pytest.approx(y["probabilities"], abs=1e-3)


@pytest.mark.parametrize("which", ["tagger", "classifier"])
def test_parallel_batches_give_the_same_records_and_restore_threads(which, request):
    import torch

    predictor = request.getfixturevalue(which)
    lines = [f"Ana vive en Lima {i} " * (1 + i % 5) for i in range(40)] + ["", "a good film"]
    serial = predictor.predict(lines)
    threads = torch.get_num_threads()
    seen: list[int] = []
    parallel = _in_parallel(predictor).predict(lines, on_batch=seen.append)
    assert torch.get_num_threads() == threads
    assert sum(seen) == len(lines)  # progress still reported, in the calling thread
    _same_records(serial, parallel)


def test_parallel_batches_pass_errors_on_and_restore_threads(classifier, monkeypatch):
    import torch

    threads = torch.get_num_threads()
    own = type(classifier).predict_batch

    def failing(self, items):
        if any("boom" in t for t in items):
            raise RuntimeError("boom in a batch")
        return own(self, items)

    monkeypatch.setattr(type(classifier), "predict_batch", failing)
    with pytest.raises(RuntimeError, match="boom in a batch"):
        _in_parallel(classifier).predict(["a good film"] * 10 + ["boom boom boom boom"])
    assert torch.get_num_threads() == threads


def test_loaded_objects_are_frozen_in_the_block_only(tagger):
    """``loaded_objects_frozen``: what is alive leaves the collector's rounds in the
    block (the model among it), what is made there is collected as usual, and all is
    as before after it; a collector that is off or already frozen is left alone."""
    import gc

    from seqnlp.predict import loaded_objects_frozen

    assert gc.get_freeze_count() == 0
    with loaded_objects_frozen():
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # torch, the tests' modules, the tagger
        assert all(o is not tagger.network for o in gc.get_objects(generation=2))
        cycle: list = []
        cycle.append(cycle)
        assert any(o is cycle for o in gc.get_objects(generation=0))
        del cycle
        tagger.predict(["Ana vive en Lima"])
    assert gc.get_freeze_count() == 0
    gc.disable()
    try:
        with loaded_objects_frozen():
            assert gc.get_freeze_count() == 0
    finally:
        gc.enable()
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        with loaded_objects_frozen():
            pass
        assert gc.get_freeze_count() == before
    finally:
        gc.unfreeze()
