"""Training the word-level LSTMs: the trainer (exact or sampled softmax), progress, timed backups and
resuming, the training history, and what notebooks 03 and 04 both do.

:func:`train_language_model` backs up every epoch and at least every ``checkpoint_minutes`` within
one (:class:`TimedBackup`), and resumes after an interruption; :func:`train_for_notebook` is the
whole of a notebook's training (and what a later notebook run alone calls to rebuild it).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import NamedTuple

import keras
import pandas as pd
import tensorflow as tf
from tqdm.auto import tqdm

from adgen_utils.corpus.sequences import TokenArrays
from adgen_utils.corpus.text import Vocabulary
from adgen_utils.figures import save_figure
from adgen_utils.layout import (
    HISTORY_FILE,
    LSTM_BACKUP_FOLDER,
    LSTM_BEST_WEIGHTS_FILE,
    LSTM_MODEL_FILE,
    LSTM_STATE_FILE,
    VOCABULARY_FILE,
)
from adgen_utils.logs import say
from adgen_utils.lstm.model import (
    LSTMConfig,
    build_model,
    keras_policy,
    load_model,
    many_to_many_dataset,
    rows_per_chunk,
    tensorflow_device,
    weighted_hits,
)


class LanguageModelTrainer(keras.Model):
    """Wraps a model from :func:`build_model` for ``fit``/``evaluate`` on ``(ids, targets, weights)``.

    The loss is the mean cross-entropy in nats per real target token (weights exclude padding).
    With ``loss="sampled"``, training uses ``tf.nn.sampled_softmax_loss`` over ``sampled``
    classes; validation always uses the full softmax, so numbers stay comparable. Metrics:
    ``loss`` and ``accuracy`` (top-1) in training (not with the sampled softmax, which has no
    full logits), plus ``top5_accuracy`` in validation.
    """

    def __init__(self, language_model: keras.Model, loss: str = "full", sampled: int = 512, **kwargs):
        super().__init__(**kwargs)
        self.language_model = language_model
        self.loss_mode = loss
        self.sampled = sampled
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")
        self.top5_tracker = keras.metrics.Mean(name="top5_accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker, self.top5_tracker]

    def call(self, ids, training=False):
        return self.language_model(ids, training=training)

    def _record(self, logits, targets, weights, loss, total, top5=True):
        self.loss_tracker.update_state(loss, sample_weight=total)
        hits1, hits5 = weighted_hits(logits, targets, weights, top5)
        self.accuracy_tracker.update_state(hits1 / tf.maximum(total, 1.0), sample_weight=total)
        if top5:
            self.top5_tracker.update_state(hits5 / tf.maximum(total, 1.0), sample_weight=total)

    def _full_loss(self, ids, targets, weights, training):
        logits = self.language_model(ids, training=training)
        per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
        total = tf.reduce_sum(weights)
        return logits, tf.reduce_sum(per_token * weights) / tf.maximum(total, 1.0), total

    def _sampled_loss(self, ids, targets, weights):
        encoder = self.language_model.get_layer("encoder")
        output = self.language_model.get_layer("next_token")
        hidden = tf.cast(encoder(ids, training=True), tf.float32)
        flat_hidden = tf.reshape(hidden, [-1, tf.shape(hidden)[-1]])
        labels = tf.reshape(tf.cast(targets, tf.int64), [-1, 1])
        per_token = tf.nn.sampled_softmax_loss(
            weights=tf.transpose(output.kernel),
            biases=output.bias,
            labels=labels,
            inputs=flat_hidden,
            num_sampled=min(self.sampled, output.units - 1),
            num_classes=output.units,
        )
        flat_weights = tf.reshape(weights, [-1])
        total = tf.reduce_sum(flat_weights)
        return tf.reduce_sum(per_token * flat_weights) / tf.maximum(total, 1.0), total

    def train_step(self, data):
        ids, targets, weights = data
        with tf.GradientTape() as tape:
            if self.loss_mode == "sampled":
                loss, total = self._sampled_loss(ids, targets, weights)
                logits = None
            else:
                logits, loss, total = self._full_loss(ids, targets, weights, training=True)
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        if logits is None:
            self.loss_tracker.update_state(loss, sample_weight=total)
            return {"loss": self.loss_tracker.result()}
        # Top-5 over the whole vocabulary costs ~13% of a training step: measured on validation only.
        self._record(logits, targets, weights, loss, total, top5=False)
        return {"loss": self.loss_tracker.result(), "accuracy": self.accuracy_tracker.result()}

    def test_step(self, data):
        ids, targets, weights = data
        logits, loss, total = self._full_loss(ids, targets, weights, training=False)
        self._record(logits, targets, weights, loss, total)
        return {m.name: m.result() for m in self.metrics}


class EpochProgress(keras.callbacks.Callback):
    """A tqdm bar over each epoch's batches with the running loss, and one line per epoch."""

    def __init__(self, steps: int, epochs: int, log=say):
        super().__init__()
        self.steps, self.epochs, self.log = steps, epochs, log
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):

        self.bar = tqdm(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="batch", leave=False)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if logs and batch % 20 == 0:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.3f}")

    def on_epoch_end(self, epoch, logs=None):
        self.bar.close()
        logs = logs or {}
        shown = ", ".join(
            f"{k} {float(v):.4f}"
            for k, v in logs.items()
            if k in ("loss", "val_loss", "val_accuracy", "val_top5_accuracy")
        )
        self.log(f"epoch {epoch + 1}/{self.epochs}: {shown}")


