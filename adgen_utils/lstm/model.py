"""The plumbing under the word-level LSTMs (Keras 3 on TensorFlow): batches, the one-hot layer,
loading, held-out measures. TensorFlow grows its GPU memory on demand here, so torch fits beside it."""

from __future__ import annotations

import math
import warnings
import weakref
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from adgen_utils.corpus.sequences import TokenArrays
from adgen_utils.corpus.text import BOS_ID, PAD_ID, UNK_ID, Vocabulary
from adgen_utils.layout import LSTM_MODEL_FILE, VOCABULARY_FILE


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


def many_to_many_dataset(
    arrays: TokenArrays, batch_size: int, shuffle: bool = False, seed: int = 0, chunk_batches: int = 32
):
    """A ``tf.data.Dataset`` of ``(inputs, targets, weights)`` batches of ads of similar length:
    (B, L-1) int32 tokens 0..L-2 and 1..L-1, and float32 weights (1 where a target is real)."""
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
    # tf.data's autotuner off: with it, fit stalled ~10 s at the start of about half of the epochs on
    # a 2-core CPU (03: 10 s epochs). Off, no stall in 4 runs of 3 epochs, and epochs as fast.
    options = tf.data.Options()
    options.autotune.enabled = False
    return indices.map(to_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE).with_options(options)


def mean_batch_length(arrays: TokenArrays, batch_size: int, seed: int = 0, chunk_batches: int = 32) -> float:
    """The mean input length of :func:`many_to_many_dataset`'s shuffled batches: each is padded to its
    longest ad, so this is what a step costs on average, not the mean ad's length. Drawn in numpy the
    way the dataset groups ads (sorted by length within shuffled chunks of ``chunk_batches`` batches)."""
    lengths = np.random.default_rng(seed).permutation(arrays.lengths)
    chunk = batch_size * chunk_batches  # a whole number of batches: no batch spans two chunks
    chunks = [np.sort(lengths[start : start + chunk]) for start in range(0, len(lengths), chunk)]
    longest = [c[min(end, len(c)) - 1] for c in chunks for end in range(batch_size, len(c) + batch_size, batch_size)]
    return float(np.mean(longest)) - 1  # inputs drop the last token


@keras.saving.register_keras_serializable(package="adgen")
class OneHot(keras.layers.Layer):
    """Ids (batch, time) int -> one-hot vectors (batch, time, depth): the original's input, made inside the
    model one batch at a time. Registered, so a saved ``model.keras`` that holds it loads again."""

    def __init__(self, depth: int, **kwargs):
        super().__init__(**kwargs)
        self.depth = depth

    def call(self, ids):
        return keras.ops.one_hot(ids, self.depth, dtype=self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "depth": self.depth}


def rows_per_chunk(vocabulary_size: int, time_steps: int, budget_gib: float = 1.0, tensors: int = 3) -> int:
    """How many ads (at least 1) to score at once so that ``tensors`` float32 tensors of shape (ads,
    time_steps, vocabulary_size) fit in ``budget_gib`` GiB: e.g. 14 ads of 63 steps for a 100k vocabulary."""
    per_row = tensors * max(time_steps, 1) * vocabulary_size * 4
    return max(1, int(budget_gib * 2**30 // per_row))


def load_trained(folder: str | Path) -> tuple[keras.Model, Vocabulary]:
    """The model (``model.keras``) and vocabulary saved in a trained model folder."""
    path = Path(folder) / LSTM_MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"No trained model at {path}; train it first (the LSTM lessons, 03 and 04).")
    return keras.saving.load_model(path, compile=False), Vocabulary.load(Path(folder) / VOCABULARY_FILE)


# ---------------------------------------------------------------------------------------
# Held-out measures


def evaluate_token_arrays(
    model: keras.Model, arrays: TokenArrays, batch_size: int = 128, logits_budget_gib: float = 1.0
) -> dict:
    """Next-token metrics over every real target: ``cross_entropy`` (nats/token), ``perplexity``,
    ``accuracy``, ``top5_accuracy``, ``predictions``, ``unknown_targets``. Batching never changes a metric."""
    longest = int(arrays.lengths.max()) - 1
    rows = min(batch_size, rows_per_chunk(model.output_shape[-1], longest, logits_budget_gib))
    totals = np.zeros(4)  # cross-entropy sum, top-1 hits, top-5 hits, predictions
    batch_sums = _compiled(model, _batch_sums)
    for ids, targets, weights in many_to_many_dataset(arrays, rows):
        totals += batch_sums(ids, targets, weights).numpy()
    return _metrics(*totals, unknown=_unknown_share(arrays))


def target_scores(model: keras.Model, ids: np.ndarray, targets: np.ndarray):
    """Each target's log probability (B, T) float32 and whether it is the first / among the five first
    choices (B, T) bool; <pad>, <unk> and <bos> are never a choice. Only (B, T) results leave the device."""
    log_probs, top1, top5 = _compiled(model, _target_scores)(ids, targets)
    return log_probs.numpy(), top1.numpy(), top5.numpy()


def unigram_baseline(vocabulary: Vocabulary, arrays: TokenArrays) -> dict:
    """The metrics of :func:`evaluate_token_arrays` for a model that always predicts training-set
    token frequencies (what a model must beat to have learned more than word counts)."""
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
        flat_logits = tf.reshape(logits, [-1, tf.shape(logits)[-1]])
        flat_targets, flat_weights = tf.reshape(targets, [-1]), tf.reshape(weights, [-1])
        best = tf.cast(tf.equal(tf.argmax(flat_logits, -1, output_type=tf.int32), flat_targets), tf.float32)
        top5 = tf.cast(tf.math.in_top_k(flat_targets, flat_logits, 5), tf.float32)
        sums = [per_token * weights, best * flat_weights, top5 * flat_weights, weights]
        return tf.stack([tf.reduce_sum(x) for x in sums])

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
