"""What an ad is about: its brand, product words and product type ("Fintie Band for Apple Watch": head
segment "Fintie Band", brand "Fintie", type "Band"), learned from the training ads. Compared lower-cased."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence

import pandas as pd

from adgen_utils.corpus.facts import COLOURS, MATERIALS, head_segment
from adgen_utils.corpus.text import GENERIC_OPENERS, brand_of, is_word, tokenize

AUDIENCE_WORDS = frozenset(["men", "women", "kids", "boys", "girls", "adults", "teens", "baby"])
# Words that end head segments without naming a product ("... Band, Black", "... 2 Pack").
NOT_TYPES = frozenset(
    [*GENERIC_OPENERS, *AUDIENCE_WORDS, "pack", "set", "series", "edition", "version", "model", "size", "color"]
    + ["black", "white", "silver", "gold", "blue", "red", "pink", "green", "grey", "gray", "rose", "purple"]
    + ["on", "in", "of", "to", "or", "designed", "inch", "large", "small", "new", "pro", "plus", "mini", "max"]
)
# Words that name a material or a colour ("Carbon Fiber ...", "Black ..."), never a brand.
FACT_WORDS = frozenset(word for name in (*MATERIALS, *COLOURS) for word in name.split())
MAX_PRODUCT_WORDS = 6  # a test product's words after its brand, at most (longer head segments are the ad itself)


def words_of(ad: str) -> list[str]:
    """The ad's word tokens (punctuation left out), case kept."""
    return [t for t in tokenize(ad) if is_word(t)]


def brand_and_product(ad: str) -> tuple[str, str] | None:
    """``(brand, product type)`` of an ad: the brand as the corpus lesson finds it (:func:`adgen_utils.corpus.text.brand_of`), the
    product type the last word of the head segment, e.g. "Fintie Band for Apple Watch 44mm" ->
    ("Fintie", "Band"). None when either is missing or they are the same word."""
    brand = brand_of(words_of(ad))
    if brand is None:
        return None
    words = [w for w in words_of(head_segment(ad)) if w.isalpha()]
    if not words or words[-1] == brand or words[-1].lower() in GENERIC_OPENERS:
        return None
    return brand, words[-1]


def product_of(ad: str) -> tuple[str, str] | None:
    """``(brand, product words)`` a seller would type for ``ad``'s product ("Samsung", "55-inch Crystal
    UHD Smart TV"); None when there is none or the product words exceed :data:`MAX_PRODUCT_WORDS`."""
    parts = brand_and_product(ad)
    if parts is None:
        return None
    brand = parts[0]
    head = head_segment(ad)
    start = re.search(r"(?<!\w)" + re.escape(brand) + r"(?!\w)", head)
    product = head[start.end() :].strip(" -–—,") if start else ""
    if not product or len(product.split()) > MAX_PRODUCT_WORDS:
        return None
    return brand, product


def _starts_with(ad: str, prompt: str) -> bool:
    """Whether ``ad`` is ``prompt`` (case aside) followed by more words: what a seller types, then the rest."""
    ad_words, prompt_words = [w.lower() for w in tokenize(ad)], [w.lower() for w in tokenize(prompt)]
    return ad_words[: len(prompt_words)] == prompt_words and len(words_of(ad)) > len(words_of(prompt))


def product_set(ads: pd.DataFrame, size: int, seed: int = 0) -> pd.DataFrame:
    """A fixed, reproducible sample of ``size`` products from held-out ``ads`` (columns ad and
    optionally category): columns brand, product, category, prompt ("brand product"), product_type
    and ad (the real ad it came from), one row per distinct prompt. Only ads that start with their
    product's words and go on after them give a product ("New Lost Remote fit for TCL" does not)."""
    rows = []
    categories = ads["category"] if "category" in ads else [None] * len(ads)
    for ad, category in zip(ads["ad"], categories):
        product = product_of(ad)
        if product and _starts_with(ad, f"{product[0]} {product[1]}"):
            brand, words = product
            rows.append((brand, words, category, f"{brand} {words}", brand_and_product(ad)[1], ad))
    table = pd.DataFrame(rows, columns=["brand", "product", "category", "prompt", "product_type", "ad"])
    table = table.drop_duplicates("prompt")
    return table.sample(n=min(size, len(table)), random_state=seed).reset_index(drop=True)


