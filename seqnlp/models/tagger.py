"""The BiLSTM-CRF tagging network (Lample et al. 2016): tensors in, tag scores out."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from seqnlp.nn.contextual import ContextualCharFeatures
from seqnlp.nn.crf import LinearChainCRF
from seqnlp.nn.dropout import DropoutMode, SequenceDropout
from seqnlp.nn.embeddings import CharCNN, CharLSTM, TrainingWordEmbedding, WordDropout
from seqnlp.nn.encoder import Cell, Init, RNNEncoder, lengths_mask


class TaggerNetwork(nn.Module):
    """Word embeddings + character features -> stacked BiLSTM (or another cell) ->
    emissions -> CRF.

    ``forward`` gives the tag scores (emissions); the CRF (or softmax) head's loss,
    decoding and posteriors are methods on them. No vocabularies inside: the sizes
    and special ids are given.

    Args:
        num_words, num_chars, num_tags: vocabulary sizes.
        word_dim: word embedding size.
        char_encoder: ``lstm`` (a bidirectional ``nn.LSTM``), ``recurrent`` (bidirectional,
            with ``cell`` and the recurrent options below), ``cnn`` or ``none``.
        char_dim: character embedding size.
        char_hidden: per-direction LSTM size, or CNN filter count.
        char_kernel_size: CNN kernel width.
        hidden_size: per-direction size of the word-level encoder.
        num_layers: stacked word-level layers.
        dropout: dropout on the token features, between layers and on the encoder's
            outputs.
        word_dropout: probability of replacing a word by ``unk_id`` in training.
        head: ``crf`` (Viterbi decoding) or ``softmax`` (independent argmax).
        freeze_embeddings: keep the word embeddings fixed.
        trainable_word_dim: with more than 0, a second, trainable word embedding of this
            size for the first ``trainable_words`` ids (the training words; later ids
            read ``<unk>``'s row), concatenated with ``word_embedding``. Meant for
            ``freeze_embeddings`` with pretrained vectors (``TrainingWordEmbedding``).
        trainable_words: the training words' count (default ``num_words``).
        pretrained_scale: the factor the pretrained vectors were multiplied by when
            training started (``model.pretrained_std``); vocabulary extension at
            prediction multiplies the rows it adds by it.
        pad_id, unk_id: the word vocabulary's padding and unknown ids.
        char_lm_specs: trained character language models whose states are word features
            (contextual string embeddings, Akbik et al. 2018), one dict each:
            ``network`` (``LanguageModelNetwork``'s arguments), ``backward`` (reads text
            reversed), ``space_id`` and ``boundary_id`` (its ids of " " and of the
            paragraph boundary). Their weights, and ``char_lms.char_maps`` (each LM's
            id of each tagger character), are this network's.
        char_lm_trainable: fine-tune the language models (default: frozen).
        cell, residual, layer_norm, dropout_mode, weight_drop, init, forget_bias,
            learn_initial_state: the recurrent options every task shares
            (``seqnlp.nn.encoder.RNNEncoder``; README "Recurrent cells and options").
    """

    def __init__(
        self,
        num_words: int,
        num_chars: int,
        num_tags: int,
        word_dim: int = 100,
        char_encoder: Literal["lstm", "recurrent", "cnn", "none"] = "lstm",
        char_dim: int = 25,
        char_hidden: int = 25,
        char_kernel_size: int = 3,
        hidden_size: int = 100,
        num_layers: int = 1,
        dropout: float = 0.5,
        word_dropout: float = 0.0,
        head: Literal["crf", "softmax"] = "crf",
        freeze_embeddings: bool = False,
        trainable_word_dim: int = 0,
        trainable_words: int | None = None,
        pretrained_scale: float = 1.0,
        pad_id: int = 0,
        unk_id: int = 1,
        cell: Cell = "lstm",
        residual: bool = False,
        layer_norm: bool = False,
        dropout_mode: DropoutMode = "standard",
        weight_drop: float = 0.0,
        init: Init = "default",
        forget_bias: float | None = None,
        learn_initial_state: bool = False,
        char_lm_specs: list[dict] | None = None,
        char_lm_trainable: bool = False,
    ) -> None:
        super().__init__()
        self.word_embedding = nn.Embedding(num_words, word_dim, padding_idx=pad_id)
        self.word_embedding.weight.requires_grad_(not freeze_embeddings)
        self.pretrained_scale = pretrained_scale
        self.trainable_embedding = (
            TrainingWordEmbedding(trainable_words or num_words, trainable_word_dim, pad_id, unk_id)
            if trainable_word_dim > 0 else None
        )  # fmt: skip
        self.char_features: CharLSTM | CharCNN | None
        options = {
            "init": init, "forget_bias": forget_bias, "weight_drop": weight_drop,
            "learn_initial_state": learn_initial_state,
        }  # fmt: skip
        if char_encoder == "lstm":
            self.char_features = CharLSTM(num_chars, char_dim, char_hidden)
        elif char_encoder == "recurrent":
            self.char_features = CharLSTM(num_chars, char_dim, char_hidden, cell, **options)
        elif char_encoder == "cnn":
            self.char_features = CharCNN(num_chars, char_dim, char_hidden, char_kernel_size)
        else:
            self.char_features = None
        features = word_dim + trainable_word_dim
        features += self.char_features.output_size if self.char_features else 0
        self.char_lms: ContextualCharFeatures | None = None
        if char_lm_specs:
            self.char_lms = ContextualCharFeatures.from_specs(
                char_lm_specs, num_chars, char_lm_trainable
            )
            features += self.char_lms.output_size
        self.dropout = SequenceDropout(dropout, dropout_mode)
        self.word_dropout = WordDropout(word_dropout, unk_id)
        self.encoder = RNNEncoder(
            features, hidden_size, num_layers, cell, True, dropout, residual=residual,
            layer_norm=layer_norm, dropout_mode=dropout_mode, **options,
        )  # fmt: skip
        self.emission = nn.Linear(self.encoder.output_size, num_tags)
        self.crf = LinearChainCRF(num_tags) if head == "crf" else None

    def forward(
        self,
        word_ids: torch.Tensor,
        char_ids: torch.Tensor,
        lengths: torch.Tensor,
        char_rows: torch.Tensor | None = None,
        char_vectors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Tag scores (batch, time, tags) of a padded batch.

        Args:
            word_ids: (batch, time) right-padded word ids.
            char_ids: (batch, time, chars) character ids of each position; or, with
                ``char_rows``, (words, chars): each distinct word once.
            lengths: (batch,) real lengths, each >= 1.
            char_rows: (batch, time) the row of ``char_ids`` of each position.
            char_vectors: with ``char_rows``, the character features of each row of
                ``char_ids`` (words, features) computed already (a prediction cache).
        """
        x = self.features(word_ids, char_ids, lengths, char_rows, char_vectors)
        h, _ = self.encoder(self.dropout(x), lengths)  # (batch, time, 2 * hidden)
        return self.emission(self.dropout(h))  # (batch, time, tags)

    def features(
        self,
        word_ids: torch.Tensor,
        char_ids: torch.Tensor,
        lengths: torch.Tensor,
        char_rows: torch.Tensor | None = None,
        char_vectors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The encoder's inputs (batch, time, features) before dropout: each word's
        embeddings and character features (arguments as ``forward``)."""
        mask = lengths_mask(lengths, word_ids.size(1))  # (batch, time)
        ids = self.word_dropout(word_ids, mask)  # (batch, time)
        x = self.word_embedding(ids)  # (batch, time, word_dim)
        if self.trainable_embedding is not None:  # (batch, time, word_dim + trainable_word_dim)
            x = torch.cat([x, self.trainable_embedding(ids)], dim=-1)
        if self.char_features is not None and char_vectors is not None:
            assert char_rows is not None, "char_vectors are given per row of char_rows"
            x = torch.cat([x, char_vectors[char_rows]], dim=-1)
        elif self.char_features is not None:
            x = torch.cat([x, self.word_char_features(char_ids, char_rows)], dim=-1)
        if self.char_lms is not None:  # each sentence's text, read by the LMs once
            words = char_ids[char_rows] if char_rows is not None else char_ids
            x = torch.cat([x, self.char_lms(words, lengths)], dim=-1)
        return x

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

    # -- the head ---------------------------------------------------------------
    def loss(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean CRF negative log-likelihood per sentence, or token cross-entropy (softmax).

        emissions: (batch, time, tags); tags: (batch, time); mask: (batch, time) bool.
        """
        if self.crf is not None:
            return self.crf.neg_log_likelihood(emissions, tags, mask)
        return nn.functional.cross_entropy(emissions[mask], tags[mask])

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
