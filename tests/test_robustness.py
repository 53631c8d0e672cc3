"""Robustness: bad configs, wrong or damaged checkpoints, missing splits, huge inputs,
bad input files. Every user error is one clear line and exit status 2, never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import write_conll

from seqnlp.checkpoints import load_system
from seqnlp.cli import main
from seqnlp.data import ClassificationDataModule, TaggingDataModule
from seqnlp.predict import ClassificationPredictor, TaggingPredictor, load
from seqnlp.tasks import Classifier, Tagger

ROOT = Path(__file__).resolve().parents[1]
NER_RECIPE = str(ROOT / "recipes" / "quickstart" / "ner.yaml")
LONG = 5_000


def _trainer(root: Path) -> pl.Trainer:
    return pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=root)  # fmt: skip


@pytest.fixture(scope="module")
def ner_files(tmp_path_factory) -> dict[str, Path]:
    """Tiny CoNLL splits shared by the module's checkpoints (as ``tiny_ner``, module-scoped)."""
    root = tmp_path_factory.mktemp("ner")
    return {
        "train": write_conll(root / "train.conll", 120, seed=1),
        "validation": write_conll(root / "dev.conll", 30, seed=2),
        "test": write_conll(root / "test.conll", 30, seed=3),
    }


@pytest.fixture(scope="module")
def tagger_ckpt(ner_files, tmp_path_factory) -> Path:
    """A tagger fit for one epoch by a plain ``Trainer`` on ``ner_files``, with the NER
    recipe's data settings but other sizes than its model's."""
    root = tmp_path_factory.mktemp("tagger")
    pl.seed_everything(0)
    data = TaggingDataModule(train=str(ner_files["train"]), tag_scheme="bioes", batch_size=16,
                             cache_dir=str(root / "hf"))  # fmt: skip
    model = Tagger(data.codec, word_dim=16, char_dim=8, char_hidden=8, hidden_size=16)
    trainer = _trainer(root)
    trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(root / "tagger.ckpt")
    return root / "tagger.ckpt"


@pytest.fixture(scope="module")
def clf_ckpt(tmp_path_factory) -> Path:
    """A small classifier fit for one epoch on the packaged ``sample_sentiment``."""
    root = tmp_path_factory.mktemp("clf")
    pl.seed_everything(0)
    data = ClassificationDataModule(dataset="sample_sentiment", batch_size=32,
                                    cache_dir=str(root / "hf"))  # fmt: skip
    model = Classifier(data.codec, embedding_dim=16, hidden_size=16)
    trainer = _trainer(root)
    trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(root / "clf.ckpt")
    return root / "clf.ckpt"


def _ner_data(files: dict[str, Path], tmp_path: Path, splits=("train", "validation", "test")):
    args = ["--data.dataset", "null", "--data.cache_dir", str(tmp_path / "hf")]
    for split in splits:
        args += [f"--data.{split}", str(files[split])]
    return args


