"""The README's "Measured" section is rendered from results/*.json: the tables show the saved numbers,
the sentences follow them (a changed value changes the README), a missing file gives a note, and
``adgen sync --check`` finds a README that no longer agrees with its results."""

import json
import shutil

import pytest
from helpers import REPO

from adgen_utils.series import measured, sync

MACHINE = {"cpu_cores": 2, "memory_gib": 23.5, "gpu": None, "platform": "Linux-test", "python": "3.11.7"}


def provenance(command: str) -> dict:
    return {"date": "2026-01-02 03:04 UTC", "command": command, "machine": MACHINE}


def way(rate: str, median: float, runs: list[float], rss: float, **extra) -> dict:
    return {f"median_{rate}": median, rate: runs, "median_seconds": 10.0, "peak_rss_mib": rss, **extra}


def bench_files() -> dict[str, dict]:
    """Small results of every benchmark and of a quick run, as the commands write them."""
    data = {
        "measured": provenance("adgen bench data corpus"),
        "source": "corpus",
        "repeats": 3,
        "adgen_load_ads": {"median_seconds": 4.98, "peak_rss_mib": 332.7, "rows_read": 1000, "rows_kept": 900},
        "pandas_read_csv": {"median_seconds": 0.78, "peak_rss_mib": 183.9, "rows_read": 977, "rows_kept": 977},
        "time_ratio_adgen_over_pandas": 6.38,
    }
    rate = "predictions_per_second"
    lstm = {
        "measured": provenance("adgen bench lstm --corpus corpus --full-epoch"),
        "repeats": 2,
        "a_prepare": {"train_ads": 10238, "vocabulary_size": 22892},
        "a_original_vs_ours": {
            "original_one_hot_windows": way(rate, 637, [630, 644], 10540),
            "ours_lstm_one_hot_input": way(
                rate, 1645, [1640, 1650], 2133, speedup_over_original=2.58, peak_rss_over_original=0.202
            ),
            "ours_embedding_lstm": way(
                rate, 3351, [3350, 3352], 2157, speedup_over_original=5.26, peak_rss_over_original=0.205
            ),
            "ours_embedding_lstm_sampled_softmax": way(
                rate, 21568, [21500, 21600], 867, speedup_over_original=33.9, peak_rss_over_original=0.0823
            ),
        },
        "b_scale": {
            "corpus": "corpus",
            "prepare": {
                "median_seconds": 13.5,
                "peak_rss_mib": 330,
                "rows_read": 321677,
                "train_ads": 198304,
                "vocabulary_size": 65166,
            },
            "train_full_softmax": {
                "predictions_per_second": 989.0,
                "epoch_hours_this_corpus": 0.87,
                "projected_epoch_hours_full_corpus": 8.7,
            },
            "train_sampled_softmax": {
                "predictions_per_second": 7505.0,
                "epoch_hours_this_corpus": 0.12,
                "projected_epoch_hours_full_corpus": 1.15,
            },
            "full_corpus_scale_factor": 9.95,
            "one_epoch_sampled_softmax": {
                "median_seconds": 530.0,
                "peak_rss_mib": 6246.0,
                "epoch_seconds_with_validation": 524.0,
                "validation_perplexity": 299.4,
            },
        },
    }
    rate = "tokens_per_second"
    finetune = {
        "measured": provenance("adgen bench finetune"),
        "model": "smollm2-135m",
        "repeats": 2,
        "timed_steps": 3,
        "batch_size": 4,
        "block_size": 128,
        "packed": way(rate, 141.8, [140, 143.6], 3391, trained_tokens=1536),
        "padded_to_block": way(rate, 45.0, [44.9, 45.1], 3458, trained_tokens=501),
        "padded_to_longest_in_batch": way(rate, 75.6, [75.5, 75.7], 3203, trained_tokens=501),
        "packed_lora": way(rate, 158.1, [158.0, 158.2], 3214, trained_tokens=1536),
        "packed_over_padded_to_block": 3.15,
        "packed_over_padded_to_longest_in_batch": 1.88,
    }

    def generate(prompts: int, one: float, batched: float, ratio: float, command: str) -> dict:
        rate = "ads_per_second"
        return {
            "measured": provenance(command),
            "model": "smollm2-135m",
            "repeats": 2,
            "prompts": prompts,
            "batch_size": prompts,
            "max_new_tokens": 24,
            "one_at_a_time": way(rate, one, [one, one], 1080, ads=prompts, mean_ad_words=7.5),
            "batched": way(rate, batched, [batched, batched], 1194, ads=prompts, mean_ad_words=7.5),
            "batched_over_one_at_a_time": ratio,
        }

    run = {
        "measured": {**provenance("adgen results save runs/quick"), "profile": "quick"},
        "profile": "quick",
        "run_dir": "runs/quick",
        "notebooks": [
            {"notebook": "04_embedding_lstm", "status": "ok", "seconds": 250.0},
            {"notebook": "07_evaluation", "status": "ok", "seconds": 210.0},
        ],
        "comparison": [
            {
                "model": "LSTM (03)",
                "family": "word-level LSTM",
                "setting": "trained from scratch",
                "unknown_words_charged": "P(<unk>) × character-bigram spelling",
                "ads": 100,
                "oov_share": 0.098,
                "top1_accuracy": 0.17,
                "top5_accuracy": 0.338,
                "per_word_perplexity": 1896.2,
                "bits_per_char": 1.89,
                "model_tokens_per_word": 1.0,
            },
            {
                "model": "fine-tuned (06)",
                "family": "transformer",
                "setting": "fine-tuned",
                "unknown_words_charged": "none needed: open vocabulary (bytes)",
                "ads": 100,
                "oov_share": 0.0,
                "top1_accuracy": 0.142,
                "top5_accuracy": 0.285,
                "per_word_perplexity": 3334.0,
                "bits_per_char": 2.03,
                "model_tokens_per_word": 2.08,
            },
        ],
        "models": {
            "03_lstm": {
                "input": "one_hot",
                "loss": "full",
                "epochs_run": 3,
                "train_ads": 10238,
                "test_perplexity": 112.4,
            },
            "04_embedding_lstm": {
                "input": "embedding",
                "loss": "full",
                "epochs_run": 5,
                "train_ads": 10238,
                "test_perplexity": 42.1,
            },
            "06_fine_tuning": {"train_texts": 300, "steps": 29, "train_seconds": 240.0},
        },
    }
    catalog = {
        "measured": provenance("adgen bench catalog --products 1000 --kill-after 40"),
        "model": "smollm2-135m",
        "generate_command": "adgen generate --model smollm2-135m --input products.csv --output ads.csv "
        "--per-product 1 --max-new-tokens 32 --batch-size 32",
        "decoding": "sample (default)",
        "products": 1000,
        "kill_after_seconds": 40.0,
        "killed_run": {"killed": True, "seconds": 40.1, "ads_on_disk": 128, "ends_on_complete_line": True},
        "candidates": 8,
        "resumed_run": {
            "seconds": 220.0,
            "peak_rss_mib": 1228.8,
            "resumed_from": 128,
            "products_done": 872,
            "generating_seconds": 212.2,
            "products_per_second": 4.11,
        },
        "passing_share": 0.875,
        "rejected_candidates": {"off product": 120, "other brand": 300},
        "rows": 1000,
        "distinct_pairs": 1000,
        "lost": 0,
        "repeated": 0,
    }
    curve = [
        {"model": "Embedding LSTM (04)", "train_seconds": 20.0, "train_flops": 2e12, "bits_per_char": 1.9},
        {"model": "Embedding LSTM (04)", "train_seconds": 80.0, "train_flops": 8e12, "bits_per_char": 1.6},
        {"model": "fine-tuned transformer (06)", "train_seconds": 0.0, "train_flops": 0.0, "bits_per_char": 2.5},
        {"model": "fine-tuned transformer (06)", "train_seconds": 300.0, "train_flops": 8e13, "bits_per_char": 1.4},
    ]
    compute = {
        "measured": provenance("adgen bench compute"),
        "profile": "quick",
        "splits": {"train": 10238},
        "validation_ads": 100,
        "base_model": "smollm2-135m",
        "figure": "figures/bench_compute.png",
        "curves": [{**row, "per_word_perplexity": 300.0, "top5_accuracy": 0.45} for row in curve],
        "flat": {"smollm2-135m 3-shot": 2.2},
        "overtaking": {
            "best_lstm": {
                "model": "Embedding LSTM (04)",
                "bits_per_char": 1.6,
                "train_seconds": 80.0,
                "train_flops": 8e12,
            },
            "at_seconds": 150.0,
            "at_flops": 4e13,
            "finetuned_bits_per_char": 1.4,
            "margin": 0.125,
            "finetuned_budget": {"train_seconds": 300.0, "train_flops": 8e13},
        },
    }
    category = {
        "measured": provenance("adgen bench category"),
        "corpus": "../shared/data/amazon_ads_sample10",
        "sample_size": 30000,
        "categories": 40,
        "base_model": "smollm2-135m",
        "steps": 200,
        "validation_ads": 100,
        "products": 80,
        "without_prefix": {
            "bits_per_char": 1.8,
            "per_word_perplexity": 700.0,
            "top5_accuracy": 0.4,
            "in_category": 0.55,
        },
        "with_prefix": {"bits_per_char": 1.7, "per_word_perplexity": 600.0, "top5_accuracy": 0.42, "in_category": 0.8},
        "real_ads_in_category": 0.85,
    }
    return {
        "bench_data.json": data,
        "bench_lstm.json": lstm,
        "bench_finetune.json": finetune,
        "bench_generate.json": generate(64, 0.94, 11.29, 12.0, "adgen bench generate"),
        "bench_generate_32.json": generate(32, 1.01, 7.76, 7.69, "adgen bench generate --prompts 32 --batch-size 32"),
        "run_quick.json": run,
        "bench_catalog.json": catalog,
        "bench_compute.json": compute,
        "bench_category.json": category,
        "bench_distributed.json": {
            "measured": provenance("adgen bench distributed"),
            "model": "smollm2-135m",
            "steps": 6,
            "global_batch_blocks": 8,
            "block_size": 64,
            "cpu_cores": 2,
            "runs": {
                "1": {"tokens_per_second": 300.0, "peak_rss_mib_per_process": [3000.0], "final_validation_loss": 3.2},
                "2": {
                    "tokens_per_second": 250.0,
                    "peak_rss_mib_per_process": [2900.0, 2800.0],
                    "final_validation_loss": 3.2000004,
                },
            },
            "validation_loss_spread": 4e-7,
        },
        "bench_tokens.json": {
            "measured": provenance("adgen bench tokens"),
            "corpus": "../shared/data/amazon_ads_sample10",
            "model": "smollm2-135m",
            "block_size": 64,
            "corpus_ads": 248126,
            "full_corpus_ads": 2500000,
            "in_memory": {
                "runs": [
                    {
                        "corpus_ads": 124063,
                        "ads": 99152,
                        "tokens": 4000000,
                        "prepare_seconds": 20.0,
                        "peak_rss_mib": 2000.0,
                    },
                    {
                        "corpus_ads": 248126,
                        "ads": 198304,
                        "tokens": 8000000,
                        "prepare_seconds": 40.0,
                        "peak_rss_mib": 3500.0,
                    },
                ],
                "projected_full_corpus_peak_rss_gib": 38.2,
            },
            "token_file": {
                "runs": [
                    {
                        "corpus_ads": 124063,
                        "ads": 99152,
                        "tokens": 4000000,
                        "prepare_seconds": 21.0,
                        "peak_rss_mib": 900.0,
                    },
                    {
                        "corpus_ads": 248126,
                        "ads": 198304,
                        "tokens": 8000000,
                        "prepare_seconds": 42.0,
                        "peak_rss_mib": 1000.0,
                    },
                ],
                "projected_full_corpus_peak_rss_gib": 3.2,
            },
        },
    }


