"""The classifier with character language models as token features (issue 17, as the
tagger has them): characters in the codec and the batches only when asked for, the
LMs' weights inside the checkpoint and the exported folder, frozen or fine-tuned, and
one-line refusals where they cannot go (piece tokens, no characters, streaming, ONNX)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from contract import records_close

import seqnlp
from seqnlp.data import ClassificationCodec, ClassificationDataModule
from seqnlp.data.classification import collate_classification
from seqnlp.tasks import Classifier
from seqnlp.tasks.char_lms import read_char_lm
from seqnlp.tokenization import SentencePieceTokenizer, Vocab, WordTokenizer

ROOT = Path(__file__).resolve().parents[1]
GOOD, BAD = ["good", "Great", "superb", "fine"], ["bad", "dull", "Awful", "weak"]
TEXTS = ["the film is Great .", "", "a dull , weak story", "Zürich ñandú qqq", "   ", "fine"]


def _write_data(folder: Path, n: int, seed: int) -> Path:
    """Labelled lines ("label text") of a learnable toy sentiment."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        y = rng.randrange(2)
        subject, word = rng.choice(["film", "story"]), rng.choice(GOOD if y else BAD)
        lines.append(f"{y} the {subject} is {word} .")
    path = folder / f"data{seed}.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lms(tmp_path_factory) -> list[str]:
    """A forward and a backward character LM, two training steps each on a few lines."""
    from seqnlp.cli import main

    tmp = tmp_path_factory.mktemp("charlms")
    text = tmp / "text.txt"
    text.write_text("the film is good .\na dull and weak story .\nGreat acting, superb!\n" * 20,
                    encoding="utf-8")  # fmt: skip
    paths = []
    for direction in ("forward", "backward"):
        root = tmp / direction
        main(["fit", str(ROOT / "recipes" / "quickstart" / "charlm.yaml"), "--data.dataset",
              "null", "--data.train", str(text), "--data.validation", str(text),
              "--data.direction", direction, "--data.batch_size", "4", "--data.bptt", "20",
              "--model.hidden_size", "12", "--model.embedding_dim", "6", "--trainer.max_steps",
              "2", "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", str(root), "--trainer.logger", "false",
              "--data.cache_dir", str(tmp / "hf")])  # fmt: skip
        paths.append(str(next(root.rglob("last.ckpt"))))
    return paths


def _data(tmp_path: Path, **options) -> ClassificationDataModule:
    return ClassificationDataModule(
        train=str(_write_data(tmp_path, 48, 1)), validation=str(_write_data(tmp_path, 16, 2)),
        pretokenizer="whitespace", batch_size=16, cache_dir=str(tmp_path / "hf"), **options,
    )  # fmt: skip


def test_the_codec_gives_characters_only_when_asked(tmp_path):
    plain = _data(tmp_path).codec
    assert plain.chars is None and "chars" not in plain.state_dict()
    assert "char_ids" not in plain.encode_example("the film")
    codec = _data(tmp_path, chars=True).codec
    assert codec.chars is not None and {"G", "A", "."} <= set(codec.chars.itos)
    example = codec.encode_example(codec.raw_form("Great  filmÜ"))
    unk = codec.chars.unk_id
    assert example["char_ids"] == [codec.chars.encode("Great"), [*codec.chars.encode("film"), unk]]
    assert len(example["char_ids"]) == len(example["token_ids"])
    again = ClassificationCodec.from_state(codec.state_dict())
    assert again == codec and again.chars == codec.chars
    old = {k: v for k, v in codec.state_dict().items() if k not in ("chars", "max_token_chars")}
    assert ClassificationCodec.from_state(old).chars is None  # a codec saved before them
    batch = collate_classification([codec.encode_example(t) for t in ["a film", "the film is ok"]])
    assert batch.char_ids is not None and batch.char_ids.shape == (2, 4, 4)
    assert batch.char_ids[0, 2:].eq(0).all()  # padding
    assert collate_classification([plain.encode_example("a film")]).char_ids is None


