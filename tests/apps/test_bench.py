"""The benchmarks run every way end to end on tiny inputs (no speed is asserted)."""

from adgen_utils.apps.bench import bench_lstm


def test_bench_lstm_compares_original_and_ours_and_scales(write_file):
    ads = "\n".join(f"Brand{i % 7} Widget {i % 11} Model {i} Black" for i in range(300))
    path = write_file("corpus/toys/amazon_toys.csv", "ad\n" + ads + "\n")
    result = bench_lstm(
        str(path.parent.parent), repeats=1, original_steps=1, steps=2, ads_source=str(path), log=lambda line: None
    )
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


def test_bench_finetune_compares_packed_and_padded_on_the_same_ads():
    from adgen_utils.apps.bench import bench_finetune

    result = bench_finetune("tiny", repeats=1, steps=2, batch_size=4, block_size=64, log=lambda line: None)
    ways = ["packed", "padded_to_block", "padded_to_longest_in_batch", "packed_lora"]
    assert all(result[w]["median_tokens_per_second"] > 0 and result[w]["peak_rss_mib"] > 50 for w in ways)
    assert result["packed"]["trained_tokens"] == 2 * 4 * 64  # packed rows are full
    assert result["padded_to_block"]["trained_tokens"] == result["padded_to_longest_in_batch"]["trained_tokens"]
    assert result["padded_to_block"]["trained_tokens"] < result["packed"]["trained_tokens"]
    assert result["packed_over_padded_to_block"] > 0


def test_bench_generate_compares_batched_and_one_at_a_time_on_the_same_prompts():
    from adgen_utils.apps.bench import bench_generate

    result = bench_generate("tiny", repeats=1, prompts=4, batch_size=4, max_new_tokens=4, log=lambda line: None)
    assert result["one_at_a_time"]["ads"] == result["batched"]["ads"] == 4
    assert result["batched_over_one_at_a_time"] > 0


def test_bench_catalog_kills_resumes_and_checks_every_row(tiny_folder):
    from adgen_utils.apps.bench import bench_catalog

    result = bench_catalog(
        str(tiny_folder), products=24, kill_after=6, batch_size=4, max_new_tokens=4, log=lambda line: None
    )
    assert result["products"] == 24
    killed = result["killed_run"]
    assert killed["ends_on_complete_line"] and 0 <= killed["ads_on_disk"] <= 24
    resumed = result["resumed_run"]
    assert resumed["resumed_from"] == killed["ads_on_disk"]  # only the missing ads are written again
    assert resumed["resumed_from"] + resumed["ads_written"] == 24 and resumed["peak_rss_mib"] > 50
    assert result["rows"] == result["distinct_pairs"] == 24 and result["lost"] == result["repeated"] == 0
