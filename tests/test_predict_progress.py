"""Prediction progress on standard error, and streaming a file in bounded chunks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seqnlp.cli import main
from seqnlp.data.classification import ClassificationCodec
from seqnlp.data.tagging import TaggingCodec
from seqnlp.predict import ClassificationPredictor, predict_file, read_inputs
from seqnlp.predict.files import count_lines
from seqnlp.tasks import Classifier, Tagger
from seqnlp.tokenization import Vocab, WordTokenizer

LINES = [f"a {'good' if i % 3 else 'bad'} film number {i}" for i in range(50)]


@pytest.fixture()
def classifier() -> ClassificationPredictor:
    torch.manual_seed(0)
    codec = ClassificationCodec(WordTokenizer.fit(["a good film", "a bad film"]),
                                Vocab(["neg", "pos"], pad=None, unk=None))  # fmt: skip
    model = Classifier(codec, embedding_dim=4, hidden_size=4)
    return ClassificationPredictor(model.network, codec, batch_size=8)


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", 0), (b"a\n", 1), (b"a", 1), (b"a\nb", 2), (b"a\r\n\r\nb\r\n", 3), (b"\n\n", 2)],
)
def test_count_lines_counts_what_the_reader_yields(tmp_path, data, expected):
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    assert count_lines(str(path)) == expected
    assert len(list(read_inputs(str(path)))) == expected


def test_on_batch_reports_every_input_once(classifier):
    sizes: list[int] = []
    records = classifier.predict(LINES, on_batch=sizes.append)
    assert len(records) == 50 and sum(sizes) == 50 and max(sizes) == 8


def test_progress_line_goes_to_stderr_and_output_is_unchanged(classifier, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    quiet, shown = tmp_path / "quiet.jsonl", tmp_path / "shown.jsonl"
    assert predict_file(classifier, str(src), str(quiet), chunk_size=20) == 50
    assert capsys.readouterr().err == ""
    assert predict_file(classifier, str(src), str(shown), chunk_size=20, progress=True) == 50
    err = capsys.readouterr().err
    assert "predict: 100% 50/50 lines" in err and "sentences/s" in err
    assert shown.read_bytes() == quiet.read_bytes()


def test_chunks_stay_bounded(classifier, tmp_path, monkeypatch):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    seen: list[int] = []
    original = classifier.predict

    def spy(inputs, on_batch=None):
        seen.append(len(inputs))
        return original(inputs, on_batch)

    monkeypatch.setattr(classifier, "predict", spy)
    predict_file(classifier, str(src), str(tmp_path / "out.jsonl"), chunk_size=7, progress=True)
    assert max(seen) == 7 and sum(seen) == 50


def _tagger_checkpoint(tmp_path: Path) -> Path:
    records = [{"tokens": ["Ana", "vive", "en", "Lima"], "tags": ["B-PER", "O", "O", "B-LOC"]}]
    model = Tagger(TaggingCodec.fit(records), word_dim=4, char_dim=2, char_hidden=2, hidden_size=2)
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "tagger.ckpt")
    return tmp_path / "tagger.ckpt"


@pytest.mark.parametrize(
    ("flag", "shown"), [(["--progress"], True), (["--no_progress"], False), ([], False)]
)
def test_cli_progress_flags(tmp_path, capsys, flag, shown):
    ckpt = _tagger_checkpoint(tmp_path)
    src = tmp_path / "in.conll"
    src.write_text("Ana\nvive\n\nLima\n\n", encoding="utf-8")
    main(["predict", "--ckpt_path", str(ckpt), "--input", str(src),
          "--output", str(tmp_path / "out.jsonl"), *flag])  # fmt: skip
    err = capsys.readouterr().err
    assert ("predict: 2 sentences" in err) == shown  # CoNLL input: sentences, no total
    assert "predicted 2 records" in err  # pytest's stderr is no terminal: off by default
