"""The README's "Measured" section, written from the saved results in ``results/``.

Each benchmark's JSON (``adgen bench NAME ... > results/bench_NAME.json``) and a run's results
(``adgen results save runs/quick`` -> ``results/run_quick.json``) say when, on which machine and
by which command they were measured. :func:`measured_section` turns them into the section's
Markdown: every table, and every sentence that states a number or a comparison (a ratio, whether
the 10x target is met), is computed here from those files, and each table names its file, date,
machine and command. ``adgen sync`` writes it between the ``measured`` markers, so the section
cannot drift from the committed files; a missing file gives a note in its place.

Units as in the files: seconds, MiB of peak RSS, GiB of machine memory, rates per second.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

from adgen_utils.corpus.sequences import ORIGINAL_WINDOW
from adgen_utils.layout import RESULTS_FOLDER, RUN_RESULT_FILE
from adgen_utils.models import WORD_LSTM

TARGET = 10  # the speed-up (x) the project asked of the LSTM pipeline and of batched generation
DATA_FILE = "bench_data.json"
LSTM_FILE = "bench_lstm.json"
FINETUNE_FILE = "bench_finetune.json"
GENERATE_FILES = "bench_generate*.json"  # one per batch size: bench_generate.json, bench_generate_32.json, ...
CATALOG_FILE = "bench_catalog.json"
COMPUTE_FILE = "bench_compute.json"
CATEGORY_FILE = "bench_category.json"
DISTRIBUTED_FILE = "bench_distributed.json"
TOKENS_BENCH_FILE = "bench_tokens.json"
RUN_FILE = RUN_RESULT_FILE.format(profile="quick")
LSTM_WAYS = {
    "original_one_hot_windows": f"original: one-hot {ORIGINAL_WINDOW}-word windows, batches of 4,096 built in Python",
    "ours_lstm_one_hot_input": 'ours, "LSTM" (one-hot inside the graph), full softmax',
    "ours_embedding_lstm": "ours, Embedding LSTM, full softmax",
    "ours_embedding_lstm_sampled_softmax": "ours, Embedding LSTM, sampled softmax (512)",
}
LSTM_UNITS = 128  # LSTM(128), as in the original and in adgen bench lstm
FINETUNE_WAYS = {
    "packed": "packed blocks (ads joined by end-of-text)",
    "padded_to_block": "one ad per row, padded to {block} tokens",
    "padded_to_longest_in_batch": "one ad per row, padded to the longest ad of its batch",
    "packed_lora": "packed blocks, LoRA (rank 16, every linear layer)",
    "packed_bf16": "packed blocks, bfloat16 autocast (the CPU's bf16 instructions)",
}
NOISY = 1.25  # runs of one way further apart than this (max / min) get a warning under the table


# ---------------------------------------------------------------------------------------------
# Numbers in words
# ---------------------------------------------------------------------------------------------


def _num(value: float) -> str:
    """3 significant digits below 100 (1.57, 14.3), whole numbers with thousands commas above (21,568)."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _times(ratio: float) -> str:
    return f"{_num(ratio)}×"


def _mib(value: float) -> str:
    return f"{value:,.0f} MiB"


def _pct(share: float) -> str:
    return "0" if share == 0 else f"{share:.1%}"


def machine_words(machine: dict) -> str:
    """``"2 cores, 24 GiB, no GPU"``: cores, memory to the GiB, the GPU or none."""
    memory = f"{machine['memory_gib']:.0f} GiB" if machine.get("memory_gib") else "memory unknown"
    return f"{machine.get('cpu_cores')} cores, {memory}, {machine.get('gpu') or 'no GPU'}"


def provenance(files: list[tuple[str, dict]]) -> str:
    """One italic line under a table: for each file, its name, date, command and machine."""
    parts = []
    for name, result in files:
        measured = result.get("measured", {})
        machine = measured.get("machine", {})
        where = machine_words(machine) if machine else "an unrecorded machine"
        system = f" ({machine['platform']}, Python {machine['python']})" if machine.get("platform") else ""
        parts.append(
            f"`{RESULTS_FOLDER}/{name}`: measured {measured.get('date', 'on an unrecorded date')} on {where}{system}"
            f" by `{measured.get('command', 'an unrecorded command')}`"
        )
    return "_" + "; ".join(parts) + "._"


def missing(name: str, how: str) -> str:
    """The note that stands in for a section whose results file is missing."""
    return f"_No `{RESULTS_FOLDER}/{name}` yet: {how}, then `adgen sync`._"


