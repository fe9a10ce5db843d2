"""Stage 7: every model of the series on one footing (notebook 07, ``adgen evaluate``).

*Scoring*: each model reads the same test ads and is measured in the same units, from its own
log-probabilities (see :mod:`adgen_utils.models`): next-word top-1 / top-5 accuracy, per-word
perplexity ``exp(-log P(ads) / predictions)`` (a prediction is a word or punctuation mark, plus
each ad's end) and bits per character ``-log2 P(ads) / characters``. A closed-vocabulary model is
charged for its unknown words (never a hit, P(<unk>) × P(spelling)) and its out-of-vocabulary share
is reported.

*Generation quality*: ads written from a fixed set of test prompts (brand + product type):
distinct-1/2, self-BLEU (sacrebleu), novelty against the training split, repetition, length
against real ads, and brand consistency (a generated ad naming a brand that the prompt's brand is
never named with in the training ads).

Every model is used through :class:`adgen_utils.models.AdModel`: a prompt a model refuses is a
:class:`adgen_utils.models.Refusal` in its cell (shown as ``(no ad: reason)``), left out of the
measures and counted as ``refused``. :func:`ads_side_by_side` is the one table of every model's ads
for the same prompts (notebook 07's tables, the playground).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from adgen_utils.corpus.data import TEXT_COLUMN, CleanConfig, drop_reason, normalize_ad, read_ads_file
from adgen_utils.corpus.text import repeated_word_share
from adgen_utils.errors import CorpusFormatError
from adgen_utils.figures import save_figure, subplots
from adgen_utils.models import DECODINGS, AdModel, Decoding, Refusal, ads_only, categories_for, summarize_scores
from adgen_utils.parameters import DEFAULT_DECODING
from adgen_utils.study.products import BrandLexicon
from adgen_utils.study.selection import RULES, AdRules, ProductAds, normal, write_for_products

# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


def evaluate_ad_model(
    model: AdModel, ads: Sequence[str], categories: Sequence[str | None] | None = None, progress: bool = False
) -> dict:
    """The footing's metrics of one model on ad texts (see :func:`summarize_scores`), after its
    description (:class:`adgen_utils.models.ModelDescription`: ``model`` its name, then ``family``,
    ``setting``, ``unknown_words_charged``, ``source``, ``reads_category``) and before ``seconds``
    (the time scoring took). ``categories`` (one per ad) go to the model only if it reads them."""
    started = time.perf_counter()
    description = asdict(model.describe())
    scores = model.score(list(ads), categories_for(model, categories), progress=progress)
    return {
        "model": description.pop("name"),
        **description,
        **summarize_scores(scores),
        "seconds": round(time.perf_counter() - started, 1),
    }


def read_test_csv(path) -> tuple[pd.DataFrame, dict]:
    """Ads to score from any CSV with an ``ad`` column (and optionally ``category``), read and
    cleaned by notebook 01's own rules (:func:`adgen_utils.corpus.data.read_ads_file`,
    :func:`~adgen_utils.corpus.data.normalize_ad`, :func:`~adgen_utils.corpus.data.drop_reason` with
    the default :class:`~adgen_utils.corpus.data.CleanConfig`), duplicates kept. Returns the ads
    (columns ad, category: None where the file has none) and the count of each kind of row left out
    (the keys of ``LoadReport.dropped``: malformed_quoting, invalid_utf8, empty, too_short,
    too_long, ...) — counted, never silent."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No test CSV at {path}")
    _, records = read_ads_file(path, category=None)
    rows, skipped, config = [], Counter(), CleanConfig()
    for raw, category, _line, note in records:
        cleaned = normalize_ad(raw) if raw is not None else ""
        reason = drop_reason(raw, note, cleaned, config, TEXT_COLUMN)
        if reason is None:
            rows.append({"ad": cleaned, "category": category})
        else:
            skipped[reason] += 1
    if not rows:
        raise CorpusFormatError(f"{path}: no ad to score ({dict(skipped) or 'the file has no rows'})")
    return pd.DataFrame(rows), dict(skipped)


