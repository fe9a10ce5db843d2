"""The seller's keywords written into a transformer's ads as ``generate`` runs: the hook that carries
out :class:`adgen_utils.corpus.steering.KeywordSteering`, one forced token at a time."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
from transformers import LogitsProcessor

from adgen_utils.corpus.steering import KeywordSteering


@lru_cache(maxsize=4)
def ending_tokens(tokenizer) -> frozenset[int]:
    """The tokens that end an ad: end-of-text, and every token with a line break in it."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return frozenset(i for i, text in enumerate(texts) if "\n" in text or "\r" in text) | {tokenizer.eos_token_id}


class KeywordForcing(LogitsProcessor):
    """For each prompt of a ``generate`` batch (left-padded to ``prompt_length`` tokens; its ad begins
    with ``starts[i]``; ``beams`` rows each), the tokens its :class:`KeywordSteering` inserts. While a
    row has some to write, every other token scores minus infinity, so any decoding picks them."""

    def __init__(
        self,
        tokenizer,
        steering: Sequence[KeywordSteering],
        starts: Sequence[str],
        prompt_length: int,
        max_new_tokens: int,
        beams: int = 1,
    ):
        self.tokenizer, self.steering, self.starts = tokenizer, list(steering), list(starts)
        self.prompt_length, self.max_new_tokens, self.beams = prompt_length, max_new_tokens, beams
        self.endings = ending_tokens(tokenizer)
        # Per prompt: the tokens still to force after a given written continuation. Keyed by what was
        # written, not by row, because beam search reorders its rows at every step.
        self.pending: list[dict[tuple[int, ...], list[int]]] = [{} for _ in self.steering]

    def _length(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _insertion(self, prompt: int, new: tuple[int, ...], first_choice: int) -> list[int]:
        """The tokens to force after ``new`` (none: the model chooses)."""
        if self.endings.intersection(new):
            return []  # this ad has ended; generate() pads it from here
        written = self.starts[prompt] + self.tokenizer.decode(new, skip_special_tokens=True)
        room = self.max_new_tokens - len(new)
        insertion = self.steering[prompt].insertion(written, first_choice in self.endings, room, self._length)
        if insertion is None:
            return []
        ids = self.tokenizer(insertion.text, add_special_tokens=False)["input_ids"]
        return ids + [self.tokenizer.eos_token_id] if insertion.closes else ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row in range(scores.shape[0]):
            prompt = row // self.beams
            if not self.steering[prompt].keywords:
                continue
            new = tuple(input_ids[row, self.prompt_length :].tolist())
            forced = self.pending[prompt].pop(new, None) or self._insertion(prompt, new, int(scores[row].argmax()))
            if forced:
                self.pending[prompt][(*new, forced[0])] = forced[1:]
                scores[row] = float("-inf")
                scores[row, forced[0]] = 0.0
        return scores
