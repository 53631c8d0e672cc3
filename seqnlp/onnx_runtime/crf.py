"""The linear-chain CRF's inference in NumPy: batched Viterbi, k-best Viterbi, the
log-partition and forward-backward marginals, over emissions from an ONNX graph.

The same recursions as ``seqnlp.nn.crf.LinearChainCRF`` (pytorch-crf's parameters:
``start`` (tags,), ``transitions`` (from, to), ``end`` (tags,)): Viterbi and k-best in
float32 as torch runs them, the forward-backward in float64 (rescaled probabilities,
or log space: torch's float32 marginals are off by up to 1e-3 on 140-token sentences).
Sequences are given by their ``lengths`` (batch,), each >= 1; padded steps never
change a score.
"""

from __future__ import annotations

import numpy as np


class NumpyCRF:
    """A CRF's scores and its inference over right-padded emissions (batch, time, tags).

    Args:
        start: (tags,) scores of starting in each tag.
        transitions: (from, to) scores of each tag pair.
        end: (tags,) scores of ending in each tag.
    """

    def __init__(
        self, start: np.ndarray | list, transitions: np.ndarray | list, end: np.ndarray | list
    ) -> None:
        self.start = np.asarray(start, dtype=np.float32)
        self.transitions = np.asarray(transitions, dtype=np.float32)
        self.end = np.asarray(end, dtype=np.float32)
        tags = self.start.shape[0]
        if self.transitions.shape != (tags, tags) or self.end.shape != (tags,):
            raise ValueError(f"CRF scores of mismatched shapes: start {self.start.shape}, "
                             f"transitions {self.transitions.shape}, end {self.end.shape}")
        self._start64 = self.start.astype(np.float64)
        self._trans64 = self.transitions.astype(np.float64)
        self._end64 = self.end.astype(np.float64)

    @property
    def num_tags(self) -> int:
        return self.start.shape[0]

    def decode(self, emissions: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
        """Viterbi paths, one list of ``lengths[b]`` tag ids per sequence.

        emissions: (batch, time, tags); lengths: (batch,). The recursion keeps each
        step's scores (batch, tags), not its (batch, tags) back-pointers: a max over
        the (batch, from, to) candidates is fast in NumPy and an argmax over their
        middle axis is not; the backtrace finds each best previous tag again from the
        kept scores, one (batch, tags) argmax a step (the same float32 sums, so the
        same choice)."""
        emissions = emissions.astype(np.float32, copy=False)
        batch, time, tags = emissions.shape
        keep = np.arange(time)[None, :] < lengths[:, None]  # (batch, time)
        scores = np.empty((time, batch, tags), dtype=np.float32)
        score = scores[0] = self.start + emissions[:, 0]  # (batch, tags)
        for t in range(1, time):
            best = (score[:, :, None] + self.transitions).max(axis=1)  # (batch, to)
            score = scores[t] = np.where(keep[:, t, None], best + emissions[:, t], score)
        tag = (score + self.end).argmax(axis=1)  # (batch,) each sequence's last tag
        path = np.empty((batch, time), dtype=np.intp)
        path[:, time - 1] = tag
        into = self.transitions.T  # (to, from)
        for t in range(time - 2, -1, -1):  # padded steps keep the last tag until the end
            previous = (scores[t] + into[tag]).argmax(axis=1)  # (batch,)
            tag = np.where(t < lengths - 1, previous, tag)
            path[:, t] = tag
        return [row[:n] for row, n in zip(path.tolist(), lengths.tolist(), strict=True)]

    def nbest(
        self, emissions: np.ndarray, lengths: np.ndarray, n: int
    ) -> list[list[tuple[list[int], float]]]:
        """The ``n`` highest-scoring paths per sequence, best first (k-best Viterbi), as
        ``(tag ids, unnormalised score)``; fewer when a sequence has fewer paths.

        emissions: (batch, time, tags); lengths: (batch,)."""
        emissions = emissions.astype(np.float32, copy=False)
        batch, time, tags = emissions.shape
        neg_inf = np.finfo(np.float32).min
        keep = np.arange(time)[None, :] < lengths[:, None]  # (batch, time)
        # score[b, j, r]: the r-th best score of a path ending in tag j.
        score = np.full((batch, tags, n), neg_inf, dtype=np.float32)
        score[:, :, 0] = self.start + emissions[:, 0]
        stay = np.arange(tags)[:, None] * n + np.arange(n)  # (tags, n): a padded step
        history = []  # each (batch, tags, n): index into (from tag, rank)
        for t in range(1, time):
            cand = score[:, :, :, None] + self.transitions[None, :, None, :]  # (b, from, r, to)
            cand = cand.transpose(0, 3, 1, 2).reshape(batch, tags, tags * n)  # (b, to, from*r)
            index = np.argsort(-cand, axis=2, kind="stable")[:, :, :n]  # (batch, to, n)
            best = np.take_along_axis(cand, index, axis=2)
            step = keep[:, t, None, None]
            score = np.where(step, best + emissions[:, t, :, None], score)
            history.append(np.where(step, index, stay))
        final = (score + self.end[None, :, None]).reshape(batch, tags * n)
        order = np.argsort(-final, axis=1, kind="stable")[:, :n]  # (batch, n)
        top = np.take_along_axis(final, order, axis=1)
        results: list[list[tuple[list[int], float]]] = []
        for b in range(batch):
            paths: list[tuple[list[int], float]] = []
            for r in range(n):
                if top[b, r] <= neg_inf / 2:  # fewer than n distinct paths
                    break
                flat = int(order[b, r])
                path = [flat // n]
                for t in range(time - 1, 0, -1):
                    flat = int(history[t - 1][b, flat // n, flat % n])
                    if keep[b, t]:
                        path.append(flat // n)
                paths.append((path[::-1], float(top[b, r])))
            results.append(paths)
        return results

    def forward_scores(self, emissions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """alpha (time, batch, tags), float64: the log-sum of the scores of every path
        prefix ending in each tag at each step; padded steps repeat the last real one."""
        em = emissions.astype(np.float64)
        batch, time, tags = em.shape
        keep = (np.arange(time)[None, :] < lengths[:, None]).T[:, :, None]  # (time, batch, 1)
        alphas = np.empty((time, batch, tags))
        alpha = self._start64 + em[:, 0]
        alphas[0] = alpha
        for t in range(1, time):
            step = _logsumexp(alpha[:, :, None] + self._trans64, axis=1) + em[:, t]
            alpha = np.where(keep[t], step, alpha)
            alphas[t] = alpha
        return alphas

    def backward_scores(self, emissions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """beta (time, batch, tags), float64: the log-sum of the scores of every
        continuation from each tag at each step to the end; ``end`` at each sequence's
        last real step and after it."""
        em = emissions.astype(np.float64)
        batch, time, tags = em.shape
        inside = (np.arange(time)[:, None] < (lengths - 1)[None, :])[:, :, None]  # (t, b, 1)
        betas = np.empty((time, batch, tags))
        beta = np.broadcast_to(self._end64, (batch, tags))
        betas[time - 1] = beta
        for t in range(time - 2, -1, -1):
            step = _logsumexp(self._trans64 + (em[:, t + 1] + beta)[:, None, :], axis=2)
            beta = np.where(inside[t], step, self._end64)
            betas[t] = beta
        return betas

    def log_partition(self, emissions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """log Z (batch,), float64."""
        return _logsumexp(self.forward_scores(emissions, lengths)[-1] + self._end64, axis=1)

    def marginals(self, emissions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Posterior p(tag_t = k | sentence) (batch, time, tags), float64, zero at padding.

        Forward-backward in probability space, each step's vector rescaled to sum 1:
        one (batch, tags) x (tags, tags) product a step, where log space exponentiates
        (batch, tags, tags) values twice a step (10-20x slower). The scales cancel in
        ``alpha_t * beta_t`` normalised over the tags. Should a step underflow to zero
        (scores hundreds apart), the batch is computed in log space instead."""
        with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
            probs = self._scaled_marginals(emissions.astype(np.float64), lengths)
        return self.log_marginals(emissions, lengths) if probs is None else probs

    def _scaled_marginals(self, em: np.ndarray, lengths: np.ndarray) -> np.ndarray | None:
        """``marginals`` by rescaled probabilities; None where a step underflowed."""
        batch, time, tags = em.shape
        keep = np.arange(time)[None, :] < lengths[:, None]  # (batch, time)
        inside = np.arange(time)[None, :] < (lengths - 1)[:, None]  # t before the last token
        pot = np.exp(em - em.max(axis=2, keepdims=True))  # (batch, time, tags), max 1
        trans = np.exp(self._trans64 - self._trans64.max())  # (from, to), max 1
        end = np.exp(self._end64 - self._end64.max())
        alphas = np.empty((time, batch, tags))
        alpha = np.exp(self._start64 - self._start64.max()) * pot[:, 0]
        alpha /= alpha.sum(axis=1, keepdims=True)
        alphas[0] = alpha
        for t in range(1, time):
            step = (alpha @ trans) * pot[:, t]  # (batch, tags)
            step /= step.sum(axis=1, keepdims=True)
            alpha = np.where(keep[:, t, None], step, alpha)
            alphas[t] = alpha
        betas = np.empty((time, batch, tags))
        beta = np.broadcast_to(end / end.sum(), (batch, tags))
        betas[time - 1] = beta
        for t in range(time - 2, -1, -1):
            step = (pot[:, t + 1] * beta) @ trans.T  # (batch, tags)
            step /= step.sum(axis=1, keepdims=True)
            beta = np.where(inside[:, t, None], step, end / end.sum())
            betas[t] = beta
        joint = alphas * betas  # (time, batch, tags), each step up to a scale
        total = joint.sum(axis=2, keepdims=True)
        if not (np.isfinite(joint).all() and (total[keep.T] > 0).all()):
            return None
        probs = np.where(keep.T[:, :, None], joint / np.where(total > 0, total, 1.0), 0.0)
        return probs.transpose(1, 0, 2)

    def log_marginals(self, emissions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``marginals`` in log space (``forward_scores``, ``backward_scores``): slower,
        safe whatever the scores."""
        alphas = self.forward_scores(emissions, lengths)
        betas = self.backward_scores(emissions, lengths)
        log_z = _logsumexp(alphas[-1] + self._end64, axis=1)  # (batch,)
        time = alphas.shape[0]
        keep = (np.arange(time)[:, None] < lengths[None, :])[:, :, None]  # (time, batch, 1)
        probs = np.where(keep, np.exp(alphas + betas - log_z[None, :, None]), 0.0)
        return probs.transpose(1, 0, 2)


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    """log(sum(exp(x))) along ``axis``, shifted by the maximum (finite inputs)."""
    top = x.max(axis=axis, keepdims=True)
    return np.log(np.exp(x - top).sum(axis=axis)) + np.squeeze(top, axis=axis)
