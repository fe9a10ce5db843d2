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
  :class:`Decoding`. A prompt the model cannot continue (empty, a line break, no word an LSTM
  knows) gets a :class:`Refusal` with the reason in its place, never an ad-shaped marker string.
* **Describing itself** (:meth:`AdModel.describe`): a :class:`ModelDescription`.

This module imports neither torch nor TensorFlow; :func:`load_ad_model` imports the family it opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd

from adgen_utils.layout import LSTM_MODEL_FILE
from adgen_utils.parameters import DEFAULT_DECODING

# Per ad: predictions (words + the end), characters, the model's own tokens, summed natural-log
# probability, top-1 and top-5 hits, and words outside a closed vocabulary.
SCORE_COLUMNS = ["words", "characters", "model_tokens", "log_prob", "top1", "top5", "unknown_words"]


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


Ad = str | Refusal  # what generate() gives for one prompt


def ads_only(results: Sequence[Ad]) -> list[str]:
    """The ads among ``results``, refusals left out."""
    return [r for r in results if not isinstance(r, Refusal)]


@dataclass(frozen=True)
class ModelDescription:
    """What a model is, for tables and model cards."""

    name: str  # the label shown in tables, e.g. "embedding_lstm" or "SmolLM2-135M (3-shot)"
    family: str  # "word-level LSTM" or "transformer"
    setting: str  # "trained from scratch", "zero-shot", "3-shot" or "fine-tuned"
    unknown_words: str  # how a word outside the vocabulary is charged when scoring
    source: str  # the folder or Hub id it was loaded from


@runtime_checkable
class AdModel(Protocol):
    """What every model of the series does; see the module's docstring for the units."""

    name: str

    def describe(self) -> ModelDescription:
        """What the model is."""
        ...

    def refusal(self, prompt: str) -> Refusal | None:
        """Why ``prompt`` cannot be continued, or None when it can."""
        ...

    def generate(
        self,
        prompts: Sequence[str],
        decoding: Decoding = Decoding(),
        seed: int = 0,
        batch_size: int = 16,
        categories: Sequence[str | None] | None = None,
        progress: bool = False,
    ) -> list[Ad]:
        """One ad (or a :class:`Refusal`) per prompt, in order; prompt ``i`` uses ``categories[i]``
        where the model reads a category, and ``batch_size`` prompts share one forward pass where the
        model batches."""
        ...

    def score(
        self,
        ads: Sequence[str],
        categories: Sequence[str | None] | None = None,
        batch_size: int = 8,
        progress: bool = False,
    ) -> pd.DataFrame:
        """One row per ad, in order, with :data:`SCORE_COLUMNS`."""
        ...


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
