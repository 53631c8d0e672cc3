"""Every network and every system held to the one contract of ``contract.py``."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from conftest import write_conll
from contract import (
    NetworkCase,
    SystemCase,
    check_batched_equals_alone,
    check_network_round_trips,
    check_network_trains,
    check_predictions_batched_equal_alone,
    check_system_gradients,
    check_system_round_trips,
    check_validation_equals_evaluate,
)
from test_translation_data import write_pairs
from torch import nn

from seqnlp.data import ClassificationDataModule, TaggingDataModule, TranslationDataModule
from seqnlp.data.batching import pad_2d, pad_3d, pad_with_lengths
from seqnlp.data.sources import resolve_named
from seqnlp.models import ClassifierNetwork, TaggerNetwork, TranslatorNetwork
from seqnlp.tasks import Classifier, Tagger, Translator

# -- networks, on random ids -------------------------------------------------------------
RNG = random.Random(0)
LENGTHS = [5, 1, 7, 3, 6, 2]


def _ids(n: int, high: int, low: int = 2) -> list[int]:
    return [RNG.randrange(low, high) for _ in range(n)]


TAGGING = [
    {"words": _ids(n, 30), "chars": [_ids(RNG.randint(1, 6), 20, 1) for _ in range(n)],
     "tags": _ids(n, 5, 0)}
    for n in LENGTHS
]  # fmt: skip


def _tagging_batch(examples: list[dict]) -> dict[str, torch.Tensor]:
    word_ids, lengths, mask = pad_with_lengths([e["words"] for e in examples])
    chars = pad_3d([e["chars"] for e in examples])
    return {"word_ids": word_ids, "char_ids": chars, "lengths": lengths, "mask": mask,
            "tags": pad_2d([e["tags"] for e in examples])}  # fmt: skip


def _tagger_outputs(network: nn.Module, b: dict) -> list[torch.Tensor]:
    emissions = network(b["word_ids"], b["char_ids"], b["lengths"])  # (batch, time, tags)
    probs = network.tag_probabilities(emissions, b["mask"])  # (batch, time, tags)
    both = torch.cat([emissions, probs], dim=-1)
    return [both[i, :n] for i, n in enumerate(b["lengths"].tolist())]


def _tagger_loss(network: nn.Module, b: dict) -> torch.Tensor:
    emissions = network(b["word_ids"], b["char_ids"], b["lengths"])
    return network.loss(emissions, b["tags"], b["mask"])


def _tagger(name: str, **sizes) -> NetworkCase:
    def build() -> nn.Module:
        return TaggerNetwork(30, 20, 5, word_dim=8, char_dim=4, char_hidden=5, hidden_size=6,
                             dropout=0.1, word_dropout=0.1, **sizes)  # fmt: skip

    return NetworkCase(name, build, TAGGING, _tagging_batch, _tagger_outputs, _tagger_loss)


CLASSIFICATION = [{"tokens": _ids(n, 25), "label": RNG.randrange(3)} for n in LENGTHS]


def _classification_batch(examples: list[dict]) -> dict[str, torch.Tensor]:
    token_ids, lengths, _ = pad_with_lengths([e["tokens"] for e in examples])
    labels = torch.tensor([e["label"] for e in examples])
    return {"token_ids": token_ids, "lengths": lengths, "labels": labels}


def _classifier(name: str, **sizes) -> NetworkCase:
    def build() -> nn.Module:
        return ClassifierNetwork(25, 3, embedding_dim=8, hidden_size=6, embedding_dropout=0.1,
                                 word_dropout=0.1, head_dropout=0.1, **sizes)  # fmt: skip

    return NetworkCase(
        name, build, CLASSIFICATION, _classification_batch,
        lambda net, b: list(net(b["token_ids"], b["lengths"])),
        lambda net, b: nn.functional.cross_entropy(net(b["token_ids"], b["lengths"]), b["labels"]),
    )  # fmt: skip


_CHARS_RNG = random.Random(1)  # its own: the cases after these keep their data
CLASSIFICATION_CHARS = [
    {**e, "chars": [[_CHARS_RNG.randrange(1, 12) for _ in range(_CHARS_RNG.randint(1, 5))]
                    for _ in e["tokens"]]}
    for e in CLASSIFICATION
]  # fmt: skip
#: two tiny character LMs (forward, backward) over 14 symbols: 0 unknown, 1 the boundary,
#: 2 the space.
CHAR_LM_SPECS = [
    {"network": {"num_tokens": 14, "embedding_dim": 4, "hidden_size": 5}, "backward": backward,
     "space_id": 2, "boundary_id": 1}
    for backward in (False, True)
]  # fmt: skip


def _classifier_with_char_lms(name: str) -> NetworkCase:
    """Token embeddings and two fine-tuned character LMs' features of each token."""

    def build() -> nn.Module:
        network = ClassifierNetwork(25, 3, embedding_dim=8, hidden_size=6, num_chars=12,
                                    char_lm_specs=CHAR_LM_SPECS, char_lm_trainable=True,
                                    embedding_dropout=0.1, head_dropout=0.1)  # fmt: skip
        network.char_lms.char_maps.copy_(torch.arange(12).add(2).expand(2, -1))
        return network

    def batch(examples: list[dict]) -> dict[str, torch.Tensor]:
        return {**_classification_batch(examples),
                "char_ids": pad_3d([e["chars"] for e in examples])}  # fmt: skip

    def logits(net: nn.Module, b: dict) -> torch.Tensor:
        return net(b["token_ids"], b["lengths"], b["char_ids"])

    return NetworkCase(
        name, build, CLASSIFICATION_CHARS, batch, lambda net, b: list(logits(net, b)),
        lambda net, b: nn.functional.cross_entropy(logits(net, b), b["labels"]),
    )  # fmt: skip


