"""Greedy and batched beam search, and sampling, apart from the model that they drive.

A model enters only through two functions (``forced_decode`` needs only the first):

- ``step(tokens, state) -> (log_probs, state)``: the previous token of each row
  (rows,) and the decoder state in, next-token log-probabilities (rows, vocab) and
  the new state out;
- ``select(state, index) -> state``: the state's rows picked by ``index`` (rows,),
  used to expand each sentence to ``beam_size`` rows and to follow the beams.

Each sentence generates at most ``max_len`` tokens (an int, or one per sentence);
a hypothesis ends when it emits ``eos`` (which counts as a generated token) or
reaches its limit. Returned token lists exclude ``bos`` and ``eos``.

``forced_decode`` feeds given tokens instead (teacher forcing; scheduled sampling
swaps in some of the model's own predictions), and keeps autograd: training and
attention maps run the decoder through it rather than through loops of their own.
``sample`` draws one row's tokens from the step function's distribution (a language
model's generation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

StepFn = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]
SelectFn = Callable[[Any, torch.Tensor], Any]


@dataclass
class Hypothesis:
    """A finished output: tokens (without bos/eos), log-probability, ranking score."""

    tokens: list[int]
    log_prob: float
    score: float


def _limits(max_len: int | torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    if isinstance(max_len, int):
        return torch.full((batch_size,), max_len, dtype=torch.long, device=device)
    return max_len.to(device=device, dtype=torch.long)


def forced_decode(
    step: StepFn,
    state: Any,
    tokens: torch.Tensor,
    choose: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Each step's output for the given inputs: step t is fed ``tokens[:, t]`` (batch,
    time), or with ``choose`` the first step ``tokens[:, 0]`` and step t + 1
    ``choose(output_t, tokens[:, t + 1])`` (e.g. the model's own prediction instead, at
    random: scheduled sampling). Returns the outputs stacked (batch, time, ...). Unlike
    the searches it records autograd, for training."""
    outputs = []
    prev = tokens[:, 0]
    for t in range(tokens.size(1)):
        out, state = step(prev, state)  # (batch, ...)
        outputs.append(out)
        if t + 1 < tokens.size(1):
            prev = tokens[:, t + 1] if choose is None else choose(out, tokens[:, t + 1])
    return torch.stack(outputs, dim=1)


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT's ((5 + length) / 6) ** alpha; 1 when alpha is 0."""
    return ((5.0 + lengths.to(torch.float64)) / 6.0) ** alpha


@torch.no_grad()
def greedy_search(
    step: StepFn, state: Any, batch_size: int, bos: int, eos: int,
    max_len: int | torch.Tensor, device: torch.device | str = "cpu",
) -> list[Hypothesis]:  # fmt: skip
    """The most probable next token at every step, one hypothesis per sentence."""
    limits = _limits(max_len, batch_size, torch.device(device))
    tokens = torch.full((batch_size,), bos, dtype=torch.long, device=limits.device)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=limits.device)
    log_prob = torch.zeros(batch_size, dtype=torch.float64, device=limits.device)
    out: list[list[int]] = [[] for _ in range(batch_size)]
    for t in range(int(limits.max()) if batch_size else 0):
        log_probs, state = step(tokens, state)  # (batch, vocab)
        best, tokens = log_probs.max(dim=-1)  # (batch,)
        log_prob += torch.where(finished, 0.0, best.to(torch.float64))
        for i in (~finished).nonzero().flatten().tolist():
            if tokens[i] != eos:
                out[i].append(int(tokens[i]))
        finished |= (tokens == eos) | (t + 1 >= limits)
        if finished.all():
            break
    return [Hypothesis(o, float(lp), float(lp)) for o, lp in zip(out, log_prob, strict=True)]


