"""The language model: stream layout and truncated back-propagation, scores, generation,
the token stream, checkpoints, resumption and data-parallel runs; tiny data made here."""

from __future__ import annotations

import csv
import gzip
import lzma
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from contract import (
    NetworkCase,
    SystemCase,
    check_batched_equals_alone,
    check_network_round_trips,
    check_network_trains,
    check_predictions_batched_equal_alone,
    check_system_gradients,
    check_system_round_trips,
)

import seqnlp
from seqnlp.cli import main
from seqnlp.data.language_model import (
    LanguageModelDataModule,
    SegmentLoader,
    SegmentStream,
    StreamLayout,
    rank_rows,
)
from seqnlp.data.lm_codec import LanguageModelCodec
from seqnlp.data.text_streams import TextSource, encode_paragraphs, paragraphs
from seqnlp.models import LanguageModelNetwork
from seqnlp.predict.language_model import LanguageModelPredictor
from seqnlp.tasks import LanguageModel

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "quickstart" / "charlm.yaml")
WORDS = ["la", "casa", "del", "río", "es", "verde", "y", "el", "perro", "duerme", "ley", "art."]


def write_text(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- layout: brute force on tiny streams -------------------------------------------------
@pytest.mark.parametrize(("tokens", "streams", "bptt"), [(23, 3, 4), (40, 4, 7), (9, 2, 10)])
@pytest.mark.parametrize("cover", [False, True])
def test_each_row_is_a_contiguous_stream_cut_into_segments(tokens, streams, bptt, cover):
    ids = np.arange(tokens, dtype=np.uint16) * 3  # id i*3 at position i
    layout = StreamLayout(tokens, streams, bptt, cover)
    data = SegmentStream(ids, layout, range(streams))
    rows: list[list[tuple[int, int]]] = [[] for _ in range(streams)]
    for segment, batch in enumerate(data):
        assert batch.segment == segment and batch.inputs.size(1) <= bptt
        mask = batch.mask if batch.mask is not None else torch.ones_like(batch.inputs).bool()
        for r in range(streams):
            for x, y, real in zip(batch.inputs[r], batch.targets[r], mask[r], strict=True):
                if real:
                    rows[r].append((int(x) // 3, int(y) // 3))
    length = layout.row_length
    for r, pairs in enumerate(rows):  # row r: positions r*L .. r*L+L-1, each target next
        assert pairs == [(p, p + 1) for p in range(r * length, min((r + 1) * length, tokens - 1))]
    predicted = sorted(y for pairs in rows for _, y in pairs)
    if cover:  # every prediction once
        assert predicted == list(range(1, tokens))
    else:  # the remainder (fewer than `streams`) left out, every row as long
        assert len(predicted) == streams * ((tokens - 1) // streams)
        assert len({len(p) for p in rows}) == 1


def test_ranks_take_contiguous_blocks_of_rows():
    for streams, world in [(8, 2), (7, 3), (5, 5)]:
        blocks = [rank_rows(streams, r, world) for r in range(world)]
        assert [i for b in blocks for i in b] == list(range(streams))
        assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_segment_loader_resumes_at_the_first_segment_not_taken():
    ids = np.arange(50, dtype=np.uint8)
    loader = SegmentLoader(SegmentStream(ids, StreamLayout(50, 2, 5), range(2)), lambda: 3)
    taken = [b.segment for _, b in zip(range(2), loader, strict=False)]
    state = loader.state_dict()
    assert taken == [0, 1] and state == {"epoch": 3, "batches_done": 2}
    fresh = SegmentLoader(SegmentStream(ids, StreamLayout(50, 2, 5), range(2)), lambda: 3)
    fresh.load_state_dict(state)
    assert [b.segment for b in fresh] == list(range(2, 5))


# -- the network and truncated back-propagation -------------------------------------------
def _network(cell: str = "lstm", **options) -> LanguageModelNetwork:
    torch.manual_seed(0)
    return LanguageModelNetwork(17, embedding_dim=8, cell=cell, hidden_size=12, **options)


@pytest.mark.parametrize(("cell", "layers"), [("lstm", 2), ("gru", 1), ("layernorm_lstm", 1)])
def test_carried_state_equals_running_the_whole_stream(cell, layers):
    network = _network(cell, num_layers=layers).eval()
    ids = torch.randint(0, 17, (3, 23))
    with torch.no_grad():
        whole, _ = network(ids)  # (3, 23, 17)
        state, parts = None, []
        for start in range(0, 23, 5):  # segments with the state carried
            scores, state = network(ids[:, start : start + 5], state)
            parts.append(scores)
        stepped, state = [], None
        for t in range(23):  # one token at a time
            scores, state = network.step(ids[:, t], state)
            stepped.append(scores)
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.stack(stepped, dim=1), whole, rtol=1e-5, atol=1e-5)


def test_tied_embeddings_share_the_output_weights_through_a_projection():
    network = _network(tie_embeddings=True)
    assert network.output.weight is network.embedding.weight
    assert network.projection is not None and network.projection.in_features == 12


def _lm_batch(examples):
    ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(e) for e in examples], batch_first=True)
    return {"ids": ids, "lengths": torch.tensor([len(e) for e in examples])}


def _lm_outputs(network, batch):
    scores, _ = network(batch["ids"])
    return [scores[i, :n] for i, n in enumerate(batch["lengths"].tolist())]


def _lm_loss(network, batch):
    scores, _ = network(batch["ids"][:, :-1])
    return torch.nn.functional.cross_entropy(scores.transpose(1, 2), batch["ids"][:, 1:])


NETWORK = NetworkCase(
    "language_model",
    lambda: LanguageModelNetwork(17, 8, "lstm", 12, tie_embeddings=True, output_dropout=0.1,
                                 embedding_dropout=0.1, dropout_mode="locked"),
    [[random.Random(n).randrange(17) for _ in range(n)] for n in (5, 2, 7, 4)],
    _lm_batch, _lm_outputs, _lm_loss,
)  # fmt: skip


@pytest.mark.parametrize(
    "check", [check_network_trains, check_network_round_trips, check_batched_equals_alone]
)
def test_network_contract(check):
    check(NETWORK)


# -- the codec, scores and the direction ---------------------------------------------------
@pytest.mark.parametrize("level", ["char", "word"])
def test_backward_reads_each_paragraph_reversed(level):
    lines = ["la casa verde", "el perro duerme"]
    forward = LanguageModelCodec.fit(lines, level)
    backward = LanguageModelCodec.fit(lines, level, "backward")
    assert backward.vocab == forward.vocab
    for line in lines:
        assert backward.encode(line) == forward.encode(line)[::-1]
        assert (
            backward.decode(backward.encode(line)) == line == forward.decode(forward.encode(line))
        )
    # The stream: each paragraph reversed, then the boundary; paragraphs in file order.
    want = [i for line in lines for i in [*backward.encode(line), backward.boundary_id]]
    assert encode_paragraphs(lines, backward).tolist() == want
    assert LanguageModelCodec.from_state(backward.state_dict()) == backward


def test_sentencepiece_codec_round_trips():
    lines = [" ".join(random.Random(i).choices(WORDS, k=8)) for i in range(200)]
    codec = LanguageModelCodec.fit(lines, "sentencepiece", "backward", vocab_size=40)
    assert codec.decode(codec.encode(lines[0])) == lines[0]
    assert codec.decode([*codec.encode("la casa"), codec.boundary_id]) == "\nla casa"
    assert encode_paragraphs(lines[:2], codec).tolist()[-1] == codec.boundary_id


def test_bits_per_character_of_a_uniform_model(tmp_path):
    # An output layer of zeros predicts every symbol with probability 1/V: log2(V) bits
    # for each of the validation text's characters and boundaries.
    data = _data(tmp_path, eval_batch_size=3, eval_bptt=7)
    system = LanguageModel(data.codec, embedding_dim=8, hidden_size=8)
    torch.nn.init.zeros_(system.network.output.weight)
    torch.nn.init.zeros_(system.network.output.bias)
    outputs = []
    for batch in data.val_dataloader():
        outputs += system.evaluate_batch(batch)[1]
    text = (tmp_path / "dev.txt").read_text(encoding="utf-8")
    scores = system.corpus_scores(outputs, "val")
    assert scores["predictions"] == len(text) - 1  # every character but the first predicted
    assert scores["bpc"] == pytest.approx(math.log2(len(data.codec)), rel=1e-6)


# -- a system fit in process ----------------------------------------------------------------
def _data(tmp_path: Path, **options) -> LanguageModelDataModule:
    train = write_text(tmp_path / "train.txt", 60, seed=1)
    dev = write_text(tmp_path / "dev.txt", 12, seed=2)
    data = LanguageModelDataModule(train=str(train), validation=str(dev), batch_size=4, bptt=16,
                                   cache_dir=str(tmp_path / "cache"), **options)  # fmt: skip
    data.setup("fit")
    return data


SYSTEM = SystemCase(
    "language_model", _data,
    lambda codec: LanguageModel(codec, embedding_dim=8, hidden_size=16, tie_embeddings=True),
    ["la casa", "", "el perro duerme y la ley", "río"], lambda p: ("", {}), "bpc",
)  # fmt: skip


@pytest.mark.parametrize(
    "check",
    [check_system_round_trips, check_system_gradients, check_predictions_batched_equal_alone],
)
def test_system_contract(check, tmp_path):
    check(SYSTEM, tmp_path)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> LanguageModelPredictor:
    tmp = tmp_path_factory.mktemp("lm")
    data = _data(tmp)
    system = LanguageModel(data.codec, embedding_dim=8, hidden_size=16).eval()
    return LanguageModelPredictor(system.network, system.codec)


def test_stream_gives_the_whole_text_distribution(predictor):
    text = "la casa del río"
    stream = predictor.stream()
    assert stream.distribution() == pytest.approx(predictor.next_distribution(""), abs=1e-6)
    for symbol in text:
        fed = stream.feed(symbol)
    whole = predictor.next_distribution(text)
    assert list(fed) == list(whole)  # the same order: most probable first
    assert fed == pytest.approx(whole, abs=1e-5) and sum(whole.values()) == pytest.approx(1)
    top = predictor.stream(top_k=3)
    for symbol in text:
        best = top.feed(symbol)
    assert list(best) == list(whole)[:3]
    with pytest.raises(ValueError, match="one character at a time"):
        stream.feed("la")
    stream.reset()
    assert stream.feed("l") == pytest.approx(predictor.next_distribution("l"), abs=1e-5)


def test_greedy_generation_is_deterministic_and_sampling_follows_the_seed(predictor):
    greedy = predictor.generate("la casa", max_length=30, temperature=0)
    assert greedy == predictor.generate("la casa", max_length=30, temperature=0)
    ids = predictor.generate_ids("la casa", max_length=30, temperature=0)
    expected, state = [], None  # greedy by hand: the most probable symbol, fed back
    scores, state = predictor.network(torch.tensor([predictor._context("la casa")]))
    last = scores[0, -1]
    for _ in range(30):
        last[list(predictor.codec.never_generated)] = float("-inf")
        token = int(last.argmax())
        expected.append(token)
        step, state = predictor.network.step(torch.tensor([token]), state)
        last = step[0]
    assert ids == expected
    one = predictor.generate("la", max_length=40, temperature=1.0, seed=7)
    assert one == predictor.generate("la", max_length=40, temperature=1.0, seed=7)
    assert one != predictor.generate("la", max_length=40, temperature=1.0, seed=8)
    with pytest.raises(ValueError, match="temperature"):
        predictor.generate("la", temperature=-1)


def test_predict_and_evaluate_score_paragraphs(predictor, tmp_path):
    records = predictor.predict(["la casa", "la casa"])
    assert records[0] == records[1] and records[0]["predictions"] == len("la casa") + 1
    assert records[0]["bpc"] == pytest.approx(records[0]["nll_total"] / 8 / math.log(2))
    path = tmp_path / "text.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("la casa\n\nla casa\n")
    scores = predictor.evaluate(str(path))
    assert scores["lines"] == 2 and scores["bpc"] == pytest.approx(records[0]["bpc"])


@pytest.mark.parametrize("level", ["word", "sentencepiece"])
def test_word_and_piece_models_train_score_and_generate(level, tmp_path):
    torch.manual_seed(0)
    data = _data(tmp_path, level=level, vocab_size=30, direction="backward")
    system = LanguageModel(data.codec, embedding_dim=8, hidden_size=16, tie_embeddings=True)
    assert system.main_metrics == ("ppl",)
    optimiser = torch.optim.Adam(system.parameters(), lr=0.01)
    for batch in data.train_dataloader():  # one epoch, the state carried
        optimiser.zero_grad()
        system.training_loss(batch).backward()
        optimiser.step()
    system.eval()
    with torch.no_grad():
        outputs = [o for b in data.val_dataloader() for o in system.evaluate_batch(b)[1]]
    scores = system.corpus_scores(outputs, "val")
    assert 1 < scores["ppl"] < len(data.codec) and scores["ppl"] == pytest.approx(
        math.exp(scores["nll"])
    )
    predictor = LanguageModelPredictor(system.network, system.codec)
    text = predictor.generate("verde", max_length=6, temperature=0.8, seed=1)
    assert "<unk>" not in text and predictor.join("verde", text).endswith("verde")
    assert predictor.predict(["la casa"])[0]["ppl"] > 1


# -- bad input ------------------------------------------------------------------------------
def test_bad_input_fails_in_one_line(tmp_path):
    train = write_text(tmp_path / "train.txt", 5, seed=1)
    with pytest.raises(ValueError, match="not a named corpus"):
        LanguageModelDataModule(dataset="wikipedia")
    with pytest.raises(ValueError, match=r"missing\.txt: no such text file"):
        LanguageModelDataModule(train=str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="holdout_every must be 0"):
        LanguageModelDataModule(train=str(train), holdout_every=1)
    broken = tmp_path / "broken.txt.xz"
    broken.write_bytes(lzma.compress(b"una linea\n" * 1000)[:-40])
    with pytest.raises(ValueError, match=r"broken\.txt\.xz:\d+: cannot read the text"):
        list(paragraphs(TextSource.parse(str(broken))))
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"bien\nse\xf1or\n")
    with pytest.raises(ValueError, match=r"latin\.txt:2: cannot decode line as utf-8"):
        LanguageModelDataModule(train=str(latin), cache_dir=str(tmp_path)).codec  # noqa: B018
    short = LanguageModelDataModule(train=str(train), batch_size=500, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="too few for 500 streams"):
        short.train_dataloader()


