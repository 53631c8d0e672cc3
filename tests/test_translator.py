"""The translator: search through the network, learning, scheduled sampling, prediction,
averaging, attention maps (the contract every network and system keeps is in
test_contract.py)."""

from __future__ import annotations

import json
from pathlib import Path
from unittest.mock import patch

import pytest
import pytorch_lightning as pl
import torch
from test_translation_data import write_pairs

from seqnlp.checkpoints import load_system
from seqnlp.data.translation import TranslationDataModule
from seqnlp.nn.search import forced_decode
from seqnlp.tasks import Translator


@pytest.fixture()
def data(tmp_path):
    train = write_pairs(tmp_path / "train", 1000, 0)
    dev = write_pairs(tmp_path / "dev", 40, 1)
    module = TranslationDataModule(train=str(train), validation=str(dev), vocab_size=60,
                                   batch_size=16, cache_dir=str(tmp_path / "hf"))  # fmt: skip
    module.setup("fit")
    return module


def _batch(data, n=6):
    return data.collate([data.datasets["validation"][i] for i in range(n)])


def test_beam_one_through_the_model_equals_greedy(data):
    torch.manual_seed(0)
    model = Translator(data.codec, embedding_dim=16, hidden_size=16, dropout=0.0).eval()
    network, target = model.network, data.codec.target
    batch = _batch(data, 8)
    limits = model.max_lengths(batch.src_lengths)

    def search(**options):
        state = network.encode(batch.src_ids, batch.src_lengths)
        return network.translate(state, target.bos_id, target.eos_id, limits, **options)

    greedy = search()
    beam = search(beam_size=1, n_best=1, length_penalty=0.0)
    forced_beam = search(beam_size=2, n_best=2)
    assert all(len(h) == 2 for h in forced_beam)
    assert [g[0].tokens for g in greedy] == [b[0].tokens for b in beam]


def test_learns_a_word_for_word_language(data, tmp_path):
    pl.seed_everything(0)
    model = Translator(data.codec, embedding_dim=32, hidden_size=48, dropout=0.0,
                       label_smoothing=0.0)  # fmt: skip

    def adam_annealed_to_zero():  # over the 15 epochs, stepped once an epoch
        adam = torch.optim.Adam(model.parameters(), lr=0.01)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(adam, T_max=15)
        return {"optimizer": adam, "lr_scheduler": schedule}

    model.configure_optimizers = adam_annealed_to_zero  # type: ignore[method-assign]
    trainer = pl.Trainer(max_epochs=15, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path, gradient_clip_val=1.0)  # fmt: skip
    trainer.fit(model, datamodule=data)
    # The tiny language is learnt (repeated words are the hard part). At a constant lr of
    # 0.01 validation BLEU swung by 10-28 points from epoch to epoch to the end, so the
    # last epoch's score hung on the seed and on the float summation order: 65.7 to 89.0
    # over seeds 0-2 with AVX-512, AVX2 and scalar kernels (ATEN_CPU_CAPABILITY; the
    # thread count changed nothing), against a bar of 70. Annealed to 0 it settles:
    # 96.9 to 100 over the same 9 runs; an untrained model scores under 1.
    assert trainer.callback_metrics["val/bleu"] > 90


def test_scheduled_sampling_probability_follows_the_schedule(data):
    model = Translator(data.codec, embedding_dim=8, hidden_size=8, sampling_start=0.0,
                       sampling_end=0.5, sampling_epochs=10)  # fmt: skip
    epochs = {"now": 0}
    with patch.object(Translator, "current_epoch", property(lambda self: epochs["now"])):
        assert model.sampling_probability() == 0.0
        epochs["now"] = 4
        assert model.sampling_probability() == pytest.approx(0.2)
        epochs["now"] = 40
        assert model.sampling_probability() == pytest.approx(0.5)


def test_dot_attention_needs_matching_sizes(data):
    with pytest.raises(ValueError, match="set decoder_hidden_size to 16"):
        Translator(data.codec, embedding_dim=8, hidden_size=8, attention="dot")


@pytest.fixture()
def mt_checkpoint(data, tmp_path):
    pl.seed_everything(0)
    model = Translator(data.codec, embedding_dim=16, hidden_size=16, dropout=0.0)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, datamodule=data)
    ckpt = tmp_path / "mt.ckpt"
    trainer.save_checkpoint(ckpt)
    return ckpt


def test_predictor_keeps_lines_and_gives_n_best(mt_checkpoint):
    from seqnlp.predict import TranslationPredictor, load

    predictor = load(mt_checkpoint, batch_size=2, beam_size=3, n_best=3)
    assert isinstance(predictor, TranslationPredictor)
    lines = ["der hund läuft", "", "   ", "die katze schläft im park"]
    records = predictor.predict(lines)
    assert [r["source"] for r in records] == lines
    assert records[1]["translation"] == "" and records[2]["translation"] == ""
    best = records[3]["n_best"]
    assert len(best) == 3 and best[0]["translation"] == records[3]["translation"]
    assert [b["score"] for b in best] == sorted((b["score"] for b in best), reverse=True)
    with pytest.raises(ValueError, match="n_best"):
        load(mt_checkpoint, beam_size=2, n_best=3)
    with pytest.raises(ValueError, match="beam_size must be at least 1"):
        load(mt_checkpoint, beam_size=0)


