"""Streaming classification: one token at a time, in constant memory, with the label
probabilities of the text so far after each (``ClassificationPredictor.stream()``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from seqnlp.models.classifier import StreamState
from seqnlp.predict.base import Record

if TYPE_CHECKING:
    from seqnlp.predict.classifier import ClassificationPredictor


class ClassificationStream:
    """Feeds tokens to a unidirectional classifier one at a time.

    ``feed(token)`` normalises the token as the training text was (as ``predict``
    does with ``pretokenized``), runs one step of the encoder from the state the
    previous tokens left and updates the pooling's running values, and returns the
    record of the text so far: ``{"text", "label", "probability", "probabilities"}``,
    the record ``predict`` gives for the tokens fed, joined by spaces (to float
    rounding). Memory does not grow with the text: only the state is kept, not the
    tokens' states. ``reset()`` starts a new text.

    Raises ``ValueError`` for a bidirectional model, or one with character language
    models.
    """

    def __init__(self, predictor: ClassificationPredictor) -> None:
        if predictor.network.char_lms is not None:
            raise ValueError(
                "streaming cannot feed a classifier with character language models: they "
                "read the whole text first (a backward one from its end); predict whole "
                "texts instead"
            )
        encoder = predictor.network.encoder
        if encoder.bidirectional:
            raise ValueError(
                "streaming needs a unidirectional classifier: this one's encoder is "
                "bidirectional, so it reads the whole text before its first output "
                "(train with model.bidirectional false)"
            )
        self.predictor = predictor
        self.reset()

    def reset(self) -> None:
        """Forget the text fed so far."""
        self._state: StreamState | None = None
        self._text: list[str] = []
        self._record: Record = self.predictor.empty_record("")

    @torch.inference_mode()
    def feed(self, token: str) -> Record:
        """One more token (a string without white space); the record of the text so far.
        A token that normalises to nothing changes nothing."""
        if not token or token.split() != [token]:
            raise ValueError(f"feed takes one token without white space, got {token!r}")
        predictor = self.predictor
        ids = predictor.codec.encode_pretokenized(token)  # a word, or its pieces
        self._text.append(token)
        if not ids:
            self._record = {**self._record, "text": " ".join(self._text)}
            return self._record
        logits = None
        for token_id in ids:
            tensor = torch.tensor([token_id], device=predictor.device)  # (1,)
            logits, self._state = predictor.network.stream_step(tensor, self._state)
        assert logits is not None
        probabilities = logits.softmax(dim=-1)[0].tolist()  # (classes,)
        self._record = predictor.record(" ".join(self._text), probabilities)
        return self._record
