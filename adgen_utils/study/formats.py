"""Where an ad will run, and what that place accepts: its length limit and its editorial rules.

Sources (read 2026-12):
- ``amazon-title``: Amazon Seller Central, "Product title requirements and guidelines" (in force
  since January 2025): at most 200 characters with spaces; no promotional phrases such as "free
  shipping" or "100% quality guaranteed"; none of the characters ``! $ ? _ { } ^ ¬ ¦`` unless part of
  the brand; the same word at most twice, prepositions, articles and conjunctions aside.
- ``google-headline`` and ``google-description``: Google Ads Help, "About responsive search ads"
  (headlines up to 30 characters, descriptions up to 90) and the editorial policy "Punctuation and
  symbols" (no exclamation mark in a headline, no repeated punctuation such as "!!", no symbols used
  for decoration such as "*").

A title corpus gives the short formats by cutting each candidate at its last phrase boundary that
fits (:meth:`adgen_utils.study.selection.AdRules.cut`): "Fintie Band for Apple Watch 44mm, Black"
gives the 30-character headline "Fintie Band for Apple Watch". Keywords that fall past the cut are
named by the ``missing keyword`` rule as not fitting."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

# Prepositions, articles and conjunctions: Amazon lets these repeat.
FUNCTION_WORDS = frozenset(
    "a an the and or but nor for with of to in on at by from as into onto over under up per plus & vs".split()  # noqa: SIM905
)
PROMOTIONAL = tuple(
    "free shipping|free delivery|100% quality|quality guaranteed|best seller|bestseller|best selling|"  # noqa: SIM905
    "hot sale|hot item|on sale|limited time|buy now|cheapest".split("|")
)


@dataclass(frozen=True)
class AdFormat:
    """A place an ad runs: ``max_chars``, ``forbidden`` characters, ``promotional`` phrases refused,
    how often one word may appear (``max_word_repeats``, function words aside; None: any), whether
    repeated punctuation ("!!") is refused, and whether the product's name alone is an ad there."""

    name: str
    max_chars: int
    forbidden: str = ""
    promotional: tuple[str, ...] = ()
    max_word_repeats: int | None = None
    no_repeated_punctuation: bool = False
    name_alone: bool = False  # the product's name alone is an ad here ("Samsung 55-inch Smart TV" as a headline)
    source: str = ""

    def problems(self, text: str, given: str = "") -> list[str]:
        """What in ``text`` breaks this format's editorial rules (the length is the ``too long`` rule).
        Characters of ``given`` (what the seller typed: "Yahoo!") are theirs to keep."""
        found = []
        characters = sorted({c for c in text if c in self.forbidden and c not in given})
        if characters:
            found.append(f"the character(s) {' '.join(characters)}")
        lowered = " ".join(text.lower().split())
        phrases = [p for p in self.promotional if re.search(r"(?<!\w)" + re.escape(p) + r"(?!\w)", lowered)]
        if phrases:
            found.append(f"promotional phrase {phrases[0]!r}")
        if self.max_word_repeats is not None:
            # Words of letters only: sizes and model numbers ("44mm", "TH-50PX75U") name the product.
            words = [w.strip("'-.!?") for w in re.split(r"[\s,/;:()\[\]|&+]+", lowered)]
            counts = Counter(w for w in words if re.fullmatch(r"[a-z][a-z'-]*", w) and w not in FUNCTION_WORDS)
            repeated = [w for w, n in counts.most_common() if n > self.max_word_repeats]
            if repeated:
                found.append(f"{repeated[0]!r} {counts[repeated[0]]} times (at most {self.max_word_repeats})")
        if self.no_repeated_punctuation and re.search(r"([!?.,*#@$%&])\1", text):
            found.append("repeated punctuation")
        return found


FORMATS = {
    "amazon-title": AdFormat(
        "amazon-title",
        200,
        forbidden="!$?_{}^¬¦",
        promotional=PROMOTIONAL,
        max_word_repeats=2,
        source="Amazon Seller Central: Product title requirements and guidelines (2025)",
    ),
    "google-headline": AdFormat(
        "google-headline",
        30,
        forbidden="!*^¬¦{}",
        no_repeated_punctuation=True,
        name_alone=True,
        source="Google Ads Help: About responsive search ads; Editorial policy, Punctuation and symbols",
    ),
    "google-description": AdFormat(
        "google-description",
        90,
        forbidden="*^¬¦{}",
        no_repeated_punctuation=True,
        source="Google Ads Help: About responsive search ads; Editorial policy, Punctuation and symbols",
    ),
}
DEFAULT_FORMAT = "amazon-title"


def ad_format(name: str) -> AdFormat:
    """The format called ``name``, or a ValueError that lists them."""
    if name not in FORMATS:
        raise ValueError(f"unknown ad format {name!r}: choose one of {', '.join(FORMATS)}")
    return FORMATS[name]
