"""Int8 dynamic quantization for CPU prediction: what is swapped, what it changes, and
that checkpoints are left alone. Models are tiny and trained for a few seconds here."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path

import pytest
import torch
from conftest import make_sentence
from contract import predictor_of
from test_translation_data import WORDS_DE, WORDS_EN
from torch import nn

import seqnlp
from seqnlp.cli import main
from seqnlp.data.classification import ClassificationCodec, collate_classification
from seqnlp.data.classification_readers import read_labelled_text
from seqnlp.data.sources import resolve_named
from seqnlp.data.tagging import TaggingCodec, collate_tagging
from seqnlp.data.translation import TranslationCodec, collate_translation
from seqnlp.predict import (
    ClassificationPredictor,
    Predictor,
    TaggingPredictor,
    TranslationPredictor,
    load,
)
from seqnlp.quantize import check_cpu, is_quantized, quantize
from seqnlp.tasks import Classifier, Tagger, Translator
from seqnlp.tasks.base import System
from seqnlp.tokenization import Vocab, WordTokenizer

SENTIMENT = read_labelled_text(resolve_named("sample_sentiment", "train"))
SENTIMENT_TEST = [r["text"] for r in read_labelled_text(resolve_named("sample_sentiment", "test"))]


def _save(model: System, path: Path) -> Path:
    """A checkpoint as ``Trainer.save_checkpoint`` writes the parts that ``load`` reads."""
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return path


def _train(model: System, batches: list, steps: int, lr: float = 0.01) -> System:
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        loss = model.training_loss(batches[step % len(batches)])
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimiser.step()
    return model.eval()


# -- tiny data ---------------------------------------------------------------------
def _ner_sentences(n: int, seed: int) -> list[dict[str, list[str]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        pairs = make_sentence(rng)
        out.append({"tokens": [w for w, _ in pairs], "tags": [t for _, t in pairs]})
    return out


def _tagging_batches(codec: TaggingCodec, records: list[dict], size: int = 16) -> list:
    batches = []
    for start in range(0, len(records), size):
        encoded = []
        for r in records[start : start + size]:
            words, chars = codec.encode_tokens(r["tokens"])
            encoded.append({"word_ids": words, "char_ids": chars,
                            "tag_ids": codec.encode_tags(r["tags"])})  # fmt: skip
        batches.append(collate_tagging(encoded))
    return batches


def _tagger(steps: int, **options) -> Tagger:
    records = _ner_sentences(160, seed=1)
    codec = TaggingCodec.fit(records, tag_scheme="bioes")
    torch.manual_seed(0)
    model = Tagger(codec, word_dim=16, char_dim=8, char_hidden=8, hidden_size=16, dropout=0.0,
                   **options)  # fmt: skip
    return _train(model, _tagging_batches(codec, records), steps)


def _classifier(steps: int, **options) -> Classifier:
    labels = Vocab(sorted({r["label"] for r in SENTIMENT}), pad=None, unk=None)
    codec = ClassificationCodec(WordTokenizer.fit([r["text"] for r in SENTIMENT]), labels)
    torch.manual_seed(0)
    model = Classifier(codec, embedding_dim=32, hidden_size=32, embedding_dropout=0.0,
                       head_dropout=0.0, **options)  # fmt: skip
    batches = []
    for start in range(0, len(SENTIMENT), 32):
        rows = SENTIMENT[start : start + 32]
        batches.append(collate_classification(
            [{"token_ids": codec.encode_text(r["text"]), "label_id": labels.index(r["label"])}
             for r in rows]))  # fmt: skip
    return _train(model, batches, steps, lr=0.005)


def _pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        idx = [rng.randrange(len(WORDS_DE)) for _ in range(rng.randint(2, 6))]
        out.append((" ".join(WORDS_DE[i] for i in idx), " ".join(WORDS_EN[i] for i in idx)))
    return out


def _translator(steps: int, **options) -> Translator:
    pairs = _pairs(400, seed=0)
    codec = TranslationCodec.fit([s for s, _ in pairs], [t for _, t in pairs], vocab_size=40)
    torch.manual_seed(0)
    model = Translator(codec, embedding_dim=24, hidden_size=32, dropout=0.0, label_smoothing=0.0,
                       **options)  # fmt: skip
    bos, eos = codec.target.bos_id, codec.target.eos_id
    batches = [
        collate_translation([{"source_ids": codec.encode_source(s),
                              "target_ids": codec.encode_target(t)}
                             for s, t in pairs[start : start + 32]], bos, eos)
        for start in range(0, len(pairs), 32)
    ]  # fmt: skip
    return _train(model, batches, steps)


# Each: (build an untrained model, the predictor class).
CASES = {
    "tagger-charlstm-crf": (lambda: _tagger(0), TaggingPredictor),
    "tagger-charcnn-softmax": (
        lambda: _tagger(0, char_encoder="cnn", head="softmax"),
        TaggingPredictor,
    ),
    "classifier-lstm-attention": (
        lambda: _classifier(0, pooling="attention", mlp_hidden=[8], bidirectional=True),
        ClassificationPredictor,
    ),
    "classifier-rnn": (lambda: _classifier(0, cell="rnn"), ClassificationPredictor),
    "translator-gru-tied": (lambda: _translator(0, tie_embeddings=True), TranslationPredictor),
    "translator-lstm-general": (
        lambda: _translator(0, cell="lstm", attention="general", decoder_layers=2),
        TranslationPredictor,
    ),
}
INPUTS = {
    TaggingPredictor: ["Ana vive en Lima", "", "Pedro dijo que Repsol y Naciones Unidas", "hoy"],
    ClassificationPredictor: [*SENTIMENT_TEST[:5], "", "zzz"],
    TranslationPredictor: ["der hund läuft", "", "die katze schläft im park", "rot"],
}


# -- tests -------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_quantized_modules_are_swapped_and_predictions_keep_their_shape(case, caplog):
    build, predictor_cls = CASES[case]
    fp32 = build()
    int8 = build()  # the same seed: the same weights
    recurrent = [n for n, m in int8.network.named_modules() if isinstance(m, nn.RNNBase)]
    linear = [n for n, m in int8.network.named_modules() if type(m) is nn.Linear]
    with caplog.at_level(logging.INFO, logger="seqnlp.quantize"):
        names = quantize(int8.network)
    assert "int8 dynamic quantization" in caplog.text and "kept fp32" in caplog.text
    modules = dict(int8.network.named_modules())
    for name in linear:
        assert is_quantized(modules[name]) and name in names, name
    for name in recurrent:
        # torch has no dynamic int8 nn.RNN: it stays as it was
        expected = type(dict(fp32.network.named_modules())[name]) is not nn.RNN
        assert is_quantized(modules[name]) == expected, name
    embeddings = [n for n, m in fp32.network.named_modules() if isinstance(m, nn.Embedding)]
    assert embeddings and all(type(modules[n]) is nn.Embedding for n in embeddings)

    inputs = INPUTS[predictor_cls]
    a = predictor_of(fp32, batch_size=3).predict(inputs)
    b = predictor_of(int8, batch_size=3).predict(inputs)
    assert len(a) == len(b) == len(inputs)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        if predictor_cls is TaggingPredictor:
            assert x["tokens"] == y["tokens"] and len(x["tags"]) == len(y["tags"])
        elif predictor_cls is ClassificationPredictor:
            assert (x["label"] is None) == (y["label"] is None)
            assert x["probabilities"].keys() == y["probabilities"].keys()
        else:
            assert x["source"] == y["source"]
            assert (x["translation"] == "") == (y["source"].strip() == "")


def _agreement(a: list[dict], b: list[dict], key: str) -> float:
    return sum(x[key] == y[key] for x, y in zip(a, b, strict=True)) / len(a)


def test_quantized_tagger_agrees_with_fp32_after_training():
    model = _tagger(150)
    sentences = [r["tokens"] for r in _ner_sentences(200, seed=7)]
    fp32 = predictor_of(model).predict(sentences)
    gold = [r["tags"] for r in _ner_sentences(200, seed=7)]
    assert sum(p["tags"] == g for p, g in zip(fp32, gold, strict=True)) / len(gold) > 0.9
    quantize(model.network)
    int8 = predictor_of(model).predict(sentences)
    assert _agreement(fp32, int8, "tags") >= 0.95  # whole sentences tagged identically
    for x, y in zip(fp32, int8, strict=True):
        for e, f in zip(x["entities"], y["entities"], strict=False):
            if e["start"] == f["start"] and e["end"] == f["end"]:
                assert e["confidence"] == pytest.approx(f["confidence"], abs=0.1)


def test_quantized_classifier_agrees_with_fp32_after_training():
    model = _classifier(60)
    fp32 = predictor_of(model).predict(SENTIMENT_TEST)
    gold = [r["label"] for r in read_labelled_text(resolve_named("sample_sentiment", "test"))]
    assert sum(p["label"] == g for p, g in zip(fp32, gold, strict=True)) / len(gold) > 0.9
    quantize(model.network)
    int8 = predictor_of(model).predict(SENTIMENT_TEST)
    assert _agreement(fp32, int8, "label") >= 0.95
    gaps = [abs(x["probability"] - y["probabilities"][x["label"]])
            for x, y in zip(fp32, int8, strict=True)]  # fmt: skip
    assert sum(gaps) / len(gaps) < 0.05


def test_quantized_translator_agrees_with_fp32_after_training():
    from sacrebleu.metrics import BLEU, CHRF

    model = _translator(150)
    pairs = _pairs(60, seed=5)
    sources = [s for s, _ in pairs]
    fp32 = predictor_of(model, beam_size=3).predict(sources)
    learnt = BLEU().corpus_score([x["translation"] for x in fp32], [[t for _, t in pairs]])
    assert learnt.score > 50  # 71.6 when this bar was set: the model has learnt something
    quantize(model.network)
    int8 = predictor_of(model, beam_size=3).predict(sources)
    assert _agreement(fp32, int8, "translation") >= 0.8  # 0.93 when this bar was set
    same = CHRF().corpus_score([y["translation"] for y in int8], [[x["translation"] for x in fp32]])
    assert same.score > 90


def test_checkpoint_is_unchanged_and_loads_as_fp32_again(tmp_path):
    model = _classifier(5)
    ckpt = _save(model, tmp_path / "clf.ckpt")
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    predictor = seqnlp.load(str(ckpt), quantize="int8")
    network = predictor.network
    assert is_quantized(network.encoder.rnn) and is_quantized(network.head[-1])
    predictor.predict(SENTIMENT_TEST[:10])
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == digest
    again = load(ckpt)
    assert type(again.network.encoder.rnn) is nn.LSTM
    for name, value in model.network.state_dict().items():
        torch.testing.assert_close(again.network.state_dict()[name], value, msg=name)


def test_quantization_refuses_other_devices_and_modes():
    with pytest.raises(ValueError, match="CPU only, not on cuda"):
        check_cpu("cuda:0")
    with pytest.raises(ValueError, match="CPU only, not on meta"):
        quantize(nn.Linear(3, 2, device="meta"))
    with pytest.raises(ValueError, match="unknown quantization 'int4'"):
        quantize(nn.Linear(3, 2), "int4")
    check_cpu("cpu")


def test_cli_predict_and_evaluate_with_int8(tmp_path, capsys):
    model = _classifier(60)  # trained: it predicts both labels
    ckpt = _save(model, tmp_path / "clf.ckpt")
    src = tmp_path / "in.txt"
    src.write_text("\n".join([*SENTIMENT_TEST[:30], ""]) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    main(["predict", "--ckpt_path", str(ckpt), "--input", str(src), "--output", str(out),
          "--quantize", "int8", "--no_progress"])  # fmt: skip
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 31 and records[-1]["label"] is None
    assert records[0]["text"] == SENTIMENT_TEST[0] and records[0]["label"] is not None
    plain = predictor_of(model).predict(SENTIMENT_TEST[:30])
    assert _agreement(plain, records[:30], "label") >= 0.9

    labelled = tmp_path / "test.txt"
    rows = read_labelled_text(resolve_named("sample_sentiment", "test"))[:40]
    labelled.write_text("".join(f"{r['label']} {r['text']}\n" for r in rows), encoding="utf-8")
    capsys.readouterr()
    main(["evaluate", "--ckpt_path", str(ckpt), "--input", str(labelled), "--quantize", "int8"])
    scores = json.loads(capsys.readouterr().out)
    assert scores["examples"] == 40 and 0 <= scores["accuracy"] <= 100


def test_load_without_quantize_keeps_fp32(tmp_path):
    ckpt = _save(_tagger(0), tmp_path / "tagger.ckpt")
    predictor: Predictor = seqnlp.load(str(ckpt))
    assert type(predictor.network.encoder.rnn) is nn.LSTM
