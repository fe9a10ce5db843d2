"""Quality against training compute: when does fine-tuning overtake the LSTMs trained from scratch?

Reads each model's ``quality_curve.csv`` (:data:`adgen_utils.models.CURVE_COLUMNS`). Units: seconds,
FLOPs (multiply + add = 2), bits per character; pretraining is not counted."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import NullFormatter

from adgen_utils.figures import finish, subplots
from adgen_utils.layout import EMBEDDING_LSTM, FINETUNED, ONE_HOT_LSTM, QUALITY_CURVE_FILE, model_dir

# Model folder (layout) -> the label its curve gets.
CONTENDERS = {ONE_HOT_LSTM: "one-hot LSTM", EMBEDDING_LSTM: "Embedding LSTM"}
CHALLENGER = {FINETUNED: "fine-tuned transformer"}
BUDGETS = {"train_seconds": "training seconds", "train_flops": "training FLOPs"}


def run_curves(run_dir: str | Path) -> pd.DataFrame:
    """The run's quality curves in one frame with a ``model`` column (empty when none was written)."""
    frames = []
    for folder, label in {**CONTENDERS, **CHALLENGER}.items():
        path = model_dir(run_dir, folder) / QUALITY_CURVE_FILE
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
    """When the fine-tuned model's bits per character first fall below the best LSTM's: ``best_lstm``,
    ``at_seconds``, ``at_flops`` (None: never), ``finetuned_bits_per_char``, ``margin``, ``finetuned_budget``."""
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


def plot_quality_vs_compute(curves: pd.DataFrame, flat: dict[str, float] | None, figures_dir, name: str):
    """Validation bits per character against training seconds and FLOPs (log axes), one line per model;
    ``flat`` (label -> bits per character) adds a dashed line per untrained model."""
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
    return finish(fig, figures_dir, name)
