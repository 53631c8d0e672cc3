"""Vocabulary extension at prediction (``vectors=`` / ``--vectors``): the words of the
text that a trained tagger lacks get rows from word vectors, exactly the rows that
``data.vectors`` with ``extend_vocab: data`` would have given them in training."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import seqnlp
from seqnlp.cli import main
from seqnlp.data import TaggingDataModule
from seqnlp.predict.tagger import TaggingPredictor
from seqnlp.tasks import Tagger

ROOT = Path(__file__).resolve().parents[1]
NEW = [["Zaragoza", "vive", "en", "Cuenca", "."], ["ayer", "Teruel", "dijo", "1999", "Xq"]]


def _vector_file(tmp_path: Path) -> Path:
    rows = {"zaragoza": [1, 2, 3, 4], "Cuenca": [0, 1, 0, 1], "teruel": [2, 2, 0, 0],
            "0000": [5, 5, 5, 5], "Madrid": [9, 9, 9, 9]}  # fmt: skip
    path = tmp_path / "v.txt"
    path.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in rows.items()))
    return path


def _fasttext_file(tmp_path: Path) -> Path:
    ft = pytest.importorskip("gensim.models.fasttext")
    sentences = [["la", "casa", "de", "Madrid"], ["Ana", "vive", "en", "Zaragoza"]] * 20
    model = ft.FastText(sentences, vector_size=4, min_count=1, epochs=1, workers=1, seed=1,
                        bucket=300)  # fmt: skip
    path = tmp_path / "ft.bin"
    ft.save_facebook_model(model, str(path))
    return path


def _with_test_words(tiny_ner: dict[str, Path]) -> dict[str, str]:
    with open(tiny_ner["test"], "a", encoding="utf-8") as handle:
        for sentence in NEW:
            handle.write("".join(f"{w} O\n" for w in sentence) + "\n")
    return {k: str(v) for k, v in tiny_ner.items()}


def _truncated(network: nn.Module, rows: int) -> nn.Module:
    """A copy of ``network`` whose word embedding keeps its first ``rows`` rows."""
    out = copy.deepcopy(network)
    weight = out.word_embedding.weight.detach()[:rows].clone()
    out.word_embedding = nn.Embedding.from_pretrained(weight, freeze=True, padding_idx=0)
    return out


@pytest.mark.parametrize(
    ("kind", "tables"),
    [("text", {}), ("fasttext", {}),
     ("text", {"freeze_embeddings": True, "trainable_word_dim": 3}),
     ("fasttext", {"pretrained_std": 1.0})],
)  # fmt: skip
def test_rows_added_at_prediction_equal_those_of_training_time_extension(tiny_ner, tmp_path,
                                                                         kind, tables):  # fmt: skip
    """A tagger trained with the test words' rows (extend_vocab data) and the same tagger
    without them, given the vectors at prediction, tag the test text alike; with a
    trainable table beside the vectors too (the added words read its <unk> row)."""
    path = _vector_file(tmp_path) if kind == "text" else _fasttext_file(tmp_path)
    files = _with_test_words(tiny_ner)
    plain = TaggingDataModule(**files, cache_dir=str(tmp_path / "hf"))
    data = TaggingDataModule(**files, cache_dir=str(tmp_path / "hf"), vectors=str(path))
    base = plain.codec.words
    assert data.codec.words.itos[: len(base)] == base.itos and len(data.codec.words) > len(base)
    model = Tagger(data.codec, word_dim=4, char_encoder="lstm", hidden_size=6, **tables)
    model.setup("fit")
    model.eval()
    if "trainable_word_dim" in tables:  # the trainable table has the training words only
        assert model.hparams["trainable_words"] == len(base)
        assert model.network.trainable_embedding.embedding.num_embeddings == len(base)
    extended = TaggingPredictor(model.network, data.codec)
    lacking_network = _truncated(model.network, len(base))
    lacking = TaggingPredictor(lacking_network, plain.codec, vectors=str(path))
    assert lacking.encode_token("Zaragoza")[0] == base.unk_id
    before = lacking_network.word_embedding.weight.detach().clone()
    got = lacking.predict(NEW)
    assert got == extended.predict(NEW)
    added = [w for w in lacking.codec.words.itos if w not in base.stoi]
    assert lacking.codec.words.itos[: len(base)] == base.itos and plain.codec.words is base
    assert set(added) <= set(data.codec.words.itos) and "Zaragoza" in added
    weight = lacking_network.word_embedding.weight
    assert torch.equal(weight[: len(base)], before)  # the trained rows as they were
    for word in added:
        assert torch.equal(weight[lacking.codec.words.index(word)],
                           extended.network.word_embedding.weight[data.codec.words.index(word)])
    assert lacking.encode_token("Zaragoza")[0] == lacking.codec.words.index("Zaragoza")
    size = len(lacking.codec.words)
    assert lacking.predict(NEW) == got and len(lacking.codec.words) == size  # added once
    if kind == "text":  # a word without a vector stays <unk>
        assert "Xq" not in lacking.codec.words.stoi


def test_the_cap_on_added_words_and_a_wrong_size(tiny_ner, tmp_path, caplog):
    path = _vector_file(tmp_path)
    files = _with_test_words(tiny_ner)
    data = TaggingDataModule(**files, cache_dir=str(tmp_path / "hf"))
    network = Tagger(data.codec, word_dim=4, char_encoder="none", hidden_size=4).network.eval()
    capped = TaggingPredictor(network, data.codec, vectors=str(path), vectors_max_words=1)
    capped.predict(NEW)
    assert len(capped.codec.words) == len(data.codec.words) + 1
    assert capped.codec.words.itos[-1] == "0000"  # the first of the lacking words, sorted
    assert "max_words" in caplog.text
    wide = Tagger(data.codec, word_dim=6, char_encoder="none", hidden_size=4).network.eval()
    with pytest.raises(ValueError, match=r"v.txt: vectors of 4 numbers for this model's word "
                                         r"embeddings of 6"):  # fmt: skip
        TaggingPredictor(wide, data.codec, vectors=str(path)).predict(NEW)
    with pytest.raises(ValueError, match=r"nothing.txt: no such word-vector file"):
        TaggingPredictor(network, data.codec, vectors=str(tmp_path / "nothing.txt"))


def test_predict_and_evaluate_take_vectors_on_the_command_line(tiny_ner, tmp_path, monkeypatch):
    path = _vector_file(tmp_path)
    files = _with_test_words(tiny_ner)
    monkeypatch.chdir(tmp_path)
    main(["fit", str(ROOT / "recipes" / "quickstart" / "ner.yaml"), "--data.dataset", "null",
          "--data.train", files["train"], "--data.validation", files["validation"],
          "--data.test", files["test"], "--data.cache_dir", str(tmp_path / "hf"),
          "--data.vectors", str(path), "--data.extend_vocab", "none",
          "--model.init_args.word_dim", "4", "--trainer.max_epochs", "1",
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    best = next((tmp_path / "runs").rglob("best-*.ckpt"))
    texts = tmp_path / "in.txt"
    texts.write_text("".join(" ".join(s) + "\n" for s in NEW), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    main(["predict", "--ckpt_path", str(best), "--input", str(texts), "--output", str(out),
          "--vectors", str(path), "--no_progress"])  # fmt: skip
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    predictor = seqnlp.load(best, vectors=str(path))
    assert records == predictor.predict([" ".join(s) for s in NEW])
    assert "Zaragoza" in predictor.codec.words.stoi
    assert "Zaragoza" not in seqnlp.load(best).codec.words.stoi
    scores = tmp_path / "scores.json"
    main(["evaluate", "--ckpt_path", str(best), "--input", files["test"], "--vectors", str(path),
          "--output", str(scores)])  # fmt: skip
    assert json.loads(scores.read_text())["sentences"] == 32
    with pytest.raises(ValueError, match=r"under the torch runtime only"):
        seqnlp.load(best, runtime="onnx", vectors=str(path))
