"""Classifier contract tests: gradients, padding invariance, save/load, batching."""

from __future__ import annotations

import random

import pytest
import pytorch_lightning as pl
import torch

from seqnlp.data import ClassificationDataModule, ClassificationVocab
from seqnlp.data.classification import collate_classification
from seqnlp.data.sources import resolve_named
from seqnlp.data.text_readers import read_labelled_text
from seqnlp.metrics import classification_scores
from seqnlp.nn.encoder import RNNEncoder
from seqnlp.nn.pooling import SequencePooling
from seqnlp.predict import ClassificationPredictor, load
from seqnlp.tasks import Classifier
from seqnlp.tasks.base import System
from seqnlp.tokenization import SentencePieceTokenizer, Vocab, WordTokenizer

SAMPLE = [r["text"] for r in read_labelled_text(resolve_named("sample_sentiment", "train"))]


def _vocab(kind: str = "word") -> ClassificationVocab:
    tokenizer = (
        WordTokenizer.fit(SAMPLE) if kind == "word" else SentencePieceTokenizer.fit(SAMPLE, 200)
    )
    return ClassificationVocab(tokenizer, Vocab(["0", "1", "2"], pad=None, unk=None))


def _batch(vocab: ClassificationVocab, texts: list[str], labels: list[int] | None = None):
    examples = [{"token_ids": vocab.encode_text(t)} for t in texts]
    if labels is not None:
        for e, y in zip(examples, labels, strict=True):
            e["label_id"] = y
    return collate_classification(examples)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "attention"])
def test_every_parameter_receives_a_gradient(cell, bidirectional, pooling):
    torch.manual_seed(0)
    vocab = _vocab()
    model = Classifier(vocab, embedding_dim=8, cell=cell, hidden_size=6, num_layers=2,
                       bidirectional=bidirectional, pooling=pooling, mlp_hidden=[5],
                       learn_initial_state=True, orthogonal_init=True)  # fmt: skip
    batch = _batch(vocab, SAMPLE[:6], [0, 1, 2, 1, 0, 2])
    model.training_loss(batch).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_does_not_change_a_prediction(pooling, bidirectional):
    torch.manual_seed(0)
    vocab = _vocab()
    model = Classifier(vocab, embedding_dim=8, cell="gru", hidden_size=6,
                       bidirectional=bidirectional, pooling=pooling).eval()  # fmt: skip
    texts = ["the film is good .", SAMPLE[0], "a dull movie with a dull cast and a weak ending ."]
    together = model.logits(_batch(vocab, texts))
    for i, text in enumerate(texts):
        torch.testing.assert_close(model.logits(_batch(vocab, [text]))[0], together[i])


def test_orthogonal_init_makes_recurrent_gates_orthogonal():
    model = Classifier(_vocab(), embedding_dim=4, cell="lstm", hidden_size=6, orthogonal_init=True)
    w = model.encoder.rnn.weight_hh_l0.detach()
    for gate in w.split(6):
        torch.testing.assert_close(gate @ gate.T, torch.eye(6), atol=1e-5, rtol=0)
    assert model.encoder.rnn.bias_hh_l0.abs().sum() == 0


def test_class_weights_must_match_the_label_set():
    with pytest.raises(ValueError, match=r"class_weights has 2 values for 3 classes"):
        Classifier(_vocab(), class_weights=[1.0, 2.0])
    vocab = _vocab()
    model = Classifier(vocab, embedding_dim=4, hidden_size=4, class_weights=[1.0, 0.0, 0.0]).eval()
    batch = _batch(vocab, SAMPLE[:4], [1, 2, 1, 2])
    assert model.loss(model.logits(batch), batch).isnan()  # weight 0 on every present class


def _fit(tmp_path, **model_args) -> tuple[pl.Trainer, Classifier]:
    pl.seed_everything(0)
    data = ClassificationDataModule(dataset="sample_sentiment", batch_size=32,
                                    cache_dir=str(tmp_path / "hf"))  # fmt: skip
    model = Classifier(data.vocab, embedding_dim=32, hidden_size=32, head_dropout=0.1,
                       embedding_dropout=0.1, **model_args)  # fmt: skip
    model.configure_optimizers = lambda: torch.optim.Adam(model.parameters(), lr=0.005)  # type: ignore[method-assign]
    trainer = pl.Trainer(max_epochs=6, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, datamodule=data)
    return trainer, model


def test_training_learns_and_save_load_round_trips(tmp_path):
    trainer, model = _fit(tmp_path, cell="gru", bidirectional=True, pooling="max")
    assert trainer.callback_metrics["val/accuracy"] > 90  # negation and contrast are learned
    ckpt = tmp_path / "clf.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = System.load(ckpt)
    assert isinstance(loaded, Classifier) and loaded.vocab == model.vocab
    texts = [r["text"] for r in read_labelled_text(resolve_named("sample_sentiment", "test"))]
    assert load(ckpt).predict(texts) == ClassificationPredictor(model).predict(texts)


