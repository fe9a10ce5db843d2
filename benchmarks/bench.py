"""Benchmarks that print JSON. Every measured run is a fresh child process
(``python -m adgen_utils.apps.bench WORKLOAD ARGS``), so its wall time and peak RSS (the OS's
own ``ru_maxrss`` from ``wait4``) are its own; two ways of doing the same work alternate
in one run, and the report gives medians and ratios. ``bench_catalog`` runs the ``adgen generate``
command itself as the child, kills it and resumes it. The ``adgen bench`` command adds when,
where and by which command (:func:`adgen_utils.apps.results.with_provenance`); saved in
``results/``, the README's measured section is written from them (``adgen sync``).
``bench_compute`` and ``bench_category`` are the study's own measurements: quality against
training compute for every model family, and what the category prefix does on 40 categories."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from adgen_utils.corpus.data import FULL_CORPUS_ADS
from adgen_utils.hardware import cpu_computes_bf16
from adgen_utils.layout import (
    DATA_FOLDER,
    DATASET_FILE,
    HISTORY_FILE,
    MODELS_FOLDER,
    QUALITY_CURVE_FILE,
    TOKENS_FOLDER,
    model_dir,
)
from adgen_utils.logs import say
from adgen_utils.parameters import DEFAULT_PROFILE, catalog_default, default
from adgen_utils.series.estimates import FULL_CORPUS_DISTINCT_ADS

# ---------------------------------------------------------------------------------------
# Workloads (run inside the child process)


def _load_ads(source: str) -> dict:
    from adgen_utils.corpus.data import load_ads

    _, report = load_ads(source)
    return {"rows_read": report.rows_read, "rows_kept": report.rows_kept}


def _pandas_read_csv(source: str) -> dict:
    import pandas as pd

    from adgen_utils.corpus.data import corpus_files, resolve_source

    frames = [
        pd.read_csv(path, on_bad_lines="skip", encoding_errors="replace", dtype=str)
        for path, _ in corpus_files(resolve_source(source))
    ]
    rows = sum(len(f) for f in frames)
    return {"rows_read": rows, "rows_kept": rows}


def _prepare(source: str, folder: str, min_count: int, max_vocabulary: int | None) -> dict:
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


def _original_pipeline(folder: str, steps: int, batch_size: int = 4096) -> dict:
    """The original: one-hot windows built in Python per batch, LSTM(128), Dense softmax, Adam(0.01)."""
    import keras

    from adgen_utils.corpus.sequences import load_sequences, one_hot_batch, original_stream, original_windows

    vocabulary, splits = load_sequences(folder)
    size = len(vocabulary)
    inputs, targets = original_windows(original_stream(splits["train"]))
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
        x, y = one_hot_batch(inputs[part], targets[part], size)  # the original's Sequence.__getitem__
        model.train_on_batch(x, y)
        return len(y)

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


def _many_to_many(
    folder: str, model_input: str, loss: str, steps: int, batch_size: int = 64, sampled: int = 512, units: int = 128
) -> dict:
    """Ours: many-to-many batches with sparse targets; ``steps`` timed training steps."""
    import keras

    from adgen_utils.corpus.sequences import load_sequences
    from adgen_utils.lstm.model import LSTMConfig, build_model, many_to_many_dataset
    from adgen_utils.lstm.training import LanguageModelTrainer

    vocabulary, splits = load_sequences(folder)
    config = LSTMConfig(
        input=model_input,
        loss=loss,
        sampled=sampled,
        units=units,
        embedding_dim=units,
        batch_size=batch_size,
        mixed_precision=False,
    )
    keras.utils.set_random_seed(0)
    trainer = LanguageModelTrainer(build_model(config, len(vocabulary)), loss=loss, sampled=sampled)
    trainer.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    batches = iter(many_to_many_dataset(splits["train"], batch_size, shuffle=True).repeat())
    ids, targets, weights = next(batches)
    trainer.train_on_batch(ids, targets, weights)  # compile
    predictions = 0
    started = time.perf_counter()
    for _ in range(steps):
        ids, targets, weights = next(batches)
        trainer.train_on_batch(ids, targets, weights)
        predictions += int(weights.numpy().sum())
    seconds = time.perf_counter() - started
    return {
        "vocabulary_size": len(vocabulary),
        "predictions": predictions,
        "train_seconds": seconds,
        "predictions_per_second": predictions / seconds,
    }


def _train_epoch(folder: str, loss: str, batch_size: int = 64, sampled: int = 512) -> dict:
    """One full epoch of the Embedding LSTM over the prepared training split."""
    from adgen_utils.corpus.sequences import load_sequences
    from adgen_utils.lstm.model import LSTMConfig, evaluate_token_arrays
    from adgen_utils.lstm.training import train_language_model

    vocabulary, splits = load_sequences(folder)
    config = LSTMConfig(
        input="embedding", loss=loss, sampled=sampled, batch_size=batch_size, epochs=1, mixed_precision=False
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as model_dir:
        result = train_language_model(
            config, vocabulary, splits["train"], splits["validation"], model_dir, progress=False, log=lambda line: None
        )
        seconds = time.perf_counter() - started
        metrics = evaluate_token_arrays(result.model, splits["validation"])
    return {
        "epoch_seconds_with_validation": seconds,
        "train_predictions": splits["train"].predictions,
        "validation_cross_entropy": metrics["cross_entropy"],
        "validation_perplexity": metrics["perplexity"],
    }


def _embedded_ads(split: str, count: int) -> list[str]:
    """The first ``count`` ads of a split of the embedded corpus (the same ones in every child)."""
    from adgen_utils.corpus.data import load_ads

    ads, _ = load_ads("embedded", progress=False)
    return ads.loc[ads["split"] == split, "ad"].head(count).tolist()


def _causal_lm(model: str, folder: str):
    from adgen_utils.transformer.pretrained import load_causal_lm, resolve_model

    path = resolve_model(model, models_dir=folder, training_texts=_embedded_ads("train", 2000))
    return load_causal_lm(path, device="cpu")


def _finetune_steps(
    model: str,
    layout: str,
    steps: int,
    batch_size: int,
    block_size: int,
    method: str = "full",
    warmup_steps: int = 2,
    bf16: bool = False,
) -> dict:
    """Optimizer steps on the same ads laid out as packed blocks, or one ad per row padded to
    ``block_size`` ("padded") or to the longest ad of its batch ("padded_longest"), in float32 or
    (``bf16``) in bfloat16 autocast on the CPU, as the Trainer runs it. Counts trained (non-padding)
    tokens; the first ``warmup_steps`` are not timed."""
    import contextlib

    import torch

    from adgen_utils.transformer.finetune import lora_config, pack_blocks, padded_rows

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        net, tokenizer = _causal_lm(model, folder)
    if method == "lora":
        from peft import get_peft_model

        net = get_peft_model(net, lora_config(net))
    texts = _embedded_ads("train", (steps + warmup_steps) * batch_size * 8)
    rows = (
        pack_blocks(texts, tokenizer, block_size) if layout == "packed" else padded_rows(texts, tokenizer, block_size)
    )
    if len(rows) < (steps + warmup_steps) * batch_size:
        raise ValueError("not enough ads for the steps asked for")
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-5)
    net.train()
    tokens = 0
    for step in range(steps + warmup_steps):
        if step == warmup_steps:
            started = time.perf_counter()
        batch = slice(step * batch_size, (step + 1) * batch_size)
        mask = torch.from_numpy(rows.attention_mask[batch])
        width = int(mask.sum(1).max()) if layout == "padded_longest" else block_size
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            loss = net(
                input_ids=torch.from_numpy(rows.input_ids[batch, :width]),
                attention_mask=mask[:, :width],
                labels=torch.from_numpy(rows.labels[batch, :width]),
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
        "ads_truncated": rows.truncated,
        "final_loss": float(loss),
    }


def _generate(model: str, prompts: int, batch_size: int, max_new_tokens: int) -> dict:
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


def _build_run(run_dir: str, profile: str, corpus: str | None, sample_size: int | None) -> dict:
    """Notebooks 01 and 02 of ``profile`` (``corpus`` and ``sample_size``, when given, replace its
    data source and sample) into ``run_dir``: what the study benchmarks train on. Returns the split sizes."""
    from adgen_utils.series import stages
    from adgen_utils.series.profiles import profile_values

    values = profile_values(profile, "01_eda")
    values.update({k: v for k, v in {"data_source": corpus, "sample_size": sample_size}.items() if v is not None})
    stages.build_dataset("01_eda", values, run_dir, progress=False)
    stages.build_sequences("02_sequences", profile_values(profile, "02_sequences"), run_dir, progress=False)
    ads = pd.read_parquet(Path(run_dir) / DATA_FOLDER / DATASET_FILE, columns=["split", "category"])
    return {"splits": ads["split"].value_counts().to_dict(), "categories": int(ads["category"].nunique())}


def _compute_lstm(run_dir: str, profile: str, notebook: str, epochs: int) -> dict:
    """Notebook ``notebook`` (03 or 04) of ``profile``, on every training ad for ``epochs`` epochs
    without early stopping; its quality curve (a row per epoch)."""
    from adgen_utils.lstm import training
    from adgen_utils.series.profiles import profile_values

    values = {**profile_values(profile, notebook), "epochs": epochs, "patience": epochs, "max_train_ads": None}
    training.train_for_notebook(notebook, values, run_dir, progress=False)
    return {"curve": pd.read_csv(model_dir(run_dir, notebook) / QUALITY_CURVE_FILE).to_dict("records")}


def _compute_finetune(
    run_dir: str, profile: str, fraction: float, base_model: str | None = None, steps: int | None = None, **changes
) -> dict:
    """Notebook 06 of ``profile`` fine-tuned for ``fraction`` of its own optimizer steps (``max_steps``,
    or what its ``epochs`` over its training blocks come to), or for exactly ``steps``, with its
    learning-rate schedule over those steps; its quality curve (before training, after the last step)."""
    from adgen_utils.series.profiles import profile_values
    from adgen_utils.transformer import finetune

    values = {**profile_values(profile, "06_fine_tuning"), **changes}
    if base_model:
        values["base_model"] = base_model
    inputs = finetune.prepare_finetune(values, run_dir, log=lambda *_: None)
    if steps is None:
        total = values["max_steps"]
        if total <= 0:
            blocks = len(finetune.pack_blocks(inputs.train_texts, inputs.tokenizer, values["block_size"]))
            total = math.ceil(blocks * values["epochs"] / (values["batch_size"] * values["gradient_accumulation"]))
        steps = max(1, round(total * fraction))
    values.update(max_steps=steps, eval_steps=None)
    folder = Path(run_dir) / "bench" / f"finetuned_{steps}_{values['category_prefix']}"
    config = finetune.config_from_parameters(values)
    result = finetune.finetune(inputs.model_path, inputs.train_texts, inputs.validation_texts, config, folder, False)
    curve = pd.read_csv(folder / QUALITY_CURVE_FILE)
    return {"curve": curve.to_dict("records"), "folder": str(folder), "steps": result.summary["steps"]}


def _compute_few_shot(run_dir: str, model: str, shots: int, validation_ads: int | None, seed: int = 0) -> dict:
    """The footing of ``model`` with ``shots`` same-category training ads before each of the
    quality curves' validation ads: the line a model with no training budget draws."""
    from adgen_utils.corpus.data import load_dataset
    from adgen_utils.corpus.data import validation_ads as drawn
    from adgen_utils.models import load_ad_model
    from adgen_utils.study.evaluation import evaluate_ad_model

    train = load_dataset(Path(run_dir) / DATA_FOLDER, split="train")
    ads = drawn(run_dir, validation_ads)
    scored = load_ad_model(model, shots=shots, examples=train, seed=seed, models_dir=Path(run_dir) / MODELS_FOLDER)
    return evaluate_ad_model(scored, ads["ad"].tolist(), ads["category"].tolist())


