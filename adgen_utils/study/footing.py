"""The fair footing: any model of the series opened and scored on the same ads, in the units of
:mod:`adgen_utils.models`. Opening a model imports only its family (an LSTM never loads torch)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from adgen_utils.corpus.data import TEXT_COLUMN, CleanConfig, drop_reason, normalize_ad, read_ads_file
from adgen_utils.errors import CorpusFormatError
from adgen_utils.layout import LSTM_MODEL_FILE
from adgen_utils.models import AdModel, categories_for, summarize_scores


def is_lstm_folder(path) -> bool:
    """True for a folder holding a saved word-level LSTM (``model.keras``)."""
    return Path(str(path)).expanduser().joinpath(LSTM_MODEL_FILE).is_file()


def load_ad_model(name_or_path, name: str | None = None, shots: int = 0, **transformer) -> AdModel:
    """An LSTM folder or anything :func:`adgen_utils.transformer.pretrained.resolve_model` takes, as an
    :class:`AdModel` named ``name``; ``shots`` and the other keyword arguments are a transformer's
    (:class:`~adgen_utils.transformer.admodel.TransformerAdModel`: examples, seed, models_dir, ...)."""
    if is_lstm_folder(name_or_path):
        if shots:
            raise ValueError("few-shot prompts are for transformers; a word-level LSTM reads one ad at a time")
        from adgen_utils.lstm.admodel import LSTMAdModel

        return LSTMAdModel(Path(str(name_or_path)).expanduser(), name)
    from adgen_utils.transformer.admodel import TransformerAdModel

    return TransformerAdModel(name_or_path, name, shots, **transformer)


def evaluate_ad_model(model: AdModel, test: pd.DataFrame, progress: bool = False) -> dict:
    """The footing's metrics of one model on ``test`` (``ad``, optional ``category``): its description,
    :func:`adgen_utils.models.summarize_scores` and ``seconds``."""
    started = time.perf_counter()
    description = asdict(model.describe())
    categories = test["category"].tolist() if "category" in test else None
    scores = model.score(test["ad"].tolist(), categories_for(model, categories), progress=progress)
    return {
        "model": description.pop("name"),
        **description,
        **summarize_scores(scores),
        "seconds": round(time.perf_counter() - started, 1),
    }


def read_test_csv(path) -> tuple[pd.DataFrame, dict]:
    """Ads to score from any CSV with an ``ad`` column (optional ``category``), cleaned by the corpus's
    rules, duplicates kept: ``(ads, dropped)`` with each kind of row left out counted."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No test CSV at {path}")
    _, records = read_ads_file(path, category=None)
    rows, skipped, config = [], Counter(), CleanConfig()
    for raw, category, _line, note in records:
        cleaned = normalize_ad(raw) if raw is not None else ""
        reason = drop_reason(raw, note, cleaned, config, TEXT_COLUMN)
        if reason is None:
            rows.append({"ad": cleaned, "category": category})
        else:
            skipped[reason] += 1
    if not rows:
        raise CorpusFormatError(f"{path}: no ad to score ({dict(skipped) or 'the file has no rows'})")
    return pd.DataFrame(rows), dict(skipped)
