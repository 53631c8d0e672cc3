"""Language-model prediction: texts scored, text generated one token at a time, and a
stream that gives the next-token distribution after every token fed to it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from seqnlp.data.lm_codec import LanguageModelCodec
from seqnlp.data.text_streams import TextSource, paragraphs
from seqnlp.metrics import stream_scores
from seqnlp.models.language_model import LanguageModelNetwork
from seqnlp.nn.encoder import State
from seqnlp.nn.search import greedy_search, sample
from seqnlp.predict.base import Record
from seqnlp.predict.torch_base import TorchPredictor


class LanguageModelPredictor(TorchPredictor):
    """Scores and generates text with a language model.

    Every text is read as a paragraph of the training text was: from the initial state,
    after a boundary, in the model's direction (a backward model reads it from its
    end). ``predict`` gives one record per text, ``{"text", "predictions", "nll_total",
    and "bpc" (character models) or "ppl"}``: the text's symbols and the boundary after
    it predicted one by one (``predictions`` of them), ``nll_total`` their summed
    negative log-likelihood in nats. ``evaluate`` scores the lines of a text file so.
    """

    task = "language_model"
    network: LanguageModelNetwork
    codec: LanguageModelCodec

    def length(self, item: str) -> int:
        return len(item)

    def _context(self, text: str) -> list[int]:
        """The ids that the model reads for ``text``: the boundary, then the text."""
        return [self.codec.boundary_id, *self.codec.encode(text)]

    @torch.inference_mode()
    def predict_batch(self, items: Sequence[str]) -> list[Record]:
        rows = [[*self._context(t), self.codec.boundary_id] for t in items]
        longest = max(map(len, rows))
        ids = torch.zeros(len(rows), longest, dtype=torch.long)  # right-padded
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        ids = ids.to(self.device)
        lengths = torch.tensor([len(r) - 1 for r in rows], device=self.device)  # (batch,)
        scores, _ = self.network(ids[:, :-1])  # (batch, time, tokens)
        nll = torch.nn.functional.cross_entropy(
            scores.transpose(1, 2), ids[:, 1:], reduction="none"
        ).double()  # (batch, time)
        real = torch.arange(longest - 1, device=self.device) < lengths.unsqueeze(1)
        sums = nll.masked_fill(~real, 0.0).sum(dim=1).tolist()
        main = "bpc" if self.codec.level == "char" else "ppl"
        return [
            {"text": text, "predictions": n, "nll_total": total,
             main: stream_scores(total, n, self.codec.level)[main]}
            for text, total, n in zip(items, sums, lengths.tolist(), strict=True)
        ]  # fmt: skip

    def read_labelled(self, source: str, encoding: str = "utf-8") -> tuple[list[str], list[None]]:
        """The non-blank lines of a text file (``.txt``, ``.xz``, ``.gz``); no labels."""
        lines = list(paragraphs(TextSource.parse(source, encoding)))
        return lines, [None] * len(lines)

    def score(self, gold: list[Any], records: list[Record]) -> dict[str, Any]:
        """Over all lines: ``lines``, ``predictions``, ``nll`` per prediction and ``bpc``
        or ``ppl``."""
        total = math.fsum(r["nll_total"] for r in records)
        count = sum(r["predictions"] for r in records)
        return {"lines": len(records), **stream_scores(total, count, self.codec.level)}

    # -- generation --------------------------------------------------------------------
    def _step(self, tokens: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        """The search's step function: token ids (rows,) -> log-probabilities (rows,
        tokens) with the ids never generated (``<unk>``, padding) left out."""
        scores, state = self.network.step(tokens, state)  # (rows, tokens)
        scores[:, list(self.codec.never_generated)] = float("-inf")
        return scores.log_softmax(dim=-1), state

    def generate(
        self, prompt: str = "", max_length: int = 200, temperature: float = 1.0,
        seed: int | None = None, stop_at_boundary: bool = False,
    ) -> str:  # fmt: skip
        """The text that the model writes after ``prompt`` (before it, for a backward
        model), at most ``max_length`` tokens, one at a time with the state carried (the
        prompt is read at once first). ``temperature`` 0: the most probable token each
        time (greedy); else sampled from softmax(scores / temperature), reproducibly
        with ``seed``. ``stop_at_boundary``: end at the paragraph's end. Line breaks are
        the boundaries generated."""
        ids = self.generate_ids(prompt, max_length, temperature, seed, stop_at_boundary)
        return self.codec.decode(ids)

    @torch.inference_mode()
    def generate_ids(
        self, prompt: str = "", max_length: int = 200, temperature: float = 1.0,
        seed: int | None = None, stop_at_boundary: bool = False,
    ) -> list[int]:  # fmt: skip
        """``generate``'s token ids, in reading order."""
        if temperature < 0 or not math.isfinite(temperature):
            raise ValueError(f"temperature must be 0 (greedy) or positive, got {temperature}")
        if max_length < 1:
            raise ValueError(f"max_length must be at least 1, got {max_length}")
        context = self._context(prompt)
        state = None
        if len(context) > 1:
            _, state = self.network(torch.tensor([context[:-1]], device=self.device))
        eos = self.codec.boundary_id if stop_at_boundary else -1
        if temperature == 0:
            (found,) = greedy_search(self._step, state, 1, context[-1], eos, max_length,
                                     self.device)  # fmt: skip
            return found.tokens
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed) if seed is not None else generator.seed()
        return sample(self._step, state, context[-1], eos, max_length, temperature, generator)

    def join(self, prompt: str, generated: str) -> str:
        """The prompt and its generated text in writing order."""
        return generated + prompt if self.codec.direction == "backward" else prompt + generated

    # -- scoring as a stream -----------------------------------------------------------
    def stream(self, top_k: int | None = None) -> LanguageModelStream:
        """A stream that starts after a boundary (``LanguageModelStream``)."""
        return LanguageModelStream(self, top_k)

    @torch.inference_mode()
    def next_distribution(self, text: str, top_k: int | None = None) -> dict[str, float]:
        """The next-token distribution after ``text``, the whole text run at once: what
        a stream gives after being fed the text's symbols in reading order."""
        scores, _ = self.network(torch.tensor([self._context(text)], device=self.device))
        return self.distribution(scores[0, -1], top_k)

    def distribution(self, scores: torch.Tensor, top_k: int | None) -> dict[str, float]:
        """Scores (tokens,) as probabilities by symbol, most probable first (the ``top_k``
        most probable; all with None)."""
        probs = scores.float().softmax(dim=-1)
        values, ids = probs.topk(min(top_k or len(probs), len(probs)))
        return {self.codec.symbol(i): p for i, p in zip(ids.tolist(), values.tolist(), strict=True)}


