"""Linear-chain CRF: pytorch-crf's parameters; the likelihood with a forward-backward
gradient, batched Viterbi, k-best paths and posterior marginals."""

from __future__ import annotations

import torch
from torch import nn
from torchcrf import CRF

#: up to this many rows, Viterbi keeps back-pointers and composes them (``decode``)
SMALL_BATCH = 16


class LinearChainCRF(nn.Module):
    """A batch-first, masked linear-chain CRF over ``num_tags`` tags.

    Keeps ``torchcrf.CRF`` for the parameters (and so its checkpoints' keys). The
    likelihood, Viterbi, k-best Viterbi and forward-backward marginals (per-token tag
    posteriors) are this module's: pytorch-crf's likelihood recorded every step of
    its two Python loops over time for autograd, which took 8-27% of a tagger
    training step; here the gold path's score is a few batched gathers, and the
    log-partition's gradient comes from one backward recursion and batched
    marginals (``_LogPartition``). Masks must be left-aligned (real tokens first)
    with at least one real token per sequence.
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        self.crf = CRF(num_tags, batch_first=True)

    def neg_log_likelihood(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Mean over the batch of -log p(tags | emissions).

        emissions: (batch, time, tags); tags: (batch, time); mask: (batch, time) bool.
        """
        return (self.log_partition(emissions, mask) - self.score(emissions, tags, mask)).mean()

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Viterbi paths, one list of length ``mask[i].sum()`` per sequence.

        emissions: (batch, time, tags); mask: (batch, time) bool, left-aligned.
        pytorch-crf's recursion with the same float32 sums, so the same paths (ties go
        to the first tag, as ``max`` and ``argmax`` both choose), in fewer and cheaper
        operations a step: prediction spends its Viterbi time in per-operation
        overhead, one time step after the other. Scores are kept as (tags, batch), so
        that the best previous tag is a reduction over the outer axis, and the
        recursion runs past each row's end (its final scores are read back at its
        last step). Up to ``SMALL_BATCH`` rows the recursion keeps its back-pointers
        and the backtrace composes them in log2(time) batched rounds (pointer
        jumping); for more rows, where ``max`` with its indices costs about three
        times ``amax``, it keeps the scores alone and the backtrace finds each step's
        best previous tag again for the chosen tags, one (tags, batch) ``argmax`` a
        step. (docs/benchmarks.md, "2026-12-04, night".)
        """
        crf = self.crf
        batch, time, _ = emissions.shape
        last = mask.sum(dim=1) - 1  # (batch,)
        e = emissions.permute(1, 2, 0).contiguous()  # (time, tags, batch)
        trans = crf.transitions.unsqueeze(2)  # (from, to, 1)
        score = crf.start_transitions.unsqueeze(1) + e[0]  # (tags, batch)
        scores, pointers = [score], []  # pointers[t][j, b]: the best tag at t before j at t + 1
        small = batch <= SMALL_BATCH
        for t in range(1, time):
            candidates = score.unsqueeze(1) + trans  # (from, to, batch)
            if small:
                best, index = candidates.max(dim=0)
                pointers.append(index)
            else:
                best = candidates.amax(dim=0)
            score = best + e[t]  # (to, batch)
            scores.append(score)
        columns = torch.arange(batch, device=emissions.device)
        final = torch.stack(scores)[last, :, columns]  # (batch, tags): each at its last step
        tag = (final + crf.end_transitions).argmax(dim=1)  # (batch,)
        if time == 1:
            return [[t] for t in tag.tolist()]
        if small:
            rows = _backtrace(torch.stack(pointers).transpose(1, 2), last, tag).t().tolist()
        else:
            path = [tag]
            for t in range(time - 2, -1, -1):  # a row keeps its last tag past its end
                previous = (scores[t] + crf.transitions[:, tag]).argmax(dim=0)  # (batch,)
                tag = torch.where(last > t, previous, tag)
                path.append(tag)
            rows = torch.stack(path[::-1], dim=1).tolist()  # (batch, time)
        return [row[: n + 1] for row, n in zip(rows, last.tolist(), strict=True)]

    @torch.no_grad()
    def nbest(
        self, emissions: torch.Tensor, mask: torch.Tensor, n: int
    ) -> list[list[tuple[list[int], float]]]:
        """The ``n`` highest-scoring paths per sequence, best first (k-best Viterbi).

        Returns, per sequence, up to ``n`` pairs ``(path, score)`` with unnormalised
        path scores (fewer when the sequence has fewer distinct paths).
        emissions: (batch, time, tags); mask: (batch, time) bool, left-aligned.
        """
        crf = self.crf
        batch, time, tags = emissions.shape
        device = emissions.device
        neg_inf = torch.finfo(emissions.dtype).min
        # score[b, j, r]: the r-th best score of a path ending in tag j at step t.
        score = emissions.new_full((batch, tags, n), neg_inf)
        score[:, :, 0] = crf.start_transitions + emissions[:, 0]
        # At a padded step every (tag, rank) keeps its own entry.
        stay = torch.arange(tags, device=device)[:, None] * n + torch.arange(n, device=device)
        history: list[torch.Tensor] = []  # each (batch, tags, n): index into (from tag, rank)
        for t in range(1, time):
            cand = score.unsqueeze(3) + crf.transitions[None, :, None, :]  # (batch, from, rank, to)
            cand = cand.permute(0, 3, 1, 2).reshape(batch, tags, tags * n)  # (batch, to, from*rank)
            best, index = cand.topk(n, dim=2)  # (batch, to, n)
            keep = mask[:, t].view(batch, 1, 1)
            score = torch.where(keep, best + emissions[:, t].unsqueeze(2), score)
            history.append(torch.where(keep, index, stay.expand(batch, -1, -1)))
        final = (score + crf.end_transitions[None, :, None]).reshape(batch, tags * n)
        top, top_index = final.topk(n, dim=1)  # (batch, n), n <= tags * n always
        results: list[list[tuple[list[int], float]]] = []
        for b in range(batch):
            paths: list[tuple[list[int], float]] = []
            for r in range(n):
                if top[b, r] <= neg_inf / 2:  # fewer than n distinct paths
                    break
                flat = int(top_index[b, r])
                path = [flat // n]
                for t in range(time - 1, 0, -1):
                    flat = int(history[t - 1][b, flat // n, flat % n])
                    if mask[b, t]:
                        path.append(flat // n)
                paths.append((path[::-1], float(top[b, r])))
            results.append(paths)
        return results

    def score(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Unnormalised path scores (batch,) of ``tags`` (batch, time); what ``tags``
        holds at padded positions does not matter."""
        crf = self.crf
        emissions = emissions.to(crf.transitions.dtype)
        real = mask.to(emissions.dtype)  # (batch, time)
        score = crf.start_transitions[tags[:, 0]]  # (batch,)
        score = score + (emissions.gather(2, tags.unsqueeze(2)).squeeze(2) * real).sum(1)
        score = score + (crf.transitions[tags[:, :-1], tags[:, 1:]] * real[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)  # (batch,)
        return score + crf.end_transitions[last]

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z (batch,): the forward algorithm; its gradient by forward-backward."""
        crf = self.crf
        return _LogPartition.apply(
            emissions.to(crf.transitions.dtype), mask,
            crf.start_transitions, crf.transitions, crf.end_transitions,
        )  # fmt: skip

    @torch.no_grad()
    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Posterior p(tag_t = k | sentence): (batch, time, tags), zero at padding, in
        the CRF's dtype (``scaled_marginals``; in log space where that underflows, as
        the NumPy CRF of ``seqnlp.onnx_runtime`` does)."""
        crf = self.crf
        start, trans, end = crf.start_transitions, crf.transitions, crf.end_transitions
        probs = scaled_marginals(emissions, mask, start, trans, end)
        if probs is None:  # a step underflowed: log space, slower but safe
            emissions = emissions.to(trans.dtype)
            alphas = forward_scores(emissions, mask, start, trans)
            betas = backward_scores(emissions, mask, trans, end)
            log_z = torch.logsumexp(alphas[-1] + end, dim=1)  # (batch,)
            probs = unary_marginals(alphas, betas, log_z, mask).transpose(0, 1)
        return probs.to(trans.dtype)


def _backtrace(pointers: torch.Tensor, last: torch.Tensor, tag: torch.Tensor) -> torch.Tensor:
    """The tags (time, batch) of the best paths, from the back-pointers (time - 1, batch,
    tags) (``pointers[t][b, j]``: the best tag at t before tag j at t + 1), each row's
    last step (batch,) and its tag there (batch,). Pointers at and after a row's last
    step become the identity, so its tag stays put until ``time - 1``; then suffix
    compositions, doubling their span each round: ``f[t]`` takes the tag at ``time - 1``
    to the tag at t after ceil(log2(time - 1)) rounds."""
    steps, batch, tags = pointers.shape
    positions = torch.arange(steps, device=pointers.device).view(steps, 1, 1)
    identity = torch.arange(tags, device=pointers.device).expand(steps, batch, tags)
    f = torch.where(positions < last.view(1, batch, 1), pointers, identity)
    span = 1
    while span < steps:
        # f[t] <- f[t] o f[t + span] where t + span < steps; the rest reach the end already
        f = torch.cat([f[: steps - span].gather(2, f[span:]), f[steps - span :]])
        span *= 2
    path = f.gather(2, tag.view(1, batch, 1).expand(steps, batch, 1)).squeeze(2)
    return torch.cat([path, tag.unsqueeze(0)])


def forward_scores(
    emissions: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, trans: torch.Tensor
) -> torch.Tensor:
    """alpha (time, batch, tags): log-sum of the scores of every path prefix ending in
    each tag at each step; padded steps repeat the last real step's.

    emissions: (batch, time, tags); mask: (batch, time); start: (tags,);
    trans: (from, to).
    """
    batch, time, tags = emissions.shape
    alphas = emissions.new_empty(time, batch, tags)
    alpha = start + emissions[:, 0]
    alphas[0] = alpha
    keep = mask.t().unsqueeze(2)  # (time, batch, 1)
    for t in range(1, time):
        step = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1).add_(emissions[:, t])
        alpha = torch.where(keep[t], step, alpha)
        alphas[t] = alpha
    return alphas


