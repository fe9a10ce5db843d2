"""A causal language model behind :class:`adgen_utils.models.AdModel`: scoring ads at word level, writing ads."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from adgen_utils.corpus.facts import head_segment, keywords_from
from adgen_utils.corpus.text import TOKEN_PATTERN
from adgen_utils.layout import FINETUNE_RESULT_FILE
from adgen_utils.models import (
    FINE_TUNED,
    SCORE_COLUMNS,
    TRANSFORMER,
    ZERO_SHOT,
    AdModel,
    Categories,
    Keywords,
    ModelDescription,
    Refusal,
    Writing,
    WrittenAd,
    check_reads_category,
    few_shot,
    summarize_scores,
)
from adgen_utils.transformer.pretrained import (
    CATEGORY_SEPARATOR,
    TokenScores,
    ad_prompt,
    build_prompt,
    category_for,
    context_text,
    draw_examples,
    generate_ads,
    keyword_line,
    load_causal_lm,
    resolve_model,
    score_texts,
    strip_category,
)


def _continues_word(tokenizer, size: int) -> np.ndarray:
    """(size,) bool: token ``v`` starts with a letter or digit, so written after a word it extends it."""
    texts = tokenizer.batch_decode([[v] for v in range(min(size, len(tokenizer)))])
    flags = np.zeros(size, dtype=bool)
    flags[: len(texts)] = [bool(t) and t[0].isalnum() for t in texts]
    return flags


def word_hits(text: str, scores: TokenScores, continues_word: np.ndarray) -> tuple[int, int, int]:
    """``(predictions, top-1 hits, top-5 hits)`` at word level from a subword model's scores of ``text``:
    a word is a top-k hit when its first token ranks in the top k and greedy decoding completes it."""
    starts = np.array([s + len(text[s:e]) - len(text[s:e].lstrip()) for s, e in scores.spans])  # no leading space
    ends = np.array([e for _, e in scores.spans])
    predictions = hits1 = hits5 = 0
    for match in TOKEN_PATTERN.finditer(text):
        start, end = match.span()
        predictions += 1
        covering = np.nonzero((ends > start) & (starts < end))[0]
        if not covering.size:
            continue
        first, last = covering[0], covering[-1]
        completed = bool(scores.top1[covering[1:]].all())
        closed = ends[last] > end or not continues_word[scores.predicted[last + 1]]
        if completed and closed:
            hits1 += bool(scores.top1[first])
            hits5 += bool(scores.top5[first])
    end_of_ad = len(scores.log_probs) - 1
    return predictions + 1, hits1 + int(scores.top1[end_of_ad]), hits5 + int(scores.top5[end_of_ad])


class TransformerAdModel(AdModel):
    """A causal language model: zero-shot, few-shot (``shots`` same-category examples before each ad)
    or fine-tuned (a folder with ``finetune.json``). Few-shot and category-conditioned models read a category."""

    def __init__(
        self,
        name_or_path,
        name: str | None = None,
        shots: int = 0,
        examples: pd.DataFrame | None = None,
        seed: int = 0,
        device: str | None = None,
        models_dir=None,
        training_texts=None,
    ):
        self.path = resolve_model(name_or_path, models_dir, training_texts)
        self.model, self.tokenizer = load_causal_lm(self.path, device=device)
        result = Path(self.path) / FINETUNE_RESULT_FILE if isinstance(self.path, Path) else None
        settings = json.loads(result.read_text())["settings"] if result is not None and result.is_file() else None
        self.finetuned = settings is not None
        self.category_prefix = bool(settings and settings["config"].get("category_prefix"))
        if self.finetuned and shots:
            raise ValueError(f"{self.path} is fine-tuned: it reads ads after its end-of-text token, not after examples")
        _check_shots(shots, examples)
        self.shots, self.examples, self.seed = shots, examples, seed
        self.name = name or f"{Path(str(name_or_path)).name} ({self._setting()})"
        self._categories: dict[str, str] = {}
        self._continues = None

    @classmethod
    def in_training(cls, model, tokenizer, category_prefix: bool) -> TransformerAdModel:
        """The interface over a model being fine-tuned (the Trainer's own module and tokenizer): it
        reads ads after its end-of-text token, with ``"<category> | "`` when ``category_prefix``."""
        view = cls.__new__(cls)
        view.path, view.model, view.tokenizer = Path("training"), model, tokenizer
        view.finetuned, view.category_prefix = True, category_prefix
        view.shots, view.examples, view.seed = 0, None, 0
        view.name = "in training"
        view._categories, view._continues = {}, None
        return view

    def _setting(self) -> str:
        return FINE_TUNED if self.finetuned else (few_shot(self.shots) if self.shots else ZERO_SHOT)

    def describe(self) -> ModelDescription:
        """A transformer, zero-shot, few-shot or fine-tuned, from its folder or Hub id."""
        return ModelDescription(
            name=self.name,
            family=TRANSFORMER,
            setting=self._setting(),
            unknown_words_charged="none needed: open vocabulary (bytes)",
            source=str(self.path.resolve()) if isinstance(self.path, Path) else str(self.path),
            reads_category=self.category_prefix or (self.shots > 0 and not self.finetuned),
        )

    def refusal(self, prompt: str, category: str | None = None) -> Refusal | None:
        """Why ``prompt`` (with ``category``) cannot be continued: empty, a line break, or no category
        for a category-conditioned model with no ``examples`` to infer one from. None when it can."""
        check_reads_category(self, None if category is None else [category])
        if not prompt or not prompt.strip():
            return Refusal("empty prompt")
        if len(prompt.splitlines()) > 1:
            return Refusal("a prompt is the beginning of one ad and cannot contain a line break")
        if self.category_prefix and not category and self.examples is None:
            return Refusal("the model was fine-tuned with categories and this prompt has none")
        return None

    def _category(self, text: str, given: str | None) -> str:
        if given:
            return given
        if self.examples is None:
            raise ValueError(f"{self.name} needs a category for {text!r}: give one, or examples to infer it from")
        if text not in self._categories:
            self._categories[text] = category_for(text, self.examples)
        return self._categories[text]

    def _examples_for(self, i: int, text: str, category: str | None) -> list[str]:
        exclude = " ".join(text.split()[:3])  # never an ad of the same product
        return draw_examples(
            self.examples, self._category(text, category), self.shots, seed=self.seed + i, exclude=exclude
        )

    def prompt_texts(
        self, prompts: Sequence[str], categories: Categories = None, keywords: Keywords = None
    ) -> list[str]:
        """The full text the model continues for each prompt: with its keywords on the line before
        (:func:`keyword_line`), and for few-shot, each example after a keyword line of its own facts."""
        texts = []
        for i, prompt in enumerate(prompts):
            given = categories[i] if categories is not None else None
            wanted = keywords[i] if keywords is not None else ()
            if self.finetuned:
                category = self._category(prompt, given) if self.category_prefix else None
                texts.append(ad_prompt(prompt, self.tokenizer, category, wanted))
            elif self.shots:
                examples = self._examples_for(i, prompt, given)
                if wanted:  # the examples show the format: their own facts, then the ad
                    examples = [keyword_line(keywords_from(e, head_segment(e))) + e for e in examples]
                texts.append(build_prompt(prompt, examples, keywords=wanted))
            else:
                texts.append(keyword_line(wanted) + prompt.strip())
        return texts

    def write_ads(
        self,
        prompts: Sequence[str],
        indices: list[int],
        categories: Categories,
        how: Writing,
        keywords: Keywords = None,
    ) -> list[WrittenAd]:
        """Ads for ``prompts[i]``, ``i`` in ``indices``, ``how.batch_size`` prompts per ``generate``
        call (see :func:`generate_ads`), each prompt's full text from :meth:`prompt_texts`."""
        chosen = [categories[i] for i in indices] if categories is not None else None
        wanted = [keywords[i] for i in indices] if keywords else None
        ads = generate_ads(
            self.model,
            self.tokenizer,
            self.prompt_texts([prompts[i] for i in indices], chosen, wanted),
            how.decoding,
            batch_size=how.batch_size,
            seed=[how.seeds[i] for i in indices],
            progress=how.progress,
            keywords=wanted,
            max_chars=how.max_chars,
        )
        return [strip_category(ad) for ad in ads] if self.category_prefix else ads

    def contexts(self, ads: Sequence[str], categories: Categories = None) -> list[str]:
        """What the model reads before each ad when scoring it."""
        contexts = []
        for i, ad in enumerate(ads):
            given = categories[i] if categories is not None else None
            if self.category_prefix:
                contexts.append(context_text(self.tokenizer, prefix=f"{self._category(ad, given)}{CATEGORY_SEPARATOR}"))
            elif self.shots and not self.finetuned:
                contexts.append(context_text(self.tokenizer, self._examples_for(i, ad, given)))
            else:
                contexts.append(context_text(self.tokenizer))
        return contexts

    def score(
        self, ads: Sequence[str], categories: Categories = None, batch_size: int = 8, progress: bool = False
    ) -> pd.DataFrame:
        """Per ad (rows, in order): ``SCORE_COLUMNS``, from the model's own token log-probabilities.
        ``categories`` only for a model that reads them."""
        check_reads_category(self, categories)
        ads = [ad.strip() for ad in ads]
        if self._continues is None:
            self._continues = _continues_word(self.tokenizer, self.model.config.vocab_size)
        scores = score_texts(self.model, self.tokenizer, ads, self.contexts(ads, categories), batch_size, progress)
        rows = []
        for ad, score in zip(ads, scores):
            predictions, hits1, hits5 = word_hits(ad, score, self._continues)
            rows.append([predictions, len(ad), len(score.log_probs), float(score.log_probs.sum()), hits1, hits5, 0])
        return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def _check_shots(shots: int, examples: pd.DataFrame | None) -> None:
    if shots < 0 or (shots and examples is None):
        raise ValueError("few-shot needs shots > 0 and examples (a DataFrame of training ads with ad, category)")


def with_shots(
    base: TransformerAdModel, shots: int, examples: pd.DataFrame, seed: int = 0, name: str | None = None
) -> TransformerAdModel:
    """A few-shot view of an already loaded pretrained model: ``shots`` example ads from ``examples``
    (training ads with ``ad`` and ``category``) before each ad, drawn with ``seed``. It shares the
    base's torch module and tokenizer, so the weights are in memory (and on the GPU) once."""
    if base.finetuned:
        raise ValueError(f"{base.name} is fine-tuned: it reads ads after its end-of-text token, not after examples")
    _check_shots(shots, examples)
    view = copy.copy(base)  # shallow: model and tokenizer are the base's own objects
    view.shots, view.examples, view.seed = shots, examples, seed
    view.name = name or f"{Path(str(base.path)).name} ({few_shot(shots)})"
    view._categories = {}  # inferred from examples, which may differ from the base's
    return view


def footing_score(validation: pd.DataFrame, category_prefix: bool):
    """``score(model, tokenizer) -> dict`` for fine-tuning's evaluations: the ``validation`` ads
    (columns ad, category) scored as notebook 07 scores a fine-tuned model, summed up by
    :func:`adgen_utils.models.summarize_scores`, plus ``loss`` (nats per model token). ``score.ads``
    is how many it scores, ``score.head(n)`` the same on the first ``n`` (to time an evaluation)."""
    ads = validation["ad"].tolist()
    categories = validation["category"].tolist() if category_prefix else None

    def score(model, tokenizer) -> dict:
        scores = TransformerAdModel.in_training(model, tokenizer, category_prefix).score(ads, categories)
        return {**summarize_scores(scores), "loss": float(-scores["log_prob"].sum() / scores["model_tokens"].sum())}

    score.ads, score.head = len(ads), lambda count: footing_score(validation.head(count), category_prefix)
    return score
