"""The benchmarks run every way end to end on tiny inputs, in child processes (no speed is asserted)."""

import json

import pytest

from adgen_utils.hardware import cpu_computes_bf16
from benchmarks import bench


def quiet(line):
    pass


def test_the_command_compares_both_ways_of_loading_with_provenance(write_file, capsys):
    path = write_file("ads.csv", "ad\n" + "\n".join(f"Brand{i} Widget {i}" for i in range(200)) + "\n")
    assert bench.main(["data", str(path), "--repeats", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    for way in ("adgen_load_ads", "pandas_read_csv"):
        assert result[way]["rows_read"] == 200 and result[way]["peak_rss_mib"] > 10
        assert len(result[way]["seconds"]) == 1
    assert result["time_ratio_adgen_over_pandas"] > 0
    assert result["measured"]["command"] == f"python -m benchmarks.bench data {path} --repeats 1"


def test_bench_lstm_compares_original_and_ours_and_scales(write_file):
    ads = "\n".join(f"Brand{i % 7} Widget {i % 11} Model {i} Black" for i in range(300))
    path = write_file("corpus/toys/amazon_toys.csv", "ad\n" + ads + "\n")
    corpus = str(path.parent.parent)
    result = bench.bench_lstm(corpus, repeats=1, original_steps=1, steps=2, ads_source=str(path), log=quiet)
    a = result["a_original_vs_ours"]
    assert set(a) == {
        "original_one_hot_windows",
        "ours_lstm_one_hot_input",
        "ours_embedding_lstm",
        "ours_embedding_lstm_sampled_softmax",
    }
    vocabulary = a["original_one_hot_windows"]["vocabulary_size"]
    for way in a.values():
        assert way["vocabulary_size"] == vocabulary  # same ads, same vocabulary
        assert way["median_predictions_per_second"] > 0 and way["peak_rss_mib"] > 50
    assert a["ours_embedding_lstm"]["speedup_over_original"] > 0
    b = result["b_scale"]
    assert b["prepare"]["train_predictions"] > 0
    for loss in ("full", "sampled"):
        assert b[f"train_{loss}_softmax"]["projected_epoch_hours_full_corpus"] > 0


def test_one_epoch_with_the_sampled_softmax_learns(write_file, tmp_path):
    from benchmarks.measure import measure

    ads = "\n".join(f"Brand{i % 7} Widget {i % 11} Model {i % 5} Black" for i in range(600))
    path = write_file("ads.csv", "ad\n" + ads + "\n")
    folder = str(tmp_path / "sequences")
    measure("prepare", source=str(path), folder=folder, min_count=1, max_vocabulary=None)
    epoch = measure("train_epoch", folder=folder, loss="sampled", sampled=8, units=16)
    assert epoch["train_predictions"] > 0 and epoch["epoch_seconds_with_validation"] > 0
    assert 0 < epoch["validation_cross_entropy"] < 10 and epoch["validation_perplexity"] > 1


def test_bench_finetune_compares_packed_and_padded_on_the_same_ads(tiny_folder):
    # The tiny model built once for the session (bench generate builds "tiny" by its name).
    result = bench.bench_finetune(str(tiny_folder), repeats=1, steps=2, batch_size=4, block_size=64, log=quiet)
    ways = ["packed", "padded_to_block", "padded_to_longest_in_batch", "packed_lora"]
    assert all(result[w]["median_tokens_per_second"] > 0 and result[w]["peak_rss_mib"] > 50 for w in ways)
    assert result["packed"]["trained_tokens"] == 2 * 4 * 64  # packed rows are full
    assert result["padded_to_block"]["trained_tokens"] == result["padded_to_longest_in_batch"]["trained_tokens"]
    assert result["padded_to_block"]["trained_tokens"] < result["packed"]["trained_tokens"]
    assert result["packed_over_padded_to_block"] > 0
    if cpu_computes_bf16():  # the way fine-tuning trains on such a CPU
        assert result["packed_bf16"]["trained_tokens"] == result["packed"]["trained_tokens"]
        assert result["bf16_over_fp32"] > 0


def test_bench_generate_compares_batched_and_one_at_a_time_on_the_same_prompts():
    result = bench.bench_generate("tiny", repeats=1, prompts=4, batch_size=4, max_new_tokens=4, log=quiet)
    assert result["one_at_a_time"]["ads"] == result["batched"]["ads"] == 4
    assert result["batched_over_one_at_a_time"] > 0


def test_bench_catalog_kills_resumes_and_checks_every_row(tiny_folder):
    result = bench.bench_catalog(
        str(tiny_folder), products=24, kill_after=6, batch_size=4, max_new_tokens=4, candidates=2, log=quiet
    )
    assert result["products"] == 24 and result["candidates"] == 2
    killed = result["killed_run"]
    assert killed["ends_on_complete_line"] and 0 <= killed["ads_on_disk"] <= 24
    resumed = result["resumed_run"]
    # Only the missing products are written again: the ones on disk in whole batches (of 2) are kept.
    assert killed["ads_on_disk"] - 1 <= resumed["resumed_from"] <= killed["ads_on_disk"]
    assert resumed["resumed_from"] + resumed["products_done"] == 24 and resumed["peak_rss_mib"] > 50
    assert result["rows"] == result["distinct_pairs"] == 24 and result["lost"] == result["repeated"] == 0
    assert 0 <= result["passing_share"] <= 1
    keywords = result["keywords"]  # the same products with keywords: per candidate, both ways
    assert keywords["seconds_per_candidate"]["with_keywords"] > 0 and 0 <= keywords["passing_share_with_keywords"] <= 1
    assert keywords["with_over_without"] is None or keywords["with_over_without"] > 0


def test_bench_spark_compares_one_process_local1_and_local2_on_the_same_products(tiny_folder):
    result = bench.bench_spark(str(tiny_folder), products=8, chunk_products=2, executors=(1, 10), log=quiet)
    assert result["products"] == 8 and result["same_bytes"] == {"ads.csv": True, "ads.csv.candidates.csv": True}
    assert len(result["local1"]["workers"]) == 1 and len(result["local2"]["workers"]) == 2
    for way in ("local1", "local2"):
        assert result[way]["spark_start_seconds"] > 0 and result[way]["rules_broadcast_mib"] > 0
        assert all(w["peak_rss_mib"] > 50 and w["model_load_seconds"] > 0 for w in result[way]["workers"])
        assert sum(w["chunks"] for w in result[way]["workers"]) == 4
    assert result["local2_over_local1"] > 0 and result["one_process"]["products_per_second"] > 0
    hours = result["one_million_products"]["hours"]
    assert set(hours) == {1, 10} and hours[1] > hours[10] > 0


def test_bench_compute_runs_the_lessons_and_adgen_finetune_on_the_same_validation_ads(tmp_path):
    from adgen_utils.settings import Finetune, profile_values
    from adgen_utils.study.compute import CHALLENGER, CONTENDERS

    figure = tmp_path / "compute.png"
    # The ci profile on fewer ads: 1,200 drawn (128 of them for validation), 100 for each fine-tune.
    result = bench.bench_compute(
        "ci", epochs_scale=1.0, fractions=(0.5, 1.0), figure=str(figure), sample_size=1200, finetune_ads=100, log=quiet
    )
    curves = result["curves"]
    by_model = {m: [r for r in curves if r["model"] == m] for m in {*CONTENDERS.values(), *CHALLENGER.values()}}
    assert all(len(by_model[m]) == 2 for m in CONTENDERS.values())  # the ci profile's 2 epochs, one row each
    tuned = by_model[next(iter(CHALLENGER.values()))]
    assert [r["train_seconds"] > 0 for r in tuned] == [False, True, True]  # before training, then 2 budgets
    assert result["finetune_steps"][0] < result["finetune_steps"][1] and tuned[1]["step"] < tuned[2]["step"]
    validation_ads = profile_values("ci", Finetune)["validation_ads"]
    assert {r["validation_ads"] for r in curves} == {result["validation_ads"]} == {validation_ads}
    assert all(r["train_flops"] >= 0 and 0 < r["bits_per_char"] < 20 for r in curves)
    (line,) = result["flat"].values()
    assert 0 < line < 20 and figure.stat().st_size > 10_000
    assert set(result["overtaking"]) >= {"best_lstm", "at_seconds", "at_flops"}


def test_bench_category_compares_the_prefix_on_a_corpus_of_categories(write_file, embedded_ads, tiny_folder):
    def category(ad):
        return "watches" if "Watch" in ad else "tv" if "TV" in ad else "other"

    ads = embedded_ads["ad"].sample(n=1500, random_state=0).tolist()
    lines = ["ad,category", *(f'"{ad.replace(chr(34), chr(34) * 2)}",{category(ad)}' for ad in ads)]
    path = write_file("corpus.csv", "\n".join(lines) + "\n")
    result = bench.bench_category(
        str(path), sample_size=1200, steps=4, products=12, base_model=str(tiny_folder), log=quiet
    )
    assert result["categories"] == 3 and result["products"] == 12 and result["steps"] == 4
    for way in ("without_prefix", "with_prefix"):
        assert 0 < result[way]["bits_per_char"] < 20 and 0 <= result[way]["in_category"] <= 1
    assert result["real_ads_in_category"] > 0.5  # the classifier knows these categories
    assert len(result["examples"]) == 6 and {"category", "prompt", "without", "with"} == set(result["examples"][0])


@pytest.mark.parametrize("processes", [(1, 2)])
def test_bench_distributed_reports_speed_and_memory_per_process(processes, tiny_folder):
    result = bench.bench_distributed(
        str(tiny_folder), processes=processes, steps=4, batch_size=8, block_size=64, log=quiet
    )
    assert set(result["runs"]) == {"1", "2"} and result["global_batch_blocks"] == 8
    for count, run in result["runs"].items():
        assert run["processes"] == int(count) and len(run["peak_rss_mib_per_process"]) == int(count)
        assert run["tokens_per_second"] > 0
    assert result["validation_loss_spread"] < 1e-3 * result["runs"]["1"]["final_validation_loss"]


def test_bench_tokens_compares_in_memory_and_streamed_preparation(tmp_path):
    import pandas as pd

    from adgen_utils.layout import EMBEDDED_DATA_FOLDER, repository_root

    corpus = tmp_path / "ads.csv"  # the embedded corpus's first 3,000 ads
    pd.read_csv(next((repository_root() / EMBEDDED_DATA_FOLDER).glob("*.csv")), nrows=3000).to_csv(corpus, index=False)
    result = bench.bench_tokens(str(corpus), model="tiny", block_size=64, full_corpus_ads=100_000, log=quiet)
    memory, streamed = result["in_memory"], result["token_file"]
    assert [r["ads"] for r in memory["runs"]] == [r["ads"] for r in streamed["runs"]]
    assert memory["runs"][0]["corpus_ads"] == result["corpus_ads"] // 2
    assert memory["runs"][0]["ads"] < memory["runs"][1]["ads"]
    assert [r["tokens"] for r in memory["runs"]] == [r["tokens"] for r in streamed["runs"]]  # the same tokens
    assert all(r["peak_rss_mib"] > 50 for r in memory["runs"] + streamed["runs"])
    assert streamed["projected_full_corpus_peak_rss_gib"] > 0
