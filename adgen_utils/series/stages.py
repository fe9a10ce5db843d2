"""The stages of the series and where each keeps its results in the run folder.

Each notebook is one stage. Opened on its own (a fresh Colab machine, an empty ``run_dir``), a
notebook calls :func:`ensure_earlier_stages`, which rebuilds the earlier results it needs by
calling the library with the same profile's parameters (never papermill), or, where that would
take long on this hardware, says which notebook to run first.

This module imports neither TensorFlow nor torch: the training stages are reached through
:data:`BUILDERS` (``lstm.train_for_notebook``, ``finetune.finetune_for_notebook``), imported only
when a stage must be rebuilt. :func:`run_models` opens every model the earlier notebooks left in a
run folder (notebook 07), importing torch only then.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from adgen_utils.corpus.data import CleanConfig, SplitConfig, load_ads, load_dataset, save_dataset
from adgen_utils.corpus.sequences import prepare_sequences
from adgen_utils.errors import StageMissing
from adgen_utils.layout import (
    DATA_FOLDER,
    DATASET_FILE,
    FINETUNE_RESULT_FILE,
    LSTM_STATE_FILE,
    MODELS_FOLDER,
    SEQUENCES_FOLDER,
    SEQUENCES_INFO_FILE,
    model_dir,
)
from adgen_utils.logs import say
from adgen_utils.models import AdModel, load_ad_model
from adgen_utils.parameters import LSTM_INPUTS, notebook
from adgen_utils.series.estimates import (
    TOKENS_PER_AD,
    format_duration,
    lstm_training,
    notebook_finetune,
    transformer_scoring,
)
from adgen_utils.series.profiles import profile_values

# A missing stage estimated to take longer than this on the hardware at hand is not rebuilt.
REBUILD_LIMIT_SECONDS = 20 * 60

# Each builder is called as builder(notebook_name, parameter_values, run_dir).
BUILDERS = {
    "01_eda": "adgen_utils.series.stages:build_dataset",
    "02_sequences": "adgen_utils.series.stages:build_sequences",
    "03_lstm": "adgen_utils.lstm.training:train_for_notebook",
    "04_embedding_lstm": "adgen_utils.lstm.training:train_for_notebook",
    "06_fine_tuning": "adgen_utils.transformer.finetune:finetune_for_notebook",
}
ESTIMATORS = {
    "03_lstm": "adgen_utils.series.stages:estimate_lstm",
    "04_embedding_lstm": "adgen_utils.series.stages:estimate_lstm",
    "06_fine_tuning": "adgen_utils.series.stages:estimate_finetune",
}


def is_done(name: str, run_dir: str | Path) -> bool:
    """True when notebook ``name``'s results are complete in ``run_dir``."""
    run_dir = Path(run_dir)
    if name == "01_eda":
        return (run_dir / DATA_FOLDER / DATASET_FILE).is_file()
    if name == "02_sequences":
        return (run_dir / SEQUENCES_FOLDER / SEQUENCES_INFO_FILE).is_file()
    if name in LSTM_INPUTS:
        state = model_dir(run_dir, name) / LSTM_STATE_FILE
        return state.is_file() and json.loads(state.read_text()).get("status") == "complete"
    if name == "06_fine_tuning":
        return (model_dir(run_dir, name) / FINETUNE_RESULT_FILE).is_file()
    return False


# ---------------------------------------------------------------------------------------------
# The light stages: notebooks 01 and 02
# ---------------------------------------------------------------------------------------------


def load_corpus(values: dict, progress: bool = True):
    """Notebook 01's load: read, clean, de-duplicate, sample and split ``values["data_source"]``
    with notebook 01's parameters. Returns ``(ads, report)`` (see ``data.load_ads``)."""

    return load_ads(
        values["data_source"],
        categories=values["categories"],
        clean=CleanConfig(min_chars=values["min_chars"], max_chars=values["max_chars"]),
        split=SplitConfig(validation=values["validation_fraction"], test=values["test_fraction"], seed=values["seed"]),
        sample_size=values["sample_size"],
        seed=values["seed"],
        progress=progress,
    )


def build_dataset(name: str, values: dict, run_dir: str | Path, progress: bool = True) -> Path:
    """Notebook 01's result: the cleaned, split corpus saved in ``run_dir/data``."""

    ads, report = load_corpus(values, progress)
    return save_dataset(ads, report, Path(run_dir) / DATA_FOLDER)


def build_sequences(name: str, values: dict, run_dir: str | Path, progress: bool = True) -> dict:
    """Notebook 02's result: vocabulary and flat token arrays of every split in ``run_dir/sequences``."""

    ads = load_dataset(Path(run_dir) / DATA_FOLDER)
    return prepare_sequences(
        ads, Path(run_dir) / SEQUENCES_FOLDER, values["min_count"], values["max_vocabulary"], values["max_tokens"]
    )


# ---------------------------------------------------------------------------------------------
# Estimates of the training stages, from what is already in the run folder
# ---------------------------------------------------------------------------------------------


def estimate_lstm(name: str, values: dict, run_dir: str | Path, comparison: bool = False):
    """Notebook 03's or 04's training time and memory, from the sequences of notebook 02
    (``comparison``: with notebook 04's second training, with the other loss)."""

    info = json.loads((Path(run_dir) / SEQUENCES_FOLDER / SEQUENCES_INFO_FILE).read_text())
    config = SimpleNamespace(**{"embedding_dim": 0, **values, "input": LSTM_INPUTS[name]})
    train = info["splits"]["train"]
    share = 1.0 if values["max_train_ads"] is None else min(1.0, values["max_train_ads"] / max(train["ads"], 1))
    sizes = (
        info["vocabulary_size"],
        int(train["predictions"] * share),
        info["splits"]["validation"]["predictions"],
        info["max_tokens"],
    )
    estimate = lstm_training(config, *sizes)
    if comparison and values.get("compare_sampled_loss"):
        other = SimpleNamespace(**{**vars(config), "loss": "sampled" if config.loss == "full" else "full"})
        estimate = replace(estimate, seconds=estimate.seconds + lstm_training(other, *sizes).seconds)
    return estimate


