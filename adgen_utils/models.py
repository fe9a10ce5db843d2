"""The one interface every model of the series implements, :class:`AdModel`, and its units.

A *word* is a token of :func:`adgen_utils.corpus.text.tokenize`, plus one *end* prediction per ad;
log-probabilities are natural logs summed over an ad. Imports neither torch nor TensorFlow."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

import pandas as pd

from adgen_utils.settings import DEFAULT_DECODING

# Per ad: predictions (words + the end), characters, the model's own tokens, summed natural-log
# probability, top-1 and top-5 hits, and words outside a closed vocabulary.
SCORE_COLUMNS = ["words", "characters", "model_tokens", "log_prob", "top1", "top5", "unknown_words"]


def summarize_scores(scores: pd.DataFrame) -> dict:
    """Per-ad scores (:data:`SCORE_COLUMNS`) to the footing's metrics: ads, predictions, characters,
    ``oov_share``, ``top1_accuracy``, ``top5_accuracy``, ``per_word_perplexity``, ``bits_per_char``, ``model_tokens_per_word``."""
    predictions = int(scores["words"].sum())
    words = predictions - len(scores)  # the ends are not words
    log_prob = float(scores["log_prob"].sum())
    return {
        "ads": len(scores),
        "predictions": predictions,
        "characters": int(scores["characters"].sum()),
        "oov_share": float(scores["unknown_words"].sum() / max(words, 1)),
        "top1_accuracy": float(scores["top1"].sum() / predictions),
        "top5_accuracy": float(scores["top5"].sum() / predictions),
        "per_word_perplexity": float(math.exp(min(-log_prob / predictions, 700))),
        "bits_per_char": float(-log_prob / math.log(2) / scores["characters"].sum()),
        "model_tokens_per_word": float(scores["model_tokens"].sum() / predictions),
    }


# A quality curve (``quality_curve.csv`` of a trained model, layout.QUALITY_CURVE_FILE): one row per
# checkpoint: optimizer steps, epochs, pure training seconds and training FLOPs so far, the
# validation ads scored, then the footing's metrics (summarize_scores) on them.
CURVE_METRICS = ["bits_per_char", "per_word_perplexity", "top5_accuracy", "top1_accuracy"]
CURVE_COLUMNS = ["step", "epoch", "train_seconds", "train_flops", "validation_ads", *CURVE_METRICS]


@dataclass(frozen=True)
class Decoding:
    """One decoding setting; the fields are ``model.generate`` arguments (None: not used).
    ``max_new_tokens`` counts the model's tokens (words for an LSTM)."""

    do_sample: bool = False
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    num_beams: int = 1
    max_new_tokens: int = 40

    def generate_arguments(self) -> dict:
        """The settings as keyword arguments of transformers' ``generate``."""
        arguments = {k: v for k, v in asdict(self).items() if v is not None}
        if not self.do_sample:  # sampling-only settings would only raise warnings
            for key in ("temperature", "top_k", "top_p"):
                arguments.pop(key, None)
        return arguments


DECODINGS: dict[str, Decoding] = {
    "greedy": Decoding(),
    "greedy + repetition_penalty 1.3": Decoding(repetition_penalty=1.3),
    "greedy + no_repeat_ngram 3": Decoding(no_repeat_ngram_size=3),
    "beam search (4)": Decoding(num_beams=4, no_repeat_ngram_size=3),
    "sample temperature 0.7": Decoding(do_sample=True, temperature=0.7, top_k=0),
    "sample top-k 40": Decoding(do_sample=True, temperature=1.0, top_k=40),
    "sample top-p 0.9": Decoding(do_sample=True, temperature=1.0, top_k=0, top_p=0.9),
    DEFAULT_DECODING: Decoding(do_sample=True, temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.2),
}


@dataclass(frozen=True)
class Refusal:
    """A prompt a model did not continue, and why (``reason``: "empty prompt", "none of the prompt's
    words ... are in the model's vocabulary", ...). It stands where the ad would be."""

    reason: str

    def __str__(self) -> str:
        return f"(no ad: {self.reason})"


class WrittenAd(str):
    """An ad a model wrote: a ``str`` with ``complete``, whether the model ended it itself (False:
    it stopped at ``max_new_tokens``)."""

    complete: bool

    def __new__(cls, text: str, complete: bool = True):
        ad = super().__new__(cls, text)
        ad.complete = complete
        return ad

    def __reduce__(self):
        return WrittenAd, (str(self), self.complete)


Ad = str | Refusal  # what generate() gives for one prompt: a WrittenAd, or a Refusal


def ads_only(results: Sequence[Ad]) -> list[str]:
    """The ads among ``results``, refusals left out."""
    return [r for r in results if not isinstance(r, Refusal)]


# ModelDescription.family
WORD_LSTM = "word-level LSTM"
TRANSFORMER = "transformer"
# ModelDescription.setting (a few-shot model's is few_shot(k): "3-shot")
FROM_SCRATCH = "trained from scratch"
ZERO_SHOT = "zero-shot"
FINE_TUNED = "fine-tuned"