# -- the command line: fit, kill, resume, generate, two processes ---------------------------
KILLER = """
import os
import signal

from pytorch_lightning import Callback


class KillAtStep(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == int(os.environ["KILL_AT_STEP"]):
            os.kill(os.getpid(), signal.SIGKILL)
"""


def _seqnlp(args: list[str], cwd: Path, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(cwd)}
    if kill_at is not None:
        env["KILL_AT_STEP"] = str(kill_at)
        args = [*args, "--trainer.callbacks+=killer.KillAtStep"]
    return subprocess.run([sys.executable, "-m", "seqnlp", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _fit_args(cwd: Path, *extra: str) -> list[str]:
    train = write_text(cwd / "train.txt", 80, seed=1)
    dev = write_text(cwd / "dev.txt", 8, seed=2)
    return ["fit", RECIPE, "--data.dataset", "null", "--data.train", str(train),
            "--data.validation", str(dev), "--data.batch_size", "4", "--data.bptt", "16",
            "--data.cache_dir", str(cwd / "cache"), "--model.hidden_size", "24",
            "--model.embedding_dim", "8", "--trainer.max_epochs", "2",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            *extra]  # fmt: skip


def _ckpt(cwd: Path, version: int) -> dict:
    path = cwd / "runs" / "quickstart-charlm" / "tb" / f"version_{version}" / "checkpoints"
    return torch.load(path / "last.ckpt", map_location="cpu", weights_only=True)


@pytest.fixture()
def one_thread():
    """torch on one thread, as the subprocesses (OMP_NUM_THREADS=1): equal weights after
    a resumption need the same arithmetic in and out of process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_fit_kill_resume_equals_uninterrupted_then_generate(
    tmp_path, monkeypatch, capsys, one_thread
):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    for cwd in (whole, broken):
        cwd.mkdir()
    (broken / "killer.py").write_text(KILLER)
    monkeypatch.chdir(whole)
    main(_fit_args(whole))
    end = _ckpt(whole, 0)
    steps = end["global_step"]  # 2 epochs of the same number of segments
    assert steps % 2 == 0 and steps // 2 > 35, steps

    saved = 20 * (steps // 2 // 20 + 1)  # last.ckpt every 20 steps: the first in epoch 2
    assert saved < steps
    killed = _seqnlp(_fit_args(broken), broken, kill_at=saved + 1)
    assert killed.returncode == -9, killed.stderr[-3000:]
    state = _ckpt(broken, 0)  # mid-epoch 2, with its carried state
    assert state["epoch"] == 1 and state["global_step"] == saved
    assert state["seqnlp_lm_state"][0][0].shape == (1, 4, 24)
    monkeypatch.chdir(broken)
    main([*_fit_args(broken), "--ckpt_path", "last"])
    end_resumed = _ckpt(broken, 1)
    assert end_resumed["global_step"] == steps
    for name, tensor in end["state_dict"].items():
        assert torch.equal(tensor, end_resumed["state_dict"][name]), name
    with open(whole / "runs" / "quickstart-charlm" / "csv" / "version_0" / "metrics.csv") as f:
        bpc = [float(r["val/bpc"]) for r in csv.DictReader(f) if r.get("val/bpc")]
    assert len(bpc) == 2 and bpc[-1] < math.log2(len(_codec_of(end)))  # learnt something

    ckpt = str(whole / "runs" / "quickstart-charlm" / "tb" / "version_0" / "checkpoints" /
               "last.ckpt")  # fmt: skip
    gen = ["generate", "--ckpt_path", ckpt, "--prompt", "la casa", "--max_length", "25"]
    capsys.readouterr()
    main([*gen, "--temperature", "0"])
    out = capsys.readouterr()
    loaded = seqnlp.load(ckpt)
    assert out.out == loaded.join("la casa", loaded.generate("la casa", 25, 0.0)) + "\n"
    assert "generated 25 characters" in out.err
    with pytest.raises(SystemExit) as stop:
        main([*gen, "--temperature", "-1"])
    assert stop.value.code == 2 and "seqnlp: error: temperature" in capsys.readouterr().err


def _codec_of(ckpt: dict) -> LanguageModelCodec:
    return LanguageModelCodec.from_state(ckpt["seqnlp"]["codec"])


@pytest.mark.skipif(sys.platform == "win32", reason="gloo DDP test runs on POSIX")
def test_two_processes_fit_and_validate_as_one(tmp_path, monkeypatch):
    two = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    args = _fit_args(tmp_path, "--data.eval_batch_size", "3", "--trainer.max_epochs", "1")
    proc = _seqnlp([*args, *two], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = _ckpt(tmp_path, 0)
    assert len(ckpt["seqnlp_lm_state"]) == 2  # each rank's carried state
    path = tmp_path / "runs" / "quickstart-charlm" / "tb" / "version_0" / "checkpoints"
    monkeypatch.chdir(tmp_path)
    main(["validate", *args[1:], "--ckpt_path", str(path / "last.ckpt")])
    rows = {}
    for version in (0, 1):
        csv_path = tmp_path / "runs" / "quickstart-charlm" / "csv" / f"version_{version}"
        with open(csv_path / "metrics.csv") as handle:
            rows[version] = [r for r in csv.DictReader(handle) if r.get("val/bpc")][-1]
    # The 2-process run's last validation, and 1 process validating its checkpoint.
    assert float(rows[0]["val/bpc"]) == pytest.approx(float(rows[1]["val/bpc"]), abs=1e-5)
    assert rows[0]["val/predictions"] == rows[1]["val/predictions"]


def test_the_raw_text_corpora_are_named_datasets_of_the_catalog(tmp_path, monkeypatch):
    """``unlabeled_es`` / ``unlabeled_nl`` / ``sample_charlm`` are catalog entries of
    task ``language_model``: found under $SEQNLP_DATA (never downloaded), refused by
    the labelled tasks, and the labelled datasets are refused as raw text."""
    from seqnlp.data.sources import CATALOG
    from seqnlp.data.tagging import TaggingDataModule

    assert {"unlabeled_es", "unlabeled_nl", "sample_charlm"} <= {
        name for name, entry in CATALOG.items() if entry.task == "language_model"}  # fmt: skip
    assert TextSource.parse("sample_charlm:train").path.is_file()
    monkeypatch.setenv("SEQNLP_DATA", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ValueError, match=r"unlabeled_nl:train not found at .*unlabeled/nl\.txt"
                       r"\.xz.*SEQNLP_DATA"):  # fmt: skip
        TextSource.parse("unlabeled_nl:train")
    with pytest.raises(ValueError, match="neither an existing file nor a named corpus of raw"):
        TextSource.parse("conll2002_es:train")
    with pytest.raises(ValueError, match="raw text for language models, without labels"):
        TaggingDataModule(train="unlabeled_es:train").setup("fit")