class TimedBackup(keras.callbacks.BackupAndRestore):
    """Keras's ``BackupAndRestore`` (weights, optimizer state and epoch, in ``backup_dir``) that also
    backs up within an epoch once ``minutes`` of wall time have passed since the last backup, and
    resumes there.

    Keras restores only the epoch number: by itself a run killed mid-epoch would train that whole
    epoch again. Here the backup also records how many of the epoch's batches were trained, and
    the resumed run trains only the batches the epoch had left before validating and going on. Two
    things differ from a run that was never interrupted: those remaining batches come from a fresh
    shuffle (tf.data does not replay the interrupted epoch's order), and the epoch's training
    loss and accuracy in the history average only the batches run after the resume.
    """

    def __init__(self, backup_dir: str, minutes: float = 15.0, clock=time.monotonic):
        # double_checkpoint: a kill while writing the backup leaves the previous one to resume from
        super().__init__(backup_dir, save_freq="epoch", double_checkpoint=True)
        self.seconds, self.clock = minutes * 60, clock
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
        super().on_train_begin(logs)
        self.to_skip = self.position()[1] if self.params.get("steps") else 0
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


@dataclass
class TrainingResult:
    """A trained model, its per-epoch history and where training started (0 unless resumed)."""

    model: keras.Model
    history: pd.DataFrame
    started_at_epoch: int
    folder: Path


def _compile(trainer: LanguageModelTrainer, config: LSTMConfig, sample_ids) -> None:
    trainer.compile(optimizer=keras.optimizers.Adam(config.learning_rate, clipnorm=1.0))
    trainer(sample_ids)  # create the variables
    # Build the optimizer now, so that a resumed run restores its moments with the weights.
    trainer.optimizer.build(trainer.trainable_variables)


def _set_precision(config: LSTMConfig) -> None:
    keras.mixed_precision.set_global_policy(keras_policy(config.mixed_precision, tensorflow_device()))


