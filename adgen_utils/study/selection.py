"""Ads a seller can paste: several candidates per product, cut to their last complete phrase, judged
by the rules of :data:`RULES`, and the most likely that pass (mean log-probability per prediction)."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from adgen_utils.corpus.data import INVISIBLE, load_ads, load_dataset
from adgen_utils.corpus.facts import has_phrase, head_segment, missing_keywords, parse_keywords
from adgen_utils.corpus.text import tokenize
from adgen_utils.layout import DATA_FOLDER, DATASET_FILE
from adgen_utils.models import AdModel, Decoding, Refusal, categories_for
from adgen_utils.study.formats import DEFAULT_FORMAT, ad_format
from adgen_utils.study.products import BrandLexicon, ProductTypes, words_of

RULES = {
    "refused": "the model cannot continue the product's prompt",
    "unfinished": "nothing complete is left after the product words",
    "off product": "the product words are not kept, or another product type takes over",
    "other brand": "names as its maker (with the product words) a brand the input does not name",
    "missing keyword": "leaves out a keyword the seller gave, or the keyword did not fit the format's length",
    "too long": "no complete phrase fits the format's character limit",
    "format": "breaks the format's editorial rules: characters, promotional phrases, a word repeated",
    "training copy": "word for word a training ad",
    "repeat": "the same ad as a more likely candidate of the same product",
}
# A phrase ends before a separator, or before a connecting word that starts the next phrase.
_BOUNDARY = re.compile(r"\s*(?:[,;|]|\s[-–—]\s|\s[(\[])|\s(?=(?:for|with|and|compatible|fits|by)\s)", re.IGNORECASE)
_DANGLING_WORDS = "for|with|and|or|to|of|the|a|an|in|on|by|at|from|compatible|fits|includes|including|plus"
_DANGLING_END = re.compile(rf"(?:[\s,;:/&+|\-–—(\[]+|\s+(?:{_DANGLING_WORDS}))$", re.IGNORECASE)


def normal(text: str) -> str:
    """Lower-cased with single spaces: how ads are compared for copies and repeats."""
    return " ".join(text.lower().split())


def _unclosed_bracket(text: str) -> int | None:
    """Where the last bracket that is never closed opens, or None."""
    opened = []
    for i, character in enumerate(text):
        if character in "([":
            opened.append(i)
        elif character in ")]" and opened:
            opened.pop()
    return opened[-1] if opened else None


def trim_dangling(text: str) -> str:
    """``text`` without a dangling ending: trailing separators, a last connecting word ("for",
    "with", "and", ...) or a bracket that is never closed, repeatedly. An unclosed bracket that
    opens nothing (a separator follows it, e.g. a keyword written after it) goes alone."""
    while True:
        bracket = _unclosed_bracket(text)
        trimmed = text
        if bracket is not None:
            empty = re.match(r"\s*[,;|]", text[bracket + 1 :])
            trimmed = text[:bracket].rstrip() + text[bracket + 1 :].lstrip() if empty else text[:bracket]
        trimmed = _DANGLING_END.sub("", trimmed).rstrip()
        if trimmed == text:
            return text
        text = trimmed


@dataclass(frozen=True)
class Verdict:
    """A candidate judged: ``ad`` is the text after :meth:`AdRules.cut` (what would be written),
    ``rejected_by`` the :data:`RULES` it fails (empty when it passes) and ``reasons`` one line per rule."""

    ad: str
    rejected_by: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.rejected_by

    def rejection(self) -> str:
        """``"other brand: names apple; too long: 214 characters"`` ("" when it passed)."""
        return "; ".join(f"{rule}: {reason}" for rule, reason in zip(self.rejected_by, self.reasons))


def keywords_of(product) -> tuple[str, ...]:
    """A product's keywords: its ``keywords`` field, a tuple or a ``;``-separated text (none if absent)."""
    given = getattr(product, "keywords", None)
    return tuple(given) if isinstance(given, (tuple, list)) else parse_keywords(given if isinstance(given, str) else "")


