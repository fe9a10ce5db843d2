"""Writing ads with a word-level LSTM: greedy or sampled next words (temperature, top-k, top-p,
repetition penalty), one ad per prompt, ``batch_size`` prompts advancing together (one forward pass
per next word), and a table of one model's ads under several decoding settings (notebooks 03-04).

Units: ``max_new_tokens`` counts words (tokens of :func:`adgen_utils.corpus.text.tokenize`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from adgen_utils.corpus.text import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocabulary, detokenize, tokenize
from adgen_utils.models import Ad, Refusal, with_refusals


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
    """The next-token logits after each sequence of ids, (len(sequences), V) float32, in one forward
    pass: the sequences are right-padded to the longest (the LSTMs mask padding), and only each one's
    last hidden state goes through the ``next_token`` layer, not the whole (B, T, V) logits."""
    lengths = np.array([len(s) for s in sequences])
    ids = np.full((len(sequences), lengths.max()), PAD_ID, dtype=np.int32)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
    hidden = keras.ops.convert_to_numpy(model.get_layer("encoder")(ids, training=False))  # (B, T, H)
    last = hidden[np.arange(len(sequences)), lengths - 1].astype(np.float32)  # (B, H)
    return keras.ops.convert_to_numpy(model.get_layer("next_token")(last)).astype(np.float32)


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
) -> list[Generation]:
    """Continue each prompt word by word until <eos> or ``max_new_tokens``; one :class:`Generation`
    per prompt, in order.

    ``batch_size`` prompts advance together, one next word each per forward pass (a prompt leaves
    its batch when it ends). Prompt ``i`` draws its words from its own generator seeded with
    ``seeds[i]`` (None: unseeded), so its ad does not depend on the batch it is in, and greedy ads
    are the same at any ``batch_size``. Raises ValueError for a prompt :func:`prompt_refusal`
    refuses; unknown words among known ones are kept in the text, read by the model as <unk>, and
    listed in ``unknown_prompt_words``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    seeds = list(seeds) if seeds is not None else [None] * len(prompts)
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    for prompt in prompts:
        refusal = prompt_refusal(prompt, vocabulary)
        if refusal is not None:
            raise ValueError(refusal.reason)
    prompt_tokens = [tokenize(prompt) for prompt in prompts]
    sequences = [[BOS_ID, *vocabulary.encode(tokens)] for tokens in prompt_tokens]
    new_ids: list[list[int]] = [[] for _ in prompts]
    ended = [False] * len(prompts)
    rngs = [np.random.default_rng(seed) for seed in seeds]
    with tqdm(total=len(prompts), desc=description, unit="ad", disable=not progress) as bar:
        for start in range(0, len(prompts), batch_size):
            active = list(range(start, min(start + batch_size, len(prompts))))
            for _ in range(max_new_tokens):
                if not active:
                    break
                logits = next_token_logits(model, [sequences[i] for i in active])
                still = []
                for i, row in zip(active, logits):
                    next_id = pick_next_token(
                        row,
                        rngs[i],
                        greedy,
                        temperature,
                        top_k,
                        top_p,
                        repetition_penalty=repetition_penalty,
                        previous=sequences[i][1:],
                    )
                    if next_id == EOS_ID:
                        ended[i] = True
                        continue
                    new_ids[i].append(next_id)
                    sequences[i].append(next_id)
                    still.append(i)
                active = still
            bar.update(min(batch_size, len(prompts) - start))
    generations = []
    for tokens, ids, complete in zip(prompt_tokens, new_ids, ended):
        new_tokens = vocabulary.decode(ids)
        unknown = [t for t, i in zip(tokens, vocabulary.encode(tokens)) if i == UNK_ID]
        generations.append(Generation(detokenize([*tokens, *new_tokens]), new_tokens, unknown, complete))
    return generations


def generate(model: keras.Model, vocabulary: Vocabulary, prompt: str, seed: int | None = None, **options) -> Generation:
    """One prompt through :func:`generate_many` (the same ad it writes for this prompt and seed);
    ``options`` are its decoding keywords (``max_new_tokens``, ``greedy``, ``temperature``, ``top_k``,
    ``top_p``, ``repetition_penalty``)."""
    return generate_many(model, vocabulary, [prompt], seeds=[seed], batch_size=1, **options)[0]


def decoding_settings_table(
    model: keras.Model,
    vocabulary: Vocabulary,
    prompts: Sequence[str],
    settings: dict[str, dict],
    seed: int = 0,
    batch_size: int = 16,
) -> pd.DataFrame:
    """One LSTM's ads under several decoding settings: one row per prompt, one column per named
    setting (``settings``: name -> :func:`generate_many` keyword arguments), every prompt seeded with
    ``seed``. A prompt the model refuses gets its :class:`adgen_utils.models.Refusal` in each cell
    (shown as ``(no ad: reason)``). To compare several models, see
    :func:`adgen_utils.study.evaluation.ads_side_by_side`."""

    def refusal(prompt: str, _category: str | None) -> Refusal | None:
        return prompt_refusal(prompt, vocabulary)

    table: dict[str, list[Ad]] = {}
    for name, options in settings.items():

        def write(indices: list[int], options=options) -> list[str]:
            chosen = [prompts[i] for i in indices]
            return [
                g.text
                for g in generate_many(
                    model, vocabulary, chosen, seeds=[seed] * len(chosen), batch_size=batch_size, **options
                )
            ]

        table[name] = with_refusals(prompts, None, refusal, write)
    return pd.DataFrame(table, index=pd.Index(list(prompts), name="prompt"))
