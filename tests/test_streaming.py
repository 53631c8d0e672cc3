"""Streaming training data (``data.streaming: true``): the same vocabularies as the
cached path, every example once per epoch across ranks and workers, equal batch
counts on every rank, reproducible shuffling, mid-epoch resumption, and a fit."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
from test_translation_data import write_pairs

from seqnlp.data import TaggingDataModule
from seqnlp.data import streaming as streaming_module
from seqnlp.data.classification import ClassificationDataModule
from seqnlp.data.streaming import StreamingBatches, StreamingDataLoader, count_kept
from seqnlp.data.translation import TranslationDataModule
from seqnlp.tokenization import _reservoir

ROOT = Path(__file__).resolve().parents[1]


def _records(lengths: list[int]) -> datasets.IterableDataset:
    def gen(lengths):
        for i, n in enumerate(lengths):
            yield {"idx": i, "tokens": ["w"] * n}

    # a tuple: Hugging Face would read a list as one shard per item
    return datasets.IterableDataset.from_generator(gen, gen_kwargs={"lengths": tuple(lengths)})


def _encode(batch):
    return {"ids": [[1] * len(t) for t in batch["tokens"]], "idx": list(batch["idx"])}


def _batches(lengths, world, workers, epoch=0, keep=None, batch_size=3, monkeypatch=None):
    """Every (rank, worker) stream's batches, as lists of example indices."""
    kept = count_kept(_records(lengths), _encode, keep)
    out = {}
    for rank in range(world):
        data = StreamingBatches(
            _records(lengths), _encode, keep, kept, lambda e: len(e["ids"]), list, batch_size,
            pool_factor=2, shuffle_buffer=7, seed=5, num_replicas=world, rank=rank,
            num_workers=workers,
        )  # fmt: skip
        data.set_epoch(epoch)
        for worker in range(workers):
            monkeypatch.setattr(streaming_module, "get_worker_info",
                                lambda w=worker: SimpleNamespace(id=w))  # fmt: skip
            out[rank, worker] = [[e["idx"] for e in b] for b in data]
        assert len(data) == workers * len(out[rank, 0])
    return out


@pytest.mark.parametrize(("world", "workers"), [(1, 1), (2, 1), (3, 2), (2, 2)])
def test_every_example_once_an_epoch_and_equal_batches_on_every_rank(world, workers,
                                                                     monkeypatch):  # fmt: skip
    lengths = [1 + (i * 7) % 13 for i in range(41)]  # 41: divisible by no world x workers
    got = _batches(lengths, world, workers, monkeypatch=monkeypatch)
    per_rank = {r: sum(len(got[r, w]) for w in range(workers)) for r in range(world)}
    assert len(set(per_rank.values())) == 1  # no rank waits at the epoch's end
    seen = Counter(i for batches in got.values() for b in batches for i in b)
    assert set(seen) == set(range(41))
    repeats = sum(seen.values()) - 41  # top-ups: at most one per short stream
    assert 0 <= repeats < world * workers
    # batches are cut from length-sorted pools: little padding
    for batches in got.values():
        assert all(len(b) <= 3 for b in batches)


def test_shuffling_changes_by_epoch_and_repeats_from_the_seed(monkeypatch):
    lengths = [1 + i % 9 for i in range(60)]
    first = _batches(lengths, 2, 1, epoch=0, monkeypatch=monkeypatch)
    again = _batches(lengths, 2, 1, epoch=0, monkeypatch=monkeypatch)
    other = _batches(lengths, 2, 1, epoch=1, monkeypatch=monkeypatch)
    assert first == again and first != other


def test_a_filter_that_drops_unevenly_still_gives_equal_counts(monkeypatch):
    lengths = [2 if i % 2 == 0 else 20 for i in range(30)]  # rank 0 holds all the short ones

    def keep(e):
        return len(e["ids"]) < 10

    got = _batches(lengths, 2, 1, keep=keep, monkeypatch=monkeypatch)
    assert len(got[0, 0]) == len(got[1, 0])
    seen = {i for batches in got.values() for b in batches for i in b}
    assert seen == {i for i in range(30) if lengths[i] < 10}


