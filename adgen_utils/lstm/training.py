"""Training the word-level LSTMs: the trainer (exact or sampled softmax), progress, timed backups and
resuming, the training history, and what notebooks 03 and 04 both do.

:func:`train_language_model` backs up every epoch and at least every ``checkpoint_minutes`` within
one (:class:`TimedBackup`), resumes after an interruption and times every epoch (:class:`EpochTimer`,
the ``seconds`` column of ``history.csv``). Notebooks 03 and 04 are the same steps on a different
input layer: :func:`prepare_training`, :func:`train_model`, :func:`plot_lstm_history`,
:func:`evaluate_trained` with :func:`beside_original`, :func:`sample_ads`, and :func:`findings` (their
"What this tells us", computed from the run); notebook 04 adds :func:`loss_comparison` and
:func:`timing_comparison` (against notebook 03's saved training). :func:`train_for_notebook` is the
whole of a notebook's training (what a later notebook run alone calls to rebuild it).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import NamedTuple

import keras
import pandas as pd
import seaborn as sns
import tensorflow as tf
from tqdm.auto import tqdm

from adgen_utils.corpus.data import validation_ads
from adgen_utils.corpus.sequences import TokenArrays, load_sequences
from adgen_utils.corpus.text import Vocabulary
from adgen_utils.figures import save_figure, subplots
from adgen_utils.layout import (
    HISTORY_FILE,
    LSTM_BACKUP_FOLDER,
    LSTM_BEST_WEIGHTS_FILE,
    LSTM_METRICS_FILE,
    LSTM_MODEL_FILE,
    LSTM_STATE_FILE,
    QUALITY_CURVE_FILE,
    SEQUENCES_FOLDER,
    VOCABULARY_FILE,
    model_dir,
)
from adgen_utils.logs import say
from adgen_utils.lstm.admodel import LSTMAdModel
from adgen_utils.lstm.generation import decoding_settings_table
from adgen_utils.lstm.model import (
    ORIGINAL_REPORTED,
    LSTMConfig,
    build_model,
    evaluate_token_arrays,
    evaluate_with_baselines,
    keras_policy,
    load_model,
    many_to_many_dataset,
    rows_per_chunk,
    tensorflow_device,
    training_flops_per_prediction,
    weighted_hits,
)
from adgen_utils.models import CURVE_COLUMNS, CURVE_METRICS, summarize_scores
from adgen_utils.parameters import LSTM_INPUTS


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


class EpochTimer(keras.callbacks.Callback):
    """Adds ``seconds`` to each epoch's logs: the epoch's wall time, its validation pass included (an
    epoch resumed after an interruption: from the resume on). Placed before the ``CSVLogger``, it
    becomes the ``seconds`` column of ``history.csv``."""

    def __init__(self, clock=time.perf_counter):
        super().__init__()
        self.clock, self.started = clock, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = self.clock() - self.started


class QualityCurve(keras.callbacks.Callback):
    """After every epoch, the model as it stands scores the same validation ads with the series'
    footing (:meth:`adgen_utils.lstm.admodel.LSTMAdModel.score`: bits per character, per-word
    perplexity, top-1 and top-5), beside the budget so far: pure training seconds (the epoch up to
    its validation pass) and training FLOPs (``flops_per_epoch``). Rows
    (:data:`adgen_utils.models.CURVE_COLUMNS`) are appended to ``path``; a resumed run keeps the
    rows of the epochs already trained (``epochs_done``) and carries their budget on."""

    def __init__(self, path, scorer, ads: Sequence[str], steps: int, flops_per_epoch: float, epochs_done: int = 0):
        super().__init__()
        self.path, self.scorer, self.ads = Path(path), scorer, list(ads)
        self.steps, self.flops_per_epoch = steps, flops_per_epoch
        earlier = pd.read_csv(self.path) if self.path.is_file() else pd.DataFrame(columns=CURVE_COLUMNS)
        earlier = earlier[earlier["epoch"] <= epochs_done]
        earlier.to_csv(self.path, index=False)
        self.seconds = float(earlier["train_seconds"].iloc[-1]) if len(earlier) else 0.0
        self.began = self.trained = None

    def on_epoch_begin(self, epoch, logs=None):
        self.began, self.trained = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        if self.began is not None and self.trained is None:  # the epoch's validation pass starts
            self.trained = time.perf_counter() - self.began

    def on_epoch_end(self, epoch, logs=None):
        self.seconds += self.trained if self.trained is not None else time.perf_counter() - self.began
        footing = summarize_scores(self.scorer.score(self.ads))
        row = {
            "step": (epoch + 1) * self.steps,
            "epoch": epoch + 1,
            "train_seconds": round(self.seconds, 2),
            "train_flops": (epoch + 1) * self.flops_per_epoch,
            "validation_ads": len(self.ads),
            **{name: footing[name] for name in CURVE_METRICS},
        }
        pd.DataFrame([row], columns=CURVE_COLUMNS).to_csv(self.path, mode="a", header=False, index=False)


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
    curve_ads: Sequence[str] = (),
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
    token-weighted means, the same for any batch size. With ``curve_ads`` (validation ad texts),
    every epoch also adds a row to ``quality_curve.csv`` (:class:`QualityCurve`).
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
        for name in (LSTM_BACKUP_FOLDER, HISTORY_FILE, LSTM_BEST_WEIGHTS_FILE, LSTM_MODEL_FILE, QUALITY_CURVE_FILE):
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
    if started_at and "seconds" not in history:  # written before epochs were timed: the column CSVLogger appends
        columns = ["epoch", *sorted({*history.columns, "seconds"} - {"epoch"})]
        history.assign(seconds=math.nan)[columns].to_csv(folder / HISTORY_FILE, index=False)
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
        EpochTimer(),  # before the CSV logger, which writes its seconds
        keras.callbacks.CSVLogger(str(folder / HISTORY_FILE), append=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience),
        *extra_callbacks,
    ]
    if curve_ads:
        scorer = LSTMAdModel.in_training(language_model, vocabulary, folder)
        flops = train.predictions * training_flops_per_prediction(config, len(vocabulary))
        callbacks.append(QualityCurve(folder / QUALITY_CURVE_FILE, scorer, curve_ads, steps, flops, started_at))
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


# Notebooks 03 and 04 as their tables name them; the training ads measured again after training.
LSTM_LABELS = {"03_lstm": "03 · one-hot LSTM", "04_embedding_lstm": "04 · Embedding LSTM"}
TRAIN_SAMPLE = "train (sample)"
OLDER_THAN_TIMINGS = "one of the two trainings is older than the epoch timings: train it again to compare times."
CURVES = {"loss": "cross-entropy", "accuracy": "top-1", "top5_accuracy": "top-5"}  # history column: curve name


def plot_lstm_history(history: pd.DataFrame, figures_dir=None, name: str = "lstm"):
    """Training against validation per epoch (``history`` from :func:`read_history`): cross-entropy in
    nats per token (left), top-1 and top-5 accuracy (right); saved as ``<name>_history.png``."""

    curves = history.melt(id_vars="epoch", value_vars=[c for c in history if c.removeprefix("val_") in CURVES])
    curves["epoch"] += 1
    curves["data"] = curves["variable"].str.startswith("val_").map({False: "training", True: "validation"})
    curves["metric"] = curves["variable"].str.removeprefix("val_").map(CURVES)
    is_loss = curves["metric"] == CURVES["loss"]
    fig, (left, right) = subplots(1, 2, figsize=(12, 3.8))
    lines = {"x": "epoch", "y": "value", "hue": "data", "hue_order": ["training", "validation"]}
    sns.lineplot(curves[is_loss], marker="o", ax=left, **lines)
    sns.lineplot(curves[~is_loss], style="metric", markers=True, ax=right, **lines)
    left.set_ylabel("cross-entropy (nats per token)")
    right.set_ylabel("accuracy")
    for ax in (left, right):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    fig.suptitle(f"{name}: training vs validation")
    fig.tight_layout()
    save_figure(fig, figures_dir, f"{name}_history")
    return fig


# ---------------------------------------------------------------------------------------------
# What notebooks 03 and 04 both do
# ---------------------------------------------------------------------------------------------


class LSTMTraining(NamedTuple):
    """What notebook 03 or 04 trains on and where its model goes."""

    config: LSTMConfig
    vocabulary: Vocabulary
    splits: dict
    train: TokenArrays
    model_dir: Path
    curve_ads: list[str]  # the validation ads the quality curve scores after every epoch


def config_from_parameters(values: dict, model_input: str) -> LSTMConfig:
    """The :class:`LSTMConfig` of a notebook's resolved parameters (``model_input``: one_hot or embedding)."""
    names = {f.name for f in fields(LSTMConfig)} - {"input"}
    return LSTMConfig(input=model_input, **{k: v for k, v in values.items() if k in names})