def test_cli_predict_and_evaluate_a_translator(mt_checkpoint, tmp_path, capsys):
    from seqnlp.cli import main

    src = tmp_path / "in.txt"
    src.write_text("der hund läuft\n\nim park\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    main(["predict", "--ckpt_path", str(mt_checkpoint), "--input", str(src), "--output", str(out),
          "--beam_size", "2"])  # fmt: skip
    assert len(out.read_text(encoding="utf-8").split("\n")) == 4  # 3 lines, then the final newline
    test = write_pairs(tmp_path / "test", 12, 5)
    scores_path = tmp_path / "s.json"
    main(["evaluate", "--ckpt_path", str(mt_checkpoint), "--input", str(test), "--src_lang",
          "de", "--tgt_lang", "en", "--beam_size", "1", "--output", str(scores_path)])  # fmt: skip
    scores = json.loads(scores_path.read_text())
    assert scores["pairs"] == 12 and 0 <= scores["bleu"] <= 100
    assert scores["bleu_signature"].startswith("nrefs:1|case:mixed")
    capsys.readouterr()


def test_checkpoint_averaging_means_the_weights(data, mt_checkpoint, tmp_path):
    from seqnlp.checkpoints import average_checkpoints
    from seqnlp.cli import main

    first = torch.load(mt_checkpoint, weights_only=True)
    shifted = {**first, "state_dict": {k: v + 1.0 if v.is_floating_point() else v
                                       for k, v in first["state_dict"].items()}}  # fmt: skip
    second = tmp_path / "second.ckpt"
    torch.save(shifted, second)
    out = tmp_path / "avg" / "averaged.ckpt"
    main(["average", str(mt_checkpoint), str(second), "--output", str(out)])
    averaged = load_system(out)
    for key, value in first["state_dict"].items():
        torch.testing.assert_close(averaged.state_dict()[key], value + 0.5)
    assert first["state_dict"].keys() == averaged.state_dict().keys()
    other = Translator(data.codec, embedding_dim=8, hidden_size=8)  # other sizes
    different = {**first, "hyper_parameters": dict(other.hparams), "state_dict": other.state_dict()}
    torch.save(different, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="not the same model"):
        average_checkpoints([mt_checkpoint, tmp_path / "other.ckpt"], tmp_path / "x.ckpt")
    with pytest.raises(ValueError, match="at least 2"):
        average_checkpoints([mt_checkpoint], tmp_path / "x.ckpt")


def test_attention_map_rows_sum_to_one_and_draw_a_png(mt_checkpoint, tmp_path):
    from seqnlp.cli import main
    from seqnlp.predict import load

    predictor = load(mt_checkpoint)
    found = predictor.attention("der rote hund läuft im park", "the red dog runs in the park")
    weights = torch.tensor(found["weights"])
    assert weights.shape == (len(found["target_pieces"]), len(found["source_pieces"]))
    assert found["source_pieces"][-1] == "</s>" and found["target_pieces"][-1] == "</s>"
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(len(weights)))
    free = predictor.attention("der hund")  # greedy: one row per output piece and </s>
    assert len(free["weights"]) == len(free["target_pieces"])
    png = tmp_path / "maps" / "attention.png"
    main(["attention", "--ckpt_path", str(mt_checkpoint), "--source", "der hund läuft",
          "--output", str(png)])  # fmt: skip
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_fit_and_test_the_translation_quickstart(tmp_path, monkeypatch):
    import csv

    from seqnlp.cli import main

    recipe = str(
        Path(__file__).resolve().parents[1] / "recipes" / "quickstart" / "translation.yaml"
    )
    monkeypatch.chdir(tmp_path)
    common = ["--data.cache_dir", str(tmp_path / "hf"), "--trainer.enable_progress_bar", "false"]
    main(["fit", recipe, *common, "--trainer.max_epochs", "3"])
    run = tmp_path / "runs" / "quickstart-translation"
    best = next((run / "tb" / "version_0" / "checkpoints").glob("best-*.ckpt"))
    main(["test", recipe, *common, "--ckpt_path", str(best)])
    with open(run / "csv" / "version_1" / "metrics.csv") as handle:
        row = next(r for r in csv.DictReader(handle) if r.get("test/bleu"))
    assert float(row["test/bleu"]) > 50  # the shipped sample is learnt within 3 epochs


def test_evaluate_without_languages_says_what_to_give(mt_checkpoint, capsys):
    from seqnlp.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--ckpt_path", str(mt_checkpoint), "--input", "multi30k:test"])
    assert exit_info.value.code == 2
    assert "give --src_lang and --tgt_lang" in capsys.readouterr().err


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_teacher_forcing_all_steps_at_once_equals_step_by_step(data, cell):
    # Teacher forcing computes the output layers once over all steps; decoding runs
    # them a step at a time (the step API, through forced_decode as scheduled sampling
    # does). Both must give the same scores (eval mode: no dropout).
    torch.manual_seed(0)
    model = Translator(data.codec, embedding_dim=16, hidden_size=16, cell=cell).eval()
    batch = _batch(data)
    network = model.network
    with torch.no_grad():
        state = model.encode(batch)
        fast = model.logits(batch, state=state)
        stepped = forced_decode(lambda t, s: network.step(t, s)[:2], state, batch.tgt_in)
        # scheduled sampling that never samples follows the references
        never = model.logits(batch, sampling=1e-12, state=state)
    torch.testing.assert_close(fast, stepped)
    torch.testing.assert_close(fast, never)


@pytest.mark.parametrize("beam", [1, 3])
def test_parallel_batches_give_the_same_translations(mt_checkpoint, beam):
    from seqnlp.predict import load

    lines = [" ".join(["der hund läuft im park"] * (1 + i % 4)) for i in range(12)] + [""]
    serial = load(mt_checkpoint, batch_size=2, beam_size=beam).predict(lines)
    parallel = load(mt_checkpoint, batch_size=2, beam_size=beam, parallel_batches=2)
    threads = torch.get_num_threads()
    assert [r["translation"] for r in parallel.predict(lines)] == [r["translation"] for r in serial]
    assert torch.get_num_threads() == threads
