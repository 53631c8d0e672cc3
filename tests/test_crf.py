"""The CRF against brute-force enumeration; the encoder and character features against
running each item alone, so that padding provably changes nothing."""

from __future__ import annotations

import itertools

import pytest
import torch
from torchcrf import CRF

from seqnlp.nn.crf import (
    LinearChainCRF,
    _LogPartition,
    backward_scores,
    forward_scores,
    scaled_marginals,
    unary_marginals,
)
from seqnlp.nn.embeddings import CharCNN, CharLSTM
from seqnlp.nn.encoder import RNNEncoder

NUM_TAGS = 3
TIME = 4


# -- helpers -------------------------------------------------------------------------------


def make_crf(seed: int = 0, num_tags: int = NUM_TAGS) -> LinearChainCRF:
    """A float64 CRF with random (non-default) transition parameters."""
    gen = torch.Generator().manual_seed(seed)
    crf = LinearChainCRF(num_tags).double()
    with torch.no_grad():
        crf.crf.transitions.copy_(
            torch.randn(num_tags, num_tags, generator=gen, dtype=torch.double)
        )
        crf.crf.start_transitions.copy_(torch.randn(num_tags, generator=gen, dtype=torch.double))
        crf.crf.end_transitions.copy_(torch.randn(num_tags, generator=gen, dtype=torch.double))
    return crf


def make_batch(lengths: list[int], seed: int = 1, time: int | None = None):
    """Random double emissions (batch, time, tags) and a left-aligned bool mask."""
    gen = torch.Generator().manual_seed(seed)
    time = max(lengths) if time is None else time
    emissions = 2.0 * torch.randn(len(lengths), time, NUM_TAGS, generator=gen, dtype=torch.double)
    mask = torch.arange(time)[None, :] < torch.tensor(lengths)[:, None]
    return emissions, mask


def path_score(crf: LinearChainCRF, emissions: torch.Tensor, path: tuple[int, ...]) -> float:
    """Score of ``path`` over the first ``len(path)`` rows of ``emissions`` (time, tags)."""
    start, end = crf.crf.start_transitions.detach(), crf.crf.end_transitions.detach()
    trans, emissions = crf.crf.transitions.detach(), emissions.detach()
    s = start[path[0]] + end[path[-1]]
    s = s + sum(emissions[t, y] for t, y in enumerate(path))
    s = s + sum(trans[a, b] for a, b in itertools.pairwise(path))
    return float(s)


def enumerate_paths(crf: LinearChainCRF, emissions: torch.Tensor, length: int):
    """All tag paths of ``length`` with their scores, as (paths, scores tensor)."""
    paths = list(itertools.product(range(crf.crf.num_tags), repeat=length))
    scores = torch.tensor([path_score(crf, emissions, p) for p in paths], dtype=torch.double)
    return paths, scores


def brute_marginals(crf: LinearChainCRF, emissions: torch.Tensor, length: int) -> torch.Tensor:
    """p(y_t = k) for t < length, from the full enumeration: (length, tags)."""
    paths, scores = enumerate_paths(crf, emissions, length)
    probs = torch.softmax(scores, dim=0)
    out = torch.zeros(length, crf.crf.num_tags, dtype=torch.double)
    for p, pr in zip(paths, probs, strict=True):
        for t, y in enumerate(p):
            out[t, y] += pr
    return out


BATCHES = {
    "ragged": [4, 2, 1],
    "unsorted": [2, 4, 3],
    "full": [4, 4, 4],
    "all_length_one": [1, 1, 1],
    "single_length_one": [1],
}


# -- CRF -----------------------------------------------------------------------------------


@pytest.mark.parametrize("lengths", BATCHES.values(), ids=BATCHES.keys())
def test_score_is_hand_computed_sum_over_real_positions(lengths):
    crf = make_crf(seed=3)
    emissions, mask = make_batch(lengths, seed=4)
    gen = torch.Generator().manual_seed(5)
    for _ in range(5):
        tags = torch.randint(0, NUM_TAGS, mask.shape, generator=gen)
        got = crf.score(emissions, tags, mask)
        assert got.shape == (len(lengths),)
        for i, n in enumerate(lengths):
            expected = path_score(crf, emissions[i], tuple(tags[i, :n].tolist()))
            assert got[i].item() == pytest.approx(expected, abs=1e-9)
        # Whatever the padding positions of ``tags`` hold, the score is unchanged.
        other = torch.where(mask, tags, (tags + 1) % NUM_TAGS)
        torch.testing.assert_close(crf.score(emissions, other, mask), got)


