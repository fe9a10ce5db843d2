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
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
import pandas as pd

from adgen_utils.corpus.eda import GENERIC_OPENERS, brand_of
from adgen_utils.corpus.text import is_word, repeated_word_share, tokenize
from adgen_utils.figures import save_figure
from adgen_utils.logs import say
from adgen_utils.models import Decoding

# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


def summarize_scores(scores: pd.DataFrame) -> dict:
    """Aggregate per-ad scores (``admodel.SCORE_COLUMNS``) into the footing's metrics.

    Returns ads, predictions (words + ends), characters, ``oov_share`` (test words outside the
    model's vocabulary), ``top1_accuracy``, ``top5_accuracy``, ``per_word_perplexity``,
    ``bits_per_char`` and ``model_tokens_per_word`` (how many of its own tokens a model predicts per word).
    """
    predictions = int(scores["words"].sum())
    words = predictions - len(scores)  # the ends are not words
    log_prob = float(scores["log_prob"].sum())
    return {
        "ads": len(scores),
        "predictions": predictions,
        "characters": int(scores["characters"].sum()),
        "oov_share": float(scores["unknown_words"].sum() / max(words, 1)),
        "top1_accuracy": float(scores["top1"].sum() / predictions),
        "top5_accuracy": float(scores["top5"].sum() / predictions),
        "per_word_perplexity": float(math.exp(min(-log_prob / predictions, 700))),
        "bits_per_char": float(-log_prob / math.log(2) / scores["characters"].sum()),
        "model_tokens_per_word": float(scores["model_tokens"].sum() / predictions),
    }


def evaluate_model(
    model, ads: Sequence[str], categories: Sequence[str | None] | None = None, progress: bool = False
) -> dict:
    """The footing's metrics for one model (see :func:`summarize_scores`), with its kind, how it is
    charged for unknown words and the seconds scoring took."""
    started = time.perf_counter()
    scores = model.score(list(ads), categories, progress=progress)
    return {
        "model": model.name,
        "kind": model.kind,
        "unknown_words_charged": model.unknown_charge,
        **summarize_scores(scores),
        "seconds": round(time.perf_counter() - started, 1),
    }


def read_test_csv(path) -> tuple[pd.DataFrame, dict]:
    """Ads to score from any CSV with an ``ad`` column (and optionally ``category``), read as
    notebook 01 reads the corpus. Returns the ads (columns ad, category) and the count of each
    kind of row left out (malformed quoting, invalid UTF-8, empty, longer than
    ``CleanConfig.max_chars``) — counted, never silent."""
    from pathlib import Path

    from adgen_utils.corpus.data import UNDECODABLE, CleanConfig, normalize_ad, read_ads_file
    from adgen_utils.errors import CorpusFormatError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No test CSV at {path}")
    _, records = read_ads_file(path, category=None)
    rows, skipped = [], Counter()
    for raw, category, _line, note in records:
        if raw is None:
            skipped[note] += 1
        elif UNDECODABLE.search(raw):
            skipped["invalid_utf8"] += 1
        elif not normalize_ad(raw):
            skipped["empty"] += 1
        elif len(normalize_ad(raw)) > CleanConfig.max_chars:
            skipped["too_long"] += 1
        else:
            rows.append({"ad": normalize_ad(raw), "category": category})
    if not rows:
        raise CorpusFormatError(f"{path}: no ad to score ({dict(skipped) or 'the file has no rows'})")
    return pd.DataFrame(rows), dict(skipped)


def comparison_table(models: Sequence, test: pd.DataFrame, progress: bool = False) -> pd.DataFrame:
    """One row per model: :func:`evaluate_model` on the same test ads (``test`` has ``ad`` and
    optionally ``category``)."""
    categories = test["category"].tolist() if "category" in test else None
    rows = [evaluate_model(m, test["ad"].tolist(), categories, progress) for m in models]
    return pd.DataFrame(rows).set_index("model")


