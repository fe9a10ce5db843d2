"""The one interface every model of the series implements, and how a model is opened.

Notebooks 07-08, ``adgen evaluate``, ``adgen generate`` and the playground use a model only through
:class:`AdModel`: the word-level LSTMs of notebooks 03-04 (:class:`adgen_utils.lstm.admodel.LSTMAdModel`)
and the transformers of 05-06, zero-shot, few-shot or fine-tuned
(:class:`adgen_utils.transformer.admodel.TransformerAdModel`). :func:`load_ad_model` opens either.

* **Scoring** (:meth:`AdModel.score`) reads ads and returns one row per ad in :data:`SCORE_COLUMNS`.
  Units: a *word* is a token of :func:`adgen_utils.corpus.text.tokenize` (a word or a punctuation
  mark) and every ad has one more prediction, its *end*, so an ad of ``n`` words has ``n + 1``
  word-level predictions. Log-probabilities are natural logarithms, summed over an ad.
* **Writing ads** (:meth:`AdModel.generate`) continues each prompt into one ad, with one
  :class:`Decoding`: a :class:`WrittenAd`, a ``str`` that also says whether the model ended it. A prompt the model cannot continue (empty, a line break, no word an LSTM
  knows, no category for a model that needs one) gets a :class:`Refusal` with the reason in its
  place, never an ad-shaped marker string; :meth:`AdModel.refusal` says so before generating.
  :func:`ads_only` keeps the ads of a list.
* **Categories**: only a model whose :attr:`ModelDescription.reads_category` is True reads them
  (few-shot examples of the same category, a category-conditioned fine-tuned model); the others
  raise ValueError when given any (:func:`check_reads_category`), so callers pass them through
  :func:`categories_for`.
* **Describing itself** (:meth:`AdModel.describe`): a :class:`ModelDescription`.

This module imports neither torch nor TensorFlow; :func:`load_ad_model` imports the family it opens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd

from adgen_utils.layout import LSTM_MODEL_FILE
from adgen_utils.parameters import DEFAULT_DECODING

# Per ad: predictions (words + the end), characters, the model's own tokens, summed natural-log
# probability, top-1 and top-5 hits, and words outside a closed vocabulary.
SCORE_COLUMNS = ["words", "characters", "model_tokens", "log_prob", "top1", "top5", "unknown_words"]


def summarize_scores(scores: pd.DataFrame) -> dict:
    """Aggregate per-ad scores (:data:`SCORE_COLUMNS`) into the footing's metrics.

    Returns ads, predictions (words + ends), characters, ``oov_share`` (test words outside the
    model's vocabulary), ``top1_accuracy``, ``top5_accuracy``, ``per_word_perplexity``,
    ``bits_per_char`` and ``model_tokens_per_word`` (how many of its own tokens a model predicts per word).
    """
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
    """An ad a model wrote: the text (a ``str``, usable as one everywhere) and ``complete``,
    whether the model ended it itself (False: it stopped at ``max_new_tokens``, perhaps in the
    middle of a phrase; :class:`adgen_utils.study.selection.AdRules` then cuts its last phrase)."""

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

    name: str  # the label shown in tables, e.g. "LSTM (03)" or "smollm2-135m 3-shot"
    family: str  # WORD_LSTM or TRANSFORMER
    setting: str  # FROM_SCRATCH, ZERO_SHOT, few_shot(k) or FINE_TUNED: stable, unlike the name
    unknown_words_charged: str  # how a word outside the vocabulary is charged when scoring
    source: str  # the folder (absolute path) or Hub id it was loaded from
    reads_category: bool  # whether generate() and score() read a category per prompt or ad


Categories = Sequence[str | None] | None  # one category (or None) per prompt or ad; None: no categories


@dataclass(frozen=True)
class Writing:
    """How :meth:`AdModel.generate` writes: the decoding, the seed (prompt ``i`` of a call draws
    with ``seed`` and its index), prompts per forward pass, and whether a progress bar shows."""

    decoding: Decoding
    seed: int
    batch_size: int
    progress: bool


@runtime_checkable
class AdModel(Protocol):
    """What every model of the series does; see the module's docstring for the units. The two
    families subclass it and inherit :meth:`generate`, which refusals and ordering make the same for
    every model."""

    name: str

    def describe(self) -> ModelDescription:
        """What the model is."""
        ...

    def refusal(self, prompt: str, category: str | None = None) -> Refusal | None:
        """Why ``prompt`` (with ``category``, for a model that reads one) cannot be continued, or
        None when it can."""
        ...

    def write_ads(
        self, prompts: Sequence[str], indices: list[int], categories: Categories, how: Writing
    ) -> list[WrittenAd]:
        """One ad for each of ``prompts[i]`` for ``i`` in ``indices`` (prompts :meth:`refusal`
        accepted, ascending), with ``categories[i]`` for a model that reads them; each family's own
        generation, called by :meth:`generate`."""
        ...

    def generate(
        self,
        prompts: Sequence[str],
        decoding: Decoding = Decoding(),
        seed: int = 0,
        batch_size: int = 16,
        categories: Categories = None,
        progress: bool = False,
    ) -> list[Ad]:
        """One ad (or, where :meth:`refusal` gives one, that :class:`Refusal`: the model is never run
        for a refused prompt) per prompt, in order; ``batch_size`` prompts share each forward pass.
        Prompt ``i`` uses ``categories[i]``; ``categories`` given to a model that reads none (see
        :attr:`ModelDescription.reads_category`) raise ValueError. Written once, here, for every model
        that subclasses :class:`AdModel`: the family writes the accepted prompts' ads (:meth:`write_ads`)."""
        check_reads_category(self, categories)
        how = Writing(decoding, seed, batch_size, progress)
        return with_refusals(
            prompts, categories, self.refusal, lambda indices: self.write_ads(prompts, indices, categories, how)
        )

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


def with_refusals(
    prompts: Sequence[str],
    categories: Sequence[str | None] | None,
    refusal: Callable[[str, str | None], Refusal | None],
    write: Callable[[list[int]], list[str]],
) -> list[Ad]:
    """What :meth:`AdModel.generate` returns: ``refusal(prompt, category)`` for each prompt, and for
    the prompts it accepts ``write(indices)``, which gets their indices (ascending) into ``prompts``
    and returns one ad for each, in that order. ``write`` is not called when every prompt is refused."""
    given = categories if categories is not None else [None] * len(prompts)
    if len(given) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(given)} categories")
    results: list[Ad | None] = [refusal(prompt, category) for prompt, category in zip(prompts, given)]
    accepted = [i for i, result in enumerate(results) if result is None]
    ads = write(accepted) if accepted else []
    if len(ads) != len(accepted):
        raise RuntimeError(f"{len(ads)} ads written for {len(accepted)} prompts")
    for i, ad in zip(accepted, ads):
        results[i] = ad
    return results


