"""Writing ads with a word-level LSTM: greedy or sampled next words (temperature, top-k, top-p,
repetition penalty), one ad per prompt, and a table of several settings side by side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from adgen_utils.corpus.text import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocabulary, detokenize, tokenize


@dataclass
class Generation:
    """One generated ad: the text, the generated tokens and the prompt words the model did not know."""

    text: str
    new_tokens: list[str]
    unknown_prompt_words: list[str]


def pick_next_token(
    logits: np.ndarray,
    rng: np.random.Generator,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    banned: Sequence[int] = (PAD_ID, UNK_ID, BOS_ID),
    repetition_penalty: float = 1.0,
    previous: Sequence[int] = (),
) -> int:
    """Choose the next id from logits (V,): greedy, or sampling with temperature, top-k and top-p.

    ``banned`` ids are never chosen (by default padding, <unk> and <bos>). A
    ``repetition_penalty`` above 1 makes the ids in ``previous`` less likely, as in Hugging
    Face's ``generate``: their positive logits are divided by it, negative ones multiplied.
    """
    if repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    scores = np.asarray(logits, dtype=np.float64).copy()
    if repetition_penalty != 1.0 and len(previous):
        seen = np.unique(np.asarray(previous, dtype=np.int64))
        scores[seen] = np.where(scores[seen] > 0, scores[seen] / repetition_penalty, scores[seen] * repetition_penalty)
    scores[list(banned)] = -np.inf
    if greedy:
        return int(np.argmax(scores))
    scores = scores / temperature
    if top_k:
        cutoff = np.partition(scores, -top_k)[-top_k] if top_k < scores.size else -np.inf
        scores[scores < cutoff] = -np.inf
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    if top_p < 1:
        order = np.argsort(-probs, kind="stable")
        keep = np.cumsum(probs[order]) - probs[order] < top_p  # smallest set reaching top_p
        mask = np.zeros_like(probs, dtype=bool)
        mask[order[keep]] = True
        probs = np.where(mask, probs, 0.0)
        probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))


def generate(
    model: keras.Model,
    vocabulary: Vocabulary,
    prompt: str,
    max_new_tokens: int = 40,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    seed: int | None = None,
) -> Generation:
    """Continue ``prompt`` token by token until <eos> or ``max_new_tokens``.

    Raises ValueError for an empty prompt or one whose words are all unknown to the model;
    unknown words among known ones are kept in the text, read by the model as <unk>, and listed.
    """
    prompt_tokens = tokenize(prompt or "")
    if not prompt_tokens:
        raise ValueError("The prompt is empty: give the start of an ad, e.g. 'Apple Watch'.")
    ids = vocabulary.encode(prompt_tokens)
    unknown = [t for t, i in zip(prompt_tokens, ids) if i == UNK_ID]
    if len(unknown) == len(prompt_tokens):
        examples = ", ".join([t for t in vocabulary.tokens[4:200] if t[0].isalpha()][:5])
        raise ValueError(
            f"None of the prompt's words {unknown} are in the model's vocabulary of {len(vocabulary):,} tokens, "
            f"so it would generate from nothing. Start with words from the ads (e.g. {examples})."
        )
    rng = np.random.default_rng(seed)
    sequence = [BOS_ID, *ids]
    new_ids: list[int] = []
    for _ in range(max_new_tokens):
        logits = keras.ops.convert_to_numpy(model(np.asarray([sequence], dtype=np.int32), training=False)[0, -1])
        next_id = pick_next_token(
            logits, rng, greedy, temperature, top_k, top_p, repetition_penalty=repetition_penalty, previous=sequence[1:]
        )
        if next_id == EOS_ID:
            break
        new_ids.append(next_id)
        sequence.append(next_id)
    new_tokens = vocabulary.decode(new_ids)
    return Generation(detokenize([*prompt_tokens, *new_tokens]), new_tokens, unknown)


def generation_table(
    model, vocabulary, prompts: Sequence[str], settings: dict[str, dict], seed: int = 0
) -> pd.DataFrame:
    """Generated ads for each prompt (rows) under each named decoding setting (columns)."""
    table = {}
    for name, options in settings.items():
        column = []
        for prompt in prompts:
            try:
                column.append(generate(model, vocabulary, prompt, seed=seed, **options).text)
            except ValueError as error:
                column.append(f"[{error}]")
        table[name] = column
    return pd.DataFrame(table, index=pd.Index(prompts, name="prompt"))
