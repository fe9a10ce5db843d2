"""The data layer on real files: every bad input is repaired, counted as dropped, or a clear error."""

import json

import pandas as pd
import pytest

from adgen_utils.corpus import data
from adgen_utils.corpus.data import CleanConfig, SplitConfig, load_ads
from adgen_utils.errors import CorpusFormatError, CorpusUnavailable


def accounted(report):
    assert report.rows_read == report.rows_kept + sum(report.dropped.values())
    return report


def test_bom_crlf_and_quoted_commas_are_read_exactly(write_file):
    path = write_file(
        "ads.csv",
        b'\xef\xbb\xbfad\r\nApple Watch Band 38mm\r\n"KOLEK Bands, Silicone, for iWatch"\r\n'
        b'"Samsung 12"" TV Mount"\r\n',
    )
    ads, report = load_ads(path)
    assert ads["ad"].tolist() == ["Apple Watch Band 38mm", "KOLEK Bands, Silicone, for iWatch", 'Samsung 12" TV Mount']
    assert ads["line"].tolist() == [2, 3, 4]
    assert accounted(report).rows_read == 3 and not report.dropped


def test_runaway_quote_costs_one_row_not_the_rest_of_the_file(write_file):
    # The real corpus has this: an opening quote never closed, then a stray closing quote
    # lines later. A plain CSV parser merges all these lines into one multi-field record.
    path = write_file(
        "ads.csv",
        'ad\n"Wilson Tennis Shoes Women, Coral, 11\nHEAD Racquetball Glove\nYonex Badminton Racket\n'
        'Wilson Shoes Women", Coral," 6"""\nBolle Tennis Skirt\n',
    )
    ads, report = load_ads(path)
    assert ads["ad"].tolist() == [
        "Wilson Tennis Shoes Women, Coral, 11",
        "HEAD Racquetball Glove",
        "Yonex Badminton Racket",
        "Bolle Tennis Skirt",
    ]
    assert report.repaired == {"unterminated_quote": 1}
    assert report.dropped == {"malformed_quoting": 1}
    accounted(report)


def test_title_wrapped_over_two_lines_is_joined(write_file):
    path = write_file("ads.csv", 'ad\n"SCHAEFER 30"" Circulation Fan—\n9420 CFM, 1/2 HP"\nNext Ad Here\n')
    ads, report = load_ads(path)
    assert ads["ad"].tolist() == ['SCHAEFER 30" Circulation Fan— 9420 CFM, 1/2 HP', "Next Ad Here"]
    assert report.repaired == {"joined_lines": 1}
    assert accounted(report).rows_read == 2


def test_invalid_utf8_and_replacement_characters_are_counted_drops(write_file):
    path = write_file("ads.csv", b"ad\nGood Ad One\nBad \xff\xfe Bytes Ad\nLost \xef\xbf\xbd Char Ad\nGood Ad Two\n")
    ads, report = load_ads(path)
    assert ads["ad"].tolist() == ["Good Ad One", "Good Ad Two"]
    assert report.dropped == {"invalid_utf8": 1, "replacement_character": 1}
    accounted(report)


def test_huge_fields_are_dropped_as_too_long_without_crashing(write_file):
    huge = "x" * 200_000
    path = write_file("ads.csv", f'ad\nShort Normal Ad\n{huge}\n"{huge}, quoted"\n')
    ads, report = load_ads(path)
    assert ads["ad"].tolist() == ["Short Normal Ad"]
    assert report.dropped == {"too_long": 2}
    accounted(report)


def test_length_bounds_empty_rows_and_repeated_headers(write_file):
    path = write_file("ads.csv", "ad\nTie\n\n   \nad\nA reasonable ad title\n")
    ads, report = load_ads(path, clean=CleanConfig(min_chars=5, max_chars=100))
    assert ads["ad"].tolist() == ["A reasonable ad title"]
    assert report.dropped == {"too_short": 1, "empty": 2, "repeated_header": 1}
    accounted(report)


def test_whitespace_and_unicode_are_normalised_before_deduplication(write_file):
    path = write_file(
        "ads.csv",
        "ad\nApple  Watch\tBand\u00a0Black\n\u200bApple Watch Band Black \nＡpple Watch Band Black\nOther Ad Text\n",
    )
    ads, report = load_ads(path)
    assert ads["ad"].tolist() == ["Apple Watch Band Black", "Other Ad Text"]
    assert report.dropped == {"duplicate": 2}
    accounted(report)


