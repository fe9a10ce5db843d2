"""The benchmarks' workloads, each run in a child process of its own by :func:`benchmarks.measure.measure`:
``python -m benchmarks.workloads NAME JSON_ARGUMENTS`` (from the repository root) prints the
workload's result as one JSON line.

Where a benchmark compares ways of computing (the original's one-hot windows against many-to-many
batches; packed against padded rows; float32 against bfloat16), the way is written out here in
Keras or torch. The lessons' own training is not: the benchmarks that need a lesson's model run the
lesson (:mod:`benchmarks.bench`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from adgen_utils.layout import DATA_FOLDER, MODELS_FOLDER, TOKENS_FOLDER

# ---------------------------------------------------------------------------------------
# The data layer


def load_ads(source: str) -> dict:
    from adgen_utils.corpus.data import load_ads

    _, report = load_ads(source)
    return {"rows_read": report.rows_read, "rows_kept": report.rows_kept}


def pandas_read_csv(source: str) -> dict:
    import pandas as pd

    from adgen_utils.corpus.data import corpus_files, resolve_source

    frames = [
        pd.read_csv(path, on_bad_lines="skip", encoding_errors="replace", dtype=str)
        for path, _ in corpus_files(resolve_source(source))
    ]
    rows = sum(len(f) for f in frames)
    return {"rows_read": rows, "rows_kept": rows}


def prepare(source: str, folder: str, min_count: int, max_vocabulary: int | None) -> dict:
    from adgen_utils.corpus.data import load_ads
    from adgen_utils.corpus.sequences import prepare_sequences

    started = time.perf_counter()
    ads, report = load_ads(source)
    info = prepare_sequences(ads, folder, min_count=min_count, max_vocabulary=max_vocabulary)
    return {
        "seconds": time.perf_counter() - started,
        "rows_read": report.rows_read,
        "ads": len(ads),
        "vocabulary_size": info["vocabulary_size"],
        "train_predictions": info["splits"]["train"]["predictions"],
        "train_ads": info["splits"]["train"]["ads"],
    }


# ---------------------------------------------------------------------------------------
# LSTM training: the original's pipeline, and many-to-many batches with a full or sampled softmax


def _original_windows(arrays) -> tuple[np.ndarray, np.ndarray]:
    """The original's training examples: every ad's words in one stream (no <bos>/<eos>), cut into
    windows of 4 ids, each followed by the id to predict, every 3 ids. Inputs (n, 4), targets (n,)."""
    from adgen_utils.corpus.sequences import ORIGINAL_STEP, ORIGINAL_WINDOW, window_count
    from adgen_utils.corpus.text import BOS_ID, EOS_ID

    ids = np.asarray(arrays.ids)
    stream = ids[(ids != BOS_ID) & (ids != EOS_ID)].astype(np.int32)
    starts = np.arange(int(window_count(len(stream)))) * ORIGINAL_STEP
    return stream[starts[:, None] + np.arange(ORIGINAL_WINDOW)], stream[starts + ORIGINAL_WINDOW]


def _one_hot(ids: np.ndarray, size: int) -> np.ndarray:
    """float32 one-hot vectors of ``size`` for ``ids`` of any shape: shape (*ids.shape, size)."""
    vectors = np.zeros((*ids.shape, size), dtype=np.float32)
    np.put_along_axis(vectors, ids[..., None], 1.0, axis=-1)
    return vectors


def original_pipeline(folder: str, steps: int, batch_size: int = 4096) -> dict:
    """The original: one-hot windows built in Python per batch, LSTM(128), Dense softmax, Adam(0.01)."""
    import keras

    from adgen_utils.corpus.sequences import load_sequences

    vocabulary, splits = load_sequences(folder)
    size = len(vocabulary)
    inputs, targets = _original_windows(splits["train"])
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4, size)),
            keras.layers.LSTM(128),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(size, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss="categorical_crossentropy",
        metrics=["categorical_accuracy", "top_k_categorical_accuracy"],
    )
    batches = (len(targets) + batch_size - 1) // batch_size

    def step(i):
        part = slice((i % batches) * batch_size, (i % batches + 1) * batch_size)
        # The original's Sequence.__getitem__: the batch's one-hot arrays, built anew every time.
        model.train_on_batch(_one_hot(inputs[part], size), _one_hot(targets[part], size))
        return len(inputs[part])

    step(0)  # compile
    started = time.perf_counter()
    predictions = sum(step(i) for i in range(1, steps + 1))
    seconds = time.perf_counter() - started
    return {
        "vocabulary_size": size,
        "predictions": predictions,
        "train_seconds": seconds,
        "predictions_per_second": predictions / seconds,
        "windows_per_epoch": int(len(targets)),
    }


def _language_model(vocabulary_size: int, model_input: str, units: int):
    """A many-to-many LSTM language model as lessons 03 (``model_input`` "one_hot") and 04
    ("embedding", word vectors of ``units``) build it: the encoder, ids (batch, time) -> hidden states
    (batch, time, units), and the Dense layer that maps hidden states to next-word logits (V)."""
    import keras

    from adgen_utils.lstm.model import OneHot

    ids = keras.Input((None,), dtype="int32")
    if model_input == "one_hot":
        words = OneHot(vocabulary_size)(ids)
    else:
        words = keras.layers.Embedding(vocabulary_size, units)(ids)
    hidden = keras.layers.Dropout(0.3)(keras.layers.LSTM(units, return_sequences=True)(words))
    next_word = keras.layers.Dense(vocabulary_size)
    next_word.build((None, units))
    return keras.Model(ids, hidden), next_word


def _training_step(encoder, next_word, optimizer, loss: str, sampled: int):
    """One optimizer step on a batch ``(ids, targets, weights)``, returning the mean cross-entropy per
    real target (nats). ``loss`` "full": the softmax over the whole vocabulary; "sampled": over
    ``sampled`` words drawn at random and the target (``tf.nn.sampled_softmax_loss``), which skips
    most of the output layer's work on a large vocabulary."""
    import tensorflow as tf

    variables = encoder.trainable_variables + next_word.trainable_variables
    optimizer.build(variables)  # its slots exist before the step is traced

    @tf.function
    def step(ids, targets, weights):
        with tf.GradientTape() as tape:
            hidden = encoder(ids, training=True)
            if loss == "sampled":
                per_token = tf.nn.sampled_softmax_loss(
                    weights=tf.transpose(next_word.kernel),
                    biases=next_word.bias,
                    labels=tf.reshape(tf.cast(targets, tf.int64), [-1, 1]),
                    inputs=tf.reshape(hidden, [-1, hidden.shape[-1]]),
                    num_sampled=min(sampled, next_word.units - 1),
                    num_classes=next_word.units,
                )
                per_token = tf.reshape(per_token, tf.shape(targets))
            else:
                per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, next_word(hidden))
            mean = tf.reduce_sum(per_token * weights) / tf.reduce_sum(weights)
        optimizer.apply(tape.gradient(mean, variables), variables)
        return mean

    return step


