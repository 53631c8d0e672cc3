"""Pretrained word vectors: the file formats, streaming, vocabulary extension, the
models that start from them, and the ``vectors`` command (tiny files made here)."""

from __future__ import annotations

import bz2
import gzip
import importlib.util
import lzma
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seqnlp.cli import main
from seqnlp.data import ClassificationDataModule, TaggingDataModule
from seqnlp.data.subword_vectors import load_fasttext_model
from seqnlp.data.vectors import (
    PretrainedRows,
    VectorFile,
    copy_vectors,
    fit_vectors,
    write_vectors,
)
from seqnlp.tasks import Classifier, Tagger
from seqnlp.tokenization import Vocab

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["the", "Madrid", ". . .", "película", "0.5"]
VECTORS = np.arange(20, dtype=np.float32).reshape(5, 4) / 8 - 1  # exact in text and binary


def _text(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _glove_lines(words=WORDS, vectors=VECTORS) -> list[str]:
    return [" ".join([w, *map(repr, v.tolist())]) for w, v in zip(words, vectors, strict=True)]


def _read(path: Path, fmt="auto") -> tuple[VectorFile, list[str], np.ndarray]:
    file = VectorFile(path, fmt)
    entries = list(file.read())
    return file, [w for _, w, _ in entries], np.stack([v for _, _, v in entries])


# -- formats ------------------------------------------------------------------------


def test_glove_text_keeps_tokens_that_contain_spaces(tmp_path):
    file, words, vectors = _read(_text(tmp_path / "g.txt", _glove_lines()))
    assert (file.format, file.dim, file.count) == ("glove", 4, None)
    assert words == WORDS and np.array_equal(vectors, VECTORS)


def test_word2vec_and_fasttext_text_with_header(tmp_path):
    # fastText's .vec lines end with a space; a numeric word ("0.5") is still a word.
    lines = ["5 4", *(line + " " for line in _glove_lines())]
    for fmt in ("auto", "word2vec", "fasttext"):
        file, words, vectors = _read(_text(tmp_path / "v.vec", lines), fmt)
        assert (file.format, file.count) == ("word2vec", 5)
        assert words == WORDS and np.array_equal(vectors, VECTORS)


@pytest.mark.parametrize("newline", [b"", b"\n"])  # gensim writes none, word2vec.c one
def test_word2vec_binary(tmp_path, newline):
    path = tmp_path / "v.bin"
    words = [w for w in WORDS if " " not in w]  # the binary format ends a word at a space
    body = b"".join(w.encode() + b" " + struct.pack("<4f", *v) + newline
                    for w, v in zip(words, VECTORS.tolist(), strict=False))  # fmt: skip
    path.write_bytes(f"{len(words)} 4\n".encode() + body)
    for fmt in ("auto", "word2vec_binary"):
        file, read, vectors = _read(path, fmt)
        assert file.format == "word2vec_binary" and read == words
        assert np.array_equal(vectors, VECTORS[: len(words)])


@pytest.mark.parametrize("fmt", ["word2vec", "word2vec_binary", "glove"])
@pytest.mark.parametrize("opener", [open, gzip.open, lzma.open, bz2.open])
def test_written_files_read_back_plain_or_compressed(tmp_path, fmt, opener):
    path = tmp_path / "v.data"  # no telling suffix: the format and compression are sniffed
    written = [w.replace(" ", "_") for w in WORDS] if fmt == "word2vec_binary" else WORDS
    with opener(path, "wb") as handle:
        write_vectors(handle, written, VECTORS, fmt)
    file, words, vectors = _read(path)
    assert file.format == fmt and words == written and np.array_equal(vectors, VECTORS)


# -- bad files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "fmt", "message"),
    [
        (["a 1 2 3 4", "b 1 2"], "auto", r"v.txt:2: expected a word and 4 numbers, found 2"),
        (["a 1 2 3 4", "b 1 x 3 4"], "auto", r"v.txt:2: expected 4 numbers after the word, "
                                             r"found 'x'"),
        (["a 1 2 3 4", ""], "auto", r"v.txt:2: expected a word and 4 numbers"),
        (["2 4", "a 1 2 3 4"], "auto", r"v.txt: the header says 2 vectors, the file has 1"),
        (["2 4", "a 1 2 3 4"], "glove", r"v.txt:1: a 'COUNT DIM' header line"),
        (["a 1 2 3 4"], "word2vec", r"v.txt:1: expected a word2vec 'COUNT DIM' header"),
        (["a"], "auto", r"v.txt:1: expected a word and its numbers"),
    ],
)  # fmt: skip
def test_a_malformed_file_names_file_line_and_expectation(tmp_path, lines, fmt, message):
    path = _text(tmp_path / "v.txt", lines)
    with pytest.raises(ValueError, match=message):
        list(VectorFile(path, fmt).read())


