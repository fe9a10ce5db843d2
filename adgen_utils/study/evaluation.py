"""Generation quality: every model of the series writing ads for the same products.

Distinct-n, self-BLEU, novelty, repetition, length and brand consistency, and what a seller gets with
and without the rules of :mod:`adgen_utils.study.selection`. A prompt a model refuses is a
:class:`adgen_utils.models.Refusal` in its cell, left out of the measures and counted as ``refused``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import seaborn as sns

from adgen_utils.corpus.facts import parse_keywords
from adgen_utils.corpus.text import repeated_word_share
from adgen_utils.figures import finish, subplots
from adgen_utils.models import DECODINGS, AdModel, Decoding, Keywords, Refusal, ads_only, categories_for
from adgen_utils.settings import DEFAULT_DECODING
from adgen_utils.study.products import BrandLexicon
from adgen_utils.study.selection import RULES, AdRules, ProductAds, normal, write_for_products


def plot_comparison(table: pd.DataFrame, figures_dir, name: str):
    """Per model (rows of the footing): per-word perplexity (log), bits per character, top-1 / top-5 accuracy."""
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
    return finish(fig, figures_dir, name)


# Generation quality ---


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
            "self-BLEU needs sacrebleu: pip install -e '.[evaluation]' (the evaluation lesson's setup cell installs it on Colab)"
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
    """One row per model (and the real ads): ads, refused, distinct_1, distinct_2, self_bleu, novelty,
    repetition, mean_words, brand_conflicts, brand_checked."""
    seen = {normal(ad) for ad in training_ads}
    rows = {}
    for name, cells in {**generated, "real test ads": prompts["ad"].tolist()}.items():
        kept = [(brand, ad) for brand, ad in zip(prompts["brand"], cells) if not isinstance(ad, Refusal)]
        ads = [ad for _, ad in kept]
        if not ads:
            rows[name] = {"ads": 0, "refused": len(cells)}
            continue
        conflicts, checked = brand_conflicts(kept, lexicon)
        rows[name] = {
            "ads": len(ads),
            "refused": len(cells) - len(ads),
            "distinct_1": distinct_n(ads, 1),
            "distinct_2": distinct_n(ads, 2),
            "self_bleu": self_bleu(ads),
            "novelty": float(np.mean([normal(a) not in seen for a in ads])),
            "repetition": float(np.mean([repeated_word_share(a) for a in ads])),
            "mean_words": float(np.mean([len(a.split()) for a in ads])),
            "brand_conflicts": conflicts,
            "brand_checked": checked,
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


def brand_conflicts(written: Sequence[tuple[str, str]], lexicon: BrandLexicon) -> tuple[float, int]:
    """Of the (brand, ad) pairs whose brand the lexicon knows, the share of ads naming a brand their
    own brand's training ads never name (NaN when none is known), and how many were checked."""
    checks = [lexicon.conflicts(brand, ad) for brand, ad in written]
    checked = [c for c in checks if c is not None]
    return (float(np.mean([bool(c) for c in checked])) if checked else float("nan")), len(checked)


def _quality_row(ads: list[str | None], passed: list[bool], brands: Sequence[str], lexicon: BrandLexicon) -> dict:
    """One row of :func:`seller_quality`: ``ads`` (None where there is none) and whether each passed."""
    written = [(brand, ad) for brand, ad in zip(brands, ads) if ad]
    texts = [ad for _, ad in written]
    return {
        "products": len(ads),
        "with_passing_ad": float(np.mean(passed)) if passed else float("nan"),
        "brand_conflicts": brand_conflicts(written, lexicon)[0],
        "distinct_2": distinct_n(texts, 2),
        "mean_characters": float(np.mean([len(a) for a in texts])) if texts else float("nan"),
    }


def seller_quality(written: dict[str, list[ProductAds]], products: pd.DataFrame, rules: AdRules) -> pd.DataFrame:
    """What a seller gets from each model, the first candidate as written and the ad kept by the rules:
    products, with_passing_ad, brand_conflicts, distinct_2, mean_characters. Index: (model, ads)."""
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
        counts = sum((r.rejections() for r in results), Counter())
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
    keywords: Keywords = None,
) -> pd.DataFrame:
    """Every model's ad (or :class:`Refusal`) for the same prompts: one row per prompt, one column per
    model. ``categories`` go to the models that read them, ``keywords`` to all (each family reads them its way)."""
    prompts = list(prompts)
    table = {
        model.name: model.generate(
            prompts,
            decoding,
            seed=seed,
            categories=categories_for(model, categories),
            progress=progress,
            keywords=keywords,
        )
        for model in models
    }
    return pd.DataFrame(table, index=pd.Index(prompts, name="prompt"))


