"""Trained character language models as a model's features (contextual string
embeddings, for the tagger and the classifier): what the model keeps of each LM
checkpoint, read once when training starts. The model's own checkpoint then holds the
LMs' weights and this description, so it needs no LM file to predict."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from seqnlp.checkpoints import CKPT_KEY, hyper_parameters, read_checkpoint
from seqnlp.data.lm_codec import LanguageModelCodec
from seqnlp.models.language_model import LanguageModelNetwork
from seqnlp.tokenization import Vocab


def read_char_lms(
    paths: list[str], model_chars: Vocab
) -> tuple[list[dict[str, Any]], list[dict], list[list[int]]]:
    """``read_char_lm`` of each checkpoint: their descriptions (a model's
    ``char_lm_specs``), weights and character maps, each a list in the order given."""
    read = [read_char_lm(path, model_chars) for path in paths]
    return [s for s, _, _ in read], [w for _, w, _ in read], [m for _, _, m in read]


def read_char_lm(path: str | Path, model_chars: Vocab) -> tuple[dict[str, Any], dict, list[int]]:
    """A character LM checkpoint's description for a network's ``char_lm_specs``
    (``network``, ``backward``, ``space_id``, ``boundary_id``), its network's weights,
    and its id of each of the model's characters ``model_chars`` (its ``<unk>`` for
    those it never saw; cased as the LM reads). Raises ``ValueError`` in one line for
    anything else than a seqnlp character language model."""
    ckpt = read_checkpoint(path)
    meta = ckpt[CKPT_KEY]
    if meta.get("task") != "language_model":
        raise ValueError(f"{path}: a {meta.get('task')} checkpoint, expected a character "
                         f"language model (seqnlp fit recipes/charlm_es.yaml)")  # fmt: skip
    codec = LanguageModelCodec.from_state(meta["codec"])
    if codec.level != "char" or codec.vocab is None:
        raise ValueError(f"{path}: a {codec.level}-level language model; contextual string "
                         f"embeddings need a character one")  # fmt: skip
    vocab = codec.vocab
    if " " not in vocab.stoi:
        raise ValueError(f"{path}: its characters have no space, which separates words")
    accepted = inspect.signature(LanguageModelNetwork).parameters
    network = {k: v for k, v in hyper_parameters(ckpt).items() if k in accepted}
    network["num_tokens"] = len(vocab)
    spec = {"network": network, "backward": codec.direction == "backward",
            "space_id": vocab.stoi[" "], "boundary_id": codec.boundary_id,
            "source": str(path)}  # fmt: skip
    prefix = "network."
    weights = {k.removeprefix(prefix): v for k, v in ckpt["state_dict"].items()
               if k.startswith(prefix)}  # fmt: skip
    char_map = [
        vocab.stoi.get(c.lower() if codec.lowercase else c, vocab.unk_id) if c else vocab.unk_id
        for c in model_chars.itos
    ]
    return spec, weights, char_map


@torch.no_grad()
def load_char_lms(network: Any, weights: list[dict], char_maps: list[list[int]]) -> None:
    """Copy each LM's weights (its next-character layers left out) and character map
    into ``network.char_lms`` (a ``ContextualCharFeatures``)."""
    features = network.char_lms
    for k, (lm, state) in enumerate(zip(features.lms, weights, strict=True)):
        kept = {n: w for n, w in state.items() if not n.startswith(("output.", "projection."))}
        lm.load_state_dict(kept)
        features.char_maps[k] = torch.tensor(char_maps[k])
