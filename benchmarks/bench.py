"""Benchmarks that print JSON: ``python -m benchmarks.bench NAME [options]`` from the repository root
(``--help`` lists them). Two ways of doing the same work alternate in one run, each run a fresh
child process (:mod:`benchmarks.measure`, :mod:`benchmarks.workloads`), and the report gives medians
and ratios, under a ``measured`` block that says when, where and by which command
(:func:`benchmarks.results.with_provenance`). Saved as ``results/bench_NAME.json``, they are rendered
into docs/ by ``benchmarks/render_results.py``.

``compute`` and ``category`` are the study's own measurements: quality against training compute for
every model family, and what the category prefix does on 40 categories. They train the lessons'
models by running the lessons themselves (the notebooks, with papermill) and ``adgen finetune``,
never a copy of their code.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from adgen_utils.corpus.data import FULL_CORPUS_ADS
from adgen_utils.hardware import cpu_computes_bf16
from adgen_utils.layout import (
    DATA_FOLDER,
    DATASET_FILE,
    EMBEDDING_LSTM,
    FIGURES_FOLDER,
    FINETUNED,
    HISTORY_FILE,
    NOTEBOOKS_FOLDER,
    ONE_HOT_LSTM,
    QUALITY_CURVE_FILE,
    model_dir,
)
from adgen_utils.logs import say
from adgen_utils.settings import (
    PROFILES,
    Catalog,
    Corpus,
    EmbeddingLSTM,
    Evaluation,
    Finetune,
    OneHotLSTM,
    Prompting,
    Sequences,
    profile_values,
)
from benchmarks.category_classifier import CategoryClassifier
from benchmarks.measure import measure, printed_json, ratio, run_child, summary
from benchmarks.results import with_provenance

FULL_CORPUS_DISTINCT_ADS = 2_500_000  # the Kaggle corpus's ads after cleaning and removing duplicates
LESSONS = {  # the lessons the benchmarks run, and whose settings each takes
    "01_eda": Corpus,
    "02_sequences": Sequences,
    "03_lstm": OneHotLSTM,
    "04_embedding_lstm": EmbeddingLSTM,
}
LSTM_LESSONS = {ONE_HOT_LSTM: "03_lstm", EMBEDDING_LSTM: "04_embedding_lstm"}  # model folder -> its lesson
ADGEN = ["-m", "adgen_utils.apps.cli"]  # the adgen command, run by this Python

# ---------------------------------------------------------------------------------------
# Running the lessons and adgen finetune


def run_lesson(notebook: str, run_dir: Path, profile: str, **changes) -> None:
    """Execute ``notebooks/NOTEBOOK.ipynb`` into ``run_dir`` with ``profile``'s values and ``changes``.

    Every parameter is written out under the quick profile: a lesson keeps each value that differs
    from quick's and takes quick's for the others, so it runs with exactly these values. Figures go
    to ``run_dir/figures``, the executed copy to ``run_dir/notebooks``."""
    from adgen_utils.lessons import execute, notebooks_folder

    values = {**profile_values(profile, LESSONS[notebook]), **changes, "profile": "quick"}
    values.update(run_dir=str(run_dir), figures_dir=str(run_dir / FIGURES_FOLDER))
    source = notebooks_folder() / f"{notebook}.ipynb"
    execute(source, run_dir / NOTEBOOKS_FOLDER / source.name, values, progress=False)


def prepare_run(run_dir: Path, profile: str, sequences: bool = True, **corpus) -> dict:
    """Lesson 01 of ``profile`` (``corpus`` changes its settings, e.g. ``data_source``), then 02 with
    ``sequences``, into ``run_dir``: what the benchmarks train on. Returns the split sizes and the
    number of categories."""
    run_lesson("01_eda", run_dir, profile, **corpus)
    if sequences:
        run_lesson("02_sequences", run_dir, profile)
    ads = pd.read_parquet(run_dir / DATA_FOLDER / DATASET_FILE, columns=["split", "category"])
    return {"splits": ads["split"].value_counts().to_dict(), "categories": int(ads["category"].nunique())}


def lstm_curve(run_dir: Path, profile: str, model: str, epochs: int) -> list[dict]:
    """The lesson that trains ``model`` (ONE_HOT_LSTM or EMBEDDING_LSTM) run on every training ad
    for ``epochs`` epochs; its quality curve, a row per epoch."""
    run_lesson(LSTM_LESSONS[model], run_dir, profile, epochs=epochs, max_train_ads=None)
    return pd.read_csv(model_dir(run_dir, model) / QUALITY_CURVE_FILE).to_dict("records")


def finetune(run_dir: Path, profile: str, **settings) -> dict:
    """``adgen finetune --profile PROFILE`` with ``settings`` (``-p NAME=VALUE``) in ``run_dir``, as a
    child process. Returns the command's summary, its ``quality_curve`` (before training, then each
    evaluation) and wall ``seconds``; the model folder is left for the caller, who removes it with
    :func:`remove_finetuned` before the next run (or that run would resume it)."""
    command = [*ADGEN, "finetune", "--profile", profile, "--run-dir", str(run_dir), "--no-progress"]
    command += [part for name, value in settings.items() for part in ("-p", f"{name}={json.dumps(value)}")]
    child = run_child(command)
    result = printed_json(child, "adgen finetune")
    curve = pd.read_csv(model_dir(run_dir, FINETUNED) / QUALITY_CURVE_FILE).to_dict("records")
    return {**result, "quality_curve": curve, "seconds": child["seconds"]}


def remove_finetuned(run_dir: Path) -> None:
    shutil.rmtree(model_dir(run_dir, FINETUNED))


# ---------------------------------------------------------------------------------------
# The benchmarks


def bench_data(source: str, repeats: int = 3, log=say) -> dict:
    """Time and peak RSS of ``load_ads`` against plain ``pandas.read_csv`` of the same files."""
    runs = {"adgen_load_ads": [], "pandas_read_csv": []}
    for repeat in range(repeats):
        log(f"run {repeat + 1}/{repeats}")
        runs["adgen_load_ads"].append(measure("load_ads", source=source))
        runs["pandas_read_csv"].append(measure("pandas_read_csv", source=source))
    out = {"source": source, "repeats": repeats, **{name: summary(m) for name, m in runs.items()}}
    out["time_ratio_adgen_over_pandas"] = ratio(
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
        small = str(Path(work, "ads"))
        log(f"(a) preparing {ads_source} with every training word in the vocabulary")
        out["a_prepare"] = summary(
            [measure("prepare", source=ads_source, folder=small, min_count=1, max_vocabulary=None)]
        )
        ours = {"folder": small, "steps": steps}
        ways = {
            "original_one_hot_windows": ("original_pipeline", {"folder": small, "steps": original_steps}),
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
                runs[name].append(measure(workload, **arguments))
        a = {name: summary(m, "predictions_per_second") for name, m in runs.items()}
        base = a["original_one_hot_windows"]
        for name in list(ways)[1:]:
            a[name]["speedup_over_original"] = ratio(
                a[name]["median_predictions_per_second"], base["median_predictions_per_second"]
            )
            a[name]["peak_rss_over_original"] = ratio(a[name]["peak_rss_mib"], base["peak_rss_mib"])
        out["a_original_vs_ours"] = a
        if corpus:
            out["b_scale"] = _lstm_scale(corpus, str(Path(work, "corpus")), steps, full_epoch, log)
    return out


def _lstm_scale(corpus: str, folder: str, steps: int, full_epoch: bool, log) -> dict:
    """bench_lstm's (b): ``corpus`` prepared, then ours' training speed with the full and the sampled
    softmax, and the epoch time that gives on this corpus and projected to the full corpus."""
    log(f"(b) preparing {corpus}")
    prepared = measure("prepare", source=corpus, folder=folder, min_count=2, max_vocabulary=None)
    b = {"corpus": corpus, "prepare": summary([prepared])}
    scale = FULL_CORPUS_ADS / max(prepared["rows_read"], 1)
    for loss in ("full", "sampled"):
        log(f"(b) training speed, {loss} softmax")
        timed = steps if loss == "sampled" else max(steps // 6, 5)
        speed = measure("many_to_many", folder=folder, model_input="embedding", loss=loss, steps=timed)
        per_second = speed["predictions_per_second"]
        b[f"train_{loss}_softmax"] = {
            "predictions_per_second": round(per_second, 1),
            "peak_rss_mib": round(speed["peak_rss_mib"], 1),
            "epoch_hours_this_corpus": round(prepared["train_predictions"] / per_second / 3600, 2),
            "projected_epoch_hours_full_corpus": round(prepared["train_predictions"] * scale / per_second / 3600, 2),
        }
    b["full_corpus_scale_factor"] = round(scale, 2)
    if full_epoch:
        log("(b) one whole epoch, sampled softmax")
        b["one_epoch_sampled_softmax"] = summary([measure("train_epoch", folder=folder, loss="sampled")])
    return b


def bench_finetune(
    model: str = Finetune.base_model,
    repeats: int = 2,
    steps: int = 3,
    batch_size: int = 4,
    block_size: int = 128,
    lora: bool = True,
    log=say,
) -> dict:
    """Training tokens per second with packed rows against one ad per padded row (same model,
    same ads, same rows per step), alternating in one run; plus peak RSS of each way, of LoRA and,
    on a CPU with bfloat16 instructions, of packed rows in bf16 autocast (what
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
        for name, way in ways.items():
            log(f"run {repeat + 1}/{repeats}: {name}")
            sizes = {"steps": steps, "batch_size": batch_size, "block_size": block_size}
            runs[name].append(measure("finetune_steps", model=model, **sizes, **way))
    out = {
        "model": model,
        "repeats": repeats,
        "timed_steps": steps,
        "batch_size": batch_size,
        "block_size": block_size,
        **{name: summary(m, "tokens_per_second") for name, m in runs.items()},
    }
    packed = out["packed"]["median_tokens_per_second"]
    for name in ("padded_to_block", "padded_to_longest_in_batch"):
        out[f"packed_over_{name}"] = ratio(packed, out[name]["median_tokens_per_second"])
    if "packed_bf16" in out:
        out["bf16_over_fp32"] = ratio(out["packed_bf16"]["median_tokens_per_second"], packed)
    return out


def bench_generate(
    model: str = Prompting().models[0],
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
                measure("generate", model=model, prompts=prompts, batch_size=size, max_new_tokens=max_new_tokens)
            )
    out = {
        "model": model,
        "repeats": repeats,
        "prompts": prompts,
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
        **{name: summary(m, "ads_per_second") for name, m in runs.items()},
    }
    out["batched_over_one_at_a_time"] = ratio(
        out["batched"]["median_ads_per_second"], out["one_at_a_time"]["median_ads_per_second"]
    )
    return out


def _catalog_products(path: Path, count: int, seed: int, keywords: bool = False) -> int:
    """Write a products CSV (brand, product, category; with ``keywords``, up to 3 facts of the real ad
    too) of up to ``count`` products from the embedded corpus's test split: the brand and product
    words of its ads, one per distinct product (:func:`adgen_utils.study.references.held_out_products`).
    Returns how many it wrote."""
    from adgen_utils.corpus.data import load_ads
    from adgen_utils.corpus.facts import keywords_text
    from adgen_utils.study.references import held_out_products

    ads, _ = load_ads("embedded", progress=False)
    chosen = held_out_products(ads[ads["split"] == "test"], count, seed=seed)
    columns = ["brand", "product", "category", *(["keywords"] if keywords else [])]
    chosen.assign(keywords=chosen["keywords"].map(keywords_text))[columns].to_csv(path, index=False)
    return len(chosen)


def _ads_file(path: Path) -> dict:
    """Rows of an ``adgen generate`` output (its complete lines), their distinct (row, ad_number)
    pairs, and whether the file ends on a complete line."""
    data = path.read_bytes() if path.is_file() else b""
    complete = data[: data.rfind(b"\n") + 1].decode("utf-8")
    pairs = [(record["row"], record["ad_number"]) for record in csv.DictReader(io.StringIO(complete, newline=""))]
    return {"rows": len(pairs), "distinct_pairs": len(set(pairs)), "ends_on_complete_line": data[-1:] in (b"", b"\n")}


def bench_catalog(
    model: str = Prompting().models[0],
    products: int = 200,
    kill_after: float = 30.0,
    batch_size: int = Catalog.batch_size,
    max_new_tokens: int = Catalog.max_new_tokens,
    candidates: int = Catalog.candidates,
    log=say,
) -> dict:
    """``adgen generate`` on ``products`` products of the test split, one ad each chosen from
    ``candidates`` by the seller's rules, with its default decoding (``batch_size``,
    ``max_new_tokens`` and ``candidates`` default to the command's own too): the
    command is killed with SIGKILL ``kill_after`` seconds after it starts (model loading included),
    then run again to resume. Reports what the killed run left on disk, the resumed run's ads per
    second (its own count over its own generating time, model loading excluded) and peak RSS, and
    whether the final file holds every product once (none lost, none repeated). Then the same products
    with keywords, written whole: seconds per candidate with and without them (the resumed run's).
    ``model`` is a model folder, ``"smollm2-135m"`` or a Hub id, as ``adgen generate --model`` takes it."""
    with tempfile.TemporaryDirectory() as work:
        inputs, output = Path(work, "products.csv"), Path(work, "ads.csv")
        count = _catalog_products(inputs, products, seed=0)
        settings = ["--per-product", "1", "--candidates", str(candidates), "--max-new-tokens", str(max_new_tokens)]
        settings += ["--batch-size", str(batch_size)]
        command = [*ADGEN, "generate", "--model", model, "--input", str(inputs), "--output", str(output), *settings]
        command += ["--no-progress"]
        log(f"adgen generate on {count} products, killed after {kill_after:g} s")
        killed = run_child(command, kill_after=kill_after)
        on_disk = _ads_file(output)
        log(f"{on_disk['rows']} ads on disk; resuming")
        resumed = run_child(command)
        done = printed_json(resumed, "the resumed adgen generate")
        final = _ads_file(output)
        # The same products with keywords, batched the same way: the prompts grow by a keyword line.
        with_keywords = Path(work, "products_keywords.csv")
        _catalog_products(with_keywords, products, seed=0, keywords=True)
        keyworded = [
            *command[: command.index("--input") + 1],
            str(with_keywords),
            "--output",
            str(Path(work, "kw.csv")),
        ]
        keyworded += command[command.index("--output") + 2 :]
        log("the same products with keywords")
        keyword_run = printed_json(run_child(keyworded), "adgen generate with keywords")
    per_candidate = {
        name: run["seconds"] / (run["products_done"] * candidates)
        for name, run in (("without_keywords", done), ("with_keywords", keyword_run))
        if run["products_done"]
    }
    return {
        "model": model,
        "generate_command": " ".join(
            ["adgen generate --model", model, "--input products.csv --output ads.csv", *settings]
        ),
        "decoding": Catalog.decoding,
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
            "resumed_from": done["resumed_from"],
            "products_done": done["products_done"],
            "generating_seconds": done["seconds"],
            "products_per_second": round(done["products_done"] / done["seconds"], 3),
        },
        "passing_share": done["passing_share"],
        "rejected_candidates": done["rejected_candidates"],
        "keywords": {
            "seconds_per_candidate": {name: round(value, 4) for name, value in per_candidate.items()},
            "with_over_without": ratio(per_candidate["with_keywords"], per_candidate["without_keywords"])
            if len(per_candidate) == 2
            else None,  # None: the killed run had written every product
            "passing_share_with_keywords": keyword_run["passing_share"],
            "rejected_candidates_with_keywords": keyword_run["rejected_candidates"],
        },
        "rows": final["rows"],
        "distinct_pairs": final["distinct_pairs"],
        "lost": count - final["distinct_pairs"],
        "repeated": final["rows"] - final["distinct_pairs"],
    }


