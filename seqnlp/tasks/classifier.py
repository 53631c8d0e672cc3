"""RNN / LSTM / GRU text classifier as a Lightning system."""

from __future__ import annotations

import torch
from torch import nn

from seqnlp.data.classification import ClassificationBatch, ClassificationVocab
from seqnlp.metrics import classification_scores
from seqnlp.nn.embeddings import load_word_vectors
from seqnlp.nn.encoder import Cell, RNNEncoder
from seqnlp.nn.pooling import PoolingMethod, SequencePooling
from seqnlp.tasks.base import System


class Classifier(System):
    """Embeddings -> recurrent encoder -> pooling -> MLP head -> class scores.

    Args:
        vocab: tokenizer and label set (linked from the DataModule).
        embedding_dim: token embedding size.
        pretrained_embeddings: word2vec/GloVe text file of ``embedding_dim``
            vectors for the tokens (words or pieces), read when training starts.
        freeze_embeddings: keep the embeddings fixed.
        cell: ``rnn`` (tanh), ``lstm`` or ``gru``.
        hidden_size, num_layers, bidirectional: the encoder's shape.
        dropout: between stacked recurrent layers.
        embedding_dropout: on the token embeddings.
        word_dropout: probability of replacing a token by ``<unk>`` in training.
        pooling: ``last``, ``mean``, ``max`` or ``attention``.
        attention_size: hidden size of the attention pooling scorer.
        mlp_hidden: sizes of the head's hidden layers (ReLU, dropout); empty for a
            single linear layer.
        head_dropout: dropout before each head layer.
        class_weights: loss weight per class, in the label order of the vocabulary
            (alphabetical), e.g. for imbalanced data.
        orthogonal_init: orthogonal recurrent weights, zero biases.
        learn_initial_state: a learned initial hidden state instead of zeros.
    """

    task = "classification"
    vocab_type = ClassificationVocab
    main_metrics = ("accuracy", "macro_f1")
    training_only_hparams = ("pretrained_embeddings",)

    def __init__(
        self,
        vocab: ClassificationVocab,
        embedding_dim: int = 300,
        pretrained_embeddings: str | None = None,
        freeze_embeddings: bool = False,
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
        class_weights: list[float] | None = None,
        orthogonal_init: bool = False,
        learn_initial_state: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["vocab"])
        self.vocab = vocab
        num_classes = len(vocab.labels)
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(
                f"class_weights has {len(class_weights)} values for {num_classes} classes "
                f"{vocab.labels.itos}"
            )
        tokenizer = vocab.tokenizer
        self.embedding = nn.Embedding(len(tokenizer), embedding_dim, padding_idx=tokenizer.pad_id)
        # Variance 1/dim (Lample et al. 2016): N(0, 1) rows saturate the gates of
        # embeddings trained from scratch.
        bound = (3.0 / embedding_dim) ** 0.5
        with torch.no_grad():
            nn.init.uniform_(self.embedding.weight, -bound, bound)
            self.embedding.weight[tokenizer.pad_id].zero_()
        self.embedding.weight.requires_grad_(not freeze_embeddings)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.encoder = RNNEncoder(
            embedding_dim, hidden_size, num_layers, cell, bidirectional, dropout,
            learn_initial_state=learn_initial_state, orthogonal_init=orthogonal_init,
        )  # fmt: skip
        self.pooling = SequencePooling(
            pooling, self.encoder.output_size, bidirectional, attention_size
        )
        layers: list[nn.Module] = []
        size = self.encoder.output_size
        for hidden in mlp_hidden or []:
            layers += [nn.Dropout(head_dropout), nn.Linear(size, hidden), nn.ReLU()]
            size = hidden
        layers += [nn.Dropout(head_dropout), nn.Linear(size, num_classes)]
        self.head = nn.Sequential(*layers)
        weights = torch.tensor(class_weights, dtype=torch.float) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)

    def logits(self, batch: ClassificationBatch) -> torch.Tensor:
        """Class scores (batch, classes)."""
        token_ids = batch.token_ids
        if self.encoder.folds(self.embedding, token_ids):  # inference on CPU: input table
            states, final = self.encoder.encode_tokens(self.embedding, token_ids, batch.lengths)
        else:
            if self.training and self.hparams.word_dropout > 0:
                drop = torch.rand(token_ids.shape, device=token_ids.device)
                drop = (drop < self.hparams.word_dropout) & batch.mask
                token_ids = token_ids.masked_fill(drop, self.vocab.tokenizer.unk_id)
            x = self.embedding_dropout(self.embedding(token_ids))  # (batch, time, embedding_dim)
            states, final = self.encoder(x, batch.lengths)  # (batch, time, output_size)
        if self.pooling.method == "last":  # the final states (layers * directions, batch, hidden)
            return self.head(self.encoder.top_states(final))  # (batch, classes)
        return self.head(self.pooling(states, batch.mask))  # (batch, classes)

    def loss(self, logits: torch.Tensor, batch: ClassificationBatch) -> torch.Tensor:
        assert batch.labels is not None
        return nn.functional.cross_entropy(logits, batch.labels, weight=self.class_weights)

    def setup(self, stage: str) -> None:
        path = self.hparams.pretrained_embeddings
        if stage == "fit" and path:
            with torch.no_grad():
                load_word_vectors(path, self.vocab.tokenizer.as_vocab(), self.embedding.weight)

    def training_loss(self, batch: ClassificationBatch) -> torch.Tensor:
        return self.loss(self.logits(batch), batch)

    def evaluate_batch(
        self, batch: ClassificationBatch
    ) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Loss and (gold, predicted) class ids per example."""
        logits = self.logits(batch)
        assert batch.labels is not None
        outputs = list(zip(batch.labels.tolist(), logits.argmax(dim=-1).tolist(), strict=True))
        return self.loss(logits, batch), outputs

    def corpus_scores(self, outputs: list[tuple[int, int]], stage: str) -> dict[str, float]:
        labels = self.vocab.labels.itos
        scores = classification_scores([g for g, _ in outputs], [p for _, p in outputs], labels)
        confusion = scores.pop("confusion")
        if stage == "test":
            for g, row in enumerate(confusion):
                for p, count in enumerate(row):
                    scores[f"confusion_{labels[g]}_as_{labels[p]}"] = float(count)
        return scores