def comparison_table(models: Sequence[AdModel], test: pd.DataFrame, progress: bool = False) -> pd.DataFrame:
    """One row per model (index: its name): :func:`evaluate_ad_model` on the same test ads (``test``
    has ``ad`` and optionally ``category``). ``setting`` and ``source`` identify a row for other
    tools (publishing finds the fine-tuned model's by its setting), never the display name."""
    categories = test["category"].tolist() if "category" in test else None
    rows = [evaluate_ad_model(m, test["ad"].tolist(), categories, progress) for m in models]
    return pd.DataFrame(rows).set_index("model")


def plot_comparison(table: pd.DataFrame, figures_dir=None, name: str = "07_comparison"):
    """Three panels, one bar per model (rows of :func:`comparison_table`): per-word perplexity (log
    scale), bits per character, and top-1 / top-5 next-word accuracy (seaborn)."""

    rows = table.reset_index()
    accuracy = rows.melt(
        id_vars="model", value_vars=["top1_accuracy", "top5_accuracy"], var_name="next word", value_name="accuracy"
    )
    accuracy["next word"] = accuracy["next word"].map({"top1_accuracy": "top-1", "top5_accuracy": "top-5"})
    fig, axes = subplots(1, 3, figsize=(14, 0.5 * len(table) + 1.8), sharey=True)
    sns.barplot(rows, x="per_word_perplexity", y="model", ax=axes[0], log_scale=True)
    sns.barplot(rows, x="bits_per_char", y="model", ax=axes[1])
    sns.barplot(accuracy, x="accuracy", y="model", hue="next word", ax=axes[2])
    axes[0].set(xlabel="per-word perplexity (lower is better)", ylabel="")
    axes[1].set(xlabel="bits per character (lower is better)")
    axes[2].set(xlabel="next-word accuracy (higher is better)", xlim=(0, 1))
    fig.suptitle(f"the same {int(table['ads'].iloc[0]):,} test ads, scored by each model")
    fig.tight_layout()
    save_figure(fig, figures_dir, name)
    return fig


# ---------------------------------------------------------------------------------------------
# Generation quality
# ---------------------------------------------------------------------------------------------


