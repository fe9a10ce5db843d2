"""One interface over every model of the series: the word-level LSTMs of notebooks 03-04 and the
transformers of 05-06 (zero-shot, few-shot, fine-tuned). Notebook 07 scores them on one footing,
the playground and ``adgen generate`` write ads with them.

Units: a *word* is a token of :func:`adgen_utils.text.tokenize` (a word or a punctuation mark) and
every ad has one more prediction, its *end*, so an ad of ``n`` words has ``n + 1`` word-level
predictions. Log-probabilities are natural logarithms, summed over an ad.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .pretrained import (
    Decoding,
    TokenScores,
    ad_prompt,
    build_prompt,
    category_for,
    context_text,
    draw_examples,
    generate_ads,
    load_causal_lm,
    resolve_model,
    score_texts,
    strip_category,
)
from .stages import FINETUNE_RESULT_FILE, LSTM_MODEL_FILE
from .text import BOS_ID, EOS_ID, PAD_ID, TOKEN_PATTERN, UNK_ID, tokenize

SCORE_COLUMNS = ["words", "characters", "model_tokens", "log_prob", "top1", "top5", "unknown_words"]
CODE_POINTS = 0x110000  # every Unicode character: what a character never seen in training is spread over


class SpellingModel:
    """P(spelling) of a word: a character-bigram model with word start and end, add-``k`` smoothed.

    A closed vocabulary names every word it does not know ``<unk>``; to be charged fairly such a word
    costs P(<unk> | context) × P(spelling), a proper probability over all strings. Fit on the
    vocabulary's types, each once (rare words, not frequent ones, are what ``<unk>`` stands for).
    A character never seen costs P(other) / 1,114,112.
    """

    def __init__(self, words: Sequence[str], k: float = 0.1):
        characters = sorted({c for w in words for c in w})
        self.index = {c: i + 2 for i, c in enumerate(characters)}  # 0: word boundary, 1: other
        counts = np.full((len(characters) + 2, len(characters) + 2), k)
        for word in words:
            sequence = [0, *(self.index[c] for c in word), 0]
            np.add.at(counts, (sequence[:-1], sequence[1:]), 1)
        self.log_probs = np.log(counts / counts.sum(axis=1, keepdims=True))

    def log_prob(self, word: str) -> float:
        """Natural-log probability of spelling ``word`` (always < 0)."""
        sequence = [0, *(self.index.get(c, 1) for c in word), 0]
        unseen = sum(c not in self.index for c in word)
        return float(self.log_probs[sequence[:-1], sequence[1:]].sum() - unseen * math.log(CODE_POINTS))


def _check_decoding_for_lstm(decoding: Decoding) -> dict:
    if decoding.num_beams > 1 or decoding.no_repeat_ngram_size:
        raise ValueError("the word-level LSTM decodes greedily or by sampling: beam search and "
                         "no_repeat_ngram_size are for transformers")
    return dict(greedy=not decoding.do_sample, temperature=decoding.temperature or 1.0, top_k=decoding.top_k or 0,
                top_p=decoding.top_p or 1.0, repetition_penalty=decoding.repetition_penalty or 1.0,
                max_new_tokens=decoding.max_new_tokens)


class LSTMAdModel:
    """A word-level LSTM saved by notebook 03 or 04 (``model.keras`` + ``vocabulary.json``)."""

    kind = "word-level LSTM"
    unknown_charge = "P(<unk>) × character-bigram spelling"

    def __init__(self, folder: str | Path, name: str | None = None):
        from .lstm import load_trained

        self.folder = Path(folder)
        self.model, self.vocabulary = load_trained(self.folder)
        self.name = name or self.folder.name
        self.spelling = SpellingModel(self.vocabulary.tokens[4:])

    def problem(self, prompt: str) -> str | None:
        """Why ``prompt`` cannot be continued (None if it can)."""
        tokens = tokenize(prompt or "")
        if not tokens:
            return "empty prompt"
        if not any(t in self.vocabulary for t in tokens):
            return f"none of the prompt's words {tokens[:5]} are in the model's vocabulary"
        return None

    def generate(self, prompts: Sequence[str], decoding: Decoding = Decoding(), seed: int = 0, batch_size: int = 1,
                 categories: Sequence[str | None] | None = None, progress: bool = False) -> list[str]:
        """One ad per prompt (prompt ``i`` sampled with seed ``seed + i``); ``max_new_tokens`` counts words.
        ``batch_size`` and ``categories`` are accepted for a common interface and not used."""
        from tqdm.auto import tqdm

        from .lstm import generate

        options = _check_decoding_for_lstm(decoding)
        return [generate(self.model, self.vocabulary, prompt, seed=seed + i, **options).text
                for i, prompt in enumerate(tqdm(prompts, desc=self.name, unit="ad", disable=not progress))]

    def score(self, ads: Sequence[str], categories: Sequence[str | None] | None = None, batch_size: int = 64,
              progress: bool = False, logits_budget_gib: float = 1.0) -> pd.DataFrame:
        """Per ad (rows, in order): ``SCORE_COLUMNS``. A word outside the vocabulary is charged
        P(<unk>) × P(spelling) and never counts as a hit; <pad>, <unk> and <bos> are never a choice.

        Ads are scored ``batch_size`` at a time, fewer where needed so that the logits and the
        tensors computed from them stay within ``logits_budget_gib`` GiB of the model's device (about
        1 GiB by default for a 100k vocabulary); only per-word results are copied to the host."""
        from tqdm.auto import tqdm

        from .lstm import rows_per_chunk, target_scores

        token_lists = [tokenize(ad) for ad in ads]
        for i, tokens in enumerate(token_lists):
            if not tokens:
                raise ValueError(f"ad {i} is empty: nothing to score")
        results = np.zeros((len(ads), len(SCORE_COLUMNS)))
        order = sorted(range(len(ads)), key=lambda i: len(token_lists[i]))
        widest = max(map(len, token_lists), default=0) + 1
        rows = min(batch_size, rows_per_chunk(len(self.vocabulary), widest, logits_budget_gib, tensors=4))
        for start in tqdm(range(0, len(order), rows), desc=self.name, unit="batch", disable=not progress):
            members = order[start:start + rows]
            width = max(len(token_lists[i]) for i in members) + 1
            inputs = np.full((len(members), width), PAD_ID, dtype=np.int32)
            targets = np.full((len(members), width), PAD_ID, dtype=np.int32)
            for row, i in enumerate(members):
                ids = self.vocabulary.encode(token_lists[i])
                inputs[row, :len(ids) + 1] = [BOS_ID, *ids]
                targets[row, :len(ids) + 1] = [*ids, EOS_ID]
            target_log_probs, top1, top5 = target_scores(self.model, inputs, targets)
            known = targets != UNK_ID
            hits1, hits5 = top1 & known, top5 & known
            for row, i in enumerate(members):
                n = len(token_lists[i]) + 1
                unknown = [w for w, t in zip(token_lists[i], targets[row]) if t == UNK_ID]
                log_prob = float(target_log_probs[row, :n].astype(np.float64).sum())
                log_prob += sum(self.spelling.log_prob(w) for w in unknown)
                results[i] = [n, len(ads[i]), n, log_prob, hits1[row, :n].sum(), hits5[row, :n].sum(), len(unknown)]
        return pd.DataFrame(results, columns=SCORE_COLUMNS).astype({c: int for c in SCORE_COLUMNS if c != "log_prob"})


def _continues_word(tokenizer, size: int) -> np.ndarray:
    """(size,) bool: token ``v`` starts with a letter or digit, so written after a word it extends it."""
    texts = tokenizer.batch_decode([[v] for v in range(min(size, len(tokenizer)))])
    flags = np.zeros(size, dtype=bool)
    flags[:len(texts)] = [bool(t) and t[0].isalnum() for t in texts]
    return flags


def word_hits(text: str, scores: TokenScores, continues_word: np.ndarray) -> tuple[int, int, int]:
    """``(predictions, top-1 hits, top-5 hits)`` at word level from a subword model's scores of ``text``.

    The model's k best words at a position are taken to be the greedy completions of its k best next
    tokens: a word is a top-k hit when its first token ranks in the top k, each further token of the
    word is the first choice, and the model's first choice after the word does not extend it. The
    ad's end (the end-of-text token) is one more prediction. ``continues_word`` comes from the
    tokenizer (see :func:`_continues_word`).
    """
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


class TransformerAdModel:
    """A causal language model: zero-shot, few-shot (``shots`` example ads from ``examples`` before
    each ad, drawn from the same category) or fine-tuned by notebook 06 (a folder with
    ``finetune.json``: its ads follow the end-of-text token, and ``"<category> | "`` when it was
    trained category-conditioned). :func:`with_shots` makes a few-shot view of a loaded model without
    loading it again."""

    kind = "transformer"
    unknown_charge = "none needed: open vocabulary (bytes)"

    def __init__(self, name_or_path, name: str | None = None, shots: int = 0, examples: pd.DataFrame | None = None,
                 seed: int = 0, device: str | None = None, models_dir=None, training_texts=None):
        self.path = resolve_model(name_or_path, models_dir, training_texts)
        self.model, self.tokenizer = load_causal_lm(self.path, device=device)
        result = Path(self.path) / FINETUNE_RESULT_FILE if isinstance(self.path, Path) else None
        settings = json.loads(result.read_text())["settings"] if result is not None and result.is_file() else None
        self.finetuned = settings is not None
        self.category_prefix = bool(settings and settings["config"].get("category_prefix"))
        _check_shots(shots, examples)
        self.shots, self.examples, self.seed = shots, examples, seed
        label = "fine-tuned" if self.finetuned else (f"{shots}-shot" if shots else "zero-shot")
        self.name = name or f"{Path(str(name_or_path)).name} ({label})"
        self._categories: dict[str, str] = {}
        self._continues = None

    def problem(self, prompt: str) -> str | None:
        """Why ``prompt`` cannot be continued (None if it can)."""
        if not prompt or not prompt.strip():
            return "empty prompt"
        if len(prompt.splitlines()) > 1:
            return "a prompt is the beginning of one ad and cannot contain a line break"
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
        return draw_examples(self.examples, self._category(text, category), self.shots, seed=self.seed + i,
                             exclude=exclude)

    def prompt_texts(self, prompts: Sequence[str], categories: Sequence[str | None] | None = None) -> list[str]:
        """The full text the model continues for each prompt."""
        texts = []
        for i, prompt in enumerate(prompts):
            given = categories[i] if categories is not None else None
            if self.finetuned:
                category = self._category(prompt, given) if self.category_prefix else None
                texts.append(ad_prompt(prompt, self.tokenizer, category))
            elif self.shots:
                texts.append(build_prompt(prompt, self._examples_for(i, prompt, given)))
            else:
                texts.append(prompt.strip())
        return texts

    def generate(self, prompts: Sequence[str], decoding: Decoding = Decoding(), seed: int = 0, batch_size: int = 16,
                 categories: Sequence[str | None] | None = None, progress: bool = False) -> list[str]:
        """One ad per prompt, ``batch_size`` prompts per ``generate`` call (see :func:`generate_ads`)."""
        ads = generate_ads(self.model, self.tokenizer, self.prompt_texts(prompts, categories), decoding,
                           batch_size=batch_size, seed=seed, progress=progress)
        return [strip_category(ad) for ad in ads] if self.category_prefix else ads

    def contexts(self, ads: Sequence[str], categories: Sequence[str | None] | None = None) -> list[str]:
        """What the model reads before each ad when scoring it."""
        contexts = []
        for i, ad in enumerate(ads):
            given = categories[i] if categories is not None else None
            if self.category_prefix:
                contexts.append(context_text(self.tokenizer, prefix=f"{self._category(ad, given)} | "))
            elif self.shots and not self.finetuned:
                contexts.append(context_text(self.tokenizer, self._examples_for(i, ad, given)))
            else:
                contexts.append(context_text(self.tokenizer))
        return contexts

    def score(self, ads: Sequence[str], categories: Sequence[str | None] | None = None, batch_size: int = 8,
              progress: bool = False) -> pd.DataFrame:
        """Per ad (rows, in order): ``SCORE_COLUMNS``, from the model's own token log-probabilities."""
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