@pytest.fixture
def results(tmp_path):
    """A results folder holding every file; returns (folder, write(name, result))."""
    folder = tmp_path / "results"
    folder.mkdir()

    def write(name: str, result: dict) -> None:
        (folder / name).write_text(json.dumps(result))

    for name, result in bench_files().items():
        write(name, result)
    return folder, write


def test_the_tables_show_the_saved_numbers_and_where_they_came_from(results):
    folder, _ = results
    section = measured.measured_section(folder)
    assert section.startswith("## Measured on this machine (2 cores, 24 GiB, no GPU)\n")
    text = " ".join(section.split())  # prose is wrapped at 100 characters
    shown = [
        "| adgen `load_ads`: load, clean and split | 4.98 s | 333 MiB | 1,000 | 900 |",
        "6.38× the time",
        "23 fewer rows",
        "| ours, Embedding LSTM, sampled softmax (512) | 21,568 | 33.9× | 867 MiB | 0.0823 |",
        "989 predictions/s → 0.87 h per epoch; full 3.2M-ad corpus ≈ 8.7 h per epoch",
        "524 s with validation, 6.1 GiB peak; validation perplexity 299",
        "| one ad per row, padded to 128 tokens | 45 (44.9, 45.1) | 3.15× faster | 3,458 MiB |",
        "| 64, 64 (`adgen bench generate`) | 0.94 | 11.3 | 12× | 1,080 MiB / 1,194 MiB |",
        "| LSTM (03), one-hot, 3 epochs | 9.8% | **17.0%** | **33.8%** | **1,896** | **1.89** | 1.00 |",
        "| fine-tuned (06): 300 ads, 29 steps | 0 | 14.2% |",
        "**4.11 products/s**",
        "87.5% of the products got an ad that passes every rule (candidates rejected: off product 120, other brand 300)",
        "128 ads on disk",
        "| fine-tuned transformer (06) | 300 | 8e+13 | 1.400 | 300 | 45.0% |",
        "| smollm2-135m 3-shot (no training) | 0 | 0 | 2.200 | | |",
        "overtakes it after about 150 s of fine-tuning on this machine (4e+13 FLOPs) and ends 12% below it",
        "| with the category prefix | 1.700 | 600 | 42.0% | 80% |",
        "| 2 | 250 | 2,900 MiB / 2,800 MiB | 3.2000 |",
        "| streamed to a token file (what fine-tuning does) | 248,126 | 198,304 | 8,000,000 | 42.0 | 1,000 MiB | 3.2 GiB |",
        "Here 2 processes train 0.833× the tokens per second of 1",
        "the whole corpus needs about 3.2 GiB (under the 4 GiB asked for), in memory about 38.2 GiB",
        "The prefix lowers held-out bits per character by 5.6% and puts 80% of the ads in the category asked for, "
        "against 55% without it",
        "On 80 products a difference in that share under about 14 percentage points (twice its standard error) "
        "is sampling noise: this one (25 points) is beyond it.",
        "none lost or repeated",
    ]
    assert [s for s in shown if s not in text] == []
    # Every table says its file, date, machine and command.
    for name, result in bench_files().items():
        assert f"`results/{name}`: measured 2026-01-02 03:04 UTC on 2 cores, 24 GiB, no GPU" in text
        assert f"by `{result['measured']['command']}`" in text