def distinct_n(ads: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the ads' lower-cased words (1: every n-gram different)."""
    grams = [tuple(words[i : i + n]) for ad in ads for words in [ad.lower().split()] for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def self_bleu(ads: Sequence[str]) -> float:
    """Mean sentence BLEU (sacrebleu, 0-100) of each ad against all the others: high when a model
    writes the same ad whatever the prompt."""
    try:
        from sacrebleu.metrics import BLEU
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "self-BLEU needs sacrebleu: pip install -e '.[evaluation]' (notebook 07's setup cell installs it on Colab)"
        ) from None

    if len(ads) < 2:
        return float("nan")
    bleu = BLEU(effective_order=True)
    return float(
        np.mean([bleu.sentence_score(ad, [o for j, o in enumerate(ads) if j != i]).score for i, ad in enumerate(ads)])
    )


def generation_quality(
    generated: dict[str, Sequence[str]], prompts: pd.DataFrame, training_ads: Sequence[str], lexicon: BrandLexicon
) -> pd.DataFrame:
    """One row per model (``generated``: model -> one ad or :class:`Refusal` per row of ``prompts``),
    plus the real test ads the prompts came from as a reference row. Columns: ads, refused (prompts
    the model refused: left out of the rest), distinct_1, distinct_2, self_bleu,
    novelty (share not found verbatim, case- and space-insensitive, in the training split),
    repetition (mean share of repeated words), mean_words, brand_conflicts (share of the checked ads
    naming a conflicting brand), brand_checked (ads whose prompt brand is in the lexicon)."""
    seen = {normal(ad) for ad in training_ads}
    rows = {}
    for name, cells in {**generated, "real test ads": prompts["ad"].tolist()}.items():
        kept = [(brand, ad) for brand, ad in zip(prompts["brand"], cells) if not isinstance(ad, Refusal)]
        ads = [ad for _, ad in kept]
        if not ads:
            rows[name] = {"ads": 0, "refused": len(cells)}
            continue
        checks = [lexicon.conflicts(brand, ad) for brand, ad in kept]
        checked = [c for c in checks if c is not None]
        rows[name] = {
            "ads": len(ads),
            "refused": len(cells) - len(ads),
            "distinct_1": distinct_n(ads, 1),
            "distinct_2": distinct_n(ads, 2),
            "self_bleu": self_bleu(ads),
            "novelty": float(np.mean([normal(a) not in seen for a in ads])),
            "repetition": float(np.mean([repeated_word_share(a) for a in ads])),
            "mean_words": float(np.mean([len(a.split()) for a in ads])),
            "brand_conflicts": float(np.mean([bool(c) for c in checked])) if checked else float("nan"),
            "brand_checked": len(checked),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


def _quality_row(ads: list[str | None], passed: list[bool], brands: Sequence[str], lexicon: BrandLexicon) -> dict:
    """One row of :func:`seller_quality`: ``ads`` (None where there is none) and whether each passed."""
    written = [(brand, ad) for brand, ad in zip(brands, ads) if ad]
    checks = [lexicon.conflicts(brand, ad) for brand, ad in written]
    checked = [c for c in checks if c is not None]
    texts = [ad for _, ad in written]
    return {
        "products": len(ads),
        "with_passing_ad": float(np.mean(passed)) if passed else float("nan"),
        "brand_conflicts": float(np.mean([bool(c) for c in checked])) if checked else float("nan"),
        "distinct_2": distinct_n(texts, 2),
        "mean_characters": float(np.mean([len(a) for a in texts])) if texts else float("nan"),
    }


def seller_quality(written: dict[str, list[ProductAds]], products: pd.DataFrame, rules: AdRules) -> pd.DataFrame:
    """What a seller would get from each model (``written``: model -> :func:`write_for_products`'s
    results for ``products``), without and with the rules: for the first candidate as the model
    wrote it (judged as written, :meth:`AdRules.judge` with ``cut`` False) and for the ad kept from
    every candidate. Columns: products, with_passing_ad (share of products), brand_conflicts (share
    of the ads naming a brand their product's brand is never named with in training; of those whose
    brand the training ads know), distinct_2 and mean_characters; the real ads the products come from
    are the reference row. Index: (model, ads)."""
    brands = products["brand"].tolist()
    rows = {}
    for name, results in written.items():
        first = [r.candidates[0] for r in results]
        raw = [None if isinstance(c.written, Refusal) else c.written for c in first]
        raw_passed = [
            ad is not None and rules.judge(ad, p, getattr(ad, "complete", True), cut=False).passed
            for ad, p in zip(raw, products.itertuples(index=False))
        ]
        count = len(results[0].candidates) if results else 0
        rows[(name, "first candidate, as written")] = _quality_row(raw, raw_passed, brands, rules.brands)
        chosen = [r.ads[0] if r.ads else None for r in results]
        rows[(name, f"best of {count}, after the rules")] = _quality_row(
            chosen, [bool(a) for a in chosen], brands, rules.brands
        )
    real = products["ad"].tolist()
    real_passed = [rules.judge(ad, p, cut=False).passed for ad, p in zip(real, products.itertuples(index=False))]
    rows[("real ads", "as written")] = _quality_row(real, real_passed, brands, rules.brands)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["model", "ads"])
    return table


def rejection_table(written: dict[str, list[ProductAds]]) -> pd.DataFrame:
    """How often each rule rejected a candidate, per model (share of its candidates; rows: models,
    columns: the rules of :data:`RULES` that rejected any)."""
    rows = {}
    for name, results in written.items():
        counts = Counter()
        for r in results:
            counts.update(r.rejections())
        total = sum(len(r.candidates) for r in results)
        rows[name] = {rule: counts[rule] / total for rule in RULES} if total else {}
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")
    return table.loc[:, (table > 0).any()] if len(table) else table


def ads_side_by_side(
    models: Sequence[AdModel],
    prompts: Sequence[str],
    decoding: Decoding,
    seed: int = 0,
    categories: Sequence[str | None] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Every model's ad for the same prompts: one row per prompt (index: the prompt), one column per
    model (its name), each cell an ad or the model's :class:`Refusal` (shown as ``(no ad: reason)``;
    :func:`adgen_utils.models.ads_only` keeps the ads). ``categories`` (one per prompt) go to the
    models that read them. For one LSTM under several decodings, see
    :func:`adgen_utils.lstm.generation.decoding_settings_table`."""
    prompts = list(prompts)
    table = {
        model.name: model.generate(
            prompts, decoding, seed=seed, categories=categories_for(model, categories), progress=progress
        )
        for model in models
    }
    return pd.DataFrame(table, index=pd.Index(prompts, name="prompt"))


def plot_generation_quality(
    quality: pd.DataFrame,
    generated: pd.DataFrame,
    real_ads: Sequence[str],
    figures_dir=None,
    name: str = "07_generation_quality",
):
    """Left: words per ad, each model's generated ads (``generated``: :func:`ads_side_by_side`,
    refusals left out) against the real test ads (box plots). Right: diversity and faithfulness per
    model (rows of :func:`generation_quality`: distinct-2, novelty, repetition, brand conflicts)."""

    cells = {"real test ads": list(real_ads), **{m: ads_only(generated[m].tolist()) for m in generated.columns}}
    lengths = pd.DataFrame(
        [(model, len(ad.split())) for model, ads in cells.items() for ad in ads], columns=["model", "words per ad"]
    )
    measures = ["distinct_2", "novelty", "repetition", "brand_conflicts"]
    shares = quality[measures].fillna(0).rename_axis("model").reset_index()
    shares = shares.melt(id_vars="model", var_name="measure", value_name="share")
    shares["measure"] = shares["measure"].str.replace("_", " ")
    fig, (left, right) = subplots(1, 2, figsize=(14, 0.55 * len(quality) + 2))
    sns.boxplot(lengths, x="words per ad", y="model", ax=left)
    left.set(ylabel="", title="length: generated vs real")
    sns.barplot(shares, x="share", y="model", hue="measure", ax=right)
    right.set(xlim=(0, 1), ylabel="", title="diversity and faithfulness")
    right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, figures_dir, name)
    return fig


def plot_seller_ads(seller: pd.DataFrame, figures_dir=None, name: str = "07_seller_ads"):
    """Per model (rows of :func:`seller_quality`), the first candidate as written beside the ad kept
    after the rules: the share of products with an ad that passes every rule (left) and the share of
    ads with a brand conflict (right)."""
    rows = seller.reset_index()
    fig, (left, right) = subplots(1, 2, figsize=(13, 0.45 * len(rows) + 1.8), sharey=True)
    sns.barplot(rows, x="with_passing_ad", y="model", hue="ads", ax=left)
    left.set(xlim=(0, 1), xlabel="products with an ad that passes every rule", ylabel="")
    sns.barplot(rows, x="brand_conflicts", y="model", hue="ads", ax=right, legend=False)
    right.set(xlim=(0, 1), xlabel="ads naming a conflicting brand")
    left.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, figures_dir, name)
    return fig


def _seller_lines(seller: pd.DataFrame) -> list[str]:
    """The reading of :func:`seller_quality`'s table, from its numbers."""
    lines = []
    for model in seller.index.get_level_values("model").unique():
        if model == "real ads":
            continue
        rows = seller.loc[model]
        if len(rows) < 2:
            continue
        first, best = rows.iloc[0], rows.iloc[1]
        lines.append(
            f"* {model}: {best['with_passing_ad']:.0%} of the products get an ad that passes every rule when the "
            f"rules choose ({rows.index[1]}), against {first['with_passing_ad']:.0%} for one sample as written; "
            f"brand conflicts {first['brand_conflicts']:.0%} → {best['brand_conflicts']:.0%}."
        )
    if ("real ads", "as written") in seller.index:
        real = seller.loc[("real ads", "as written")]
        lines.append(
            f"* The real ads the products come from pass the same rules for {real['with_passing_ad']:.0%} of them."
        )
    return lines