TRANSLATION = [{"source": [*_ids(n, 20, 4), 3], "target": _ids(RNG.randint(1, 6), 18, 4)}
               for n in LENGTHS]  # fmt: skip
BOS, EOS = 2, 3


def _translation_batch(examples: list[dict]) -> dict[str, torch.Tensor]:
    src_ids, src_lengths, _ = pad_with_lengths([e["source"] for e in examples])
    tgt_in, _, _ = pad_with_lengths([[BOS, *e["target"]] for e in examples])
    tgt_out = pad_2d([[*e["target"], EOS] for e in examples])
    return {"src_ids": src_ids, "src_lengths": src_lengths, "tgt_in": tgt_in, "tgt_out": tgt_out}


def _translator_outputs(network: nn.Module, b: dict) -> list[torch.Tensor]:
    """Teacher-forced scores, then the greedy translation's ids, per sentence."""
    logits = network(b["src_ids"], b["src_lengths"], b["tgt_in"])  # (batch, tgt, vocab)
    state = network.encode(b["src_ids"], b["src_lengths"])
    found = network.translate(state, BOS, EOS, b["src_lengths"] + 3)
    lengths = (b["tgt_out"] != 0).sum(dim=1).tolist()
    return [
        torch.cat([logits[i, :n].flatten(), torch.tensor(hyps[0].tokens, dtype=logits.dtype)])
        for i, (n, hyps) in enumerate(zip(lengths, found, strict=True))
    ]


def _translator_loss(network: nn.Module, b: dict) -> torch.Tensor:
    logits = network(b["src_ids"], b["src_lengths"], b["tgt_in"])
    return nn.functional.cross_entropy(logits.flatten(0, 1), b["tgt_out"].flatten(), ignore_index=0)


def _translator(name: str, **sizes) -> NetworkCase:
    def build() -> nn.Module:
        return TranslatorNetwork(20, 18, embedding_dim=8, dropout=0.1, **sizes)

    return NetworkCase(name, build, TRANSLATION, _translation_batch, _translator_outputs,
                       _translator_loss)  # fmt: skip


NETWORKS = [
    _tagger("tagger-charlstm-crf", char_encoder="lstm"),
    _tagger("tagger-charcnn-softmax", char_encoder="cnn", head="softmax"),
    _tagger("tagger-nochars-crf-2layers", char_encoder="none", num_layers=2),
    # frozen (pretrained) rows for all 30 ids and a trained table for the first 20:
    # ids 20-29 read its <unk> row there
    _tagger("tagger-frozen-words-trainable-table", freeze_embeddings=True,
            trainable_word_dim=4, trainable_words=20),
    _classifier("classifier-lstm-last", cell="lstm"),
    _classifier("classifier-gru-bi-attention", cell="gru", bidirectional=True,
                pooling="attention", learn_initial_state=True, mlp_hidden=[7]),
    _classifier("classifier-rnn-bi-max", cell="rnn", bidirectional=True, pooling="max",
                init="orthogonal"),
    _classifier("classifier-gru-2layers-mean", cell="gru", num_layers=2, pooling="mean"),
    _classifier("classifier-frozen-tokens-trainable-table", cell="lstm", pooling="max",
                freeze_embeddings=True, trainable_embedding_dim=4, trainable_tokens=15),
    _classifier_with_char_lms("classifier-char-lms-trainable"),
    _translator("translator-gru-additive", hidden_size=8),
    _translator("translator-lstm-dot-2layers", hidden_size=6, decoder_hidden_size=12,
                attention="dot", cell="lstm", encoder_layers=2, decoder_layers=2),
    _translator("translator-gru-general-tied", hidden_size=8, attention="general",
                tie_embeddings=True),
    # the recurrent variants of issue 18: custom cells and every stack option
    _tagger("tagger-layernorm-lstm-recurrent-chars-residual", char_encoder="recurrent",
            cell="layernorm_lstm", num_layers=2, residual=True, layer_norm=True,
            dropout_mode="locked", weight_drop=0.2, init="orthogonal", forget_bias=1.0,
            learn_initial_state=True),
    _classifier("classifier-cifg-attention-locked", cell="cifg_lstm", num_layers=2,
                pooling="attention", dropout=0.2, dropout_mode="locked", weight_drop=0.3),
    _classifier("classifier-peephole-bi-max-xavier", cell="peephole_lstm", bidirectional=True,
                pooling="max", init="xavier", learn_initial_state=True),
    _classifier("classifier-rnn-relu-4layers-residual-norm", cell="rnn_relu", num_layers=4,
                residual=True, layer_norm=True, pooling="last"),
    _translator("translator-layernorm-gru-residual-2layers", hidden_size=6, cell="layernorm_gru",
                encoder_layers=2, decoder_layers=2, residual=True, layer_norm=True,
                dropout_mode="locked", weight_drop=0.2),
    _translator("translator-lstm-weight-drop-forget-bias", hidden_size=6, cell="lstm",
                weight_drop=0.3, forget_bias=1.0, init="orthogonal"),
]