def test_streaming_loader_resumes_mid_epoch(monkeypatch):
    lengths = [1 + (i * 5) % 11 for i in range(40)]
    kept = count_kept(_records(lengths), _encode, None)

    def loader():
        data = StreamingBatches(_records(lengths), _encode, None, kept, lambda e: len(e["ids"]),
                                list, 3, 2, 7, 5, 1, 0, 1)  # fmt: skip
        return StreamingDataLoader(data, epoch_of=lambda: 2)

    whole = [[e["idx"] for e in b] for b in loader()]
    interrupted = loader()
    taken = []
    for batch in interrupted:
        taken.append([e["idx"] for e in batch])
        if len(taken) == 4:
            break
    assert interrupted.state_dict() == {"epoch": 2, "batches_done": 4}
    restarted = loader()
    restarted.load_state_dict(interrupted.state_dict())
    assert taken + [[e["idx"] for e in b] for b in restarted] == whole


def test_reservoir_sample_is_uniform_sized_and_in_order():
    items = [str(i) for i in range(1000)]
    sample = _reservoir(iter(items), 100)
    assert len(sample) == 100 and sample == sorted(sample, key=int)
    assert _reservoir(iter(items), 5000) == items  # fewer lines than the cap: all of them
    assert _reservoir(iter(items), 100) == sample  # deterministic


def test_streamed_vocabularies_equal_the_cached_ones(tiny_ner, tmp_path):
    def both(cls, **kw):
        return [cls(cache_dir=str(tmp_path / "hf"), streaming=s, **kw).codec for s in (False, True)]

    cached, streamed = both(TaggingDataModule, train=str(tiny_ner["train"]))
    assert cached == streamed
    labelled = tmp_path / "train.txt"
    labelled.write_text("".join(f"{i % 2} word{i % 7} other{i % 5} .\n" for i in range(80)))
    for tokenizer in ("word", "sentencepiece"):
        cached, streamed = both(ClassificationDataModule, train=str(labelled),
                                tokenizer=tokenizer, vocab_size=30)  # fmt: skip
        assert cached == streamed, tokenizer
    prefix = write_pairs(tmp_path / "pairs", 120, seed=3)
    cached, streamed = both(TranslationDataModule, train=str(prefix), vocab_size=60)
    assert cached == streamed


def test_streamed_translation_pairs_respect_max_train_length(tmp_path):
    prefix = write_pairs(tmp_path / "pairs", 200, seed=4)
    data = TranslationDataModule(
        train=str(prefix),
        vocab_size=60,
        max_train_length=4,
        streaming=True,
        batch_size=8,
        cache_dir=str(tmp_path / "hf"),
    )
    data.setup("fit")
    batches = list(data.train_dataloader())
    assert 0 < sum(len(b) for b in batches) < 200
    assert all(b.tgt_out.size(1) <= 5 for b in batches)  # 4 pieces and </s>


def _fit(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "seqnlp", "fit", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


@pytest.mark.skipif(sys.platform == "win32", reason="gloo DDP test runs on POSIX")
def test_streamed_fit_on_one_and_two_processes(tiny_ner, tmp_path):
    recipe = str(ROOT / "recipes" / "quickstart" / "ner.yaml")
    data = ["--data.dataset", "null", "--data.train", str(tiny_ner["train"]),
            "--data.validation", str(tiny_ner["validation"]), "--data.streaming", "true",
            "--data.cache_dir", str(tmp_path / "hf"), "--trainer.max_epochs", "2",
            "--trainer.enable_progress_bar", "false",
            "--optimizer.init_args.lr", "0.01"]  # fmt: skip
    one = _fit([recipe, *data], tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    ddp = [str(ROOT / "recipes" / "trainer" / "ddp.yaml"), "--trainer.accelerator", "cpu",
           "--trainer.devices", "2", "--data.num_workers", "1"]  # fmt: skip
    two = _fit([recipe, *ddp, *data], tmp_path)  # a rank short of batches would hang here
    assert two.returncode == 0, two.stderr[-3000:]
    metrics = tmp_path / "runs" / "quickstart-ner" / "csv" / "version_1" / "metrics.csv"
    assert "val/f1" in metrics.read_text()
