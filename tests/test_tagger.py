"""The tagger: learning, pretrained vectors, n-best paths, distinct-token batches (the
contract every network and system keeps is in test_contract.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from contract import predictor_of

from seqnlp.checkpoints import load_system
from seqnlp.data import TaggingDataModule
from seqnlp.data.tagging import TaggingCodec, collate_distinct_tokens, collate_tagging
from seqnlp.data.tagging_readers import read_tagging_file
from seqnlp.predict import load
from seqnlp.tasks import Tagger


def _codec(path: Path) -> TaggingCodec:
    return TaggingCodec.fit(read_tagging_file(path), tag_scheme="bioes")


def _batch(codec: TaggingCodec, path: Path, n: int = 8):
    records = read_tagging_file(path)[:n]
    encoded = []
    for r in records:
        w, c = codec.encode_tokens(r["tokens"])
        encoded.append({"word_ids": w, "char_ids": c, "tag_ids": codec.encode_tags(r["tags"])})
    return collate_tagging(encoded)


def _fit(tiny_ner, tmp_path: Path, **model_args) -> tuple[pl.Trainer, Tagger, TaggingDataModule]:
    pl.seed_everything(0)
    data = TaggingDataModule(
        train=str(tiny_ner["train"]),
        validation=str(tiny_ner["validation"]),
        test=str(tiny_ner["test"]),
        batch_size=8,
        cache_dir=str(tmp_path / "hf"),
    )
    model = Tagger(
        data.codec,
        word_dim=16,
        char_dim=8,
        char_hidden=8,
        hidden_size=16,
        dropout=0.1,
        **model_args,
    )
    model.configure_optimizers = lambda: torch.optim.Adam(model.parameters(), lr=0.01)  # type: ignore[method-assign]
    trainer = pl.Trainer(
        max_epochs=8,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=data)
    return trainer, model, data


def test_training_learns_the_tiny_task(tiny_ner, tmp_path):
    trainer, _, _ = _fit(tiny_ner, tmp_path)
    assert trainer.callback_metrics["val/f1"] > 80  # the tiny task is learnable


def test_a_token_cache_smaller_than_the_text_gives_the_same_records(tiny_ner, tmp_path):
    _, model, _ = _fit(tiny_ner, tmp_path)
    sentences = [" ".join(r["tokens"]) for r in read_tagging_file(tiny_ner["test"])]
    full = predictor_of(model, batch_size=7).predict(sentences)
    small = predictor_of(model, batch_size=7, token_cache_size=3)
    assert small.predict(sentences) == full and len(small._encoded) <= 3


@pytest.mark.parametrize("header", [True, False])
def test_pretrained_word_vectors_initialise_embeddings(tiny_ner, tmp_path, header):
    codec = _codec(tiny_ner["train"])
    path = tmp_path / "vectors.txt"
    lines = ["2 4"] if header else []
    lines += ["Ana 1 2 3 4", "madrid 0.5 0.5 0.5 0.5", "notincodec 9 9 9 9"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    model = Tagger(codec, word_dim=4, pretrained_embeddings=str(path))
    model.setup("fit")
    weight = model.network.word_embedding.weight
    assert weight[codec.words.index("Ana")].tolist() == [1, 2, 3, 4]
    assert weight[codec.words.index("Madrid")].tolist() == [0.5] * 4  # lowercase match
    assert weight[codec.words.pad_id].abs().sum() == 0


def test_pretrained_vectors_of_wrong_size_name_file_and_line(tiny_ner, tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("Ana 1 2 3 4\nLuis 1 2\n", encoding="utf-8")
    model = Tagger(_codec(tiny_ner["train"]), word_dim=4, pretrained_embeddings=str(path))
    with pytest.raises(ValueError, match=r"vectors.txt:2: expected a word and 4 numbers"):
        model.setup("fit")


def test_loading_a_file_that_is_not_a_checkpoint_fails_clearly(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load(bad)
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="not a seqnlp checkpoint"):
        load(tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="no such checkpoint"):
        load(tmp_path / "missing.ckpt")


def test_unseen_validation_tag_is_reported(tiny_ner, tmp_path):
    dev = tmp_path / "dev_misc.conll"
    dev.write_text("Copa B-MISC\n\n", encoding="utf-8")
    data = TaggingDataModule(
        train=str(tiny_ner["train"]), validation=str(dev), cache_dir=str(tmp_path / "hf")
    )
    with pytest.raises(ValueError, match=r"dev_misc.conll:1: tag B-MISC \(a one-token MISC entity, "
                       r"S-MISC in the model's BIOES\) never occurs"):  # fmt: skip
        data.setup("fit")


def test_dataset_and_paths_together_are_refused(tiny_ner):
    with pytest.raises(ValueError, match=r"--data\.dataset null"):
        TaggingDataModule(dataset="conll2002_es", train=str(tiny_ner["train"]))


def test_nbest_prediction_gives_probable_alternatives(tiny_ner, tmp_path):
    _, model, _ = _fit(tiny_ner, tmp_path)
    sentences = [r["tokens"] for r in read_tagging_file(tiny_ner["test"])][:10]
    records = predictor_of(model, n_best=3).predict(sentences)
    for record in records:
        alternatives = record["n_best"]
        assert len(alternatives) == 3
        assert alternatives[0]["tags"] == record["tags"]  # the best path is the Viterbi path
        probs = [a["probability"] for a in alternatives]
        assert all(p > 0 for p in probs) and sum(probs) <= 1.0001
        assert len({tuple(a["tags"]) for a in alternatives}) == 3
    keys = {"tokens", "token_offsets", "tags", "entities"}
    assert predictor_of(model).predict(sentences)[0].keys() == keys


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tiny_ner, tmp_path):
    pl.seed_everything(0)
    data = TaggingDataModule(train=str(tiny_ner["train"]), validation=str(tiny_ner["validation"]),
                             batch_size=8, cache_dir=str(tmp_path / "hf"))  # fmt: skip
    model = Tagger(data.codec, word_dim=8, char_dim=4, char_hidden=4, hidden_size=8)
    real_loss = model.training_loss

    def loss_with_nan(batch):  # a NaN on the 20th step (epoch 1, as 15 batches make an epoch)
        loss = real_loss(batch)
        return loss * float("nan") if model.global_step == 20 else loss

    model.training_loss = loss_with_nan  # type: ignore[method-assign]
    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[checkpoints])  # fmt: skip
    with pytest.raises(ValueError, match=r"training loss is nan at step 20 \(epoch 1, batch 5\)"):
        trainer.fit(model, datamodule=data)
    last = tmp_path / "ckpt" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 15  # written after epoch 0
    loaded = load_system(last)
    assert all(torch.isfinite(p).all() for p in loaded.parameters())


@pytest.mark.parametrize("char_encoder", ["lstm", "cnn"])
def test_prediction_encodes_each_distinct_word_once_with_the_same_features(tiny_ner, char_encoder):
    # Out of training, word_char_features encodes the batch's distinct words once
    # and gathers; it must equal encoding every occurrence.
    torch.manual_seed(0)
    codec = _codec(tiny_ner["train"])
    model = Tagger(codec, word_dim=8, char_encoder=char_encoder, char_dim=4, char_hidden=6,
                   hidden_size=8).eval()  # fmt: skip
    batch = _batch(codec, tiny_ner["validation"], n=16)
    with torch.no_grad():
        every = model.network.char_features(batch.char_ids)
        distinct = model.network.word_char_features(batch.char_ids)
    words = batch.char_ids.view(-1, batch.char_ids.size(-1))
    assert len(torch.unique(words, dim=0)) < len(words)  # the batch repeats words
    torch.testing.assert_close(distinct, every)


@pytest.mark.parametrize("char_encoder", ["lstm", "cnn", "none"])
def test_distinct_token_batches_give_the_same_emissions(tiny_ner, char_encoder):
    # Prediction batches carry each distinct token's characters once (char_rows).
    torch.manual_seed(0)
    codec = _codec(tiny_ner["train"])
    model = Tagger(codec, word_dim=8, char_encoder=char_encoder, char_dim=4, char_hidden=6,
                   hidden_size=8).eval()  # fmt: skip
    sentences = [r["tokens"] for r in read_tagging_file(tiny_ner["validation"])[:16]]
    sentences[1] = [*sentences[1], "Zzyzx-unseen", sentences[0][0]]

    def encode(token: str) -> tuple[int, list[int]]:
        words, chars = codec.encode_tokens([token])
        return words[0], chars[0]

    distinct = collate_distinct_tokens(sentences, encode)
    every = collate_tagging([dict(zip(("word_ids", "char_ids"), codec.encode_tokens(s),
                                      strict=True)) for s in sentences])  # fmt: skip
    assert distinct.char_rows is not None
    n_tokens = sum(map(len, sentences))
    assert len(distinct.char_ids) - 1 == len({t for s in sentences for t in s}) < n_tokens
    assert torch.equal(distinct.word_ids, every.word_ids)
    assert torch.equal(distinct.mask, every.mask)
    with torch.no_grad():
        torch.testing.assert_close(model.emissions(distinct), model.emissions(every))


def test_bf16_with_fused_adam_clips_gradients(tiny_ner, tmp_path, monkeypatch):
    # Lightning refuses to clip with a fused optimizer under bf16-mixed; bf16 has no
    # loss scaler, so System clips the (unscaled) gradients itself.
    norms: list[float] = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm, *args, **kwargs):
        norm = clip(parameters, max_norm, *args, **kwargs)
        norms.append(float(norm))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    pl.seed_everything(0)
    data = TaggingDataModule(train=str(tiny_ner["train"]), validation=str(tiny_ner["validation"]),
                             batch_size=8, cache_dir=str(tmp_path / "hf"))  # fmt: skip
    model = Tagger(data.codec, word_dim=16, char_dim=8, char_hidden=8, hidden_size=16)
    model.configure_optimizers = lambda: torch.optim.Adam(  # type: ignore[method-assign]
        model.parameters(), lr=0.01, fused=True
    )
    trainer = pl.Trainer(
        max_epochs=1, precision="bf16-mixed", gradient_clip_val=0.5, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    assert trainer.global_step > 0 and len(norms) == trainer.global_step
    assert all(torch.isfinite(p).all() for p in model.parameters())
