"""Attention heat maps (needs matplotlib: ``pip install seqnlp[plot]``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from seqnlp.outputs import atomic_output


def plot_attention(
    source: Sequence[str], target: Sequence[str], weights: torch.Tensor, path: str | Path
) -> Path:
    """Draw ``weights`` (target rows, source columns) as a heat map into a PNG file."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("drawing attention needs matplotlib: pip install 'seqnlp[plot]'") from None
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
    out = Path(path)
    try:
        with atomic_output(str(out), binary=True) as handle:
            fig.savefig(handle, dpi=120, format="png")
    finally:
        plt.close(fig)
    return out
