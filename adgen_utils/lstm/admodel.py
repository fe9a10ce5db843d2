"""A saved word-level LSTM behind :class:`adgen_utils.models.AdModel`: scoring ads, writing ads."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from adgen_utils.corpus.text import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocabulary, tokenize
from adgen_utils.lstm.generation import generate_many, prompt_refusal
from adgen_utils.lstm.model import load_trained, rows_per_chunk, target_scores
from adgen_utils.models import (
    FROM_SCRATCH,
    SCORE_COLUMNS,
    WORD_LSTM,
    AdModel,
    Categories,
    Decoding,
    Keywords,
    ModelDescription,
    Refusal,
    Writing,
    WrittenAd,
    check_reads_category,
)

CODE_POINTS = 0x110000  # every Unicode character: what a character never seen in training is spread over


class SpellingModel:
    """P(spelling) of a word: a character-bigram model with word start and end, add-``k`` smoothed.
    An unknown word costs P(<unk> | context) × P(spelling); an unseen character P(other) / 1,114,112."""

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
        raise ValueError(
            "the word-level LSTM decodes greedily or by sampling: beam search and "
            "no_repeat_ngram_size are for transformers"
        )
    return dict(
        greedy=not decoding.do_sample,
        temperature=decoding.temperature or 1.0,
        top_k=decoding.top_k or 0,
        top_p=decoding.top_p or 1.0,
        repetition_penalty=decoding.repetition_penalty or 1.0,
        max_new_tokens=decoding.max_new_tokens,
    )


class LSTMAdModel(AdModel):
    """A word-level LSTM saved with :func:`adgen_utils.lstm.training.save_trained` (``model.keras`` +
    ``vocabulary.json``): any Keras model from ids (batch, time) to next-token logits. It reads no category."""

    def __init__(self, folder: str | Path, name: str | None = None):
        self.folder = Path(folder)
        self.model, self.vocabulary = load_trained(self.folder)
        self.name = name or self.folder.name
        self.spelling = SpellingModel(self.vocabulary.tokens[4:])

    @classmethod
    def in_training(cls, model, vocabulary: Vocabulary, folder: str | Path, name: str | None = None) -> LSTMAdModel:
        """The interface over a Keras language model still being trained (not read from ``folder``,
        where it will be saved): what scores the quality curve after each epoch."""
        view = cls.__new__(cls)
        view.folder, view.model, view.vocabulary = Path(folder), model, vocabulary
        view.name = name or view.folder.name
        view.spelling = SpellingModel(vocabulary.tokens[4:])
        return view

    def describe(self) -> ModelDescription:
        """A word-level LSTM trained from scratch on the ads, from its folder."""
        return ModelDescription(
            name=self.name,
            family=WORD_LSTM,
            setting=FROM_SCRATCH,
            unknown_words_charged="P(<unk>) × character-bigram spelling",
            source=str(self.folder.resolve()),
            reads_category=False,
        )

    def refusal(self, prompt: str, category: str | None = None) -> Refusal | None:
        """Why ``prompt`` cannot be continued (no word, or none in the vocabulary), or None."""
        check_reads_category(self, None if category is None else [category])
        return prompt_refusal(prompt, self.vocabulary)

    def write_ads(
        self,
        prompts: Sequence[str],
        indices: list[int],
        categories: Categories,
        how: Writing,
        keywords: Keywords = None,
    ) -> list[WrittenAd]:
        """Ads for ``prompts[i]``, ``i`` in ``indices``, prompt ``i`` seeded ``how.seeds[i]``;
        ``max_new_tokens`` counts words. The LSTM reads no keyword line: ``keywords[i]`` are written
        into ad ``i`` as it is generated, as for every family (:mod:`adgen_utils.corpus.steering`)."""
        generations = generate_many(
            self.model,
            self.vocabulary,
            [prompts[i] for i in indices],
            seeds=[how.seeds[i] for i in indices],
            batch_size=how.batch_size,
            progress=how.progress,
            description=self.name,
            keywords=[keywords[i] for i in indices] if keywords else None,
            max_chars=how.max_chars,
            **_check_decoding_for_lstm(how.decoding),
        )
        return [WrittenAd(g.text, g.complete) for g in generations]

    def score(
        self,
        ads: Sequence[str],
        categories: Categories = None,
        batch_size: int = 64,
        progress: bool = False,
        logits_budget_gib: float = 1.0,
    ) -> pd.DataFrame:
        """Per ad: ``SCORE_COLUMNS``. An unknown word costs P(<unk>) × P(spelling) and is never a hit.
        Batches shrink so their logits stay within ``logits_budget_gib``; ``categories`` raise ValueError."""
        check_reads_category(self, categories)

        token_lists = [tokenize(ad) for ad in ads]
        for i, tokens in enumerate(token_lists):
            if not tokens:
                raise ValueError(f"ad {i} is empty: nothing to score")
        results = np.zeros((len(ads), len(SCORE_COLUMNS)))
        order = sorted(range(len(ads)), key=lambda i: len(token_lists[i]))
        widest = max(map(len, token_lists), default=0) + 1
        rows = min(batch_size, rows_per_chunk(len(self.vocabulary), widest, logits_budget_gib, tensors=4))
        for start in tqdm(range(0, len(order), rows), desc=self.name, unit="batch", disable=not progress):
            members = order[start : start + rows]
            width = max(len(token_lists[i]) for i in members) + 1
            inputs = np.full((len(members), width), PAD_ID, dtype=np.int32)
            targets = np.full((len(members), width), PAD_ID, dtype=np.int32)
            for row, i in enumerate(members):
                ids = self.vocabulary.encode(token_lists[i])
                inputs[row, : len(ids) + 1] = [BOS_ID, *ids]
                targets[row, : len(ids) + 1] = [*ids, EOS_ID]
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