def plot_generation_quality(
    quality: pd.DataFrame,
    generated: pd.DataFrame,
    real_ads: Sequence[str],
    figures_dir,
    name: str,
):
    """Words per ad of each model against the real ads (box plots), and per-model diversity and
    faithfulness (rows of :func:`generation_quality`)."""
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
    return finish(fig, figures_dir, name)


def plot_seller_ads(seller: pd.DataFrame, figures_dir, name: str):
    """Per model (rows of :func:`seller_quality`), first candidate against kept ad: products with a
    passing ad (left) and ads with a brand conflict (right)."""
    rows = seller.reset_index()
    fig, (left, right) = subplots(1, 2, figsize=(13, 0.45 * len(rows) + 1.8), sharey=True)
    sns.barplot(rows, x="with_passing_ad", y="model", hue="ads", ax=left)
    left.set(xlim=(0, 1), xlabel="products with an ad that passes every rule", ylabel="")
    sns.barplot(rows, x="brand_conflicts", y="model", hue="ads", ax=right, legend=False)
    right.set(xlim=(0, 1), xlabel="ads naming a conflicting brand")
    left.legend(fontsize=8, loc="lower right")
    return finish(fig, figures_dir, name)


# Playground ---


def playground_decoding(max_new_tokens: int = 32) -> Decoding:
    """The playground's starting decoding: the series' default (``settings.DEFAULT_DECODING``),
    ``max_new_tokens`` long."""
    return replace(DECODINGS[DEFAULT_DECODING], max_new_tokens=max_new_tokens)


def product_of_prompt(prompt: str, category: str | None = None, keywords: str = "") -> pd.DataFrame:
    """A one-product table (brand, product, category, prompt, keywords) from a typed prompt: its
    first word is the brand, the rest the product words; ``keywords`` separated by ``;``."""
    words = prompt.split()
    brand, product = (words[0], " ".join(words[1:])) if words else ("", "")
    row = {"brand": brand, "product": product, "category": category, "prompt": " ".join(words)}
    return pd.DataFrame([{**row, "keywords": parse_keywords(keywords)}])


def playground_table(
    models: dict,
    chosen: Sequence[str],
    prompt: str,
    decoding: Decoding,
    seed: int = 0,
    samples: int = 1,
    rules: AdRules | None = None,
    candidates: int = 1,
    keywords: str = "",
) -> pd.DataFrame:
    """One column per model, ``samples`` rows: ads as written, or with ``rules`` the most likely that
    pass (a missing one says which rules rejected the candidates). ``keywords`` (separated by ``;``)
    go to the models that read them, and the rules keep only ads that carry them."""
    if not chosen:
        raise ValueError("choose at least one model")
    unknown = [name for name in chosen if name not in models]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {list(models)}")
    if rules is None:
        wanted = [parse_keywords(keywords)] * samples if parse_keywords(keywords) else None
        table = ads_side_by_side(
            [models[name] for name in chosen], [prompt] * samples, decoding, seed=seed, keywords=wanted
        )
    else:
        if candidates < samples:
            raise ValueError(f"candidates ({candidates}) must be at least the ads shown ({samples})")
        product = product_of_prompt(prompt, keywords=keywords)
        columns = {}
        for name in chosen:
            (result,) = write_for_products(models[name], product, rules, candidates, samples, decoding, seed)
            missing = f"(no ad passed: {result.summary()})"
            columns[name] = [result.ads[i] if i < len(result.ads) else missing for i in range(samples)]
        table = pd.DataFrame(columns)
    table.index = pd.RangeIndex(1, samples + 1, name=f"ads for {prompt!r}")
    return table


def playground(models: dict, prompt: str = "Apple Watch Band", seed: int = 0, rules: AdRules | None = None):
    """An ipywidgets panel: choose models, type a prompt, set the decoding, Generate; the ads side by side."""
    import ipywidgets as widgets
    from IPython.display import display

    names = list(models)
    chooser = widgets.SelectMultiple(options=names, value=tuple(names), description="models", rows=min(len(names), 6))
    text = widgets.Text(value=prompt, description="prompt")
    keywords = widgets.Text(value="", placeholder="44mm; black", description="keywords")
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
                    keywords.value,
                )
                display(panel.last_table)
            except ValueError as error:
                panel.last_table = None
                print(f"cannot generate: {error}")

    button.on_click(on_click)
    controls = widgets.VBox(
        [chooser, text, keywords, *decoding_controls.values(), samples, candidates, apply_rules, button]
    )
    panel = widgets.HBox([controls, output])
    panel.last_table = None  # the table last shown (None before the first click or after an error)
    return panel
