"""What a seller knows beside brand and product: keywords every ad must carry ("44mm; stainless
steel; black"), and the facts an ad states (sizes, materials, colours, what it fits), read from real
ads to give held-out products and training examples their keywords. Phrases are compared case aside
and as whole words: "44mm" is in "Band 44mm, Black" but not in "144mm"."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from adgen_utils.corpus.data import normalize_ad

KEYWORD_SEPARATOR = ";"
MAX_KEYWORDS = 8  # a longer list is a description, not the facts an ad must carry


def _longest_first(words: str) -> list[str]:
    """``"a|b c"`` as a list, longest first, so that "stainless steel" is found before "steel"."""
    return sorted(words.split("|"), key=len, reverse=True)


MATERIALS = _longest_first(
    "stainless steel|leather|silicone|nylon|metal|aluminum|aluminium|titanium|steel|plastic|rubber|tpu|"
    "pu leather|carbon fiber|glass|tempered glass|wood|bamboo|cotton|polyester|canvas|ceramic|acrylic|"
    "copper|brass|silver|gold plated|fabric|mesh|velvet|wool|linen|vinyl|foam"
)
COLOURS = _longest_first(
    "black|white|red|blue|green|yellow|orange|pink|purple|grey|gray|brown|beige|navy|navy blue|rose gold|"
    "space gray|space grey|midnight|clear|transparent|teal|turquoise|khaki|ivory|burgundy|wine red|"
    "sky blue|light blue|dark blue|dark green|olive|coral|lavender|mint"
)
SIZE = re.compile(
    r"(?<![\w.])\d+(?:[.,/]\d+)?(?:\s?-\s?\d+(?:\.\d+)?)?\s?"
    r"(?:mm|cm|inch(?:es)?|in|ft|feet|oz|fl oz|lbs?|kg|gb|tb|mah|ml|qt|watts?|w|v|pcs|pack|count|ct)(?!\w)"
    r"|(?<![\w.])\d+(?:\.\d+)?(?:\")",
    re.IGNORECASE,
)
# What an accessory fits: the capitalised words after "for", "compatible with", "fits", "works with".
FITS = re.compile(r"\b(?i:compatible with|works with|for|fits)\s+((?:[A-Z0-9][\w'+]*(?:\s|$)){1,3})")
FACT_KINDS = ("size", "material", "colour", "fits")
# Where an ad's head segment ends: before "for", "with", "compatible", "fits", "by", "and", a comma
# (not one inside a number: "3,600 lumens"), a bracket, a pipe or a dash between spaces.
SEGMENT_END = re.compile(r"\s(?:for|with|compatible|fits|by|and)\s|,(?!\d)|[(|\[;]|\s[-–—]\s", re.IGNORECASE)


def head_segment(ad: str) -> str:
    """The part of the ad that names the product: up to the first :data:`SEGMENT_END`."""
    return SEGMENT_END.split(ad, maxsplit=1)[0].strip()


def phrase(text: str) -> str:
    """``text`` normalised and lower-cased: how keywords and ads are compared."""
    return " ".join(normalize_ad(text).lower().split())


def parse_keywords(text: str | None) -> tuple[str, ...]:
    """The keywords of a products file's cell: phrases separated by ``;``, normalised, empty ones and
    repeats (case aside) left out, in the order given."""
    kept, seen = [], set()
    for part in (text or "").split(KEYWORD_SEPARATOR):
        keyword = normalize_ad(part).strip(" ,")
        if keyword and phrase(keyword) not in seen:
            seen.add(phrase(keyword))
            kept.append(keyword)
    return tuple(kept)


def keywords_text(keywords) -> str:
    """Keywords as a products file gives them, ``"44mm; black"`` (a tuple joined; a text as it is)."""
    return keywords if isinstance(keywords, str) else f"{KEYWORD_SEPARATOR} ".join(keywords or ())


def has_phrase(text: str, keyword: str) -> bool:
    """Whether ``text`` contains ``keyword`` as whole words, case aside."""
    wanted = phrase(keyword)
    return bool(wanted) and re.search(r"(?<!\w)" + re.escape(wanted) + r"(?!\w)", phrase(text)) is not None


def missing_keywords(text: str, keywords: Sequence[str]) -> list[str]:
    """The ``keywords`` that ``text`` does not contain, in order."""
    return [keyword for keyword in keywords if not has_phrase(text, keyword)]


def facts_of(ad: str) -> dict[str, list[str]]:
    """The facts ``ad`` states, by kind (:data:`FACT_KINDS`), each as written in the ad, in the order
    they appear, without repeats: sizes ("44mm", "6.5 ft"), materials, colours, what it fits."""
    found: dict[str, list[tuple[int, str]]] = {kind: [] for kind in FACT_KINDS}
    found["size"] = [(m.start(), m.group(0)) for m in SIZE.finditer(ad)]
    for kind, words in (("material", MATERIALS), ("colour", COLOURS)):
        taken: list[tuple[int, int]] = []
        for word in words:
            for m in re.finditer(r"(?<!\w)" + re.escape(word) + r"(?!\w)", ad, flags=re.IGNORECASE):
                if not any(start < m.end() and m.start() < end for start, end in taken):  # not inside a longer one
                    taken.append((m.start(), m.end()))
                    found[kind].append((m.start(), m.group(0)))
    found["fits"] = [(m.start(1), m.group(1).strip()) for m in FITS.finditer(ad)]
    facts = {}
    for kind, hits in found.items():
        seen, ordered = set(), []
        for _, text in sorted(hits):
            if phrase(text) not in seen:
                seen.add(phrase(text))
                ordered.append(text)
        facts[kind] = ordered
    return facts


def keywords_from(ad: str, prompt: str, most: int = 3, rng: random.Random | None = None) -> tuple[str, ...]:
    """Up to ``most`` of ``ad``'s facts (:func:`facts_of`) as a seller would give them: not already
    in the ``prompt`` (brand and product), one of each kind first. Drawn with ``rng``, else the first
    ones, so that held-out products get the same keywords every time."""
    facts = facts_of(ad)
    pools = [[f for f in facts[kind] if not has_phrase(prompt, f)] for kind in FACT_KINDS]
    if rng is not None:
        for pool in pools:
            rng.shuffle(pool)
        rng.shuffle(pools)
    chosen, seen = [], set()
    while len(chosen) < most and any(pools):
        for pool in pools:  # one of each kind, then a second of each, ...
            if pool and len(chosen) < most:
                fact = pool.pop(0)
                if phrase(fact) not in seen:
                    seen.add(phrase(fact))
                    chosen.append(fact)
    return tuple(chosen)
