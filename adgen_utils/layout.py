"""Where things are: the repository's folders and every file and folder name in a run folder.

    run_dir/  data/ (ads.parquet, load_report.json), sequences/, models/lstm/, models/embedding_lstm/,
              models/finetuned/, evaluation/comparison.csv, notebooks/, figures/

This module imports nothing heavy; every other module takes these names from here."""

from __future__ import annotations

import os
from pathlib import Path

# The repository
NOTEBOOKS_FOLDER = "notebooks"
EMBEDDED_DATA_FOLDER = "data"
FIGURES_FOLDER = "figures"
RUNS_FOLDER = "runs"
RESULTS_FOLDER = "results"  # saved benchmark and run results that the README's measured tables come from

# A run folder
DATA_FOLDER = "data"
DATASET_FILE = "ads.parquet"
REPORT_FILE = "load_report.json"
SEQUENCES_FOLDER = "sequences"
SEQUENCES_INFO_FILE = "sequences.json"
VOCABULARY_FILE = "vocabulary.json"
MODELS_FOLDER = "models"
ONE_HOT_LSTM = "lstm"  # models/lstm: the one-hot LSTM (notebook 03)
EMBEDDING_LSTM = "embedding_lstm"  # models/embedding_lstm: the Embedding LSTM (notebook 04)
FINETUNED = "finetuned"  # models/finetuned: the fine-tuned transformer (notebook 06, adgen finetune)
LSTM_MODEL_FILE = "model.keras"
LSTM_STATE_FILE = "training.json"  # an LSTM's settings and progress, for resuming
LSTM_BEST_WEIGHTS_FILE = "best.weights.h5"
PLAN_FILE = "plan.json"  # a training's measured pace and the steps it chose (adgen_utils.pace), kept for a resume
LSTM_BACKUP_FOLDER = "backup"  # TimedBackup's, removed when training finishes
HISTORY_FILE = "history.csv"  # per epoch (LSTMs) or per evaluation (fine-tuning)
LSTM_METRICS_FILE = "metrics.csv"  # 03, 04: accuracy and perplexity per split, trained and untrained
FINETUNE_RESULT_FILE = "finetune.json"
QUALITY_CURVE_FILE = (
    "quality_curve.csv"  # 03, 04, 06: validation footing per epoch / evaluation, with the budget so far
)
CHECKPOINTS_FOLDER = "checkpoints"  # the fine-tuning Trainer's, removed when training finishes
TOKENS_FOLDER = "tokens"  # in CHECKPOINTS_FOLDER: the training blocks as one token file (transformer.stream)
TOKENS_FILE = "tokens.bin"  # every training ad's token ids and its end-of-text, uint32, one after another
TOKENS_INFO_FILE = "tokens.json"  # what the token file holds (tokens, ads) and the settings it was made with
SAMPLES_FILE = "sample_generations.csv"  # a fine-tuned model's sample ads, for its model card
SOURCE_FILE = "adgen_source.json"  # where a cached offline model came from (for model cards)
EVALUATION_FOLDER = "evaluation"
COMPARISON_FILE = "comparison.csv"  # every model on one footing (notebook 07, adgen evaluate)
SUMMARY_FILE = "run_summary.json"  # adgen run: each notebook's status and time

# The results folder
RUN_RESULT_FILE = "run_{profile}.json"  # python -m benchmarks.results save: a run's figures for the README


COLAB_CLONE = Path("/content/adgen")  # where a notebook's setup cell clones the repository on Colab


def repository_root() -> Path:
    """The checkout with ``data/``, ``notebooks/`` and ``figures/``: the one that holds this package,
    or, when the package was installed from a clone (the Colab setup cell), ADGEN_HOME or that clone."""
    here = Path(__file__).resolve().parent.parent
    if (here / NOTEBOOKS_FOLDER).is_dir():
        return here
    return Path(os.environ.get("ADGEN_HOME") or COLAB_CLONE)


def model_dir(run_dir: str | Path, model: str) -> Path:
    """Where a model of the series is saved: ``model`` is ONE_HOT_LSTM, EMBEDDING_LSTM or FINETUNED."""
    return Path(run_dir) / MODELS_FOLDER / model


def comparison_path(run_dir: str | Path) -> Path:
    """Notebook 07's comparison table in ``run_dir``."""
    return Path(run_dir) / EVALUATION_FOLDER / COMPARISON_FILE


def results_dir(root: str | Path | None = None) -> Path:
    """The repository's ``results/`` folder (the saved results the README's measured section is written from)."""
    return Path(root or repository_root()) / RESULTS_FOLDER