def prepare_training(name: str, values: dict, run_dir: str | Path, log=say) -> LSTMTraining:
    """Notebook ``name``'s (03 or 04) settings, vocabulary, splits and training ads (the first
    ``max_train_ads``), from notebook 02's sequences, and the quality curve's validation ads (the
    first ``validation_ads`` of notebook 01's split, :func:`adgen_utils.corpus.data.validation_ads`); logs their size
    (``adgen_utils.series.stages.estimate_lstm`` gives the time and memory training takes)."""
    vocabulary, splits = load_sequences(Path(run_dir) / SEQUENCES_FOLDER)
    train = splits["train"]
    if values["max_train_ads"] is not None:
        train = train.subset(range(min(values["max_train_ads"], len(train))))
    config = config_from_parameters(values, LSTM_INPUTS[name])
    log(
        f"vocabulary {len(vocabulary):,} tokens; training on {len(train):,} ads ({train.predictions:,} predictions "
        f"per epoch)"
    )
    curve_ads = validation_ads(run_dir, values["validation_ads"])["ad"].tolist()
    return LSTMTraining(config, vocabulary, splits, train, model_dir(run_dir, name), curve_ads)


def train_model(setup: LSTMTraining, progress: bool = True, log=say) -> TrainingResult:
    """Train (or resume, or reload) ``setup``'s model on its training ads, validated on its validation
    split, in its model folder (see :func:`train_language_model`)."""
    return train_language_model(
        setup.config,
        setup.vocabulary,
        setup.train,
        setup.splits["validation"],
        setup.model_dir,
        progress=progress,
        log=log,
        curve_ads=setup.curve_ads,
    )


