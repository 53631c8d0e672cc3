"""BucketBatchSampler (coverage, reproducibility, padding, ranks) and the padding helpers."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from lightning_fabric.utilities.data import _set_sampler_epoch

from seqnlp.data.batching import BucketBatchSampler, pad_2d, pad_3d, pad_with_lengths
from seqnlp.data.resumable import ResumableDataLoader


def random_lengths(n: int, seed: int = 0, low: int = 1, high: int = 60) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(low, high) for _ in range(n)]


def padding_waste(batches: list[list[int]], lengths: list[int]) -> float:
    """Padded cells divided by real tokens."""
    pad = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    return pad / sum(lengths[i] for b in batches for i in b)


# -- one replica ---------------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "sorted"])
@pytest.mark.parametrize("batch_size", [1, 3, 7])
@pytest.mark.parametrize("n", [50, 101])  # 101: divisible by none of the batch sizes
def test_every_index_exactly_once(n, batch_size, shuffle):
    lengths = random_lengths(n, seed=n)
    sampler = BucketBatchSampler(lengths, batch_size, shuffle=shuffle, pool_factor=4, seed=3)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(n))
        assert all(1 <= len(b) <= batch_size for b in batches)
        assert len(sampler) == len(batches)
        # Only one batch per pool may be short, and never more batches than needed.
        pools = 1 if not shuffle else -(-n // (4 * batch_size))
        assert sum(len(b) < batch_size for b in batches) <= pools


def test_sorted_mode_batches_are_sorted_by_length():
    lengths = random_lengths(40, seed=1)
    batches = list(BucketBatchSampler(lengths, 6, shuffle=False))
    flat = [i for b in batches for i in b]
    assert [lengths[i] for i in flat] == sorted(lengths)
    assert list(BucketBatchSampler(lengths, 6, shuffle=False)) == batches


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "sorted"])
def test_drop_last_keeps_only_full_batches(shuffle):
    lengths = random_lengths(100, seed=2)
    sampler = BucketBatchSampler(lengths, 7, shuffle=shuffle, pool_factor=3, drop_last=True)
    batches = list(sampler)
    assert batches and all(len(b) == 7 for b in batches)
    assert len(sampler) == len(batches)
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))


def test_reproducible_per_seed_and_epoch():
    lengths = random_lengths(300, seed=4)

    def batches(seed: int, epoch: int) -> list[list[int]]:
        sampler = BucketBatchSampler(lengths, 8, seed=seed, pool_factor=5)
        sampler.set_epoch(epoch)
        return list(sampler)

    epoch0 = batches(seed=7, epoch=0)
    assert batches(seed=7, epoch=0) == epoch0
    # Iterating the same sampler twice within an epoch gives the same batches.
    sampler = BucketBatchSampler(lengths, 8, seed=7, pool_factor=5)
    assert list(sampler) == list(sampler) == epoch0
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != epoch0
    assert sorted(map(sorted, epoch1)) != sorted(map(sorted, epoch0))  # not just reordered
    assert epoch1 == batches(seed=7, epoch=1)
    assert batches(seed=8, epoch=0) != epoch0


def test_bucketing_keeps_padding_low():
    lengths = random_lengths(2000, seed=5)
    sampler = BucketBatchSampler(lengths, 32, seed=0)
    bucketed = list(sampler)
    assert len(bucketed) == len(sampler)
    rng = random.Random(6)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    unbucketed = [order[i : i + 32] for i in range(0, len(order), 32)]
    waste = padding_waste(bucketed, lengths)
    random_waste = padding_waste(unbucketed, lengths)
    assert waste < 0.10
    assert waste < random_waste / 3
    # Every epoch, not only the first.
    sampler.set_epoch(3)
    assert padding_waste(list(sampler), lengths) < 0.10


# -- several replicas ----------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "sorted"])
@pytest.mark.parametrize(
    ("n", "batch_size", "replicas"),
    [(101, 4, 2), (101, 4, 3), (100, 5, 2), (60, 5, 3), (7, 3, 2), (5, 5, 3), (3, 1, 4)],
)
def test_ranks_get_equal_counts_and_cover_everything(n, batch_size, replicas, shuffle):
    lengths = random_lengths(n, seed=n + replicas)
    samplers = [
        BucketBatchSampler(
            lengths,
            batch_size,
            shuffle=shuffle,
            pool_factor=3,
            seed=11,
            num_replicas=replicas,
            rank=r,
        )
        for r in range(replicas)
    ]
    per_rank = [list(s) for s in samplers]
    single = list(BucketBatchSampler(lengths, batch_size, shuffle=shuffle, pool_factor=3, seed=11))
    for s, batches in zip(samplers, per_rank, strict=True):
        assert len(batches) == len(s) == -(-len(single) // replicas)
        assert all(1 <= len(b) <= batch_size for b in batches)
    counts = Counter(i for batches in per_rank for b in batches for i in b)
    assert set(counts) == set(range(n))
    # Filler batches repeat real batches: at most replicas - 1 of them.
    extra = sum(len(batches) for batches in per_rank) - len(single)
    assert 0 <= extra < replicas
    if len(single) >= replicas - 1:
        assert max(counts.values()) <= 2
    # The batches themselves are those of the single-process sampler.
    assert {tuple(b) for batches in per_rank for b in batches} == {tuple(b) for b in single}


def test_ranks_follow_the_epoch_together():
    lengths = random_lengths(90, seed=12)
    samplers = [BucketBatchSampler(lengths, 4, num_replicas=2, rank=r) for r in (0, 1)]
    for epoch in (0, 1):
        for s in samplers:
            s.set_epoch(epoch)
        flat = [i for s in samplers for b in s for i in b]
        assert set(flat) == set(range(90))
        assert len(flat) - len(set(flat)) <= 4  # at most one filler batch


@pytest.mark.parametrize(("rank", "replicas"), [(2, 2), (-1, 2), (1, 1), (0, 0)])
def test_invalid_rank_raises(rank, replicas):
    with pytest.raises(ValueError, match="rank"):
        BucketBatchSampler([1, 2, 3], 2, num_replicas=replicas, rank=rank)


@pytest.mark.parametrize("batch_size", [0, -3])
def test_invalid_batch_size_raises(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        BucketBatchSampler([1, 2, 3], batch_size)


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "sorted"])
@pytest.mark.parametrize("replicas", [1, 2])
def test_empty_dataset_yields_nothing(shuffle, replicas):
    sampler = BucketBatchSampler([], 4, shuffle=shuffle, num_replicas=replicas)
    assert list(sampler) == []
    assert len(sampler) == 0


# -- padding -------------------------------------------------------------------------------


def test_pad_2d():
    out = pad_2d([[1, 2, 3], [4], [], [5, 6]], pad=-1)
    assert out.dtype == torch.long
    assert out.tolist() == [[1, 2, 3], [4, -1, -1], [-1, -1, -1], [5, 6, -1]]
    assert pad_2d([[7, 8]]).tolist() == [[7, 8]]
    assert pad_2d([[1], [2, 3]]).tolist() == [[1, 0], [2, 3]]  # default pad 0
    assert pad_2d([[], []]).shape == (2, 0)
    assert pad_2d([]).shape == (0, 0)


def test_pad_with_lengths_and_rows_of_any_sequence():
    rows = [(3, 1), [], range(5, 8), [2**40]]  # tuples, ranges, ids past int32
    padded, lengths, mask = pad_with_lengths(rows, pad=-7)
    assert padded.dtype == lengths.dtype == torch.long and mask.dtype == torch.bool
    assert padded.tolist() == [[3, 1, -7], [-7, -7, -7], [5, 6, 7], [2**40, -7, -7]]
    assert lengths.tolist() == [2, 0, 3, 1]
    assert mask.tolist() == [[True, True, False], [False] * 3, [True] * 3, [True, False, False]]
    padded, lengths, mask = pad_with_lengths([])
    assert padded.shape == mask.shape == (0, 0) and lengths.shape == (0,)


def test_pad_3d():
    rows = [
        [[1, 2], [3]],
        [[4, 5, 6]],
        [[7], [], [8, 9]],
    ]
    out = pad_3d(rows, pad=-1)
    assert out.dtype == torch.long
    assert out.shape == (3, 3, 3)
    assert out.tolist() == [
        [[1, 2, -1], [3, -1, -1], [-1, -1, -1]],
        [[4, 5, 6], [-1, -1, -1], [-1, -1, -1]],
        [[7, -1, -1], [-1, -1, -1], [8, 9, -1]],
    ]
    assert pad_3d([[[1]], [[2, 3]]]).tolist() == [[[1, 0]], [[2, 3]]]  # default pad 0


def test_pad_3d_empty_inner_lists():
    # Sentences with no words, and words with no characters, still give a 3-d tensor
    # with at least one character column.
    assert pad_3d([[], []]).shape == (2, 0, 1)
    assert pad_3d([[[]], []]).tolist() == [[[0]], [[0]]]
    assert pad_3d([[[], [2]], []], pad=9).tolist() == [[[9], [2]], [[9], [9]]]
    assert pad_3d([]).shape == (0, 0, 1)


def test_token_budget_bounds_padded_batch_size():
    rng = random.Random(5)
    lengths = [rng.randint(1, 80) for _ in range(700)]
    sampler = BucketBatchSampler(lengths, batch_size=64, max_tokens=400, seed=2)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(700))
    assert len(batches) == len(sampler)
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert len(b) <= 64
        assert len(b) * longest <= 400 or len(b) == 1  # a lone long example may exceed it
    with pytest.raises(ValueError, match="drop_last and max_tokens"):
        BucketBatchSampler(lengths, batch_size=8, max_tokens=100, drop_last=True)


# -- epochs under Lightning, and resuming mid-epoch ----------------------------------------


def _loader(lengths: list[int], **kwargs) -> ResumableDataLoader:
    sampler = BucketBatchSampler(lengths, batch_size=4, pool_factor=2, seed=3, **kwargs)
    return ResumableDataLoader(list(range(len(lengths))), batch_sampler=sampler,
                               collate_fn=list)  # fmt: skip


def test_lightning_set_epoch_reaches_the_bucket_sampler():
    # Lightning calls set_epoch on loader.sampler and loader.batch_sampler.sampler only;
    # a batch sampler it cannot reach would repeat epoch 0's order every epoch.
    loader = _loader(random_lengths(40))
    first = list(loader)
    _set_sampler_epoch(loader, 3)
    assert loader.batch_sampler.epoch == 3
    assert list(loader) != first


@pytest.mark.parametrize("replicas", [1, 2])
def test_loader_state_resumes_mid_epoch_where_it_stopped(replicas):
    lengths = random_lengths(45, seed=5)
    for rank in range(replicas):
        whole = _loader(lengths, num_replicas=replicas, rank=rank)
        whole.batch_sampler.set_epoch(2)
        expected = list(whole)
        interrupted = _loader(lengths, num_replicas=replicas, rank=rank)
        interrupted.batch_sampler.set_epoch(2)
        taken = []
        for batch in interrupted:
            taken.append(batch)
            if len(taken) == 3:
                break
        state = interrupted.state_dict()
        assert state == {"epoch": 2, "batches_done": 3}
        restarted = _loader(lengths, num_replicas=replicas, rank=rank)  # a new process
        restarted.load_state_dict(state)
        rest = list(restarted)
        assert taken + rest == expected
        assert restarted.state_dict() == {"epoch": 2, "batches_done": len(expected)}
        # the skip applies once: the next epoch is whole and in its own order
        restarted.batch_sampler.set_epoch(3)
        assert len(list(restarted)) == len(expected)


def test_loader_state_of_a_finished_epoch_starts_the_next_one_whole():
    lengths = random_lengths(30, seed=6)
    loader = _loader(lengths)
    done = list(loader)
    restarted = _loader(lengths)
    restarted.load_state_dict(loader.state_dict())  # {"epoch": 0, "batches_done": all}
    _set_sampler_epoch(restarted, 1)  # what Lightning does at the next epoch's start
    nxt = list(restarted)
    assert len(nxt) == len(done) and nxt != done