def test_bad_binary_and_bad_encoding(tmp_path):
    path = tmp_path / "v.bin"
    path.write_bytes(b"2 4\nab " + struct.pack("<4f", 1, 2, 3, 4) + b"cd " + b"\0" * 7)
    with pytest.raises(ValueError, match=r"v.bin: vector 2: expected a word, a space and 16"):
        list(VectorFile(path).read())
    path = tmp_path / "v.txt"
    path.write_bytes(b"a 1 2\n\xff 1 2\n")
    with pytest.raises(ValueError, match=r"v.txt:2: not UTF-8 text"):
        list(VectorFile(path).read())
    with pytest.raises(ValueError, match=r"nothing.txt: no such word-vector file"):
        VectorFile(tmp_path / "nothing.txt")


# -- streaming, max_vectors, extension ---------------------------------------------


def _big(tmp_path: Path, n: int = 2000, bad_after: int | None = None) -> Path:
    lines = [f"w{i} {i} 0 0 {-i}" for i in range(n)]
    if bad_after is not None:
        lines.insert(bad_after, "broken 1 2")
    return _text(tmp_path / "big.txt", lines)


def test_only_the_needed_vectors_are_parsed_and_kept(tmp_path, monkeypatch):
    parsed: list[str] = []
    original = VectorFile._vector
    monkeypatch.setattr(VectorFile, "_vector", lambda self, payload, where: (
        parsed.append(where), original(self, payload, where))[1])  # fmt: skip
    vocab = Vocab(["w5", "w1999"])
    extended, rows = fit_vectors(_big(tmp_path), vocab, data_words=["w7", "unknown"])
    assert len(parsed) == 3  # of 2,000 lines
    assert extended.itos == ["<pad>", "<unk>", "w5", "w1999", "w7"]
    assert rows.ids == [2, 3, 4] and rows.vectors[:, 0].tolist() == [5, 1999, 7]


def test_max_vectors_reads_the_first_n_only(tmp_path):
    path = _big(tmp_path, bad_after=10)  # the malformed line after the first 10 is not read
    vocab, rows = fit_vectors(path, Vocab(["w3", "w50"]), ["w4"], max_vectors=10)
    assert vocab.itos[2:] == ["w3", "w50", "w4"] and rows.ids == [2, 4]  # no w50: not read
    vocab, rows = fit_vectors(path, Vocab(["w3"]), [], max_vectors=10, extend="all")
    assert vocab.itos[2:] == ["w3", *(f"w{i}" for i in range(10) if i != 3)]
    assert len(rows.ids) == 10
    with pytest.raises(ValueError, match=r"extend_vocab all .* set data.max_vectors"):
        fit_vectors(path, Vocab([]), extend="all")
    with pytest.raises(ValueError, match=r"data.max_vectors must be at least 1, not 0"):
        fit_vectors(path, Vocab([]), max_vectors=0)
    with pytest.raises(ValueError, match=r"big.txt:11: expected a word and 4 numbers"):
        fit_vectors(path, Vocab([]), max_vectors=11)


def test_extension_in_file_order_with_the_lowercase_fallback(tmp_path):
    path = _text(tmp_path / "v.txt", ["paris 1 1", "Roma 2 2", "roma 3 3", "lima 4 4", "ana 5 5"])
    vocab = Vocab(["Ana", "roma"])
    data = ["Lima", "Paris", "Roma", "Ana", "Quito"]
    extended, rows = fit_vectors(path, vocab, data, extend="data")
    # Added after the training words, in the order of their vectors in the file.
    assert extended.itos == ["<pad>", "<unk>", "Ana", "roma", "Paris", "Roma", "Lima"]
    got = dict(zip((extended.itos[i] for i in rows.ids), rows.vectors[:, 0].tolist(),
                   strict=True))  # fmt: skip
    assert got == {"Ana": 5, "roma": 3, "Paris": 1, "Roma": 2, "Lima": 4}
    same, rows = fit_vectors(path, vocab, data, extend="none")
    assert same == vocab and len(rows.ids) == 2


def test_a_dimension_other_than_the_models_is_refused_saying_what_to_set():
    rows = PretrainedRows([2], np.ones((1, 3), np.float32), "v.txt")
    with pytest.raises(ValueError, match=r"v.txt: vectors of 3 numbers for embeddings of 4: "
                                         r"set model.word_dim 3"):  # fmt: skip
        copy_vectors(rows, torch.zeros(5, 4), "model.word_dim")