def test_the_sentences_are_computed_from_the_numbers(results):
    folder, write = results
    text = " ".join(measured.measured_section(folder).split())
    computed = [
        "~18 MFLOP per prediction",
        "the 10× target is met only with the sampled softmax (33.9×; the full softmax reaches 5.26×)",
        "The 10× target is met from batches of 64 (12×); this CPU gives 32 prompts per batch 7.69×.",
        "A padded row of this corpus holds ~42 real tokens",
        "trains 1.88× fewer tokens per second than packing",
        "with `<unk>` as a free word their per-token test perplexity was 112 and 42",
    ]
    assert [s for s in computed if s not in text] == []
    assert "these ratios are rough" not in text

    files = bench_files()
    files["bench_generate.json"]["batched_over_one_at_a_time"] = 9.14
    files["bench_lstm.json"]["a_original_vs_ours"]["ours_embedding_lstm_sampled_softmax"]["speedup_over_original"] = 8.5
    files["bench_finetune.json"]["packed"]["tokens_per_second"] = [102.5, 231.6]
    for name in ("bench_generate.json", "bench_lstm.json", "bench_finetune.json"):
        write(name, files[name])
    changed = " ".join(measured.measured_section(folder).split())
    assert "The 10× target is not met on this CPU: 64 prompts per batch 9.14×, 32 prompts per batch 7.69×." in changed
    assert "The 10× target is not met: the sampled softmax gives 8.5×" in changed
    assert "The runs of one way differ by up to 2.26× (`packed`: 102 and 232), so these ratios are rough." in changed