def _category_finetune(
    run_dir: str, profile: str, steps: int, prefix: bool, products: int, base_model: str | None
) -> dict:
    """Notebook 06 fine-tuned ``steps`` steps with or without the category prefix, then scored on
    the quality curves' validation ads (with their categories when it reads them) and asked for one
    ad per product of ``products`` validation products (their category given when it reads one).
    Returns the footing, the products and their ads."""
    from adgen_utils.corpus.data import validation_ads as drawn
    from adgen_utils.models import DECODINGS, categories_for, load_ad_model
    from adgen_utils.parameters import DEFAULT_DECODING
    from adgen_utils.series.profiles import profile_values
    from adgen_utils.study.evaluation import evaluate_ad_model
    from adgen_utils.study.products import product_set

    trained = _compute_finetune(run_dir, profile, 1.0, base_model, steps=steps, category_prefix=prefix)
    model = load_ad_model(trained["folder"])
    values = profile_values(profile, "06_fine_tuning")
    scored = drawn(run_dir, values["validation_ads"])
    footing = evaluate_ad_model(model, scored["ad"].tolist(), scored["category"].tolist())
    chosen = product_set(drawn(run_dir, None), products, seed=0)
    decoding = DECODINGS[DEFAULT_DECODING]
    ads = model.generate(
        chosen["prompt"].tolist(), decoding, categories=categories_for(model, chosen["category"].tolist())
    )
    return {"footing": footing, "products": chosen.to_dict("records"), "ads": [str(a) for a in ads]}