def plot_comparison(table: pd.DataFrame, figures_dir=None, name: str = "07_comparison"):
    """Three panels, one bar per model: per-word perplexity (log scale), bits per character, and
    top-1 / top-5 next-word accuracy."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 0.5 * len(table) + 1.8), sharey=True)
    labels = table.index.tolist()
    axes[0].barh(labels, table["per_word_perplexity"], color="#4c72b0")
    axes[0].set(xscale="log", xlabel="per-word perplexity (lower is better)")
    axes[1].barh(labels, table["bits_per_char"], color="#55a868")
    axes[1].set(xlabel="bits per character (lower is better)")
    y = np.arange(len(labels))
    axes[2].barh(y - 0.2, table["top1_accuracy"], height=0.4, label="top-1")
    axes[2].barh(y + 0.2, table["top5_accuracy"], height=0.4, label="top-5")
    axes[2].set(xlabel="next-word accuracy (higher is better)", xlim=(0, 1))
    axes[2].legend(fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(f"the same {int(table['ads'].iloc[0]):,} test ads, scored by each model")
    fig.tight_layout()
    save_figure(fig, figures_dir, name)
    return fig


# ---------------------------------------------------------------------------------------------
# Prompts and brands
# ---------------------------------------------------------------------------------------------

_SEGMENT_END = re.compile(r"\s(?:for|with|compatible|fits|by|and)\s|[,(|\[]|\s[-–—]\s", re.IGNORECASE)
AUDIENCE_WORDS = frozenset(["men", "women", "kids", "boys", "girls", "adults", "teens", "baby"])


def _words(ad: str) -> list[str]:
    return [t for t in tokenize(ad) if is_word(t)]


def brand_and_product(ad: str) -> tuple[str, str] | None:
    """``(brand, product type)`` of an ad: the brand as in notebook 01 (:func:`eda.brand_of`), the
    product type the last word of the title's first segment (before "for", "with", a comma, a
    bracket or a dash), e.g. "Fintie Band for Apple Watch 44mm" -> ("Fintie", "Band"). None when
    either is missing or they are the same word."""
    brand = brand_of(_words(ad))
    if brand is None:
        return None
    head = _SEGMENT_END.split(ad, maxsplit=1)[0]
    words = [w for w in _words(head) if w.isalpha()]
    if not words or words[-1] == brand or words[-1].lower() in GENERIC_OPENERS:
        return None
    return brand, words[-1]


def prompt_set(test: pd.DataFrame, size: int, seed: int = 0) -> pd.DataFrame:
    """A fixed, reproducible set of ``size`` prompts "<brand> <product type>" from test ads
    (columns prompt, brand, product_type, category, ad), one per distinct prompt."""
    rows = []
    for ad, category in zip(test["ad"], test["category"] if "category" in test else [None] * len(test)):
        parts = brand_and_product(ad)
        if parts:
            rows.append(
                {
                    "prompt": f"{parts[0]} {parts[1]}",
                    "brand": parts[0],
                    "product_type": parts[1],
                    "category": category,
                    "ad": ad,
                }
            )
    table = pd.DataFrame(rows, columns=["prompt", "brand", "product_type", "category", "ad"])
    table = table.drop_duplicates("prompt")
    return table.sample(n=min(size, len(table)), random_state=seed).reset_index(drop=True)


class BrandLexicon:
    """Brands of the training ads, and which brands each one's ads name.

    A word is a brand when it starts at least ``min_ads`` ads (as :func:`eda.brand_of` finds it) and
    is brand-like: at least 20% of its uses open an ad, or at least 20% follow "for", "with",
    "compatible" or "fits" ("Band for Fitbit"). Product words ("Remote", "TV", "Smart") fail both.
    """

    def __init__(self, training_ads: Sequence[str], min_ads: int = 3):
        opening, after, total = Counter(), Counter(), Counter()
        token_lists = [[w.lower() for w in _words(ad)] for ad in training_ads]
        for words in token_lists:
            brand = brand_of(words)
            if brand:
                opening[brand] += 1
            for i, word in enumerate(words):
                total[word] += 1
                if i and words[i - 1] in ("for", "with", "compatible", "fits"):
                    after[word] += 1
        self.brands = {
            w
            for w, n in opening.items()
            if n >= min_ads and w not in AUDIENCE_WORDS and (n / total[w] >= 0.2 or after[w] / total[w] >= 0.2)
        }
        self.named_with: dict[str, set] = defaultdict(set)
        for words in token_lists:
            brand = brand_of(words)
            if brand in self.brands:
                self.named_with[brand].update(self.mentions(words))

    def mentions(self, words: Sequence[str]) -> set[str]:
        """The lexicon's brands among ``words`` (lower-cased)."""
        return {w.lower() for w in words if w.lower() in self.brands}

    def conflicts(self, brand: str, ad: str) -> list[str] | None:
        """Brands the ad names that ``brand``'s training ads never name (sorted); None when
        ``brand`` is not in the lexicon (no training ads to check against)."""
        brand = brand.lower()
        if brand not in self.brands:
            return None
        return sorted(self.mentions(_words(ad)) - self.named_with[brand] - {brand})


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


def _normal(ad: str) -> str:
    return " ".join(ad.lower().split())


