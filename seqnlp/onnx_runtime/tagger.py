"""Tagging with ONNX Runtime: the tagger graph's emissions, the CRF in NumPy, and the
records of ``TaggingRecords`` (the torch tagger's own code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seqnlp.data.codecs import TaggingCodec
from seqnlp.onnx_runtime.base import OnnxPredictor, collate_distinct, inference_session
from seqnlp.onnx_runtime.crf import NumpyCRF
from seqnlp.predict.tagging_records import TaggedBatch, TaggingRecords

#: the most groups of similar length that a batch's distinct words are split into for
#: the character graph (ONNX Runtime runs each group to its longest word), and the
#: fewest words a group has.
CHAR_GROUPS = 3
GROUP_WORDS = 64


class OnnxTaggingPredictor(TaggingRecords, OnnxPredictor):
    """``TaggingPredictor``'s records (see it for what they hold and the options), from
    the exported tagger graphs run by ONNX Runtime.

    A batch's distinct words go through the character graph in up to ``CHAR_GROUPS``
    groups of similar length, each padded to its own longest word: ONNX Runtime runs
    an LSTM's every row to the longest one, and a batch's words are 1 to 40 characters
    long. (The torch tagger runs them all at once, as the graph would.)

    Args:
        graph: the tagger graph (``onnx/tagger.onnx`` or its int8 copy).
        codec, batch_size, threads: as ``OnnxPredictor``.
        crf: the CRF head's scores (``config.json``'s ``onnx.crf``: ``start``,
            ``transitions``, ``end``), or None for a softmax head.
        chars_graph: the character graph (``onnx/tagger.chars.onnx`` or its int8
            copy); None for a tagger without character features.
        confidence, n_best, pretokenized, documents, token_cache_size: as
            ``TaggingPredictor``.
    """

    codec: TaggingCodec

    def __init__(
        self, graph: str | Path, codec: TaggingCodec, crf: dict[str, Any] | None,
        batch_size: int = 64, threads: int | None = None,
        chars_graph: str | Path | None = None, confidence: bool = True,
        n_best: int = 1, pretokenized: bool = False, documents: bool = False,
        token_cache_size: int = 200_000,
    ) -> None:  # fmt: skip
        super().__init__(graph, codec, batch_size, threads)
        self.crf = None if crf is None else NumpyCRF(crf["start"], crf["transitions"], crf["end"])
        self.chars = None if chars_graph is None else inference_session(chars_graph)
        self._set_tagging_options(confidence, n_best, pretokenized, documents,
                                  token_cache_size, crf=self.crf is not None)  # fmt: skip

    def tag_batch(self, sentences: list[list[str]]) -> TaggedBatch:
        feeds = collate_distinct(sentences, self.encode_token)
        if self.chars is not None:
            feeds["char_features"] = self.char_features(feeds["char_ids"])
        emissions = self.run(feeds)[0]  # (batch, time, tags) float32
        lengths = feeds["lengths"]  # (batch,)
        crf = self.crf
        if crf is not None:
            paths = crf.decode(emissions, lengths)
        else:  # softmax head: each token's best tag
            best = emissions.argmax(axis=2).tolist()  # (batch, time)
            paths = [row[:n] for row, n in zip(best, lengths.tolist(), strict=True)]
        path_probs = None
        if self.confidence:
            probs = crf.marginals(emissions, lengths) if crf else _softmax(emissions)
            chosen = np.zeros(emissions.shape[:2], dtype=np.int64)  # (batch, time)
            for row, path in enumerate(paths):
                chosen[row, : len(path)] = path
            path_probs = np.take_along_axis(probs, chosen[:, :, None], axis=2)[:, :, 0].tolist()
        nbest = None
        if self.n_best > 1:  # extra paths: several BIOES paths can read as the same IOB2 tags
            assert crf is not None
            log_z = crf.log_partition(emissions, lengths).tolist()  # (batch,)
            nbest = [[(path, score - z) for path, score in paths_of]
                     for paths_of, z in zip(crf.nbest(emissions, lengths, 3 * self.n_best), log_z,
                                            strict=True)]  # fmt: skip
        return TaggedBatch(paths, path_probs, nbest)

    def char_features(self, char_ids: np.ndarray) -> np.ndarray:
        """Character features (words, features) of distinct words' char ids (words,
        chars), in groups of similar length (see the class)."""
        assert self.chars is not None
        groups = min(CHAR_GROUPS, len(char_ids) // GROUP_WORDS)
        if groups <= 1:
            return self.chars.run(None, {"char_ids": char_ids})[0]
        lengths = (char_ids != 0).sum(axis=1)  # (words,)
        order = np.argsort(lengths, kind="stable")
        parts = []
        for part in np.array_split(order, groups):  # each part's longest word is its last
            width = max(int(lengths[part[-1]]), 1)
            parts.append(self.chars.run(None, {"char_ids": char_ids[part, :width]})[0])
        features = np.empty((len(order), parts[0].shape[1]), dtype=parts[0].dtype)
        features[order] = np.concatenate(parts)  # (words, features)
        return features


def _softmax(emissions: np.ndarray) -> np.ndarray:
    """Per-token tag probabilities (batch, time, tags) of emissions (batch, time, tags)."""
    shifted = np.exp(emissions - emissions.max(axis=2, keepdims=True))
    return shifted / shifted.sum(axis=2, keepdims=True)