def with_shots(base: TransformerAdModel, shots: int, examples: pd.DataFrame, seed: int = 0,
               name: str | None = None) -> TransformerAdModel:
    """A few-shot view of an already loaded pretrained model: ``shots`` example ads from ``examples``
    (training ads with ``ad`` and ``category``) before each ad, drawn with ``seed``. It shares the
    base's torch module and tokenizer, so the weights are in memory (and on the GPU) once."""
    if base.finetuned:
        raise ValueError(f"{base.name} is fine-tuned: it reads ads after its end-of-text token, not after examples")
    _check_shots(shots, examples)
    view = copy.copy(base)  # shallow: model and tokenizer are the base's own objects
    view.shots, view.examples, view.seed = shots, examples, seed
    view.name = name or f"{Path(str(base.path)).name} ({shots}-shot)"
    view._categories = {}  # inferred from examples, which may differ from the base's
    return view


def is_lstm_folder(path) -> bool:
    """True for a folder saved by notebook 03/04 (``model.keras``)."""
    return Path(str(path)).expanduser().joinpath(LSTM_MODEL_FILE).is_file()


def load_ad_model(name_or_path, name: str | None = None, shots: int = 0, examples: pd.DataFrame | None = None,
                  seed: int = 0, models_dir=None, training_texts=None):
    """An LSTM folder (``model.keras``) or any model :func:`adgen_utils.pretrained.resolve_model` takes
    (a transformers folder, ``"smollm2-135m"``, ``"tiny"``, a Hub id), behind one interface:
    ``name``, ``kind``, ``unknown_charge``, ``problem(prompt)``, ``generate(prompts, decoding, ...)``
    and ``score(ads, categories)``."""
    if is_lstm_folder(name_or_path):
        if shots:
            raise ValueError("few-shot prompts are for transformers; a word-level LSTM reads one ad at a time")
        return LSTMAdModel(Path(str(name_or_path)).expanduser(), name)
    return TransformerAdModel(name_or_path, name, shots, examples, seed, models_dir=models_dir,
                              training_texts=training_texts)
