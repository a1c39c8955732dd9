"""Training-curve figures for the example trainers (matplotlib, Agg backend)."""

from __future__ import annotations

import pathlib
from typing import Sequence


def plot_curves(rows: Sequence[dict], x: str, panels: dict[str, Sequence[str]], path: pathlib.Path,
                title: str = "") -> None:
    """One panel per entry of ``panels`` (panel title -> metric keys), ``x`` on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    xs = [r[x] for r in rows]
    for ax, (name, keys) in zip(axes[0], panels.items()):
        for key in keys:
            ax.plot(xs, [r[key] for r in rows], label=key.replace("_", " "))
        ax.set(xlabel=x, title=name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
