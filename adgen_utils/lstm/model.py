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

import math
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from adgen_utils.corpus.sequences import TokenArrays
from adgen_utils.corpus.text import BOS_ID, PAD_ID, UNK_ID, Vocabulary
from adgen_utils.hardware import Device, precision_for
from adgen_utils.layout import LSTM_MODEL_FILE, VOCABULARY_FILE
from adgen_utils.parameters import default


def grow_gpu_memory(config=None) -> None:
    """Make TensorFlow take GPU memory as it needs it rather than all of it on first use, so that torch
    can load a transformer beside the LSTMs (notebook 07). ``config`` is ``tf.config`` (or a stand-in)."""
    config = config or tf.config
    for gpu in config.list_physical_devices("GPU"):
        try:
            config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as error:  # the GPUs were initialised before this module was imported
            warnings.warn(
                f"TensorFlow already holds {gpu} and cannot grow its memory on demand: {error}. "
                "Import adgen_utils.lstm.model before running TensorFlow on the GPU.",
                RuntimeWarning,
                stacklevel=2,
            )


grow_gpu_memory()


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
    return Device(
        "cuda", details.get("device_name", gpus[0].name), tuple(capability) if capability else None, None, len(gpus)
    )


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


def training_flops_per_prediction(config: LSTMConfig, vocabulary_size: int) -> float:
    """Floating-point operations (multiply + add = 2) to train on one predicted token: 3 x the
    forward pass (the backward pass costs about twice the forward). Forward: each LSTM layer's four
    gates, 2 x 4·units x (inputs + units) (inputs: the vocabulary for one-hot inputs, which the
    graph multiplies densely, else ``embedding_dim``; ``units`` above the first layer), then the
    output layer, 2 x units x V, or units x (``sampled`` + 1) classes with the sampled softmax."""
    inputs = vocabulary_size if config.input == "one_hot" else config.embedding_dim
    forward = 0.0
    for layer in range(config.layers):
        width = inputs if layer == 0 else config.units
        forward += 2 * 4 * config.units * (width + config.units)
    classes = vocabulary_size if config.loss == "full" else config.sampled + 1
    return 3 * (forward + 2 * config.units * classes)


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


def load_model(folder: str | Path) -> keras.Model:
    """Load ``model.keras`` from a trained model folder."""
    path = Path(folder) / LSTM_MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"No trained model at {path}; train it first (notebook 03 or 04).")
    return keras.saving.load_model(path, compile=False)


def load_trained(folder: str | Path) -> tuple[keras.Model, Vocabulary]:
    """The model and vocabulary saved in a trained model folder."""
    return load_model(folder), Vocabulary.load(Path(folder) / VOCABULARY_FILE)


# ---------------------------------------------------------------------------------------
# Metrics


def evaluate_token_arrays(
    model: keras.Model, arrays: TokenArrays, batch_size: int = 128, logits_budget_gib: float = 1.0
) -> dict:
    """Next-token metrics of a Keras ``model`` on encoded ``arrays``, over every real target (with
    <eos>), per model token, <unk> a token like any other (notebooks 03-04; the series' common
    footing over ad texts is :func:`adgen_utils.study.evaluation.evaluate_ad_model`).

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
        float(-log_probs[targets].sum()),
        float((targets == ranked[0]).sum()),
        float(np.isin(targets, ranked[:5]).sum()),
        float(targets.size),
        unknown=_unknown_share(arrays),
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


def evaluate_with_baselines(
    model, config: LSTMConfig, vocabulary: Vocabulary, splits: dict[str, TokenArrays]
) -> pd.DataFrame:
    """The trained model, the same model untrained, and the unigram baseline on each split.

    ``splits`` maps a label ("train (sample)", "validation", "test") to its arrays. Returns
    the :func:`results_table`; the unigram baseline is skipped on training data.
    """
    keras.utils.set_random_seed(config.seed)
    untrained = build_model(config, len(vocabulary))
    rows = {"trained": {}, "untrained": {}, "unigram": {}}
    for label, arrays in splits.items():
        rows["trained"][label] = evaluate_token_arrays(model, arrays)
        rows["untrained"][label] = evaluate_token_arrays(untrained, arrays)
        if not label.startswith("train"):
            rows["unigram"][label] = unigram_baseline(vocabulary, arrays)
    return results_table(rows)


def results_table(rows: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """``{model: {split: metrics}}`` -> a table indexed by (model, split) with the main metrics."""
    records = [
        {
            "model": model,
            "split": split,
            **{k: metrics[k] for k in ("accuracy", "top5_accuracy", "cross_entropy", "perplexity", "predictions")},
        }
        for model, by_split in rows.items()
        for split, metrics in by_split.items()
    ]
    return pd.DataFrame(records).set_index(["model", "split"])


# ---------------------------------------------------------------------------------------
# Generation


# ---------------------------------------------------------------------------------------
# Notebooks 03 and 04 as one stage


def many_to_many_dataset(
    arrays: TokenArrays, batch_size: int, shuffle: bool = False, seed: int = 0, chunk_batches: int = 32
):
    """A ``tf.data.Dataset`` of ``(inputs, targets, weights)`` batches of ads of similar length.

    For a batch of B ads whose longest has L tokens (with <bos>/<eos>): ``inputs`` int32
    (B, L-1) = tokens 0..L-2, ``targets`` int32 (B, L-1) = tokens 1..L-1 (padding 0), and
    ``weights`` float32 (B, L-1), 1 where a target is real. Ads are grouped by length so that
    little is padding: with ``shuffle``, each epoch draws a new random order, sorts each chunk
    of ``chunk_batches`` batches by length, and shuffles the batches; without it, all ads are
    sorted by length (for evaluation, where order does not matter).
    """

    if len(arrays) == 0:
        raise ValueError("no ads to make batches from")
    ragged = tf.RaggedTensor.from_row_splits(
        values=tf.constant(np.asarray(arrays.ids, dtype=np.int32)),
        row_splits=tf.constant(np.asarray(arrays.offsets, dtype=np.int64)),
    )
    lengths = tf.constant(arrays.lengths, dtype=tf.int64)

    def by_length(indices):
        return tf.gather(indices, tf.argsort(tf.gather(lengths, indices), stable=True))

    def to_batch(batch_indices):
        dense = tf.gather(ragged, batch_indices).to_tensor(default_value=PAD_ID)
        targets = dense[:, 1:]
        return dense[:, :-1], targets, tf.cast(tf.not_equal(targets, PAD_ID), tf.float32)

    if shuffle:
        chunk = batch_size * chunk_batches
        indices = (
            tf.data.Dataset.range(len(arrays))
            .shuffle(len(arrays), seed=seed, reshuffle_each_iteration=True)
            .batch(chunk)
            .map(by_length)
            .unbatch()
            .batch(batch_size)
            .shuffle(chunk_batches, seed=seed + 1, reshuffle_each_iteration=True)
        )
    else:
        order = np.argsort(arrays.lengths, kind="stable")
        indices = tf.data.Dataset.from_tensor_slices(order.astype(np.int64)).batch(batch_size)
    batches = -(-len(arrays) // batch_size)  # regrouping by length hides the count from tf.data
    indices = indices.apply(tf.data.experimental.assert_cardinality(batches))
    return indices.map(to_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