def _prepare_tokens(run_dir: str, model: str, way: str, block_size: int) -> dict:
    """Notebook 06's training data from every training ad of ``run_dir``, as fine-tuning reads it
    (the saved dataset, then its training texts): tokenized in memory and packed (``way``
    "in_memory", :func:`adgen_utils.transformer.finetune.pack_blocks`) or streamed a chunk at a time
    into a token file on disk ("token_file", what fine-tuning does)."""
    from transformers import AutoTokenizer

    from adgen_utils.corpus.data import load_dataset
    from adgen_utils.transformer import finetune, pretrained, stream

    texts = load_dataset(Path(run_dir) / DATA_FOLDER, split="train")["ad"].tolist()
    folder = pretrained.resolve_model(model, Path(run_dir) / MODELS_FOLDER, training_texts=texts)
    tokenizer = pretrained.prepare_tokenizer(AutoTokenizer.from_pretrained(folder))
    started = time.perf_counter()
    if way == "in_memory":
        tokens = finetune.pack_blocks(texts, tokenizer, block_size).tokens
    else:
        folder = Path(run_dir) / TOKENS_FOLDER
        tokens = stream.prepare_token_file(stream.in_chunks(texts), tokenizer, folder, {"ads": len(texts)})["tokens"]
        shutil.rmtree(folder)
    return {"ads": len(texts), "tokens": tokens, "prepare_seconds": round(time.perf_counter() - started, 2)}


WORKLOADS = {
    f.__name__.lstrip("_"): f
    for f in (
        _load_ads,
        _pandas_read_csv,
        _prepare,
        _original_pipeline,
        _many_to_many,
        _train_epoch,
        _finetune_steps,
        _generate,
        _build_run,
        _compute_lstm,
        _compute_finetune,
        _compute_few_shot,
        _category_finetune,
        _prepare_tokens,
    )
}


def _child_main() -> None:
    result = WORKLOADS[sys.argv[1]](**json.loads(sys.argv[2]))
    print(json.dumps(result))


# ---------------------------------------------------------------------------------------
# Measuring (in the parent)


