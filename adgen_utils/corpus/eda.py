"""Corpus statistics and figures for notebook 01 (exploratory data analysis).

:func:`profile_corpus` tokenizes the cleaned ads once; the other functions turn that
profile into tables and (seaborn) figures. Nothing here reads files.
"""

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
from adgen_utils.corpus.text import is_word, tokenize
from adgen_utils.figures import save_figure, subplots

# Function words that crowd out the informative ones in a word-frequency chart.
STOPWORDS = frozenset(["for", "with", "and", "the", "of", "to", "in", "a", "an", "on", "by", "or", "from", "is", "x"])
# Openers that sellers put before the brand ("New Sony ...", "Replacement Remote for ...").
GENERIC_OPENERS = frozenset(
    [
        "new",
        "compatible",
        "replacement",
        "for",
        "with",
        "the",
        "a",
        "an",
        "original",
        "genuine",
        "universal",
        "premium",
        "upgraded",
        "upgrade",
        "brand",
        "oem",
        "authentic",
        "official",
        "certified",
        "hot",
        "sale",
        "latest",
        "pack",
        "set",
        "pcs",
        "replaced",
    ]
)
ORIGINAL_OOM_ADS = 25_000


@dataclass
class CorpusProfile:
    """Everything the EDA needs, gathered in one pass over the ads (no token lists kept).

    ``characters``, ``tokens`` and ``words`` are per-ad counts (int32 arrays, corpus order);
    ``growth`` is the vocabulary-growth curve from :func:`profile_corpus`.
    """

    token_counts: Counter
    brands: Counter
    characters: np.ndarray
    tokens: np.ndarray
    words: np.ndarray
    growth: pd.DataFrame


def brand_of(words: Sequence[str]) -> str | None:
    """The brand of an ad from its words (punctuation tokens left out): the first word that is not a
    number or a generic opener ("New", "Compatible", "Replacement"); Amazon titles start with it."""
    return next((w for w in words if w.lower() not in GENERIC_OPENERS and not w[0].isdigit()), None)


def one_hot_gib(windows, vocabulary):
    """GiB of float32 one-hot arrays for the original model: (windows, 4, V) inputs + (windows, V) targets."""
    return one_hot_bytes(windows, vocabulary) / 2**30


def profile_corpus(ads: Sequence[str], growth_points: int = 40, seed: int = 0, progress: bool = False) -> CorpusProfile:
    """Tokenize every ad once, in a seeded random order, and gather counts and the growth curve.

    The growth curve has one row per log-spaced number of ads n: ``ads``, ``tokens`` (running
    total), ``distinct_tokens`` and ``one_hot_gib`` (the original's one-hot arrays for n ads).
    """
    n = len(ads)
    order = np.random.default_rng(seed).permutation(n)
    checkpoints = set(np.unique(np.geomspace(1, max(n, 1), growth_points).astype(int)).tolist())
    token_counts: Counter = Counter()
    brands: Counter = Counter()
    characters = np.zeros(n, dtype=np.int32)
    token_lengths = np.zeros(n, dtype=np.int32)
    word_lengths = np.zeros(n, dtype=np.int32)
    total = 0
    rows = []
    iterator = order
    if progress:
        iterator = tqdm(order, desc="tokenizing", unit="ad", mininterval=1.0)
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


def corpus_statistics(profile: CorpusProfile) -> pd.Series:
    """The original study's corpus figures: ads, characters, tokens, distinct tokens, words..."""
    counts = profile.token_counts
    words = {t: c for t, c in counts.items() if is_word(t)}
    n_ads = len(profile.characters)
    n_tokens = int(profile.tokens.sum())
    return pd.Series(
        {
            "ads": n_ads,
            "characters": int(profile.characters.sum()),
            "tokens": n_tokens,
            "distinct tokens": len(counts),
            "words": int(profile.words.sum()),
            "distinct words": len(words),
            "distinct words (case-folded)": len({w.lower() for w in words}),
            "tokens seen once": sum(1 for c in counts.values() if c == 1),
            "tokens per ad (mean)": round(n_tokens / max(n_ads, 1), 2),
        },
        dtype=object,
    )


def ad_lengths(profile: CorpusProfile) -> pd.DataFrame:
    """One row per ad: ``characters`` and ``words`` (word tokens, punctuation excluded)."""
    return pd.DataFrame({"characters": profile.characters, "words": profile.words})