def bench_spark(
    model: str = Prompting().models[0],
    products: int = 60,
    chunk_products: int = 10,
    executors: tuple = (1, 10, 50, 100),
    log=say,
) -> dict:
    """The same ``products`` (test split, one ad each, the command's own candidates, batch and
    decoding) written three ways, each a fresh ``adgen generate`` child: in one process, and with
    ``--engine spark`` on ``local[1]`` and ``local[2]`` (one Python worker per core, each with its
    own model and one thread). Reports products per second (end to end and the job alone), the
    driver's and each worker's peak RSS, Spark's start-up, each worker's model load, the rules sent
    and the model folder read, whether the three CSV outputs are the same bytes, and what the best
    rate here predicts for 1M products on ``executors`` machines like this one."""
    with tempfile.TemporaryDirectory() as work:
        inputs = Path(work, "products.csv")
        count = _catalog_products(inputs, products, seed=0)
        common = ["--model", model, "--input", str(inputs), "--per-product", "1", "--no-progress"]
        common += ["--chunk-products", str(chunk_products)]
        ways = {
            "one_process": ["--output", str(Path(work, "one_process", "ads.csv"))],
            "local1": ["--engine", "spark", "--master", "local[1]", "--csv", "--output", str(Path(work, "local1"))],
            "local2": ["--engine", "spark", "--master", "local[2]", "--csv", "--output", str(Path(work, "local2"))],
        }
        Path(work, "one_process").mkdir()
        runs = {}
        for way, arguments in ways.items():
            log(f"adgen generate on {count} products: {way}")
            child = run_child([*ADGEN, "generate", *common, *arguments])
            runs[way] = {**printed_json(child, f"adgen generate ({way})"), "wall": child, "rss": child["peak_rss_mib"]}
        outputs = {way: Path(work, way) for way in ways}
        same = {
            name: len({(folder / name).read_bytes() for folder in outputs.values()}) == 1
            for name in ("ads.csv", "ads.csv.candidates.csv")
        }
    out = {"model": model, "products": count, "chunk_products": chunk_products, "same_bytes": same}
    for way, run in runs.items():
        seconds = run["wall"]["seconds"]
        entry = {
            "seconds": round(seconds, 2),
            "products_per_second": round(count / seconds, 3),
            "job_seconds": run["seconds"],
            "job_products_per_second": round(count / run["seconds"], 3),
            "driver_peak_rss_mib": round(run["rss"], 1),
            "passing_share": run["passing_share"],
        }
        if way != "one_process":
            entry |= {
                "spark_start_seconds": run["spark_start_seconds"],
                "workers": run["workers"],
                "rules_broadcast_mib": run["rules_broadcast_mib"],
                "model_folder_mib": run["model_folder_mib"],
            }
        out[way] = entry
    out["local2_over_one_process"] = ratio(
        out["local2"]["products_per_second"], out["one_process"]["products_per_second"]
    )
    out["local2_over_local1"] = ratio(out["local2"]["products_per_second"], out["local1"]["products_per_second"])
    for way in ("local1", "local2"):  # the workers write side by side: the slowest one sets the pace
        slowest = max(w["writing_seconds"] for w in out[way]["workers"])
        out[way]["writing_products_per_second"] = round(count / slowest, 3)
    steady = {
        "one_process": out["one_process"]["job_products_per_second"],
        "local2": out["local2"]["writing_products_per_second"],
    }
    best = max(steady.values())
    start_up = out["local2"]["spark_start_seconds"] + max(w["model_load_seconds"] for w in out["local2"]["workers"])
    out["one_million_products"] = {
        "assumes": "each executor is this machine and writes at the best steady rate measured here "
        "(model loaded, Spark started); start-up paid once",
        "steady_products_per_second": steady,
        "rate_per_executor": best,
        "hours": {n: round((1e6 / (best * n) + start_up) / 3600, 1) for n in executors},
    }
    return out