@pytest.mark.parametrize("case", NETWORKS, ids=str)
def test_network_trains_and_every_parameter_gets_a_gradient(case):
    check_network_trains(case)


@pytest.mark.parametrize("case", NETWORKS, ids=str)
def test_network_state_round_trips(case):
    check_network_round_trips(case)


@pytest.mark.parametrize("case", NETWORKS, ids=str)
def test_network_batched_equals_one_by_one(case):
    check_batched_equals_alone(case)


# -- systems, on tiny data made here -------------------------------------------------------
def _tagging_data(tmp_path: Path) -> TaggingDataModule:
    train = write_conll(tmp_path / "train.conll", 60, seed=1)
    dev = write_conll(tmp_path / "dev.conll", 20, seed=2)
    return TaggingDataModule(train=str(train), validation=str(dev), batch_size=8,
                             cache_dir=str(tmp_path / "hf"))  # fmt: skip


def _classification_data(tmp_path: Path) -> ClassificationDataModule:
    return ClassificationDataModule(dataset="sample_sentiment", batch_size=16,
                                    cache_dir=str(tmp_path / "hf"))  # fmt: skip


def _translation_data(tmp_path: Path) -> TranslationDataModule:
    train = write_pairs(tmp_path / "train", 200, 0)
    dev = write_pairs(tmp_path / "dev", 20, 1)
    return TranslationDataModule(train=str(train), validation=str(dev), vocab_size=50,
                                 batch_size=16, cache_dir=str(tmp_path / "hf"))  # fmt: skip


SYSTEMS = [
    SystemCase(
        "tagger", _tagging_data,
        lambda codec: Tagger(codec, word_dim=8, char_dim=4, char_hidden=5, hidden_size=6,
                             dropout=0.1, word_dropout=0.05),
        ["Ana vive en Lima", "", ["Luis", "trabaja", "en", "Naciones", "Unidas"], "Zzyzx ."],
        lambda tmp: (str(tmp / "dev.conll"), {}), "f1", {"n_best": 2},
    ),
    SystemCase(
        "classifier", _classification_data,
        lambda codec: Classifier(codec, embedding_dim=8, cell="gru", hidden_size=6,
                                 pooling="attention", bidirectional=True),
        ["the film is not dull", "   ", "a gripping story", "unseen zzz"],
        lambda tmp: (str(resolve_named("sample_sentiment", "validation")), {}), "accuracy",
    ),
    SystemCase(
        "translator", _translation_data,
        lambda codec: Translator(codec, embedding_dim=8, hidden_size=8, cell="lstm"),
        ["der hund läuft", "", "die katze schläft im park", "haus"],
        lambda tmp: (str(tmp / "dev"), {"src_lang": "de", "tgt_lang": "en"}), "bleu",
        {"beam_size": 1},
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", SYSTEMS, ids=str)
def test_system_checkpoint_stands_alone(case, tmp_path):
    check_system_round_trips(case, tmp_path)


@pytest.mark.parametrize("case", SYSTEMS, ids=str)
def test_system_every_parameter_gets_a_gradient(case, tmp_path):
    check_system_gradients(case, tmp_path)


@pytest.mark.parametrize("case", SYSTEMS, ids=str)
def test_system_predictions_batched_equal_one_by_one(case, tmp_path):
    check_predictions_batched_equal_alone(case, tmp_path)


@pytest.mark.parametrize("case", SYSTEMS, ids=str)
def test_system_validation_equals_evaluate(case, tmp_path):
    check_validation_equals_evaluate(case, tmp_path)