def _spread(results: list[dict], ways, rate: str) -> str:
    """A warning when the runs of one way (``rate`` per run) differ by more than ``NOISY`` (max / min), else ''."""
    worst = None
    for result in results:
        for way in ways:
            runs = result.get(way, {}).get(rate, [])
            if len(runs) > 1 and min(runs) > 0 and (worst is None or max(runs) / min(runs) > worst[0]):
                worst = (max(runs) / min(runs), way, runs)
    if worst is None or worst[0] <= NOISY:
        return ""
    spread, way, runs = worst
    listed = " and ".join(_num(r) for r in runs)
    return f" The runs of one way differ by up to {_times(spread)} (`{way}`: {listed}), so these ratios are rough."


# ---------------------------------------------------------------------------------------------
# The parts of the section
# ---------------------------------------------------------------------------------------------


def data_part(result: dict) -> str:
    """**Data**: ``adgen bench data``: the loader against plain ``pandas.read_csv``."""
    ours, plain = result["adgen_load_ads"], result["pandas_read_csv"]
    fewer = ours["rows_read"] - plain["rows_read"]
    if fewer > 0:
        rows = f"reads {fewer:,} fewer rows, merged or skipped at stray quotes without a word"
    elif fewer < 0:
        rows = f"reads {-fewer:,} more rows"
    else:
        rows = "reads the same rows"
    return "\n".join(
        [
            f"**Data** (`{result['measured']['command']}`, median of {result['repeats']} runs each):",
            "",
            "| way | median time | peak RSS | rows read | ads kept |",
            "| --- | --- | --- | --- | --- |",
            f"| adgen `load_ads`: load, clean and split | {ours['median_seconds']:.2f} s | {_mib(ours['peak_rss_mib'])} "
            f"| {ours['rows_read']:,} | {ours['rows_kept']:,} |",
            f"| plain `pandas.read_csv`: no cleaning, no split | {plain['median_seconds']:.2f} s "
            f"| {_mib(plain['peak_rss_mib'])} | {plain['rows_read']:,} | |",
            "",
            f"Loading, cleaning and splitting takes {_times(result['time_ratio_adgen_over_pandas'])} the time of "
            f"plain `pandas.read_csv`, which {rows}.",
            "",
            provenance([(DATA_FILE, result)]),
        ]
    )


def _target_sentence_lstm(a: dict, vocabulary: int) -> str:
    full = max(a[w]["speedup_over_original"] for w in ("ours_lstm_one_hot_input", "ours_embedding_lstm"))
    sampled = a["ours_embedding_lstm_sampled_softmax"]["speedup_over_original"]
    mflop = 6 * LSTM_UNITS * vocabulary / 1e6  # multiply-adds of the output layer, forward and backward
    layer = f"the output layer alone ({LSTM_UNITS} × {vocabulary:,}) costs ~{mflop:.0f} MFLOP per prediction"
    if sampled >= TARGET > full:
        return (
            f"With the full softmax, {layer} and is compute-bound on this CPU, so the {TARGET}× target is met "
            f"only with the sampled softmax ({_times(sampled)}; the full softmax reaches {_times(full)})."
        )
    if full >= TARGET:
        return f"The {TARGET}× target is met with the full softmax too ({_times(full)}); the sampled softmax gives {_times(sampled)}."
    return (
        f"The {TARGET}× target is not met: the sampled softmax gives {_times(sampled)} and the full softmax "
        f"{_times(full)}, where {layer}."
    )