# -- data modules and systems --------------------------------------------------------


def test_the_tagger_data_extends_its_words_and_the_tagger_starts_from_them(tiny_ner, tmp_path):
    test_only = "Zaragoza"
    with open(tiny_ner["test"], "a", encoding="utf-8") as handle:
        handle.write(f"{test_only} B-LOC\nen O\n1999 O\n\n")
    path = _text(tmp_path / "v.txt", ["zaragoza 1 2 3 4", "1985 5 5 5 5", "madrid 0 1 0 1"])
    files = {k: str(v) for k, v in tiny_ner.items()}
    plain = TaggingDataModule(**files, cache_dir=str(tmp_path / "hf"))
    data = TaggingDataModule(**files, cache_dir=str(tmp_path / "hf"), vectors=str(path))
    words, base = data.codec.words, plain.codec.words
    assert words.itos[: len(base)] == base.itos and plain.codec.vectors is None
    assert words.itos[len(base) :] == [test_only, "0000"]  # digits to 0, as the data's words
    model = Tagger(data.codec, word_dim=4, char_encoder="none", hidden_size=4)
    model.setup("fit")
    weight = model.network.word_embedding.weight
    assert weight[words.index(test_only)].tolist() == [1, 2, 3, 4]  # lowercase fallback
    assert weight[words.index("Madrid")].tolist() == [0, 1, 0, 1]
    assert weight[words.index("0000")].tolist() == [5] * 4
    assert weight[words.pad_id].abs().sum() == 0
    wrong = Tagger(data.codec, word_dim=6, char_encoder="none", hidden_size=4)
    with pytest.raises(ValueError, match=r"v.txt: vectors of 4 numbers .* set model.word_dim 4"):
        wrong.setup("fit")
    both = Tagger(data.codec, word_dim=4, pretrained_embeddings=str(path))
    with pytest.raises(ValueError, match=r"both data.vectors .* and model.pretrained_embeddings"):
        both.setup("fit")


def _sentiment_files(tmp_path: Path) -> dict[str, str]:
    good = ["great fun", "a great film", "fun and moving", "moving and great"]
    bad = ["dull film", "a dull mess", "boring and dull", "a boring mess"]
    train = [f"1 {t}" for t in good] * 8 + [f"0 {t}" for t in bad] * 8
    paths = {
        "train": _text(tmp_path / "train.txt", train),
        "validation": _text(tmp_path / "dev.txt", ["1 superb fun", "0 tedious mess"]),
        "test": _text(tmp_path / "test.txt", ["1 a superb film", "0 a tedious film"]),
    }
    return {k: str(v) for k, v in paths.items()}