def bench_compute(
    profile: str = "quick",
    corpus: str | None = None,
    epochs_scale: float = 2.0,
    fractions: tuple = (0.125, 0.25, 0.5, 1.0, 2.0),
    shots: int = Evaluation.shots,
    figure: str | None = "figures/bench_compute.png",
    sample_size: int | None = None,
    finetune_ads: int | None = None,
    log=say,
) -> dict:
    """Quality against training compute, each model family of the series on the same training ads
    (``profile``'s lessons 01-02; ``corpus`` replaces its data source) and scored on the same
    validation ads with the footing: lessons 03 and 04 run for ``epochs_scale`` times their
    profile's epochs on every training ad, one checkpoint per epoch (a constant learning rate, so a
    checkpoint is what a run of that length gives); ``adgen finetune`` for ``fractions`` of the
    profile's optimizer steps (its ``max_steps``, or what its epochs come to), each a run of its own
    with its schedule over its own steps; the profile's pretrained model with ``shots`` examples as
    a flat line. Reports the curves (bits per character, per-word perplexity, top-5 against
    training seconds on this machine and training FLOPs), the flat line, when the fine-tuned model
    overtakes the best LSTM (:func:`adgen_utils.study.compute.overtaking`), and writes the figure
    to ``figure`` (None: none). ``sample_size`` (ads drawn by lesson 01) and ``finetune_ads`` (training
    ads of each fine-tuning run) replace the profile's when given: the same runs, on fewer ads."""
    from adgen_utils.study.compute import CHALLENGER, CONTENDERS, overtaking, plot_quality_vs_compute

    tuned = profile_values(profile, Finetune)
    with tempfile.TemporaryDirectory() as work:
        run_dir = Path(work)
        log(f"preparing the {profile} profile's data (lessons 01, 02)")
        changes = {"data_source": corpus, "sample_size": sample_size}
        sizes = prepare_run(run_dir, profile, **{k: v for k, v in changes.items() if v is not None})
        rows = []
        for model, label in CONTENDERS.items():
            notebook = LSTM_LESSONS[model]
            epochs = max(1, round(profile_values(profile, LESSONS[notebook])["epochs"] * epochs_scale))
            log(f"{label}: lesson {notebook}, {epochs} epochs")
            rows += [{**row, "model": label} for row in lstm_curve(run_dir, profile, model, epochs)]
        label = CHALLENGER[FINETUNED]
        ads = {} if finetune_ads is None else {"max_train_ads": finetune_ads}
        curves = _finetune_curves(run_dir, profile, tuned["max_steps"], fractions, log, **ads)
        rows.append({**next(iter(curves.values()))[0], "model": label})  # before training, once
        rows += [{**curve[-1], "model": label} for curve in curves.values()]
        pretrained = profile_values(profile, Evaluation)["pretrained_model"]
        log(f"{pretrained}, {shots}-shot")
        arguments = {"model": pretrained, "shots": shots, "validation_ads": tuned["validation_ads"]}
        few = measure("few_shot_footing", run_dir=str(run_dir), **arguments)
    table = pd.DataFrame(rows)
    flat = {f"{pretrained} {shots}-shot": few["bits_per_char"]}
    if figure:
        plot_quality_vs_compute(table, flat, Path(figure).parent, Path(figure).stem)
    return {
        "profile": profile,
        "corpus": corpus or profile_values(profile, Corpus)["data_source"],
        "splits": sizes["splits"],
        "validation_ads": int(table["validation_ads"].iloc[0]),
        "base_model": tuned["base_model"],
        "finetune_steps": list(curves),
        "curves": table.to_dict("records"),
        "flat": flat,
        "overtaking": overtaking(table),
        "figure": figure,
    }


