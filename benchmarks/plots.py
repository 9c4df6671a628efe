"""Figures of the benchmark report (matplotlib, Agg backend): image grids, bar charts, the latency chart."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def _save(fig: plt.Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (folders created) at 110 dpi, close it, return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _display(img: torch.Tensor) -> np.ndarray:
    """``(3, W, H)`` MONAI-loaded image -> ``(H, W, 3)`` for display (undo the loader's axis swap)."""
    return np.clip(img.permute(2, 1, 0).numpy(), 0.0, 1.0)


def image_grid(
    outputs: Mapping[str, torch.Tensor],
    labels: Mapping[str, str],
    scores: Mapping[str, Mapping[str, float]],
    title: str,
    path: str | os.PathLike,
) -> Path:
    """One row of images (input, methods..., reference), each titled with its PSNR / DeltaE."""
    names = list(outputs)
    fig, axes = plt.subplots(1, len(names), figsize=(1.9 * len(names), 2.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        ax.imshow(_display(outputs[name]), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        sub = ""
        if name in scores:
            sub = f"\n{scores[name]['psnr']:.2f} dB / {scores[name]['delta_e']:.2f}"
        ax.set_title(labels.get(name, name) + sub, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def grouped_bars(
    values: Mapping[str, Mapping[str, float]],
    series_labels: Mapping[str, str],
    ylabel: str,
    title: str,
    path: str | os.PathLike,
    paper: Mapping[str, Mapping[str, float]] | None = None,
) -> Path:
    """Bars per category (outer keys of ``values[series]``) for every series; optional hatched paper references."""
    series = list(values)
    cats = list(next(iter(values.values())).keys()) if values else []
    x = np.arange(len(cats))
    n = len(series) + (len(paper) if paper else 0)
    width = 0.8 / max(n, 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(cats) * max(n, 1) * 0.35), 3.4))
    for i, s in enumerate(series):
        ys = [values[s].get(c, np.nan) for c in cats]
        ax.bar(x + i * width, [np.nan if v is None else v for v in ys], width, label=series_labels.get(s, s))
    for j, (s, row) in enumerate((paper or {}).items()):
        ys = [row.get(c, np.nan) for c in cats]
        ax.bar(x + (len(series) + j) * width, ys, width, label=s, hatch="//", fill=False)
    ax.set_xticks(x + 0.4 - width / 2)
    ax.set_xticklabels(cats)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    return _save(fig, path)


def latency_chart(
    sizes: Sequence[int],
    series: Mapping[str, Sequence[float | None]],
    paper: Sequence[float],
    title: str,
    path: str | os.PathLike,
) -> Path:
    """Latency (s, log scale) against image side for every variant, with the paper's 4-core CPU figures."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, ys in series.items():
        ax.plot(sizes, [np.nan if y is None else y for y in ys], marker="o", label=name)
    ax.plot(sizes, paper, marker="s", color="black", linestyle="--", label="paper, 4-core Ryzen 3 3200G")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(sizes))
    ax.set_xticklabels([f"{s}^2" for s in sizes])
    ax.set_xlabel("image size (3 channels, batch 1)")
    ax.set_ylabel("seconds per image")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=6)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