def test_a_missing_file_gives_a_note_not_an_error(results):
    folder, _ = results
    for name in ("bench_lstm.json", "run_quick.json", "bench_generate.json", "bench_generate_32.json"):
        (folder / name).unlink()
    text = " ".join(measured.measured_section(folder).split())
    assert "**LSTM**: _No `results/bench_lstm.json` yet: `adgen bench lstm" in text
    assert "**Every model on one footing**: _No `results/run_quick.json` yet: `adgen run --profile quick`" in text
    assert "**Generation**: _No `results/bench_generate.json` yet" in text
    assert "**Data** (`adgen bench data corpus`" in text  # the others are still rendered
    assert measured.measured_section(folder / "absent").startswith("## Measured\n")


def test_a_file_that_is_not_json_is_named(results):
    folder, _ = results
    (folder / "bench_lstm.json").write_text("")
    with pytest.raises(ValueError, match="bench_lstm.json is not JSON"):
        measured.measured_section(folder)


def test_sync_writes_the_section_and_check_finds_a_changed_result(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "results", root / "results")
    assert sync.sync(check=True, root=root) == [], "the committed README agrees with the committed results/"
    (root / "results" / "bench_data.json").write_text(json.dumps(bench_files()["bench_data.json"]))
    assert sync.sync(check=True, root=root) == ["README.md"]
    sync.sync(root=root)
    assert (
        "| adgen `load_ads`: load, clean and split | 4.98 s | 333 MiB | 1,000 | 900 |"
        in (root / "README.md").read_text()
    )
    assert sync.sync(check=True, root=root) == []