def _lstm_trainer(folder: str, model_input: str, loss: str, sampled: int, units: int):
    """The prepared run's vocabulary and splits, the model's two parts and its training step (Adam as
    lessons 03 and 04 set it), seeded."""
    import keras

    from adgen_utils.corpus.sequences import load_sequences
    from adgen_utils.settings import OneHotLSTM

    vocabulary, splits = load_sequences(folder)
    keras.utils.set_random_seed(0)
    encoder, next_word = _language_model(len(vocabulary), model_input, units)
    optimizer = keras.optimizers.Adam(OneHotLSTM().learning_rate, clipnorm=1.0)
    return vocabulary, splits, encoder, next_word, _training_step(encoder, next_word, optimizer, loss, sampled)


def many_to_many(
    folder: str, model_input: str, loss: str, steps: int, batch_size: int = 64, sampled: int = 512, units: int = 128
) -> dict:
    """Ours: ``steps`` timed training steps of many-to-many batches (every next word of ``batch_size``
    ads at once, sparse targets), after one untimed step that compiles."""
    from adgen_utils.lstm.model import many_to_many_dataset

    vocabulary, splits, _, _, step = _lstm_trainer(folder, model_input, loss, sampled, units)
    batches = iter(many_to_many_dataset(splits["train"], batch_size, shuffle=True).repeat())
    step(*next(batches))
    predictions = 0
    started = time.perf_counter()
    for _ in range(steps):
        ids, targets, weights = next(batches)
        step(ids, targets, weights)
        predictions += int(weights.numpy().sum())
    seconds = time.perf_counter() - started
    return {
        "vocabulary_size": len(vocabulary),
        "predictions": predictions,
        "train_seconds": seconds,
        "predictions_per_second": predictions / seconds,
    }


def train_epoch(folder: str, loss: str, batch_size: int = 64, sampled: int = 512, units: int = 128) -> dict:
    """One whole epoch of the Embedding LSTM over the prepared training split, then its cross-entropy
    on the validation split with the full softmax (nats per token)."""
    import tensorflow as tf

    from adgen_utils.lstm.model import many_to_many_dataset

    _, splits, encoder, next_word, step = _lstm_trainer(folder, "embedding", loss, sampled, units)
    started = time.perf_counter()
    for ids, targets, weights in many_to_many_dataset(splits["train"], batch_size, shuffle=True):
        step(ids, targets, weights)
    total = predictions = 0.0
    for ids, targets, weights in many_to_many_dataset(splits["validation"], 128):
        logits = next_word(encoder(ids, training=False))
        total += float(tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits) * weights))
        predictions += float(tf.reduce_sum(weights))
    return {
        "epoch_seconds_with_validation": time.perf_counter() - started,
        "train_predictions": splits["train"].predictions,
        "validation_cross_entropy": total / predictions,
        "validation_perplexity": float(np.exp(total / predictions)),
    }