def lstm_part(result: dict) -> str:
    """**LSTM**: ``adgen bench lstm``: (a) the original pipeline against ours; (b) the scale run."""
    a, prepared = result["a_original_vs_ours"], result["a_prepare"]
    vocabulary = prepared["vocabulary_size"]
    lines = [
        f"**LSTM** (`{result['measured']['command']}`, {result['repeats']} runs of each way in (a), alternated):",
        "",
        f"| (a) same {prepared['train_ads']:,} training ads, vocabulary {vocabulary:,}, LSTM({LSTM_UNITS}) "
        "| predictions / s | vs original | peak RSS | vs original |",
        "| --- | --- | --- | --- | --- |",
    ]
    for way, label in LSTM_WAYS.items():
        row = a[way]
        speed = _times(row.get("speedup_over_original", 1))
        memory = _num(row.get("peak_rss_over_original", 1))
        lines.append(
            f"| {label} | {_num(row['median_predictions_per_second'])} | {speed} | {_mib(row['peak_rss_mib'])} | {memory} |"
        )
    lines += ["", _target_sentence_lstm(a, vocabulary) + _spread([a], LSTM_WAYS, "predictions_per_second")]
    b = result.get("b_scale")
    if b:
        prepare = b["prepare"]
        full_corpus = prepare["rows_read"] * b["full_corpus_scale_factor"] / 1e6
        lines += [
            "",
            f"| (b) scale run on `{b['corpus']}` ({prepare['rows_read']:,} rows read, {prepare['train_ads']:,} "
            f"training ads, vocabulary {prepare['vocabulary_size']:,}) | figure |",
            "| --- | --- |",
            f"| prepare (load, clean, split, vocabulary, encode, save) | {prepare['median_seconds']:.1f} s, "
            f"{_mib(prepare['peak_rss_mib'])} peak |",
        ]
        for loss in ("full", "sampled"):
            train = b[f"train_{loss}_softmax"]
            lines.append(
                f"| training, {loss} softmax | {_num(train['predictions_per_second'])} predictions/s → "
                f"{train['epoch_hours_this_corpus']:.2f} h per epoch; full {full_corpus:.1f}M-ad corpus ≈ "
                f"{train['projected_epoch_hours_full_corpus']:.3g} h per epoch |"
            )
        epoch = b.get("one_epoch_sampled_softmax")
        if epoch:
            lines.append(
                f"| one whole epoch, sampled softmax (`--full-epoch`) | {epoch['epoch_seconds_with_validation']:.0f} s "
                f"with validation, {epoch['peak_rss_mib'] / 1024:.1f} GiB peak; validation perplexity "
                f"{epoch['validation_perplexity']:.0f} |"
            )
    lines += ["", provenance([(LSTM_FILE, result)])]
    return "\n".join(lines)


def finetune_part(result: dict) -> str:
    """**Fine-tuning**: ``adgen bench finetune``: packed blocks against padded rows, and LoRA;
    then the memory of each fine-tuning path."""
    ways = [w for w in FINETUNE_WAYS if w in result]
    block, rows, steps = result["block_size"], result["batch_size"], result["timed_steps"]
    packed = result["packed"]
    lines = [
        f"**Fine-tuning** (`{result['measured']['command']}`: `{result['model']}`, full fine-tuning with AdamW, "
        f"{rows} rows of {block} tokens per step, {steps} timed steps after untimed warm-up steps, the same "
        f"embedded training ads every way, {result['repeats']} runs each, alternated):",
        "",
        "| way | trained tokens / s: median (runs) | packed is | peak RSS |",
        "| --- | --- | --- | --- |",
    ]
    for way in ways:
        row = result[way]
        runs = ", ".join(_num(r) for r in row.get("tokens_per_second", []))
        ratio = packed["median_tokens_per_second"] / row["median_tokens_per_second"]
        faster = " faster" if way != "packed" and ratio > 1 else ""
        lines.append(
            f"| {FINETUNE_WAYS[way].format(block=block)} | {_num(row['median_tokens_per_second'])} ({runs}) "
            f"| {_times(float(f'{ratio:.3g}'))}{faster} | {_mib(row['peak_rss_mib'])} |"
        )

    def step_seconds(way: str) -> float:
        return result[way]["trained_tokens"] / result[way]["median_tokens_per_second"] / steps

    padded_row = result["padded_to_block"]["trained_tokens"] / (steps * rows)
    packed_row = packed["trained_tokens"] / (steps * rows)
    token_ratio = packed["trained_tokens"] / result["padded_to_longest_in_batch"]["trained_tokens"]
    time_ratio = step_seconds("packed") / step_seconds("padded_to_longest_in_batch")
    over_longest = result["packed_over_padded_to_longest_in_batch"]
    text = (
        f"A padded row of this corpus holds ~{padded_row:.0f} real tokens (one ad) where a packed row holds "
        f"{packed_row:.0f}. A step takes {step_seconds('packed'):.1f} s packed, {step_seconds('padded_to_block'):.1f} s "
        f"padded to {block} tokens and {step_seconds('padded_to_longest_in_batch'):.1f} s padded to the longest ad "
        f"of its batch: {token_ratio:.3g}× the real tokens cost {time_ratio:.3g}× the time"
    )
    if over_longest > 1:
        text += (
            " (part of a step, the optimizer update of every parameter, costs the same whatever the tokens), so "
            "even padding only "
            f"to the longest ad of the batch trains {_times(over_longest)} fewer tokens per second than packing."
        )
    else:
        text += f", so padding to the longest ad of the batch trains as fast as packing here ({_times(over_longest)})."
    lora = result.get("packed_lora")
    if lora:
        speed = lora["median_tokens_per_second"] / packed["median_tokens_per_second"]
        if speed > 1.1:
            text += (
                f" LoRA trains {_times(float(f'{speed:.3g}'))} the tokens per second of full fine-tuning: its backward "
                "pass still runs through every layer but skips the weight gradients and the AdamW update of the "
                "frozen weights."
            )
        elif speed >= 0.9:
            text += (
                f" LoRA saves, on a CPU, little time ({_times(float(f'{speed:.3g}'))} the tokens per second): the "
                "backward pass still runs through every layer."
            )
        else:
            text += f" LoRA trains slower here ({_times(float(f'{speed:.3g}'))} the tokens per second)."
    if "bf16_over_fp32" in result:
        text += (
            f" In bfloat16 autocast, which notebook 06 trains in on a CPU with bf16 instructions, packed blocks train "
            f"{_times(result['bf16_over_fp32'])} the tokens per second of float32."
        )
    text += _spread([result], ways, "tokens_per_second")
    lines += ["", text, "", provenance([(FINETUNE_FILE, result)])]
    if lora:
        saved = packed["peak_rss_mib"] - lora["peak_rss_mib"]
        kept = f"{_mib(saved)} less" if saved > 0 else "no less"
        lines += [
            "",
            "**Memory of each fine-tuning path** (peak RSS of the process, from the OS, `adgen bench finetune` "
            f"above): the `Trainer` on `{result['model']}`, full fine-tuning, {rows} × {block}-token rows per step: "
            f"{_mib(packed['peak_rss_mib'])}; the same with LoRA: {_mib(lora['peak_rss_mib'])} ({kept}).",
        ]
    return "\n".join(lines)


