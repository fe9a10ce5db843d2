"""The stages of the series and where each keeps its results in the run folder.

Each notebook is one stage. Opened on its own (a fresh Colab machine, an empty ``run_dir``), a
notebook calls :func:`ensure_earlier_stages`, which rebuilds the earlier results it needs by
calling the library with the same profile's parameters (never papermill), or, where that would
take long on this hardware, says which notebook to run first.

This module imports neither TensorFlow nor torch: the training stages are reached through
:data:`BUILDERS` (``lstm.train_for_notebook``, ``finetune.finetune_for_notebook``), imported only
when a stage must be rebuilt.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

from adgen_utils.corpus.data import CleanConfig, SplitConfig, load_ads, load_dataset, save_dataset
from adgen_utils.corpus.sequences import prepare_sequences
from adgen_utils.errors import StageMissing
from adgen_utils.layout import (
    DATA_FOLDER,
    DATASET_FILE,
    FINETUNE_RESULT_FILE,
    LSTM_STATE_FILE,
    SEQUENCES_FOLDER,
    SEQUENCES_INFO_FILE,
    model_dir,
)
from adgen_utils.logs import say
from adgen_utils.parameters import LSTM_INPUTS, notebook
from adgen_utils.series.estimates import format_duration, lstm_training, notebook_finetune
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
