"""Ads measured against the real ad of each held-out product: the product's brand, product words and
keywords (drawn from its real ad) go in, and the real ad is the reference (CAMERA's way, ACL 2024).

Per model: keyword inclusion, the share of products with a passing ad, chrF (sacrebleu) and ROUGE-L
of the kept ad against the real one (an empty ad where none passed), distinct-2 and the share of
candidates that copy a training ad. The two rows below are compared as written, passing or not. Two rows go beside the models: ``join the inputs`` (brand,
product and keywords joined: what a model must beat to be worth running) and ``real ad`` (the real
ads under the same rules: how often the rules pass what a seller actually wrote)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from adgen_utils.corpus.facts import keywords_from, keywords_text, missing_keywords, parse_keywords
from adgen_utils.models import AdModel
from adgen_utils.study.evaluation import distinct_n
from adgen_utils.study.formats import FORMATS
from adgen_utils.study.products import product_set
from adgen_utils.study.selection import AdRules, Candidate, ProductAds, keywords_of, normal, rejudge

JOINED, REAL = "join the inputs", "real ad"
REFERENCE_COLUMNS = ["brand", "product", "category", "keywords", "ad"]


def held_out_products(
    ads: pd.DataFrame, size: int, seed: int = 0, keywords: int = 3, rules: AdRules | None = None
) -> pd.DataFrame:
    """``size`` products of held-out ``ads`` (as :func:`~adgen_utils.study.products.product_set`), each
    with up to ``keywords`` facts of its real ad that the prompt does not already carry: of the part
    of it that fits ``rules``' format where given (a seller's keywords are what their ad can carry)."""
    products = product_set(ads, size, seed)
    fitting = [rules.cut(ad, p) if rules else ad for ad, p in zip(products["ad"], products["prompt"])]
    return products.assign(keywords=[keywords_from(ad, p, keywords) for ad, p in zip(fitting, products["prompt"])])


def read_references(path) -> pd.DataFrame:
    """Held-out products from a CSV with columns brand, product, ad (the reference) and optionally
    category and keywords (``;``-separated), as :func:`held_out_products` gives them."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("brand", "product", "ad") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path}: no {', '.join(missing)} column; a products file to evaluate needs brand, product and ad"
        )
    frame = frame.assign(
        category=frame["category"].replace("", None) if "category" in frame else None,
        keywords=frame["keywords"].map(parse_keywords) if "keywords" in frame else [()] * len(frame),
        prompt=(frame["brand"].str.strip() + " " + frame["product"].str.strip()).str.strip(),
    )
    return frame.reset_index(drop=True)


def write_references(products: pd.DataFrame, path) -> None:
    """Write held-out products as :func:`read_references` reads them."""
    products.assign(keywords=products["keywords"].map(keywords_text))[REFERENCE_COLUMNS].to_csv(path, index=False)


def joined(product) -> str:
    """The baseline's ad: brand, product words and keywords, joined by spaces."""
    return " ".join([product.prompt, *keywords_of(product)])


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 (0-100) of two texts' lower-cased words: their longest common subsequence."""
    a, b = candidate.lower().split(), reference.lower().split()
    if not a or not b:
        return 0.0
    previous = [0] * (len(b) + 1)
    for word in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if word == other else max(previous[j + 1], current[j]))
        previous = current
    common = previous[-1]
    if not common:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 100 * 2 * precision * recall / (precision + recall)


def judged(texts: Sequence[str], products: pd.DataFrame, rules: AdRules, keep: bool = False) -> list[ProductAds]:
    """One ad per product judged by ``rules``, kept if it passes, or always with ``keep`` (the baseline
    and the real ads: compared with the real ad whatever the rules say, their verdicts counted apart)."""
    results = []
    for text, product in zip(texts, products.itertuples(index=False)):
        verdict = rules.judge(text, product)
        results.append(
            ProductAds([Candidate(1, text, verdict)], [verdict.ad or text] if keep or verdict.passed else [])
        )
    return results


def figures(results: Sequence[ProductAds], products: pd.DataFrame, rules: AdRules) -> dict:
    """The figures of the module docstring for one model's ``results`` (one per product, in order)."""
    from sacrebleu.metrics import CHRF

    kept = [r.ads[0] if r.ads else "" for r in results]
    references = products["ad"].tolist()
    chrf = CHRF()
    with_keywords = [
        bool(ad) and not missing_keywords(ad, keywords_of(p)) for ad, p in zip(kept, products.itertuples(index=False))
    ]
    written = [c.verdict.ad for r in results for c in r.candidates if c.verdict.ad]
    return {
        "products": len(results),
        "keyword_inclusion": sum(with_keywords) / len(results),
        "passing_share": sum(any(c.verdict.passed for c in r.candidates) for r in results) / len(results),
        "chrf": chrf.corpus_score(kept, [references]).score,
        "rouge_l": sum(rouge_l(a, r) for a, r in zip(kept, references)) / len(results),
        "distinct_2": distinct_n([ad for ad in kept if ad], 2),
        "training_copies": sum(normal(ad) in rules.training for ad in written) / max(1, len(written)),
    }


def reference_table(results: dict[str, Sequence[ProductAds]], products: pd.DataFrame, rules: AdRules) -> pd.DataFrame:
    """:func:`figures` per model of ``results``, then the baseline and the real ads, one row each."""
    rows = dict(results)
    rows[JOINED] = judged([joined(p) for p in products.itertuples(index=False)], products, rules, keep=True)
    rows[REAL] = judged(products["ad"].tolist(), products, rules, keep=True)
    table = pd.DataFrame([{"model": name, **figures(r, products, rules)} for name, r in rows.items()])
    return table.set_index("model")


def tables_by_format(
    models: Sequence[AdModel], written: dict[str, Sequence[ProductAds]], products: pd.DataFrame, rules: AdRules
) -> dict[str, pd.DataFrame]:
    """:func:`reference_table` for each of :data:`~adgen_utils.study.formats.FORMATS`: the candidates
    each model wrote once (``written[model.name]``) judged again by that format's rules, and chosen
    again by the model, without writing them again."""
    tables = {}
    for name in FORMATS:
        format_rules = rules.for_format(name)  # the same brands and product types, this format's length and rules
        chosen = {model.name: rejudge(model, written[model.name], products, format_rules) for model in models}
        tables[name] = reference_table(chosen, products, format_rules)
    return tables
