"""BiLSTM-CRF sequence tagger (Lample et al. 2016) as a Lightning system."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from seqnlp.data.tagging import TaggingBatch, TaggingVocab
from seqnlp.metrics import entity_scores
from seqnlp.nn.crf import LinearChainCRF
from seqnlp.nn.embeddings import CharCNN, CharLSTM, load_word_vectors
from seqnlp.nn.encoder import RNNEncoder
from seqnlp.tasks.base import System


class Tagger(System):
    """Word embeddings + character features -> stacked BiLSTM -> emissions -> CRF.

    Args:
        vocab: word, character and tag vocabularies (linked from the DataModule).
        word_dim: word embedding size.
        pretrained_embeddings: a word2vec/GloVe text file of ``word_dim``-sized
            vectors to initialise the word embeddings (read when training starts).
        freeze_embeddings: keep the word embeddings fixed.
        char_encoder: ``lstm`` (bidirectional), ``cnn`` or ``none``.
        char_dim: character embedding size.
        char_hidden: per-direction LSTM size, or CNN filter count.
        char_kernel_size: CNN kernel width.
        hidden_size: per-direction size of the word-level LSTM.
        num_layers: stacked word-level LSTM layers.
        dropout: dropout on the token features and on the LSTM outputs.
        word_dropout: probability of replacing a word by ``<unk>`` in training,
            so that the model learns to rely on characters for rare words.
        head: ``crf`` (Viterbi decoding) or ``softmax`` (independent argmax).
    """

    task = "tagging"
    vocab_type = TaggingVocab
    main_metrics = ("precision", "recall", "f1")
    training_only_hparams = ("pretrained_embeddings",)

    def __init__(
        self,
        vocab: TaggingVocab,
        word_dim: int = 100,
        pretrained_embeddings: str | None = None,
        freeze_embeddings: bool = False,
        char_encoder: Literal["lstm", "cnn", "none"] = "lstm",
        char_dim: int = 25,
        char_hidden: int = 25,
        char_kernel_size: int = 3,
        hidden_size: int = 100,
        num_layers: int = 1,
        dropout: float = 0.5,
        word_dropout: float = 0.0,
        head: Literal["crf", "softmax"] = "crf",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["vocab"])
        self.vocab = vocab
        self.word_embedding = nn.Embedding(
            len(vocab.words), word_dim, padding_idx=vocab.words.pad_id
        )
        self.word_embedding.weight.requires_grad_(not freeze_embeddings)
        self.char_features: nn.Module | None
        if char_encoder == "lstm":
            self.char_features = CharLSTM(len(vocab.chars), char_dim, char_hidden)
        elif char_encoder == "cnn":
            self.char_features = CharCNN(len(vocab.chars), char_dim, char_hidden, char_kernel_size)
        else:
            self.char_features = None
        features = word_dim + (self.char_features.output_size if self.char_features else 0)
        self.dropout = nn.Dropout(dropout)
        self.encoder = RNNEncoder(features, hidden_size, num_layers, "lstm", True, dropout)
        self.emission = nn.Linear(self.encoder.output_size, len(vocab.tags))
        self.crf = LinearChainCRF(len(vocab.tags)) if head == "crf" else None

    # -- network ----------------------------------------------------------------
    def emissions(self, batch: TaggingBatch) -> torch.Tensor:
        """Tag scores (batch, time, tags) for a padded batch."""
        word_ids = batch.word_ids
        if self.training and self.hparams.word_dropout > 0:
            drop = torch.rand(word_ids.shape, device=word_ids.device) < self.hparams.word_dropout
            word_ids = word_ids.masked_fill(drop & batch.mask, self.vocab.words.unk_id)
        x = self.word_embedding(word_ids)  # (batch, time, word_dim)
        if self.char_features is not None:
            x = torch.cat([x, self.word_char_features(batch.char_ids, batch.char_rows)], dim=-1)
        h, _ = self.encoder(self.dropout(x), batch.lengths)  # (batch, time, 2 * hidden)
        return self.emission(self.dropout(h))  # (batch, time, tags)

    def word_char_features(
        self, char_ids: torch.Tensor, char_rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Character features (batch, time, features) of char ids (batch, time, chars),
        or of distinct words' char ids (words, chars) with each position's row
        ``char_rows`` (batch, time).

        Out of training, each distinct word of the batch is encoded once and its
        features gathered back: a batch repeats its frequent words (and padding)
        many times, and a word's features depend on its characters alone. In
        training every occurrence is encoded, each with its own dropout."""
        assert self.char_features is not None
        if char_rows is not None:  # already distinct (prediction batches)
            return self.char_features(char_ids.unsqueeze(0))[0][char_rows]
        if self.training:
            return self.char_features(char_ids)
        batch, time, chars = char_ids.shape
        distinct, inverse = torch.unique(char_ids.view(-1, chars), dim=0, return_inverse=True)
        features = self.char_features(distinct.unsqueeze(0))[0]  # (distinct, features)
        return features[inverse].view(batch, time, -1)

    def loss(self, emissions: torch.Tensor, batch: TaggingBatch) -> torch.Tensor:
        assert batch.tags is not None
        if self.crf is not None:
            return self.crf.neg_log_likelihood(emissions, batch.tags, batch.mask)
        return nn.functional.cross_entropy(emissions[batch.mask], batch.tags[batch.mask])

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Best tag ids per sentence (Viterbi with the CRF head), each of its real length."""
        if self.crf is not None:
            return self.crf.decode(emissions, mask)
        best = emissions.argmax(dim=-1)  # (batch, time)
        return [row[m].tolist() for row, m in zip(best, mask, strict=True)]

    def nbest(
        self, emissions: torch.Tensor, mask: torch.Tensor, n: int
    ) -> list[list[tuple[list[int], float]]]:
        """The ``n`` most probable tag-id paths per sentence with their log-probabilities."""
        if self.crf is None:
            raise ValueError("n-best paths need the CRF head (this tagger has a softmax head)")
        log_z = self.crf.log_partition(emissions, mask).tolist()  # (batch,)
        return [
            [(path, score - z) for path, score in paths]
            for paths, z in zip(self.crf.nbest(emissions, mask, n), log_z, strict=True)
        ]

    def tag_probabilities(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-token tag posteriors (batch, time, tags): CRF marginals or softmax."""
        if self.crf is not None:
            return self.crf.marginals(emissions, mask)
        return emissions.softmax(dim=-1) * mask.unsqueeze(-1)

    # -- training ---------------------------------------------------------------
    def setup(self, stage: str) -> None:
        path = self.hparams.pretrained_embeddings
        if stage == "fit" and path:
            with torch.no_grad():
                load_word_vectors(path, self.vocab.words, self.word_embedding.weight)

    def training_loss(self, batch: TaggingBatch) -> torch.Tensor:
        return self.loss(self.emissions(batch), batch)

    def evaluate_batch(
        self, batch: TaggingBatch
    ) -> tuple[torch.Tensor, list[tuple[list[str], list[str]]]]:
        """Loss and (gold, predicted) IOB2 tags per sentence."""
        emissions = self.emissions(batch)
        assert batch.tags is not None
        paths = self.decode(emissions, batch.mask)
        outputs = [
            (self.vocab.decode_tags(gold[:n].tolist()), self.vocab.decode_tags(path))
            for path, gold, n in zip(paths, batch.tags, batch.lengths, strict=True)
        ]
        return self.loss(emissions, batch), outputs

    def corpus_scores(
        self, outputs: list[tuple[list[str], list[str]]], stage: str
    ) -> dict[str, float]:
        return entity_scores([g for g, _ in outputs], [p for _, p in outputs])
