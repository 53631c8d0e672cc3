"""What every translation predictor shares, torch-free: its options, the records built
from the search's hypotheses, output formats, labelled data and scores.

``TranslationPredictor`` (torch, ``seqnlp.predict.translator``) and
``OnnxTranslationPredictor`` (ONNX Runtime, ``seqnlp.onnx_runtime.translator``) both
inherit ``TranslationRecords``, so that their records come from the same code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from seqnlp.data.parallel_readers import ParallelFormat
from seqnlp.predict.base import Record

log = logging.getLogger("seqnlp.predict.translator")


class Found(Protocol):
    """A finished search output: ``seqnlp.nn.search.Hypothesis`` or ``Hypothesis``."""

    tokens: list[int]
    log_prob: float
    score: float


@dataclass
class Hypothesis:
    """A finished output (torch-free twin of ``seqnlp.nn.search.Hypothesis``): tokens
    (without bos / eos), log-probability, ranking score."""

    tokens: list[int]
    log_prob: float
    score: float


def max_target_length(src_length: int, ratio: float, offset: int) -> int:
    """The most target pieces for a source of ``src_length`` pieces: ``ceil(ratio x
    src_length) + offset``, the product rounded to float32 as torch's
    ``max_target_lengths`` computes it (so both runtimes stop at the same length)."""
    import numpy as np

    return int(np.ceil(np.float32(src_length) * np.float32(ratio))) + offset


class TranslationRecords:
    """The translation half of a predictor (a mixin, before the runtime's base class).

    Each record is ``{"source", "translation"}``, plus with ``n_best`` > 1
    ``"n_best"``: ``{"translation", "log_prob", "score"}`` best first (``score`` is
    the length-penalised ranking score). An empty line gives an empty translation.
    A translation that reaches the length limit (``max_length_ratio`` x source pieces
    + ``max_length_offset``) without ending is kept and logged as a warning, with the
    start of its source.
    """

    task = "translation"
    options = ("beam_size", "n_best", "length_penalty", "max_tokens")
    text_formats = ("text",)
    codec: Any
    beam_size: int
    n_best: int
    length_penalty: float
    max_tokens: int
    max_length_ratio: float
    max_length_offset: int

    def init_translation_options(
        self, beam_size: int, n_best: int, length_penalty: float, max_tokens: int,
        max_length_ratio: float, max_length_offset: int,
    ) -> None:  # fmt: skip
        """Check and keep the translation options (called once, by ``__init__``)."""
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

    def max_length(self, src_length: int) -> int:
        """The most target pieces for a source of ``src_length`` pieces."""
        return max_target_length(src_length, self.max_length_ratio, self.max_length_offset)

    def records(
        self, items: Sequence[str], real: Sequence[int], found: Sequence[Sequence[Found]],
        limits: Sequence[int],
    ) -> list[Record]:  # fmt: skip
        """The records of a batch of sources ``items``: ``found[j]`` (the n-best
        hypotheses, best first) and ``limits[j]`` (its length limit) belong to
        ``items[real[j]]``; the other items are empty and get an empty translation."""
        codec = self.codec
        records: list[Record] = [{"source": t, "translation": ""} for t in items]
        for i, hyps, limit in zip(real, found, limits, strict=True):
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

    def format_record(self, record: Record, fmt: str) -> str:
        """``text``: the translation alone, one line per input line."""
        if fmt != "text":
            return super().format_record(record, fmt)  # type: ignore[misc]
        return record["translation"].replace("\n", " ") + "\n"

    def read_labelled(
        self, source: str, fmt: ParallelFormat = "auto", src_lang: str | None = None,
        tgt_lang: str | None = None, source_field: str = "source", target_field: str = "target",
        encoding: str = "utf-8",
    ) -> tuple[list[str], list[str]]:  # fmt: skip
        """Sources and reference translations of a parallel source: a prefix's
        line-aligned ``.SRC_LANG`` / ``.TGT_LANG`` files, a TSV or JSONL file, or a named
        dataset's split (``multi30k:test``) in the direction the languages give."""
        from seqnlp.data.parallel_readers import read_parallel
        from seqnlp.data.sources import parse_source

        parsed = parse_source(source)
        if parsed.kind == "hub":
            raise ValueError(f"{source}: evaluation reads files and named datasets; save the "
                             f"hub split to a file first")  # fmt: skip
        one_file = parsed.kind == "file" and source.endswith((".tsv", ".jsonl"))
        if fmt in ("auto", "files") and not one_file and not (src_lang and tgt_lang):
            raise ValueError("a translator is scored on PREFIX.SRC and PREFIX.TGT files: "
                             "give --src_lang and --tgt_lang")  # fmt: skip
        path = _parallel_path(parsed, src_lang, tgt_lang)
        pairs = read_parallel(path, src_lang, tgt_lang, fmt, source_field, target_field, encoding)
        return [p["source"] for p in pairs], [p["target"] for p in pairs]

    def score(self, gold: list[str], records: list[Record]) -> dict[str, Any]:
        """Corpus BLEU and chrF (sacreBLEU, detokenised) with their signatures."""
        from seqnlp.metrics import translation_scores

        scores = translation_scores([r["translation"] for r in records], gold)
        return {"pairs": float(len(gold)), "beam_size": float(self.beam_size), **scores}



def _parallel_path(source: Any, src_lang: str | None, tgt_lang: str | None) -> str:
    """The path ``read_parallel`` reads for a parsed file or named source: a named
    dataset's split is its two language files (verified against the catalog), read
    through their common prefix (``resolve_parallel`` without the cache key, torch-free)."""
    from seqnlp.data.catalog import CATALOG
    from seqnlp.data.sources import resolve_named

    if source.kind != "named":
        return source.spec
    paths = []
    for lang in (src_lang, tgt_lang):
        key = f"{source.split}.{lang}"
        if key not in CATALOG[source.name].splits:
            raise ValueError(f"named dataset {source.name!r} has no {lang!r} side")
        paths.append(resolve_named(source.name, key))
    return str(paths[0].with_suffix(""))