def generate_part(files: list[tuple[str, dict]]) -> str:
    """**Generation**: ``adgen bench generate`` at each batch size saved, largest first."""
    files = sorted(files, key=lambda f: -f[1]["batch_size"])
    first = files[0][1]
    digests = [(r["one_at_a_time"].get("ads_sha256"), r["batched"].get("ads_sha256")) for _, r in files]
    lengths = [(r["one_at_a_time"]["mean_ad_words"], r["batched"]["mean_ad_words"]) for _, r in files]
    if all(one and one == batched for one, batched in digests):
        same = "both ways produce the same ads"
    elif all(one == batched for one, batched in lengths):
        same = "both ways give ads of the same mean length"
    else:
        same = "the two ways' ads differ in length"
    lines = [
        f"**Generation** (`adgen bench generate`: `{first['model']}`, greedy, up to {first['max_new_tokens']} new "
        f"tokens, the same prompts one at a time and batched, {first['repeats']} runs each, alternated; {same}):",
        "",
        "| prompts, batch size (command) | one at a time (ads / s) | batched (ads / s) | batched is | peak RSS |",
        "| --- | --- | --- | --- | --- |",
    ]
    for _, result in files:
        one, batched = result["one_at_a_time"], result["batched"]
        lines.append(
            f"| {result['prompts']}, {result['batch_size']} (`{result['measured']['command']}`) "
            f"| {_num(one['median_ads_per_second'])} | {_num(batched['median_ads_per_second'])} "
            f"| {_times(result['batched_over_one_at_a_time'])} | {_mib(one['peak_rss_mib'])} / "
            f"{_mib(batched['peak_rss_mib'])} |"
        )
    met = [r for _, r in files if r["batched_over_one_at_a_time"] >= TARGET]
    unmet = [r for _, r in files if r["batched_over_one_at_a_time"] < TARGET]

    def gives(results: list[dict]) -> str:
        return ", ".join(
            f"{r['batch_size']} prompts per batch {_times(r['batched_over_one_at_a_time'])}" for r in results
        )

    if met and not unmet:
        text = f"The {TARGET}× target is met at every batch size measured ({gives(met)})."
    elif met:
        smallest = min(met, key=lambda r: r["batch_size"])
        text = (
            f"The {TARGET}× target is met from batches of {smallest['batch_size']} "
            f"({_times(smallest['batched_over_one_at_a_time'])}); this CPU gives {gives(unmet)}."
        )
    else:
        text = f"The {TARGET}× target is not met on this CPU: {gives(unmet)}."
    text += _spread([r for _, r in files], ("one_at_a_time", "batched"), "ads_per_second")
    lines += ["", text, "", provenance(files)]
    return "\n".join(lines)