def generation_quality(
    generated: dict[str, Sequence[str]], prompts: pd.DataFrame, training_ads: Sequence[str], lexicon: BrandLexicon
) -> pd.DataFrame:
    """One row per model (``generated``: model -> one ad per row of ``prompts``), plus the real test
    ads the prompts came from as a reference row. Columns: ads, distinct_1, distinct_2, self_bleu,
    novelty (share not found verbatim, case- and space-insensitive, in the training split),
    repetition (mean share of repeated words), mean_words, brand_conflicts (share of the checked ads
    naming a conflicting brand), brand_checked (ads whose prompt brand is in the lexicon)."""
    seen = {_normal(ad) for ad in training_ads}
    rows = {}
    for name, cells in {**generated, "real test ads": prompts["ad"].tolist()}.items():
        kept = [(brand, str(ad)) for brand, ad in zip(prompts["brand"], cells) if not str(ad).startswith("[cannot")]
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
            "novelty": float(np.mean([_normal(a) not in seen for a in ads])),
            "repetition": float(np.mean([repeated_word_share(a) for a in ads])),
            "mean_words": float(np.mean([len(a.split()) for a in ads])),
            "brand_conflicts": float(np.mean([bool(c) for c in checked])) if checked else float("nan"),
            "brand_checked": len(checked),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


def generate_for_prompts(
    models: Sequence,
    prompts: Sequence[str],
    decoding: Decoding,
    seed: int = 0,
    categories: Sequence[str | None] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Side-by-side ads: one row per prompt, one column per model. A prompt a model cannot take
    (an LSTM knowing none of its words) gets ``"[cannot: <reason>]"`` in its cell, never a crash."""
    table = {}
    for model in models:
        problems = [model.problem(p) for p in prompts]
        cells = [None if problem is None else f"[cannot: {problem}]" for problem in problems]
        usable = [i for i, problem in enumerate(problems) if problem is None]
        ads = model.generate(
            [prompts[i] for i in usable],
            decoding,
            seed=seed,
            categories=[categories[i] for i in usable] if categories is not None else None,
            progress=progress,
        )
        for i, ad in zip(usable, ads):
            cells[i] = ad
        table[model.name] = cells
    return pd.DataFrame(table, index=pd.Index(list(prompts), name="prompt"))


def plot_generation_quality(
    quality: pd.DataFrame,
    generated: pd.DataFrame,
    real_ads: Sequence[str],
    figures_dir=None,
    name: str = "07_generation_quality",
):
    """Left: words per ad, each model's generated ads against the real test ads (box plots).
    Right: diversity and faithfulness per model (distinct-2, novelty, repetition, brand conflicts)."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 0.55 * len(quality) + 2))
    lengths = {"real test ads": [len(a.split()) for a in real_ads]}
    lengths.update(
        {m: [len(str(a).split()) for a in generated[m] if not str(a).startswith("[cannot")] for m in generated.columns}
    )
    left.boxplot(list(lengths.values()), vert=False, tick_labels=list(lengths.keys()))
    left.invert_yaxis()
    left.set(xlabel="words per ad", title="length: generated vs real")
    columns = ["distinct_2", "novelty", "repetition", "brand_conflicts"]
    shown = quality[columns].fillna(0)
    y = np.arange(len(shown))
    for k, column in enumerate(columns):
        right.barh(y + (k - 1.5) * 0.2, shown[column], height=0.2, label=column.replace("_", " "))
    right.set_yticks(y, shown.index)
    right.invert_yaxis()
    right.set(xlim=(0, 1), xlabel="share", title="diversity and faithfulness")
    right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, figures_dir, name)
    return fig


def reading(table: pd.DataFrame, quality: pd.DataFrame) -> str:
    """A few sentences saying what the two tables show, from their numbers (Markdown)."""
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
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Playground
# ---------------------------------------------------------------------------------------------


def playground_decoding(
    sample: bool = True,
    temperature: float = 0.8,
    top_k: int = 50,
    top_p: float = 0.95,
    repetition_penalty: float = 1.2,
    max_new_tokens: int = 32,
) -> Decoding:
    """The playground's controls as a :class:`Decoding` (0 for top-k means no limit)."""
    return Decoding(
        do_sample=sample,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        max_new_tokens=max_new_tokens,
    )


def playground_table(
    models: dict, chosen: Sequence[str], prompt: str, decoding: Decoding, seed: int = 0, samples: int = 1
) -> pd.DataFrame:
    """What the playground shows: ``samples`` ads from each chosen model (columns) for one prompt.
    ``models`` maps a name to a loaded model (:func:`admodel.load_ad_model`)."""
    if not chosen:
        raise ValueError("choose at least one model")
    unknown = [name for name in chosen if name not in models]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {list(models)}")
    table = generate_for_prompts([models[name] for name in chosen], [prompt] * samples, decoding, seed=seed)
    table.index = pd.RangeIndex(1, samples + 1, name=f"ads for {prompt!r}")
    return table