# ---------------------------------------------------------------------------------------
# Transformers: training rows, fine-tuning steps, generation


def _embedded_ads(split: str, count: int) -> list[str]:
    """The first ``count`` ads of a split of the embedded corpus (the same ones in every child)."""
    from adgen_utils.corpus.data import load_ads

    ads, _ = load_ads("embedded", progress=False)
    return ads.loc[ads["split"] == split, "ad"].head(count).tolist()


def _causal_lm(model: str, folder: str):
    from adgen_utils.transformer.pretrained import load_causal_lm, resolve_model

    path = resolve_model(model, models_dir=folder, training_texts=_embedded_ads("train", 2000))
    return load_causal_lm(path, device="cpu")


def _packed_rows(texts: list[str], tokenizer, block_size: int) -> dict:
    """Every ad's tokens and an end-of-text, one after another, cut into full rows of ``block_size``
    (the partial last row left out): no padding at all. int64 arrays (rows, block_size)."""
    from adgen_utils.transformer.stream import end_of_text_stream, token_ids

    stream = end_of_text_stream(token_ids(texts, tokenizer), tokenizer.eos_token_id).astype(np.int64)
    ids = stream[: len(stream) // block_size * block_size].reshape(-1, block_size)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": ids, "tokens": len(stream), "cut": 0}


def _padded_rows(texts: list[str], tokenizer, block_size: int) -> dict:
    """One ad and its end-of-text per row, cut at ``block_size`` tokens, padding after it masked and
    left out of the loss (label -100); ``cut`` counts the ads that did not fit."""
    from adgen_utils.transformer.stream import IGNORE, token_ids

    ids = np.full((len(texts), block_size), tokenizer.pad_token_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    cut = 0
    for row, tokens in enumerate(token_ids(texts, tokenizer)):
        tokens = [*tokens, tokenizer.eos_token_id]
        cut += len(tokens) > block_size
        tokens = tokens[:block_size]
        ids[row, : len(tokens)], mask[row, : len(tokens)] = tokens, 1
    return {"input_ids": ids, "attention_mask": mask, "labels": np.where(mask == 1, ids, IGNORE), "cut": cut}


def finetune_steps(
    model: str,
    layout: str,
    steps: int,
    batch_size: int,
    block_size: int,
    method: str = "full",
    warmup_steps: int = 2,
    bf16: bool = False,
) -> dict:
    """Optimizer steps on the same ads laid out as packed rows, or one ad per row padded to
    ``block_size`` ("padded") or to the longest ad of its batch ("padded_longest"), in float32 or
    (``bf16``) in bfloat16 autocast on the CPU, as the Trainer runs it. Counts trained (non-padding)
    tokens; the first ``warmup_steps`` are not timed."""
    import torch

    from adgen_utils.transformer.finetune import lora_config

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        net, tokenizer = _causal_lm(model, folder)
    if method == "lora":
        from peft import get_peft_model

        net = get_peft_model(net, lora_config(net))
    texts = _embedded_ads("train", (steps + warmup_steps) * batch_size * 8)
    lay_out = _packed_rows if layout == "packed" else _padded_rows
    rows = lay_out(texts, tokenizer, block_size)
    if len(rows["input_ids"]) < (steps + warmup_steps) * batch_size:
        raise ValueError("not enough ads for the steps asked for")
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-5)
    net.train()
    tokens = 0
    for step in range(steps + warmup_steps):
        if step == warmup_steps:
            started = time.perf_counter()
        batch = slice(step * batch_size, (step + 1) * batch_size)
        mask = torch.from_numpy(rows["attention_mask"][batch])
        width = int(mask.sum(1).max()) if layout == "padded_longest" else block_size
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            loss = net(
                input_ids=torch.from_numpy(rows["input_ids"][batch, :width]),
                attention_mask=mask[:, :width],
                labels=torch.from_numpy(rows["labels"][batch, :width]),
            ).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step >= warmup_steps:
            tokens += int(mask.sum())
    seconds = time.perf_counter() - started
    return {
        "trained_tokens": tokens,
        "timed_steps": steps,
        "tokens_per_second": tokens / seconds,
        "ads_truncated": rows["cut"],
        "final_loss": float(loss),
    }


def generate(model: str, prompts: int, batch_size: int, max_new_tokens: int) -> dict:
    """Greedy ads for the same prompts (the first three words of validation ads), ``batch_size``
    prompts per ``generate`` call. A first batch warms up untimed."""
    from adgen_utils.models import Decoding
    from adgen_utils.transformer.pretrained import generate_ads

    with tempfile.TemporaryDirectory() as folder:
        net, tokenizer = _causal_lm(model, folder)
    texts = [" ".join(ad.split()[:3]) for ad in _embedded_ads("validation", prompts)]
    decoding = Decoding(max_new_tokens=max_new_tokens)
    generate_ads(net, tokenizer, texts[:batch_size], decoding, batch_size=batch_size)
    started = time.perf_counter()
    ads = generate_ads(net, tokenizer, texts, decoding, batch_size=batch_size)
    seconds = time.perf_counter() - started
    return {
        "ads": len(ads),
        "ads_per_second": len(ads) / seconds,
        "mean_ad_words": sum(len(a.split()) for a in ads) / len(ads),
        "ads_sha256": hashlib.sha256("\n".join(ads).encode()).hexdigest(),  # the same ads either way?
    }


def prepare_tokens(run_dir: str, model: str, way: str, block_size: int) -> dict:
    """The fine-tuning data from every training ad of ``run_dir``: tokenized in memory and packed
    (``way`` "in_memory") or streamed a chunk at a time into a token file on disk ("token_file",
    what fine-tuning does)."""
    from transformers import AutoTokenizer

    from adgen_utils.corpus.data import load_dataset
    from adgen_utils.transformer import pretrained, stream

    texts = load_dataset(Path(run_dir) / DATA_FOLDER, split="train")["ad"].tolist()
    folder = pretrained.resolve_model(model, Path(run_dir) / MODELS_FOLDER, training_texts=texts)
    tokenizer = pretrained.prepare_tokenizer(AutoTokenizer.from_pretrained(folder))
    started = time.perf_counter()
    if way == "in_memory":
        tokens = _packed_rows(texts, tokenizer, block_size)["tokens"]
    else:
        folder = Path(run_dir) / TOKENS_FOLDER
        tokens = stream.prepare_token_file(stream.in_chunks(texts), tokenizer, folder, {"ads": len(texts)})["tokens"]
        shutil.rmtree(folder)
    return {"ads": len(texts), "tokens": tokens, "prepare_seconds": round(time.perf_counter() - started, 2)}


# ---------------------------------------------------------------------------------------
# The footing, for the models the benchmarks compare


def few_shot_footing(run_dir: str, model: str, shots: int, validation_ads: int | None, seed: int = 0) -> dict:
    """The footing of ``model`` with ``shots`` same-category training ads before each of the quality
    curves' validation ads: the line a model with no training budget draws."""
    from adgen_utils.corpus.data import load_dataset
    from adgen_utils.corpus.data import validation_ads as drawn
    from adgen_utils.study.footing import evaluate_ad_model, load_ad_model

    train = load_dataset(Path(run_dir) / DATA_FOLDER, split="train")
    scored = load_ad_model(model, shots=shots, examples=train, seed=seed, models_dir=Path(run_dir) / MODELS_FOLDER)
    return evaluate_ad_model(scored, drawn(run_dir, validation_ads))


def footing_and_ads(run_dir: str, model: str, validation_ads: int | None, products: int) -> dict:
    """A fine-tuned ``model`` folder scored on the quality curves' validation ads (with their
    categories when it reads them), and one ad (the default decoding) for each of ``products``
    validation products (their category given when it reads one). Returns the footing, the
    products and their ads."""
    from adgen_utils.corpus.data import validation_ads as drawn
    from adgen_utils.models import DECODINGS, categories_for
    from adgen_utils.settings import DEFAULT_DECODING
    from adgen_utils.study.footing import evaluate_ad_model, load_ad_model
    from adgen_utils.study.products import product_set

    tuned = load_ad_model(model)
    footing = evaluate_ad_model(tuned, drawn(run_dir, validation_ads))
    chosen = product_set(drawn(run_dir, None), products, seed=0)
    categories = categories_for(tuned, chosen["category"].tolist())
    ads = tuned.generate(chosen["prompt"].tolist(), DECODINGS[DEFAULT_DECODING], categories=categories)
    return {"footing": footing, "products": chosen.to_dict("records"), "ads": [str(a) for a in ads]}


WORKLOADS = {
    f.__name__: f
    for f in (
        load_ads,
        pandas_read_csv,
        prepare,
        original_pipeline,
        many_to_many,
        train_epoch,
        finetune_steps,
        generate,
        prepare_tokens,
        few_shot_footing,
        footing_and_ads,
    )
}

if __name__ == "__main__":
    print(json.dumps(WORKLOADS[sys.argv[1]](**json.loads(sys.argv[2])), default=str))
