"""Stage 2: word-level tokens, the unit every model in the series is measured in.

A token is either a word that may carry inner punctuation, so model numbers, sizes and
possessives stay whole ('MQL12LL/A', '42mm', '4/3/2/1', "Women's", 'Wi-Fi', '3.0'),
or a single punctuation mark ('(', ',', '"'). Case is kept: 'ZAGG' and 'Zagg' differ.
"""
from __future__ import annotations

import re

TOKEN_PATTERN = re.compile(r"\w+(?:[^\w\s]+\w+)*|[^\w\s]")


def tokenize(ad: str) -> list[str]:
    """Split an ad into word and punctuation tokens, keeping case."""
    return TOKEN_PATTERN.findall(ad)


def is_word(token: str) -> bool:
    """True for a token that contains a letter or digit (not bare punctuation)."""
    return any(ch.isalnum() for ch in token)
