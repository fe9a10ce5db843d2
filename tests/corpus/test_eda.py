import numpy as np
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
    stats = eda.corpus_statistics(profile)
    assert stats["ads"] == 5
    assert stats["characters"] == sum(map(len, ADS))
    assert stats["tokens"] == 28  # 25 words and three punctuation marks: "," "(" ")"
    assert stats["words"] == 25
    assert stats["distinct words (case-folded)"] == len(
        {w.lower() for a in ADS for w in a.replace(",", " ").replace("(", " ").replace(")", " ").split()}
    )
    assert eda.top_brands(profile, 3).set_index("brand")["ads"].to_dict() == {"Sony": 2, "Apple": 2, "Fitbit": 1}
    top = eda.top_words(profile, 50).set_index("word")["count"]
    assert top["sony"] == 2 and top["black"] == 2 and "2" not in top.index
    assert eda.ad_lengths(profile)["words"].tolist() == [5, 5, 5, 5, 5]


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


def test_heaps_fit_recovers_a_known_law():
    ads = np.array([100, 300, 1000, 3000, 10000])
    growth = pd.DataFrame({"ads": ads, "distinct_tokens": 20 * ads**0.7})
    k, beta = eda.heaps_fit(growth)
    assert k == pytest.approx(20, rel=1e-6) and beta == pytest.approx(0.7, rel=1e-6)


def test_plots_write_png_files(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from adgen_utils.corpus.data import SplitConfig, split_ads

    ads = split_ads(pd.DataFrame({"ad": ADS * 40, "category": ["tv"] * 200}), SplitConfig())
    report = {"rows_kept": 200, "rows_read": 210, "dropped": {"duplicate": 10}}
    profile = eda.profile_corpus(ads["ad"].tolist())
    eda.plot_load_report(ads, report, tmp_path)
    eda.plot_ad_lengths(eda.ad_lengths(profile), tmp_path)
    eda.plot_top_words(eda.top_words(profile), eda.top_brands(profile), tmp_path)
    eda.plot_vocabulary_growth(profile.growth, tmp_path, memory_gib=24)
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    assert written == [
        "01_ad_lengths.png",
        "01_ads_per_category.png",
        "01_top_words_brands.png",
        "01_vocabulary_growth.png",
    ]
    assert all(p.stat().st_size > 5000 for p in tmp_path.glob("*.png"))


def test_findings_are_computed_from_the_run():
    from adgen_utils.corpus.data import SplitConfig, split_ads

    ads = split_ads(pd.DataFrame({"ad": ADS * 40, "category": ["tv"] * 200}), SplitConfig())
    profile = eda.profile_corpus(ads["ad"].tolist())
    report = {"rows_kept": 200, "rows_read": 210, "dropped": {"duplicate": 10}}
    text = eda.findings(report, ads, profile, memory_gib=24)
    assert "every one of the 210 rows read (200 kept, 10 dropped with a reason)" in text
    assert "no product has ads in more than one split" in text and eda.leaking_products(ads) == 0
    assert "a median of 5 words" in text and "against 24 GiB of memory on this machine" in text
    first = ads.index[ads["product_key"] == ads["product_key"].iloc[0]][0]
    ads.loc[first, "split"] = "test" if ads.loc[first, "split"] != "test" else "train"
    assert eda.leaking_products(ads) == 1
    assert "products with ads in more than one split: 1" in eda.findings(report | {"rows_read": 211}, ads, profile)
    assert "does not add up: 211 rows read" in eda.findings(report | {"rows_read": 211}, ads, profile)