def is_lstm_folder(path) -> bool:
    """True for a folder saved by notebook 03/04 (``model.keras``)."""
    return Path(str(path)).expanduser().joinpath(LSTM_MODEL_FILE).is_file()


def load_ad_model(
    name_or_path,
    name: str | None = None,
    shots: int = 0,
    examples: pd.DataFrame | None = None,
    seed: int = 0,
    models_dir=None,
    training_texts=None,
) -> AdModel:
    """An LSTM folder (``model.keras``) or any model :func:`adgen_utils.transformer.pretrained.resolve_model`
    takes (a transformers folder, ``"smollm2-135m"``, ``"tiny"``, a Hub id), as an :class:`AdModel`.
    Only the family opened is imported: opening an LSTM never loads torch, nor a transformer Keras."""
    if is_lstm_folder(name_or_path):
        if shots:
            raise ValueError("few-shot prompts are for transformers; a word-level LSTM reads one ad at a time")
        from adgen_utils.lstm.admodel import LSTMAdModel

        return LSTMAdModel(Path(str(name_or_path)).expanduser(), name)
    from adgen_utils.transformer.admodel import TransformerAdModel

    return TransformerAdModel(
        name_or_path, name, shots, examples, seed, models_dir=models_dir, training_texts=training_texts
    )
