"""The plumbing around a lesson's ``model.fit``: resuming, timed backups, the quality curve, saving
or reloading the finished model. Takes ``score(model) -> dict`` from the caller."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import seaborn as sns

from adgen_utils.corpus.sequences import TokenArrays
from adgen_utils.corpus.text import Vocabulary
from adgen_utils.figures import finish, subplots
from adgen_utils.layout import (
    HISTORY_FILE,
    LSTM_BACKUP_FOLDER,
    LSTM_BEST_WEIGHTS_FILE,
    LSTM_MODEL_FILE,
    LSTM_STATE_FILE,
    PLAN_FILE,
    QUALITY_CURVE_FILE,
    VOCABULARY_FILE,
)
from adgen_utils.logs import say
from adgen_utils.lstm.model import mean_batch_length
from adgen_utils.models import CURVE_COLUMNS, CURVE_METRICS
from adgen_utils.pace import Plan, load_plan, plan, save_plan, seconds_per_step, simulated_slowdown


class TimedBackup(keras.callbacks.BackupAndRestore):
    """Keras's ``BackupAndRestore`` that also backs up within an epoch every ``minutes`` and resumes
    there, training only the rest of that epoch (optimizer state included)."""

    def __init__(self, backup_dir: str | Path, minutes: float = 15.0, clock=time.monotonic, log=say):
        # double_checkpoint: a kill while writing the backup leaves the previous one to resume from
        super().__init__(str(backup_dir), save_freq="epoch", double_checkpoint=True)
        self.seconds, self.clock, self.log = minutes * 60, clock, log
        self.last_save = clock()
        self.to_skip = 0  # batches of the first epoch trained before the interruption

    def position(self) -> tuple[int, int]:
        """``(epochs finished, batches of the next epoch trained)`` in the backup; (0, 0) if none."""
        path = Path(self._training_metadata_path)
        if not path.is_file():
            return 0, 0
        metadata = json.loads(path.read_text())
        return int(metadata["epoch"]), int(metadata.get("batch", 0))

    def on_train_begin(self, logs=None):
        self.model.optimizer.build(self.model.trainable_variables)
        super().on_train_begin(logs)
        epochs, batches = self.position()
        self.to_skip = batches if self.params.get("steps") else 0
        if epochs or batches:
            within = (
                f" and {batches} of the {self.params.get('steps')} batches of epoch {epochs + 1}" if batches else ""
            )
            self.log(f"resuming after epoch {epochs}{within}")
        self.last_save = self.clock()

    def on_train_batch_end(self, batch, logs=None):
        self._last_batch_seen = self.to_skip + batch + 1  # written to the backup: batches done this epoch
        steps = self.params.get("steps") or math.inf
        if self.to_skip and self._last_batch_seen >= steps:
            self.model.stop_training = True  # the resumed epoch is complete; on_epoch_end undoes the stop
        elif self.clock() - self.last_save >= self.seconds and self._last_batch_seen < steps:
            self._save_model()  # not on an epoch's last batch: the epoch's own backup follows

    def on_epoch_end(self, epoch, logs=None):
        if self.to_skip:
            self.model.stop_training = False  # stopped only to end the resumed epoch; EarlyStopping comes later
            self.to_skip = 0
        super().on_epoch_end(epoch, logs)

    def _save_model(self):
        super()._save_model()
        self.last_save = self.clock()


class EpochTimer(keras.callbacks.Callback):
    """Adds each epoch's wall time as ``seconds`` to its logs (before ``CSVLogger``: history.csv's column)."""

    def __init__(self, clock=time.perf_counter):
        super().__init__()
        self.clock, self.started = clock, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = self.clock() - self.started


class QualityCurve(keras.callbacks.Callback):
    """After every epoch, one row of :data:`adgen_utils.models.CURVE_COLUMNS` in ``path``: the budget so
    far beside ``score(model)``. A resumed run replaces the rows from its epoch on."""

    def __init__(self, path: str | Path, score: Callable[[keras.Model], dict], flops_per_epoch: float):
        super().__init__()
        self.path, self.score, self.flops_per_epoch = Path(path), score, flops_per_epoch
        self.began = self.trained = None

    def on_epoch_begin(self, epoch, logs=None):
        self.began, self.trained = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        if self.began is not None and self.trained is None:  # the epoch's validation pass starts
            self.trained = time.perf_counter() - self.began

    def on_epoch_end(self, epoch, logs=None):
        earlier = pd.read_csv(self.path) if self.path.is_file() else pd.DataFrame(columns=CURVE_COLUMNS)
        earlier = earlier[earlier["epoch"] <= epoch]
        seconds = float(earlier["train_seconds"].iloc[-1]) if len(earlier) else 0.0
        seconds += self.trained if self.trained is not None else time.perf_counter() - self.began
        footing = self.score(self.model)
        row = {
            "step": (epoch + 1) * self.params.get("steps", 0),
            "epoch": epoch + 1,
            "train_seconds": round(seconds, 2),
            "train_flops": (epoch + 1) * self.flops_per_epoch,
            "validation_ads": footing["ads"],
            **{name: footing[name] for name in CURVE_METRICS},
        }
        rows = [frame for frame in (earlier, pd.DataFrame([row], columns=CURVE_COLUMNS)) if len(frame)]
        pd.concat(rows).to_csv(self.path, index=False)


def plan_fit(
    model: keras.Model,
    train: TokenArrays,
    validation: TokenArrays,
    batch_size: int,
    epochs: int,
    minutes: float | None,
    folder: str | Path,
    timed: int = 3,
) -> Plan:
    """How many batches of ``train`` each epoch runs here: all of them, or as many as fit ``minutes``
    with the evaluations after each epoch (``fit``'s pass over ``validation``, and the quality curve
    scoring as many ads) and the tracing of the first step.

    A batch as ``fit`` gets it (inputs, targets and their weights), as long as the mean batch, is
    timed ``timed`` times after a warm-up on a copy of the compiled model (``model`` itself starts
    training from the weights it has). The plan is saved in ``folder``; a resumed training reads it
    back rather than timing again, and so keeps the same ads."""
    path = Path(folder) / PLAN_FILE
    if (saved := load_plan(path)) is not None:
        return saved
    copy = keras.models.clone_model(model)
    copy.compile(optimizer=model.optimizer.from_config(model.optimizer.get_config()), loss=model.loss)
    length = max(1, round(mean_batch_length(train, batch_size)))
    ids = np.resize(np.asarray(train.ids, dtype=np.int32), (batch_size, length + 1))
    inputs, targets, weights = ids[:, :-1], ids[:, 1:], np.ones((batch_size, length), dtype=np.float32)
    started = time.perf_counter()
    copy.train_on_batch(inputs, targets, sample_weight=weights)  # traces the step, as fit's first batch will
    tracing = (time.perf_counter() - started) * simulated_slowdown()
    train_step = seconds_per_step(lambda: copy.train_on_batch(inputs, targets, sample_weight=weights), timed)
    check_step = seconds_per_step(lambda: copy.test_on_batch(inputs, targets, sample_weight=weights), timed)
    # after every epoch: fit's validation pass, and the quality curve scoring as many ads forward
    evaluation = 2 * -(-len(validation) // batch_size) * check_step
    chosen = plan(
        wanted=-(-len(train) // batch_size),
        seconds_each=train_step,
        unit=f"batch of {batch_size} ads",
        minutes=minutes,
        timed=timed,
        passes=epochs,
        fixed_seconds=epochs * evaluation + max(0.0, tracing - train_step),
    )
    Path(folder).mkdir(parents=True, exist_ok=True)
    save_plan(chosen, path)
    return chosen


def reload_if_trained(folder: str | Path, model: keras.Model, settings: dict, log=say) -> keras.Model | None:
    """The model finished in ``folder`` with the same layers and ``settings``, loaded; else None (and a
    folder of another model is cleared, so training starts afresh)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    recorded = {
        "layers": [type(layer).__name__ for layer in model.layers],
        "parameters": model.count_params(),
        **settings,
    }
    state_path = folder / LSTM_STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else None
    if state and state["settings"] != recorded:
        log("the model or its settings changed since the last run in this folder: training from scratch")
        for name in (
            LSTM_BACKUP_FOLDER,
            HISTORY_FILE,
            LSTM_BEST_WEIGHTS_FILE,
            LSTM_MODEL_FILE,
            QUALITY_CURVE_FILE,
            PLAN_FILE,
        ):
            path = folder / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        state = None
    if state and state["status"] == "complete" and (folder / LSTM_MODEL_FILE).is_file():
        log(f"already trained in {folder}: loading it (delete the folder to train again)")
        return keras.saving.load_model(folder / LSTM_MODEL_FILE)
    state_path.write_text(json.dumps({"settings": recorded, "status": "training"}, indent=2))
    return None