def top_words(profile: CorpusProfile, n: int = 20) -> pd.DataFrame:
    """The ``n`` most frequent words, case-folded, without stopwords and bare numbers."""
    folded: Counter = Counter()
    for token, count in profile.token_counts.items():
        if is_word(token) and not token.isdigit() and token.lower() not in STOPWORDS:
            folded[token.lower()] += count
    return pd.DataFrame(folded.most_common(n), columns=["word", "count"])


def top_brands(profile: CorpusProfile, n: int = 20) -> pd.DataFrame:
    """The ``n`` most frequent brands, taken as the first word of an ad that is not a number or a
    generic opener ("New", "Compatible", "Replacement"): on Amazon, titles start with the brand."""
    return pd.DataFrame(profile.brands.most_common(n), columns=["brand", "ads"])


def heaps_fit(growth: pd.DataFrame, min_ads: int = 100) -> tuple[float, float]:
    """Fit Heaps' law, distinct = k * ads ** beta, on the curve's points past ``min_ads``; return (k, beta)."""
    part = growth[growth["ads"] >= min_ads]
    if len(part) < 2:
        part = growth
    beta, log_k = np.polyfit(np.log(part["ads"]), np.log(part["distinct_tokens"]), 1)
    return float(np.exp(log_k)), float(beta)


def leaking_products(ads: pd.DataFrame) -> int:
    """How many products (``product_key``) have ads in more than one split; 0 when the split does not leak."""
    return int(ads.groupby("product_key")["split"].nunique().gt(1).sum())


def one_hot_projection(growth: pd.DataFrame, ads_counts) -> pd.DataFrame:
    """For corpora of ``ads_counts`` ads (one row each): the vocabulary Heaps' law projects from the
    ``growth`` curve (:func:`heaps_fit`, rounded to 100 tokens) and the GiB of the original's float32
    one-hot arrays for the windows of that many ads (at this corpus's tokens per ad)."""
    k, beta = heaps_fit(growth)
    tokens_per_ad = growth["tokens"].iloc[-1] / growth["ads"].iloc[-1]
    table = pd.DataFrame({"ads": np.asarray(ads_counts)})
    table["vocabulary (Heaps fit)"] = (k * table["ads"] ** beta).round(-2).astype(int)
    table["one-hot GiB"] = one_hot_gib(window_count(table["ads"] * tokens_per_ad), table["vocabulary (Heaps fit)"])
    return table


def findings(report: dict, ads: pd.DataFrame, profile: CorpusProfile, memory_gib: float | None = None) -> str:
    """Notebook 01's "What this tells us" as Markdown bullets, computed from this run: whether the load
    ``report`` adds up and the split leaks (``ads`` from ``data.load_ads``), ad lengths and tokens with
    digits (``profile``), the vocabulary's growth and the original's one-hot memory where it failed and
    for the full corpus, beside ``memory_gib`` (this machine's, GiB; None: not said)."""
    read, kept, dropped = report["rows_read"], report["rows_kept"], sum(report["dropped"].values())
    leaking = leaking_products(ads)
    counts = profile.token_counts
    with_digit = sum(1 for token in counts if any(c.isdigit() for c in token)) / max(len(counts), 1)
    once = sum(1 for count in counts.values() if count == 1) / max(len(counts), 1)
    k, beta = heaps_fit(profile.growth)
    gib = one_hot_projection(profile.growth, [ORIGINAL_OOM_ADS, FULL_CORPUS_ADS])["one-hot GiB"]
    here = f", against {memory_gib:,.0f} GiB of memory on this machine" if memory_gib else ""
    bullets = [
        (
            f"The load report accounts for every one of the {read:,} rows read ({kept:,} kept, {dropped:,} dropped "
            "with a reason)"
            if read == kept + dropped
            else f"The load report does not add up: {read:,} rows read, {kept:,} kept, {dropped:,} dropped"
        )
        + (
            "; no product has ads in more than one split, so held-out numbers in notebooks 03 to 07 measure "
            "generalisation to new products, not memory of colours."
            if leaking == 0
            else f"; but products with ads in more than one split: {leaking:,}, which flatters held-out numbers."
        ),
        f"An ad has a median of {np.median(profile.words):.0f} words ({np.median(profile.characters):.0f} "
        f"characters). {with_digit:.0%} of the {len(counts):,} distinct tokens contain a digit (model numbers, "
        f"sizes, counts) and {once:.0%} occur only once.",
        f"Heaps' law fits the vocabulary's growth as V ≈ {k:.1f}·n^{beta:.2f}: each tenfold increase in ads "
        f"multiplies the vocabulary by {10**beta:.1f}, and the original's one-hot arrays (windows × V) by "
        f"{10 ** (1 + beta):.0f}.",
        f"The original's one-hot inputs and targets over that vocabulary would take {gib.iloc[0]:,.1f} GiB at the "
        f"{ORIGINAL_OOM_ADS:,} ads where it ran out of memory and {gib.iloc[1]:,.1f} GiB for the full "
        f"{FULL_CORPUS_ADS:,}-ad corpus{here}: notebook 02 replaces them with integer ids and sparse targets.",
    ]
    return "\n".join(f"* {bullet}" for bullet in bullets)


