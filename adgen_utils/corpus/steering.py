"""Keywords written into an ad while it is generated: every family reads the seller's keywords this
way, whatever its prompt can carry. A model left alone drops most of them: in the quick run the
fine-tuned model, told them on a keyword line, kept every keyword for 39% of held-out products.

This is lexically constrained decoding in its simplest form. The model writes; whenever it opens a
new phrase (after a comma, a semicolon, a pipe or a dash) while a keyword is still missing, that
phrase starts with the keyword, and the model carries on from there. If it is about to end the ad,
the first missing keyword opens a phrase of its own instead. When it has no more room (tokens, or
characters of the format) than the missing keywords need, they close the ad. Nothing else is forced,
so the ad stays the model's own, and the rules judge it as any other."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from adgen_utils.corpus.facts import missing_keywords

# How many characters one more step may write (a word, or a long word piece): the keywords close an ad
# before the format's length is this near, so that they still fit once it ends.
NEXT_STEP_CHARS = 12
# The written text has just opened a new phrase: a separator, and perhaps the space after it.
PHRASE_OPENED = re.compile(r"(?:[,;|]|\s[-–—])\s*$")


@dataclass(frozen=True)
class Insertion:
    """Text to write next instead of the model's choice; ``closes``: the ad ends after it."""

    text: str
    closes: bool = False


class KeywordSteering:
    """The keywords one ad must carry, and when to write those it has not written yet: within
    ``max_chars`` characters where given (the format's length, so that a short ad has them too)."""

    def __init__(self, keywords: Sequence[str] = (), max_chars: int | None = None):
        self.keywords, self.max_chars = tuple(keywords), max_chars

    def insertion(self, ad: str, ending: bool, room: int, length: Callable[[str], int]) -> Insertion | None:
        """What to write after ``ad`` (the ad so far), or None to leave the choice to the model.
        ``ending``: the model's first choice ends the ad; ``room``: how many more units (tokens, or
        words for an LSTM) it may write; ``length(text)``: a text's size in those units."""
        if not self.keywords:
            return None
        missing = missing_keywords(ad, self.keywords)
        if not missing:
            return None
        closing = ", " + ", ".join(missing)
        # + 1: the end of the ad. A text has about one unit per byte at most: most steps need not measure it.
        no_room = room <= len(closing.encode()) + 2 and room <= length(closing) + 1
        full = self.max_chars is not None and len(ad) + len(closing) + NEXT_STEP_CHARS >= self.max_chars
        if no_room or full:
            return Insertion(closing, closes=True)
        opened = PHRASE_OPENED.search(ad)
        if opened or ending:  # ending: a phrase of its own, and the model goes on (closing wrote "Brand Product, 44mm")
            separator = ("" if ad.endswith(" ") else " ") if opened else ", "  # "Band, " has its space
            return Insertion(separator + missing[0])
        return None


def steering_for(
    keywords: Sequence[Sequence[str]] | None, count: int, max_chars: int | None = None
) -> list[KeywordSteering]:
    """One :class:`KeywordSteering` per ad of ``count``: ``keywords[i]`` for ad ``i`` (none if None)."""
    if keywords is None:
        return [KeywordSteering() for _ in range(count)]
    if len(keywords) != count:
        raise ValueError(f"{count} prompts but {len(keywords)} keyword lists")
    return [KeywordSteering(k, max_chars) for k in keywords]