def backward_scores(
    emissions: torch.Tensor, mask: torch.Tensor, trans: torch.Tensor, end: torch.Tensor
) -> torch.Tensor:
    """beta (time, batch, tags): log-sum of the scores of every continuation from each
    tag at each step to the end (the end transition in, the step's own emission out);
    ``end`` at each sequence's last real step and after it."""
    batch, time, tags = emissions.shape
    betas = emissions.new_empty(time, batch, tags)
    beta = end.expand(batch, tags)
    betas[time - 1] = beta
    lengths = mask.sum(dim=1)  # (batch,)
    steps = torch.arange(time, device=mask.device).unsqueeze(1)
    inside = (steps < (lengths - 1).unsqueeze(0)).unsqueeze(2)  # (time, batch, 1)
    for t in range(time - 2, -1, -1):
        step = torch.logsumexp(trans + (emissions[:, t + 1] + beta).unsqueeze(1), dim=2)
        beta = torch.where(inside[t], step, end)
        betas[t] = beta
    return betas


def scaled_marginals(
    emissions: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, trans: torch.Tensor,
    end: torch.Tensor,
) -> torch.Tensor | None:  # fmt: skip
    """p(y_t = k | sentence) (batch, time, tags), zero at padding: forward-backward in
    probability space (float64), each step's vectors rescaled to sum to one.

    For prediction, where a batch's time steps cost Python and per-operation overhead
    more than arithmetic: ``forward_scores`` and ``backward_scores`` take a
    ``logsumexp`` of a (batch, tags, tags) tensor per step and run one after the
    other; here both directions are one recursion, four operations a step. The
    backward one runs over each sequence reversed within its length, so that it
    starts at step 0 for all of them, as the forward one does:

        forward   a_0 = start,  a_k = (a_k-1 * p_k-1) @ T      p_k = exp(emission_k)
        backward  b_0 = end,    b_k = (b_k-1 * q_k-1) @ T^T    q: p reversed in length

    so that p(y_t = k) is proportional to ``a_t * p_t * b_(length - 1 - t)``; the
    per-step scales cancel in that normalisation. The exponentials are taken once,
    each shifted by its maximum (emissions per position, transitions overall), so
    nothing overflows; in float64 a step underflows only where scores differ by more
    than about 700, and then this returns None (the caller computes in log space).

    emissions: (batch, time, tags); mask: (batch, time), left-aligned; start, end:
    (tags,); trans: (from, to).
    """
    batch, time, tags = emissions.shape
    e = emissions.double()
    p = (e - e.amax(dim=2, keepdim=True)).exp()  # (batch, time, tags) in (0, 1]
    t = trans.double()
    t = (t - t.max()).exp()  # (from, to)
    pair = torch.stack([t, t.t()])  # (2, tags, tags): forwards, backwards
    lengths = mask.sum(dim=1, keepdim=True)  # (batch, 1)
    steps = torch.arange(time, device=mask.device)
    flip = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (batch, time)
    flip = flip.unsqueeze(2).expand(batch, time, tags)
    both = torch.stack([p, p.gather(1, flip)], dim=1).transpose(0, 2)  # (time, 2, batch, tags)
    x = torch.stack([(start.double() - start.max()).exp().expand(batch, tags),
                     (end.double() - end.max()).exp().expand(batch, tags)])  # fmt: skip
    x = x / x.sum(dim=2, keepdim=True)  # (2, batch, tags)
    xs = [x]
    for k in range(1, time):
        x = torch.bmm(x * both[k - 1], pair)
        x = x / x.sum(dim=2, keepdim=True)
        xs.append(x)
    forwards, backwards = torch.stack(xs, dim=2)  # each (batch, time, tags)
    joint = forwards * p * backwards.gather(1, flip)
    total = joint.sum(dim=2, keepdim=True)
    real = mask.unsqueeze(2)
    if not bool((torch.isfinite(total) & (total > 0) | ~real).all()):
        return None
    return (joint / total).masked_fill(~real, 0.0)