def product_seed(seed: int, product) -> int:
    """The seed of a product's first candidate (candidate ``k`` draws with it plus ``k``): a hash of
    ``seed`` and what the product is (prompt, category, keywords), never of its place in a catalog, so
    its random draws are the same in any batch or engine."""
    category = getattr(product, "category", None)
    what = [seed, product.prompt, category if isinstance(category, str) else "", list(keywords_of(product))]
    digest = hashlib.blake2b(json.dumps(what).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 2  # 62 bits: room for the candidates, within torch's seeds


class AdRules:
    """The rules of :data:`RULES` for one :mod:`format <adgen_utils.study.formats>`, fitted on
    ``training_ads``: their brands (:class:`BrandLexicon`), product types (:class:`ProductTypes`)
    and the ads themselves (for copies). ``max_chars`` is the longest ad, in characters: the
    format's limit unless a lower one is given."""

    def __init__(
        self, training_ads: Sequence[str], max_chars: int | None = None, min_ads: int = 3, format: str = DEFAULT_FORMAT
    ):
        self.format = ad_format(format)
        max_chars = self.format.max_chars if max_chars is None else max_chars
        if not 1 <= max_chars <= self.format.max_chars:
            raise ValueError(f"max_chars must be 1 to {self.format.max_chars} for {format}, got {max_chars}")
        self.brands = BrandLexicon(training_ads, min_ads)
        self.types = ProductTypes(training_ads, self.brands.brands, min_ads)
        self.training = {normal(ad) for ad in training_ads}
        self.max_chars = max_chars

    def for_format(self, format: str) -> AdRules:
        """The same rules for another format (its length and editorial rules), without fitting again."""
        other = copy.copy(self)
        other.format = ad_format(format)
        other.max_chars = other.format.max_chars
        return other

    @staticmethod
    def _boundaries(text: str, after: int) -> list[int]:
        """Where a complete phrase of ``text`` ends, after character ``after`` (the product words)."""
        ends = [m.start() for m in _BOUNDARY.finditer(text) if m.start() > after]
        ends += [m.end() for m in re.finditer(r"[)\]]", text) if m.end() > after]
        return sorted(set(ends))

    def cut(self, ad: str, prompt: str, complete: bool = True, keywords: Sequence[str] = ()) -> str:
        """``ad`` cut to its last complete phrase: first line, cleaned, without an unfinished last phrase
        (``complete`` False) or a dangling ending, within ``max_chars`` and the format's rules where a
        phrase end fits them, and the longest such phrase that keeps every one of ``keywords``."""
        text = " ".join(INVISIBLE.sub("", (ad.splitlines() or [""])[0]).split())  # one line: the first
        keep = len(" ".join(prompt.split()))
        if not complete:
            ends = self._boundaries(text, keep)
            text = text[: ends[-1]] if ends else text[:keep]
        text = trim_dangling(text)
        if len(text) > self.max_chars or self.format.problems(text, prompt):
            # The longest complete phrase that fits the format: its length, and its rules where a shorter ad
            # keeps them (a word a third time, a "Free Shipping" at the end); else the longest that fits.
            fitting = [text] if len(text) <= self.max_chars else []
            fitting += [
                trim_dangling(text[:end]) for end in reversed(self._boundaries(text, keep)) if end <= self.max_chars
            ]
            if self.format.name_alone and keep <= self.max_chars:
                fitting.append(text[:keep])  # the product's name is an ad of this format too
            fit = [t for t in fitting if not self.format.problems(t, prompt)] or fitting[:1]
            text = next((t for t in fit if not missing_keywords(t, keywords)), fit[0] if fit else text)
        return text

    def judge(self, ad: str, product, complete: bool = True, cut: bool = True) -> Verdict:
        """The verdict of every rule but ``repeat`` on one candidate for ``product`` (brand, product,
        category, prompt, and keywords if it has them). With ``cut`` False the ad is judged as written."""
        prompt = product.prompt
        written = " ".join(ad.split())
        text = self.cut(ad, prompt, complete, keywords_of(product)) if cut else written
        failed: list[tuple[str, str]] = []
        if cut and normal(text) == normal(prompt) and not self.format.name_alone:
            failed.append(("unfinished", "no complete phrase after the product words"))
        if not cut and (not complete or trim_dangling(text) != text):
            failed.append(("unfinished", "the ad stops in the middle of a phrase"))
        prompt_tokens = [t.lower() for t in tokenize(prompt)]
        if [t.lower() for t in tokenize(text)][: len(prompt_tokens)] != prompt_tokens:
            failed.append(("off product", "the product words are not kept as typed"))
        else:
            # Every product type the ad's head segment adds to the typed words must name the same product.
            wanted = self.types.of(prompt)
            typed = {self.types.singular(w) for w in words_of(prompt)}
            added = [t for t in self.types.types_in(text) if t not in typed]
            other = next((t for t in added if not self.types.same_product(t, wanted)), None) if wanted else None
            if other:
                failed.append(("off product", f"{other!r} takes over from {wanted!r}"))
        given = " ".join(str(getattr(product, name, "") or "") for name in ("brand", "product", "category", "prompt"))
        given += " " + " ".join(keywords_of(product))  # a keyword "Apple Watch" lets the ad name Apple
        allowed = self.brands.mentions(words_of(given)) | {str(getattr(product, "brand", "") or "").lower()}
        # The maker is named where the product is (the head segment: "Fintie Band"); brands after it say
        # what an accessory fits ("..., Compatible with Fitbit Inspire"), as most accessory ads here do.
        others = sorted(self.brands.mentions(words_of(head_segment(text))) - allowed)
        if others:
            failed.append(("other brand", f"names {', '.join(others)}"))
        missing = missing_keywords(text, keywords_of(product))
        if missing:
            cut_off = [k for k in missing if has_phrase(written, k)]
            why = f"lacks {', '.join(repr(k) for k in missing)}"
            if cut_off:
                why += f" ({', '.join(repr(k) for k in cut_off)} did not fit in {self.max_chars} characters)"
            failed.append(("missing keyword", why))
        if len(text) > self.max_chars:
            failed.append(("too long", f"{len(text)} characters, more than {self.max_chars}"))
        problems = self.format.problems(text, given)
        if problems:
            failed.append(("format", f"{self.format.name}: {'; '.join(problems)}"))
        if normal(text) in self.training:
            failed.append(("training copy", "the same words as a training ad"))
        return Verdict(text, tuple(rule for rule, _ in failed), tuple(reason for _, reason in failed))


@dataclass
class Candidate:
    """One ad a model wrote for a product: its number, text (or :class:`Refusal`), verdict, likelihood
    (mean log-probability per prediction; None if it failed a rule) and ``chosen`` ad number."""

    number: int
    written: str | Refusal
    verdict: Verdict
    likelihood: float | None = None
    chosen: int | None = None


@dataclass
class ProductAds:
    """The candidates of one product and the ads kept, most likely first."""

    candidates: list[Candidate]
    ads: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether at least one candidate passed every rule."""
        return bool(self.ads)

    def rejections(self) -> Counter:
        """How many candidates each rule rejected."""
        return Counter(rule for c in self.candidates for rule in c.verdict.rejected_by)

    def summary(self) -> str:
        """One line: ``"3 of 4 candidates rejected: other brand 2, too long 1"`` ("" when none was)."""
        rejected = sum(not c.verdict.passed for c in self.candidates)
        if not rejected:
            return ""
        counts = self.rejections()
        listed = ", ".join(f"{rule} {counts[rule]}" for rule in RULES if counts[rule])  # in the order of RULES
        return f"{rejected} of {len(self.candidates)} candidates rejected: {listed}"


def choose(candidates: list[Candidate], likelihood, per_product: int) -> list[str]:
    """Score the passing candidates, mark later copies ``repeat`` and keep the ``per_product`` most
    likely distinct ones (ties: order written). Returns them, best first."""
    passing = [c for c in candidates if c.verdict.passed]
    for c in passing:
        c.likelihood = likelihood(c.verdict.ad)
    ranked = sorted(passing, key=lambda c: (-c.likelihood, c.number))
    kept, first = [], {}  # normal(ad) -> the number of the most likely candidate with that text
    for c in ranked:
        key = normal(c.verdict.ad)
        if key in first:
            c.verdict = replace(c.verdict, rejected_by=("repeat",), reasons=(f"the same ad as candidate {first[key]}",))
            continue
        first[key] = c.number
        if len(kept) < per_product:
            c.chosen = len(kept) + 1
            kept.append(c)
    return [c.verdict.ad for c in kept]


def write_for_products(
    model: AdModel,
    products: pd.DataFrame,
    rules: AdRules,
    candidates: int = 4,
    per_product: int = 1,
    decoding: Decoding = Decoding(),
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = False,
) -> list[ProductAds]:
    """For each product, ``candidates`` ads from ``model`` (told the product's keywords), cut, judged,
    scored, and the ``per_product`` most likely distinct ones kept: one :class:`ProductAds` per
    product, in order. Candidate ``k`` of a product draws with :func:`product_seed` plus ``k``."""
    if candidates < 1 or per_product < 1:
        raise ValueError(f"candidates ({candidates}) and per_product ({per_product}) must be at least 1")
    rows = list(products.itertuples(index=False))
    prompts = [row.prompt for row in rows for _ in range(candidates)]
    categories = [getattr(row, "category", None) for row in rows for _ in range(candidates)]
    keywords = [keywords_of(row) for row in rows for _ in range(candidates)]
    written = model.generate(
        prompts,
        decoding,
        seed=[product_seed(seed, row) + k for row in rows for k in range(candidates)],
        batch_size=batch_size,
        categories=categories_for(model, categories),
        progress=progress,
        keywords=keywords if any(keywords) else None,
        max_chars=rules.max_chars,  # keywords written within the format's length
    )
    results = [
        ProductAds(_judged(written[i * candidates : (i + 1) * candidates], row, rules)) for i, row in enumerate(rows)
    ]
    _choose_all(model, rows, results, per_product)
    return results


def rejudge(
    model: AdModel, results: Sequence[ProductAds], products: pd.DataFrame, rules: AdRules, per_product: int = 1
):
    """The candidates of ``results`` judged again by other ``rules`` (another format) and chosen again
    by ``model``'s likelihood: what the same written ads give there, without writing them again."""
    rows = list(products.itertuples(index=False))
    again = [ProductAds(_judged([c.written for c in r.candidates], row, rules)) for r, row in zip(results, rows)]
    _choose_all(model, rows, again, per_product)
    return again


def _judged(written: Sequence, product, rules: AdRules) -> list[Candidate]:
    """One judged :class:`Candidate` per written ad (a :class:`Refusal` is rejected as ``refused``)."""
    return [
        Candidate(n, ad, Verdict("", ("refused",), (ad.reason,)))
        if isinstance(ad, Refusal)
        else Candidate(n, ad, rules.judge(ad, product, complete=getattr(ad, "complete", True)))
        for n, ad in enumerate(written, start=1)
    ]


def _choose_all(model: AdModel, rows: list, results: list[ProductAds], per_product: int) -> None:
    """Score the passing candidates of every product with ``model`` and keep each one's most likely."""
    # Each distinct passing text is scored once, with its product's category.
    to_score: dict[tuple[str, str | None], str] = {}
    for row, result in zip(rows, results):
        for c in result.candidates:
            if c.verdict.passed:
                to_score.setdefault((normal(c.verdict.ad), getattr(row, "category", None)), c.verdict.ad)
    likelihoods = {}
    if to_score:
        keys = list(to_score)
        scores = model.score([to_score[k] for k in keys], categories_for(model, [k[1] for k in keys]))
        per_word = (scores["log_prob"] / scores["words"]).to_numpy(dtype=np.float64)
        likelihoods = dict(zip(keys, per_word))
    for row, result in zip(rows, results):
        category = getattr(row, "category", None)
        result.ads = choose(
            result.candidates, lambda ad, category=category: likelihoods[(normal(ad), category)], per_product
        )


def training_ads_for(source: str | Path | None = None, model_source: str | None = None) -> tuple[list[str], str]:
    """The training ads to fit :class:`AdRules` on, and where they came from: ``source`` (a run folder,
    a dataset folder, a CSV or corpus folder), else the model's run folder, else the embedded corpus."""
    candidates = []
    if source is not None:
        candidates = [Path(source) / DATA_FOLDER, Path(source)]
    elif model_source is not None and Path(model_source).is_dir():
        candidates = [Path(model_source).resolve().parent.parent / DATA_FOLDER]
    for folder in candidates:
        if (folder / DATASET_FILE).is_file():
            ads = load_dataset(folder, split="train")["ad"].tolist()
            return ads, f"the {len(ads):,} training ads of {folder / DATASET_FILE}"
    if source is not None:
        ads, _ = load_ads(str(source), progress=False)
        return ads["ad"].tolist(), f"the {len(ads):,} ads of {source}"
    ads, _ = load_ads("embedded", progress=False)
    train = ads.loc[ads["split"] == "train", "ad"].tolist()
    return train, f"the {len(train):,} training ads of the embedded corpus"
