"""What a seller knows: keywords parsed and found as whole words, the facts read from real ads, the
formats' editorial rules, the keyword rule, and ads measured against the real ad of each product."""

import json
from types import SimpleNamespace

import pandas as pd
import pytest
from study.test_selection import TRAINING, product

from adgen_utils.corpus import facts
from adgen_utils.models import Decoding
from adgen_utils.study import formats, references, selection
from adgen_utils.study.footing import load_ad_model
from adgen_utils.study.selection import AdRules


def test_keywords_are_parsed_from_a_cell_and_found_as_whole_words_case_aside():
    assert facts.parse_keywords(" 44mm ;Stainless  Steel;; black ; BLACK ") == ("44mm", "Stainless Steel", "black")
    assert facts.parse_keywords(None) == facts.parse_keywords("") == ()
    ad = "Fintie Band for Apple Watch 44mm, Stainless Steel Metal Strap, Black"
    assert facts.has_phrase(ad, "stainless steel") and facts.has_phrase(ad, "APPLE WATCH")
    assert not facts.has_phrase("Band 144mm", "44mm") and not facts.has_phrase("Blackout Band", "black")
    assert facts.missing_keywords(ad, ["44mm", "leather", "black", "42mm"]) == ["leather", "42mm"]
    assert facts.keywords_text(("44mm", "black")) == "44mm; black"


def test_the_facts_of_a_real_ad_by_kind_in_order():
    ad = "Fintie Band Compatible with Apple Watch 44mm 42mm, Stainless Steel Metal Strap, Rose Gold, 6.5 ft"
    found = facts.facts_of(ad)
    assert found["size"] == ["44mm", "42mm", "6.5 ft"]
    assert found["material"] == ["Stainless Steel", "Metal"]  # "Steel" is inside "Stainless Steel"
    assert found["colour"] == ["Rose Gold"]  # not "Gold" as well
    assert found["fits"] == ["Apple Watch 44mm"]
    keywords = facts.keywords_from(ad, "Fintie Band", most=3)
    assert keywords == ("44mm", "Stainless Steel", "Rose Gold")  # one of each kind first
    assert all(facts.has_phrase(ad, k) for k in keywords)
    assert facts.keywords_from("Acme Widget", "Acme Widget") == ()


@pytest.mark.parametrize(
    ("name", "ad", "problem"),
    [
        ("amazon-title", "Acme Band, Free Shipping, Black", "promotional phrase 'free shipping'"),
        ("amazon-title", "Acme Band for Watch! Best Band?", "the character(s) ! ?"),
        ("amazon-title", "Acme Band Band for Band Watch", "'band' 3 times (at most 2)"),
        ("google-headline", "Acme Band!", "the character(s) !"),
        ("google-description", "Soft band.. for every watch", "repeated punctuation"),
    ],
)
def test_each_format_names_what_breaks_its_rules(name, ad, problem):
    assert problem in formats.ad_format(name).problems(ad)


def test_formats_keep_what_their_rules_allow():
    title = formats.ad_format("amazon-title")
    assert title.problems("Acme Band for the Watch, for a Wrist, for Men and Women and Kids") == []  # function words
    assert formats.ad_format("google-description").problems("Soft band, for every watch! Order today.") == []
    with pytest.raises(ValueError, match="amazon-title, google-headline, google-description"):
        formats.ad_format("facebook")


@pytest.fixture(scope="module")
def rules():
    return AdRules(TRAINING)


def with_keywords(brand, words, keywords):
    return SimpleNamespace(**vars(product(brand, words)), keywords=keywords)


def test_a_candidate_without_a_keyword_is_rejected_and_the_keyword_named(rules):
    item = with_keywords("Fintie", "Band", ("44mm", "black"))
    assert rules.judge("Fintie Band for Apple Watch 44mm, Matte Black", item).passed
    verdict = rules.judge("Fintie Band for Apple Watch 40mm, Black", item)
    assert verdict.rejected_by == ("missing keyword",) and verdict.reasons == ("lacks '44mm'",)
    assert rules.judge("Fintie Band 44mm, Black", with_keywords("Fintie", "Band", "44mm; black")).passed  # a cell
    headline = AdRules(TRAINING, format="google-headline")
    long = "Fintie Band for Apple Watch, Soft Sport Strap, Black"
    verdict = headline.judge(long, item)
    assert verdict.ad == "Fintie Band for Apple Watch" and len(verdict.ad) <= 30  # cut at a phrase end
    assert "'black' did not fit in 30 characters" in verdict.rejection()


def test_brands_an_accessory_fits_are_allowed_and_a_second_maker_is_not(rules):
    # The example: a textbook third-party accessory title, once rejected as "other brand".
    fintie = product("Fintie", "Band")
    for ad in (
        "Fintie Band for Apple Watch 44mm, Matte Black",
        "Fintie Band Compatible with Fitbit Charge 3, Black",
        "Fintie Band, Compatible with Apple Watch Series 4/3, Fitbit Versa",
    ):
        assert rules.judge(ad, fintie).passed, ad
    assert "other brand" in rules.judge("Fintie Band Samsung Galaxy Strap, Black", fintie).rejected_by  # as maker


