"""Word-level tokens, brands and the vocabulary: the units every model of the series is measured in.
A token is a word that may carry inner punctuation ('42mm', "Women's", 'Wi-Fi') or one punctuation mark."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TOKEN_PATTERN = re.compile(r"\w+(?:[^\w\s]+\w+)*|[^\w\s]")


def tokenize(ad: str) -> list[str]:
    """Split an ad into word and punctuation tokens, keeping case."""
    return TOKEN_PATTERN.findall(ad)


def is_word(token: str) -> bool:
    """True for a token that contains a letter or digit (not bare punctuation)."""
    return any(ch.isalnum() for ch in token)


# Openers that sellers put before the brand ("New Sony ...", "Replacement Remote for ...").
GENERIC_OPENERS = frozenset(
    "new compatible replacement for with the a an original genuine universal premium upgraded upgrade brand oem "  # noqa: SIM905
    "authentic official certified hot sale latest newest pack set pcs replaced".split()
)


def brand_of(words: Sequence[str]) -> str | None:
    """The brand of an ad from its words (punctuation tokens left out): the first word that is not a
    number or a generic opener ("New", "Compatible", "Replacement"); Amazon titles start with it."""
    return next((w for w in words if w.lower() not in GENERIC_OPENERS and not w[0].isdigit()), None)


# Vocabulary: built on the training split only, reused for every other split and for generation. ---

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
VOCABULARY_FORMAT = "adgen-vocabulary/1"

_NO_SPACE_BEFORE = set(",.;:!?%)]}")
_NO_SPACE_AFTER = set("([{")


def detokenize(tokens: Sequence[str]) -> str:
    """Join tokens into an ad: no space before closing punctuation or after an opening bracket,
    and an inch mark (") sticks to the number before it."""
    text = ""
    for token in tokens:
        if not text:
            text = token
        elif token in _NO_SPACE_BEFORE or text[-1] in _NO_SPACE_AFTER or (token == '"' and text[-1].isdigit()):
            text += token
        else:
            text += " " + token
    return text


@dataclass
class Vocabulary:
    """Token <-> id mapping. Ids 0-3 are <pad>, <unk>, <bos>, <eos>; the rest follow by falling
    training count. ``counts[i]`` is token i's count in the training split (<unk> holds the
    total of the tokens left out, <eos> one per training ad), for unigram baselines."""

    tokens: list[str]
    counts: list[int]
    min_count: int = 1
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        if tuple(self.tokens[:4]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary starts with {SPECIAL_TOKENS}, got {self.tokens[:4]}")
        if len(self.counts) != len(self.tokens):
            raise ValueError("tokens and counts differ in length")
        self.index = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_count: int = 2, max_size: int | None = None) -> Vocabulary:
        """Keep tokens seen at least ``min_count`` times (at most ``max_size`` ids in all)."""
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        counter: Counter = Counter()
        ads = 0
        for tokens in token_lists:
            counter.update(tokens)
            ads += 1
        counter.pop("", None)
        ranked = sorted(
            (t for t, c in counter.items() if c >= min_count and t not in SPECIAL_TOKENS),
            key=lambda t: (-counter[t], t),
        )
        if max_size is not None:
            if max_size <= len(SPECIAL_TOKENS):
                raise ValueError(f"max_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {max_size}")
            ranked = ranked[: max_size - len(SPECIAL_TOKENS)]
        kept = set(ranked)
        unknown = sum(c for t, c in counter.items() if t not in kept)
        counts = [0, unknown, 0, ads] + [counter[t] for t in ranked]
        return cls(list(SPECIAL_TOKENS) + ranked, counts, min_count)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index and self.index[token] >= len(SPECIAL_TOKENS)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Ids of ``tokens``; a token outside the vocabulary becomes <unk> (id 1)."""
        get = self.index.get
        return [get(t, UNK_ID) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids``, leaving out <pad>, <bos> and <eos>."""
        return [self.tokens[i] for i in ids if i not in (PAD_ID, BOS_ID, EOS_ID)]

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary as JSON (never pickle)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": VOCABULARY_FORMAT,
            "min_count": self.min_count,
            "tokens": self.tokens,
            "counts": self.counts,
        }
        path.write_text(json.dumps(payload, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"No vocabulary at {path}: build one (Vocabulary.build) and save it there first.")
        payload = json.loads(path.read_text())
        if payload.get("format") != VOCABULARY_FORMAT:
            raise ValueError(f"{path} is not an adgen vocabulary (format {payload.get('format')!r})")
        return cls(payload["tokens"], payload["counts"], payload.get("min_count", 1))

    def unigram_log_probs(self) -> np.ndarray:
        """log P(token) from training counts, shape (V,), natural log; <pad>/<bos> get -inf."""
        counts = np.asarray(self.counts, dtype=np.float64)
        with np.errstate(divide="ignore"):
            return np.log(counts / counts.sum())


def repeated_word_share(ad: str) -> float:
    """Share of an ad's words (lower-cased) that repeat an earlier word: 0 for none, near 1 for loops."""
    words = ad.lower().split()
    return 1 - len(set(words)) / len(words) if words else 0.0
