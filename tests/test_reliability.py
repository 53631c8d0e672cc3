"""Property-based checks (hypothesis) of the readers, the writers and the output path:
any input gives records or a located one-line error, never another exception, and
what a writer writes reads back as it was, or is refused before anything is written."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqnlp.data.classification import ClassificationCodec
from seqnlp.data.classification_readers import read_labelled_text, tsv_cell_problem
from seqnlp.data.tagging import TaggingCodec
from seqnlp.data.tagging_readers import conll_cell_problem, read_conll, read_tagging_file
from seqnlp.outputs import atomic_output
from seqnlp.predict import ClassificationPredictor, TaggingPredictor
from seqnlp.tasks import Classifier, Tagger
from seqnlp.tokenization import Vocab, WordTokenizer

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
TAGS = st.sampled_from(["O", "B-PER", "I-PER", "B-LOC"])


@pytest.fixture(scope="module")
def tagger() -> TaggingPredictor:
    records = [{"tokens": ["Ana", "vive"], "tags": ["B-PER", "O"]}]
    codec = TaggingCodec.fit(records)
    return TaggingPredictor(Tagger(codec, word_dim=4, hidden_size=4).network, codec)


@pytest.fixture(scope="module")
def classifier() -> ClassificationPredictor:
    codec = ClassificationCodec(WordTokenizer.fit(["a b"]), Vocab(["neg", "pos"], None, None))
    return ClassificationPredictor(Classifier(codec, embedding_dim=4, hidden_size=4).network, codec)


#: one folder for every generated example's files, removed when the run ends (the
#: examples number in the hundreds: a folder each would litter the temporary directory).
_SCRATCH = tempfile.TemporaryDirectory(prefix="seqnlp-reliability-")


def _scratch(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(dir=_SCRATCH.name))
    path = folder / name
    path.write_bytes(data)
    return path


@SETTINGS
@given(sentences=st.lists(st.lists(st.tuples(TEXT, TAGS), min_size=1, max_size=5), min_size=1,
                          max_size=4))  # fmt: skip
def test_conll_output_reads_back_as_written_or_is_refused(tagger, sentences):
    text, expected = "", []
    try:
        for sentence in sentences:
            record = {"tokens": [t for t, _ in sentence], "tags": [g for _, g in sentence]}
            text += tagger.format_record(record, "conll")
            expected.append(record)
    except ValueError:
        assert any(conll_cell_problem(t) for s in sentences for t, _ in s)
        return
    assert not any(conll_cell_problem(t) for s in sentences for t, _ in s)
    path = _scratch(text.encode("utf-8"), "out.conll")
    assert list(read_conll(path)) == expected


@SETTINGS
@given(texts=st.lists(TEXT, min_size=1, max_size=6))
def test_tsv_output_reads_back_as_written_or_is_refused(classifier, texts):
    lines = []
    for text in texts:
        label = "pos" if text.strip() else None  # as predict gives: no label for no text
        record = {"text": text, "label": label, "probability": label and 0.75,
                  "probabilities": {}}  # fmt: skip
        try:
            lines.append(classifier.format_record(record, "tsv"))
        except ValueError:
            assert tsv_cell_problem(text)
            return
    kept = [t for t in texts if t.strip()]
    path = _scratch("".join(lines).encode("utf-8"), "out.tsv")
    if not kept:
        with pytest.raises(ValueError, match="found none"):
            read_labelled_text(path, fmt="tsv")
        return
    records = read_labelled_text(path, fmt="tsv")  # label first, text last
    assert [r["text"] for r in records] == [t.strip() for t in kept]
    assert all(r["label"] == "pos" for r in records)


@SETTINGS
@given(rows=st.lists(st.tuples(st.sampled_from(["0", "1"]), TEXT.filter(str.strip)),
                     min_size=1, max_size=8))  # fmt: skip
def test_csv_written_by_the_csv_module_reads_back(rows):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path = _scratch(buffer.getvalue().encode("utf-8"), "data.csv")
    try:
        records = read_labelled_text(path)
    except ValueError as err:  # a cell holding what CSV lines cannot (a bare \r, NUL)
        assert str(err).startswith(f"{path}:")
        return
    assert [(r["label"], r["text"]) for r in records] == [(y, t.strip()) for y, t in rows]


@SETTINGS
@given(before=st.integers(0, 5), after=st.integers(1, 40))
def test_an_unbalanced_csv_quote_is_found_wherever_it_stands(before, after):
    lines = ["1,plain"] * before + ['0,"a 12"" screen'] + ["1,plain"] * after
    path = _scratch(("\n".join(lines) + "\n").encode("utf-8"), "data.csv")
    with pytest.raises(ValueError, match=rf"data.csv:{before + 1}: a quoted CSV field"):
        read_labelled_text(path)


@SETTINGS
@given(data=st.binary(max_size=200), name=st.sampled_from(["x.conll", "x.jsonl"]))
def test_tagging_files_of_any_bytes_give_records_or_a_located_error(data, name):
    path = _scratch(data, name)
    try:
        records = read_tagging_file(path)
    except ValueError as err:
        assert str(err).startswith(str(path))
        return
    assert all(len(r["tokens"]) == len(r["tags"]) > 0 for r in records)


@SETTINGS
@given(data=st.binary(max_size=200), fmt=st.sampled_from(["labeltext", "tsv", "csv", "jsonl"]))
def test_labelled_text_of_any_bytes_gives_records_or_a_located_error(data, fmt):
    path = _scratch(data, f"x.{fmt}")
    try:
        records = read_labelled_text(path, fmt=fmt)
    except ValueError as err:
        assert str(err).startswith(str(path))
        return
    assert all(r["label"] and r["text"] for r in records)


@SETTINGS
@given(chunks=st.lists(TEXT, max_size=5), fail=st.booleans(), existed=st.booleans())
def test_an_output_is_whole_or_as_it_was(chunks, fail, existed):
    folder = Path(tempfile.mkdtemp(dir=_SCRATCH.name))
    target = folder / "out.txt"
    if existed:
        target.write_text("previous\n", encoding="utf-8")
    try:
        with atomic_output(str(target)) as out:
            for chunk in chunks:
                out.write(chunk)
            if fail:
                raise KeyboardInterrupt  # Ctrl-C, or SIGTERM under the command line
    except KeyboardInterrupt:
        pass
    if fail and existed:
        assert target.read_text(encoding="utf-8") == "previous\n"
    elif fail:
        assert not target.exists()
    else:
        assert target.read_bytes() == "".join(chunks).encode("utf-8")
    assert [p.name for p in folder.iterdir()] == (["out.txt"] if target.exists() else [])
