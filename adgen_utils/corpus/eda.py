"""Corpus profile and figures for the corpus lesson (exploratory data analysis). Reads no files."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import seaborn as sns
from tqdm.auto import tqdm

from adgen_utils.corpus.data import FULL_CORPUS_ADS
from adgen_utils.corpus.sequences import ORIGINAL_WINDOW, one_hot_bytes, window_count
from adgen_utils.corpus.text import brand_of, is_word, tokenize
from adgen_utils.figures import finish, subplots

ORIGINAL_OOM_ADS = 25_000  # where the original study's one-hot LSTM ran out of memory


@dataclass
class CorpusProfile:
    """Per-ad counts (``characters``, ``tokens``, ``words``: int32, corpus order) and the ``growth`` curve."""

    token_counts: Counter
    brands: Counter
    characters: np.ndarray
    tokens: np.ndarray
    words: np.ndarray
    growth: pd.DataFrame


def one_hot_gib(windows, vocabulary):
    """GiB of float32 one-hot arrays for the original model: (windows, 4, V) inputs + (windows, V) targets."""
    return one_hot_bytes(windows, vocabulary) / 2**30


def profile_corpus(ads: Sequence[str], growth_points: int = 40, seed: int = 0, progress: bool = False) -> CorpusProfile:
    """Tokenize every ad once, in a seeded random order: counts and the vocabulary-growth curve
    (``ads``, ``tokens``, ``distinct_tokens``, ``one_hot_gib`` at log-spaced numbers of ads)."""
    n = len(ads)
    order = np.random.default_rng(seed).permutation(n)
    checkpoints = set(np.unique(np.geomspace(1, max(n, 1), growth_points).astype(int)).tolist())
    token_counts, brands = Counter(), Counter()
    characters, token_lengths, word_lengths = np.zeros((3, n), dtype=np.int32)
    total = 0
    rows = []
    iterator = tqdm(order, desc="tokenizing", unit="ad", mininterval=1.0) if progress else order
    for i, index in enumerate(iterator, start=1):
        ad = ads[index]
        ad_tokens = tokenize(ad)
        words = [t for t in ad_tokens if is_word(t)]
        token_counts.update(ad_tokens)
        brand = brand_of(words)
        if brand:
            brands[brand] += 1
        characters[index] = len(ad)
        token_lengths[index] = len(ad_tokens)
        word_lengths[index] = len(words)
        total += len(ad_tokens)
        if i in checkpoints:
            vocabulary = len(token_counts)
            rows.append((i, total, vocabulary, float(one_hot_gib(window_count(total), vocabulary))))
    growth = pd.DataFrame(rows, columns=["ads", "tokens", "distinct_tokens", "one_hot_gib"])
    return CorpusProfile(token_counts, brands, characters, token_lengths, word_lengths, growth)


def one_hot_projection(ads_counts, k: float, beta: float, tokens_per_ad: float) -> pd.DataFrame:
    """Per corpus size in ``ads_counts``: the Heaps'-law vocabulary (to 100 tokens) and the GiB of the
    original's float32 one-hot windows at ``tokens_per_ad``."""
    table = pd.DataFrame({"ads": np.asarray(ads_counts)})
    table["vocabulary (Heaps fit)"] = (k * table["ads"] ** beta).round(-2).astype(int)
    table["one-hot GiB"] = one_hot_gib(window_count(table["ads"] * tokens_per_ad), table["vocabulary (Heaps fit)"])
    return table


def plot_load_report(ads: pd.DataFrame, report: dict, figures_dir, name: str, max_categories: int = 40):
    """Bars: kept ads per category (the ``max_categories`` largest), stacked by split, and rows dropped by
    reason (log scale)."""
    by_category = ads.groupby(["category", "split"], observed=True).size().unstack(fill_value=0)
    by_category = by_category.reindex(columns=["train", "validation", "test"], fill_value=0)
    by_category = by_category.loc[by_category.sum(axis=1).sort_values().index[-max_categories:]]
    fig, (left, right) = subplots(
        1, 2, figsize=(13, max(3.0, 0.22 * len(by_category) + 1.5)), gridspec_kw={"width_ratios": [3, 2]}
    )
    by_category.plot.barh(stacked=True, ax=left, width=0.8)
    left.legend(title="split", loc="lower right")
    left.set(xlabel="ads kept", ylabel="", title=f"{report['rows_kept']:,} ads kept, by category and split")
    dropped = pd.Series(report["dropped"], dtype=float).sort_values(ascending=False)
    if dropped.empty:
        right.text(0.5, 0.5, "nothing dropped", ha="center", va="center")
    else:
        sns.barplot(x=dropped.to_numpy(), y=dropped.index, color="C3", ax=right)
        right.bar_label(right.containers[0], fmt=" {:,.0f}", fontsize=8)
        right.set_xscale("log")
    right.set(
        xlabel="rows (log scale)",
        ylabel="",
        title=f"{sum(report['dropped'].values()):,} of {report['rows_read']:,} rows dropped, by reason",
    )
    return finish(fig, figures_dir, name)


