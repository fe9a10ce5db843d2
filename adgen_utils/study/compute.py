"""Quality against training compute: when does fine-tuning a pretrained transformer overtake the
LSTMs trained from scratch?

Notebooks 03, 04 and 06 (and ``adgen bench compute``) score the same first validation ads with
notebook 07's footing at every checkpoint and write ``quality_curve.csv`` beside each model
(:data:`adgen_utils.models.CURVE_COLUMNS`): bits per character, per-word perplexity and top-5 next-word
accuracy against the budget spent so far, in pure training seconds on the machine that trained it
and in training FLOPs (which carry to other hardware). A few-shot model has no training budget: it is
a flat line. :func:`overtaking` finds the budget at which the fine-tuned model's bits per character
first falls below the best any LSTM reached; pretraining, which the fine-tuned model starts from, is
not counted.

Units: seconds, FLOPs (floating-point operations, multiply + add = 2), bits per character.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import NullFormatter

from adgen_utils.figures import save_figure, subplots
from adgen_utils.layout import QUALITY_CURVE_FILE, model_dir

CONTENDERS = {"03_lstm": "one-hot LSTM (03)", "04_embedding_lstm": "Embedding LSTM (04)"}
CHALLENGER = {"06_fine_tuning": "fine-tuned transformer (06)"}
BUDGETS = {"train_seconds": "training seconds", "train_flops": "training FLOPs"}


def run_curves(run_dir: str | Path) -> pd.DataFrame:
    """The quality curves the run's trained models left (``quality_curve.csv`` in each model
    folder), one frame with a ``model`` column (``CONTENDERS`` and ``CHALLENGER`` labels); empty
    when none was trained with one."""
    frames = []
    for notebook, label in {**CONTENDERS, **CHALLENGER}.items():
        path = model_dir(run_dir, notebook) / QUALITY_CURVE_FILE
        if path.is_file():
            frames.append(pd.read_csv(path).assign(model=label))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["model"])


def best_contender(curves: pd.DataFrame) -> dict | None:
    """The lowest bits per character any LSTM reached: ``model``, ``bits_per_char`` and its budget
    (``train_seconds``, ``train_flops``); None without an LSTM curve."""
    lstm = curves[curves["model"].isin(CONTENDERS.values())]
    if lstm.empty:
        return None
    best = lstm.loc[lstm["bits_per_char"].idxmin()]
    return {key: best[key] for key in ("model", "bits_per_char", "train_seconds", "train_flops")}


def _crossing(budgets: np.ndarray, values: np.ndarray, target: float) -> float | None:
    """The budget at which ``values`` (by increasing budget) first falls below ``target``,
    interpolated linearly in log budget (linearly from a budget of 0); None if it never does."""
    for i, value in enumerate(values):
        if value < target:
            if i == 0:
                return float(budgets[0])
            b0, b1, v0 = budgets[i - 1], budgets[i], values[i - 1]
            share = (v0 - target) / (v0 - value)
            if b0 <= 0:
                return float(b0 + share * (b1 - b0))
            return float(math.exp(math.log(b0) + share * (math.log(b1) - math.log(b0))))
    return None


def overtaking(curves: pd.DataFrame) -> dict:
    """When the fine-tuned model overtakes the best LSTM: ``best_lstm`` (:func:`best_contender`),
    ``at_seconds`` and ``at_flops`` (the fine-tuning budget where its bits per character first fall
    below the best LSTM's; None if they never do), ``finetuned_bits_per_char`` (its last point),
    ``margin`` (1 - fine-tuned / best LSTM at the last point: 0.1 means 10% fewer bits) and
    ``finetuned_budget`` (seconds and FLOPs of its last point)."""
    best = best_contender(curves)
    tuned = curves[curves["model"].isin(CHALLENGER.values())].sort_values("step")
    if best is None or tuned.empty:
        return {"best_lstm": best, "at_seconds": None, "at_flops": None}
    last = tuned.iloc[-1]
    values = tuned["bits_per_char"].to_numpy(dtype=float)
    return {
        "best_lstm": best,
        "at_seconds": _crossing(tuned["train_seconds"].to_numpy(dtype=float), values, best["bits_per_char"]),
        "at_flops": _crossing(tuned["train_flops"].to_numpy(dtype=float), values, best["bits_per_char"]),
        "finetuned_bits_per_char": float(last["bits_per_char"]),
        "margin": float(1 - last["bits_per_char"] / best["bits_per_char"]),
        "finetuned_budget": {"train_seconds": float(last["train_seconds"]), "train_flops": float(last["train_flops"])},
    }


def plot_quality_vs_compute(
    curves: pd.DataFrame, flat: dict[str, float] | None = None, figures_dir=None, name: str = "07_quality_vs_compute"
):
    """Bits per character on the validation ads against training seconds (left) and training FLOPs
    (right), log scale, one line per model with a marker per checkpoint; ``flat`` (label -> bits per
    character) adds a dashed line per model that needs no training (few-shot). Points before any
    training (budget 0) are left out of the log axes."""
    fig, axes = subplots(1, 2, figsize=(13, 4.2), sharey=True)
    trained = curves[(curves["train_seconds"] > 0) & (curves["train_flops"] > 0)]
    for axis, (budget, label) in zip(axes, BUDGETS.items()):
        sns.lineplot(trained, x=budget, y="bits_per_char", hue="model", marker="o", ax=axis)
        for (flat_label, value), style in zip((flat or {}).items(), ["--", ":", "-."]):
            axis.axhline(value, linestyle=style, color="grey", label=flat_label)
        axis.set(xscale="log", xlabel=label, ylabel="bits per character (validation)")
        axis.xaxis.set_minor_formatter(NullFormatter())  # decades only: minor labels would overlap
        axis.legend(fontsize=8)
    seconds_note = "seconds on the machine that trained each model"
    fig.suptitle(f"quality against training compute ({seconds_note}; pretraining not counted)")
    fig.tight_layout()
    save_figure(fig, figures_dir, name)
    return fig


def _budget_words(seconds: float) -> str:
    return f"{seconds:,.0f} s" if seconds < 120 else f"{seconds / 60:,.1f} min"


def reading(curves: pd.DataFrame, flat: dict[str, float] | None = None) -> str:
    """What the curves say, from their numbers (Markdown bullets)."""
    found = overtaking(curves)
    best = found["best_lstm"]
    if best is None or "margin" not in found:
        return "* Fewer than the two curves needed: train notebook 04 (or 03) and 06 to compare them."
    lines = [
        f"* Best LSTM: **{best['model']}**, {best['bits_per_char']:.3f} bits per character after "
        f"{_budget_words(best['train_seconds'])} ({best['train_flops']:.2g} FLOPs) of training.",
    ]
    tuned = found["finetuned_budget"]
    last = (
        f"{found['finetuned_bits_per_char']:.3f} bits per character after {_budget_words(tuned['train_seconds'])} "
        f"({tuned['train_flops']:.2g} FLOPs)"
    )
    if found["at_seconds"] is None:
        lines.append(
            f"* The fine-tuned transformer does not overtake it within this run: {last}, "
            f"{-found['margin']:.0%} more bits than the best LSTM."
        )
    else:
        lines.append(
            f"* The fine-tuned transformer overtakes it after about {_budget_words(found['at_seconds'])} "
            f"({found['at_flops']:.2g} FLOPs) of fine-tuning and ends at {last}: "
            f"{found['margin']:.0%} fewer bits than the best LSTM."
        )
    for label, value in (flat or {}).items():
        lines.append(f"* {label}, with no training: {value:.3f} bits per character.")
    return "\n".join(lines)