@torch.no_grad()
def beam_search(
    step: StepFn,
    select: SelectFn,
    state: Any,
    batch_size: int,
    bos: int,
    eos: int,
    max_len: int | torch.Tensor,
    beam_size: int = 5,
    alpha: float = 0.0,
    n_best: int = 1,
    device: torch.device | str = "cpu",
) -> list[list[Hypothesis]]:
    """Batched beam search; per sentence the ``n_best`` hypotheses, best first.

    Beams are ranked by log-probability while searching; the finished hypotheses
    are ranked by log-probability / ``length_penalty(length, alpha)`` (``length``
    counts the generated tokens, eos included). With ``beam_size`` 1 this is greedy
    search.
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}), got {n_best}")
    k, dev = beam_size, torch.device(device)
    limits = _limits(max_len, batch_size, dev).repeat_interleave(k)  # (batch * k,)
    state = select(state, torch.arange(batch_size, device=dev).repeat_interleave(k))
    tokens = torch.full((batch_size * k,), bos, dtype=torch.long, device=dev)
    scores = torch.full((batch_size, k), float("-inf"), dtype=torch.float64, device=dev)
    scores[:, 0] = 0.0  # one live beam per sentence to start
    finished = torch.zeros(batch_size * k, dtype=torch.bool, device=dev)
    lengths = torch.zeros(batch_size * k, dtype=torch.long, device=dev)
    offsets = (torch.arange(batch_size, device=dev) * k).unsqueeze(1)  # (batch, 1)
    history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for _ in range(int(limits.max()) if batch_size else 0):
        log_probs, state = step(tokens, state)  # (batch * k, vocab)
        vocab = log_probs.size(-1)
        log_probs = log_probs.to(torch.float64)
        # A finished beam continues once, at no cost, so that it keeps its place.
        log_probs = log_probs.masked_fill(finished.unsqueeze(1), float("-inf"))
        log_probs[finished, eos] = 0.0
        candidates = (scores.view(-1, 1) + log_probs).view(batch_size, k * vocab)
        scores, index = candidates.topk(k, dim=1)  # (batch, k)
        parents = (index // vocab + offsets).view(-1)  # rows of the previous step
        tokens = (index % vocab).view(-1)
        state = select(state, parents)
        was_finished = finished[parents]
        lengths = lengths[parents] + (~was_finished).long()
        finished = was_finished | (tokens == eos) | (lengths >= limits)
        history.append((tokens, parents, was_finished))
        if finished.all():
            break
    return _backtrack(history, scores, lengths, batch_size, k, eos, alpha, n_best)


def _backtrack(
    history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    scores: torch.Tensor,
    lengths: torch.Tensor,
    batch_size: int,
    k: int,
    eos: int,
    alpha: float,
    n_best: int,
) -> list[list[Hypothesis]]:
    flat = scores.view(-1)
    ranked = (flat / length_penalty(lengths, alpha)).tolist()
    steps = [(t.tolist(), p.tolist(), w.tolist()) for t, p, w in history]
    results: list[list[Hypothesis]] = []
    for b in range(batch_size):
        hyps: list[Hypothesis] = []
        for row in range(b * k, (b + 1) * k):
            if flat[row] == float("-inf"):  # fewer live hypotheses than beams
                continue
            out, r = [], row
            for tokens, parents, was_finished in reversed(steps):
                if not was_finished[r] and tokens[r] != eos:
                    out.append(tokens[r])
                r = parents[r]
            hyps.append(Hypothesis(out[::-1], float(flat[row]), ranked[row]))
        hyps.sort(key=lambda h: -h.score)
        results.append(hyps[:n_best])
    return results


@torch.no_grad()
def sample(
    step: Any, state: Any, first: int, eos: int, max_len: int, temperature: float,
    generator: torch.Generator,
) -> list[int]:  # fmt: skip
    """Ancestral sampling through a step function (``seqnlp.nn.search``'s ``step``): one
    row, the next token drawn from softmax(log-probabilities / ``temperature``) each
    time, ending after ``max_len`` tokens or at ``eos`` (left out of the result)."""
    token = torch.tensor([first], device=generator.device)
    out: list[int] = []
    for _ in range(max_len):
        log_probs, state = step(token, state)  # (1, tokens)
        probs = (log_probs / temperature).softmax(dim=-1)
        token = torch.multinomial(probs, 1, generator=generator)[:, 0]  # (1,)
        if int(token) == eos:
            break
        out.append(int(token))
    return out
