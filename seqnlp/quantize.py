"""Int8 dynamic quantization of a network, for prediction on the CPU.

``quantize(network, "int8")`` swaps, in place, the modules that torch's dynamic
quantization supports for int8 versions (``torch.ao.quantization.quantize_dynamic``
with ``qint8`` weights): weights are stored as int8 once, activations are quantized
on the fly per batch, and the matrix products run in int8 (fbgemm / x86 / qnnpack
kernels). What each network has:

- recurrent layers ``nn.LSTM`` / ``nn.GRU`` (the shared encoder, the character
  LSTM, the translator's decoder, which runs them one step at a time) and the
  cells ``nn.LSTMCell`` / ``nn.GRUCell`` / ``nn.RNNCell``: quantized, packed
  sequences included;
- ``nn.Linear`` (tagger emissions, classifier head and attention pooling, the
  attention scorers, the decoder's bridge, pre-output and output layers):
  quantized. A tied output layer gets its own int8 copy of the target embedding
  matrix; the embedding stays fp32;
- plain ``nn.RNN`` (the classifier's ``cell: rnn``): torch has no dynamic int8
  version, stays fp32;
- embeddings, the character CNN (``nn.Conv1d``), the CRF's transition scores:
  stay fp32 (they are lookups, a small convolution and a few hundred numbers).
- refused: the custom cells (``peephole_lstm``, ``cifg_lstm``, ``layernorm_lstm``,
  ``layernorm_gru``) and stacks with ``residual`` or ``layer_norm``, which torch has
  no dynamically quantized kernels for (their layers run one at a time from fp32
  weights): a model with them predicts in fp32.

Quantized modules are inference-only and CPU-only; the checkpoint file is never
touched. A dynamically quantized model cannot be trained or moved to a GPU.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

log = logging.getLogger(__name__)

CHOICES: tuple[str, ...] = ("int8",)

#: the module types handed to ``quantize_dynamic`` (all it supports for qint8).
DYNAMIC_TYPES: tuple[type[nn.Module], ...] = (
    nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell, nn.RNNCell, nn.Linear,
)  # fmt: skip


def check_cpu(device: str | torch.device) -> None:
    """Refuse int8 dynamic quantization anywhere but on the CPU."""
    kind = torch.device(device).type
    if kind != "cpu":
        raise ValueError(
            f"int8 quantization runs on the CPU only, not on {kind} (torch has no "
            f"dynamically quantized LSTM / GRU / Linear kernels there): drop --quantize, "
            f"or predict on the CPU"
        )


def quantize(model: nn.Module, mode: str = "int8") -> list[str]:
    """Quantize ``model`` in place for CPU inference; return the quantized modules' names.

    Puts the model in eval mode. Logs one line naming what was quantized and what
    stayed fp32. Raises ``ValueError`` for an unknown ``mode``, a model with
    tensors off the CPU, or a torch build without a quantized engine.
    """
    if mode not in CHOICES:
        raise ValueError(f"unknown quantization {mode!r}: expected one of {', '.join(CHOICES)}")
    for tensor in [*model.parameters(), *model.buffers()]:
        check_cpu(tensor.device)
    check_quantizable(model)
    engine = torch.backends.quantized.engine
    if engine == "none" or engine not in torch.backends.quantized.supported_engines:
        raise ValueError(
            f"this torch build has no quantized CPU engine (engine {engine!r}, supported "
            f"{torch.backends.quantized.supported_engines}): drop --quantize"
        )
    model.eval()
    quantized = [name for name, m in model.named_modules() if type(m) in DYNAMIC_TYPES]
    # Leaves (or parameter owners) outside the list stay fp32: named in the log line.
    kept = [
        f"{name} ({type(m).__name__})"
        for name, m in model.named_modules()
        if name and type(m) not in DYNAMIC_TYPES and any(True for _ in m.parameters(recurse=False))
    ]
    with warnings.catch_warnings():
        # torch marks eager-mode quantization deprecated in favour of torchao; it still
        # works, and torchao is not a dependency.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        torch.ao.quantization.quantize_dynamic(
            model, set(DYNAMIC_TYPES), dtype=torch.qint8, inplace=True
        )
    log.info(
        "int8 dynamic quantization (%s engine): quantized %s; kept fp32: %s",
        engine, ", ".join(quantized) or "nothing", ", ".join(kept) or "nothing",
    )  # fmt: skip
    return quantized


def check_quantizable(model: nn.Module) -> None:
    """Refuse, in one line, a model whose recurrent layers int8 has no kernels for."""
    from seqnlp.nn.encoder import RNNEncoder

    for name, module in model.named_modules():
        if not isinstance(module, RNNEncoder):
            continue
        if module.cells is not None:
            raise ValueError(
                f"int8 quantization has no kernels for the {module.cell} cell ({name}): "
                f"predict in fp32 (drop --quantize), or train with cell lstm, gru or rnn"
            )
        if module.residual or module.norms is not None:
            raise ValueError(
                f"int8 quantization runs a quantized {module.cell} in one piece, with nothing "
                f"between its layers; {name} has residual connections or layer norm there: "
                f"predict in fp32 (drop --quantize)"
            )


def is_quantized(module: nn.Module) -> bool:
    """Whether ``module`` is one of torch's dynamically quantized modules."""
    return type(module).__module__.startswith("torch.ao.nn.quantized.dynamic")


__all__ = [
    "CHOICES", "DYNAMIC_TYPES", "check_cpu", "check_quantizable", "is_quantized", "quantize",
]  # fmt: skip