class BrandLexicon:
    """Brands of the training ads (words opening at least ``min_ads`` ads and brand-like), and which
    brands each one's ads name."""

    def __init__(self, training_ads: Sequence[str], min_ads: int = 3):
        opening, after, total = Counter(), Counter(), Counter()
        token_lists = [[w.lower() for w in words_of(ad)] for ad in training_ads]
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
            if n >= min_ads
            and w not in AUDIENCE_WORDS
            and w not in FACT_WORDS
            and (n / total[w] >= 0.2 or after[w] / total[w] >= 0.2)
        }
        self.named_with: dict[str, set] = defaultdict(set)
        for words in token_lists:
            brand = brand_of(words)
            if brand in self.brands:
                self.named_with[brand].update(self.mentions(words))

    def mentions(self, words: Sequence[str]) -> set[str]:
        """The lexicon's brands among ``words`` (lower-cased; "Fitbits" and "Fitbit's" name Fitbit)."""
        found = set()
        for word in words:
            word = word.lower()
            stem = word[:-2] if word.endswith("'s") else word[:-1] if word.endswith("s") else word
            found |= {w for w in (word, stem) if w in self.brands}
        return found

    def conflicts(self, brand: str, ad: str) -> list[str] | None:
        """Brands the ad names that ``brand``'s training ads never name (sorted); None when
        ``brand`` is not in the lexicon (no training ads to check against)."""
        brand = brand.lower()
        if brand not in self.brands:
            return None
        return sorted(self.mentions(words_of(ad)) - self.named_with[brand] - {brand})


class ProductTypes:
    """Product types of the training ads (a head segment's last word, in the singular) and which name the
    same product ("Strap" and "Band": each one's ads name the other in at least ``share`` of cases)."""

    def __init__(self, training_ads: Sequence[str], brands: set[str] = frozenset(), min_ads: int = 3, share=0.02):
        segments = [[w.lower() for w in words_of(head_segment(ad)) if w.isalpha()] for ad in training_ads]
        self._known = {words[-1] for words in segments if words}  # every head word, as written
        heads, named = Counter(), defaultdict(Counter)
        for words in segments:
            if not words:
                continue
            head = self.singular(words[-1])
            heads[head] += 1
            for word in {self.singular(w) for w in words[:-1]} - {head}:
                named[head][word] += 1
        self.types = {
            t for t, n in heads.items() if n >= min_ads and t not in brands and t not in NOT_TYPES and len(t) > 1
        }
        self.ads_of = heads  # type -> training ads whose product it is
        self.named = named  # type -> words its ads' head segments name, with counts
        self.share = share

    def singular(self, word: str) -> str:
        """``word`` lower-cased, in the singular when the corpus has that form too ("bands" -> "band")."""
        word = word.lower()
        for cut in (2, 1):
            if len(word) > cut + 2 and word.endswith("es"[-cut:]) and word[:-cut] in self._known:
                return word[:-cut]
        return word

    def types_in(self, text: str) -> list[str]:
        """The known product types ``text``'s head segment names, in order (singular, lower-cased)."""
        words = [self.singular(w) for w in words_of(head_segment(text)) if w.isalpha()]
        return [w for w in words if w in self.types]

    def of(self, text: str) -> str | None:
        """The product type ``text`` ends its head segment with (singular, lower-cased), or None when
        that word is not a known type."""
        words = [w for w in words_of(head_segment(text)) if w.isalpha()]
        head = self.singular(words[-1]) if words else None
        return head if head in self.types else None

    def same_product(self, one: str, other: str) -> bool:
        """Whether two product types name the same product (see the class docstring)."""
        one, other = self.singular(one), self.singular(other)
        if one == other:
            return True

        def names(kind: str, word: str) -> float:
            return self.named[kind][word] / self.ads_of[kind] if self.ads_of[kind] else 0.0

        return names(one, other) >= self.share and names(other, one) >= self.share
