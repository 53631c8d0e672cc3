"""The tagger predictor's cache of character features (``seqnlp.predict.char_cache``):
the same records as encoding every batch afresh, each token encoded once across
batches, and nothing stale after the weights change or the cache fills."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from contract import records_close

import seqnlp
from seqnlp.predict.char_cache import CharFeatureCache

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints" / "v0.1.0"
SENTENCES = [
    "Los precios subieron un 20 por ciento en Madrid , informó Editorial Norte .",
    "Beatriz Fuentes , de 36 años , vive en Buenos Aires desde 1990 .",
    "Grupo Altair abrirá una oficina en Roma antes de la Liga .",
    "Miles de personas asistieron a el Premio Cervantes en los Pirineos .",
    "Carmen Soto visitó Roma .",
]


class _Counting(torch.nn.Module):
    """A character encoder that counts the words it encodes."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.words = 0

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        self.words += char_ids.shape[1]
        return self.inner(char_ids)


@pytest.mark.parametrize("fixture", ["tagger_lstm_crf", "tagger_cnn_softmax"])
def test_cached_features_give_the_records_of_fresh_ones(fixture):
    cached = seqnlp.load(FIXTURES / f"{fixture}.ckpt", batch_size=2)
    fresh = seqnlp.load(FIXTURES / f"{fixture}.ckpt", batch_size=2)
    fresh._char_cache = None  # every batch encodes its tokens, as before the cache
    assert cached._char_cache is not None
    # token lists with empty tokens: "" is a token, not the padding's empty word
    inputs = [*SENTENCES, ["", "Madrid", ""], [""], ["Roma", ""]]
    expected = fresh.predict(inputs)
    for _ in range(2):  # the second pass finds every token in the cache
        records_close(cached.predict(inputs), expected)
        records_close(cached.predict(inputs[::-1]), expected[::-1])
    assert len(cached._char_cache) == 1 + len(_distinct(cached, SENTENCES)) + 1  # and ""


def test_each_token_is_encoded_once_across_batches():
    predictor = seqnlp.load(FIXTURES / "tagger_lstm_crf.ckpt", batch_size=2)
    assert predictor._char_cache is not None
    counter = predictor._char_cache.encoder = _Counting(predictor._char_cache.encoder).eval()
    predictor.predict(SENTENCES)
    distinct = _distinct(predictor, SENTENCES)
    assert counter.words == 1 + len(distinct)  # and the padding's empty word
    assert "y" not in distinct
    predictor.predict([*SENTENCES, "Roma y Madrid ."])
    assert counter.words == 1 + len(distinct) + 1  # only "y" is new


def _distinct(predictor, sentences: list[str]) -> set[str]:
    """The distinct tokens of sentences as the model reads them."""
    return {t for s in sentences for t in predictor.sentence(s).model_tokens}


def _tokens_and_chars(predictor, tokens):
    ids = [predictor.encode_token(t)[1] for t in tokens]
    width = max(len(c) for c in ids)
    return torch.tensor([[0] * width] + [c + [0] * (width - len(c)) for c in ids])


def test_changed_weights_empty_the_cache():
    predictor = seqnlp.load(FIXTURES / "tagger_lstm_crf.ckpt")
    cache = predictor._char_cache
    tokens = ["Roma", "Madrid", "de"]
    chars = _tokens_and_chars(predictor, tokens)
    with torch.inference_mode():  # as the predictor calls it
        before = cache.vectors(tokens, chars)
        torch.testing.assert_close(before, cache.encoder(chars.unsqueeze(0))[0], atol=1e-6,
                                   rtol=0)  # fmt: skip
    with torch.no_grad():
        next(cache.encoder.parameters()).add_(0.5)  # as an optimiser step would
    with torch.inference_mode():
        after = cache.vectors(tokens, chars)
        assert not torch.allclose(after, before)
        torch.testing.assert_close(after, cache.encoder(chars.unsqueeze(0))[0], atol=1e-6,
                                   rtol=0)  # fmt: skip


def test_a_model_loaded_under_inference_mode_predicts_with_the_cache():
    expected = seqnlp.load(FIXTURES / "tagger_lstm_crf.ckpt").predict(SENTENCES)
    with torch.inference_mode():
        predictor = seqnlp.load(FIXTURES / "tagger_lstm_crf.ckpt", batch_size=2)
        for _ in range(2):
            records_close(predictor.predict(SENTENCES), expected)
    assert len(predictor._char_cache) == 1 + len(_distinct(predictor, SENTENCES))


@torch.inference_mode()
def test_a_full_cache_is_emptied_and_a_batch_larger_than_it_kept_nowhere():
    predictor = seqnlp.load(FIXTURES / "tagger_lstm_crf.ckpt")
    encoder = predictor._char_cache.encoder
    cache = CharFeatureCache(encoder, capacity=4)
    words = ["Roma", "Madrid", "de", "la", "Liga", "Norte", "y"]
    for start in range(0, len(words), 2):  # batches of two tokens (three rows each)
        tokens = words[start : start + 2]
        chars = _tokens_and_chars(predictor, tokens)
        got = cache.vectors(tokens, chars)
        torch.testing.assert_close(got, encoder(chars.unsqueeze(0))[0], atol=1e-6, rtol=0)
        assert len(cache) <= 4
    chars = _tokens_and_chars(predictor, words)
    torch.testing.assert_close(cache.vectors(words, chars), encoder(chars.unsqueeze(0))[0],
                               atol=1e-6, rtol=0)  # fmt: skip
    assert len(cache) <= 4
    with pytest.raises(ValueError, match="expected one more row"):
        cache.vectors(words[:2], chars)
