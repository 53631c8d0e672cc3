"""The classifier: learning, tokenizers, class weights, scores, pooling (the contract every
network and system keeps is in test_contract.py)."""

from __future__ import annotations

import random

import pytest
import pytorch_lightning as pl
import torch

from seqnlp.data import ClassificationCodec, ClassificationDataModule
from seqnlp.data.classification import collate_classification
from seqnlp.data.classification_readers import read_labelled_text
from seqnlp.data.sources import resolve_named
from seqnlp.metrics import classification_scores
from seqnlp.nn.encoder import RNNEncoder
from seqnlp.tasks import Classifier
from seqnlp.tokenization import SentencePieceTokenizer, Vocab, WordTokenizer

SAMPLE = [r["text"] for r in read_labelled_text(resolve_named("sample_sentiment", "train"))]


def _codec(kind: str = "word") -> ClassificationCodec:
    tokenizer = (
        WordTokenizer.fit(SAMPLE) if kind == "word" else SentencePieceTokenizer.fit(SAMPLE, 200)
    )
    return ClassificationCodec(tokenizer, Vocab(["0", "1", "2"], pad=None, unk=None))


def _batch(codec: ClassificationCodec, texts: list[str], labels: list[int] | None = None):
    examples = [{"token_ids": codec.encode_text(t)} for t in texts]
    if labels is not None:
        for e, y in zip(examples, labels, strict=True):
            e["label_id"] = y
    return collate_classification(examples)


def test_orthogonal_init_makes_recurrent_gates_orthogonal():
    model = Classifier(_codec(), embedding_dim=4, cell="lstm", hidden_size=6, init="orthogonal")
    rnn = model.network.encoder.rnn
    for gate in rnn.weight_hh_l0.detach().split(6):
        torch.testing.assert_close(gate @ gate.T, torch.eye(6), atol=1e-5, rtol=0)
    assert rnn.bias_hh_l0.abs().sum() == 0


def test_class_weights_must_match_the_label_set():
    with pytest.raises(ValueError, match=r"class_weights has 2 values for 3 classes"):
        Classifier(_codec(), class_weights=[1.0, 2.0])
    codec = _codec()
    model = Classifier(codec, embedding_dim=4, hidden_size=4, class_weights=[1.0, 0.0, 0.0]).eval()
    batch = _batch(codec, SAMPLE[:4], [1, 2, 1, 2])
    assert model.loss(model.logits(batch), batch).isnan()  # weight 0 on every present class


def _fit(tmp_path, **model_args) -> tuple[pl.Trainer, Classifier]:
    pl.seed_everything(0)
    data = ClassificationDataModule(dataset="sample_sentiment", batch_size=32,
                                    cache_dir=str(tmp_path / "hf"))  # fmt: skip
    model = Classifier(data.codec, embedding_dim=32, hidden_size=32, head_dropout=0.1,
                       embedding_dropout=0.1, **model_args)  # fmt: skip
    model.configure_optimizers = lambda: torch.optim.Adam(model.parameters(), lr=0.005)  # type: ignore[method-assign]
    trainer = pl.Trainer(max_epochs=6, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, datamodule=data)
    return trainer, model


def test_training_learns_negation_and_contrast(tmp_path):
    trainer, _ = _fit(tmp_path, cell="gru", bidirectional=True, pooling="max")
    assert trainer.callback_metrics["val/accuracy"] > 90  # negation and contrast are learned


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
    assert [vocab.index(tok.id_to_piece(i)) for i in tok.encode(text)] == tok.encode(text)
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
    tokenizer = data.codec.tokenizer
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
def test_last_pooling_from_final_states_equals_the_outputs_at_the_ends(cell, layers, bidirectional):
    # `last` pooling takes the encoder's final states (no unpacking); they must equal the
    # top layer's outputs at the ends: forward at the last real token, backward at the first.
    torch.manual_seed(0)
    encoder = RNNEncoder(7, 5, cell=cell, num_layers=layers, bidirectional=bidirectional).eval()
    lengths = torch.tensor([4, 1, 6, 3])
    inputs = torch.randn(4, 6, 7)
    with torch.no_grad():
        states, final = encoder(inputs, lengths)  # states: (4, 6, directions * 5)
        fast = encoder.top_states(final)
    last = states[torch.arange(4), lengths - 1]  # (4, directions * 5)
    expected = torch.cat([last[:, :5], states[:, 0, 5:]], dim=-1) if bidirectional else last
    torch.testing.assert_close(fast, expected)