@pytest.mark.parametrize("lengths", BATCHES.values(), ids=BATCHES.keys())
def test_log_partition_is_logsumexp_over_all_paths(lengths):
    crf = make_crf(seed=6)
    emissions, mask = make_batch(lengths, seed=7)
    log_z = crf.log_partition(emissions, mask)
    assert log_z.shape == (len(lengths),)
    for i, n in enumerate(lengths):
        paths, scores = enumerate_paths(crf, emissions[i], n)
        assert len(paths) == NUM_TAGS**n
        assert log_z[i].item() == pytest.approx(torch.logsumexp(scores, 0).item(), abs=1e-9)


@pytest.mark.parametrize("lengths", BATCHES.values(), ids=BATCHES.keys())
def test_neg_log_likelihood_is_batch_mean_of_logz_minus_score(lengths):
    crf = make_crf(seed=8)
    emissions, mask = make_batch(lengths, seed=9)
    tags = torch.randint(0, NUM_TAGS, mask.shape, generator=torch.Generator().manual_seed(10))
    expected = []
    for i, n in enumerate(lengths):
        _, scores = enumerate_paths(crf, emissions[i], n)
        gold = path_score(crf, emissions[i], tuple(tags[i, :n].tolist()))
        expected.append(torch.logsumexp(scores, 0).item() - gold)
    nll = crf.neg_log_likelihood(emissions, tags, mask)
    assert nll.dim() == 0
    assert nll.item() == pytest.approx(sum(expected) / len(expected), abs=1e-9)
    assert nll.item() > 0  # a probability below 1 for each sentence
    torch.testing.assert_close(
        nll, (crf.log_partition(emissions, mask) - crf.score(emissions, tags, mask)).mean()
    )


def test_batched_viterbi_equals_pytorch_crf_decode():
    torch.manual_seed(0)
    for tags in (3, 17):
        crf = LinearChainCRF(tags)
        for p in crf.parameters():
            torch.nn.init.normal_(p)
        for time in (12, 37, 64):  # small batches compose pointers in log2(time) rounds
            for batch in (7, 40):  # larger ones find them again in the backtrace
                for _ in range(5):
                    emissions = torch.randn(batch, time, tags)
                    lengths = torch.randint(1, time + 1, (batch,))
                    mask = torch.arange(time) < lengths[:, None]
                    assert crf.decode(emissions, mask) == crf.crf.decode(emissions, mask=mask)