def reading(table: pd.DataFrame, quality: pd.DataFrame, seller: pd.DataFrame | None = None) -> str:
    """A few sentences saying what the tables show, from their numbers (Markdown)."""
    best = table["per_word_perplexity"].idxmin()
    worst = table["per_word_perplexity"].idxmax()
    accurate = table["top5_accuracy"].idxmax()
    lines = [
        f"* Lowest per-word perplexity: **{best}** ({table.loc[best, 'per_word_perplexity']:.1f}, "
        f"{table.loc[best, 'bits_per_char']:.2f} bits per character); highest: {worst} "
        f"({table.loc[worst, 'per_word_perplexity']:.1f}).",
        f"* Best next-word top-5 accuracy: **{accurate}** ({table.loc[accurate, 'top5_accuracy']:.1%}).",
    ]
    closed = table[table["oov_share"] > 0]
    if len(closed):
        lines.append(
            f"* The word-level LSTMs do not know {closed['oov_share'].max():.1%} of the test words; "
            "each costs them P(<unk>) × P(spelling), so their perplexity is not flattered by <unk>."
        )
    models = quality.drop(index="real test ads", errors="ignore")
    if len(models):
        diverse = models["distinct_2"].idxmax()
        lines.append(
            f"* Most varied generations (distinct-2): **{diverse}** ({models.loc[diverse, 'distinct_2']:.2f}"
            f"; real ads {quality.loc['real test ads', 'distinct_2']:.2f})."
        )
        conflicts = models["brand_conflicts"].dropna()
        if len(conflicts):
            lines.append(
                f"* Brand conflicts (an ad naming a brand its prompt's brand never appears with) range "
                f"from {conflicts.min():.0%} ({conflicts.idxmin()}) to {conflicts.max():.0%} "
                f"({conflicts.idxmax()})."
            )
        copied = models["novelty"].idxmin()
        if models.loc[copied, "novelty"] < 1:
            lines.append(
                f"* Least novel: {copied} (only {models.loc[copied, 'novelty']:.0%} of its ads are not "
                "copies of a training ad)."
            )
        else:
            lines.append("* No model copied a training ad verbatim (novelty 100% for every model).")
    if seller is not None:
        lines += _seller_lines(seller)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Playground