def test_the_format_cuts_what_breaks_it_or_rejects_and_the_brand_may_keep_its_characters(rules):
    fintie = product("Fintie", "Band")
    kept = rules.judge("Fintie Band for Apple Watch, Hot Sale", fintie)
    assert kept.passed and kept.ad == "Fintie Band for Apple Watch"  # cut before the promotional phrase
    assert rules.judge("Fintie Band Hot Sale for Apple Watch", fintie).rejected_by == ("format",)  # nothing to cut
    thrice = rules.judge("Fintie Band for Watch, Watch Strap, Watch Loop", fintie)
    assert thrice.ad == "Fintie Band for Watch, Watch Strap"  # 'watch' twice at most
    assert rules.judge("Yahoo! Band for Apple Watch, Black", product("Yahoo!", "Band")).passed
    with pytest.raises(ValueError, match="1 to 30 for google-headline"):
        AdRules(TRAINING, max_chars=60, format="google-headline")


def test_rouge_l_counts_the_longest_common_subsequence():
    assert references.rouge_l("Fintie Band Black", "fintie band black") == 100
    assert references.rouge_l("Fintie Band", "Fintie Watch Band Strap") == pytest.approx(100 * 2 * 1 * 0.5 / 1.5)
    assert references.rouge_l("", "Fintie") == references.rouge_l("Acme", "Fintie") == 0


def test_ads_are_measured_against_each_products_real_ad(rules, tmp_path):
    real = pd.DataFrame(
        {
            "ad": ["Fintie Band for Apple Watch 42mm, Navy Blue", "Wearlizer Leather Watch Strap, Brown 22mm"],
            "category": ["Watch bands", "Watch bands"],
        }
    )
    products = references.held_out_products(real, size=2)
    assert sorted(map(tuple, products["keywords"])) == [("22mm", "Brown"), ("42mm", "Navy Blue", "Apple Watch")]
    path = tmp_path / "products.csv"
    references.write_references(products, path)
    again = references.read_references(path)
    assert again["keywords"].tolist() == products["keywords"].tolist()
    assert again["prompt"].tolist() == products["prompt"].tolist()
    # A "model" that wrote the real ads for both products: every figure at its best.
    table = references.reference_table({"perfect": references.judged(again["ad"].tolist(), again, rules)}, again, rules)
    assert list(table.index) == ["perfect", references.JOINED, references.REAL]
    assert table.loc["perfect", "keyword_inclusion"] == table.loc["perfect", "passing_share"] == 1
    assert table.loc["perfect", "chrf"] == pytest.approx(100) and table.loc["perfect", "rouge_l"] == 100
    joined = table.loc[references.JOINED]
    assert joined["keyword_inclusion"] == 1 and 0 < joined["chrf"] < 100  # compared as written: every keyword
    assert joined["passing_share"] == 1  # "Fintie Band 42mm Navy Blue Apple Watch": the keyword lets it name Apple
    assert table.loc[references.REAL, "passing_share"] == 1


def test_the_same_candidates_are_judged_again_for_another_format(rules, tiny_folder):
    model = load_ad_model(tiny_folder)
    products = pd.DataFrame(
        [{"brand": "Fintie", "product": "Band", "category": None, "prompt": "Fintie Band", "keywords": ("44mm",)}]
    )
    decoding = Decoding(do_sample=True, temperature=1.0, top_k=50, max_new_tokens=12)
    written = selection.write_for_products(model, products, rules, candidates=3, decoding=decoding)
    headline_rules = rules.for_format("google-headline")
    assert headline_rules.brands is rules.brands and headline_rules.max_chars == 30 and rules.max_chars == 200
    headlines = selection.rejudge(model, written, products, headline_rules)
    assert [c.written for c in headlines[0].candidates] == [c.written for c in written[0].candidates]
    for candidate in headlines[0].candidates:
        assert candidate.verdict == headline_rules.judge(candidate.written, next(products.itertuples(index=False)))
    assert all(len(ad) <= 30 for ad in headlines[0].ads)


def test_adgen_evaluate_products_reports_each_model_beside_the_baseline_and_the_real_ads(tiny_folder, tmp_path, capsys):
    from adgen_utils.apps.cli import main

    path = tmp_path / "products.csv"
    pd.DataFrame(
        {
            "brand": ["Fintie", "Wearlizer", "Samsung"],
            "product": ["Band", "Leather Watch Strap", "55-inch 4K Smart TV"],
            "keywords": ["44mm; black", "brown", ""],
            "ad": [
                "Fintie Band for Apple Watch 44mm, Matte Black",
                "Wearlizer Leather Watch Strap, Brown 22mm",
                "Samsung 55-inch 4K Smart TV with HDR, 2021",
            ],
        }
    ).to_csv(path, index=False)
    command = ["evaluate", "--model", str(tiny_folder), "--products", str(path), "--candidates", "2"]
    assert main([*command, "--training-ads", "embedded"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "amazon-title" and [row["model"] for row in report["figures"]][1:] == [
        references.JOINED,
        references.REAL,
    ]
    real = report["figures"][2]
    assert real["chrf"] == pytest.approx(100) and real["keyword_inclusion"] == 1
    for row in report["figures"]:
        assert 0 <= row["passing_share"] <= 1 and 0 <= row["keyword_inclusion"] <= 1 and row["products"] == 3
    assert main([*command, "--format", "google-headline", "--training-ads", "embedded"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "google-headline"
    assert main(["evaluate", "--model", str(tiny_folder)]) == 2  # neither --test nor --products