def test_header_variants_are_read_and_reported(write_file, tmp_path):
    write_file("corpus/beauty/amazon_beauty_a.csv", "a\nLipstick Red Matte\n")
    write_file("corpus/beauty/amazon_beauty_tab.csv", "\tad\nHair Dryer 1875W\n")
    ads, report = load_ads(tmp_path / "corpus")
    assert sorted(ads["ad"]) == ["Hair Dryer 1875W", "Lipstick Red Matte"]
    assert report.header_variants == {"beauty/amazon_beauty_a.csv": "a", "beauty/amazon_beauty_tab.csv": "\tad"}


def test_wrong_column_is_a_clear_error_naming_the_columns(write_file):
    path = write_file("products.csv", "title,price\nApple Watch Band,9.99\n")
    with pytest.raises(CorpusFormatError, match=r"no 'ad' column; the columns are \['title', 'price'\]"):
        load_ads(path)
    ads, _ = load_ads(path, text_column="title")
    assert ads["ad"].tolist() == ["Apple Watch Band"]


def test_headerless_and_empty_files_are_clear_errors(write_file):
    with pytest.raises(CorpusFormatError, match="does not look like a header"):
        load_ads(write_file("headerless.csv", "Apple Watch Band 38mm Black\nSony TV Remote\n"))
    with pytest.raises(CorpusFormatError, match="empty"):
        load_ads(write_file("empty.csv", b""))


def test_a_bad_file_in_a_folder_is_skipped_with_its_reason(write_file, tmp_path):
    write_file("corpus/toys/amazon_toys.csv", "ad\nLEGO Classic Bricks Box\n")
    write_file("corpus/toys/amazon_toys_prices.csv", "title,price\nLEGO,9\n")
    ads, report = load_ads(tmp_path / "corpus")
    assert ads["ad"].tolist() == ["LEGO Classic Bricks Box"]
    assert list(report.skipped_files) == ["toys/amazon_toys_prices.csv"]
    assert "no 'ad' column" in report.skipped_files["toys/amazon_toys_prices.csv"]


def test_multi_column_file_with_category_column(write_file):
    path = write_file("mine.csv", 'id,ad,category\n1,Garmin Forerunner 55,wearables\n2,"Roku Express, HD",\n')
    ads, _ = load_ads(path)
    assert ads["ad"].tolist() == ["Garmin Forerunner 55", "Roku Express, HD"]
    assert ads["category"].tolist() == ["wearables", "mine"]


def test_categories_come_from_top_folder_or_file_name(write_file, tmp_path):
    write_file("corpus/electronics/amazon_electronics_tv.csv", "ad\nSony Bravia 55 inch TV\n")
    write_file("corpus/sports-outdoors/fitness/running/amazon_fitness_running.csv", "ad\nNike Running Shorts\n")
    write_file("corpus/amazon_smart-home.csv", "ad\nEcho Dot 3rd Gen Speaker\n")
    write_file("corpus/notes.txt", "not a csv")
    ads, report = load_ads(tmp_path / "corpus")
    assert dict(zip(ads["ad"], ads["category"])) == {
        "Sony Bravia 55 inch TV": "electronics",
        "Nike Running Shorts": "sports-outdoors",
        "Echo Dot 3rd Gen Speaker": "smart-home",
    }
    assert report.files_read == 3
    only, _ = load_ads(tmp_path / "corpus", categories=["smart-home"])
    assert only["ad"].tolist() == ["Echo Dot 3rd Gen Speaker"]
    with pytest.raises(ValueError, match="Unknown categories \\['toys'\\]"):
        load_ads(tmp_path / "corpus", categories=["toys"])


def test_missing_sources_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(CorpusUnavailable, match="'embedded'.*'kaggle'.*path"):
        load_ads(tmp_path / "nowhere")
    with pytest.raises(CorpusUnavailable, match="No .csv files"):
        load_ads(tmp_path)


def test_kaggle_unreachable_names_the_local_folder_alternative(monkeypatch):
    kagglehub = pytest.importorskip("kagglehub")

    def offline(handle, *args, **kwargs):
        raise ConnectionError(f"cannot reach the network for {handle}")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    with pytest.raises(CorpusUnavailable) as error:
        data.resolve_source("kaggle")
    message = str(error.value)
    assert "sachsene/amazons-advertisements" in message and "data_source='/path/to" in message


