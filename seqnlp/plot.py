"""Attention heat maps and gate pictures (need matplotlib: ``pip install seqnlp[plot]``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from seqnlp.outputs import atomic_output


def _pyplot():  # type: ignore[no-untyped-def]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("drawing needs matplotlib: pip install 'seqnlp[plot]'") from None
    return plt


def _save(fig, path: str | Path) -> Path:  # type: ignore[no-untyped-def]
    out = Path(path)
    try:
        with atomic_output(str(out), binary=True) as handle:
            fig.savefig(handle, dpi=120, format="png")
    finally:
        fig.clf()
        _pyplot().close(fig)
    return out


def plot_gates(tokens: Sequence[str], layers: list[dict], path: str | Path) -> Path:
    """Draw each layer's gates per token into a PNG file: one panel per layer and
    direction, a line per gate (its mean activation over units, 0 to 1) and the
    hidden state's norm on a second axis. ``layers`` as ``gate_report``'s ``layers``."""
    plt = _pyplot()
    size = (max(6.0, 0.5 * len(tokens) + 2), 2.4 * len(layers))
    fig, axes = plt.subplots(len(layers), 1, squeeze=False, sharex=True, figsize=size)
    steps = range(len(tokens))
    for ax, layer in zip(axes[:, 0], layers, strict=True):
        for name, means in layer["gate_means"].items():
            ax.plot(steps, means, marker="o", markersize=3, label=f"{name} gate")
        ax.set_ylim(0, 1)
        ax.set_ylabel("mean activation")
        ax.set_title(f"layer {layer['layer']}, {layer['direction']}", fontsize=9)
        norm_ax = ax.twinx()
        norm_ax.plot(steps, layer["hidden_norm"], color="black", linestyle="--",
                     label="|h|")  # fmt: skip
        norm_ax.set_ylabel("|h|")
        lines = ax.get_lines() + norm_ax.get_lines()
        ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="upper left")
    axes[-1, 0].set_xticks(list(steps), labels=list(tokens), rotation=60, ha="right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_attention(
    source: Sequence[str], target: Sequence[str], weights: torch.Tensor, path: str | Path
) -> Path:
    """Draw ``weights`` (target rows, source columns) as a heat map into a PNG file."""
    plt = _pyplot()
    rows, cols = weights.shape
    if (rows, cols) != (len(target), len(source)):
        raise ValueError(f"weights are {rows} x {cols} for {len(target)} x {len(source)} labels")
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * cols + 1.5), max(3.0, 0.4 * rows + 1.2)))
    image = ax.imshow(weights.float().numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(cols), labels=list(source), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(rows), labels=list(target), fontsize=8)
    ax.set_xlabel("source pieces")
    ax.set_ylabel("target pieces")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    return _save(fig, path)
