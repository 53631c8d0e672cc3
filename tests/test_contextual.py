"""Contextual string embeddings (issue 17): each word's features are the forward LM's
state after its last character and the backward LM's state before its first one,
computed once per sentence; frozen LMs get no gradient and never drop out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from seqnlp.models.language_model import LanguageModelNetwork
from seqnlp.nn.contextual import ContextualCharFeatures, sentence_positions

ROOT = Path(__file__).resolve().parents[1]
CKPTS = ROOT / "tests" / "fixtures" / "checkpoints" / "v0.1.0"
CHARS = {c: i + 1 for i, c in enumerate(" abcdefghijklmnopqrstuvwxyzJMP.")}


def _ids(text: str) -> list[int]:
    return [CHARS[c] for c in text]


def _lm(seed: int) -> LanguageModelNetwork:
    torch.manual_seed(seed)
    return LanguageModelNetwork(len(CHARS) + 2, embedding_dim=6, hidden_size=5,
                                embedding_dropout=0.3, output_dropout=0.3).eval()  # fmt: skip


def test_positions_of_words_in_the_text_and_its_reverse():
    text, ends, starts = sentence_positions(["Juan", "vive", "en", "Madrid", "."])
    assert text == "Juan vive en Madrid ."
    assert [text[e] for e in ends] == ["n", "e", "n", "d", "."]
    reverse = text[::-1]
    assert [reverse[s] for s in starts] == ["J", "v", "e", "M", "."]


TAGGER_CHARS = {c: i + 1 for i, c in enumerate("abcdefghijklmnopqrstuvwxyzJMP.")}
BOUNDARY = len(CHARS) + 1


def _features(lms: list, backward: list[bool], trainable: bool = False) -> ContextualCharFeatures:
    module = ContextualCharFeatures(lms, backward, [(CHARS[" "], BOUNDARY)] * len(lms),
                                    len(TAGGER_CHARS) + 1, trainable)  # fmt: skip
    for c, i in TAGGER_CHARS.items():
        module.char_maps[:, i] = CHARS[c]
    return module


def _char_ids(sentences: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    time = max(len(s) for s in sentences)
    width = max(len(w) for s in sentences for w in s)
    ids = torch.zeros(len(sentences), time, width, dtype=torch.long)
    for b, sentence in enumerate(sentences):
        for t, word in enumerate(sentence):
            ids[b, t, : len(word)] = torch.tensor([TAGGER_CHARS[c] for c in word])
    return ids, torch.tensor([len(s) for s in sentences])


def test_features_are_the_lm_states_at_each_word_by_brute_force():
    forward, backward = _lm(0), _lm(1)
    features = _features([forward, backward], [False, True]).eval()
    sentences = [["Juan", "vive", "en", "Madrid", "."], ["Pablo", "come"]]
    got = features(*_char_ids(sentences))  # (batch, time, 10)
    assert got.shape == (2, 5, 10)
    for b, tokens in enumerate(sentences):
        text, ends, starts = sentence_positions(tokens)
        for i, _ in enumerate(tokens):
            # the forward LM's state after the boundary and the text up to the word's
            # last character; the backward LM's after the boundary and the reversed text
            # up to the word's first character
            prefix = torch.tensor([[BOUNDARY, *_ids(text[: ends[i] + 1])]])
            expected_fwd = forward.hidden_states(prefix)[0][0, -1]
            rev = torch.tensor([[BOUNDARY, *_ids(text[::-1][: starts[i] + 1])]])
            expected_bwd = backward.hidden_states(rev)[0][0, -1]
            torch.testing.assert_close(got[b, i], torch.cat([expected_fwd, expected_bwd]),
                                       atol=1e-5, rtol=0)  # fmt: skip


def test_frozen_lms_get_no_gradient_and_do_not_drop_out():
    lm = _lm(0)
    frozen = _features([lm], [False]).train()
    assert not lm.training
    ids, lengths = _char_ids([["Juan", "vive"]])
    a, b = frozen(ids, lengths), frozen(ids, lengths)
    torch.testing.assert_close(a, b)  # no dropout: the same twice in training mode
    assert not a.requires_grad
    for module in frozen.modules():  # as Lightning restores modes: flags, not train()
        module.training = True
    torch.testing.assert_close(frozen(ids, lengths), a)
    assert not lm.training
    tuned = _features([_lm(0)], [False], trainable=True).train()
    tuned(ids, lengths).sum().backward()
    assert all(p.grad is not None for p in tuned.parameters())  # the output layer is gone


def test_kept_features_are_those_computed_whatever_the_batch():
    """Frozen LMs with ``cache_mb`` give each sentence the features ``compute`` gives it,
    in any batch, with any padding, in training and eval mode; a sentence is computed
    once; changed weights and a full cache fall back to computing."""
    features = _features([_lm(0), _lm(1)], [False, True]).train()
    sentences = [["Juan", "vive", "en", "Madrid", "."], ["Pablo", "come"], ["a"], ["Pablo", "come"]]
    ids, lengths = _char_ids(sentences)
    expected = features.compute(ids, lengths)  # (batch, time, 10)
    features.cache_mb = 1.0
    torch.testing.assert_close(features(ids, lengths), expected, atol=1e-6, rtol=0)
    assert len(features._cache) == 3  # the repeated sentence is one entry
    calls = []
    features.compute = lambda *a: calls.append(a) or ContextualCharFeatures.compute(features, *a)
    for order in ([2, 1], [1, 0, 3], [0]):  # other batches, other padding: all kept
        sub_ids, sub_lengths = _char_ids([sentences[i] for i in order])
        torch.testing.assert_close(features.eval()(sub_ids, sub_lengths), expected[order][
            :, : int(sub_lengths.max())], atol=1e-6, rtol=0)  # fmt: skip
    assert calls == []
    new_ids, new_lengths = _char_ids([["Madrid", "a"], sentences[0]])
    with torch.inference_mode():  # a validation batch: one new sentence, computed alone
        features(new_ids, new_lengths)
    assert len(calls) == 1 and calls[0][0].size(0) == 1
    features.train()(new_ids, new_lengths).sum()  # kept under inference mode, read in training
    with torch.no_grad():
        features.lms[0].embedding.weight.mul_(2.0)  # new weights: nothing kept holds
    torch.testing.assert_close(features(ids, lengths), ContextualCharFeatures.compute(
        features, ids, lengths), atol=1e-6, rtol=0)  # fmt: skip
    features.clear_cache()
    features.cache_mb = 1e-4  # room for about one sentence
    features(ids, lengths)
    assert 0 < features._cache_bytes <= 1e-4 * 2**20 and len(features._cache) == 1
    import copy

    assert copy.deepcopy(features)._cache == {}  # copies leave the cache out
    tuned = _features([_lm(0)], [False], trainable=True)
    tuned.cache_mb = 1.0  # fine-tuned LMs change every step: never kept
    tuned(ids, lengths)
    assert tuned._cache == {}


def test_sentence_texts_are_built_from_the_taggers_own_character_ids():
    from seqnlp.nn.contextual import sentence_char_ids

    tagger_chars = {c: i + 1 for i, c in enumerate("abcdefghijklmnopqrstuvwxyzJMP.")}
    char_map = torch.zeros(len(tagger_chars) + 1, dtype=torch.long)
    for c, i in tagger_chars.items():
        char_map[i] = CHARS[c]
    sentences = [["Juan", "vive", "en", "Madrid", "."], ["Pablo", "come"], ["a"]]
    char_ids = torch.zeros(3, 5, 6, dtype=torch.long)
    for b, sentence in enumerate(sentences):
        for t, word in enumerate(sentence):
            char_ids[b, t, : len(word)] = torch.tensor([tagger_chars[c] for c in word])
    boundary = 99
    fwd, bwd, ends, starts = sentence_char_ids(
        char_ids, torch.tensor([5, 2, 1]), char_map, CHARS[" "], boundary
    )
    for b, sentence in enumerate(sentences):
        text, text_ends, text_starts = sentence_positions(sentence)
        n = len(text)
        assert fwd[b, : n + 1].tolist() == [boundary, *_ids(text)]
        assert bwd[b, : n + 1].tolist() == [boundary, *_ids(text[::-1])]
        assert set(fwd[b, n + 1 :].tolist()) <= {boundary}  # padding
        assert ends[b, : len(sentence)].tolist() == [e + 1 for e in text_ends]
        assert starts[b, : len(sentence)].tolist() == [s + 1 for s in text_starts]


def _char_lm(tmp_path, direction: str) -> str:
    from seqnlp.cli import main

    root = tmp_path / f"lm-{direction}"
    main(["fit", str(ROOT / "recipes" / "quickstart" / "charlm.yaml"), "--data.direction",
          direction, "--model.hidden_size", "16", "--model.embedding_dim", "8",
          "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
          "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root),
          "--trainer.logger", "false", "--data.cache_dir", str(tmp_path / "hf")])  # fmt: skip
    return str(next(root.rglob("last.ckpt")))


def test_a_tagger_with_char_lms_stands_alone(tiny_ner, tmp_path, monkeypatch):
    """The LMs' weights travel inside the tagger: with the LM files gone, the checkpoint
    and its exported folder predict what the model predicted in memory."""
    import shutil

    import seqnlp
    from seqnlp.cli import main
    from seqnlp.export.writer import export_model

    monkeypatch.chdir(tmp_path)
    lms = [_char_lm(tmp_path, "forward"), _char_lm(tmp_path, "backward")]
    main(["fit", str(ROOT / "recipes" / "quickstart" / "ner.yaml"), "--data.dataset", "null",
          "--data.train", str(tiny_ner["train"]), "--data.validation", str(tiny_ner["validation"]),
          "--data.cache_dir", str(tmp_path / "hf"), "--model.init_args.char_lms", json.dumps(lms),
          "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"])  # fmt: skip
    ckpt = next((tmp_path / "runs" / "quickstart-ner").rglob("last.ckpt"))
    predictor = seqnlp.load(str(ckpt))
    features = predictor.network.char_lms
    assert features is not None and features.backward == [False, True]
    assert features.output_size == 32
    sentences = ["Juan Pérez vive en Madrid .", "La casa"]
    records = predictor.predict(sentences)
    assert features.cache_mb == 0 and not features._cache  # prediction keeps nothing
    # prediction batches are sorted by what the LMs read, characters, not tokens
    from seqnlp.predict.tagging_records import Sentence

    few, many = (Sentence(" ".join(t), t, t, []) for t in (["a", "bcdefghij"], ["a", "b", "c"]))
    assert predictor.length(few) == 12 and predictor.length(many) == 6
    assert seqnlp.load(str(CKPTS / "tagger_lstm_crf.ckpt")).length(few) == 2  # no LMs: tokens
    for direction in ("forward", "backward"):
        shutil.rmtree(tmp_path / f"lm-{direction}")  # the LM runs, files and all
    assert seqnlp.load(str(ckpt)).predict(sentences) == records
    export_model(str(ckpt), str(tmp_path / "model"))
    assert seqnlp.load(str(tmp_path / "model")).predict(sentences) == records
    with pytest.raises(ValueError, match="no character language models"):
        export_model(str(ckpt), str(tmp_path / "m2"), onnx=True)
    # int8: the LMs' LSTMs run quantized too
    int8 = seqnlp.load(str(ckpt), quantize="int8").predict(sentences)
    assert [len(r["tags"]) for r in int8] == [len(r["tags"]) for r in records]


def test_training_with_kept_features_ends_with_the_same_weights(tiny_ner, tmp_path, monkeypatch):
    """Two epochs with each sentence's LM features kept (the default) end with the
    weights of two epochs computing them every step, to the bit; the LMs read each
    training sentence once."""
    from seqnlp.cli import main
    from seqnlp.nn import contextual

    monkeypatch.chdir(tmp_path)
    lms = [_char_lm(tmp_path, "forward"), _char_lm(tmp_path, "backward")]
    read: list[int] = []
    compute = contextual.ContextualCharFeatures.compute

    def counted(self, char_ids, lengths):
        if torch.is_grad_enabled():  # training steps, not validation
            read.append(char_ids.size(0))
        return compute(self, char_ids, lengths)

    monkeypatch.setattr(contextual.ContextualCharFeatures, "compute", counted)
    weights = {}
    threads = torch.get_num_threads()
    # one thread: no product splits its sums across threads, so a sentence's features
    # have the same bits in any batch, and both runs add the same numbers
    for mb in ("0", "64"):
        read.clear()
        torch.set_num_threads(1)
        try:
            main(["fit", str(ROOT / "recipes" / "quickstart" / "ner.yaml"), "--data.dataset",
                  "null", "--data.train", str(tiny_ner["train"]), "--data.validation",
                  str(tiny_ner["validation"]), "--data.cache_dir", str(tmp_path / "hf"),
                  "--model.init_args.char_lms", json.dumps(lms),
                  "--model.init_args.char_lm_cache_mb", mb, "--trainer.max_epochs", "2",
                  "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir",
                  f"mb{mb}", "--trainer.logger", "false"])  # fmt: skip
        finally:
            torch.set_num_threads(threads)
        ckpt = torch.load(next(Path(f"mb{mb}").rglob("last.ckpt")), weights_only=False)
        weights[mb] = ckpt["state_dict"]
        assert sum(read) == (240 if mb == "0" else 120)  # 120 sentences, 2 epochs
    assert weights["0"].keys() == weights["64"].keys()
    assert all(torch.equal(weights["0"][k], weights["64"][k]) for k in weights["0"])


def test_a_word_language_model_is_refused(tmp_path):
    from seqnlp.tasks.char_lms import read_char_lm
    from seqnlp.tokenization import Vocab

    with pytest.raises(ValueError, match="no such checkpoint"):
        read_char_lm(tmp_path / "missing.ckpt", Vocab(["a"]))


def test_the_module_imports_first():
    """``seqnlp.nn.contextual`` imported before anything else of seqnlp (seqnlp.models
    imports it back)."""
    import subprocess
    import sys

    code = "import seqnlp.nn.contextual as c; print(c.ContextualCharFeatures.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    assert done.stdout.strip() == "ContextualCharFeatures"
