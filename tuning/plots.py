"""Loss curves and evaluation charts: PNG files (matplotlib) and terminal plots (plotext)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from router.departments import DEPARTMENTS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_png(train: Sequence[float], validation: Sequence[float], path: Path, title: str = "tuning loss",
             ylabel: str = "loss (per answer token)") -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    epochs = range(1, len(train) + 1)
    ax.plot(epochs, train, marker="o", label="train")
    if validation and any(v == v for v in validation):
        ax.plot(range(1, len(validation) + 1), validation, marker="s", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def loss_terminal(train: Sequence[float], validation: Sequence[float], width: int = 70, height: int = 15) -> str:
    import plotext as plx

    plx.clear_figure()
    plx.plotsize(width, height)
    plx.plot(list(range(1, len(train) + 1)), list(train), label="train", marker="braille")
    if validation and any(v == v for v in validation):
        plx.plot(list(range(1, len(validation) + 1)), list(validation), label="validation", marker="braille")
    plx.title("loss per epoch")
    plx.xlabel("epoch")
    plx.theme("clear")
    return plx.build()


def f1_png(reports: dict[str, dict], path: Path, title: str = "per-department F1") -> Path:
    """Grouped bars: one group per department, one bar per strategy."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4), dpi=110)
    names = list(reports)
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        values = [reports[name]["per_department"][d]["f1"] for d in DEPARTMENTS]
        ax.bar([x + i * width for x in range(len(DEPARTMENTS))], values, width, label=f"{name} ({reports[name]['exact_set_accuracy']:.2f})")
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(DEPARTMENTS))], DEPARTMENTS)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.set_title(title + " (legend: exact-set accuracy)")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def f1_terminal(reports: dict[str, dict], width: int = 90, height: int = 20) -> str:
    import plotext as plx

    plx.clear_figure()
    plx.plotsize(width, height)
    short = [d[:5] for d in DEPARTMENTS]
    plx.multiple_bar(short, [[reports[n]["per_department"][d]["f1"] for d in DEPARTMENTS] for n in reports],
                     labels=list(reports))
    plx.title("per-department F1")
    plx.theme("clear")
    return plx.build()
