"""Translation prediction: source sentences in, translations (and n-best lists,
attention maps) out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from seqnlp.data.parallel_readers import ParallelFormat, read_parallel
from seqnlp.data.sources import parse_source
from seqnlp.data.translation import TranslationCodec, collate_translation, resolve_parallel
from seqnlp.metrics import translation_scores
from seqnlp.models.translator import TranslatorNetwork, max_target_lengths
from seqnlp.predict.base import Predictor, Record

log = logging.getLogger(__name__)


class TranslationPredictor(Predictor):
    """Translates raw source sentences.

    Each record is ``{"source", "translation"}``, plus with ``n_best`` > 1
    ``"n_best"``: ``{"translation", "log_prob", "score"}`` best first (``score`` is
    the length-penalised ranking score). An empty line gives an empty translation.

    Sources are never cut. A batch holds at most ``max_tokens`` padded source pieces
    (sentences x the longest), so that one long source does not pad a whole batch to
    its length; a longer source is translated alone. A translation that reaches the
    length limit (``max_length_ratio`` x source pieces + ``max_length_offset``) without
    ending is kept and logged as a warning, with the start of its source.

    Args:
        network, codec, batch_size, parallel_batches: as ``Predictor``.
        beam_size: 1 for greedy search, else beam search.
        n_best: translations per source (at most ``beam_size``).
        length_penalty: GNMT length-penalty alpha of beam search.
        max_tokens: padded source pieces per batch (at most).
        max_length_ratio, max_length_offset: the length limit (the model's, from its
            checkpoint).
    """

    task = "translation"
    options = ("beam_size", "n_best", "length_penalty", "max_tokens")
    text_formats = ("text",)
    network: TranslatorNetwork
    codec: TranslationCodec

    def __init__(
        self, network: TranslatorNetwork, codec: TranslationCodec, batch_size: int = 64,
        parallel_batches: int = 1, beam_size: int = 5, n_best: int = 1,
        length_penalty: float = 0.0, max_tokens: int = 8192, max_length_ratio: float = 1.5,
        max_length_offset: int = 10,
    ) -> None:  # fmt: skip
        super().__init__(network, codec, batch_size, parallel_batches)
        if beam_size < 1:
            raise ValueError(f"beam_size must be at least 1 (1: greedy search), got {beam_size}")
        if not 1 <= n_best <= beam_size:
            raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}), got {n_best}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        self.beam_size = beam_size
        self.n_best = n_best
        self.length_penalty = length_penalty
        self.max_tokens = max_tokens
        self.max_length_ratio = max_length_ratio
        self.max_length_offset = max_length_offset

    @property
    def default_format(self) -> str:
        """One translation per line, or JSON lines for n-best lists."""
        return "jsonl" if self.n_best > 1 else "text"

    def length(self, item: str) -> int:
        """Source pieces, ``</s>`` included."""
        return len(self.codec.encode_source(item))

    def max_lengths(self, src_lengths: torch.Tensor) -> torch.Tensor:
        """The most target pieces per sentence (batch,), for source lengths (batch,)."""
        return max_target_lengths(src_lengths, self.max_length_ratio, self.max_length_offset)

    @torch.inference_mode()
    def predict_batch(self, items: Sequence[str]) -> list[Record]:
        codec = self.codec
        records: list[Record] = [{"source": t, "translation": ""} for t in items]
        real = [i for i, t in enumerate(items) if t.strip()]
        if not real:
            return records
        batch = collate_translation([{"source_ids": codec.encode_source(items[i])} for i in real],
                                    codec.target.bos_id, codec.target.eos_id)  # fmt: skip
        batch = self.to_device(batch)
        limits = self.max_lengths(batch.src_lengths)
        state = self.network.encode(batch.src_ids, batch.src_lengths)
        found = self.network.translate(
            state, codec.target.bos_id, codec.target.eos_id, limits, self.beam_size,
            self.n_best, self.length_penalty,
        )  # fmt: skip
        for i, hyps, limit in zip(real, found, limits.tolist(), strict=True):
            records[i]["translation"] = codec.decode_target(hyps[0].tokens)
            if len(hyps[0].tokens) >= limit:
                log.warning("translation stopped at the length limit of %d pieces (max_length_ratio"
                            " x source pieces + max_length_offset) without ending, may be cut; "
                            "source: %.80r", limit, items[i])  # fmt: skip
            if self.n_best > 1:
                records[i]["n_best"] = [
                    {"translation": codec.decode_target(h.tokens),
                     "log_prob": round(h.log_prob, 4), "score": round(h.score, 4)}
                    for h in hyps
                ]  # fmt: skip
        return records

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

    def format_record(self, record: Record, fmt: str) -> str:
        """``text``: the translation alone, one line per input line."""
        if fmt != "text":
            return super().format_record(record, fmt)
        return record["translation"].replace("\n", " ") + "\n"

    def read_labelled(
        self, source: str, fmt: ParallelFormat = "auto", src_lang: str | None = None,
        tgt_lang: str | None = None, source_field: str = "source", target_field: str = "target",
        encoding: str = "utf-8",
    ) -> tuple[list[str], list[str]]:  # fmt: skip
        """Sources and reference translations of a parallel source: a prefix's
        line-aligned ``.SRC_LANG`` / ``.TGT_LANG`` files, a TSV or JSONL file, or a named
        dataset's split (``multi30k:test``) in the direction the languages give."""
        parsed = parse_source(source)
        if parsed.kind == "hub":
            raise ValueError(f"{source}: evaluation reads files and named datasets; save the "
                             f"hub split to a file first")  # fmt: skip
        one_file = parsed.kind == "file" and source.endswith((".tsv", ".jsonl"))
        if fmt in ("auto", "files") and not one_file and not (src_lang and tgt_lang):
            raise ValueError("a translator is scored on PREFIX.SRC and PREFIX.TGT files: "
                             "give --src_lang and --tgt_lang")  # fmt: skip
        path, _ = resolve_parallel(parsed, src_lang, tgt_lang, fmt, checksum=False)
        pairs = read_parallel(path, src_lang, tgt_lang, fmt, source_field, target_field, encoding)
        return [p["source"] for p in pairs], [p["target"] for p in pairs]

    def score(self, gold: list[str], records: list[Record]) -> dict[str, Any]:
        """Corpus BLEU and chrF (sacreBLEU, detokenised) with their signatures."""
        scores = translation_scores([r["translation"] for r in records], gold)
        return {"pairs": float(len(gold)), "beam_size": float(self.beam_size), **scores}