def save_trained(model: keras.Model, vocabulary: Vocabulary, folder: str | Path) -> Path:
    """After ``fit``: restore the best weights if saved, write ``model.keras`` and mark ``training.json``
    complete. Returns the model's path."""
    folder = Path(folder)
    if (folder / LSTM_BEST_WEIGHTS_FILE).is_file():
        model.load_weights(folder / LSTM_BEST_WEIGHTS_FILE)
    model.save(folder / LSTM_MODEL_FILE)
    vocabulary.save(folder / VOCABULARY_FILE)
    state_path = folder / LSTM_STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"settings": {}}
    history = read_history(folder)
    state.update(status="complete", epochs_run=len(history))
    state_path.write_text(json.dumps(state, indent=2))
    return folder / LSTM_MODEL_FILE


def read_history(folder: str | Path) -> pd.DataFrame:
    """Per-epoch metrics from ``history.csv`` (empty frame if none)."""
    path = Path(folder) / HISTORY_FILE
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=["epoch", "loss", "val_loss"])
    return pd.read_csv(path)


def plot_history(history: pd.DataFrame, figures_dir=None, name: str = "lstm"):
    """Training against validation per epoch (``history`` from :func:`read_history`): cross-entropy in
    nats per token (left) and every other metric both have (right); saved as ``<name>_history.png``."""
    metrics = [c for c in history if c not in ("epoch", "seconds") and not c.startswith("val_")]
    curves = history.melt(id_vars="epoch", value_vars=[c for c in history if c.removeprefix("val_") in metrics])
    curves["epoch"] += 1
    curves["data"] = curves["variable"].str.startswith("val_").map({False: "training", True: "validation"})
    curves["metric"] = curves["variable"].str.removeprefix("val_")
    is_loss = curves["metric"] == "loss"
    fig, (left, right) = subplots(1, 2, figsize=(12, 3.8))
    lines = {"x": "epoch", "y": "value", "hue": "data", "hue_order": ["training", "validation"], "markers": True}
    sns.lineplot(curves[is_loss], style="data", ax=left, **lines)
    sns.lineplot(curves[~is_loss], style="metric", ax=right, **lines)
    left.set_ylabel("cross-entropy (nats per token)")
    right.set_ylabel("accuracy")
    for ax in (left, right):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    fig.suptitle(f"{name}: training vs validation")
    return finish(fig, figures_dir, f"{name}_history")