def _model_label(name: str, models: dict) -> str:
    """A comparison row's model, with the training figures of its notebook."""
    if "(03)" in name and "03_lstm" in models:
        m = models["03_lstm"]
        return f"{name}, {m['input'].replace('_', '-')}, {m['epochs_run']} epochs"
    if "(04)" in name and "04_embedding_lstm" in models:
        m = models["04_embedding_lstm"]
        return f"{name}, {m['epochs_run']} epochs{', sampled softmax' if m['loss'] == 'sampled' else ''}"
    if "(06)" in name and "06_fine_tuning" in models:
        m = models["06_fine_tuning"]
        return f"{name}: {m['train_texts']:,} ads, {m['steps']:,} steps"
    return name


def run_part(result: dict) -> str:
    """**Every model on one footing**: notebook 07's comparison of a run (``adgen results save``)."""
    rows, models = result["comparison"], result.get("models", {})
    seconds = {n["notebook"]: n["seconds"] for n in result.get("notebooks", [])}
    machine = result["measured"]["machine"]
    took = (
        f", {seconds['07_evaluation'] / 60:.1f} minutes for 07 on {machine['cpu_cores']} cores"
        if "07_evaluation" in seconds
        else ""
    )
    best = {
        "top1_accuracy": max(r["top1_accuracy"] for r in rows),
        "top5_accuracy": max(r["top5_accuracy"] for r in rows),
        "per_word_perplexity": min(r["per_word_perplexity"] for r in rows),
        "bits_per_char": min(r["bits_per_char"] for r in rows),
    }

    def cell(row: dict, column: str, text: str) -> str:
        return f"**{text}**" if len(rows) > 1 and row[column] == best[column] else text

    lines = [
        f"**Every model on one footing** (notebook 07, {result['profile']} profile: the same {rows[0]['ads']:,} test "
        f"ads{took}; `{result['run_dir']}/evaluation/07_comparison.csv`):",
        "",
        "| model | OOV words | top-1 | top-5 | per-word perplexity | bits / char | model tokens / word |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    formats = {
        "top1_accuracy": "{:.1%}",
        "top5_accuracy": "{:.1%}",
        "per_word_perplexity": "{:,.0f}",
        "bits_per_char": "{:.2f}",
    }
    for row in rows:
        cells = [cell(row, column, form.format(row[column])) for column, form in formats.items()]
        lines.append(
            f"| {_model_label(row['model'], models)} | {_pct(row['oov_share'])} | {' | '.join(cells)} "
            f"| {row['model_tokens_per_word']:.2f} |"
        )
    notes = []
    # "kind": the column's name in results saved before models.ModelDescription named it "family"
    lstm_rows = [r for r in rows if r.get("family", r.get("kind")) == WORD_LSTM]
    if lstm_rows:
        text = f"The LSTMs' unknown words are charged `{lstm_rows[0]['unknown_words_charged']}`"
        perplexities = [
            models[n]["test_perplexity"]
            for n in ("03_lstm", "04_embedding_lstm")
            if "test_perplexity" in models.get(n, {})
        ]
        if len(perplexities) == 2:
            text += (
                f"; with `<unk>` as a free word their per-token test perplexity was {perplexities[0]:,.0f} and "
                f"{perplexities[1]:,.0f} (notebooks 03-04)"
            )
        notes.append(text + ".")
    finetuned, embedding = models.get("06_fine_tuning"), models.get("04_embedding_lstm")
    if finetuned and embedding:
        took_04 = (
            f" (notebook 04 took {seconds['04_embedding_lstm'] / 60:.1f} minutes in all)"
            if "04_embedding_lstm" in seconds
            else ""
        )
        notes.append(
            f"The fine-tuned transformer saw {finetuned['train_texts']:,} ads for {finetuned['train_seconds'] / 60:.1f} "
            f"minutes of training, the Embedding LSTM {embedding['train_ads']:,} ads{took_04}."
        )
    if finetuned and finetuned.get("perplexity_before") and finetuned.get("perplexity_after"):
        notes.append(
            f"Fine-tuning took the validation perplexity per model token from {finetuned['perplexity_before']:,.1f} "
            f"to {finetuned['perplexity_after']:,.1f}."
        )
    if seconds:
        times = ", ".join(f"{name[:2]} {s / 60:.1f}" for name, s in seconds.items())
        notes.append(f"Minutes per notebook in this run: {times}; {sum(seconds.values()) / 60:.0f} in all.")
    lines += ["", " ".join(notes), "", provenance([(RUN_FILE, result)])]
    return "\n".join(lines)


