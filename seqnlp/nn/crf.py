"""Linear-chain CRF: pytorch-crf's parameters and likelihood; batched Viterbi, k-best
paths and posterior marginals."""

from __future__ import annotations

import torch
from torch import nn
from torchcrf import CRF


class LinearChainCRF(nn.Module):
    """A batch-first, masked linear-chain CRF over ``num_tags`` tags.

    Wraps ``torchcrf.CRF`` for the parameters and the negative log-likelihood, and
    adds a batched Viterbi, k-best Viterbi and forward-backward marginals (per-token
    tag posteriors). Masks must be left-aligned (real tokens first) with at least
    one real token per sequence.
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
        return -self.crf(emissions, tags, mask=mask, reduction="mean")

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Viterbi paths, one list of length ``mask[i].sum()`` per sequence.

        emissions: (batch, time, tags); mask: (batch, time) bool, left-aligned.
        pytorch-crf's recursion, with the backtrace batched over sentences (one
        gather per time step): its own backtrace indexes a tensor once per token in
        Python, which took more time than the recursion in tagger prediction.
        """
        crf = self.crf
        time = emissions.size(1)
        score = crf.start_transitions + emissions[:, 0]  # (batch, tags)
        history = []  # history[t][b, j]: the best tag at t before tag j at t + 1
        for t in range(1, time):
            best, index = (score.unsqueeze(2) + crf.transitions).max(dim=1)  # (batch, tags)
            score = torch.where(mask[:, t].unsqueeze(1), best + emissions[:, t], score)
            history.append(index)
        lengths = mask.sum(dim=1)  # (batch,)
        tag = (score + crf.end_transitions).argmax(dim=1)  # (batch,) the last real tag
        path = [tag]
        for t in range(time - 2, -1, -1):  # padded steps keep the last tag until the end
            previous = history[t].gather(1, tag.unsqueeze(1)).squeeze(1)
            tag = torch.where(t < lengths - 1, previous, tag)
            path.append(tag)
        rows = torch.stack(path[::-1], dim=1).tolist()  # (batch, time)
        return [row[:n] for row, n in zip(rows, lengths.tolist(), strict=True)]

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
        """Unnormalised path scores (batch,) of ``tags``."""
        return self.crf._compute_score(
            emissions.transpose(0, 1), tags.transpose(0, 1), mask.transpose(0, 1)
        )

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z (batch,)."""
        return self.crf._compute_normalizer(emissions.transpose(0, 1), mask.transpose(0, 1))

    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Posterior p(tag_t = k | sentence): (batch, time, tags), zero at padding."""
        crf = self.crf
        batch, time, _ = emissions.shape
        m = mask.unsqueeze(-1)  # (batch, time, 1)
        trans = crf.transitions  # (from, to)
        alpha = [crf.start_transitions + emissions[:, 0]]  # each (batch, tags)
        for t in range(1, time):
            step = torch.logsumexp(alpha[-1].unsqueeze(2) + trans, dim=1) + emissions[:, t]
            alpha.append(torch.where(m[:, t], step, alpha[-1]))
        # beta[t]: log-sum of the continuations from each tag at t to the end (end
        # transition included, emission at t excluded); only real positions are used.
        lengths = mask.sum(dim=1)  # (batch,)
        end_scores = crf.end_transitions.expand(batch, -1)
        beta: list[torch.Tensor] = [end_scores] * time
        for t in range(time - 2, -1, -1):
            step = (emissions[:, t + 1] + beta[t + 1]).unsqueeze(1)  # (batch, 1, to)
            cont = torch.logsumexp(trans + step, dim=2)  # (batch, from)
            beta[t] = torch.where((t < lengths - 1).unsqueeze(1), cont, end_scores)
        log_z = torch.logsumexp(alpha[-1] + crf.end_transitions, dim=1)  # (batch,)
        post = torch.stack([a + b for a, b in zip(alpha, beta, strict=True)], dim=1)
        post = (post - log_z[:, None, None]).exp()
        return post * m
