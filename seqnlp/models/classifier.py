"""The recurrent text-classification network: token ids (and, with character language
models, each token's character ids) in, class scores out."""

from __future__ import annotations

import torch
from torch import nn

from seqnlp.nn.contextual import ContextualCharFeatures
from seqnlp.nn.dropout import DropoutMode, SequenceDropout
from seqnlp.nn.embeddings import TrainingWordEmbedding, WordDropout
from seqnlp.nn.encoder import Cell, Init, RNNEncoder, State, lengths_mask
from seqnlp.nn.pooling import PoolingMethod, SequencePooling

#: what ``ClassifierNetwork.stream_step`` carries: the encoder's state and the pooling's
#: running values.
StreamState = tuple[State | None, tuple[torch.Tensor, ...] | None]


class ClassifierNetwork(nn.Module):
    """Embeddings [+ character language models' features] -> recurrent encoder ->
    pooling -> MLP head -> class scores.

    Args:
        num_tokens, num_classes: vocabulary and label-set sizes.
        embedding_dim: token embedding size.
        hidden_size, num_layers, bidirectional: the encoder's shape.
        dropout: between stacked recurrent layers.
        embedding_dropout: on the token embeddings (locked with ``dropout_mode: locked``).
        word_dropout: probability of replacing a token by ``unk_id`` in training.
        pooling: ``last`` (the final states of both directions), ``mean``, ``max`` or
            ``attention``.
        attention_size: hidden size of the attention pooling scorer.
        mlp_hidden: sizes of the head's hidden layers (ReLU, dropout); empty for a
            single linear layer.
        head_dropout: dropout before each head layer.
        freeze_embeddings: keep the embeddings fixed.
        trainable_embedding_dim: with more than 0, a second, trainable embedding of this
            size for the first ``trainable_tokens`` ids (the training tokens; later ids
            read ``<unk>``'s row), concatenated with ``embedding`` (Kim 2014's
            multichannel with ``freeze_embeddings``; ``TrainingWordEmbedding``). The
            first layer then reads the embeddings directly, never folded.
        trainable_tokens: the training tokens' count (default ``num_tokens``).
        pad_id, unk_id: the tokenizer's padding and unknown ids.
        num_chars: the character vocabulary's size (with ``char_lm_specs``).
        char_lm_specs: trained character language models whose states are token
            features (contextual string embeddings, Akbik et al. 2018), one dict each,
            as ``seqnlp.nn.contextual.ContextualCharFeatures.from_specs`` takes them.
            Their weights, and ``char_lms.char_maps`` (each LM's id of each
            character), are this network's. Each token's features follow its
            embedding, under the same ``embedding_dropout``.
        char_lm_trainable: fine-tune the language models (default: frozen).
        cell, residual, layer_norm, dropout_mode, weight_drop, init, forget_bias,
            learn_initial_state: the recurrent options every task shares
            (``seqnlp.nn.encoder.RNNEncoder``; README "Recurrent cells and options").
    """

    def __init__(
        self,
        num_tokens: int,
        num_classes: int,
        embedding_dim: int = 300,
        cell: Cell = "lstm",
        hidden_size: int = 256,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        embedding_dropout: float = 0.5,
        word_dropout: float = 0.0,
        pooling: PoolingMethod = "last",
        attention_size: int = 128,
        mlp_hidden: list[int] | None = None,
        head_dropout: float = 0.5,
        residual: bool = False,
        layer_norm: bool = False,
        dropout_mode: DropoutMode = "standard",
        weight_drop: float = 0.0,
        init: Init = "default",
        forget_bias: float | None = None,
        learn_initial_state: bool = False,
        freeze_embeddings: bool = False,
        trainable_embedding_dim: int = 0,
        trainable_tokens: int | None = None,
        pad_id: int = 0,
        unk_id: int = 1,
        num_chars: int = 0,
        char_lm_specs: list[dict] | None = None,
        char_lm_trainable: bool = False,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_tokens, embedding_dim, padding_idx=pad_id)
        _scaled_start(self.embedding.weight, pad_id)
        self.embedding.weight.requires_grad_(not freeze_embeddings)
        self.trainable_embedding: TrainingWordEmbedding | None = None
        if trainable_embedding_dim > 0:
            self.trainable_embedding = TrainingWordEmbedding(
                trainable_tokens or num_tokens, trainable_embedding_dim, pad_id, unk_id
            )
            _scaled_start(self.trainable_embedding.embedding.weight, pad_id)
        self.word_dropout = WordDropout(word_dropout, unk_id)
        self.embedding_dropout = SequenceDropout(embedding_dropout, dropout_mode)
        self.char_lms: ContextualCharFeatures | None = None
        features = embedding_dim + trainable_embedding_dim
        if char_lm_specs:
            self.char_lms = ContextualCharFeatures.from_specs(
                char_lm_specs, num_chars, char_lm_trainable
            )
            features += self.char_lms.output_size
        self.encoder = RNNEncoder(
            features, hidden_size, num_layers, cell, bidirectional, dropout,
            learn_initial_state, init, residual=residual, layer_norm=layer_norm,
            dropout_mode=dropout_mode, weight_drop=weight_drop, forget_bias=forget_bias,
        )  # fmt: skip
        self.pooling = (
            None
            if pooling == "last"
            else SequencePooling(pooling, self.encoder.output_size, attention_size)
        )
        layers: list[nn.Module] = []
        size = self.encoder.output_size
        for hidden in mlp_hidden or []:
            layers += [nn.Dropout(head_dropout), nn.Linear(size, hidden), nn.ReLU()]
            size = hidden
        layers += [nn.Dropout(head_dropout), nn.Linear(size, num_classes)]
        self.head = nn.Sequential(*layers)

    def forward(
        self, token_ids: torch.Tensor, lengths: torch.Tensor, char_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Class scores (batch, classes) of right-padded token ids (batch, time) whose
        real lengths (batch,) are each >= 1; ``char_ids`` (batch, time, chars): each
        token's character ids (0: padding), which the character language models read
        (required with them, ignored without)."""
        mask = lengths_mask(lengths, token_ids.size(1))  # (batch, time)
        # states: (batch, time, output_size); final: (layers * directions, batch, hidden)
        if self.char_lms is None and self.trainable_embedding is None:
            # the first layer may read the embedding table folded
            states, final = self.encoder.encode_tokens(
                self.embedding, token_ids, lengths, lambda ids: self.features(ids, lengths)
            )
        else:
            states, final = self.encoder(self.features(token_ids, lengths, char_ids), lengths)
        if self.pooling is None:  # ``last``: the top layer's final states
            return self.head(self.encoder.top_states(final))  # (batch, classes)
        return self.head(self.pooling(states, mask))  # (batch, classes)

    def features(
        self, token_ids: torch.Tensor, lengths: torch.Tensor, char_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The encoder's inputs (batch, time, input_size), dropout included in training:
        each token's embedding then, with character language models, their features of
        it (each text read by them once). Arguments as ``forward``."""
        mask = lengths_mask(lengths, token_ids.size(1))  # (batch, time)
        x = self.embed(self.word_dropout(token_ids, mask))  # (batch, time, embedding sizes)
        if self.char_lms is not None:
            if char_ids is None:
                raise ValueError("this classifier reads each token's characters with its "
                                 "character language models: give char_ids")  # fmt: skip
            x = torch.cat([x, self.char_lms(char_ids, lengths)], dim=-1)  # (batch, time, input)
        return self.embedding_dropout(x)

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Token ids (...) -> their embeddings (..., embedding_dim + trainable_embedding_dim):
        the embedding's row, then the trainable table's."""
        x = self.embedding(token_ids)
        if self.trainable_embedding is None:
            return x
        return torch.cat([x, self.trainable_embedding(token_ids)], dim=-1)

    def stream_step(
        self, token_ids: torch.Tensor, state: StreamState | None = None
    ) -> tuple[torch.Tensor, StreamState]:
        """Class scores (batch, classes) of the text so far after one more token per
        row, token_ids (batch,), in constant memory: ``forward`` over all the tokens
        fed, to float rounding. ``state`` is None at the start. A unidirectional
        encoder without character language models only (else ``ValueError``)."""
        if self.char_lms is not None:
            raise ValueError("a classifier with character language models cannot stream: a "
                             "backward one reads the whole text first")  # fmt: skip
        encoder_state, running = state if state is not None else (None, None)
        x = self.embed(token_ids)  # (batch, embedding sizes)
        top, encoder_state = self.encoder.step(x, encoder_state)  # (batch, hidden)
        if self.pooling is None:  # ``last``: the top layer's newest state (before residuals)
            h = encoder_state[0] if isinstance(encoder_state, tuple) else encoder_state
            return self.head(self.encoder.top_states(h)), (encoder_state, None)
        pooled, running = self.pooling.step(top, running)  # (batch, hidden)
        return self.head(pooled), (encoder_state, running)


@torch.no_grad()
def _scaled_start(weight: torch.Tensor, pad_id: int) -> None:
    """Rows of variance 1/dim (Lample et al. 2016), ``pad_id``'s zero: N(0, 1) rows
    saturate the gates of embeddings trained from scratch. weight: (vocab, dim)."""
    bound = (3.0 / weight.size(1)) ** 0.5
    nn.init.uniform_(weight, -bound, bound)
    weight[pad_id].zero_()
