"""A word-frequency category classifier: whether generated ads stay in the category they were asked for."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

import pandas as pd

from adgen_utils.study.products import words_of


class CategoryClassifier:
    """The category an ad most likely belongs to, from the words of each category's training ads
    (multinomial naive Bayes on lower-cased words, add-one smoothing). ``training`` has ``ad`` and
    ``category`` columns."""

    def __init__(self, training: pd.DataFrame):
        counts: dict[str, Counter] = defaultdict(Counter)
        for ad, category in zip(training["ad"], training["category"]):
            counts[category].update(w.lower() for w in words_of(ad))
        self.categories = sorted(counts)
        vocabulary = set().union(*counts.values()) if counts else set()
        size = len(vocabulary) + 1  # + one slot for words never seen
        ads = Counter(training["category"])
        self._prior = {c: math.log(ads[c] / len(training)) for c in self.categories}
        self._totals = {c: sum(counts[c].values()) + size for c in self.categories}
        self._counts = counts

    def predict(self, ads: Sequence[str]) -> list[str]:
        """The most likely category of each ad."""
        chosen = []
        for ad in ads:
            words = [w.lower() for w in words_of(ad)]
            best = max(
                self.categories,
                key=lambda c: self._prior[c] + sum(math.log((self._counts[c][w] + 1) / self._totals[c]) for w in words),
            )
            chosen.append(best)
        return chosen
