"""The BiLSTM-CRF sequence tagger (Lample et al. 2016) as a Lightning system."""

from __future__ import annotations

from typing import Literal

import torch

from seqnlp.data.tagging import TaggingBatch, TaggingCodec
from seqnlp.data.vectors import initialise_embeddings
from seqnlp.metrics import entity_scores
from seqnlp.models.tagger import TaggerNetwork
from seqnlp.nn.dropout import DropoutMode
from seqnlp.nn.encoder import Cell, Init
from seqnlp.tasks.base import System
from seqnlp.tasks.char_lms import load_char_lms, read_char_lms


class Tagger(System):
    """Trains a ``TaggerNetwork`` (word embeddings + character features -> stacked
    BiLSTM -> emissions -> CRF) and scores it with entity precision / recall / F1.

    Args:
        codec: word, character and tag vocabularies (linked from the DataModule).
        word_dim: word embedding size.
        pretrained_embeddings: a word-vector file (word2vec text or binary, GloVe,
            fastText) of ``word_dim``-sized vectors for the training words, read when
            training starts. ``data.vectors`` does more (it also gives words of the
            validation and test data rows of their own, and hands the vectors over in
            ``codec.vectors``); the two do not combine. Prediction needs no vector file.
        pretrained_std: scale the pretrained vectors (``data.vectors`` or
            ``pretrained_embeddings``), all by one factor, to this standard deviation
            when training starts. Random rows start at 1.0; fastText's and word2vec's
            vectors are near 0.3, and Adam's steps are about the same size whatever a
            weight's scale, so small vectors lose what they bring sooner. The factor is
            kept (``pretrained_scale``) for vocabulary extension at prediction.
        pretrained_scale: that factor (written by seqnlp; not a recipe setting).
        freeze_embeddings: keep the word embeddings fixed.
        trainable_word_dim: with more than 0, a second word embedding of this size,
            trained from scratch for the training words and concatenated with the first.
            With ``freeze_embeddings`` and ``data.vectors`` the pretrained vectors stay as
            they are, so the rows of words that only the vectors know (vocabulary
            extension) stay in the space the model learned to read (README "Pretrained
            word vectors").
        trainable_words: the training words' count (set when training starts, from the
            DataModule's vocabulary before extension; not a recipe setting).
        char_encoder: ``lstm`` (a bidirectional ``nn.LSTM``), ``recurrent`` (bidirectional,
            with ``cell`` and the recurrent options), ``cnn`` or ``none``.
        char_dim: character embedding size.
        char_hidden: per-direction recurrent size, or CNN filter count.
        char_kernel_size: CNN kernel width.
        hidden_size: per-direction size of the word-level encoder.
        num_layers: stacked word-level layers.
        dropout: dropout on the token features, between layers and on the encoder's
            outputs.
        word_dropout: probability of replacing a word by ``<unk>`` in training,
            so that the model learns to rely on characters for rare words.
        head: ``crf`` (Viterbi decoding) or ``softmax`` (independent argmax).
        cell, residual, layer_norm, dropout_mode, weight_drop, init, forget_bias,
            learn_initial_state: the recurrent options every task shares
            (``seqnlp.nn.encoder.RNNEncoder``; README "Recurrent cells and options").
        char_lms: checkpoints of trained character language models (``seqnlp fit
            recipes/charlm_es.yaml``, forward and backward) whose states become word
            features (contextual string embeddings, Akbik et al. 2018); read when the
            model is built, then kept inside it: its checkpoints need no LM file.
        char_lm_trainable: fine-tune the language models with the tagger (default:
            frozen).
        char_lm_specs: what the model keeps of ``char_lms`` (written by seqnlp, read
            back from checkpoints; not a recipe setting).
        char_lm_cache_mb: megabytes of frozen language models' features kept, one
            entry per distinct sentence, so that each training and validation sentence
            is read by the LMs once for all epochs (default 2048; 0 reads every time;
            unused with ``char_lm_trainable``).
    """

    task = "tagging"
    codec_type = TaggingCodec
    main_metrics = ("precision", "recall", "f1")
    training_only_hparams = ("pretrained_embeddings", "pretrained_std", "char_lms",
                             "char_lm_cache_mb")  # fmt: skip
    network: TaggerNetwork

    def __init__(
        self,
        codec: TaggingCodec,
        word_dim: int = 100,
        pretrained_embeddings: str | None = None,
        pretrained_std: float | None = None,
        pretrained_scale: float = 1.0,
        freeze_embeddings: bool = False,
        trainable_word_dim: int = 0,
        trainable_words: int | None = None,
        char_encoder: Literal["lstm", "recurrent", "cnn", "none"] = "lstm",
        char_dim: int = 25,
        char_hidden: int = 25,
        char_kernel_size: int = 3,
        hidden_size: int = 100,
        num_layers: int = 1,
        dropout: float = 0.5,
        word_dropout: float = 0.0,
        head: Literal["crf", "softmax"] = "crf",
        cell: Cell = "lstm",
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
        if trainable_word_dim > 0 and trainable_words is None:
            self.hparams["trainable_words"] = codec.training_words or len(codec.words)
        lm_weights, char_maps = [], []
        if char_lms:  # training starts: read the LMs once; the checkpoints keep them
            self.hparams["char_lm_specs"], lm_weights, char_maps = read_char_lms(
                char_lms, codec.chars
            )
        self.network = TaggerNetwork(
            len(codec.words), len(codec.chars), len(codec.tags), pad_id=codec.words.pad_id,
            unk_id=codec.words.unk_id, **self.network_options(TaggerNetwork),
        )  # fmt: skip
        if lm_weights:
            load_char_lms(self.network, lm_weights, char_maps)
        if self.network.char_lms is not None:  # frozen LMs: each sentence computed once
            self.network.char_lms.cache_mb = char_lm_cache_mb

    def emissions(self, batch: TaggingBatch) -> torch.Tensor:
        """Tag scores (batch, time, tags) of a padded batch."""
        return self.network(batch.word_ids, batch.char_ids, batch.lengths, batch.char_rows)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            scale = initialise_embeddings(
                self.network.word_embedding.weight, self.codec.words, self.codec.vectors,
                self.hparams.pretrained_embeddings, "model.word_dim",
                self.hparams.pretrained_std,
            )  # fmt: skip
            self.hparams["pretrained_scale"] = self.network.pretrained_scale = scale

    def training_loss(self, batch: TaggingBatch) -> torch.Tensor:
        assert batch.tags is not None
        return self.network.loss(self.emissions(batch), batch.tags, batch.mask)

    def evaluate_batch(
        self, batch: TaggingBatch
    ) -> tuple[torch.Tensor, list[tuple[list[str], list[str]]]]:
        """Loss and (gold, predicted) IOB2 tags per sentence."""
        assert batch.tags is not None
        emissions = self.emissions(batch)
        paths = self.network.decode(emissions, batch.mask)
        outputs = [
            (self.codec.decode_tags(gold[:n].tolist()), self.codec.decode_tags(path))
            for path, gold, n in zip(paths, batch.tags, batch.lengths, strict=True)
        ]
        return self.network.loss(emissions, batch.tags, batch.mask), outputs

    def corpus_scores(
        self, outputs: list[tuple[list[str], list[str]]], stage: str
    ) -> dict[str, float]:
        return entity_scores([g for g, _ in outputs], [p for _, p in outputs])
