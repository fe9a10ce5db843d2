import pandas as pd
import pytest

from adgen_utils.corpus import eda

ADS = [
    "New Sony TV Remote, Black",
    "Sony Bravia 55 inch TV",
    "Apple Watch Band 38mm (Black)",
    "Compatible Apple Watch Band 42mm",
    "2 Pack Fitbit Charge Bands",
]


def test_profile_counts_tokens_words_and_brands():
    profile = eda.profile_corpus(ADS, growth_points=5)
    assert profile.characters.tolist() == [len(ad) for ad in ADS]
    assert profile.tokens.sum() == 28  # 25 words and three punctuation marks: "," "(" ")"
    assert profile.words.tolist() == [5, 5, 5, 5, 5]
    assert profile.token_counts["Sony"] == 2 and profile.token_counts[","] == 1
    assert dict(profile.brands.most_common(3)) == {"Sony": 2, "Apple": 2, "Fitbit": 1}


def test_growth_curve_is_monotone_and_ends_at_the_whole_corpus():
    profile = eda.profile_corpus(ADS * 3, growth_points=10, seed=1)
    growth = profile.growth
    assert growth["ads"].iloc[-1] == 15
    assert growth["distinct_tokens"].iloc[-1] == len(profile.token_counts)
    assert growth["distinct_tokens"].is_monotonic_increasing and growth["tokens"].is_monotonic_increasing


def test_one_hot_size_matches_the_original_windows():
    # 13 tokens -> windows of 4 inputs + 1 target, step 3: starts 0, 3, 6 -> 3 windows.
    assert eda.window_count(13) == 3
    assert eda.window_count(4) == 0
    assert eda.one_hot_gib(1000, 2**18) == pytest.approx(1000 * 5 * 2**18 * 4 / 2**30)


def test_one_hot_projection_follows_heaps_law():
    table = eda.one_hot_projection([1000, 100_000], k=20, beta=0.5, tokens_per_ad=13)
    assert table["vocabulary (Heaps fit)"].tolist() == [600, 6300]  # 20 * sqrt(n), rounded to 100 tokens
    windows = eda.window_count(1000 * 13)
    assert table["one-hot GiB"].iloc[0] == pytest.approx(eda.one_hot_gib(windows, 600))


def test_plots_write_png_files(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from adgen_utils.corpus.data import SplitConfig, split_ads

    ads = split_ads(pd.DataFrame({"ad": ADS * 40, "category": ["tv"] * 200}), SplitConfig())
    report = {"rows_kept": 200, "rows_read": 210, "dropped": {"duplicate": 10}}
    profile = eda.profile_corpus(ads["ad"].tolist())
    eda.plot_load_report(ads, report, tmp_path, "01_ads_per_category")
    lengths = pd.DataFrame({"characters": profile.characters, "words": profile.words})
    eda.plot_ad_lengths(lengths, tmp_path, "01_ad_lengths")
    words = pd.DataFrame(profile.token_counts.most_common(10), columns=["word", "count"])
    brands = pd.DataFrame(profile.brands.most_common(3), columns=["brand", "ads"])
    eda.plot_top_words(words, brands, tmp_path, "01_top_words_brands")
    eda.plot_vocabulary_growth(profile.growth, 20.0, 0.7, tmp_path, "01_vocabulary_growth", memory_gib=24)
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    assert written == [
        "01_ad_lengths.png",
        "01_ads_per_category.png",
        "01_top_words_brands.png",
        "01_vocabulary_growth.png",
    ]
    assert all(p.stat().st_size > 5000 for p in tmp_path.glob("*.png"))