def test_sampling_is_counted_and_keeps_each_ads_split(write_file):
    lines = "\n".join(f"Brand{i} Product Model {i} Widget" for i in range(300))
    path = write_file("ads.csv", "ad\n" + lines + "\n")
    full, _ = load_ads(path)
    sample, report = load_ads(path, sample_size=50, seed=3)
    assert len(sample) == 50 and report.dropped == {"sampled_out": 250}
    accounted(report)
    merged = sample.merge(full, on="ad", suffixes=("", "_full"))
    assert (merged["split"] == merged["split_full"]).all()
    again, _ = load_ads(path, sample_size=50, seed=3)
    assert again["ad"].tolist() == sample["ad"].tolist()
    with pytest.raises(ValueError, match="sample_size"):
        load_ads(path, sample_size=0)


@pytest.mark.parametrize(
    "variants",
    [
        ["Nike Sport Band (Black)", "Nike Sport Band (Blue)", "nike sport band - Rose Gold", "Nike Sport Band, 2 Pack"],
        ["Hanes Men's T-Shirt, Navy, X-Large", "Hanes Men's T-Shirt, White, Small", "Hanes Men's T-Shirt (Pack of 6)"],
        ["Apple Watch Band 38mm 40mm [Midnight Blue]", "Apple Watch Band 38mm 40mm | Size M/L"],
        ["Running Shoe, Black, 8 M US", "Running Shoe, Grey/Blue, 10.5 M US"],
    ],
)
def test_variants_of_one_product_share_a_product_key(variants):
    assert len({data.product_key(v) for v in variants}) == 1


def test_different_products_keep_different_keys():
    keys = {data.product_key(a) for a in ["Nike Sport Band (Black)", "Nike Running Shoe (Black)", "Black"]}
    assert len(keys) == 3


def test_split_is_deterministic_leak_free_and_near_the_asked_fractions():
    ads = pd.DataFrame({"ad": [f"Brand{i} Widget Model {i} ({c})" for i in range(4000) for c in ("Black", "Red")]})
    config = SplitConfig(validation=0.1, test=0.2, seed=7)
    split = data.split_ads(ads, config)
    assert split.groupby("product_key")["split"].nunique().max() == 1
    shares = split["split"].value_counts(normalize=True)
    assert abs(shares["test"] - 0.2) < 0.03 and abs(shares["validation"] - 0.1) < 0.03
    shuffled = data.split_ads(ads.sample(frac=1, random_state=1), config)
    assert shuffled.set_index("ad")["split"].to_dict() == split.set_index("ad")["split"].to_dict()
    other_seed = data.split_ads(ads, SplitConfig(validation=0.1, test=0.2, seed=8))
    assert (other_seed["split"] != split["split"]).any()
    with pytest.raises(ValueError, match="fractions"):
        SplitConfig(validation=0.6, test=0.5)


def test_saved_dataset_round_trips_and_a_missing_one_says_how_to_make_it(write_file, tmp_path):
    ads, report = load_ads(write_file("ads.csv", "ad\nFirst Ad Title\nSecond Ad Title\nThird Ad Title\n"))
    data.save_dataset(ads, report, tmp_path / "run" / "data")
    loaded = data.load_dataset(tmp_path / "run" / "data")
    assert loaded["ad"].tolist() == ads["ad"].tolist()
    assert loaded["split"].astype(str).tolist() == ads["split"].astype(str).tolist()
    saved_report = json.loads((tmp_path / "run" / "data" / "load_report.json").read_text())
    assert saved_report["rows_kept"] == 3
    train = data.load_dataset(tmp_path / "run" / "data", split="train")
    assert set(train["split"]) <= {"train"}
    with pytest.raises(FileNotFoundError, match=r"Run the corpus lesson \(01\) first"):
        data.load_dataset(tmp_path / "elsewhere")


def test_embedded_corpus_loads_completely():
    ads, report = load_ads("embedded")
    accounted(report)
    assert report.rows_read == 13_070 and report.rows_kept > 12_500
    assert set(report.splits) == {"train", "validation", "test"}
    assert ads.groupby("product_key")["split"].nunique().max() == 1