def test_scaled_marginals_equal_log_space_on_long_ragged_batches():
    """The one-recursion forward-backward in probability space against the log-space
    recursions, on batches long enough for many rescaled steps."""
    torch.manual_seed(5)
    crf = LinearChainCRF(9).double()
    for p in crf.parameters():
        torch.nn.init.normal_(p, std=2.0)
    c = crf.crf
    for time in (1, 2, 45):
        emissions = 3 * torch.randn(6, time, 9, dtype=torch.float64)
        lengths = torch.randint(1, time + 1, (6,))
        lengths[0] = time
        mask = torch.arange(time) < lengths[:, None]
        probs = scaled_marginals(emissions, mask, c.start_transitions, c.transitions,
                                 c.end_transitions)  # fmt: skip
        alphas = forward_scores(emissions, mask, c.start_transitions, c.transitions)
        betas = backward_scores(emissions, mask, c.transitions, c.end_transitions)
        log_z = torch.logsumexp(alphas[-1] + c.end_transitions, dim=1)
        expected = unary_marginals(alphas, betas, log_z, mask).transpose(0, 1)
        torch.testing.assert_close(probs, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("lengths", BATCHES.values(), ids=BATCHES.keys())
def test_decode_is_argmax_of_enumeration(lengths):
    crf = make_crf(seed=11)
    for seed in range(12, 17):
        emissions, mask = make_batch(lengths, seed=seed)
        decoded = crf.decode(emissions, mask)
        assert len(decoded) == len(lengths)
        for i, n in enumerate(lengths):
            paths, scores = enumerate_paths(crf, emissions[i], n)
            assert len(decoded[i]) == n
            best = scores.max().item()
            assert path_score(crf, emissions[i], tuple(decoded[i])) == pytest.approx(best, abs=1e-9)
            assert tuple(decoded[i]) == paths[int(scores.argmax())]


@pytest.mark.parametrize("lengths", BATCHES.values(), ids=BATCHES.keys())
def test_marginals_match_enumeration(lengths):
    crf = make_crf(seed=20)
    emissions, mask = make_batch(lengths, seed=21)
    marg = crf.marginals(emissions, mask)
    assert marg.shape == (len(lengths), max(lengths), NUM_TAGS)
    for i, n in enumerate(lengths):
        torch.testing.assert_close(
            marg[i, :n], brute_marginals(crf, emissions[i], n), atol=1e-5, rtol=0
        )
        # Exactly zero at padding.
        assert torch.equal(marg[i, n:], torch.zeros_like(marg[i, n:]))
    # A distribution over tags at every real position.
    sums = marg.sum(-1)
    torch.testing.assert_close(sums[mask], torch.ones_like(sums[mask]), atol=1e-9, rtol=0)
    assert (marg >= 0).all()


def test_marginals_with_extra_trailing_padding_and_float32():
    """Time dimension longer than every sequence, and the default float32 module."""
    crf = make_crf(seed=22)
    emissions, mask = make_batch([3, 1, 2], seed=23, time=6)
    marg = crf.marginals(emissions, mask)
    for i, n in enumerate([3, 1, 2]):
        torch.testing.assert_close(
            marg[i, :n], brute_marginals(crf, emissions[i], n), atol=1e-5, rtol=0
        )
    assert not marg[~mask].any()

    crf32 = make_crf(seed=22).float()
    marg32 = crf32.marginals(emissions.float(), mask)
    assert marg32.dtype == torch.float32
    torch.testing.assert_close(marg32.double(), marg, atol=1e-5, rtol=0)


def test_marginals_are_gradient_of_log_partition():
    """d logZ / d emissions is the posterior marginal (an independent identity)."""
    crf = make_crf(seed=24)
    emissions, mask = make_batch([4, 2, 3, 1], seed=25)
    emissions.requires_grad_(True)
    (grad,) = torch.autograd.grad(crf.log_partition(emissions, mask).sum(), emissions)
    torch.testing.assert_close(crf.marginals(emissions.detach(), mask), grad, atol=1e-9, rtol=0)


@pytest.mark.parametrize("lengths", BATCHES.values(), ids=BATCHES.keys())
def test_log_partition_gradient_passes_gradcheck(lengths):
    """The forward-backward gradient of log Z against finite differences, for the
    emissions (zero at padding) and the three transition parameters."""
    crf = make_crf(seed=40)
    emissions, mask = make_batch(lengths, seed=41, time=max(lengths) + 1)
    params = [emissions.requires_grad_(), crf.crf.start_transitions, crf.crf.transitions,
              crf.crf.end_transitions]  # fmt: skip

    def log_z(em, start, trans, end):
        return _LogPartition.apply(em, mask, start, trans, end)

    assert torch.autograd.gradcheck(log_z, [p.detach().clone().requires_grad_() for p in params])


@pytest.mark.parametrize(("tags", "time"), [(9, 23), (37, 11), (2, 1)])
def test_neg_log_likelihood_and_gradients_equal_pytorch_crf(tags, time):
    torch.manual_seed(tags)
    crf = LinearChainCRF(tags)
    torch.nn.init.normal_(crf.crf.transitions)
    reference = CRF(tags, batch_first=True)
    reference.load_state_dict(crf.crf.state_dict())
    emissions = torch.randn(16, time, tags, requires_grad=True)
    gold = torch.randint(0, tags, (16, time))
    lengths = torch.randint(1, time + 1, (16,))
    mask = torch.arange(time)[None, :] < lengths[:, None]
    ours = crf.neg_log_likelihood(emissions, gold, mask)
    theirs = -reference(emissions, gold, mask=mask, reduction="mean")
    torch.testing.assert_close(ours, theirs)
    grads = torch.autograd.grad(ours, [emissions, *crf.crf.parameters()])
    expected = torch.autograd.grad(
        theirs, [emissions, *reference.parameters()], allow_unused=True
    )  # one step: pytorch-crf never reads its transitions
    for got, want in zip(grads, expected, strict=True):
        want = torch.zeros_like(got) if want is None else want
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_padded_emissions_change_nothing_at_real_positions():
    crf = make_crf(seed=30)
    lengths = [4, 2, 1, 3]
    emissions, mask = make_batch(lengths, seed=31)
    noise = 50.0 * torch.randn(emissions.shape, generator=torch.Generator().manual_seed(32))
    changed = torch.where(mask[..., None], emissions, noise.double())
    assert not torch.equal(changed, emissions)
    tags = torch.randint(0, NUM_TAGS, mask.shape, generator=torch.Generator().manual_seed(33))

    torch.testing.assert_close(
        crf.score(changed, tags, mask), crf.score(emissions, tags, mask), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(
        crf.log_partition(changed, mask), crf.log_partition(emissions, mask), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(
        crf.neg_log_likelihood(changed, tags, mask),
        crf.neg_log_likelihood(emissions, tags, mask),
        atol=1e-12,
        rtol=0,
    )
    assert crf.decode(changed, mask) == crf.decode(emissions, mask)
    m_changed, m_orig = crf.marginals(changed, mask), crf.marginals(emissions, mask)
    torch.testing.assert_close(m_changed, m_orig, atol=1e-12, rtol=0)
    assert not m_changed[~mask].any()


def test_batch_equals_each_sequence_alone():
    crf = make_crf(seed=34)
    lengths = [4, 1, 3]
    emissions, mask = make_batch(lengths, seed=35)
    tags = torch.randint(0, NUM_TAGS, mask.shape, generator=torch.Generator().manual_seed(36))
    marg = crf.marginals(emissions, mask)
    log_z = crf.log_partition(emissions, mask)
    decoded = crf.decode(emissions, mask)
    for i, n in enumerate(lengths):
        e, m, y = emissions[i : i + 1, :n], mask[i : i + 1, :n], tags[i : i + 1, :n]
        torch.testing.assert_close(crf.marginals(e, m)[0], marg[i, :n], atol=1e-12, rtol=0)
        torch.testing.assert_close(crf.log_partition(e, m)[0], log_z[i], atol=1e-12, rtol=0)
        assert crf.decode(e, m) == [decoded[i]]
        assert crf.score(e, y, m)[0].item() == pytest.approx(
            crf.score(emissions, tags, mask)[i].item(), abs=1e-12
        )


# -- RNNEncoder ----------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [True, False], ids=["bi", "uni"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_encoder_padded_batch_equals_each_sequence_alone(cell, bidirectional):
    torch.manual_seed(0)
    enc = RNNEncoder(5, 4, num_layers=2, cell=cell, bidirectional=bidirectional).double().eval()
    directions = 2 if bidirectional else 1
    assert enc.output_size == 4 * directions
    lengths = [3, 6, 1, 4]  # unsorted on purpose
    batch, time = len(lengths), max(lengths)
    inputs = torch.randn(batch, time, 5, dtype=torch.double)
    mask = torch.arange(time)[None, :] < torch.tensor(lengths)[:, None]
    inputs = torch.where(mask[..., None], inputs, torch.full_like(inputs, 7.0))  # loud padding

    with torch.no_grad():
        outputs, final = enc(inputs, torch.tensor(lengths))
    assert outputs.shape == (batch, time, enc.output_size)
    assert not outputs[~mask].any()
    assert final.shape == (2 * directions, batch, 4)  # hidden states (not LSTM cells)

    for i, n in enumerate(lengths):
        with torch.no_grad():
            alone, alone_final = enc(inputs[i : i + 1, :n], torch.tensor([n]))
        torch.testing.assert_close(outputs[i, :n], alone[0], atol=1e-10, rtol=0)
        torch.testing.assert_close(final[:, i], alone_final[:, 0], atol=1e-10, rtol=0)
        # The last layer's forward final state is the forward output at the last real step.
        torch.testing.assert_close(final[directions, i], outputs[i, n - 1, :4])


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_encoder_initial_state_goes_to_its_own_sequence(cell):
    torch.manual_seed(1)
    enc = RNNEncoder(3, 4, num_layers=1, cell=cell, bidirectional=True).double()
    lengths = [2, 5, 3]
    inputs = torch.randn(3, 5, 3, dtype=torch.double)
    h0 = torch.randn(2, 3, 4, dtype=torch.double)
    initial = (h0, torch.randn(2, 3, 4, dtype=torch.double)) if cell == "lstm" else h0
    with torch.no_grad():
        outputs, _ = enc(inputs, torch.tensor(lengths), initial)
        for i, n in enumerate(lengths):
            own = (
                tuple(s[:, i : i + 1].contiguous() for s in initial)
                if cell == "lstm"
                else h0[:, i : i + 1].contiguous()
            )
            alone, _ = enc(inputs[i : i + 1, :n], torch.tensor([n]), own)
            torch.testing.assert_close(outputs[i, :n], alone[0], atol=1e-10, rtol=0)
        zero_start, _ = enc(inputs, torch.tensor(lengths))
    assert not torch.allclose(outputs, zero_start)  # the initial state is really used


# -- character features --------------------------------------------------------------------

WORD = [5, 6, 7]  # the word whose vector must not depend on its surroundings


def char_batches() -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """The word alone, and a padded batch holding it at several positions."""
    alone = torch.tensor([[WORD]])  # (1, 1, 3)
    sentences = [
        [[9, 10, 11, 12, 13, 14, 15], WORD, [3]],
        [WORD],
        [[2, 3], [4], [8, 8, 8, 8], WORD, [16, 17, 18, 19, 20]],
    ]
    width = max(len(w) for s in sentences for w in s)
    words = max(len(s) for s in sentences)
    ids = torch.zeros(len(sentences), words, width, dtype=torch.long)
    for i, s in enumerate(sentences):
        for j, w in enumerate(s):
            ids[i, j, : len(w)] = torch.tensor(w)
    where = [(0, 1), (1, 0), (2, 3)]
    return alone, ids, where


@pytest.mark.parametrize(
    "make",
    [
        lambda: CharCNN(30, char_dim=6, filters=8, kernel_size=3),
        lambda: CharCNN(30, char_dim=6, filters=8, kernel_size=5),
        lambda: CharCNN(30, char_dim=6, filters=8, kernel_size=4),
        lambda: CharLSTM(30, char_dim=6, hidden=5),
    ],
    ids=["cnn3", "cnn5", "cnn4", "lstm"],
)
def test_char_features_do_not_depend_on_padding(make):
    torch.manual_seed(2)
    module = make().eval()
    alone, ids, where = char_batches()
    with torch.no_grad():
        single = module(alone)
        batch = module(ids)
        # The same word padded to a longer width but alone in its sentence.
        wide = module(torch.nn.functional.pad(alone, (0, 9)))
    assert single.shape == (1, 1, module.output_size)
    assert batch.shape == (*ids.shape[:2], module.output_size)
    torch.testing.assert_close(wide, single, atol=1e-6, rtol=0)
    for i, j in where:
        torch.testing.assert_close(batch[i, j], single[0, 0], atol=1e-6, rtol=0)
    # Padding words (no characters at all) give zero vectors; real ones do not.
    is_pad = (ids == 0).all(-1)
    assert is_pad.any()
    assert not batch[is_pad].any()
    assert batch[~is_pad].abs().sum(-1).gt(0).all()
    # Other words really differ from the probe word (so the comparison can fail).
    assert not torch.allclose(batch[0, 0], single[0, 0], atol=1e-3)


def test_char_lstm_word_vector_is_final_states_of_bilstm():
    torch.manual_seed(3)
    module = CharLSTM(30, char_dim=4, hidden=3).eval()
    _, ids, _ = char_batches()
    with torch.no_grad():
        out = module(ids)
        x = module.embedding(torch.tensor([WORD]))
        seq, _ = module.encoder.rnn(x)
    expected = torch.cat([seq[0, -1, :3], seq[0, 0, 3:]])
    torch.testing.assert_close(out[0, 1], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("lengths", [[4, 2, 1], [3, 3, 3], [1]])
@pytest.mark.parametrize("n", [1, 4, 30])
def test_nbest_matches_sorted_enumeration(lengths, n):
    """k-best Viterbi returns the n best paths of the enumeration, in order, with their
    scores; with n above the number of paths (3**length), all of them."""
    crf = make_crf(seed=11)
    emissions, mask = make_batch(lengths, seed=12, time=5)
    nbest = crf.nbest(emissions, mask, n)
    for b, length in enumerate(lengths):
        paths, scores = enumerate_paths(crf, emissions[b], length)
        order = scores.argsort(descending=True)[:n].tolist()
        assert [p for p, _ in nbest[b]] == [list(paths[i]) for i in order]
        assert [s for _, s in nbest[b]] == pytest.approx(scores[order].tolist(), abs=1e-9)
        assert nbest[b][0][0] == crf.decode(emissions, mask)[b]


@pytest.mark.parametrize("seed", range(5))
def test_marginals_survive_scores_hundreds_apart(seed):
    """Where a step of the scaled recursion underflows (most of these seeds), the
    marginals come from log space: finite, a distribution at every real position,
    equal to the log-space ones."""
    from seqnlp.nn.crf import backward_scores, forward_scores, unary_marginals

    torch.manual_seed(seed)
    crf = LinearChainCRF(4).double()
    with torch.no_grad():
        crf.crf.transitions.normal_().mul_(400)
    emissions = torch.randn(3, 6, 4, dtype=torch.float64) * 400
    mask = torch.arange(6)[None, :] < torch.tensor([6, 2, 1])[:, None]
    c = crf.crf
    alphas = forward_scores(emissions, mask, c.start_transitions, c.transitions)
    betas = backward_scores(emissions, mask, c.transitions, c.end_transitions)
    log_z = torch.logsumexp(alphas[-1] + c.end_transitions, dim=1)
    want = unary_marginals(alphas, betas, log_z, mask).transpose(0, 1)
    got = crf.marginals(emissions, mask)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    torch.testing.assert_close(got.sum(-1), mask.double(), atol=1e-12, rtol=0)