def plot_load_report(ads: pd.DataFrame, report: dict, figures_dir=None, max_categories: int = 40):
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
    fig.tight_layout()
    save_figure(fig, figures_dir, "01_ads_per_category")
    return fig


def plot_ad_lengths(lengths: pd.DataFrame, figures_dir=None):
    """Histograms of characters and words per ad (``lengths`` from :func:`ad_lengths`), median marked."""

    fig, axes = subplots(1, 2, figsize=(12, 3.8))
    for ax, column, bins in zip(axes, ["characters", "words"], [60, 50]):
        sns.histplot(lengths, x=column, bins=bins, ax=ax)
        median = float(lengths[column].median()) if len(lengths) else 0.0
        ax.axvline(median, color="C3", linestyle="--", label=f"median {median:.0f}")
        ax.set(xlabel=f"{column} per ad", ylabel="ads")
        ax.legend()
    fig.suptitle("Ad length distribution")
    fig.tight_layout()
    save_figure(fig, figures_dir, "01_ad_lengths")
    return fig


def plot_top_words(words: pd.DataFrame, brands: pd.DataFrame, figures_dir=None):
    """Horizontal bars, most frequent on top: words (:func:`top_words`) and brands (:func:`top_brands`)."""

    rows = max(len(words), len(brands), 1)
    fig, (left, right) = subplots(1, 2, figsize=(12, 0.25 * rows + 1.5))
    sns.barplot(words, x="count", y="word", color="C0", ax=left)
    left.set(xlabel="occurrences", ylabel="", title="Most frequent words (case-folded, no stopwords)")
    sns.barplot(brands, x="ads", y="brand", color="C2", ax=right)
    right.set(xlabel="ads", ylabel="", title="Most frequent brands (first word, after 'New', 'Compatible'...)")
    fig.tight_layout()
    save_figure(fig, figures_dir, "01_top_words_brands")
    return fig


def plot_vocabulary_growth(growth: pd.DataFrame, figures_dir=None, memory_gib: float | None = None):
    """Distinct tokens against ads (with a Heaps' law extrapolation) and the one-hot memory it implies."""
    k, beta = heaps_fit(growth)
    reach = np.geomspace(growth["ads"].iloc[-1], FULL_CORPUS_ADS, 30)
    projection = one_hot_projection(growth, reach)
    projected, projected_gib = projection["vocabulary (Heaps fit)"], projection["one-hot GiB"]

    fig, (left, right) = subplots(1, 2, figsize=(13, 4.2))
    left.plot(growth["ads"], growth["distinct_tokens"], "o-", ms=3, label="measured")
    left.plot(reach, projected, "--", color="grey", label=f"Heaps' law fit, V = {k:.1f}·n^{beta:.2f}")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("ads")
    left.set_ylabel("distinct tokens (vocabulary)")
    left.set_title("Vocabulary keeps growing with the corpus")
    left.axvline(ORIGINAL_OOM_ADS, color="C3", linestyle=":", label="original ran out of memory (25k ads)")
    left.legend(fontsize=8)

    right.plot(growth["ads"], growth["one_hot_gib"], "o-", ms=3, label="measured corpus")
    right.plot(reach, projected_gib, "--", color="grey", label="extrapolated")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("ads")
    right.set_ylabel("GiB (float32)")
    right.set_title(f"One-hot arrays of the original {ORIGINAL_WINDOW}-word windows")
    right.axvline(ORIGINAL_OOM_ADS, color="C3", linestyle=":")
    if memory_gib:
        right.axhline(memory_gib, color="black", linewidth=0.8, label=f"this machine's RAM ({memory_gib:.0f} GiB)")
    right.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, figures_dir, "01_vocabulary_growth")
    return fig