def _error_line(capsys) -> str:
    """The CLI's error: exactly one ``seqnlp: error:`` line, last, and no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("seqnlp: error:")]
    assert len(errors) == 1, err
    assert err.rstrip("\n").splitlines()[-1] == errors[0], err
    return errors[0]


# -- 1. configuration errors -------------------------------------------------------------
def test_config_value_of_wrong_type_names_key_and_type(ner_files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", NER_RECIPE, *_ner_data(ner_files, tmp_path),
              "--model.init_args.hidden_size", "abc"])  # fmt: skip
    assert exit_info.value.code not in (0, None)
    err = capsys.readouterr().err.partition("error:")[2]  # past the usage lines
    assert "hidden_size" in err and re.search(r"\bint\b", err), err
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_unknown_config_key_is_named(ner_files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", NER_RECIPE, *_ner_data(ner_files, tmp_path),
              "--data.init_args.batchsize", "3"])  # fmt: skip
    assert exit_info.value.code not in (0, None)
    assert "batchsize" in capsys.readouterr().err.partition("error:")[2]


# -- 2. wrong, damaged and foreign checkpoints -------------------------------------------
def test_checkpoint_of_another_task_is_one_clear_line(
    ner_files, clf_ckpt, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", NER_RECIPE, *_ner_data(ner_files, tmp_path), "--ckpt_path",
              str(clf_ckpt), "--trainer.enable_progress_bar", "false"])  # fmt: skip
    assert exit_info.value.code == 2
    line = _error_line(capsys)
    assert "classification" in line and "tagging" in line, line
    assert line.index("classification") < line.index("tagging")  # a classifier given to a tagger


def test_validate_takes_a_plain_trainer_checkpoint_and_its_sizes(
    ner_files, tagger_ckpt, tmp_path, monkeypatch, capsys
):
    # The checkpoint has no ``_class_path`` (not written by the CLI), and its sizes are not
    # the recipe's: the model is built from the checkpoint's hyper-parameters.
    monkeypatch.chdir(tmp_path)
    main(["validate", NER_RECIPE, *_ner_data(ner_files, tmp_path, ("train", "validation")),
          "--ckpt_path", str(tagger_ckpt), "--trainer.enable_progress_bar", "false"])  # fmt: skip
    assert "val/f1" in capsys.readouterr().out


def test_missing_checkpoint_given_to_validate_is_one_line(ner_files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", NER_RECIPE, *_ner_data(ner_files, tmp_path), "--ckpt_path",
              "missing.ckpt"])  # fmt: skip
    assert exit_info.value.code == 2
    assert _error_line(capsys) == "seqnlp: error: missing.ckpt: no such checkpoint file"


def test_truncated_checkpoint_cannot_be_read(tagger_ckpt, tmp_path):
    data = tagger_ckpt.read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot read checkpoint") as err:
        load(cut)
    assert "\n" not in str(err.value)
    assert str(cut) in str(err.value)


@pytest.mark.parametrize("class_path", ["robustness_payload.Model", "seqnlp.data.TaggingCodec"])
def test_checkpoint_naming_a_class_outside_seqnlp_is_refused(
    class_path, tagger_ckpt, tmp_path, monkeypatch
):
    # A module that would leave a mark if the loader imported it.
    marker = tmp_path / "imported"
    (tmp_path / "robustness_payload.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Model:\n    pass\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    real = torch.load(tagger_ckpt, weights_only=True)
    forged = {**real, "seqnlp": {**real["seqnlp"], "class_path": class_path}}
    path = tmp_path / "forged.ckpt"
    torch.save(forged, path)
    with pytest.raises(ValueError, match="not a seqnlp system"):
        load_system(path)
    with pytest.raises(ValueError, match="not a seqnlp system"):
        load(path)
    assert not marker.exists()  # refused before importing anything


# -- 3. missing splits ---------------------------------------------------------------------
def test_test_command_without_test_data_says_so(
    ner_files, tagger_ckpt, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["test", NER_RECIPE, *_ner_data(ner_files, tmp_path, ("train",)), "--ckpt_path",
              str(tagger_ckpt), "--trainer.enable_progress_bar", "false"])  # fmt: skip
    assert exit_info.value.code == 2
    assert "no test data" in _error_line(capsys)


# -- 4. very long inputs -------------------------------------------------------------------
def test_very_long_sentence_is_tagged_whole(tagger_ckpt):
    predictor = load(tagger_ckpt, batch_size=4)
    assert isinstance(predictor, TaggingPredictor)
    words = ["Ana", "vive", "en", "Lima", ".", "Zzyzx"]
    tokens = [words[i % len(words)] for i in range(LONG)]
    short = ["Luis", "dijo", "hoy"]
    long_record, short_record = predictor.predict([tokens, short])
    assert long_record["tokens"] == tokens
    assert len(long_record["tags"]) == LONG
    assert all(t == "O" or t[:2] in ("B-", "I-") for t in long_record["tags"])
    for entity in long_record["entities"]:
        assert 0 <= entity["start"] < entity["end"] <= LONG
        assert 0 <= entity["confidence"] <= 1
    assert len(short_record["tags"]) == 3  # padded beside the long one, still right
    assert short_record == predictor.predict([short])[0]


def test_very_long_text_is_classified(clf_ckpt):
    predictor = load(clf_ckpt, batch_size=4)
    assert isinstance(predictor, ClassificationPredictor)
    words = ["the", "film", "is", "good", "but", "the", "cast", "is", "dull"]
    text = " ".join(words[i % len(words)] for i in range(LONG))
    assert len(predictor.codec.encode_text(text)) == LONG  # not cut
    record, short = predictor.predict([text, "a good film"])
    labels = predictor.codec.labels.itos
    assert record["text"] == text and record["label"] in labels
    assert sum(record["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert short == predictor.predict(["a good film"])[0]


# -- 5. bad prediction inputs --------------------------------------------------------------
def test_predict_on_missing_input_file(tagger_ckpt, tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    out = tmp_path / "out.jsonl"
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--ckpt_path", str(tagger_ckpt), "--input", str(missing),
              "--output", str(out)])  # fmt: skip
    assert exit_info.value.code == 2
    assert _error_line(capsys) == f"seqnlp: error: {missing}: no such input file"
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file


def test_predict_on_non_utf8_input_names_file_and_line(tagger_ckpt, tmp_path, capsys):
    src = tmp_path / "latin1.txt"
    src.write_bytes("Ana vive en Lima\nLuis vive en Bogotá\n".encode("latin-1"))
    out = tmp_path / "out.jsonl"
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--ckpt_path", str(tagger_ckpt), "--input", str(src),
              "--output", str(out)])  # fmt: skip
    assert exit_info.value.code == 2
    line = _error_line(capsys)
    assert f"{src}:2:" in line and "utf-8" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latin1.txt"]


# -- 6. labels the model never saw ---------------------------------------------------------
def test_evaluate_with_unseen_label_names_it(clf_ckpt, tmp_path, capsys):
    gold = tmp_path / "gold.txt"
    gold.write_text("1 the film is good .\nneutral the film is a film .\n0 a dull cast .\n",
                    encoding="utf-8")  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--ckpt_path", str(clf_ckpt), "--input", str(gold)])
    assert exit_info.value.code == 2
    line = _error_line(capsys)
    assert "'neutral'" in line and str(gold) in line, line