class LanguageModelStream:
    """Text fed one symbol at a time (a character, word or piece, in the model's reading
    order: a backward model is fed the text from its end), in constant memory.

    ``feed(symbol)`` returns the next-token distribution after it, as a dict symbol ->
    probability, most probable first (the ``top_k`` most probable when given, else every
    symbol; the boundary is ``"\\n"`` for characters, ``<eos>`` for words, ``</s>`` for
    pieces). ``distribution()`` is the current one (before anything is fed: the
    distribution of a paragraph's first symbol); ``hidden`` the top layer's output
    after the last symbol fed (hidden,); ``reset()`` starts a new paragraph. The
    distributions are those that ``next_distribution`` gives for the text at once (to
    float rounding).
    """

    def __init__(self, predictor: LanguageModelPredictor, top_k: int | None = None) -> None:
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        self.predictor, self.top_k = predictor, top_k
        self.reset()

    def reset(self) -> None:
        """Start a new paragraph: forget what was fed so far."""
        self._state: State | None = None
        self.hidden = torch.empty(0)
        self._scores = self._advance(self.predictor.codec.boundary_id)

    @torch.inference_mode()
    def _advance(self, token: int) -> torch.Tensor:
        network = self.predictor.network
        ids = torch.tensor([token], device=self.predictor.device)
        outputs, self._state = network.step_hidden(ids, self._state)  # (1, hidden)
        self.hidden = outputs[0]
        return network.scores(outputs)[0]  # (tokens,)

    def feed(self, symbol: str) -> dict[str, float]:
        codec = self.predictor.codec
        if codec.level == "char" and len(symbol) != 1 and symbol != codec.symbol(0):
            raise ValueError(f"a character model is fed one character at a time, got {symbol!r}")
        (token,) = codec.encode_symbols([symbol.lower() if codec.lowercase else symbol])
        self._scores = self._advance(token)
        return self.distribution()

    def distribution(self) -> dict[str, float]:
        return self.predictor.distribution(self._scores, self.top_k)
