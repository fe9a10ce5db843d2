"""Stage 4: word-level LSTM language models (Keras 3 on TensorFlow): build, train, measure, generate.

Two models, as in the original study, but trained many-to-many with sparse targets:

* ``"one_hot"`` (the original "LSTM"): ids become one-hot vectors inside the graph, no Embedding.
* ``"embedding"`` (the original "Embed LSTM"): an Embedding layer.

Both end in a Dense layer giving next-token logits of shape (batch, time, vocabulary).
:class:`LanguageModelTrainer` trains them with the exact per-token cross-entropy (padding
excluded), or with a sampled softmax that is far cheaper for large vocabularies; evaluation
always uses the full softmax, in chunks of ads small enough that the (ads, time, vocabulary)
logits stay within a memory budget (:func:`rows_per_chunk`). :func:`train_language_model` backs up
every epoch and at least every ``checkpoint_minutes`` within one (:class:`TimedBackup`), and
resumes after an interruption. Importing this module lets TensorFlow grow its GPU memory on demand
(:func:`grow_gpu_memory`), so torch can load a model beside it.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
import weakref
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import NamedTuple, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up noise out of notebooks
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

from .hardware import Device, precision_for  # noqa: E402
from .parameters import default  # noqa: E402
from .sequences import TokenArrays, many_to_many_dataset  # noqa: E402
from .stages import HISTORY_FILE, LSTM_MODEL_FILE, LSTM_STATE_FILE  # noqa: E402
from .text import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocabulary, detokenize, tokenize  # noqa: E402


def grow_gpu_memory(config=None) -> None:
    """Make TensorFlow take GPU memory as it needs it rather than all of it on first use, so that torch
    can load a transformer beside the LSTMs (notebook 07). ``config`` is ``tf.config`` (or a stand-in)."""
    config = config or tf.config
    for gpu in config.list_physical_devices("GPU"):
        try:
            config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as error:  # the GPUs were initialised before this module was imported
            warnings.warn(f"TensorFlow already holds {gpu} and cannot grow its memory on demand: {error}. "
                          "Import adgen_utils.lstm before running TensorFlow on the GPU.", RuntimeWarning,
                          stacklevel=2)


grow_gpu_memory()

MODEL_FILE = LSTM_MODEL_FILE
VOCABULARY_FILE = "vocabulary.json"
STATE_FILE = LSTM_STATE_FILE
BEST_WEIGHTS_FILE = "best.weights.h5"
BACKUP_FOLDER = "backup"  # TimedBackup's, removed when training finishes


@dataclass
class LSTMConfig:
    """Model and training settings. Sizes are units; ``batch_size`` counts ads, not tokens."""

    # The defaults are notebook 03's (04's for embedding_dim), declared in adgen_utils.parameters.
    input: str = "embedding"  # "one_hot" (no Embedding layer) or "embedding"
    embedding_dim: int = default("04_embedding_lstm", "embedding_dim")
    units: int = default("03_lstm", "units")
    layers: int = default("03_lstm", "layers")
    dropout: float = default("03_lstm", "dropout")
    learning_rate: float = default("03_lstm", "learning_rate")
    batch_size: int = default("03_lstm", "batch_size")
    epochs: int = default("03_lstm", "epochs")
    patience: int = default("03_lstm", "patience")  # epochs without a better validation loss before stopping
    loss: str = default("03_lstm", "loss")  # "full" softmax, or "sampled" softmax in training
    sampled: int = default("03_lstm", "sampled")  # classes drawn per step by the sampled softmax
    mixed_precision: bool | None = None  # None: float16 on a GPU, float32 on a CPU (see keras_policy)
    seed: int = default("03_lstm", "seed")
    checkpoint_minutes: float = 15.0  # wall time between backups at most, also within an epoch

    def __post_init__(self):
        if self.input not in ("one_hot", "embedding"):
            raise ValueError(f"input must be 'one_hot' or 'embedding', got {self.input!r}")
        if self.loss not in ("full", "sampled"):
            raise ValueError(f"loss must be 'full' or 'sampled', got {self.loss!r}")
        for name in ("embedding_dim", "units", "layers", "batch_size", "epochs", "sampled"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@keras.saving.register_keras_serializable(package="adgen")
class OneHot(keras.layers.Layer):
    """Ids (batch, time) -> one-hot vectors (batch, time, depth), masking the padding id 0."""

    def __init__(self, depth: int, **kwargs):
        super().__init__(**kwargs)
        self.depth = depth

    def call(self, ids):
        return keras.ops.one_hot(ids, self.depth, dtype=self.compute_dtype)

    def compute_mask(self, ids, mask=None):
        return keras.ops.not_equal(ids, PAD_ID)

    def get_config(self):
        return {**super().get_config(), "depth": self.depth}


def tensorflow_device(config=None) -> Device:
    """The first GPU TensorFlow sees (with how many there are), else the CPU. ``config`` is
    ``tf.config`` (or a stand-in); GPU memory is not reported (None) before TensorFlow uses the GPU."""
    config = config or tf.config
    gpus = config.list_physical_devices("GPU")
    if not gpus:
        return Device("cpu", "cpu", None, None)
    details = config.experimental.get_device_details(gpus[0])
    capability = details.get("compute_capability")
    return Device("cuda", details.get("device_name", gpus[0].name), tuple(capability) if capability else None,
                  None, len(gpus))


def keras_policy(mixed_precision: bool | None, device: Device) -> str:
    """The Keras dtype policy. ``None``: "mixed_float16" wherever :func:`adgen_utils.hardware.precision_for`
    gives a 16-bit type (every CUDA GPU runs float16 natively), "float32" on a CPU; ``False`` is
    float32; ``True`` is "mixed_float16" even on a CPU. Never bfloat16: TensorFlow's cuDNN LSTM
    kernels take float16 and float32 only (tensorflow/tensorflow#59743), so on an A100 or L4 the
    LSTMs compute in float16 while the transformers use bfloat16."""
    if mixed_precision is False:
        return "float32"
    if mixed_precision or precision_for(device) != "fp32":
        return "mixed_float16"
    return "float32"


def rows_per_chunk(vocabulary_size: int, time_steps: int, budget_gib: float = 1.0, tensors: int = 3) -> int:
    """How many ads (at least 1) to score at once so that ``tensors`` float32 tensors of shape (ads,
    time_steps, vocabulary_size) fit in ``budget_gib`` GiB: e.g. 14 ads of 63 steps for a 100k vocabulary."""
    per_row = tensors * max(time_steps, 1) * vocabulary_size * 4
    return max(1, int(budget_gib * 2**30 // per_row))


def build_model(config: LSTMConfig, vocabulary_size: int) -> keras.Model:
    """The language model: ids (batch, time) int32 -> next-token logits (batch, time, V) float32.

    An ``encoder`` sub-model (input layer, LSTMs, dropout) gives the hidden states the sampled
    softmax needs; the Dense ``next_token`` layer maps them to logits. The LSTMs keep Keras's
    cuDNN-eligible defaults (tanh, sigmoid, no recurrent dropout, right padding).
    """
    ids = keras.Input(shape=(None,), dtype="int32", name="ids")
    if config.input == "one_hot":
        x = OneHot(vocabulary_size, name="one_hot")(ids)
    else:
        x = keras.layers.Embedding(vocabulary_size, config.embedding_dim, mask_zero=True, name="embedding")(ids)
    for layer in range(config.layers):
        x = keras.layers.LSTM(config.units, return_sequences=True, name=f"lstm_{layer + 1}")(x)
        x = keras.layers.Dropout(config.dropout, name=f"dropout_{layer + 1}")(x)
    encoder = keras.Model(ids, x, name="encoder")
    outer_ids = keras.Input(shape=(None,), dtype="int32", name="ids")
    logits = keras.layers.Dense(vocabulary_size, dtype="float32", name="next_token")(encoder(outer_ids))
    return keras.Model(outer_ids, logits, name=f"{config.input}_lstm")


def weighted_hits(logits, targets, weights, top5: bool = True):
    """Weighted counts of targets that are the top-1 and among the top-5 logits (scalars;
    the top-5 count is 0 when ``top5`` is False). Shapes: logits (B, T, V), the rest (B, T)."""
    flat_logits = tf.reshape(logits, [-1, tf.shape(logits)[-1]])
    flat_targets = tf.reshape(targets, [-1])
    flat_weights = tf.reshape(weights, [-1])
    hit1 = tf.cast(tf.equal(tf.argmax(flat_logits, -1, output_type=tf.int32), flat_targets), tf.float32)
    hits5 = tf.constant(0.0)
    if top5:
        hits5 = tf.reduce_sum(tf.cast(tf.math.in_top_k(flat_targets, flat_logits, 5), tf.float32) * flat_weights)
    return tf.reduce_sum(hit1 * flat_weights), hits5


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
            weights=tf.transpose(output.kernel), biases=output.bias, labels=labels, inputs=flat_hidden,
            num_sampled=min(self.sampled, output.units - 1), num_classes=output.units,
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

    def __init__(self, steps: int, epochs: int, log=print):
        super().__init__()
        self.steps, self.epochs, self.log = steps, epochs, log
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="batch", leave=False)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if logs and batch % 20 == 0:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.3f}")

    def on_epoch_end(self, epoch, logs=None):
        self.bar.close()
        logs = logs or {}
        shown = ", ".join(f"{k} {float(v):.4f}" for k, v in logs.items() if k in ("loss", "val_loss", "val_accuracy", "val_top5_accuracy"))
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
    log=print,
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
    state_path = folder / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else None
    if state and state["settings"] != settings:
        log("settings changed since the last run in this folder: training from scratch")
        for name in (BACKUP_FOLDER, HISTORY_FILE, BEST_WEIGHTS_FILE, MODEL_FILE):
            path = folder / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        state = None
    if state and state["status"] == "complete" and (folder / MODEL_FILE).exists():
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
    backup = TimedBackup(str(folder / BACKUP_FOLDER), config.checkpoint_minutes)
    _, batches_done = backup.position()
    if started_at or batches_done:
        within = f" and {batches_done} of the {steps} batches of epoch {started_at + 1}" if batches_done else ""
        best = f" (best validation loss so far {best_so_far:.4f})" if best_so_far is not None else ""
        log(f"resuming after epoch {started_at}{within}{best}")
    state_path.write_text(json.dumps({"settings": settings, "status": "training"}, indent=2))
    callbacks = [
        backup,
        keras.callbacks.ModelCheckpoint(
            str(folder / BEST_WEIGHTS_FILE), monitor="val_loss", save_best_only=True,
            save_weights_only=True, initial_value_threshold=best_so_far,
        ),
        keras.callbacks.CSVLogger(str(folder / HISTORY_FILE), append=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience),
        *extra_callbacks,
    ]
    if progress:
        callbacks.append(EpochProgress(steps, config.epochs, log))
    trainer.fit(train_batches, validation_data=validation_batches, epochs=config.epochs, callbacks=callbacks, verbose=0,
                shuffle=False)  # the dataset shuffles itself

    if (folder / BEST_WEIGHTS_FILE).exists():
        trainer.load_weights(str(folder / BEST_WEIGHTS_FILE))
    keras.mixed_precision.set_global_policy("float32")
    language_model.save(folder / MODEL_FILE)
    vocabulary.save(folder / VOCABULARY_FILE)
    history = read_history(folder)
    state = {"settings": settings, "status": "complete", "epochs_run": len(history),
             "best_val_loss": float(history["val_loss"].min()) if len(history) else None}
    state_path.write_text(json.dumps(state, indent=2))
    return TrainingResult(language_model, history, started_at, folder)


def read_history(folder: str | Path) -> pd.DataFrame:
    """Per-epoch metrics from ``history.csv`` (empty frame if none)."""
    path = Path(folder) / HISTORY_FILE
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=["epoch", "loss", "val_loss"])
    return pd.read_csv(path)


def load_model(folder: str | Path) -> keras.Model:
    """Load ``model.keras`` from a trained model folder."""
    path = Path(folder) / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"No trained model at {path}; train it first (notebook 03 or 04).")
    return keras.saving.load_model(path, compile=False)


def load_trained(folder: str | Path) -> tuple[keras.Model, Vocabulary]:
    """The model and vocabulary saved in a trained model folder."""
    return load_model(folder), Vocabulary.load(Path(folder) / VOCABULARY_FILE)


# ---------------------------------------------------------------------------------------
# Metrics


def evaluate_model(model: keras.Model, arrays: TokenArrays, batch_size: int = 128,
                   logits_budget_gib: float = 1.0) -> dict:
    """Next-token metrics of ``model`` on ``arrays``, over every real target (with <eos>).

    Ads are read ``batch_size`` at a time, fewer when needed to keep the logits of a batch within
    ``logits_budget_gib`` GiB (:func:`rows_per_chunk`); the metrics do not depend on either. Returns
    ``cross_entropy`` (nats per token), ``perplexity`` (exp of it), ``accuracy``, ``top5_accuracy``,
    ``predictions`` (count) and ``unknown_targets`` (share that is <unk>).
    """
    longest = int(arrays.lengths.max()) - 1
    rows = min(batch_size, rows_per_chunk(model.output_shape[-1], longest, logits_budget_gib))
    totals = np.zeros(4)  # cross-entropy sum, top-1 hits, top-5 hits, predictions
    batch_sums = _compiled(model, _batch_sums)
    for ids, targets, weights in many_to_many_dataset(arrays, rows):
        totals += batch_sums(ids, targets, weights).numpy()
    return _metrics(*totals, unknown=_unknown_share(arrays))


def target_scores(model: keras.Model, ids: np.ndarray, targets: np.ndarray):
    """Each target's natural-log probability (B, T) float32 and whether it is the model's first
    choice / among its five first choices (B, T) bool, for ``ids`` and ``targets`` (B, T) int32.
    <pad>, <unk> and <bos> are never a choice. The (B, T, V) logits stay on the model's device:
    only the (B, T) results are copied to the host."""
    log_probs, top1, top5 = _compiled(model, _target_scores)(ids, targets)
    return log_probs.numpy(), top1.numpy(), top5.numpy()


_COMPILED = weakref.WeakKeyDictionary()  # model -> {builder: tf.function}
_IDS_TARGETS = [tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.int32)]


def _compiled(model, builder):
    """``builder(model)``, built once per model and traced once for any batch shape."""
    functions = _COMPILED.setdefault(model, {})
    if builder not in functions:
        functions[builder] = builder(model)
    return functions[builder]


def _batch_sums(model):
    @tf.function(input_signature=[*_IDS_TARGETS, tf.TensorSpec([None, None], tf.float32)])
    def batch_sums(ids, targets, weights):
        logits = tf.cast(model(ids, training=False), tf.float32)
        per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
        hits1, hits5 = weighted_hits(logits, targets, weights)
        return tf.stack([tf.reduce_sum(per_token * weights), hits1, hits5, tf.reduce_sum(weights)])

    return batch_sums


def _target_scores(model):
    size = model.output_shape[-1]
    never = tf.scatter_nd([[PAD_ID], [UNK_ID], [BOS_ID]], tf.fill([3], -np.inf), [size])  # (V,): 0 or -inf

    @tf.function(input_signature=_IDS_TARGETS)
    def scores(ids, targets):
        logits = tf.cast(model(ids, training=False), tf.float32)
        log_probs = tf.gather(logits, targets, batch_dims=2) - tf.reduce_logsumexp(logits, axis=-1)
        best = tf.math.top_k(logits + never, k=min(5, size)).indices
        hits = tf.equal(best, targets[..., None])
        return log_probs, hits[..., 0], tf.reduce_any(hits, axis=-1)

    return scores


def unigram_baseline(vocabulary: Vocabulary, arrays: TokenArrays) -> dict:
    """The same metrics for a model that always predicts training-set token frequencies."""
    log_probs = vocabulary.unigram_log_probs()
    targets = _targets(arrays)
    ranked = np.argsort(-np.asarray(vocabulary.counts), kind="stable")
    return _metrics(
        float(-log_probs[targets].sum()), float((targets == ranked[0]).sum()),
        float(np.isin(targets, ranked[:5]).sum()), float(targets.size), unknown=_unknown_share(arrays),
    )


def _targets(arrays: TokenArrays) -> np.ndarray:
    is_target = np.ones(arrays.ids.size, dtype=bool)
    is_target[arrays.offsets[:-1]] = False  # every ad's <bos> is an input only
    return np.asarray(arrays.ids)[is_target].astype(np.int64)


def _unknown_share(arrays: TokenArrays) -> float:
    targets = _targets(arrays)
    return float((targets == UNK_ID).mean()) if targets.size else 0.0


def _metrics(cross_entropy_sum, top1, top5, predictions, unknown) -> dict:
    cross_entropy = cross_entropy_sum / max(predictions, 1)
    return {
        "cross_entropy": cross_entropy,
        "perplexity": float(math.exp(min(cross_entropy, 700))),
        "accuracy": top1 / max(predictions, 1),
        "top5_accuracy": top5 / max(predictions, 1),
        "predictions": int(predictions),
        "unknown_targets": unknown,
    }


# What the original study reported, on its training data only (categorical accuracy,
# top-k categorical accuracy, categorical cross-entropy), for its trained and untrained LSTM.
ORIGINAL_REPORTED = {
    "original LSTM, trained (train data)": {"accuracy": 0.82, "top5_accuracy": 0.95, "cross_entropy": 0.69},
    "original LSTM, untrained (train data)": {"accuracy": 0.05, "top5_accuracy": 0.15, "cross_entropy": 7.37},
}


def evaluate_with_baselines(model, config: LSTMConfig, vocabulary: Vocabulary, splits: dict[str, TokenArrays]) -> pd.DataFrame:
    """The trained model, the same model untrained, and the unigram baseline on each split.

    ``splits`` maps a label ("train (sample)", "validation", "test") to its arrays. Returns
    the :func:`results_table`; the unigram baseline is skipped on training data.
    """
    keras.utils.set_random_seed(config.seed)
    untrained = build_model(config, len(vocabulary))
    rows = {"trained": {}, "untrained": {}, "unigram": {}}
    for label, arrays in splits.items():
        rows["trained"][label] = evaluate_model(model, arrays)
        rows["untrained"][label] = evaluate_model(untrained, arrays)
        if not label.startswith("train"):
            rows["unigram"][label] = unigram_baseline(vocabulary, arrays)
    return results_table(rows)


def plot_history(history: pd.DataFrame, figures_dir=None, name: str = "lstm"):
    """Training against validation curves: cross-entropy and top-1 / top-5 accuracy per epoch."""
    import matplotlib.pyplot as plt

    from .figures import save_figure

    epochs = history["epoch"] + 1
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    left.plot(epochs, history["loss"], "o-", label="training")
    left.plot(epochs, history["val_loss"], "o-", label="validation")
    left.set_ylabel("cross-entropy (nats per token)")
    for column, style in (("accuracy", "o-"), ("top5_accuracy", "s--")):
        if column in history:
            right.plot(epochs, history[column], style, color="#4c72b0", label=f"training {column.replace('_', ' ')}")
        right.plot(epochs, history[f"val_{column}"], style, color="#dd8452", label=f"validation {column.replace('_', ' ')}")
    right.set_ylabel("accuracy")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.suptitle(f"{name}: training vs validation")
    fig.tight_layout()
    save_figure(fig, figures_dir, f"{name}_history")
    return fig


def results_table(rows: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """``{model: {split: metrics}}`` -> a table indexed by (model, split) with the main metrics."""
    records = [
        {"model": model, "split": split, **{k: metrics[k] for k in ("accuracy", "top5_accuracy", "cross_entropy", "perplexity", "predictions")}}
        for model, by_split in rows.items()
        for split, metrics in by_split.items()
    ]
    return pd.DataFrame(records).set_index(["model", "split"])


# ---------------------------------------------------------------------------------------
# Generation


@dataclass
class Generation:
    """One generated ad: the text, the generated tokens and the prompt words the model did not know."""

    text: str
    new_tokens: list[str]
    unknown_prompt_words: list[str]


def pick_next_token(
    logits: np.ndarray,
    rng: np.random.Generator,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    banned: Sequence[int] = (PAD_ID, UNK_ID, BOS_ID),
    repetition_penalty: float = 1.0,
    previous: Sequence[int] = (),
) -> int:
    """Choose the next id from logits (V,): greedy, or sampling with temperature, top-k and top-p.

    ``banned`` ids are never chosen (by default padding, <unk> and <bos>). A
    ``repetition_penalty`` above 1 makes the ids in ``previous`` less likely, as in Hugging
    Face's ``generate``: their positive logits are divided by it, negative ones multiplied.
    """
    if repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    scores = np.asarray(logits, dtype=np.float64).copy()
    if repetition_penalty != 1.0 and len(previous):
        seen = np.unique(np.asarray(previous, dtype=np.int64))
        scores[seen] = np.where(scores[seen] > 0, scores[seen] / repetition_penalty, scores[seen] * repetition_penalty)
    scores[list(banned)] = -np.inf
    if greedy:
        return int(np.argmax(scores))
    scores = scores / temperature
    if top_k:
        cutoff = np.partition(scores, -top_k)[-top_k] if top_k < scores.size else -np.inf
        scores[scores < cutoff] = -np.inf
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    if top_p < 1:
        order = np.argsort(-probs, kind="stable")
        keep = np.cumsum(probs[order]) - probs[order] < top_p  # smallest set reaching top_p
        mask = np.zeros_like(probs, dtype=bool)
        mask[order[keep]] = True
        probs = np.where(mask, probs, 0.0)
        probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))


def generate(
    model: keras.Model,
    vocabulary: Vocabulary,
    prompt: str,
    max_new_tokens: int = 40,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    seed: int | None = None,
) -> Generation:
    """Continue ``prompt`` token by token until <eos> or ``max_new_tokens``.

    Raises ValueError for an empty prompt or one whose words are all unknown to the model;
    unknown words among known ones are kept in the text, read by the model as <unk>, and listed.
    """
    prompt_tokens = tokenize(prompt or "")
    if not prompt_tokens:
        raise ValueError("The prompt is empty: give the start of an ad, e.g. 'Apple Watch'.")
    ids = vocabulary.encode(prompt_tokens)
    unknown = [t for t, i in zip(prompt_tokens, ids) if i == UNK_ID]
    if len(unknown) == len(prompt_tokens):
        examples = ", ".join([t for t in vocabulary.tokens[4:200] if t[0].isalpha()][:5])
        raise ValueError(
            f"None of the prompt's words {unknown} are in the model's vocabulary of {len(vocabulary):,} tokens, "
            f"so it would generate from nothing. Start with words from the ads (e.g. {examples})."
        )
    rng = np.random.default_rng(seed)
    sequence = [BOS_ID, *ids]
    new_ids: list[int] = []
    for _ in range(max_new_tokens):
        logits = keras.ops.convert_to_numpy(model(np.asarray([sequence], dtype=np.int32), training=False)[0, -1])
        next_id = pick_next_token(logits, rng, greedy, temperature, top_k, top_p,
                                  repetition_penalty=repetition_penalty, previous=sequence[1:])
        if next_id == EOS_ID:
            break
        new_ids.append(next_id)
        sequence.append(next_id)
    new_tokens = vocabulary.decode(new_ids)
    return Generation(detokenize([*prompt_tokens, *new_tokens]), new_tokens, unknown)


def generation_table(model, vocabulary, prompts: Sequence[str], settings: dict[str, dict], seed: int = 0) -> pd.DataFrame:
    """Generated ads for each prompt (rows) under each named decoding setting (columns)."""
    table = {}
    for name, options in settings.items():
        column = []
        for prompt in prompts:
            try:
                column.append(generate(model, vocabulary, prompt, seed=seed, **options).text)
            except ValueError as error:
                column.append(f"[{error}]")
        table[name] = column
    return pd.DataFrame(table, index=pd.Index(prompts, name="prompt"))



# ---------------------------------------------------------------------------------------
# Notebooks 03 and 04 as one stage


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


def prepare_training(name: str, values: dict, run_dir: str | Path, log=print, comparison: bool = True) -> LSTMTraining:
    """Notebook ``name``'s (03 or 04) settings, vocabulary, splits and training ads (the first
    ``max_train_ads``), from notebook 02's sequences; prints their size and the time and memory
    training is estimated to take here (``comparison``: with notebook 04's loss comparison)."""
    from . import stages
    from .sequences import SEQUENCES_FOLDER, load_sequences

    vocabulary, splits = load_sequences(Path(run_dir) / SEQUENCES_FOLDER)
    train = splits["train"]
    if values["max_train_ads"] is not None:
        train = train.subset(range(min(values["max_train_ads"], len(train))))
    config = config_from_parameters(values, stages.LSTM_INPUTS[name])
    log(f"vocabulary {len(vocabulary):,} tokens; training on {len(train):,} ads ({train.predictions:,} predictions "
        f"per epoch)")
    log(f"estimate: {stages.estimate_lstm(name, values, run_dir, comparison=comparison)}")
    return LSTMTraining(config, vocabulary, splits, train, stages.model_dir(run_dir, name))


def train_for_notebook(name: str, values: dict, run_dir: str | Path, progress: bool = True, log=print) -> TrainingResult:
    """Train (or resume, or reload) notebook ``name``'s model as the notebook does, without its
    loss comparison: what a later notebook run on its own rebuilds."""
    setup = prepare_training(name, values, run_dir, log, comparison=False)
    return train_language_model(setup.config, setup.vocabulary, setup.train, setup.splits["validation"],
                                setup.model_dir, progress=progress, log=log)
