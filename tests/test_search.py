"""Beam search against exhaustive search, beam 1 against greedy; attention masking."""

from __future__ import annotations

import itertools

import pytest
import torch

from seqnlp.nn.attention import Attention
from seqnlp.nn.search import beam_search, greedy_search, length_penalty, sample

BOS, EOS = 0, 1
VOCAB = 4  # BOS, EOS and two words


def toy_model(batch_size: int, max_len: int, seed: int = 0):
    """A 'decoder' whose next-token distribution depends on the sentence, the step and
    the previous token, from a random table; BOS is never generated."""
    gen = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(batch_size, max_len + 1, VOCAB, VOCAB, generator=gen)
    logits[..., BOS] = float("-inf")
    table = logits.log_softmax(dim=-1)  # (batch, step, previous token, next token)

    def step(tokens, state):
        rows, t = state["row"], state["t"]
        return table[rows, t, tokens], {"row": rows, "t": t + 1}

    def select(state, index):
        return {key: value[index] for key, value in state.items()}

    state = {"row": torch.arange(batch_size), "t": torch.zeros(batch_size, dtype=torch.long)}
    return step, select, state, table


def exhaustive(table: torch.Tensor, b: int, max_len: int) -> list[tuple[float, list[int], int]]:
    """Every complete output of sentence b as (log-prob, tokens, generated length), best
    first: words then EOS within the limit, or exactly ``max_len`` words and no EOS."""

    def log_prob(seq: list[int]) -> float:
        prev, total = BOS, 0.0
        for t, tok in enumerate(seq):
            total += float(table[b, t, prev, tok])
            prev = tok
        return total

    words = range(2, VOCAB)
    outputs = [
        (log_prob([*w, EOS]), list(w), n + 1)
        for n in range(max_len)
        for w in itertools.product(words, repeat=n)
    ]
    outputs += [
        (log_prob(list(w)), list(w), max_len) for w in itertools.product(words, repeat=max_len)
    ]
    return sorted(outputs, key=lambda o: -o[0])


@pytest.mark.parametrize("max_len", [1, 2, 3])
def test_wide_beam_equals_exhaustive_search(max_len):
    batch = 3
    step, select, state, table = toy_model(batch, max_len, seed=max_len)
    everything = [exhaustive(table, b, max_len) for b in range(batch)]
    width = max(len(e) for e in everything)
    results = beam_search(step, select, state, batch, BOS, EOS, max_len, beam_size=width,
                          n_best=width)  # fmt: skip
    for b in range(batch):
        expected = everything[b]
        got = results[b]
        assert [h.tokens for h in got] == [e[1] for e in expected]
        assert [h.log_prob for h in got] == pytest.approx([e[0] for e in expected], abs=1e-6)


def test_beam_finds_the_best_output_with_a_modest_beam():
    batch, max_len = 4, 3
    step, select, state, table = toy_model(batch, max_len, seed=7)
    results = beam_search(step, select, state, batch, BOS, EOS, max_len, beam_size=4)
    for b in range(batch):
        best = exhaustive(table, b, max_len)[0]
        assert results[b][0].log_prob <= best[0] + 1e-9  # never better than the optimum
    # with these random tables a beam of 4 reaches the optimum for most sentences
    hits = sum(results[b][0].tokens == exhaustive(table, b, max_len)[0][1] for b in range(batch))
    assert hits >= 3


@pytest.mark.parametrize("seed", range(5))
def test_beam_one_equals_greedy(seed):
    batch, max_len = 6, 5
    step, select, state, _ = toy_model(batch, max_len, seed=seed)
    limits = torch.tensor([5, 1, 3, 5, 2, 4])
    greedy = greedy_search(step, state, batch, BOS, EOS, limits)
    beam = beam_search(step, select, state, batch, BOS, EOS, limits, beam_size=1)
    assert [h.tokens for h in greedy] == [hs[0].tokens for hs in beam]
    assert [h.log_prob for h in greedy] == pytest.approx([hs[0].log_prob for hs in beam])
    for h, limit in zip(greedy, limits.tolist(), strict=True):
        assert len(h.tokens) <= limit


def test_length_penalty_reranks_finished_hypotheses():
    batch, max_len = 2, 3
    step, select, state, _ = toy_model(batch, max_len, seed=3)
    plain = beam_search(step, select, state, batch, BOS, EOS, max_len, beam_size=8, n_best=8)
    longer = beam_search(step, select, state, batch, BOS, EOS, max_len, beam_size=8, n_best=8,
                         alpha=2.0)  # fmt: skip
    for p, q in zip(plain, longer, strict=True):
        assert {tuple(h.tokens) for h in p} == {tuple(h.tokens) for h in q}
        assert [h.score for h in q] == sorted((h.score for h in q), reverse=True)
    assert length_penalty(torch.tensor([1]), 0.0).item() == 1.0
    with pytest.raises(ValueError, match="n_best"):
        beam_search(step, select, state, batch, BOS, EOS, max_len, beam_size=2, n_best=3)


@pytest.mark.parametrize("method", ["additive", "dot", "general"])
def test_attention_weights_sum_to_one_and_ignore_padding(method):
    torch.manual_seed(0)
    attention = Attention(8, 8, method=method, hidden_size=5)
    keys = torch.randn(3, 6, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]]).bool()
    query = torch.randn(3, 8)
    context, weights = attention(query, keys, mask)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(3))
    assert (weights[~mask] == 0).all()
    noisy = keys.clone()
    noisy[~mask] = 1e3 * torch.randn(int((~mask).sum()), 8)  # padding content must not matter
    context2, weights2 = attention(query, noisy, mask)
    torch.testing.assert_close(context2, context)
    torch.testing.assert_close(weights2, weights)
    torch.testing.assert_close(context[2], keys[2, 0])  # one real token: all weight on it


def test_dot_attention_needs_equal_sizes():
    with pytest.raises(ValueError, match="equal sizes"):
        Attention(8, 6, method="dot")


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sampling_draws_from_the_tempered_distribution_and_stops_at_eos(temperature):
    """Frequencies of 6,000 one-token draws within 0.03 of softmax(log p / T); a row
    ends at ``eos``, which it leaves out, or after ``max_len`` tokens."""
    log_p = torch.tensor([[0.5, 0.3, 0.2]]).log()  # token 0 is eos in the second part

    def step(token: torch.Tensor, state: int) -> tuple[torch.Tensor, int]:
        return log_p, state + 1

    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(3)
    for _ in range(6000):
        (token,) = sample(step, 0, 1, -1, 1, temperature, generator)
        counts[token] += 1
    want = (log_p[0] / temperature).softmax(-1)
    assert torch.allclose(counts / counts.sum(), want, atol=0.03)
    lengths = [len(sample(step, 0, 1, 0, 50, temperature, generator)) for _ in range(300)]
    assert max(lengths) < 50 and 0 in lengths  # eos ends rows, and is never returned
    assert len(sample(step, 0, 1, -1, 7, temperature, generator)) == 7