# ---------------------------------------------------------------------------------------------


def playground_decoding(max_new_tokens: int = 32) -> Decoding:
    """The playground's starting decoding: the series' default (``parameters.DEFAULT_DECODING``),
    ``max_new_tokens`` long."""
    return replace(DECODINGS[DEFAULT_DECODING], max_new_tokens=max_new_tokens)


def product_of_prompt(prompt: str, category: str | None = None) -> pd.DataFrame:
    """A one-product table (brand, product, category, prompt) from a typed prompt: its first word
    is the brand, the rest the product words."""
    words = prompt.split()
    brand, product = (words[0], " ".join(words[1:])) if words else ("", "")
    return pd.DataFrame([{"brand": brand, "product": product, "category": category, "prompt": " ".join(words)}])


def playground_table(
    models: dict,
    chosen: Sequence[str],
    prompt: str,
    decoding: Decoding,
    seed: int = 0,
    samples: int = 1,
    rules: AdRules | None = None,
    candidates: int = 1,
) -> pd.DataFrame:
    """What the playground shows for one prompt: one column per chosen model (``models`` maps a
    name to a loaded model, :func:`adgen_utils.models.load_ad_model`), ``samples`` rows. Without
    ``rules``, ``samples`` ads as written (:func:`ads_side_by_side`); with them, the prompt is a
    product (first word the brand) and each model writes ``candidates`` ads, of which the
    ``samples`` most likely that pass every rule are shown, best first, and a missing one says
    which rules rejected the candidates (:func:`adgen_utils.study.selection.write_for_products`)."""
    if not chosen:
        raise ValueError("choose at least one model")
    unknown = [name for name in chosen if name not in models]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {list(models)}")
    if rules is None:
        table = ads_side_by_side([models[name] for name in chosen], [prompt] * samples, decoding, seed=seed)
    else:
        if candidates < samples:
            raise ValueError(f"candidates ({candidates}) must be at least the ads shown ({samples})")
        product = product_of_prompt(prompt)
        columns = {}
        for name in chosen:
            (result,) = write_for_products(models[name], product, rules, candidates, samples, decoding, seed)
            missing = f"(no ad passed: {result.summary()})"
            columns[name] = [result.ads[i] if i < len(result.ads) else missing for i in range(samples)]
        table = pd.DataFrame(columns)
    table.index = pd.RangeIndex(1, samples + 1, name=f"ads for {prompt!r}")
    return table