def estimate_finetune(name: str, values: dict, run_dir: str | Path):
    """Notebook 06's fine-tuning time and memory, from the size of notebook 01's splits."""

    counts = load_dataset(Path(run_dir) / DATA_FOLDER)["split"].value_counts()
    return notebook_finetune(values, counts.get("train", 0), counts.get("validation", 0))


# ---------------------------------------------------------------------------------------------
# Rebuilding what a notebook needs
# ---------------------------------------------------------------------------------------------


def _call(target: str, *args, **kwargs):
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)(*args, **kwargs)


@dataclass
class StageReport:
    """What :func:`ensure_earlier_stages` found: stages already there, rebuilt, and missing
    (each missing one with the message that says which notebook to run)."""

    present: list[str]
    rebuilt: list[str]
    missing: dict[str, str]


def ensure_earlier_stages(
    name: str, run_dir: str | Path, profile: str, log=say, limit_seconds: float = REBUILD_LIMIT_SECONDS
) -> StageReport:
    """Make sure notebook ``name`` finds the earlier results it needs in ``run_dir``.

    A stage that is missing is rebuilt with ``profile``'s parameters for that notebook, with a
    message and progress bars, when it is estimated to take under ``limit_seconds`` here. A
    longer one that ``name`` cannot do without raises :class:`StageMissing`; one it merely uses
    (notebook 07's models) is reported as missing and the notebook works on what is there.
    """

    report = StageReport([], [], {})

    def visit(stage: str, required: bool) -> None:
        if stage in report.present or stage in report.rebuilt or stage in report.missing:
            return
        if is_done(stage, run_dir):
            report.present.append(stage)
            return
        for earlier in notebook(stage).needs:
            visit(earlier, True)
            if earlier in report.missing:
                report.missing[stage] = report.missing[earlier]
                return
        values = profile_values(profile, stage)
        if stage in ESTIMATORS:
            estimate = _call(ESTIMATORS[stage], stage, values, run_dir)
            if estimate.seconds > limit_seconds:
                message = (
                    f"{stage} has not been run in {run_dir}, and rebuilding it here would take "
                    f"{format_duration(estimate.seconds)} ({estimate}). Run notebook {stage} first "
                    f"with profile {profile!r} and the same run_dir (on Colab: drive = True in both)."
                )
                if required:
                    raise StageMissing(message)
                log(f"{message}\nCarrying on without it.")
                report.missing[stage] = message
                return
            log(f"{stage} has not been run in this run folder: rebuilding it with profile {profile!r} ({estimate})")
        else:
            log(f"{stage} has not been run in this run folder: rebuilding it with profile {profile!r}")
        _call(BUILDERS[stage], stage, values, run_dir)
        report.rebuilt.append(stage)

    declaration = notebook(name)
    for stage in declaration.needs:
        visit(stage, True)
    for stage in declaration.uses:
        visit(stage, False)
    return report


# ---------------------------------------------------------------------------------------------
# The models of a run folder (notebook 07)
# ---------------------------------------------------------------------------------------------


def run_models(
    run_dir, pretrained_model: str, shots: int, train: pd.DataFrame, test_ads: int, seed: int = 0, log=say
) -> list[AdModel]:
    """Every model of the series found in ``run_dir``: the LSTMs of notebooks 03 and 04, the
    pretrained model zero-shot and with ``shots`` examples (loaded once, shared by both), and the
    fine-tuned model of notebook 06. A model whose notebook has not been run is named and left
    out. Notebook 07 scores and compares them (``train``: the training split, with ``ad`` and
    ``category``). Prints the estimated time and memory of scoring ``test_ads`` ads with the
    transformers."""
    # torch and transformers load only when a run's models are asked for: every notebook imports stages.
    from adgen_utils.transformer.admodel import TransformerAdModel, with_shots

    found = []
    for lstm, label in (("03_lstm", "LSTM (03)"), ("04_embedding_lstm", "Embedding LSTM (04)")):
        if is_done(lstm, run_dir):
            found.append(load_ad_model(model_dir(run_dir, lstm), name=label))
        else:
            log(f"no model of notebook {lstm} in {run_dir}: run it first to include it; scoring the others")
    zero_shot = load_ad_model(
        pretrained_model,
        name=f"{pretrained_model} zero-shot",
        models_dir=Path(run_dir) / MODELS_FOLDER,
        training_texts=train["ad"].tolist(),
    )
    found += [
        zero_shot,
        with_shots(zero_shot, shots, train[["ad", "category"]], seed, name=f"{pretrained_model} {shots}-shot"),
    ]
    if is_done("06_fine_tuning", run_dir):
        # examples: to infer a prompt's category for a category-conditioned model (never shown to it)
        found.append(
            load_ad_model(
                model_dir(run_dir, "06_fine_tuning"), name="fine-tuned (06)", examples=train[["ad", "category"]]
            )
        )
    else:
        log(f"no fine-tuned model of notebook 06 in {run_dir}: run it first to include it; scoring the others")
    transformers = [m for m in found if isinstance(m, TransformerAdModel)]
    tokens = sum(test_ads * (1 + m.shots) * TOKENS_PER_AD for m in transformers)
    parameters = max(sum(p.numel() for p in m.model.parameters()) for m in transformers)
    log(f"estimate: {transformer_scoring(parameters, tokens)}")
    return found
