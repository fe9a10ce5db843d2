"""Writing ads with a word-level LSTM, ``batch_size`` prompts at a time (one forward pass per word).
``max_new_tokens`` counts words."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
from tqdm.auto import tqdm

from adgen_utils.corpus.steering import steering_for
from adgen_utils.corpus.text import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocabulary, detokenize, tokenize
from adgen_utils.models import Refusal

END = object()  # in a forced insertion: the ad ends here


@dataclass
class Generation:
    """One generated ad: the text, the generated tokens, the prompt words the model did not know, and
    whether the model ended the ad itself (<eos>) rather than at ``max_new_tokens``."""

    text: str
    new_tokens: list[str]
    unknown_prompt_words: list[str]
    complete: bool = True


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
    """The next id from logits (V,): greedy, or sampled with temperature, top-k and top-p.
    ``banned`` ids are never chosen; ``repetition_penalty`` works as in Hugging Face's ``generate``."""
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


def prompt_refusal(prompt: str, vocabulary: Vocabulary) -> Refusal | None:
    """Why an LSTM with ``vocabulary`` cannot continue ``prompt`` (no word, or no word it knows: it
    would write from nothing), or None when it can. Unknown words among known ones are fine."""
    tokens = tokenize(prompt or "")
    if not tokens:
        return Refusal("empty prompt: give the start of an ad, e.g. 'Apple Watch'")
    if all(i == UNK_ID for i in vocabulary.encode(tokens)):
        examples = ", ".join([t for t in vocabulary.tokens[4:200] if t[0].isalpha()][:5])
        return Refusal(
            f"none of the prompt's words {tokens[:5]} are in the model's vocabulary of {len(vocabulary):,} "
            f"tokens, so it would write from nothing: start with words from the ads (e.g. {examples})"
        )
    return None


def next_token_logits(model: keras.Model, sequences: Sequence[Sequence[int]]) -> np.ndarray:
    """Next-token logits (len(sequences), V) float32 after each right-padded sequence, in one forward pass."""
    lengths = np.array([len(s) for s in sequences])
    ids = np.full((len(sequences), lengths.max()), PAD_ID, dtype=np.int32)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
    logits = keras.ops.convert_to_numpy(model(ids, training=False))  # (B, T, V)
    return logits[np.arange(len(sequences)), lengths - 1].astype(np.float32)


def generate_many(
    model: keras.Model,
    vocabulary: Vocabulary,
    prompts: Sequence[str],
    max_new_tokens: int = 40,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    seeds: Sequence[int | None] | None = None,
    batch_size: int = 16,
    progress: bool = False,
    description: str = "generating",
    keywords: Sequence[Sequence[str]] | None = None,
    max_chars: int | None = None,
) -> list[Generation]:
    """Continue each prompt until <eos> or ``max_new_tokens``: one :class:`Generation` per prompt, with
    ``keywords[i]`` written into ad ``i`` within ``max_chars`` characters (:mod:`~adgen_utils.corpus.steering`).

    ``batch_size`` prompts advance together; prompt ``i`` samples with its own generator (``seeds[i]``), so
    its ad does not depend on its batch. A refused prompt raises ValueError."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    seeds = list(seeds) if seeds is not None else [None] * len(prompts)
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    for prompt in prompts:
        refusal = prompt_refusal(prompt, vocabulary)
        if refusal is not None:
            raise ValueError(refusal.reason)
    steering = steering_for(keywords, len(prompts), max_chars)
    prompt_tokens = [tokenize(prompt) for prompt in prompts]
    sequences = [[BOS_ID, *vocabulary.encode(tokens)] for tokens in prompt_tokens]
    new_words: list[list[str]] = [[] for _ in prompts]  # as written: a keyword the model does not know too
    forced: list[list[str]] = [[] for _ in prompts]  # words of a keyword insertion still to write
    ended = [False] * len(prompts)
    rngs = [np.random.default_rng(seed) for seed in seeds]
    decoding = dict(
        greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty
    )

    def insertion(i: int, logits: np.ndarray) -> list[str]:
        """The words :class:`KeywordSteering` inserts in ad ``i`` now (none: the model chooses)."""
        written = detokenize([*prompt_tokens[i], *new_words[i]])
        ending = int(np.argmax(logits)) == EOS_ID
        room = max_new_tokens - len(new_words[i])
        chosen = steering[i].insertion(written, ending, room, lambda text: len(tokenize(text)))
        return [] if chosen is None else [*tokenize(chosen.text), *([END] if chosen.closes else [])]

    with tqdm(total=len(prompts), desc=description, unit="ad", disable=not progress) as bar:
        for start in range(0, len(prompts), batch_size):
            active = list(range(start, min(start + batch_size, len(prompts))))
            for _ in range(max_new_tokens):
                if not active:
                    break
                logits = next_token_logits(model, [sequences[i] for i in active])
                still = []
                for i, row in zip(active, logits):
                    if not forced[i] and steering[i].keywords:
                        forced[i] = insertion(i, row)
                    if forced[i]:
                        word = forced[i].pop(0)
                        next_id = EOS_ID if word is END else vocabulary.encode([word])[0]
                    else:
                        next_id = pick_next_token(row, rngs[i], previous=sequences[i][1:], **decoding)
                        word = vocabulary.tokens[next_id]
                    if next_id == EOS_ID:
                        ended[i] = True
                        continue
                    new_words[i].append(word)
                    sequences[i].append(next_id)
                    still.append(i)
                active = still
            bar.update(min(batch_size, len(prompts) - start))
    generations = []
    for tokens, words, complete in zip(prompt_tokens, new_words, ended):
        unknown = [t for t, i in zip(tokens, vocabulary.encode(tokens)) if i == UNK_ID]
        generations.append(Generation(detokenize([*tokens, *words]), words, unknown, complete))
    return generations