def test_batched_prediction_equals_one_by_one(tmp_path):
    _, model = _fit(tmp_path, cell="lstm", pooling="attention")
    texts = [r["text"] for r in read_labelled_text(resolve_named("sample_sentiment", "test"))][:40]
    random.Random(0).shuffle(texts)
    texts[5] = "   "
    texts.append("zzz unseen words only")
    batched = ClassificationPredictor(model, batch_size=8).predict(texts)
    single = [ClassificationPredictor(model, batch_size=1).predict([t])[0] for t in texts]
    for b, s in zip(batched, single, strict=True):
        assert b["label"] == s["label"] and b["text"] == s["text"]
        for label in b["probabilities"]:
            assert b["probabilities"][label] == pytest.approx(s["probabilities"][label], abs=1e-4)
    assert batched[5] == {"text": "   ", "label": None, "probability": None, "probabilities": {}}
    assert batched[-1]["label"] in ("0", "1")


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_tokenizer_round_trips(model_type):
    tok = SentencePieceTokenizer.fit(SAMPLE, vocab_size=120, model_type=model_type)
    assert tok.id_to_piece(0) == "<pad>" and tok.id_to_piece(1) == "<unk>"
    text = "the film is not dull at all ."
    assert tok.decode(tok.encode(text)) == text
    again = SentencePieceTokenizer.from_state(tok.state_dict())
    assert again.encode(text) == tok.encode(text)
    assert SentencePieceTokenizer.fit(SAMPLE, 120, model_type).model_proto == tok.model_proto
    vocab = tok.as_vocab()
    assert [vocab.index(p) for p in tok.pieces(text)] == tok.encode(text)
    with pytest.raises(ValueError, match="unigram or bpe"):
        SentencePieceTokenizer.fit(SAMPLE, 100, "char")


def test_sentencepiece_data_module_trains_on_training_text_only(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("1 good good film\n0 bad bad film\n" * 20, encoding="utf-8")
    dev = tmp_path / "dev.txt"
    dev.write_text("1 xylophone quartet\n", encoding="utf-8")
    data = ClassificationDataModule(
        train=str(train), validation=str(dev), tokenizer="sentencepiece", vocab_size=30,
        cache_dir=str(tmp_path / "hf"),
    )  # fmt: skip
    tokenizer = data.vocab.tokenizer
    pieces = {tokenizer.id_to_piece(i) for i in range(len(tokenizer))}
    assert any("g" in p for p in pieces) and not any("x" in p or "q" in p for p in pieces)
    assert tokenizer.unk_id in tokenizer.encode("xylophone quartet")


def test_classification_scores_match_sklearn():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    rng = random.Random(3)
    gold = [rng.randrange(4) for _ in range(300)]
    pred = [g if rng.random() < 0.6 else rng.randrange(3) for g in gold]  # class 3 never predicted
    scores = classification_scores(gold, pred, ["a", "b", "c", "d"])
    assert scores["accuracy"] == pytest.approx(100 * accuracy_score(gold, pred))
    assert scores["macro_f1"] == pytest.approx(100 * f1_score(gold, pred, average="macro"))
    assert scores["f1_b"] == pytest.approx(100 * f1_score(gold, pred, labels=[1], average="macro"))
    assert scores["confusion"] == confusion_matrix(gold, pred).tolist()
    assert scores["support_d"] == gold.count(3)


def test_unseen_validation_label_is_reported(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("pos good\nneg bad\n", encoding="utf-8")
    dev = tmp_path / "dev.txt"
    dev.write_text("neutral fine\n", encoding="utf-8")
    data = ClassificationDataModule(train=str(train), validation=str(dev),
                                    cache_dir=str(tmp_path / "hf"))  # fmt: skip
    with pytest.raises(ValueError, match=r"dev.txt: labels \['neutral'\] never occur"):
        data.setup("fit")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, True)])
def test_last_pooling_from_final_states_equals_pooling_the_outputs(cell, layers, bidirectional):
    # Classifier.logits takes `last` from the encoder's final states (no unpacking);
    # it must equal SequencePooling("last") over the padded per-step outputs.
    torch.manual_seed(0)
    encoder = RNNEncoder(7, 5, cell=cell, num_layers=layers, bidirectional=bidirectional).eval()
    lengths = torch.tensor([4, 1, 6, 3])
    inputs = torch.randn(4, 6, 7)
    mask = torch.arange(6)[None, :] < lengths[:, None]
    with torch.no_grad():
        states, final = encoder(inputs, lengths)
        pooled = SequencePooling("last", encoder.output_size, bidirectional)(states, mask)
        fast = encoder.top_states(final)
    torch.testing.assert_close(fast, pooled)