def train_for_notebook(name: str, values: dict, run_dir: str | Path, progress: bool = True, log=say) -> TrainingResult:
    """Train (or resume, or reload) notebook ``name``'s model as the notebook does, without its
    loss comparison: what a later notebook run on its own rebuilds."""
    return train_model(prepare_training(name, values, run_dir, log), progress, log)


def evaluate_trained(setup: LSTMTraining, result: TrainingResult, train_ads: int) -> pd.DataFrame:
    """The trained model beside the same model untrained and the unigram baseline
    (:func:`~adgen_utils.lstm.model.evaluate_with_baselines`) on the first ``train_ads`` training ads
    ("train (sample)"), the validation split and the test split, saved as ``metrics.csv`` in the
    model's folder. Rows (model, split); columns accuracy, top5_accuracy, cross_entropy (nats per
    token), perplexity and predictions."""
    splits = {
        TRAIN_SAMPLE: setup.train.subset(range(min(train_ads, len(setup.train)))),
        "validation": setup.splits["validation"],
        "test": setup.splits["test"],
    }
    results = evaluate_with_baselines(result.model, setup.config, setup.vocabulary, splits)
    results.to_csv(setup.model_dir / LSTM_METRICS_FILE)
    return results


def beside_original(results: pd.DataFrame) -> pd.DataFrame:
    """The original study's figures (:data:`~adgen_utils.lstm.model.ORIGINAL_REPORTED`, measured on its
    training data) above this model's on training ads, trained and untrained (``results`` from
    :func:`evaluate_trained`): accuracy, top5_accuracy and cross_entropy (nats per token)."""
    columns = ["accuracy", "top5_accuracy", "cross_entropy"]
    ours = {
        f"this LSTM, {model} ({TRAIN_SAMPLE})": results.loc[(model, TRAIN_SAMPLE), columns]
        for model in ("trained", "untrained")
    }
    return pd.concat([pd.DataFrame(ORIGINAL_REPORTED).T[columns], pd.DataFrame(ours).T])