def playground(models: dict, prompt: str = "Apple Watch Band", seed: int = 0, rules: AdRules | None = None):
    """An ipywidgets panel: choose models, type a prompt, set the decoding (and, with ``rules``, how
    many candidates the seller's rules choose from), press Generate; the ads appear side by side
    (:func:`playground_table`). Returns the panel (display it in a notebook)."""
    import ipywidgets as widgets
    from IPython.display import display

    names = list(models)
    chooser = widgets.SelectMultiple(options=names, value=tuple(names), description="models", rows=min(len(names), 6))
    text = widgets.Text(value=prompt, description="prompt")
    start = playground_decoding()  # the series' default decoding; each control below sets one field
    decoding_controls = {
        "do_sample": widgets.Checkbox(value=start.do_sample, description="sample (off: greedy)"),
        "temperature": widgets.FloatSlider(
            value=start.temperature, min=0.1, max=2.0, step=0.05, description="temperature"
        ),
        "top_k": widgets.IntSlider(value=start.top_k, min=0, max=200, description="top-k (0: none)"),
        "top_p": widgets.FloatSlider(value=start.top_p, min=0.05, max=1.0, step=0.05, description="top-p"),
        "repetition_penalty": widgets.FloatSlider(
            value=start.repetition_penalty, min=1.0, max=2.0, step=0.05, description="repetition"
        ),
        "max_new_tokens": widgets.IntSlider(value=start.max_new_tokens, min=4, max=80, description="new tokens"),
    }
    samples = widgets.IntSlider(value=2, min=1, max=5, description="ads each")
    candidates = widgets.IntSlider(value=4, min=1, max=16, description="candidates")
    apply_rules = widgets.Checkbox(value=rules is not None, description="seller's rules", disabled=rules is None)
    button = widgets.Button(description="Generate", button_style="primary")
    output = widgets.Output()

    def on_click(_):
        output.clear_output()
        with output:
            try:
                decoding = Decoding(**{field: control.value for field, control in decoding_controls.items()})
                panel.last_table = playground_table(
                    models,
                    list(chooser.value),
                    text.value,
                    decoding,
                    seed,
                    samples.value,
                    rules if apply_rules.value else None,
                    max(candidates.value, samples.value),
                )
                display(panel.last_table)
            except ValueError as error:
                panel.last_table = None
                print(f"cannot generate: {error}")

    button.on_click(on_click)
    controls = widgets.VBox([chooser, text, *decoding_controls.values(), samples, candidates, apply_rules, button])
    panel = widgets.HBox([controls, output])
    panel.last_table = None  # the table last shown (None before the first click or after an error)
    return panel
