"""The gate inspector (``seqnlp gates``): what a trained model's recurrent gates do,
token by token, on a text: the picture the guides to LSTMs and GRUs explain in words."""

from __future__ import annotations

from typing import Any

import torch

from seqnlp.data.classification import collate_classification
from seqnlp.nn.encoder import RNNEncoder
from seqnlp.nn.gates import trace_gates


def encoder_inputs(predictor: Any, text: str) -> tuple[list[str], RNNEncoder, torch.Tensor]:
    """A text as the model reads it: its tokens, the encoder that reads them, and the
    encoder's inputs (time, input_size): the tagger's word encoder, the classifier's
    encoder, the translator's source encoder."""
    network = predictor.network
    if predictor.task == "classification":
        codec = predictor.codec
        example = codec.encode_example(codec.raw_form(text))
        words = codec.tokenizer.as_vocab().itos
        tokens = [words[i] for i in example["token_ids"]]
        x = torch.zeros(0)
        if tokens:  # embeddings, and the character language models' features
            batch = collate_classification([example])
            x = network.features(batch.token_ids, batch.lengths, batch.char_ids)[0]
    elif predictor.task == "tagging":
        sentence = predictor.sentence(text)
        tokens = sentence.tokens
        word_ids, char_ids = predictor.codec.encode_tokens(sentence.model_tokens)
        width = max(1, *(len(c) for c in char_ids))
        chars = torch.tensor([c + [0] * (width - len(c)) for c in char_ids])  # (time, width)
        lengths = torch.tensor([len(word_ids)])
        x = network.features(torch.tensor([word_ids]), chars.unsqueeze(0), lengths)[0]
    elif predictor.task == "translation":
        ids = predictor.codec.encode_source(text)
        pieces = predictor.codec.source.as_vocab().itos
        tokens, x = [pieces[i] for i in ids], network.src_embedding(torch.tensor(ids))
    else:
        raise ValueError(f"the gate inspector reads tagger, classifier and translator "
                         f"encoders, not a {predictor.task} model")  # fmt: skip
    if not tokens:
        raise ValueError(f"{text!r} has no tokens for this model")
    return tokens, network.encoder, x


@torch.no_grad()
def gate_report(predictor: Any, text: str) -> dict[str, Any]:
    """The gates of ``predictor``'s encoder on ``text``: ``tokens``, ``cell`` and, per
    layer and direction, ``gate_means`` (each gate's mean activation over its units,
    one value per token) and ``hidden_norm`` (the hidden state's L2 norm per token)."""
    tokens, encoder, x = encoder_inputs(predictor, text)
    layers = []
    for trace in trace_gates(encoder.eval(), x):
        layers.append({
            "layer": trace.layer, "direction": trace.direction,
            "gate_means": {name: [round(v, 5) for v in values.mean(dim=1).tolist()]
                           for name, values in trace.gates.items()},
            "hidden_norm": [round(v, 5) for v in trace.hidden.norm(dim=1).tolist()],
        })  # fmt: skip
    return {"text": text, "tokens": tokens, "cell": encoder.cell, "layers": layers}