def catalog_part(result: dict) -> str:
    """**Batch generation**: ``adgen bench catalog``: adgen generate killed, resumed and checked."""
    killed, resumed = result["killed_run"], result["resumed_run"]
    if killed["killed"]:
        end = (
            "the file ending on a complete line"
            if killed["ends_on_complete_line"]
            else "the resume cut its torn last line"
        )
        kill = f"Killed with SIGKILL after {result['kill_after_seconds']:g} s ({killed['ads_on_disk']:,} ads on disk, {end}), then resumed"
    else:
        kill = f"The first run ended before its SIGKILL at {result['kill_after_seconds']:g} s; run again"
    lost = (
        "none lost or repeated"
        if result["lost"] == result["repeated"] == 0
        else f"{result['lost']:,} lost, {result['repeated']:,} repeated"
    )
    rejected = ", ".join(f"{rule} {count:,}" for rule, count in result.get("rejected_candidates", {}).items())
    return "\n".join(
        [
            f"**Batch generation** (`{result['generate_command']}`, {result['products']:,} products from the test "
            f"split, decoding `{result['decoding']}`, {result['candidates']} candidates per product judged by the "
            f"seller's rules): **{_num(resumed['products_per_second'])} products/s** ({resumed['products_done']:,} "
            f"products in {resumed['generating_seconds']:.0f} s after the resume; peak RSS "
            f"{resumed['peak_rss_mib'] / 1024:.1f} GiB); {_pct(result['passing_share'])} of the products got an ad "
            f"that passes every rule (candidates rejected: {rejected or 'none'}). {kill}: {result['rows']:,} rows, "
            f"{result['distinct_pairs']:,} distinct (product, ad) pairs, {lost}.",
            "",
            provenance([(CATALOG_FILE, result)]),
        ]
    )