def plot_ad_lengths(lengths: pd.DataFrame, figures_dir, name: str):
    """Histograms of characters and words per ad (``lengths``: one row per ad, those two columns), median marked."""
    fig, axes = subplots(1, 2, figsize=(12, 3.8))
    for ax, column, bins in zip(axes, ["characters", "words"], [60, 50]):
        sns.histplot(lengths, x=column, bins=bins, ax=ax)
        median = float(lengths[column].median()) if len(lengths) else 0.0
        ax.axvline(median, color="C3", linestyle="--", label=f"median {median:.0f}")
        ax.set(xlabel=f"{column} per ad", ylabel="ads")
        ax.legend()
    fig.suptitle("Ad length distribution")
    return finish(fig, figures_dir, name)


def plot_top_words(words: pd.DataFrame, brands: pd.DataFrame, figures_dir, name: str):
    """Horizontal bars, most frequent on top: ``words`` (columns word, count) and ``brands`` (brand, ads)."""
    rows = max(len(words), len(brands), 1)
    fig, (left, right) = subplots(1, 2, figsize=(12, 0.25 * rows + 1.5))
    sns.barplot(words, x="count", y="word", color="C0", ax=left)
    left.set(xlabel="occurrences", ylabel="", title="Most frequent words (case-folded, no stopwords)")
    sns.barplot(brands, x="ads", y="brand", color="C2", ax=right)
    right.set(xlabel="ads", ylabel="", title="Most frequent brands (first word, after 'New', 'Compatible'...)")
    return finish(fig, figures_dir, name)


def plot_vocabulary_growth(growth: pd.DataFrame, k: float, beta: float, figures_dir, name: str, memory_gib=None):
    """Distinct tokens against ads with the Heaps'-law fit extrapolated, and the one-hot memory it
    implies beside ``memory_gib`` (None: not drawn)."""
    reach = np.geomspace(growth["ads"].iloc[-1], FULL_CORPUS_ADS, 30)
    tokens_per_ad = growth["tokens"].iloc[-1] / growth["ads"].iloc[-1]
    projection = one_hot_projection(reach, k, beta, tokens_per_ad)

    fig, (left, right) = subplots(1, 2, figsize=(13, 4.2))
    left.plot(growth["ads"], growth["distinct_tokens"], "o-", ms=3, label="measured")
    left.plot(
        reach,
        projection["vocabulary (Heaps fit)"],
        "--",
        color="grey",
        label=f"Heaps' law fit, V = {k:.1f}·n^{beta:.2f}",
    )
    left.set(xscale="log", yscale="log", xlabel="ads", ylabel="distinct tokens (vocabulary)")
    left.set_title("Vocabulary keeps growing with the corpus")
    left.axvline(ORIGINAL_OOM_ADS, color="C3", linestyle=":", label="original ran out of memory (25k ads)")
    left.legend(fontsize=8)

    right.plot(growth["ads"], growth["one_hot_gib"], "o-", ms=3, label="measured corpus")
    right.plot(reach, projection["one-hot GiB"], "--", color="grey", label="extrapolated")
    right.set(xscale="log", yscale="log", xlabel="ads", ylabel="GiB (float32)")
    right.set_title(f"One-hot arrays of the original {ORIGINAL_WINDOW}-word windows")
    right.axvline(ORIGINAL_OOM_ADS, color="C3", linestyle=":")
    if memory_gib:
        right.axhline(memory_gib, color="black", linewidth=0.8, label=f"this machine's RAM ({memory_gib:.0f} GiB)")
    right.legend(fontsize=8)
    return finish(fig, figures_dir, name)