def unary_marginals(
    alphas: torch.Tensor, betas: torch.Tensor, log_z: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """p(y_t = k) (time, batch, tags) from ``forward_scores``, ``backward_scores`` and
    log Z (batch,); exactly zero at padding (masked before the exponential)."""
    keep = mask.t().unsqueeze(2)  # (time, batch, 1)
    return (alphas + betas - log_z.view(1, -1, 1)).masked_fill(~keep, float("-inf")).exp()


class _LogPartition(torch.autograd.Function):
    """log Z (batch,) of a CRF, with the gradient from forward-backward: d log Z / d
    emission[t, k] is the marginal p(y_t = k), d log Z / d transition[i, j] the sum
    over steps of p(y_t-1 = i, y_t = j), and likewise for the start and end
    transitions. The forward pass records nothing for autograd."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        emissions: torch.Tensor,  # (batch, time, tags)
        mask: torch.Tensor,  # (batch, time) bool
        start: torch.Tensor,  # (tags,)
        trans: torch.Tensor,  # (from, to)
        end: torch.Tensor,  # (tags,)
    ) -> torch.Tensor:
        alphas = forward_scores(emissions, mask, start, trans)
        log_z = torch.logsumexp(alphas[-1] + end, dim=1)
        ctx.save_for_backward(emissions, mask, trans, end, alphas, log_z)
        return log_z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        emissions, mask, trans, end, alphas, log_z = ctx.saved_tensors  # type: ignore[attr-defined]
        batch, time, _ = emissions.shape
        betas = backward_scores(emissions, mask, trans, end)
        keep = mask.t().unsqueeze(2)  # (time, batch, 1)
        g = grad.view(1, batch, 1)
        z = log_z.view(1, batch, 1)
        unary = unary_marginals(alphas, betas, log_z, mask) * g  # (time, batch, tags)
        grad_end = ((alphas[-1] + end - log_z.unsqueeze(1)).exp() * grad.unsqueeze(1)).sum(0)
        grad_trans = torch.zeros_like(trans)
        if time > 1:  # pair[t-1, b, i, j]: log p(y_t-1 = i, y_t = j), masked where t is padding
            after = (emissions[:, 1:].transpose(0, 1) + betas[1:]).unsqueeze(2)  # (t-1, b, 1, to)
            pair = alphas[:-1].unsqueeze(3) + trans + after - z.unsqueeze(3)
            pair = pair.masked_fill(~keep[1:].unsqueeze(3), float("-inf"))
            grad_trans = (pair.exp_() * g.unsqueeze(3)).sum((0, 1))
        return unary.transpose(0, 1), None, unary[0].sum(0), grad_trans, grad_end
