"""Learning curves as a PNG, and a grid of panels (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchlab.files import write_with


def learning_curves(history: list[dict[str, Any]], path: Path) -> Path:
    """Plot per-epoch loss, each validation metric and the learning rate against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r for r in history if "train/loss" in r]
    metrics = sorted({k for r in epochs for k in r if k.startswith("val/") and k != "val/loss"})
    panels = ["loss", *metrics, "lr"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    x = [r["epoch"] + 1 for r in epochs]
    for ax, panel in zip(axes[0], panels, strict=True):
        keys = ["train/loss", "val/loss"] if panel == "loss" else [panel]
        for key in keys:
            ys = [r.get(key) for r in epochs]
            if any(y is not None for y in ys):
                ax.plot(x, ys, marker="o", markersize=3, label=key)
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if panel == "lr" and any((r.get("lr") or 0) > 0 for r in epochs):
            ax.set_yscale("log")  # matplotlib warns on a log axis without positive values
        if panel == "loss":
            ax.legend()
    fig.tight_layout()
    write_with(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path


def panel_grid(
    plt: Any, panels: int, cols: int, size: tuple[float, float]
) -> tuple[Any, list[Any]]:
    """A figure of ``panels`` axes in rows of at most ``cols``, each ``size`` inches; spares hidden."""
    cols = min(cols, panels)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    for ax in axes.ravel()[panels:]:
        ax.axis("off")
    return fig, list(axes.ravel()[:panels])