def _run_child(arguments: list[str], kill_after: float | None = None) -> dict:
    """Run ``python ARGUMENTS`` as a child process and wait for it, or SIGKILL it once it has run
    ``kill_after`` seconds. Returns its ``exit_code`` (-9 when killed), ``stdout``, ``stderr``, wall
    ``seconds`` and ``peak_rss_mib`` (its own ``ru_maxrss`` from ``wait4``, not all children's)."""
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, *arguments], stdout=stdout, stderr=stderr)
        while True:
            pid, status, usage = os.wait4(child.pid, 0 if kill_after is None else os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started >= kill_after:
                child.send_signal(signal.SIGKILL)
                kill_after = None  # now wait for it to die
            else:
                time.sleep(0.05)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        return {
            "exit_code": child.returncode,
            "stdout": stdout.read(),
            "stderr": stderr.read(),
            "seconds": seconds,
            "peak_rss_mib": usage.ru_maxrss / 1024,
        }


def _measure(workload: str, **arguments) -> dict:
    """Run one workload in a child Python; return its result plus wall ``seconds`` and ``peak_rss_mib``."""
    child = _run_child(["-m", "adgen_utils.apps.bench", workload, json.dumps(arguments)])
    if child["exit_code"] != 0:
        raise RuntimeError(f"benchmark workload {workload} failed:\n{child['stderr'][-3000:]}")
    result = json.loads(child["stdout"].strip().splitlines()[-1])
    return {**result, "seconds": child["seconds"], "peak_rss_mib": child["peak_rss_mib"]}


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator to 3 significant digits (a fixed number of decimals would turn 0.04 into 0.0)."""
    return float(f"{numerator / denominator:.3g}")


def _summary(measured: list[dict], rate_key: str | None = None) -> dict:
    out = {
        "median_seconds": round(statistics.median(m["seconds"] for m in measured), 2),
        "seconds": [round(m["seconds"], 2) for m in measured],
        "peak_rss_mib": round(max(m["peak_rss_mib"] for m in measured), 1),
    }
    if rate_key:  # 4 significant digits: ratios of small rates (0.8 ads/s) must not come from rounded values
        out[f"median_{rate_key}"] = float(f"{statistics.median(m[rate_key] for m in measured):.4g}")
        out[rate_key] = [float(f"{m[rate_key]:.4g}") for m in measured]
    keep = {k: v for k, v in measured[0].items() if k not in ("seconds", "peak_rss_mib", rate_key)}
    return {**out, **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in keep.items()}}


def bench_data(source: str, repeats: int = 3) -> dict:
    """Time and peak RSS of ``load_ads`` against plain ``pandas.read_csv`` of the same files."""
    runs = {"adgen_load_ads": [], "pandas_read_csv": []}
    for _ in range(repeats):
        runs["adgen_load_ads"].append(_measure("load_ads", source=source))
        runs["pandas_read_csv"].append(_measure("pandas_read_csv", source=source))
    out = {"source": source, "repeats": repeats, **{name: _summary(m) for name, m in runs.items()}}
    out["time_ratio_adgen_over_pandas"] = _ratio(
        out["adgen_load_ads"]["median_seconds"], out["pandas_read_csv"]["median_seconds"]
    )
    return out


def bench_lstm(
    corpus: str | None = None,
    repeats: int = 2,
    original_steps: int = 3,
    steps: int = 60,
    full_epoch: bool = False,
    ads_source: str = "embedded",
    log=say,
) -> dict:
    """(a) The original one-hot window pipeline against ours on the same ads (``ads_source``),
    same vocabulary (every training word) and LSTM(128), alternating; (b) with ``corpus``, a
    scale run of ours: preparation, training speed with both losses, projected epoch time."""
    out: dict = {"repeats": repeats}
    with tempfile.TemporaryDirectory() as work:
        small = Path(work, "ads")
        log(f"(a) preparing {ads_source} with every training word in the vocabulary")
        out["a_prepare"] = _summary(
            [_measure("prepare", source=ads_source, folder=str(small), min_count=1, max_vocabulary=None)]
        )
        ours = {"folder": str(small), "steps": steps}
        ways = {
            "original_one_hot_windows": ("original_pipeline", {"folder": str(small), "steps": original_steps}),
            "ours_lstm_one_hot_input": ("many_to_many", {**ours, "model_input": "one_hot", "loss": "full"}),
            "ours_embedding_lstm": ("many_to_many", {**ours, "model_input": "embedding", "loss": "full"}),
            "ours_embedding_lstm_sampled_softmax": (
                "many_to_many",
                {**ours, "model_input": "embedding", "loss": "sampled"},
            ),
        }
        runs = {name: [] for name in ways}
        for repeat in range(repeats):
            for name, (workload, arguments) in ways.items():
                log(f"(a) run {repeat + 1}/{repeats}: {name}")
                runs[name].append(_measure(workload, **arguments))
        a = {name: _summary(m, "predictions_per_second") for name, m in runs.items()}
        base = a["original_one_hot_windows"]
        for name in list(ways)[1:]:
            a[name]["speedup_over_original"] = _ratio(
                a[name]["median_predictions_per_second"], base["median_predictions_per_second"]
            )
            a[name]["peak_rss_over_original"] = _ratio(a[name]["peak_rss_mib"], base["peak_rss_mib"])
        out["a_original_vs_ours"] = a

        if corpus:
            large = Path(work, "corpus")
            log(f"(b) preparing {corpus}")
            prepared = _measure("prepare", source=corpus, folder=str(large), min_count=2, max_vocabulary=None)
            b = {"corpus": corpus, "prepare": _summary([prepared])}
            scale = FULL_CORPUS_ADS / max(prepared["rows_read"], 1)
            for loss in ("full", "sampled"):
                log(f"(b) training speed, {loss} softmax")
                speed = _measure(
                    "many_to_many",
                    folder=str(large),
                    model_input="embedding",
                    loss=loss,
                    steps=steps if loss == "sampled" else max(steps // 6, 5),
                )
                per_second = speed["predictions_per_second"]
                b[f"train_{loss}_softmax"] = {
                    "predictions_per_second": round(per_second, 1),
                    "peak_rss_mib": round(speed["peak_rss_mib"], 1),
                    "epoch_hours_this_corpus": round(prepared["train_predictions"] / per_second / 3600, 2),
                    "projected_epoch_hours_full_corpus": round(
                        prepared["train_predictions"] * scale / per_second / 3600, 2
                    ),
                }
            b["full_corpus_scale_factor"] = round(scale, 2)
            if full_epoch:
                log("(b) one whole epoch, sampled softmax")
                b["one_epoch_sampled_softmax"] = _summary([_measure("train_epoch", folder=str(large), loss="sampled")])
            out["b_scale"] = b
    return out


def bench_finetune(
    model: str = default("06_fine_tuning", "base_model"),
    repeats: int = 2,
    steps: int = 3,
    batch_size: int = 4,
    block_size: int = 128,
    lora: bool = True,
    log=say,
) -> dict:
    """Training tokens per second with packed blocks against one ad per padded row (same model,
    same ads, same rows per step), alternating in one run; plus peak RSS of each way, of LoRA and,
    on a CPU with bfloat16 instructions, of packed blocks in bf16 autocast (what
    :func:`adgen_utils.hardware.training_precision` picks there)."""
    ways = {
        "packed": {"layout": "packed"},
        "padded_to_block": {"layout": "padded"},
        "padded_to_longest_in_batch": {"layout": "padded_longest"},
    }
    if lora:
        ways["packed_lora"] = {"layout": "packed", "method": "lora"}
    if cpu_computes_bf16():
        ways["packed_bf16"] = {"layout": "packed", "bf16": True}
    runs = {name: [] for name in ways}
    for repeat in range(repeats):
        for name, arguments in ways.items():
            log(f"run {repeat + 1}/{repeats}: {name}")
            runs[name].append(
                _measure(
                    "finetune_steps",
                    model=model,
                    steps=steps,
                    batch_size=batch_size,
                    block_size=block_size,
                    **{"method": "full", **arguments},
                )
            )
    out = {
        "model": model,
        "repeats": repeats,
        "timed_steps": steps,
        "batch_size": batch_size,
        "block_size": block_size,
        **{name: _summary(m, "tokens_per_second") for name, m in runs.items()},
    }
    packed = out["packed"]["median_tokens_per_second"]
    for name in ("padded_to_block", "padded_to_longest_in_batch"):
        out[f"packed_over_{name}"] = _ratio(packed, out[name]["median_tokens_per_second"])
    if "packed_bf16" in out:
        out["bf16_over_fp32"] = _ratio(out["packed_bf16"]["median_tokens_per_second"], packed)
    return out


def bench_generate(
    model: str = default("05_zero_few_shot", "models")[0],
    repeats: int = 2,
    prompts: int = 64,
    batch_size: int = 64,
    max_new_tokens: int = 24,
    log=say,
) -> dict:
    """Ads per second generating the same prompts batched against one prompt at a time, alternating."""
    ways = {"one_at_a_time": 1, "batched": batch_size}
    runs = {name: [] for name in ways}
    for repeat in range(repeats):
        for name, size in ways.items():
            log(f"run {repeat + 1}/{repeats}: {name}")
            runs[name].append(
                _measure("generate", model=model, prompts=prompts, batch_size=size, max_new_tokens=max_new_tokens)
            )
    out = {
        "model": model,
        "repeats": repeats,
        "prompts": prompts,
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
        **{name: _summary(m, "ads_per_second") for name, m in runs.items()},
    }
    out["batched_over_one_at_a_time"] = _ratio(
        out["batched"]["median_ads_per_second"], out["one_at_a_time"]["median_ads_per_second"]
    )
    return out


def _catalog_products(path: Path, count: int, seed: int) -> int:
    """Write a products CSV (brand, product, category) of up to ``count`` products from the embedded
    corpus's test split: the brand and product words of its ads, one per distinct product
    (:func:`adgen_utils.study.products.product_set`). Returns how many it wrote."""
    from adgen_utils.corpus.data import load_ads
    from adgen_utils.study.products import product_set

    ads, _ = load_ads("embedded", progress=False)
    chosen = product_set(ads[ads["split"] == "test"], count, seed=seed)
    chosen[["brand", "product", "category"]].to_csv(path, index=False)
    return len(chosen)


def _ads_file(path: Path) -> dict:
    """Rows of an ``adgen generate`` output (its complete lines), their distinct (row, ad_number)
    pairs, and whether the file ends on a complete line."""
    data = path.read_bytes() if path.is_file() else b""
    complete = data[: data.rfind(b"\n") + 1].decode("utf-8")
    pairs = [(record["row"], record["ad_number"]) for record in csv.DictReader(io.StringIO(complete, newline=""))]
    return {"rows": len(pairs), "distinct_pairs": len(set(pairs)), "ends_on_complete_line": data[-1:] in (b"", b"\n")}


def bench_catalog(
    model: str = default("05_zero_few_shot", "models")[0],
    products: int = 200,
    kill_after: float = 30.0,
    batch_size: int = catalog_default("batch_size"),
    max_new_tokens: int = catalog_default("max_new_tokens"),
    candidates: int = catalog_default("candidates"),
    log=say,
) -> dict:
    """``adgen generate`` on ``products`` products of the test split, one ad each chosen from
    ``candidates`` by the seller's rules, with its default decoding (``batch_size``,
    ``max_new_tokens`` and ``candidates`` default to the command's own too): the
    command is killed with SIGKILL ``kill_after`` seconds after it starts (model loading included),
    then run again to resume. Reports what the killed run left on disk, the resumed run's ads per
    second (its own count over its own generating time, model loading excluded) and peak RSS, and
    whether the final file holds every product once (none lost, none repeated). ``model`` is a model
    folder, ``"smollm2-135m"`` or a Hub id, as ``adgen generate --model`` takes it."""
    with tempfile.TemporaryDirectory() as work:
        inputs, output = Path(work, "products.csv"), Path(work, "ads.csv")
        count = _catalog_products(inputs, products, seed=0)
        settings = ["--per-product", "1", "--candidates", str(candidates), "--max-new-tokens", str(max_new_tokens)]
        settings += ["--batch-size", str(batch_size)]
        command = ["generate", "--model", model, "--input", str(inputs), "--output", str(output), *settings]
        command += ["--no-progress"]
        log(f"adgen generate on {count} products, killed after {kill_after:g} s")
        killed = _run_child(["-m", "adgen_utils.apps.cli", *command], kill_after=kill_after)
        on_disk = _ads_file(output)
        log(f"{on_disk['rows']} ads on disk; resuming")
        resumed = _run_child(["-m", "adgen_utils.apps.cli", *command])
        if resumed["exit_code"] != 0:
            raise RuntimeError(f"the resumed adgen generate failed:\n{resumed['stderr'][-3000:]}")
        summary = json.loads(resumed["stdout"][resumed["stdout"].index("{") :])
        final = _ads_file(output)
    return {
        "model": model,
        "generate_command": " ".join(
            ["adgen generate --model", model, "--input products.csv --output ads.csv", *settings]
        ),
        "decoding": catalog_default("decoding"),
        "products": count,
        "kill_after_seconds": kill_after,
        "killed_run": {
            "killed": killed["exit_code"] == -signal.SIGKILL,
            "seconds": round(killed["seconds"], 2),
            "ads_on_disk": on_disk["rows"],
            "ends_on_complete_line": on_disk["ends_on_complete_line"],
        },
        "candidates": candidates,
        "resumed_run": {
            "seconds": round(resumed["seconds"], 2),
            "peak_rss_mib": round(resumed["peak_rss_mib"], 1),
            "resumed_from": summary["resumed_from"],
            "products_done": summary["products_done"],
            "generating_seconds": summary["seconds"],
            "products_per_second": round(summary["products_done"] / summary["seconds"], 3),
        },
        "passing_share": summary["passing_share"],
        "rejected_candidates": summary["rejected_candidates"],
        "rows": final["rows"],
        "distinct_pairs": final["distinct_pairs"],
        "lost": count - final["distinct_pairs"],
        "repeated": final["rows"] - final["distinct_pairs"],
    }


def bench_compute(
    profile: str = DEFAULT_PROFILE,
    corpus: str | None = None,
    epochs_scale: float = 2.0,
    fractions: tuple = (0.125, 0.25, 0.5, 1.0, 2.0),
    shots: int = default("07_evaluation", "shots"),
    figure: str | None = "figures/bench_compute.png",
    log=say,
) -> dict:
    """Quality against training compute, each model family of the series on the same training ads
    (``profile``'s notebooks 01-02; ``corpus`` replaces its data source) and scored on the same
    validation ads with notebook 07's footing: the one-hot and the Embedding LSTM for
    ``epochs_scale`` times their profile's epochs on every training ad, one checkpoint per epoch (a
    constant learning rate, so a checkpoint is what a run of that length gives); the fine-tuned
    transformer for ``fractions`` of notebook 06's optimizer steps (its ``max_steps``, or its epochs
    over its training blocks), each a run of its own with its schedule over its own steps; notebook 07's pretrained model with ``shots`` examples as a flat line.
    Each in its own process. Reports the curves (bits per character, per-word perplexity, top-5
    against training seconds on this machine and training FLOPs), the flat line, when the fine-tuned
    model overtakes the best LSTM (:func:`adgen_utils.study.compute.overtaking`), and writes the
    figure to ``figure`` (None: none)."""
    from adgen_utils.series.profiles import profile_values
    from adgen_utils.study.compute import CHALLENGER, CONTENDERS, overtaking, plot_quality_vs_compute

    tuned_values = profile_values(profile, "06_fine_tuning")
    with tempfile.TemporaryDirectory() as run_dir:
        log(f"preparing the {profile} profile's data")
        sizes = _measure("build_run", run_dir=run_dir, profile=profile, corpus=corpus, sample_size=None)
        rows = []
        for notebook, label in CONTENDERS.items():
            epochs = max(1, round(profile_values(profile, notebook)["epochs"] * epochs_scale))
            log(f"{label}: {epochs} epochs")
            measured = _measure("compute_lstm", run_dir=run_dir, profile=profile, notebook=notebook, epochs=epochs)
            rows += [{**row, "model": label} for row in measured["curve"]]
        label, budgets = next(iter(CHALLENGER.values())), []
        for fraction in sorted(fractions):
            log(f"{label}: {fraction:g} of notebook 06's steps")
            measured = _measure("compute_finetune", run_dir=run_dir, profile=profile, fraction=fraction)
            if measured["steps"] in budgets:
                continue  # a fraction that rounds to the same steps as the one before
            budgets.append(measured["steps"])
            if not any(row["model"] == label for row in rows):
                rows.append({**measured["curve"][0], "model": label})  # before training, once
            rows.append({**measured["curve"][-1], "model": label})
        pretrained = profile_values(profile, "07_evaluation")["pretrained_model"]
        log(f"{pretrained}, {shots}-shot")
        few = _measure(
            "compute_few_shot",
            run_dir=run_dir,
            model=pretrained,
            shots=shots,
            validation_ads=tuned_values["validation_ads"],
        )
    curves = pd.DataFrame(rows)
    flat = {f"{pretrained} {shots}-shot": few["bits_per_char"]}
    if figure:
        plot_quality_vs_compute(curves, flat, Path(figure).parent, Path(figure).stem)
    return {
        "profile": profile,
        "corpus": corpus or profile_values(profile, "01_eda")["data_source"],
        "splits": sizes["splits"],
        "validation_ads": int(curves["validation_ads"].iloc[0]),
        "base_model": tuned_values["base_model"],
        "finetune_steps": budgets,
        "curves": curves.to_dict("records"),
        "flat": flat,
        "overtaking": overtaking(curves),
        "figure": figure,
    }


def bench_category(
    corpus: str = "../shared/data/amazon_ads_sample10",
    sample_size: int = 30_000,
    steps: int = default("06_fine_tuning", "max_steps"),
    products: int = 80,
    base_model: str | None = None,
    log=say,
) -> dict:
    """Whether the category prefix helps, on a corpus of many categories: notebook 06 (quick
    profile, ``base_model`` replacing its base) fine-tuned for ``steps`` steps on the same training
    ads of ``sample_size`` ads drawn from ``corpus``, once without and once with ``"<category> | "``
    before every ad. Reports each one's footing on the same validation ads (the prefixed model reads
    their categories), and for ``products`` validation products the share of ads a word-frequency
    classifier fitted on the training ads (:class:`adgen_utils.study.products.CategoryClassifier`)
    puts in the product's category, beside its accuracy on the products' real ads."""
    from adgen_utils.corpus.data import load_dataset
    from adgen_utils.study.products import CategoryClassifier

    with tempfile.TemporaryDirectory() as run_dir:
        log(f"preparing {sample_size:,} ads of {corpus}")
        sizes = _measure("build_run", run_dir=run_dir, profile="quick", corpus=corpus, sample_size=sample_size)
        runs = {}
        for prefix in (False, True):
            log(f"fine-tuning {'with' if prefix else 'without'} the category prefix: {steps} steps")
            runs[prefix] = _measure(
                "category_finetune",
                run_dir=run_dir,
                profile="quick",
                steps=steps,
                prefix=prefix,
                products=products,
                base_model=base_model,
            )
        classifier = CategoryClassifier(load_dataset(Path(run_dir) / DATA_FOLDER, split="train"))
    chosen = pd.DataFrame(runs[False]["products"])
    wanted = chosen["category"].tolist()

    def in_category(ads: list[str]) -> float:
        return float(sum(c == w for c, w in zip(classifier.predict(ads), wanted)) / len(wanted))

    ways = {"without": runs[False], "with": runs[True]}
    return {
        "corpus": corpus,
        "sample_size": sample_size,
        "splits": sizes["splits"],
        "categories": sizes["categories"],
        "base_model": base_model or default("06_fine_tuning", "base_model"),
        "steps": steps,
        "validation_ads": runs[False]["footing"]["ads"],
        "products": len(chosen),
        **{
            f"{name}_prefix": {
                **{k: run["footing"][k] for k in ("bits_per_char", "per_word_perplexity", "top5_accuracy")},
                "in_category": in_category(run["ads"]),
                "seconds": round(run["seconds"], 1),
            }
            for name, run in ways.items()
        },
        "real_ads_in_category": in_category(chosen["ad"].tolist()),
        "examples": [
            {"category": w, "prompt": p, "without": a, "with": b}
            for w, p, a, b in zip(wanted, chosen["prompt"], runs[False]["ads"], runs[True]["ads"])
        ][:6],
    }


def bench_distributed(
    model: str = default("06_fine_tuning", "base_model"),
    processes: tuple = (1, 2),
    steps: int = 6,
    batch_size: int = default("06_fine_tuning", "batch_size"),
    block_size: int = default("06_fine_tuning", "block_size"),
    log=say,
) -> dict:
    """``adgen finetune`` (quick profile, ``model``, ``steps`` steps of ``batch_size`` blocks of
    ``block_size`` tokens) under ``torchrun --nproc_per_node N`` for each N of ``processes``, on the
    same embedded training ads and the same global batch: trained tokens per second (the Trainer's
    own training time; model loading and evaluations excluded), each process's peak RSS (its own
    ``ru_maxrss``, gathered by the command) and the final validation loss, which should not depend
    on N. On a CPU the processes share its cores (torchrun gives each one thread): the speed is not
    the point there, the memory per process and the same result are."""
    torchrun = Path(sys.executable).with_name("torchrun")
    with tempfile.TemporaryDirectory() as work:
        _measure("build_run", run_dir=str(Path(work, "data-run")), profile="quick", corpus=None, sample_size=None)
        runs = {}
        for count in processes:
            run_dir = Path(work, f"run-{count}")
            shutil.copytree(Path(work, "data-run", DATA_FOLDER), run_dir / DATA_FOLDER)
            log(f"adgen finetune on {count} process(es): {steps} steps")
            settings = [f"base_model={json.dumps(model)}", f"max_steps={steps}", "eval_steps=null"]
            settings += [f"batch_size={batch_size}", f"block_size={block_size}", "validation_ads=20"]
            command = [str(torchrun), "--nproc_per_node", str(count), "--standalone", "-m", "adgen_utils.apps.cli"]
            command += ["finetune", "--profile", "quick", "--run-dir", str(run_dir), "--no-progress"]
            command += [part for setting in settings for part in ("-p", setting)]
            child = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            if child.returncode != 0:
                raise RuntimeError(f"adgen finetune on {count} processes failed:\n{child.stderr[-3000:]}")
            summary = json.loads(child.stdout[child.stdout.index("{") :])
            history = pd.read_csv(model_dir(run_dir, "06_fine_tuning") / HISTORY_FILE)
            trained = summary["steps"] * batch_size * block_size
            runs[str(count)] = {
                "processes": summary["processes"],
                "train_seconds": summary["train_seconds"],
                "tokens_per_second": round(trained / summary["train_seconds"], 1),
                "peak_rss_mib_per_process": summary["peak_rss_mib_per_process"],
                "final_validation_loss": float(history["eval_loss"].dropna().iloc[-1]),
            }
    losses = [r["final_validation_loss"] for r in runs.values()]
    return {
        "model": model,
        "steps": steps,
        "global_batch_blocks": batch_size,
        "block_size": block_size,
        "cpu_cores": os.cpu_count(),
        "runs": runs,
        "validation_loss_spread": max(losses) - min(losses),
    }


def bench_tokens(
    corpus: str = "../shared/data/amazon_ads_sample10",
    model: str = default("06_fine_tuning", "base_model"),
    block_size: int = default("06_fine_tuning", "block_size"),
    full_corpus_ads: int = FULL_CORPUS_DISTINCT_ADS,
    log=say,
) -> dict:
    """Peak RSS of preparing notebook 06's training data from ``corpus``, in memory (every ad
    tokenized into Python lists, then packed) against streamed into a token file (what fine-tuning
    does), each in its own process, for a split of half the corpus's ads and of all of them (the
    dataset, read first, grows with it too). Each way's RSS is fitted as a line in the number of
    cleaned ads and projected to ``full_corpus_ads`` (the whole corpus's distinct ads)."""
    with tempfile.TemporaryDirectory() as work:
        log(f"preparing {corpus}")
        whole = _measure("build_run", run_dir=str(Path(work, "all")), profile="quick", corpus=corpus, sample_size=None)
        kept = sum(whole["splits"].values())
        _measure("build_run", run_dir=str(Path(work, "half")), profile="quick", corpus=corpus, sample_size=kept // 2)
        ways = {}
        for way in ("in_memory", "token_file"):
            points = []
            for size in ("half", "all"):
                log(f"{way}: {size} of the ads")
                run_dir = str(Path(work, size))
                measured = _measure("prepare_tokens", run_dir=run_dir, model=model, way=way, block_size=block_size)
                ads = kept // 2 if size == "half" else kept
                points.append({**measured, "corpus_ads": ads})
            first, last = points
            per_ad = (last["peak_rss_mib"] - first["peak_rss_mib"]) / (last["corpus_ads"] - first["corpus_ads"])
            ways[way] = {
                "runs": [
                    {k: m[k] for k in ("corpus_ads", "ads", "tokens", "prepare_seconds", "peak_rss_mib")}
                    for m in points
                ],
                "rss_mib_per_1000_ads": round(per_ad * 1000, 2),
                "projected_full_corpus_peak_rss_gib": round(
                    (last["peak_rss_mib"] + per_ad * (full_corpus_ads - last["corpus_ads"])) / 1024, 2
                ),
            }
    return {
        "corpus": corpus,
        "model": model,
        "block_size": block_size,
        "corpus_ads": kept,
        "full_corpus_ads": full_corpus_ads,
        **ways,
    }


def print_json(result: dict) -> None:
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    _child_main()