def train_language_model(
    config: LSTMConfig,
    vocabulary: Vocabulary,
    train: TokenArrays,
    validation: TokenArrays,
    folder: str | Path,
    progress: bool = True,
    log=say,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    logits_budget_gib: float = 1.0,
) -> TrainingResult:
    """Train (or resume, or reload) a language model in ``folder``.

    Every epoch ends with a validation pass, a backup (``backup/``), a row in ``history.csv``
    and, if validation loss improved, ``best.weights.h5``; within an epoch a backup is also made
    once ``config.checkpoint_minutes`` have passed since the last (see :class:`TimedBackup`). A
    killed run called again with the same settings resumes from its last backup, mid-epoch
    included; a finished one is simply reloaded. Training stops early after ``patience`` epochs
    without improvement, and the saved model (``model.keras`` + ``vocabulary.json`` +
    ``training.json``) has the best weights. Validation batches hold at most as many ads as keep
    their logits within ``logits_budget_gib`` GiB (:func:`rows_per_chunk`); validation metrics are
    token-weighted means, the same for any batch size.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # How often backups are made does not change the model: a run resumes whatever it is set to.
    recorded = {k: v for k, v in asdict(config).items() if k != "checkpoint_minutes"}
    settings = {"config": recorded, "vocabulary_size": len(vocabulary), "train_ads": len(train)}
    state_path = folder / LSTM_STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else None
    if state and state["settings"] != settings:
        log("settings changed since the last run in this folder: training from scratch")
        for name in (LSTM_BACKUP_FOLDER, HISTORY_FILE, LSTM_BEST_WEIGHTS_FILE, LSTM_MODEL_FILE):
            path = folder / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        state = None
    if state and state["status"] == "complete" and (folder / LSTM_MODEL_FILE).exists():
        log(f"already trained in {folder}: loading it (delete the folder to train again)")
        return TrainingResult(load_model(folder), read_history(folder), state["epochs_run"], folder)

    keras.utils.set_random_seed(config.seed)
    _set_precision(config)
    language_model = build_model(config, len(vocabulary))
    trainer = LanguageModelTrainer(language_model, loss=config.loss, sampled=config.sampled)
    train_batches = many_to_many_dataset(train, config.batch_size, shuffle=True, seed=config.seed)
    longest = int(validation.lengths.max()) - 1  # time steps of the widest validation batch
    validation_rows = min(config.batch_size, rows_per_chunk(len(vocabulary), longest, logits_budget_gib))
    validation_batches = many_to_many_dataset(validation, validation_rows)
    _compile(trainer, config, next(iter(validation_batches))[0])

    history = read_history(folder)
    started_at = len(history)
    best_so_far = float(history["val_loss"].min()) if started_at else None
    steps = math.ceil(len(train) / config.batch_size)
    backup = TimedBackup(str(folder / LSTM_BACKUP_FOLDER), config.checkpoint_minutes)
    _, batches_done = backup.position()
    if started_at or batches_done:
        within = f" and {batches_done} of the {steps} batches of epoch {started_at + 1}" if batches_done else ""
        best = f" (best validation loss so far {best_so_far:.4f})" if best_so_far is not None else ""
        log(f"resuming after epoch {started_at}{within}{best}")
    state_path.write_text(json.dumps({"settings": settings, "status": "training"}, indent=2))
    callbacks = [
        backup,
        keras.callbacks.ModelCheckpoint(
            str(folder / LSTM_BEST_WEIGHTS_FILE),
            monitor="val_loss",
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=best_so_far,
        ),
        keras.callbacks.CSVLogger(str(folder / HISTORY_FILE), append=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience),
        *extra_callbacks,
    ]
    if progress:
        callbacks.append(EpochProgress(steps, config.epochs, log))
    trainer.fit(
        train_batches,
        validation_data=validation_batches,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=0,
        shuffle=False,
    )  # the dataset shuffles itself

    if (folder / LSTM_BEST_WEIGHTS_FILE).exists():
        trainer.load_weights(str(folder / LSTM_BEST_WEIGHTS_FILE))
    keras.mixed_precision.set_global_policy("float32")
    language_model.save(folder / LSTM_MODEL_FILE)
    vocabulary.save(folder / VOCABULARY_FILE)
    history = read_history(folder)
    state = {
        "settings": settings,
        "status": "complete",
        "epochs_run": len(history),
        "best_val_loss": float(history["val_loss"].min()) if len(history) else None,
    }
    state_path.write_text(json.dumps(state, indent=2))
    return TrainingResult(language_model, history, started_at, folder)


def read_history(folder: str | Path) -> pd.DataFrame:
    """Per-epoch metrics from ``history.csv`` (empty frame if none)."""
    path = Path(folder) / HISTORY_FILE
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=["epoch", "loss", "val_loss"])
    return pd.read_csv(path)


def plot_history(history: pd.DataFrame, figures_dir=None, name: str = "lstm"):
    """Training against validation curves: cross-entropy and top-1 / top-5 accuracy per epoch."""
    import matplotlib.pyplot as plt

    epochs = history["epoch"] + 1
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    left.plot(epochs, history["loss"], "o-", label="training")
    left.plot(epochs, history["val_loss"], "o-", label="validation")
    left.set_ylabel("cross-entropy (nats per token)")
    for column, style in (("accuracy", "o-"), ("top5_accuracy", "s--")):
        if column in history:
            right.plot(epochs, history[column], style, color="#4c72b0", label=f"training {column.replace('_', ' ')}")
        right.plot(
            epochs, history[f"val_{column}"], style, color="#dd8452", label=f"validation {column.replace('_', ' ')}"
        )
    right.set_ylabel("accuracy")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.suptitle(f"{name}: training vs validation")
    fig.tight_layout()
    save_figure(fig, figures_dir, f"{name}_history")
    return fig


class LSTMTraining(NamedTuple):
    """What notebook 03 or 04 trains on and where its model goes."""

    config: LSTMConfig
    vocabulary: Vocabulary
    splits: dict
    train: TokenArrays
    model_dir: Path


def config_from_parameters(values: dict, model_input: str) -> LSTMConfig:
    """The :class:`LSTMConfig` of a notebook's resolved parameters (``model_input``: one_hot or embedding)."""
    names = {f.name for f in fields(LSTMConfig)} - {"input"}
    return LSTMConfig(input=model_input, **{k: v for k, v in values.items() if k in names})


