"""The RNN / LSTM / GRU text classifier as a Lightning system."""

from __future__ import annotations

import torch
from torch import nn

from seqnlp.data.classification import ClassificationBatch, ClassificationCodec
from seqnlp.data.vectors import initialise_embeddings
from seqnlp.metrics import classification_scores
from seqnlp.models.classifier import ClassifierNetwork
from seqnlp.nn.dropout import DropoutMode
from seqnlp.nn.encoder import Cell, Init
from seqnlp.nn.pooling import PoolingMethod
from seqnlp.tasks.base import System
from seqnlp.tasks.char_lms import load_char_lms, read_char_lms
from seqnlp.tokenization import WordTokenizer


class Classifier(System):
    """Trains a ``ClassifierNetwork`` (embeddings [+ character language models' features]
    -> recurrent encoder -> pooling -> MLP head) with cross-entropy and scores it with
    accuracy, macro-F1 and per-class scores.

    Args:
        codec: tokenizer, label set and, for ``char_lms``, the characters of the tokens
            (linked from the DataModule).
        embedding_dim: token embedding size.
        pretrained_embeddings: a word-vector file (word2vec text or binary, GloVe,
            fastText) of ``embedding_dim`` vectors for the training tokens (words or
            pieces), read when training starts. ``data.vectors`` does more (it also
            gives words of the validation and test data rows of their own); the two
            do not combine. Prediction needs no vector file.
        pretrained_std: scale the pretrained vectors, all by one factor, to this
            standard deviation when training starts (as the tagger's; random rows start
            at ``(1 / embedding_dim) ** 0.5``).
        freeze_embeddings: keep the embeddings fixed.
        trainable_embedding_dim: with more than 0, a second embedding of this size,
            trained from scratch for the training tokens and concatenated with the first;
            with ``freeze_embeddings`` and ``data.vectors``, Kim (2014)'s multichannel
            (README "Pretrained word vectors").
        trainable_tokens: the training tokens' count (set when training starts, from the
            DataModule's vocabulary before extension; not a recipe setting).
        hidden_size, num_layers, bidirectional: the encoder's shape.
        dropout: between stacked recurrent layers.
        embedding_dropout: on the token embeddings.
        word_dropout: probability of replacing a token by ``<unk>`` in training.
        pooling: ``last``, ``mean``, ``max`` or ``attention``.
        attention_size: hidden size of the attention pooling scorer.
        mlp_hidden: sizes of the head's hidden layers (ReLU, dropout); empty for a
            single linear layer.
        head_dropout: dropout before each head layer.
        class_weights: loss weight per class, in the label order of the codec
            (alphabetical), e.g. for imbalanced data.
        cell, residual, layer_norm, dropout_mode, weight_drop, init, forget_bias,
            learn_initial_state: the recurrent options every task shares
            (``seqnlp.nn.encoder.RNNEncoder``; README "Recurrent cells and options").
        char_lms: checkpoints of trained character language models (``seqnlp fit
            recipes/charlm_es.yaml``, forward and backward) whose states become token
            features (contextual string embeddings, Akbik et al. 2018), read when the
            model is built, then kept inside it: its checkpoints need no LM file. They
            need ``data.chars`` (each token's characters) and word tokens.
        char_lm_trainable: fine-tune the language models with the classifier
            (default: frozen).
        char_lm_specs: what the model keeps of ``char_lms`` (written by seqnlp, read
            back from checkpoints; not a recipe setting).
        char_lm_cache_mb: megabytes of frozen language models' features kept, one
            entry per distinct sentence, so that each training and validation sentence
            is read by the LMs once for all epochs (default 2048; 0 reads every time;
            unused with ``char_lm_trainable``).
    """

    task = "classification"
    codec_type = ClassificationCodec
    main_metrics = ("accuracy", "macro_f1")
    training_only_hparams = ("pretrained_embeddings", "pretrained_std", "char_lms",
                             "char_lm_cache_mb")  # fmt: skip
    network: ClassifierNetwork

    def __init__(
        self,
        codec: ClassificationCodec,
        embedding_dim: int = 300,
        pretrained_embeddings: str | None = None,
        pretrained_std: float | None = None,
        freeze_embeddings: bool = False,
        trainable_embedding_dim: int = 0,
        trainable_tokens: int | None = None,
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
        residual: bool = False,
        layer_norm: bool = False,
        dropout_mode: DropoutMode = "standard",
        weight_drop: float = 0.0,
        init: Init = "default",
        forget_bias: float | None = None,
        learn_initial_state: bool = False,
        char_lms: list[str] | None = None,
        char_lm_trainable: bool = False,
        char_lm_specs: list[dict] | None = None,
        char_lm_cache_mb: float = 2048.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["codec"])
        self.codec = codec
        num_classes = len(codec.labels)
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(
                f"class_weights has {len(class_weights)} values for {num_classes} classes "
                f"{codec.labels.itos}"
            )
        tokenizer = codec.tokenizer
        if trainable_embedding_dim > 0 and trainable_tokens is None:
            self.hparams["trainable_tokens"] = codec.training_words or len(tokenizer)
        lm_weights, char_maps = [], []
        if char_lms or char_lm_specs:
            _check_char_lm_codec(codec)
        if char_lms:  # training starts: read the LMs once; the checkpoints keep them
            assert codec.chars is not None
            self.hparams["char_lm_specs"], lm_weights, char_maps = read_char_lms(
                char_lms, codec.chars
            )
        self.network = ClassifierNetwork(
            len(tokenizer), num_classes, pad_id=tokenizer.pad_id, unk_id=tokenizer.unk_id,
            num_chars=len(codec.chars) if codec.chars is not None else 0,
            **self.network_options(ClassifierNetwork),
        )  # fmt: skip
        if lm_weights:
            load_char_lms(self.network, lm_weights, char_maps)
        if self.network.char_lms is not None:  # frozen LMs: each sentence computed once
            self.network.char_lms.cache_mb = char_lm_cache_mb
        weights = torch.tensor(class_weights, dtype=torch.float) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)

    def logits(self, batch: ClassificationBatch) -> torch.Tensor:
        """Class scores (batch, classes)."""
        return self.network(batch.token_ids, batch.lengths, batch.char_ids)

    def loss(self, logits: torch.Tensor, batch: ClassificationBatch) -> torch.Tensor:
        assert batch.labels is not None
        return nn.functional.cross_entropy(logits, batch.labels, weight=self.class_weights)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            initialise_embeddings(
                self.network.embedding.weight, self.codec.tokenizer.as_vocab(),
                self.codec.vectors, self.hparams.pretrained_embeddings, "model.embedding_dim",
                self.hparams.pretrained_std,
            )  # fmt: skip

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
        labels = self.codec.labels.itos
        scores = classification_scores([g for g, _ in outputs], [p for _, p in outputs], labels)
        confusion = scores.pop("confusion")
        if stage == "test":
            for g, row in enumerate(confusion):
                for p, count in enumerate(row):
                    scores[f"confusion_{labels[g]}_as_{labels[p]}"] = float(count)
        return scores


def _check_char_lm_codec(codec: ClassificationCodec) -> None:
    """Refuse, in one line, a codec whose examples do not give character language models
    each word's characters."""
    if not isinstance(codec.tokenizer, WordTokenizer):
        raise ValueError(f"model.char_lms read whole words: they need data.tokenizer word, "
                         f"not {codec.tokenizer.kind} pieces")  # fmt: skip
    if codec.chars is None:
        raise ValueError("model.char_lms read each token's characters: set data.chars true "
                         "so that the data gives them")  # fmt: skip
