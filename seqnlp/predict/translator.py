"""Translation prediction with torch: source sentences in, translations (and n-best
lists, attention maps) out. Records, options and scores: ``TranslationRecords``."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from seqnlp.data.translation import TranslationCodec, collate_translation
from seqnlp.models.translator import TranslatorNetwork, max_target_lengths
from seqnlp.predict.base import Record
from seqnlp.predict.torch_base import TorchPredictor
from seqnlp.predict.translation_records import TranslationRecords


class TranslationPredictor(TranslationRecords, TorchPredictor):
    """Translates raw source sentences with a torch network (records, options and
    formats: ``TranslationRecords``).

    Sources are never cut. A batch holds at most ``max_tokens`` padded source pieces
    (sentences x the longest), so that one long source does not pad a whole batch to
    its length; a longer source is translated alone.

    Args:
        network, codec, batch_size, parallel_batches: as ``Predictor``.
        beam_size: 1 for greedy search, else beam search.
        n_best: translations per source (at most ``beam_size``).
        length_penalty: GNMT length-penalty alpha of beam search.
        max_tokens: padded source pieces per batch (at most).
        max_length_ratio, max_length_offset: the length limit (the model's, from its
            checkpoint).
    """

    network: TranslatorNetwork
    codec: TranslationCodec

    def __init__(
        self, network: TranslatorNetwork, codec: TranslationCodec, batch_size: int = 64,
        parallel_batches: int = 1, beam_size: int = 5, n_best: int = 1,
        length_penalty: float = 0.0, max_tokens: int = 8192, max_length_ratio: float = 1.5,
        max_length_offset: int = 10,
    ) -> None:  # fmt: skip
        super().__init__(network, codec, batch_size, parallel_batches)
        self.init_translation_options(beam_size, n_best, length_penalty, max_tokens,
                                      max_length_ratio, max_length_offset)  # fmt: skip

    def max_lengths(self, src_lengths: torch.Tensor) -> torch.Tensor:
        """The most target pieces per sentence (batch,), for source lengths (batch,)."""
        return max_target_lengths(src_lengths, self.max_length_ratio, self.max_length_offset)

    @torch.inference_mode()
    def predict_batch(self, items: Sequence[str]) -> list[Record]:
        codec = self.codec
        real = [i for i, t in enumerate(items) if t.strip()]
        if not real:
            return self.records(items, [], [], [])
        batch = collate_translation([{"source_ids": codec.encode_source(items[i])} for i in real],
                                    codec.target.bos_id, codec.target.eos_id)  # fmt: skip
        batch = self.to_device(batch)
        limits = self.max_lengths(batch.src_lengths)
        state = self.network.encode(batch.src_ids, batch.src_lengths)
        found = self.network.translate(
            state, codec.target.bos_id, codec.target.eos_id, limits, self.beam_size,
            self.n_best, self.length_penalty,
        )  # fmt: skip
        return self.records(items, real, found, limits.tolist())

    @torch.inference_mode()
    def attention(self, source: str, target: str | None = None) -> Record:
        """Attention of one pair: ``{"source_pieces", "target_pieces", "translation",
        "weights"}``, the weights a (target pieces + ``</s>``) x (source pieces +
        ``</s>``) list of rows. Without ``target`` the model translates greedily and its
        output is used."""
        codec = self.codec
        if not source.strip():
            raise ValueError("attention needs a non-empty source sentence")
        src_ids = codec.encode_source(source)
        batch = self.to_device(collate_translation([{"source_ids": src_ids}],
                                                   codec.target.bos_id, codec.target.eos_id))
        state = self.network.encode(batch.src_ids, batch.src_lengths)
        forced = codec.encode_target(target) if target is not None else None
        limit = int(self.max_lengths(batch.src_lengths)[0])
        out, weights = self.network.attention_map(
            state, codec.target.bos_id, codec.target.eos_id, limit, forced
        )
        pieces = [codec.source.id_to_piece(i) for i in src_ids]
        tgt_pieces = [codec.target.id_to_piece(i) for i in out] + ["</s>"]
        return {"source_pieces": pieces, "target_pieces": tgt_pieces[: len(weights)],
                "translation": codec.decode_target(out), "weights": weights.tolist()}  # fmt: skip