def few_shot(shots: int) -> str:
    """The setting of a model shown ``shots`` example ads before each ad: ``"3-shot"``."""
    return f"{shots}-shot"


@dataclass(frozen=True)
class ModelDescription:
    """What a model is, for tables (one column per field) and model cards."""

    name: str  # the label shown in tables, e.g. "one-hot LSTM" or "smollm2-135m 3-shot"
    family: str  # WORD_LSTM or TRANSFORMER
    setting: str  # FROM_SCRATCH, ZERO_SHOT, few_shot(k) or FINE_TUNED: stable, unlike the name
    unknown_words_charged: str  # how a word outside the vocabulary is charged when scoring
    source: str  # the folder (absolute path) or Hub id it was loaded from
    reads_category: bool  # whether generate() and score() read a category per prompt or ad


Categories = Sequence[str | None] | None  # one category (or None) per prompt or ad; None: no categories
Keywords = Sequence[Sequence[str]] | None  # the keywords each prompt's ad must carry; None: none for any


@dataclass(frozen=True)
class Writing:
    """How :meth:`AdModel.generate` writes: the decoding, one seed per prompt (prompt ``i`` draws
    with its own generator seeded ``seeds[i]``, whatever its batch-mates), prompts per forward pass,
    whether a progress bar shows, and the characters within which the keywords are written (the
    format's length; None: no limit)."""

    decoding: Decoding
    seeds: tuple[int, ...]
    batch_size: int
    progress: bool
    max_chars: int | None = None


@runtime_checkable
class AdModel(Protocol):
    """What every model of the series does; the families subclass it and inherit :meth:`generate`."""

    name: str

    def describe(self) -> ModelDescription:
        """What the model is."""
        ...

    def refusal(self, prompt: str, category: str | None = None) -> Refusal | None:
        """Why ``prompt`` (with ``category``, for a model that reads one) cannot be continued, or
        None when it can."""
        ...

    def write_ads(
        self, prompts: Sequence[str], indices: list[int], categories: Categories, how: Writing, keywords: Keywords
    ) -> list[WrittenAd]:
        """One ad for each accepted ``prompts[i]``, ``i`` in ``indices`` (ascending); the family's own
        generation, told ``keywords[i]`` in the family's way where it can read them."""
        ...

    def generate(
        self,
        prompts: Sequence[str],
        decoding: Decoding = Decoding(),
        seed: int | Sequence[int] = 0,
        batch_size: int = 16,
        categories: Categories = None,
        progress: bool = False,
        keywords: Keywords = None,
        max_chars: int | None = None,
    ) -> list[Ad]:
        """One ad (or :class:`Refusal`, without running the model) per prompt, in order. Prompt ``i``
        draws with ``seed + i``, or with ``seed[i]`` when ``seed`` gives one per prompt. ``categories``
        to a model that reads none raise ValueError; ``keywords[i]`` are written into ad ``i`` in every
        family (:mod:`adgen_utils.corpus.steering`) within ``max_chars`` characters where given, and
        also told on a keyword line to the transformers."""
        check_reads_category(self, categories)
        given = categories if categories is not None else [None] * len(prompts)
        seeds = tuple(seed) if isinstance(seed, Sequence) else tuple(int(seed) + i for i in range(len(prompts)))
        if len(given) != len(prompts) or (keywords is not None and len(keywords) != len(prompts)):
            raise ValueError(f"{len(prompts)} prompts but {len(given)} categories or keyword lists")
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        results: list[Ad | None] = [self.refusal(prompt, category) for prompt, category in zip(prompts, given)]
        accepted = [i for i, result in enumerate(results) if result is None]
        # The family writes the accepted prompts only, and is not called when every prompt is refused.
        how = Writing(decoding, seeds, batch_size, progress, max_chars)
        ads = self.write_ads(prompts, accepted, categories, how, keywords) if accepted else []
        if len(ads) != len(accepted):
            raise RuntimeError(f"{len(ads)} ads written for {len(accepted)} prompts")
        for i, ad in zip(accepted, ads):
            results[i] = ad
        return results

    def score(
        self, ads: Sequence[str], categories: Categories = None, batch_size: int = 8, progress: bool = False
    ) -> pd.DataFrame:
        """One row per ad, in order, with :data:`SCORE_COLUMNS`; ``categories`` as for :meth:`generate`."""
        ...


def check_reads_category(model: AdModel, categories: Sequence[str | None] | None) -> None:
    """ValueError when ``categories`` are given to a model that reads none: it would ignore them."""
    if categories is not None and not model.describe().reads_category:
        raise ValueError(
            f"{model.name} reads no category: pass categories=None (categories_for(model, categories) "
            "gives a model the categories only when it reads them)"
        )


def categories_for(model: AdModel, categories: Sequence[str | None] | None) -> Sequence[str | None] | None:
    """``categories`` for a model that reads them, None for one that does not."""
    return categories if model.describe().reads_category else None
