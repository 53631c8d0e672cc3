"""Tagging prediction: sentences in, IOB2 tags, entities and their confidences out."""

from __future__ import annotations

import torch

from seqnlp.data.batching import pad_2d
from seqnlp.data.tagging import TaggingBatch, TaggingCodec, collate_distinct_tokens
from seqnlp.data.vectors import VectorsFormat
from seqnlp.models.tagger import TaggerNetwork
from seqnlp.predict.char_cache import CharFeatureCache
from seqnlp.predict.tagging_records import Sentence, TaggedBatch, TaggingRecords
from seqnlp.predict.torch_base import TorchPredictor
from seqnlp.predict.vector_extension import VocabularyExtension

__all__ = ["Sentence", "TaggingPredictor"]


class TaggingPredictor(TaggingRecords, TorchPredictor):
    """Tags raw sentences (strings), pre-tokenized ones or token lists, or documents.

    A string is split into tokens by the model's pretokenizer and normalised as its
    training tokens were (``codec.raw``), unless ``pretokenized`` (then it is split on
    white space); a token list is taken as it is. Each record is ``{"tokens",
    "token_offsets", "tags", "entities"}``: ``token_offsets`` gives each token's
    ``[start_char, end_char]`` in the input (end exclusive; for a token list, in the
    tokens joined by single spaces), tags are IOB2 and each entity is ``{"type",
    "start", "end", "start_char", "end_char", "text", "confidence"}`` (``end``
    exclusive; ``text`` is the input's characters from ``start_char`` to
    ``end_char``). The confidence is the lowest posterior probability, under the
    model, of the predicted tag on any of the entity's tokens (CRF marginals, or the
    softmax).
    With ``n_best`` > 1 a record also has ``"n_best"``: up to that many distinct
    ``{"tags", "probability"}``, from the CRF's k-best paths in order (the first is
    the Viterbi path); BIOES paths that read as the same IOB2 tags are merged and
    their probabilities summed.

    With ``documents`` each string is a document: it is split into sentences, each is
    tagged, and the record is ``{"text", "sentences", "entities"}``, each sentence a
    record as above plus its ``start_char`` and ``end_char``, every offset into the
    document, and ``entities`` all of them in order.

    The records are built by ``TaggingRecords`` (torch-free, shared with the ONNX
    Runtime tagger); this class adds the torch network's call.

    Args:
        network, codec, batch_size, parallel_batches: as ``Predictor``.
        confidence: give each entity its confidence (CRF forward-backward).
        n_best: also the ``n_best`` most probable tag sequences (CRF head).
        pretokenized: strings are tokens separated by white space already.
        documents: each string is a document of sentences.
        token_cache_size: distinct tokens whose ids, and character features, are kept
            (each cache emptied when full; ``CharFeatureCache``).
        vectors, vectors_format: word vectors (any ``data.vectors`` format) that give
            the words of the text that the model lacks rows of their own before they
            are tagged (``VocabularyExtension``; a whole fastText model gives every
            word one); ``vectors_max_words`` words at most.
    """

    network: TaggerNetwork
    codec: TaggingCodec
    options = (*TaggingRecords.options, "vectors")

    def __init__(
        self, network: TaggerNetwork, codec: TaggingCodec, batch_size: int = 64,
        parallel_batches: int = 1, confidence: bool = True, n_best: int = 1,
        pretokenized: bool = False, documents: bool = False, token_cache_size: int = 200_000,
        vectors: str | None = None, vectors_format: VectorsFormat = "auto",
        vectors_max_words: int = 1_000_000,
    ) -> None:  # fmt: skip
        super().__init__(network, codec, batch_size, parallel_batches)
        self._set_tagging_options(confidence, n_best, pretokenized, documents,
                                  token_cache_size, crf=network.crf is not None)  # fmt: skip
        chars = network.char_features
        self._char_cache = CharFeatureCache(chars, token_cache_size) if chars else None
        self.extension = (VocabularyExtension(vectors, vectors_format, vectors_max_words)
                          if vectors else None)  # fmt: skip

    def before_batches(self, sentences: list[Sentence]) -> None:
        """With ``vectors``: rows for the sentences' words that the model lacks."""
        if self.extension is None:
            return
        tokens = (t for s in sentences for t in s.model_tokens)
        embedding = self.network.word_embedding
        scale = self.network.pretrained_scale
        self.codec, added = self.extension.extend(self.codec, embedding, tokens, scale)
        if added:
            self._encoded.clear()  # it holds <unk> for some of them

    def length(self, item: Sentence) -> int:
        """The sorting length: tokens, or, where character LMs read each sentence's
        text (most of the time then), its characters with one space per token."""
        if self.network.char_lms is None:
            return super().length(item)
        return sum(map(len, item.model_tokens)) + len(item.model_tokens)

    @torch.inference_mode()
    def tag_batch(self, sentences: list[list[str]]) -> TaggedBatch:
        batch: TaggingBatch = self.to_device(
            collate_distinct_tokens(sentences, self.encode_token)
        )
        network = self.network
        vectors = None
        if self._char_cache is not None:
            assert batch.char_tokens is not None
            vectors = self._char_cache.vectors(batch.char_tokens, batch.char_ids)
        emissions = network(batch.word_ids, batch.char_ids, batch.lengths, batch.char_rows,
                            vectors)  # fmt: skip
        paths = network.decode(emissions, batch.mask)  # emissions: (batch, time, tags)
        path_probs: list[list[float]] | None = None  # each path's tag posteriors (batch, time)
        if self.confidence:
            probs = network.tag_probabilities(emissions, batch.mask)  # (batch, time, tags)
            chosen = pad_2d(paths).to(probs.device)  # (batch, time)
            path_probs = probs.gather(2, chosen.unsqueeze(-1)).squeeze(-1).tolist()
        # Ask for extra paths: several BIOES paths can read as the same IOB2 tags.
        nbest = network.nbest(emissions, batch.mask, 3 * self.n_best) if self.n_best > 1 else None
        return TaggedBatch(paths, path_probs, nbest)