def compute_part(result: dict) -> str:
    """**Quality against training compute**: ``adgen bench compute``: every family's curve, the
    few-shot line and when the fine-tuned model overtakes the best LSTM."""
    curves = result["curves"]
    lines = [
        f"**Quality against training compute** (`{result['measured']['command']}`: the {result['profile']} profile's "
        f"{result['splits'].get('train', 0):,} training ads for every model, the same {result['validation_ads']:,} "
        f"validation ads scored with notebook 07's footing at every checkpoint; LSTM checkpoints are epochs of one "
        f"run, each fine-tuning budget a run of its own with its schedule; `{result['base_model']}` fine-tuned):",
        "",
        f"![Quality against training compute]({result['figure']})",
        "",
        "| model | training seconds | training FLOPs | bits / char | per-word perplexity | top-5 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in curves:
        lines.append(
            f"| {row['model']} | {row['train_seconds']:,.0f} | {row['train_flops']:.2g} | {row['bits_per_char']:.3f} "
            f"| {row['per_word_perplexity']:,.0f} | {row['top5_accuracy']:.1%} |"
        )
    for label, value in result["flat"].items():
        lines.append(f"| {label} (no training) | 0 | 0 | {value:.3f} | | |")
    found, best = result["overtaking"], result["overtaking"]["best_lstm"]
    text = (
        f"The best LSTM, {best['model']}, reaches {best['bits_per_char']:.3f} bits per character after "
        f"{best['train_seconds']:,.0f} s ({best['train_flops']:.2g} FLOPs). "
    )
    if found["at_seconds"] is None:
        text += (
            f"The fine-tuned transformer does not overtake it within these budgets: {found['finetuned_bits_per_char']:.3f} "
            f"after {found['finetuned_budget']['train_seconds']:,.0f} s."
        )
    else:
        text += (
            f"The fine-tuned transformer overtakes it after about {found['at_seconds']:,.0f} s of fine-tuning on this "
            f"machine ({found['at_flops']:.2g} FLOPs) and ends {found['margin']:.0%} below it, at "
            f"{found['finetuned_bits_per_char']:.3f} after {found['finetuned_budget']['train_seconds']:,.0f} s "
            f"({found['finetuned_budget']['train_flops']:.2g} FLOPs). Pretraining is not counted."
        )
    lines += ["", text, "", provenance([(COMPUTE_FILE, result)])]
    return "\n".join(lines)


def category_part(result: dict) -> str:
    """**Category-conditioned ads**: ``adgen bench category``: with and without the prefix."""
    without, with_ = result["without_prefix"], result["with_prefix"]
    lines = [
        f"**Category-conditioned ads** (`{result['measured']['command']}`: {result['sample_size']:,} ads of "
        f"`{result['corpus']}`, {result['categories']} categories; `{result['base_model']}` fine-tuned "
        f'{result["steps"]} steps on the same training ads, without and with `"<category> | "` before every ad; the '
        f"same {result['validation_ads']} validation ads; one ad for each of {result['products']} validation products, "
        "classified by a word-frequency model of the training ads' categories):",
        "",
        "| fine-tuned | bits / char | per-word perplexity | top-5 | ads in the asked category |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, row in (("without the category prefix", without), ("with the category prefix", with_)):
        lines.append(
            f"| {label} | {row['bits_per_char']:.3f} | {row['per_word_perplexity']:,.0f} | {row['top5_accuracy']:.1%} "
            f"| {row['in_category']:.0%} |"
        )
    lines.append(f"| the products' real ads | | | | {result['real_ads_in_category']:.0%} |")
    change = 1 - with_["bits_per_char"] / without["bits_per_char"]
    verb = "lowers" if change > 0 else "raises"
    text = (
        f"The prefix {verb} held-out bits per character by {abs(change):.1%} and puts "
        f"{with_['in_category']:.0%} of the ads in the category asked for, against {without['in_category']:.0%} "
        f"without it (the classifier puts {result['real_ads_in_category']:.0%} of the real ads in theirs)."
    )
    a, b, n = without["in_category"], with_["in_category"], result["products"]
    noise = 2 * math.sqrt((a * (1 - a) + b * (1 - b)) / n)  # twice the standard error of the difference
    difference = abs(b - a)
    text += (
        f" On {n} products a difference in that share under about {noise * 100:.0f} percentage points (twice its standard error) "
        f"is sampling noise: this one ({difference * 100:.0f} points) is {'beyond' if difference > noise else 'within'} it."
    )
    lines += ["", text, "", provenance([(CATEGORY_FILE, result)])]
    return "\n".join(lines)


def distributed_part(result: dict) -> str:
    """**Several processes**: ``adgen bench distributed``: adgen finetune under torchrun."""
    lines = [
        f"**Several processes** (`{result['measured']['command']}`: `adgen finetune` under `torchrun "
        f"--nproc_per_node N` on {result['cpu_cores']} CPU cores, gloo; `{result['model']}`, {result['steps']} steps "
        f"of {result['global_batch_blocks']} blocks of {result['block_size']} tokens shared by the processes):",
        "",
        "| processes | trained tokens / s | peak RSS per process | final validation loss |",
        "| --- | --- | --- | --- |",
    ]
    for count, run in result["runs"].items():
        rss = " / ".join(_mib(r) for r in run["peak_rss_mib_per_process"])
        lines.append(f"| {count} | {_num(run['tokens_per_second'])} | {rss} | {run['final_validation_loss']:.4f} |")
    lines += [
        "",
        f"The final validation loss differs by {result['validation_loss_spread']:.1g} nats between the runs "
        f"({result['validation_loss_spread'] / max(r['final_validation_loss'] for r in result['runs'].values()):.2%}): "
        "the processes share each step's blocks, so they train the same model, up to the rounding of smaller "
        "matrix products in bfloat16. Every process holds a whole copy of the model (data parallel), so memory "
        f"grows with the processes. {_speed_words(result['runs'])}",
        "",
        provenance([(DISTRIBUTED_FILE, result)]),
    ]
    return "\n".join(lines)


def _speed_words(runs: dict) -> str:
    """How the most processes' speed compares with one process's, in words."""
    counts = sorted(runs, key=int)
    one, most = runs[counts[0]], runs[counts[-1]]
    ratio = most["tokens_per_second"] / one["tokens_per_second"]
    if ratio < 1:
        return (
            f"Here {counts[-1]} processes train {_times(ratio)} the tokens per second of {counts[0]}: on a CPU they "
            "share its cores, and averaging every gradient between them (gloo) costs more than the second core brings."
        )
    return f"Here {counts[-1]} processes train {_times(ratio)} the tokens per second of {counts[0]}."


def tokens_part(result: dict) -> str:
    """**Preparing the fine-tuning data**: ``adgen bench tokens``: in memory against a token file."""
    ways = {
        "in_memory": "every ad tokenized in memory, then packed",
        "token_file": "streamed to a token file (what fine-tuning does)",
    }
    lines = [
        f"**Preparing the fine-tuning data** (`{result['measured']['command']}`: `{result['corpus']}` split by "
        f"notebook 01 at half and all of its {result['corpus_ads']:,} cleaned ads, the dataset read and its training "
        f"ads tokenized with `{result['model']}`'s tokenizer, each way in its own process):",
        "",
        f"| way | corpus ads | training ads | tokens | seconds | peak RSS | projected to {result['full_corpus_ads']:,} ads |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for way, label in ways.items():
        for i, run in enumerate(result[way]["runs"]):
            projected = f"{result[way]['projected_full_corpus_peak_rss_gib']:.1f} GiB" if i else ""
            lines.append(
                f"| {label} | {run['corpus_ads']:,} | {run['ads']:,} | {run['tokens']:,} | {run['prepare_seconds']:.1f} "
                f"| {_mib(run['peak_rss_mib'])} | {projected} |"
            )
    streamed = result["token_file"]["projected_full_corpus_peak_rss_gib"]
    lines += [
        "",
        f"Each way's peak RSS is fitted as a line in the number of ads: streamed, the whole corpus needs about "
        f"{streamed:.1f} GiB ({'under' if streamed < 4 else 'over'} the 4 GiB asked for), in memory about "
        f"{result['in_memory']['projected_full_corpus_peak_rss_gib']:.1f} GiB.",
        "",
        provenance([(TOKENS_BENCH_FILE, result)]),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The section
# ---------------------------------------------------------------------------------------------


def load_results(folder: str | Path) -> dict[str, dict]:
    """Every ``*.json`` in ``folder`` by file name (none when the folder is missing); a file that is
    not JSON is an error naming it."""
    results = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            results[path.name] = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not JSON ({error}): save a benchmark's whole output there") from None
    return results


def measured_section(folder: str | Path) -> str:
    """The whole "Measured" section (heading included) from the results in ``folder``."""
    results = load_results(folder)
    machines = {machine_words(r["measured"]["machine"]) for r in results.values() if "machine" in r.get("measured", {})}
    if len(machines) == 1:
        heading = f"## Measured on this machine ({machines.pop()})"
    else:
        heading = "## Measured" + (" (each table names its machine)" if machines else "")
    generate = [(name, result) for name, result in results.items() if Path(name).match(GENERATE_FILES)]

    def part(name: str, render, title: str, how: str) -> str:
        return render(results[name]) if name in results else f"**{title}**: {missing(name, how)}"

    parts = [
        heading,
        "Written by `adgen sync` from the JSON files in `results/`: each benchmark's output (`adgen bench NAME ... > "
        "results/bench_NAME.json`) and a run's results (`adgen results save runs/quick`), each saying when, on which "
        "machine and by which command it was measured. Benchmarks run each way in its own process (peak RSS from "
        "the OS), alternating.",
        part(DATA_FILE, data_part, "Data", f"`adgen bench data PATH > {RESULTS_FOLDER}/{DATA_FILE}`"),
        part(
            LSTM_FILE,
            lstm_part,
            "LSTM",
            f"`adgen bench lstm --corpus PATH --full-epoch > {RESULTS_FOLDER}/{LSTM_FILE}`",
        ),
        part(FINETUNE_FILE, finetune_part, "Fine-tuning", f"`adgen bench finetune > {RESULTS_FOLDER}/{FINETUNE_FILE}`"),
        generate_part(generate)
        if generate
        else "**Generation**: "
        + missing("bench_generate.json", "`adgen bench generate > results/bench_generate.json`"),
        part(
            RUN_FILE,
            run_part,
            "Every model on one footing",
            "`adgen run --profile quick`, then `adgen results save runs/quick`",
        ),
        part(
            CATALOG_FILE, catalog_part, "Batch generation", f"`adgen bench catalog > {RESULTS_FOLDER}/{CATALOG_FILE}`"
        ),
        part(
            COMPUTE_FILE,
            compute_part,
            "Quality against training compute",
            f"`adgen bench compute > {RESULTS_FOLDER}/{COMPUTE_FILE}`",
        ),
        part(
            CATEGORY_FILE,
            category_part,
            "Category-conditioned ads",
            f"`adgen bench category > {RESULTS_FOLDER}/{CATEGORY_FILE}`",
        ),
        part(
            DISTRIBUTED_FILE,
            distributed_part,
            "Several processes",
            f"`adgen bench distributed > {RESULTS_FOLDER}/{DISTRIBUTED_FILE}`",
        ),
        part(
            TOKENS_BENCH_FILE,
            tokens_part,
            "Preparing the fine-tuning data",
            f"`adgen bench tokens > {RESULTS_FOLDER}/{TOKENS_BENCH_FILE}`",
        ),
    ]
    return _wrap("\n\n".join(parts))


def _wrap(markdown: str, width: int = 100) -> str:
    """Prose lines wrapped at ``width`` characters like the rest of the README; tables and headings kept."""
    lines = []
    for line in markdown.split("\n"):
        keep = len(line) <= width or line.startswith(("|", "#"))
        lines += [line] if keep else textwrap.wrap(line, width, break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines)