def prepare_training(name: str, values: dict, run_dir: str | Path, log=say, comparison: bool = True) -> LSTMTraining:
    """Notebook ``name``'s (03 or 04) settings, vocabulary, splits and training ads (the first
    ``max_train_ads``), from notebook 02's sequences; prints their size and the time and memory
    training is estimated to take here (``comparison``: with notebook 04's loss comparison)."""
    from adgen_utils.corpus.sequences import load_sequences
    from adgen_utils.layout import SEQUENCES_FOLDER
    from adgen_utils.series import stages

    vocabulary, splits = load_sequences(Path(run_dir) / SEQUENCES_FOLDER)
    train = splits["train"]
    if values["max_train_ads"] is not None:
        train = train.subset(range(min(values["max_train_ads"], len(train))))
    config = config_from_parameters(values, stages.LSTM_INPUTS[name])
    log(
        f"vocabulary {len(vocabulary):,} tokens; training on {len(train):,} ads ({train.predictions:,} predictions "
        f"per epoch)"
    )
    log(f"estimate: {stages.estimate_lstm(name, values, run_dir, comparison=comparison)}")
    return LSTMTraining(config, vocabulary, splits, train, stages.model_dir(run_dir, name))


def train_for_notebook(name: str, values: dict, run_dir: str | Path, progress: bool = True, log=say) -> TrainingResult:
    """Train (or resume, or reload) notebook ``name``'s model as the notebook does, without its
    loss comparison: what a later notebook run on its own rebuilds."""
    setup = prepare_training(name, values, run_dir, log, comparison=False)
    return train_language_model(
        setup.config,
        setup.vocabulary,
        setup.train,
        setup.splits["validation"],
        setup.model_dir,
        progress=progress,
        log=log,
    )