def test_the_classifier_trains_with_vectors_and_predicts_without_the_file(tmp_path, monkeypatch):
    """Fit through the CLI with data.vectors, then remove the file: the checkpoint
    predicts, scores and keeps the extended rows."""
    import seqnlp

    files = _sentiment_files(tmp_path)
    rows = {"superb": [1, 1, 1, 1], "tedious": [-1, -1, -1, -1], "great": [1, 0.5, 1, 0.5]}
    vectors = _text(tmp_path / "v.txt", [f"{w} {' '.join(map(str, v))}" for w, v in rows.items()])
    monkeypatch.chdir(tmp_path)
    main(["fit", str(ROOT / "recipes" / "quickstart" / "sentiment.yaml"),
          "--data.dataset", "null", "--data.train", files["train"],
          "--data.validation", files["validation"], "--data.test", files["test"],
          "--data.cache_dir", str(tmp_path / "hf"), "--data.vectors", str(vectors),
          "--model.init_args.embedding_dim", "4", "--model.init_args.hidden_size", "8",
          "--model.init_args.freeze_embeddings", "true", "--trainer.max_epochs", "2",
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    run = tmp_path / "runs" / "quickstart-sentiment" / "tb" / "version_0" / "checkpoints"
    best = next(run.glob("best-*.ckpt"))
    vectors.unlink()
    predictor = seqnlp.load(best)
    tokenizer = predictor.codec.tokenizer
    assert tokenizer.pieces("superb tedious") == ["superb", "tedious"]
    assert tokenizer.unk_id not in tokenizer.encode("superb tedious")  # rows of their own
    weight = predictor.network.embedding.weight
    for word, vector in rows.items():
        assert weight[tokenizer.vocab.index(word)].tolist() == vector  # frozen: as in the file
    assert len(predictor.predict(["a superb film", "tedious"])) == 2
    main(["evaluate", "--ckpt_path", str(best), "--input", files["test"]])


def test_classifier_data_without_vectors_is_unchanged(tmp_path):
    files = _sentiment_files(tmp_path)
    path = _text(tmp_path / "v.txt", ["superb 1 1", "great 2 2"])
    plain = ClassificationDataModule(**files, cache_dir=str(tmp_path / "hf"))
    none = ClassificationDataModule(**files, cache_dir=str(tmp_path / "hf"), vectors=str(path),
                                    extend_vocab="none")  # fmt: skip
    data = ClassificationDataModule(**files, cache_dir=str(tmp_path / "hf"), vectors=str(path))
    assert plain.codec.vectors is None and none.codec == plain.codec != data.codec
    assert data.codec.tokenizer.vocab.itos[-1] == "superb"
    untouched = Classifier(plain.codec, embedding_dim=2, hidden_size=4)
    before = untouched.network.embedding.weight.clone()
    untouched.setup("fit")  # no vectors: the weights stay as built
    assert torch.equal(untouched.network.embedding.weight, before)
    model = Classifier(data.codec, embedding_dim=2, hidden_size=4)
    model.setup("fit")
    assert model.network.embedding.weight[-1].tolist() == [1, 1]
    reloaded = type(data.codec).from_state(data.codec.state_dict())
    assert reloaded == data.codec and reloaded.vectors is None  # vectors are never saved


# -- the vectors command and the GloVe conversion ------------------------------------


def test_the_vectors_command_trains_readable_vectors(tmp_path, capsys):
    pytest.importorskip("gensim")
    text = ["El tren llegó a Madrid, dijo Ana.", "Ana vive en Madrid desde 1999."] * 30
    corpus = tmp_path / "raw.txt.gz"
    with gzip.open(corpus, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(text) + "\n")
    out = tmp_path / "es.vec"
    main(["vectors", "--input", str(corpus), "--output", str(out), "--dim", "8",
          "--min_count", "1", "--epochs", "1", "--workers", "1", "--language", "es",
          "--zero_digits", "--jobs", "2"])  # fmt: skip
    file, words, vectors = _read(out)
    assert (file.format, file.dim) == ("word2vec", 8) and vectors.shape == (len(words), 8)
    assert {"Madrid", ",", ".", "0000"} <= set(words)  # the spaCy pretokenizer's tokens
    assert "Madrid," not in words
    with pytest.raises(SystemExit):
        main(["vectors", "--input", str(corpus), "--output", str(out), "--min_count", "1000",
              "--jobs", "1"])  # fmt: skip
    assert "no vectors trained (no word occurs --min_count 1000 times?)" in capsys.readouterr().err


def _fasttext_model(tmp_path: Path, **options):
    """A tiny fastText model trained here, and the same model saved as fastText's .bin."""
    ft = pytest.importorskip("gensim.models.fasttext")
    sentences = [["la", "casa", "de", "Madrid"], ["el", "perro", "de", "la", "casa"],
                 ["Ana", "vive", "en", "Madrid"], ["la", "ciudad", "de", "Ana"]] * 20
    model = ft.FastText(sentences, vector_size=6, min_count=1, epochs=2, workers=1, seed=1,
                        bucket=500, **options)  # fmt: skip
    path = tmp_path / "model.bin"
    ft.save_facebook_model(model, str(path))
    return model, path


def test_a_fasttext_model_gives_every_word_a_vector(tmp_path):
    model, path = _fasttext_model(tmp_path)
    vocab = Vocab(["casa", "Casa", "perros", "<e>"])  # <e>: a training word it lacks
    data = ["Madrid", "MADRID", "ciudades", "casa"]
    extended, rows = fit_vectors(path, vocab, data)  # told by its first bytes
    assert extended.itos == ["<pad>", "<unk>", "casa", "Casa", "perros", "<e>",
                             "MADRID", "Madrid", "ciudades"]  # fmt: skip
    got = dict(zip((extended.itos[i] for i in rows.ids), rows.vectors, strict=True))
    assert set(got) == set(extended.itos[2:])  # every word, no <pad> or <unk>
    wv = model.wv
    assert np.allclose(got["casa"], wv["casa"]) and np.allclose(got["Madrid"], wv["Madrid"])
    assert np.allclose(got["Casa"], wv["casa"])  # the lowercase form's own vector
    for word in ("perros", "ciudades", "MADRID", "<e>"):  # not in the model: from n-grams
        assert word not in wv.key_to_index
        assert np.allclose(got[word], wv[word], atol=1e-6) and np.any(got[word])
    assert not np.allclose(got["perros"], got["ciudades"])
    same, rows = fit_vectors(path, vocab, data, extend="none")
    assert same == vocab and len(rows.ids) == 4  # no rows added, all four get vectors
    first, rows = fit_vectors(path, Vocab([]), [], max_vectors=2, extend="all")
    assert first.itos[2:] == sorted(wv.index_to_key[:2])


def test_a_fasttext_model_without_ngrams_gives_its_own_words_only(tmp_path):
    model, path = _fasttext_model(tmp_path, max_n=0)
    assert model.wv.bucket == 0
    extended, rows = fit_vectors(path, Vocab(["casa", "perros"]), ["Madrid", "ciudades"])
    assert extended.itos[2:] == ["casa", "perros", "Madrid"]
    assert [extended.itos[i] for i in rows.ids] == ["casa", "Madrid"]


def test_a_fasttext_model_is_refused_where_vectors_are_read_as_text(tmp_path):
    _, path = _fasttext_model(tmp_path)
    with pytest.raises(ValueError, match=r"model.bin: a whole fastText model \(.bin\)"):
        VectorFile(path)
    with pytest.raises(ValueError, match=r"model.bin: a whole fastText model"):
        fit_vectors(path, Vocab(["casa"]), format="word2vec")
    text = _text(tmp_path / "v.txt", ["casa 1 2"])
    with pytest.raises(ValueError, match=r"v.txt: not a fastText model \(.bin\)"):
        fit_vectors(text, Vocab(["casa"]), format="fasttext_bin")
    broken = tmp_path / "broken.bin"
    broken.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"broken.bin: not a readable fastText model"):
        fit_vectors(broken, Vocab(["casa"]))


def test_the_vectors_command_writes_a_fasttext_model_the_data_reads(tmp_path, tiny_ner):
    pytest.importorskip("gensim")
    corpus = _text(tmp_path / "raw.txt", ["El tren llegó a Madrid, dijo Ana."] * 40)
    out, model = tmp_path / "es.vec", tmp_path / "es.bin"
    main(["vectors", "--input", str(corpus), "--output", str(out), "--model_output", str(model),
          "--method", "fasttext", "--dim", "4", "--min_count", "1", "--epochs", "1",
          "--workers", "1", "--jobs", "1", "--language", "es", "--buckets", "1000"])  # fmt: skip
    _, words, _ = _read(out)
    assert "Madrid" in words and model.is_file()
    assert load_fasttext_model(model).bucket == 1000
    assert not list(tmp_path.glob(".*partial"))
    files = {k: str(v) for k, v in tiny_ner.items()}
    plain = TaggingDataModule(**files, cache_dir=str(tmp_path / "hf"))
    data = TaggingDataModule(**files, cache_dir=str(tmp_path / "hf"), vectors=str(model))
    words = data.codec.words
    assert words.itos[: len(plain.codec.words)] == plain.codec.words.itos
    assert len(data.codec.vectors.ids) == len(words) - 2  # every word but <pad> and <unk>
    tagger = Tagger(data.codec, word_dim=4, char_encoder="none", hidden_size=4)
    tagger.setup("fit")
    row = data.codec.vectors.ids[0]
    assert torch.allclose(tagger.network.word_embedding.weight[row],
                          torch.from_numpy(data.codec.vectors.vectors[0]))  # fmt: skip
    with pytest.raises(SystemExit):
        main(["vectors", "--input", str(corpus), "--output", str(out),
              "--model_output", str(model)])  # fmt: skip


def test_the_vectors_command_without_gensim_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gensim", None)
    monkeypatch.setitem(sys.modules, "gensim.models", None)
    with pytest.raises(SystemExit):
        main(["vectors", "--input", str(tmp_path / "x.txt"), "--output", str(tmp_path / "y")])
    assert "pip install 'seqnlp[vectors]'" in capsys.readouterr().err


def test_the_glove_conversion_writes_what_the_array_holds(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    spec = importlib.util.spec_from_file_location("convert_glove", ROOT / "scripts" /
                                                  "convert_glove.py")  # fmt: skip
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    np.save(tmp_path / "a.npy", VECTORS)
    pq.write_table(pa.table({"index": WORDS}), tmp_path / "i.parquet")
    out = str(tmp_path / "g.txt.gz")
    words, vectors = script.convert(tmp_path / "a.npy", tmp_path / "i.parquet", out)
    assert script.check(out, words, vectors) == 0
    assert VectorFile(out).format == "glove"
