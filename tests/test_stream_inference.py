"""Streaming inference (issue 18): a unidirectional classifier fed one token at a time
gives, after the last token, what batch prediction gives on the whole text; the
stream's memory does not grow with the text; bidirectional models refuse."""

from __future__ import annotations

import pytest
import torch

from seqnlp.data import ClassificationCodec
from seqnlp.data.classification_readers import read_labelled_text
from seqnlp.data.sources import resolve_named
from seqnlp.models.classifier import ClassifierNetwork
from seqnlp.predict.classifier import ClassificationPredictor
from seqnlp.tokenization import SentencePieceTokenizer, Vocab, WordTokenizer

SAMPLE = [r["text"] for r in read_labelled_text(resolve_named("sample_sentiment", "train"))]


def _predictor(cell: str, pooling: str, tokenizer: str = "word", **options):
    torch.manual_seed(0)
    tok = WordTokenizer.fit(SAMPLE) if tokenizer == "word" else (
        SentencePieceTokenizer.fit(SAMPLE, 200))  # fmt: skip
    codec = ClassificationCodec(tok, Vocab(["neg", "pos"], pad=None, unk=None))
    network = ClassifierNetwork(
        len(tok), 2, embedding_dim=8, cell=cell, hidden_size=6, num_layers=2, pooling=pooling,
        attention_size=5, mlp_hidden=[4], pad_id=tok.pad_id, unk_id=tok.unk_id, **options,
    )  # fmt: skip
    return ClassificationPredictor(network, codec, pretokenized=True)


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize("cell", ["lstm", "layernorm_gru"])
def test_the_stream_ends_where_batch_prediction_does(cell, pooling):
    predictor = _predictor(cell, pooling, residual=True)
    stream = predictor.stream()
    for text in SAMPLE[:3]:
        stream.reset()
        tokens = text.split()
        for n, token in enumerate(tokens, start=1):
            record = stream.feed(token)
            if n in (1, len(tokens) // 2, len(tokens)):  # every prefix is a text of its own
                prefix = " ".join(tokens[:n])
                expected = predictor.predict([prefix])[0]
                assert record["text"] == expected["text"] and record["label"] == expected["label"]
                for label, p in expected["probabilities"].items():
                    assert record["probabilities"][label] == pytest.approx(p, abs=2e-4)


def test_a_stream_reads_both_tables():
    """Frozen rows beside a trainable table of the first 20 tokens (later ids: <unk>'s)."""
    predictor = _predictor("lstm", "max", freeze_embeddings=True, trainable_embedding_dim=3,
                           trainable_tokens=20)  # fmt: skip
    stream = predictor.stream()
    text = SAMPLE[0]
    for token in text.split():
        record = stream.feed(token)
    expected = predictor.predict([text])[0]
    for label, p in expected["probabilities"].items():
        assert record["probabilities"][label] == pytest.approx(p, abs=2e-4)


def test_pieces_of_a_token_are_fed_in_turn():
    predictor = _predictor("gru", "mean", tokenizer="pieces")
    stream = predictor.stream()
    text = "an unexpectedly wonderful film"
    for token in text.split():
        record = stream.feed(token)
    expected = predictor.predict([text])[0]
    assert record["label"] == expected["label"]
    for label, p in expected["probabilities"].items():
        assert record["probabilities"][label] == pytest.approx(p, abs=2e-4)


def test_the_stream_keeps_a_state_of_fixed_size():
    predictor = _predictor("lstm", "attention")
    stream = predictor.stream()

    def held() -> int:
        tensors = [t for part in stream._state or () if part is not None
                   for t in (part if isinstance(part, tuple) else (part,))]  # fmt: skip
        flat = []
        for t in tensors:
            flat.extend(t if isinstance(t, tuple) else (t,))
        return sum(t.numel() for t in flat)

    words = SAMPLE[0].split()
    stream.feed(words[0])
    size = held()
    for _ in range(10):
        for word in words:
            stream.feed(word)
    assert held() == size


def test_bidirectional_and_other_models_refuse_to_stream():
    predictor = _predictor("lstm", "max", bidirectional=True)
    with pytest.raises(ValueError, match="encoder is bidirectional"):
        predictor.stream()
    stream = _predictor("lstm", "max").stream()
    with pytest.raises(ValueError, match="one token without white space"):
        stream.feed("two words")


def test_a_tagger_refuses_to_stream():
    from seqnlp.predict.base import Predictor

    class Tagging(Predictor):
        task = "tagging"

    with pytest.raises(ValueError, match="tagger's encoder is bidirectional"):
        Tagging(codec=None).stream()
