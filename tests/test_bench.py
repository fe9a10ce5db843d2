"""The LSTM benchmark runs both ways end to end on a tiny corpus (no speed is asserted)."""
from adgen_utils.bench import bench_lstm


def test_bench_lstm_compares_original_and_ours_and_scales(write_file):
    ads = "\n".join(f"Brand{i % 7} Widget {i % 11} Model {i} Black" for i in range(300))
    path = write_file("corpus/toys/amazon_toys.csv", "ad\n" + ads + "\n")
    result = bench_lstm(str(path.parent.parent), repeats=1, original_steps=1, steps=2,
                        ads_source=str(path), log=lambda line: None)
    a = result["a_original_vs_ours"]
    assert set(a) == {"original_one_hot_windows", "ours_lstm_one_hot_input", "ours_embedding_lstm",
                      "ours_embedding_lstm_sampled_softmax"}
    vocabulary = a["original_one_hot_windows"]["vocabulary_size"]
    for way in a.values():
        assert way["vocabulary_size"] == vocabulary  # same ads, same vocabulary
        assert way["median_predictions_per_second"] > 0 and way["peak_rss_mib"] > 50
    assert a["ours_embedding_lstm"]["speedup_over_original"] > 0
    b = result["b_scale"]
    assert b["prepare"]["train_predictions"] > 0
    for loss in ("full", "sampled"):
        assert b[f"train_{loss}_softmax"]["projected_epoch_hours_full_corpus"] > 0