def sample_ads(model, vocabulary: Vocabulary, prompts: Sequence[str], temperatures: Sequence[float], seed: int = 0):
    """Ads written from each prompt (rows) greedily, greedily with a repetition penalty of 1.3, and
    sampled at each of ``temperatures`` with top-k 40 and top-p 0.95 (columns); a prompt the model
    refuses shows why."""
    settings = {
        "greedy": {"greedy": True},
        "greedy, repetition penalty 1.3": {"greedy": True, "repetition_penalty": 1.3},
    }
    settings.update({f"t={t}": {"temperature": t, "top_k": 40, "top_p": 0.95} for t in temperatures})
    return decoding_settings_table(model, vocabulary, prompts, settings, seed=seed)


def loss_comparison(setup: LSTMTraining, result: TrainingResult, progress: bool = False, log=say) -> pd.DataFrame:
    """Notebook 04's second training: ``setup``'s model with the other loss (full or sampled softmax),
    the same epochs at most, in ``<model folder>_<loss>_loss`` beside it; trained, resumed or
    reloaded like the first. One row per loss ("full softmax", "sampled softmax"): validation
    cross_entropy (nats per token, full softmax for both), perplexity, accuracy, top5_accuracy, epochs
    run and seconds per epoch (NaN for a training older than the epoch timings)."""
    other = replace(setup.config, loss="sampled" if setup.config.loss == "full" else "full")
    other_folder = setup.model_dir.with_name(f"{setup.model_dir.name}_{other.loss}_loss")
    trained = train_language_model(
        other, setup.vocabulary, setup.train, setup.splits["validation"], other_folder, progress=progress, log=log
    )
    rows = {}
    for config, run in sorted([(setup.config, result), (other, trained)], key=lambda pair: pair[0].loss):
        metrics = evaluate_token_arrays(run.model, setup.splits["validation"])
        rows[f"{config.loss} softmax"] = {
            **{key: metrics[key] for key in ("cross_entropy", "perplexity", "accuracy", "top5_accuracy")},
            "epochs": len(run.history),
            "seconds per epoch": _training_seconds(run.history) / max(len(run.history), 1),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def timing_comparison(run_dir: str | Path) -> pd.DataFrame:
    """Notebook 03's and 04's finished trainings in ``run_dir`` side by side, from their folders
    (``training.json``, ``history.csv``): input, units, layers, loss, training ads, epochs run,
    training seconds, seconds per epoch, best validation cross-entropy (nats per token) and seconds to
    03's best (training seconds until validation cross-entropy first reached the one-hot LSTM's best).
    A notebook with no finished training in ``run_dir`` has no row; seconds are NaN for a training
    older than the epoch timings."""
    histories, rows = {}, {}
    for name, label in LSTM_LABELS.items():
        folder = model_dir(run_dir, name)
        state = json.loads((folder / LSTM_STATE_FILE).read_text()) if (folder / LSTM_STATE_FILE).is_file() else {}
        if state.get("status") != "complete":
            continue
        history = histories[label] = read_history(folder)
        config = state["settings"]["config"]
        seconds = _training_seconds(history)
        rows[label] = {
            **{key: config[key] for key in ("input", "units", "layers", "loss")},
            "training ads": state["settings"]["train_ads"],
            "epochs run": len(history),
            "training seconds": seconds,
            "seconds per epoch": seconds / max(len(history), 1),
            "best validation cross-entropy": float(history["val_loss"].min()),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    one_hot = LSTM_LABELS["03_lstm"]
    if one_hot in rows:
        best = rows[one_hot]["best validation cross-entropy"]
        table["seconds to 03's best"] = [_seconds_to_reach(histories[label], best) for label in table.index]
    return table


def findings(
    setup: LSTMTraining, results: pd.DataFrame, timing: pd.DataFrame | None = None, losses: pd.DataFrame | None = None
) -> str:
    """What notebook 03 or 04 tells us, as Markdown bullets computed from this run's tables: accuracy on
    training ads against held-out ads (beside the original's figure), test cross-entropy against the
    unigram floor and the untrained model (``results`` from :func:`evaluate_trained`), and the first
    LSTM layer's multiply-adds per input word; with ``timing`` (:func:`timing_comparison`), time and
    cross-entropy against notebook 03's one-hot LSTM; with ``losses`` (:func:`loss_comparison`), the
    sampled softmax against the full one."""
    accuracy, cross_entropy = results["accuracy"], results["cross_entropy"]
    seen, new = accuracy[("trained", TRAIN_SAMPLE)], accuracy[("trained", "test")]
    original = ORIGINAL_REPORTED["original LSTM, trained (train data)"]["accuracy"]
    gap = round(seen - new, 3)
    bullets = [
        f"Top-1 accuracy on training ads is {seen:.3f} (the original reported {original:.2f} on its own training "
        f"data, and nothing else); on validation ads it is {accuracy[('trained', 'validation')]:.3f} and on test "
        f"ads {new:.3f}"
        + (
            f", {gap:.3f} lower on ads the model never saw: a gap the original could not see."
            if gap > 0
            else ", no lower than on training ads: this model has not fit its training ads more closely than new ones."
        )
    ]
    test, floor, untrained = (cross_entropy[(model, "test")] for model in ("trained", "unigram", "untrained"))
    bullets.append(
        f"On test ads the trained model's cross-entropy is {test:.3f} nats per token (perplexity "
        f"{_number(results['perplexity'][('trained', 'test')])}), {_compare(test, floor, 'below', 'above', 'level with')} "
        f"the unigram floor's {floor:.3f}, which knows only how frequent each word is, and "
        f"{_compare(test, untrained, 'below', 'above', 'level with')} the untrained model's {untrained:.3f}"
        + (": with these settings it predicts worse than word frequencies alone." if test > floor else ".")
    )
    bullets.append(_input_cost(setup.config, len(setup.vocabulary)))
    if timing is not None:
        bullets.append(_timing_finding(timing))
    if losses is not None:
        bullets.append(_loss_finding(losses, len(setup.vocabulary)))
    return "\n".join(f"* {bullet}" for bullet in bullets)


def _training_seconds(history: pd.DataFrame) -> float:
    """Seconds the epochs of ``history`` took; NaN when any epoch was not timed."""
    if "seconds" not in history or history["seconds"].isna().any():
        return math.nan
    return float(history["seconds"].sum())


def _seconds_to_reach(history: pd.DataFrame, cross_entropy: float) -> float:
    """Training seconds until the validation cross-entropy first reached ``cross_entropy``; NaN if never."""
    reached = (history["val_loss"] <= cross_entropy).to_numpy()
    if not reached.any():
        return math.nan
    return _training_seconds(history.iloc[: reached.argmax() + 1])


def _compare(value: float, other: float, smaller: str, larger: str, same: str = "the same") -> str:
    """The word a finding needs: ``smaller`` when ``value`` is below ``other``, ``larger`` above it."""
    return smaller if value < other else larger if value > other else same


def _number(value: float) -> str:
    """``value`` as a finding writes it: whole above 100 (with thousands commas), else 3 figures."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _input_cost(config: LSTMConfig, vocabulary_size: int) -> str:
    """A finding: the first LSTM layer's input multiply-adds per word, one-hot against embedded."""
    one_hot, embedded = 4 * config.units * vocabulary_size, 4 * config.units * config.embedding_dim
    if config.input == "one_hot":
        return (
            f"Each input word reaches the first LSTM layer as a one-hot vector of {vocabulary_size:,} numbers: "
            f"{one_hot:,} multiply-adds (4 gates × {config.units} units × {vocabulary_size:,}) that only pick out one "
            "row of the layer's input weights. An Embedding layer looks that row up instead: notebook 04."
        )
    return (
        f"Each input word reaches the first LSTM layer as the {config.embedding_dim} numbers of its embedding: "
        f"{embedded:,} multiply-adds (4 gates × {config.units} units × {config.embedding_dim}), where a one-hot "
        f"vector over the {vocabulary_size:,}-token vocabulary would take {one_hot:,}, {_number(one_hot / embedded)}× as many."
    )


def _versus(value: float, other: float, unit: str, smaller: str, larger: str, number=lambda v: f"{v:.3f}") -> str:
    """A finding's comparison, e.g. "6.250 nats per token against 6.430 (lower)"."""
    return f"{number(value)} {unit} against {number(other)} ({_compare(value, other, smaller, larger)})"


def _loss_finding(losses: pd.DataFrame, vocabulary_size: int) -> str:
    """A finding: the sampled softmax against the full one, from :func:`loss_comparison`."""
    full, sampled = losses.loc["full softmax"], losses.loc["sampled softmax"]
    text = "Against the full softmax, the sampled softmax reached a validation cross-entropy of " + _versus(
        sampled["cross_entropy"], full["cross_entropy"], "nats per token", "lower", "higher"
    )
    seconds = sampled["seconds per epoch"], full["seconds per epoch"]
    if math.isnan(sum(seconds)):
        return f"{text}; {OLDER_THAN_TIMINGS}"
    return (
        f"{text}, at {_versus(*seconds, 's an epoch', 'faster', 'slower', _number)} with this run's "
        f"{vocabulary_size:,}-token vocabulary; `adgen bench lstm` measures both on larger ones."
    )


def _timing_finding(timing: pd.DataFrame) -> str:
    """A finding: the Embedding LSTM against notebook 03's one-hot LSTM, from :func:`timing_comparison`."""
    one_hot, embedded = timing.reindex(list(LSTM_LABELS.values())).to_dict("records")
    if LSTM_LABELS["03_lstm"] not in timing.index:
        return (
            "Notebook 03's results are not in this run folder, so this notebook cannot compare its time with the "
            f"one-hot LSTM's; here an epoch took {_number(embedded['seconds per epoch'])} s. Run notebook 03 with the "
            "same profile and run_dir, then this one, to compare them."
        )
    text = (
        "Against notebook 03's one-hot LSTM (this run folder; each with its own settings, table above), the "
        "Embedding LSTM's best validation cross-entropy is "
        + _versus(
            *(row["best validation cross-entropy"] for row in (embedded, one_hot)), "nats per token", "lower", "higher"
        )
    )
    if math.isnan(one_hot["training seconds"] + embedded["training seconds"]):
        return f"{text}; {OLDER_THAN_TIMINGS}"
    seconds = [(embedded[column], one_hot[column]) for column in ("training seconds", "seconds per epoch")]
    text += (
        f", after {_versus(*seconds[0], 's of training', 'less', 'more', _number)}; "
        f"{_versus(*seconds[1], 's an epoch', 'faster', 'slower', _number)}."
    )
    reached, took = embedded["seconds to 03's best"], one_hot["seconds to 03's best"]
    if math.isnan(reached):
        return text + " It never reached the one-hot LSTM's best in this run."
    return text + (
        f" It reached the one-hot LSTM's best after {_number(reached)} s, where the one-hot LSTM took {_number(took)} s: "
        f"{_compare(reached, took, 'less', 'more')} time."
    )