def test_a_classifier_without_lms_is_built_as_before(tmp_path):
    """Characters in the codec change nothing in a classifier that does not read them."""
    sizes = {"embedding_dim": 8, "hidden_size": 6}
    torch.manual_seed(0)
    plain = Classifier(_data(tmp_path).codec, **sizes)
    torch.manual_seed(0)
    with_chars = Classifier(_data(tmp_path, chars=True).codec, **sizes)
    assert plain.network.char_lms is None and with_chars.network.char_lms is None
    mine, theirs = plain.state_dict(), with_chars.state_dict()
    assert mine.keys() == theirs.keys()
    for name, value in mine.items():
        torch.testing.assert_close(theirs[name], value, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("trainable", [False, True])
def test_gradients_reach_the_lms_only_when_trainable(lms, tmp_path, trainable):
    pl.seed_everything(0)
    data = _data(tmp_path, chars=True)
    model = Classifier(data.codec, embedding_dim=8, hidden_size=6, char_lms=lms,
                       char_lm_trainable=trainable).train()  # fmt: skip
    assert model.hparams.char_lm_specs[1]["backward"] and "char_lms" in model.hparams
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch.char_ids is not None and batch.char_ids.shape[:2] == batch.token_ids.shape
    model.training_loss(batch).backward()
    features = model.network.char_lms
    assert features is not None and features.output_size == 24
    for name, parameter in model.named_parameters():
        in_lms = name.startswith("network.char_lms.")
        if in_lms and not trainable:
            assert not parameter.requires_grad and parameter.grad is None, name
        else:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_refusals_are_one_line(lms, tmp_path):
    codec = _data(tmp_path).codec
    with pytest.raises(ValueError, match=r"set data.chars true") as err:
        Classifier(codec, char_lms=lms)
    assert "\n" not in str(err.value)
    pieces = SentencePieceTokenizer.fit(["the film is good", "a dull story"] * 20, 30)
    with pytest.raises(ValueError, match=r"need data.tokenizer word, not sentencepiece"):
        Classifier(ClassificationCodec(pieces, Vocab(["0", "1"], pad=None, unk=None)), char_lms=lms)
    with pytest.raises(ValueError, match=r"data.chars .* needs data.tokenizer word"):
        _data(tmp_path, chars=True, tokenizer="sentencepiece")
    labels = Vocab(["0", "1"], pad=None, unk=None)
    words = ClassificationCodec(WordTokenizer(Vocab(["film"])), labels, chars=Vocab(list("film")))
    network = Classifier(words, embedding_dim=4, hidden_size=4, char_lms=lms).network.eval()
    with pytest.raises(ValueError, match="give char_ids"):
        network(torch.tensor([[2]]), torch.tensor([1]))


def test_a_classifier_with_char_lms_fits_and_stands_alone(lms, tmp_path, monkeypatch):
    """``seqnlp fit`` with ``model.char_lms``: the checkpoint and its exported folder
    predict alone (LM files gone), the same in batches as one by one; frozen LMs are the
    LMs as trained; streaming and ONNX refuse."""
    from seqnlp.cli import main
    from seqnlp.export.writer import export_model
    from seqnlp.gate_inspector import gate_report

    monkeypatch.chdir(tmp_path)
    own = []
    for i, path in enumerate(lms):  # copies of the LM checkpoints, deleted after training
        (tmp_path / "lms").mkdir(exist_ok=True)
        own.append(str(shutil.copy(path, tmp_path / "lms" / f"lm{i}.ckpt")))
    train, dev = _write_data(tmp_path, 48, 1), _write_data(tmp_path, 16, 2)
    main(["fit", str(ROOT / "recipes" / "quickstart" / "sentiment.yaml"), "--data.dataset",
          "null", "--data.train", str(train), "--data.validation", str(dev), "--data.chars",
          "true", "--data.pretokenizer", "whitespace", "--data.cache_dir", str(tmp_path / "hf"),
          "--model.embedding_dim", "8", "--model.hidden_size", "8",
          "--model.init_args.char_lms", json.dumps(own), "--trainer.max_epochs", "1",
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    ckpt = next((tmp_path / "runs" / "quickstart-sentiment").rglob("last.ckpt"))
    predictor = seqnlp.load(str(ckpt))
    features = predictor.network.char_lms
    assert features is not None and features.backward == [False, True]
    for k, path in enumerate(own):  # frozen: the LMs' weights as they were trained
        _, weights, char_map = read_char_lm(path, predictor.codec.chars)
        for name, value in features.lms[k].state_dict().items():
            torch.testing.assert_close(value, weights[name], rtol=0, atol=0, msg=name)
        assert features.char_maps[k].tolist() == char_map
    records = predictor.predict(TEXTS)
    assert [r["label"] is None for r in records] == [False, True, False, False, True, False]
    shutil.rmtree(tmp_path / "lms")
    alone = seqnlp.load(str(ckpt), batch_size=1)
    assert alone.predict(TEXTS) == records
    records_close([alone.predict([t])[0] for t in TEXTS], records, tolerance=1e-4)
    assert seqnlp.load(str(ckpt), batch_size=2).evaluate(str(dev))["examples"] == 16

    export_model(str(ckpt), str(tmp_path / "model"))
    assert (tmp_path / "model" / "vocab.chars.json").is_file()
    folder = seqnlp.load(str(tmp_path / "model"))
    assert folder.predict(TEXTS) == records
    with pytest.raises(ValueError, match="no character language models"):
        export_model(str(ckpt), str(tmp_path / "m2"), onnx=True)
    assert not (tmp_path / "m2").exists()
    with pytest.raises(ValueError, match=r"character language models.*torch runtime"):
        seqnlp.load(str(tmp_path / "model"), runtime="onnx")
    with pytest.raises(ValueError, match="cannot feed a classifier with character language"):
        predictor.stream()
    int8 = seqnlp.load(str(ckpt), quantize="int8").predict(TEXTS)  # the LMs' LSTMs too
    assert [r["label"] is None for r in int8] == [r["label"] is None for r in records]
    report = gate_report(predictor, "the film is good")
    assert report["tokens"] == ["the", "film", "is", "good"]