def _finetune_curves(run_dir: Path, profile: str, max_steps: int, fractions, log, **settings) -> dict[int, list[dict]]:
    """``adgen finetune`` (with ``settings``) for each of ``fractions`` of the profile's optimizer
    steps, no evaluation but before and after; the quality curve of each, by steps, fewest first. A
    profile that trains for epochs (``max_steps`` -1) runs its own budget first, which tells how many
    steps that is."""
    curves = {}
    total = max_steps
    if total <= 0:
        log(f"fine-tuning: the {profile} profile's own epochs")
        whole = finetune(run_dir, profile, eval_steps=None, **settings)
        total = whole["steps"]
        curves[total] = whole["quality_curve"]
        remove_finetuned(run_dir)
    for steps in sorted({max(1, round(total * fraction)) for fraction in fractions}):
        if steps not in curves:
            log(f"fine-tuning: {steps} of the profile's {total} steps")
            curves[steps] = finetune(run_dir, profile, max_steps=steps, eval_steps=None, **settings)["quality_curve"]
            remove_finetuned(run_dir)
    wanted = {max(1, round(total * fraction)) for fraction in fractions}
    return {steps: curves[steps] for steps in sorted(wanted)}


def bench_category(
    corpus: str = "../shared/data/amazon_ads_sample10",
    sample_size: int = 30_000,
    steps: int = Finetune.max_steps,
    products: int = 80,
    base_model: str = Finetune.base_model,
    log=say,
) -> dict:
    """Whether the category prefix helps, on a corpus of many categories: ``adgen finetune`` (quick
    profile, ``base_model``) for ``steps`` steps on the same training ads of ``sample_size`` ads
    drawn from ``corpus`` (lesson 01), once without and once with ``"<category> | "`` before every
    ad. Reports each one's footing on the same validation ads (the prefixed model reads their
    categories), and for ``products`` validation products the share of ads a word-frequency
    classifier fitted on the training ads (:class:`benchmarks.category_classifier.CategoryClassifier`)
    puts in the product's category, beside its accuracy on the products' real ads."""
    from adgen_utils.corpus.data import load_dataset

    validation_ads = Finetune.validation_ads
    with tempfile.TemporaryDirectory() as work:
        run_dir = Path(work)
        log(f"preparing {sample_size:,} ads of {corpus} (lesson 01)")
        sizes = prepare_run(run_dir, "quick", sequences=False, data_source=corpus, sample_size=sample_size)
        runs = {}
        for prefix in (False, True):
            log(f"fine-tuning {'with' if prefix else 'without'} the category prefix: {steps} steps")
            tuned = finetune(
                run_dir, "quick", base_model=base_model, category_prefix=prefix, max_steps=steps, eval_steps=None
            )
            folder = str(model_dir(run_dir, FINETUNED))
            scored = measure(
                "footing_and_ads", run_dir=str(run_dir), model=folder, validation_ads=validation_ads, products=products
            )
            runs[prefix] = {**scored, "seconds": tuned["seconds"]}
            remove_finetuned(run_dir)
        classifier = CategoryClassifier(load_dataset(run_dir / DATA_FOLDER, split="train"))
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
        "base_model": base_model,
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
    model: str = Finetune.base_model,
    processes: tuple = (1, 2),
    steps: int = 6,
    batch_size: int = Finetune.batch_size,
    block_size: int = Finetune.block_size,
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
        prepare_run(Path(work, "data-run"), "quick", sequences=False)
        runs = {}
        for count in processes:
            run_dir = Path(work, f"run-{count}")
            shutil.copytree(Path(work, "data-run", DATA_FOLDER), run_dir / DATA_FOLDER)
            log(f"adgen finetune on {count} process(es): {steps} steps")
            settings = [f"base_model={json.dumps(model)}", f"max_steps={steps}", "eval_steps=null"]
            settings += [f"batch_size={batch_size}", f"block_size={block_size}", "validation_ads=20"]
            command = [str(torchrun), "--nproc_per_node", str(count), "--standalone", *ADGEN]
            command += ["finetune", "--profile", "quick", "--run-dir", str(run_dir), "--no-progress"]
            command += [part for setting in settings for part in ("-p", setting)]
            child = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            if child.returncode != 0:
                raise RuntimeError(f"adgen finetune on {count} processes failed:\n{child.stderr[-3000:]}")
            done = json.loads(child.stdout[child.stdout.index("{") :])
            history = pd.read_csv(model_dir(run_dir, FINETUNED) / HISTORY_FILE)
            trained = done["steps"] * batch_size * block_size
            runs[str(count)] = {
                "processes": done["processes"],
                "train_seconds": done["train_seconds"],
                "tokens_per_second": round(trained / done["train_seconds"], 1),
                "peak_rss_mib_per_process": done["peak_rss_mib_per_process"],
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
    model: str = Finetune.base_model,
    block_size: int = Finetune.block_size,
    full_corpus_ads: int = FULL_CORPUS_DISTINCT_ADS,
    log=say,
) -> dict:
    """Peak RSS of preparing the fine-tuning data from ``corpus``, in memory (every ad tokenized
    into Python lists, then packed) against streamed into a token file (what fine-tuning does),
    each in its own process, for a split of half the corpus's ads and of all of them (the dataset,
    read first, grows with it too). Each way's RSS is fitted as a line in the number of cleaned
    ads and projected to ``full_corpus_ads`` (the whole corpus's distinct ads)."""
    with tempfile.TemporaryDirectory() as work:
        log(f"preparing {corpus} (lesson 01)")
        whole = prepare_run(Path(work, "all"), "quick", sequences=False, data_source=corpus)
        kept = sum(whole["splits"].values())
        prepare_run(Path(work, "half"), "quick", sequences=False, data_source=corpus, sample_size=kept // 2)
        ways = {}
        for way in ("in_memory", "token_file"):
            points = []
            for size in ("half", "all"):
                log(f"{way}: {size} of the ads")
                run_dir = str(Path(work, size))
                measured = measure("prepare_tokens", run_dir=run_dir, model=model, way=way, block_size=block_size)
                points.append({**measured, "corpus_ads": kept // 2 if size == "half" else kept})
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


# ---------------------------------------------------------------------------------------
# The command


def build_parser() -> argparse.ArgumentParser:
    """``python -m benchmarks.bench NAME [options]``; an option left out keeps the benchmark
    function's own default (its signature is the defaults' one home)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description="benchmarks that print JSON")
    benchmarks = parser.add_subparsers(dest="benchmark", required=True)

    def add(name: str, text: str, repeats: str | None = "runs of each way, alternated"):
        sub = benchmarks.add_parser(name, help=text, argument_default=argparse.SUPPRESS)
        if repeats:
            sub.add_argument("--repeats", type=int, help=repeats)
        return sub

    data = add("data", "load time and peak RSS of the data layer against plain pandas.read_csv")
    data.add_argument("source", help="'embedded', a CSV file or a corpus folder")
    lstm = add(
        "lstm",
        "the original one-hot window pipeline against ours, and a scale run on a corpus",
        repeats="runs of each way in (a), alternated",
    )
    lstm.add_argument("--corpus", help="a corpus for the scale run, e.g. ../shared/data/amazon_ads_sample10")
    lstm.add_argument("--original-steps", type=int, help="timed batches of 4,096 windows for the original")
    lstm.add_argument("--steps", type=int, help="timed batches of 64 ads for ours")
    lstm.add_argument("--full-epoch", action="store_true", help="(b) also train one whole epoch (sampled softmax)")
    model_help = "'smollm2-135m' (offline default), 'tiny', a model folder or a Hub id"
    tune = add("finetune", "training tokens/s with packed rows against one ad per padded row (and LoRA), with peak RSS")
    tune.add_argument("--model", help=model_help)
    tune.add_argument("--steps", type=int, help="timed optimizer steps per run (after 2 untimed)")
    tune.add_argument("--batch-size", type=int, help="rows per step")
    tune.add_argument("--block-size", type=int, help="tokens per row")
    tune.add_argument("--no-lora", dest="lora", action="store_false", help="skip the LoRA run")
    generate = add("generate", "ads/s generating the same prompts batched against one prompt at a time")
    generate.add_argument("--model", help=model_help)
    generate.add_argument("--prompts", type=int, help="prompts (first words of validation ads)")
    generate.add_argument("--batch-size", type=int, help="prompts per generate() call when batched")
    generate.add_argument("--max-new-tokens", type=int)
    catalog = add(
        "catalog", "adgen generate batched on test-split products: killed, resumed, every row checked", repeats=None
    )
    catalog.add_argument("--model", help="'smollm2-135m' (offline default), a model folder or a Hub id")
    catalog.add_argument("--products", type=int, help="products of the embedded test split (one ad each)")
    catalog.add_argument("--kill-after", type=float, help="seconds after which the first run is killed")
    catalog.add_argument("--batch-size", type=int, help="prompts per generate() call")
    catalog.add_argument("--max-new-tokens", type=int)
    spark = add(
        "spark",
        "adgen generate in one process against --engine spark on local[1] and local[2]: products/s, memory per worker",
        repeats=None,
    )
    spark.add_argument("--model", help="'smollm2-135m' (offline default), a model folder or a Hub id")
    spark.add_argument("--products", type=int, help="products of the embedded test split (one ad each)")
    spark.add_argument("--chunk-products", type=int, help="products per chunk (Spark's unit of work)")
    spark.add_argument("--executors", type=int, nargs="+", help="executor counts for the 1M-product prediction")
    compute = add(
        "compute",
        "quality against training compute: every model family on the same ads, bits per char against seconds and FLOPs",
        repeats=None,
    )
    compute.add_argument("--profile", choices=list(PROFILES), help="the lessons' settings and data (default quick)")
    compute.add_argument("--corpus", help="a corpus in place of the profile's data source")
    compute.add_argument("--epochs-scale", type=float, help="LSTM epochs, times the profile's (default 2)")
    compute.add_argument(
        "--fractions", type=float, nargs="+", help="fine-tuning budgets, as fractions of the profile's steps"
    )
    compute.add_argument("--figure", help="where the figure goes (default figures/bench_compute.png)")
    compute.add_argument("--sample-size", type=int, help="ads drawn from the corpus (default the profile's)")
    compute.add_argument(
        "--finetune-ads", type=int, help="training ads of each fine-tuning run (default the profile's)"
    )
    category = add(
        "category",
        "fine-tuning with and without the category prefix on a 40-category corpus: bits per char, ads in category",
        repeats=None,
    )
    category.add_argument("--corpus", help="a corpus with categories (default ../shared/data/amazon_ads_sample10)")
    category.add_argument("--sample-size", type=int, help="ads drawn from it (default 30,000)")
    category.add_argument("--steps", type=int, help="fine-tuning steps of each run (default the quick profile's)")
    category.add_argument("--products", type=int, help="validation products asked for one ad each")
    category.add_argument("--base-model", help="in place of the quick profile's base model")
    distributed = add(
        "distributed",
        "adgen finetune under torchrun on 1 and 2 processes: tokens/s, peak RSS per process, the same result",
        repeats=None,
    )
    distributed.add_argument("--model", help=model_help)
    distributed.add_argument("--processes", type=int, nargs="+", help="process counts (default 1 2)")
    distributed.add_argument("--steps", type=int, help="optimizer steps of each run")
    distributed.add_argument("--batch-size", type=int, help="blocks per step, shared by the processes")
    distributed.add_argument("--block-size", type=int, help="tokens per block")
    tokens = add(
        "tokens",
        "peak RSS of preparing the fine-tuning data in memory against streamed to a token file; the full corpus projected",
        repeats=None,
    )
    tokens.add_argument("--corpus", help="a corpus (default ../shared/data/amazon_ads_sample10)")
    tokens.add_argument("--model", help="whose tokenizer (default the quick profile's base model)")
    tokens.add_argument("--block-size", type=int, help="tokens per block")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one benchmark and print its result, with provenance, as JSON on stdout."""
    argv = sys.argv[1:] if argv is None else argv
    options = vars(build_parser().parse_args(argv))
    bench = globals()[f"bench_{options.pop('benchmark')}"]
    result = bench(**options)
    print(json.dumps(with_provenance(result, ["python", "-m", "benchmarks.bench", *argv]), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
