"""The recurrent variants from the command line (issue 18): recipe keys on every task's
recipe, the gate inspector, streaming from a checkpoint, what export and int8 refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import seqnlp
from seqnlp.checkpoints import hyper_parameters, read_checkpoint
from seqnlp.cli import main
from seqnlp.export.writer import export_model

ROOT = Path(__file__).resolve().parents[1]
VARIANT_KEYS = [
    "--model.init_args.cell", "layernorm_lstm", "--model.init_args.num_layers", "2",
    "--model.init_args.residual", "true", "--model.init_args.layer_norm", "true",
    "--model.init_args.dropout_mode", "locked", "--model.init_args.weight_drop", "0.2",
    "--model.init_args.init", "orthogonal", "--model.init_args.forget_bias", "1.0",
]  # fmt: skip


@pytest.fixture()
def variant_tagger(tiny_ner, tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    main(["fit", str(ROOT / "recipes" / "quickstart" / "ner.yaml"),
          "--data.dataset", "null", "--data.train", str(tiny_ner["train"]),
          "--data.validation", str(tiny_ner["validation"]), "--data.test", str(tiny_ner["test"]),
          "--data.cache_dir", str(tmp_path / "hf"), *VARIANT_KEYS,
          "--model.init_args.char_encoder", "recurrent", "--trainer.max_epochs", "2",
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    run = tmp_path / "runs" / "quickstart-ner" / "tb" / "version_0"
    return run / "checkpoints" / "last.ckpt"


def test_a_tagger_trains_with_every_key_and_its_checkpoint_stands_alone(variant_tagger, tiny_ner,
                                                                          tmp_path):  # fmt: skip
    hparams = hyper_parameters(read_checkpoint(variant_tagger))
    assert hparams["cell"] == "layernorm_lstm" and hparams["dropout_mode"] == "locked"
    predictor = seqnlp.load(str(variant_tagger))
    encoder = predictor.network.encoder
    assert encoder.cell == "layernorm_lstm" and encoder.residual and len(encoder.norms) == 1
    assert predictor.network.char_features.encoder.cell == "layernorm_lstm"
    sentence = "Juan Pérez vive en Madrid ."
    records = predictor.predict([sentence])
    # an exported folder predicts the same
    main(["export", "--ckpt_path", str(variant_tagger), "--output", str(tmp_path / "model")])
    assert seqnlp.load(str(tmp_path / "model")).predict([sentence]) == records
    with pytest.raises(ValueError, match="ONNX has no node for the layernorm_lstm cell"):
        export_model(str(variant_tagger), str(tmp_path / "m2"), onnx=True)
    assert not (tmp_path / "m2").exists()
    with pytest.raises(ValueError, match="no kernels for the layernorm_lstm cell"):
        seqnlp.load(str(variant_tagger), quantize="int8")


def test_gates_draws_and_writes_the_numbers(variant_tagger, tmp_path, capsys):
    png, numbers = tmp_path / "gates.png", tmp_path / "gates.json"
    main(["gates", "--ckpt_path", str(variant_tagger), "--text", "Juan vive en Madrid .",
          "--output", str(png), "--json", str(numbers)])  # fmt: skip
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(numbers.read_text())
    assert report["tokens"] == ["Juan", "vive", "en", "Madrid", "."]
    assert report["cell"] == "layernorm_lstm"
    layers = {(layer["layer"], layer["direction"]) for layer in report["layers"]}
    assert layers == {(0, "forward"), (0, "backward"), (1, "forward"), (1, "backward")}
    for layer in report["layers"]:
        assert set(layer["gate_means"]) == {"input", "forget", "output"}
        for means in layer["gate_means"].values():
            assert len(means) == 5 and all(0 < m < 1 for m in means)
        assert len(layer["hidden_norm"]) == 5
    main(["gates", "--ckpt_path", str(variant_tagger), "--text", "Madrid", "--json"])
    assert json.loads(capsys.readouterr().out)["tokens"] == ["Madrid"]


def test_a_classifier_streams_from_its_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", str(ROOT / "recipes" / "quickstart" / "sentiment.yaml"),
          "--data.cache_dir", str(tmp_path / "hf"), "--model.init_args.cell", "cifg_lstm",
          "--model.init_args.bidirectional", "false", "--model.init_args.pooling", "attention",
          "--model.init_args.dropout_mode", "locked", "--trainer.max_epochs", "1",
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    ckpt = next((tmp_path / "runs").rglob("last.ckpt"))
    predictor = seqnlp.load(str(ckpt), pretokenized=True)
    stream = predictor.stream()
    text = "a gripping and beautifully acted film"
    for token in text.split():
        record = stream.feed(token)
    expected = predictor.predict([text])[0]
    assert record["label"] == expected["label"] and record["text"] == text
    for label, p in expected["probabilities"].items():
        assert record["probabilities"][label] == pytest.approx(p, abs=2e-4)


def test_a_misspelt_cell_is_one_line(tiny_ner, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", str(ROOT / "recipes" / "quickstart" / "ner.yaml"), "--data.dataset",
              "null", "--data.train", str(tiny_ner["train"]), "--model.init_args.cell",
              "peephole"])  # fmt: skip
    err = capsys.readouterr().err
    assert "peephole" in err and "peephole_lstm" in err
