"""Frozen pretrained vectors beside a trainable word table (``model.freeze_embeddings``
with ``model.trainable_word_dim``): the vectors stay as the file gives them, the table
holds the training words only, and the model trains, saves, exports and predicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import seqnlp
from seqnlp.cli import main
from seqnlp.data import TaggingDataModule
from seqnlp.export.writer import export_model
from seqnlp.nn.embeddings import TrainingWordEmbedding

ROOT = Path(__file__).resolve().parents[1]


def test_ids_past_the_training_words_read_the_unk_row():
    torch.manual_seed(0)
    table = TrainingWordEmbedding(4, 3, pad_id=0, unk_id=1)
    ids = torch.tensor([[0, 1, 2, 3, 4, 9]])  # (batch 1, time 6): 4 and 9 are not in it
    out = table(ids)  # (1, 6, 3)
    weight = table.embedding.weight
    assert torch.equal(out[0, 0], torch.zeros(3))  # padding
    for position, row in [(1, 1), (2, 2), (3, 3), (4, 1), (5, 1)]:
        assert torch.equal(out[0, position], weight[row])
    out.sum().backward()
    assert weight.grad[1].tolist() == [3.0] * 3  # unk: itself and the two unknown ids
    assert weight.grad[0].abs().sum() == 0  # padding never learns
    with pytest.raises(ValueError, match="lacks <pad>/<unk>"):
        TrainingWordEmbedding(1, 3, pad_id=0, unk_id=1)


def _vectors(tmp_path: Path, words: list[str], dim: int) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    vectors = {w: rng.normal(size=dim).round(4).astype(np.float32) for w in words}
    path = tmp_path / "v.txt"
    path.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in vectors.items()))
    return path, vectors


def test_the_vectors_stay_fixed_while_the_table_learns(tiny_ner, tmp_path, monkeypatch):
    files = {k: str(v) for k, v in tiny_ner.items()}
    plain = TaggingDataModule(**files, cache_dir=str(tmp_path / "hf")).codec.words
    training = [w for w in plain.itos if w not in (plain.pad, plain.unk)]
    # vectors for half of the training words, and for two words no split has
    path, vectors = _vectors(tmp_path, [*training[::2], "Zaragoza", "Cuenca"], 4)
    monkeypatch.chdir(tmp_path)
    main(["fit", str(ROOT / "recipes" / "quickstart" / "ner.yaml"), "--data.dataset", "null",
          "--data.train", files["train"], "--data.validation", files["validation"],
          "--data.test", files["test"], "--data.cache_dir", str(tmp_path / "hf"),
          "--data.vectors", str(path), "--data.extend_vocab", "all", "--data.max_vectors", "100",
          "--model.init_args.word_dim", "4", "--model.init_args.freeze_embeddings", "true",
          "--model.init_args.trainable_word_dim", "3", "--trainer.max_epochs", "2",
          "--seed_everything", "1", "--trainer.enable_progress_bar", "false"])  # fmt: skip
    best = next((tmp_path / "runs").rglob("best-*.ckpt"))
    predictor = seqnlp.load(best)
    network, words = predictor.network, predictor.codec.words
    assert words.itos[: len(plain)] == plain.itos and words.itos[len(plain):] == [
        "Zaragoza", "Cuenca"]  # file order  # fmt: skip
    table = network.trainable_embedding.embedding
    assert table.num_embeddings == len(plain)  # the training words only
    for word, vector in vectors.items():  # the file's numbers, after two epochs
        assert torch.equal(network.word_embedding.weight[words.index(word)],
                           torch.from_numpy(vector))  # fmt: skip
    texts = ["Zaragoza vive en Cuenca .", "Ana vive en Lima", training[1]]
    expected = predictor.predict(texts)
    folder = export_model(best, tmp_path / "folder", onnx=True).folder
    assert seqnlp.load(folder).predict(texts) == expected
    onnx = seqnlp.load(folder, runtime="onnx").predict(texts)
    assert [r["tags"] for r in onnx] == [r["tags"] for r in expected]
    assert predictor.encode_token("Zaragoza")[0] == words.index("Zaragoza") >= len(plain)



def test_the_classifier_keeps_glove_fixed_beside_its_table(tmp_path, monkeypatch):
    """Kim (2014)'s multichannel: frozen vectors (the validation and test words' too)
    and a trained table of the training tokens; checkpoint, folder and ONNX agree."""
    good = ["great fun", "a great film", "fun and moving", "moving and great"]
    bad = ["dull film", "a dull mess", "boring and dull", "a boring mess"]
    splits = {"train": [f"1 {t}" for t in good] * 8 + [f"0 {t}" for t in bad] * 8,
              "validation": ["1 superb fun", "0 tedious mess"],
              "test": ["1 a superb film", "0 a tedious film"]}  # fmt: skip
    files = {}
    for split, lines in splits.items():
        files[split] = tmp_path / f"{split}.txt"
        files[split].write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    path, vectors = _vectors(tmp_path, ["great", "dull", "superb", "tedious", "film"], 4)
    monkeypatch.chdir(tmp_path)
    main(["fit", str(ROOT / "recipes" / "quickstart" / "sentiment.yaml"),
          "--data.dataset", "null", "--data.train", str(files["train"]),
          "--data.validation", str(files["validation"]), "--data.test", str(files["test"]),
          "--data.cache_dir", str(tmp_path / "hf"), "--data.vectors", str(path),
          "--model.init_args.embedding_dim", "4", "--model.init_args.hidden_size", "8",
          "--model.init_args.freeze_embeddings", "true",
          "--model.init_args.trainable_embedding_dim", "3", "--trainer.max_epochs", "2",
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    best = next((tmp_path / "runs").rglob("best-*.ckpt"))
    predictor = seqnlp.load(best)
    vocab = predictor.codec.tokenizer.vocab
    training = {w for t in good + bad for w in t.split()}
    table = predictor.network.trainable_embedding.embedding
    assert table.num_embeddings == len(training) + 2  # <pad>, <unk>: no extension word
    assert {"superb", "tedious"} <= set(vocab.itos[table.num_embeddings:])
    for word, vector in vectors.items():
        assert torch.equal(predictor.network.embedding.weight[vocab.index(word)],
                           torch.from_numpy(vector))  # fmt: skip
    texts = ["a superb film", "tedious and dull", "great"]
    expected = predictor.predict(texts)
    folder = export_model(best, tmp_path / "folder", onnx=True).folder
    assert seqnlp.load(folder).predict(texts) == expected
    onnx = seqnlp.load(folder, runtime="onnx").predict(texts)
    assert [r["label"] for r in onnx] == [r["label"] for r in expected]
    for got, want in zip(onnx, expected, strict=True):
        for label, p in want["probabilities"].items():
            assert got["probabilities"][label] == pytest.approx(p, abs=1e-5)


def test_vectors_scaled_to_a_standard_deviation_and_the_rows_added_later_alike(
    tiny_ner, tmp_path, monkeypatch
):
    """model.pretrained_std: one factor for all the vectors, kept with the model, and
    applied again to the rows that vocabulary extension adds at prediction."""
    from seqnlp.tasks import Tagger

    files = {k: str(v) for k, v in tiny_ner.items()}
    plain = TaggingDataModule(**files, cache_dir=str(tmp_path / "hf")).codec.words
    training = [w for w in plain.itos if w not in (plain.pad, plain.unk)]
    path, vectors = _vectors(tmp_path, [*training[:6], "Zaragoza"], 4)
    data = TaggingDataModule(**files, cache_dir=str(tmp_path / "hf"), vectors=str(path),
                             extend_vocab="none")  # fmt: skip
    given = data.codec.vectors  # every row with a vector (lowercase forms too)
    model = Tagger(data.codec, word_dim=4, pretrained_std=2.5)
    model.setup("fit")
    scale = model.hparams["pretrained_scale"]
    assert scale == pytest.approx(2.5 / float(given.vectors.std()))
    assert model.network.pretrained_scale == scale
    rows = model.network.word_embedding.weight[given.ids]  # (rows, 4)
    assert float(rows.std(unbiased=False)) == pytest.approx(2.5, rel=1e-5)
    assert torch.equal(rows, torch.from_numpy(given.vectors) * scale)
    with pytest.raises(ValueError, match=r"model\.pretrained_std must be positive, not 0\.0"):
        Tagger(data.codec, word_dim=4, pretrained_std=0.0).setup("fit")
    monkeypatch.chdir(tmp_path)
    main(["fit", str(ROOT / "recipes" / "quickstart" / "ner.yaml"), "--data.dataset", "null",
          "--data.train", files["train"], "--data.validation", files["validation"],
          "--data.cache_dir", str(tmp_path / "hf"), "--data.vectors", str(path),
          "--data.extend_vocab", "none", "--model.init_args.word_dim", "4",
          "--model.init_args.pretrained_std", "2.5", "--trainer.max_epochs", "1",
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    best = next((tmp_path / "runs").rglob("best-*.ckpt"))
    folder = export_model(best, tmp_path / "folder").folder
    for source in (best, folder):  # the factor travels with the model
        predictor = seqnlp.load(source, vectors=str(path))
        assert predictor.network.pretrained_scale == pytest.approx(scale)
        predictor.predict(["Zaragoza vive"])
        row = predictor.network.word_embedding.weight[predictor.codec.words.index("Zaragoza")]
        expected = torch.from_numpy(vectors["Zaragoza"]) * predictor.network.pretrained_scale
        assert torch.equal(row, expected)