def playground(models: dict, prompt: str = "Apple Watch Band", seed: int = 0):
    """An ipywidgets panel: choose models, type a prompt, set the decoding, press Generate; the ads
    appear side by side (:func:`playground_table`). Returns the panel (display it in a notebook)."""
    import ipywidgets as widgets
    from IPython.display import display

    names = list(models)
    chooser = widgets.SelectMultiple(options=names, value=tuple(names), description="models", rows=min(len(names), 6))
    text = widgets.Text(value=prompt, description="prompt")
    sample = widgets.Checkbox(value=True, description="sample (off: greedy)")
    temperature = widgets.FloatSlider(value=0.8, min=0.1, max=2.0, step=0.05, description="temperature")
    top_k = widgets.IntSlider(value=50, min=0, max=200, description="top-k")
    top_p = widgets.FloatSlider(value=0.95, min=0.05, max=1.0, step=0.05, description="top-p")
    penalty = widgets.FloatSlider(value=1.2, min=1.0, max=2.0, step=0.05, description="repetition")
    length = widgets.IntSlider(value=32, min=4, max=80, description="new tokens")
    samples = widgets.IntSlider(value=2, min=1, max=5, description="ads each")
    button = widgets.Button(description="Generate", button_style="primary")
    output = widgets.Output()

    def on_click(_):
        output.clear_output()
        with output:
            try:
                decoding = playground_decoding(
                    sample.value, temperature.value, top_k.value, top_p.value, penalty.value, length.value
                )
                panel.last_table = playground_table(
                    models, list(chooser.value), text.value, decoding, seed, samples.value
                )
                display(panel.last_table)
            except ValueError as error:
                panel.last_table = None
                print(f"cannot generate: {error}")

    button.on_click(on_click)
    controls = widgets.VBox([chooser, text, sample, temperature, top_k, top_p, penalty, length, samples, button])
    panel = widgets.HBox([controls, output])
    panel.last_table = None  # the table last shown (None before the first click or after an error)
    return panel


# ---------------------------------------------------------------------------------------------
# The models of a run folder
# ---------------------------------------------------------------------------------------------


def series_models(
    run_dir, pretrained_model: str, shots: int, train: pd.DataFrame, test_ads: int, seed: int = 0, log=say
) -> list:
    """Every model of the series found in ``run_dir``: the LSTMs of notebooks 03 and 04, the
    pretrained model zero-shot and with ``shots`` examples (loaded once, shared by both), and the
    fine-tuned model of notebook 06. A model whose notebook has not been run is named and left
    out. Prints the estimated time and memory of scoring ``test_ads`` ads with the transformers."""
    from pathlib import Path

    from adgen_utils import models as admodel
    from adgen_utils.series import stages
    from adgen_utils.series.estimates import TOKENS_PER_AD, transformer_scoring

    models_dir = Path(run_dir) / stages.MODELS_FOLDER
    found = []
    for notebook, label in (("03_lstm", "LSTM (03)"), ("04_embedding_lstm", "Embedding LSTM (04)")):
        if stages.is_done(notebook, run_dir):
            found.append(admodel.load_ad_model(stages.model_dir(run_dir, notebook), name=label))
        else:
            log(f"no model of notebook {notebook} in {run_dir}: run it first to include it; scoring the others")
    zero_shot = admodel.load_ad_model(
        pretrained_model,
        name=f"{pretrained_model} zero-shot",
        models_dir=models_dir,
        training_texts=train["ad"].tolist(),
    )
    found += [
        zero_shot,
        admodel.with_shots(zero_shot, shots, train[["ad", "category"]], seed, name=f"{pretrained_model} {shots}-shot"),
    ]
    if stages.is_done("06_fine_tuning", run_dir):
        # examples: to infer a prompt's category for a category-conditioned model (never shown to it)
        found.append(
            admodel.load_ad_model(
                stages.model_dir(run_dir, "06_fine_tuning"), name="fine-tuned (06)", examples=train[["ad", "category"]]
            )
        )
    else:
        log(f"no fine-tuned model of notebook 06 in {run_dir}: run it first to include it; scoring the others")
    transformers = [m for m in found if m.kind == "transformer"]
    tokens = sum(test_ads * (1 + getattr(m, "shots", 0)) * TOKENS_PER_AD for m in transformers)
    parameters = max(sum(p.numel() for p in m.model.parameters()) for m in transformers)
    log(f"estimate: {transformer_scoring(parameters, tokens)}")
    return found
