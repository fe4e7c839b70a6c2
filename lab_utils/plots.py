"""Figures of a fine-tuning run. Each function returns a matplotlib Figure
(not attached to pyplot, so a notebook shows it once and nothing leaks)."""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from .data import SPLIT_NAMES
from .french import fr_number, fr_percent
from .train import History


class FrenchFormatter(ScalarFormatter):
    """Matplotlib's tick labels with a decimal comma (and no offset text in English style)."""

    def __call__(self, x, pos=None):
        return super().__call__(x, pos).replace(".", ",").replace("\N{MINUS SIGN}", "-")


def french_axes(ax) -> None:
    """French decimal commas on both axes' tick labels."""
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FrenchFormatter(useOffset=False))


class LabFigure(Figure):
    """A Figure that Jupyter shows as a PNG image even if the inline backend is not active.

    Without pyplot, IPython has no PNG formatter for figures until ``%matplotlib inline``
    runs: a notebook would print "<Figure size 800x400 with 1 Axes>" instead of the plot."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def moving_average(values, window: int = 10) -> np.ndarray:
    """Mean of the last ``window`` values at each step (fewer at the start)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return values
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (cumsum[idx] - cumsum[lo]) / (idx - lo)


def plot_loss(history: History, window: int = 10, title: str = "Perte d'entraînement par lot") -> Figure:
    """La perte (entropie croisée) de chaque lot, brute et lissée (moyenne glissante sur
    ``window`` lots), avec les pertes de validation s'il y en a. Renvoie la figure."""
    fig = LabFigure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    steps = np.arange(1, history.num_batches + 1)
    ax.plot(steps, history.batch_losses, color="tab:blue", alpha=0.35, lw=1, label="perte du lot")
    ax.plot(steps, moving_average(history.batch_losses, window), color="tab:blue", lw=2,
            label=f"moyenne glissante ({window} lots)")
    if history.val_losses:
        ax.plot(history.val_steps, history.val_losses, "o", color="tab:orange", label="perte de validation")
    ax.set(xlabel="lot", ylabel="entropie croisée", title=title)
    ax.set_xlim(0, max(1, history.num_batches) + 1)
    french_axes(ax)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_accuracies(history: History, accuracies: Mapping[str, float],
                    title: str = "Exactitude courante pendant l'époque et exactitude du modèle final") -> Figure:
    """L'exactitude courante pendant l'époque, à côté des exactitudes du modèle final.

    ``accuracies`` associe un jeu (``"train"``, ``"val"``, ``"test"``) à une exactitude
    entre 0 et 1. Renvoie la figure.
    """
    fig = LabFigure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[3, 2.4])
    steps = np.arange(1, history.num_batches + 1)
    left.plot(steps, np.asarray(history.running_train_acc) * 100, color="tab:blue",
              label="exactitude courante (entraînement)")
    colors = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}
    for name, acc in accuracies.items():
        left.axhline(acc * 100, ls="--", color=colors.get(name, "gray"),
                     label=f"modèle final, {SPLIT_NAMES.get(name, name)}")
    left.set(xlabel="lot", ylabel="exactitude (%)", ylim=(0, 101),
             title="Exactitude courante pendant l'époque")
    french_axes(left)
    left.grid(alpha=0.3)
    left.legend(loc="lower right", fontsize=8)

    names = ["courante\n(époque)"] + [f"finale\n{SPLIT_NAMES.get(n, n)}" for n in accuracies]
    values = [history.final_running_train_acc * 100] + [a * 100 for a in accuracies.values()]
    bar_colors = ["lightsteelblue"] + [colors.get(n, "gray") for n in accuracies]
    bars = right.bar(names, values, color=bar_colors)
    right.bar_label(bars, labels=[fr_percent(v, 1, scale=1) for v in values], fontsize=9)
    right.set(ylim=(0, 105), ylabel="exactitude (%)", title="Comparaison")
    right.tick_params(axis="x", labelsize=8)
    right.yaxis.set_major_formatter(FrenchFormatter(useOffset=False))
    fig.suptitle(title)
    return fig


def plot_parameter_counts(models=("gpt2-small", "gpt2-medium"), num_classes: int = 2, lora=None) -> Figure:
    """Barres empilées par modèle : plongements, blocs, tête et LoRA, en millions de
    paramètres (comptés sur le périphérique ``meta``, sans mémoire). Renvoie la figure."""
    from .config import LoRAConfig, gpt_config
    from .lora import add_lora
    from .model import build_model, replace_head

    parts = {"plongements": [], "blocs": [], "tête": [], "LoRA": []}
    for name in models:
        model = build_model(gpt_config(name), device="meta")
        replace_head(model, num_classes)
        add_lora(model, lora or LoRAConfig())
        counts = {k: 0 for k in parts}
        for pname, p in model.named_parameters():
            key = ("LoRA" if ".lora." in pname else "plongements" if pname.startswith(("tok_emb", "pos_emb"))
                   else "tête" if pname.startswith("out_head") else "blocs")
            counts[key] += p.numel()
        for key in parts:
            parts[key].append(counts[key] / 1e6)
    fig = LabFigure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    bottom = np.zeros(len(models))
    for (key, values), color in zip(parts.items(), ["tab:gray", "tab:blue", "tab:orange", "tab:red"]):
        bars = ax.bar(models, values, bottom=bottom, color=color, label=key)
        if key == "LoRA":
            total = bottom + values
            ax.bar_label(bars, labels=[f"LoRA {fr_number(v, 2)} M ({fr_percent(v / t, 3)})"
                                       for v, t in zip(values, total)], padding=3)
        bottom += values
    ax.set(ylabel="millions de paramètres", title=f"Composition des modèles (tête à {num_classes} classes, LoRA)")
    ax.yaxis.set_major_formatter(FrenchFormatter(useOffset=False))
    ax.margins(y=0.1)  # room for the LoRA labels above the bars
    ax.legend(loc="upper left")
    return fig
