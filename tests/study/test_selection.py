"""Ads a seller can paste: each rule rejects what it should and keeps what it should, ads are cut
at their last complete phrase, and the ad kept is the most likely of those that pass (a real LSTM)."""

from types import SimpleNamespace

import pandas as pd
import pytest
from helpers import LSTM_ADS

from adgen_utils.models import Decoding, WrittenAd
from adgen_utils.study import products, selection
from adgen_utils.study.footing import load_ad_model
from adgen_utils.study.selection import AdRules, Candidate, Verdict

TRAINING = [
    "Fintie Band for Apple Watch 44mm, Black",
    "Fintie Band for Apple Watch 40mm, Pink",
    "Fintie Band Compatible with Fitbit Charge 3",
    "Fintie Watch Band Replacement Strap, Blue",
    "Apple Watch Series 5 GPS 44mm Space Gray",
    "Apple Watch Series 4 GPS 40mm Silver",
    "Apple Watch Series 3 GPS 38mm Gold",
    "Fitbit Charge 3 Fitness Tracker, Black",
    "Fitbit Inspire Fitness Tracker",
    "Fitbit Versa Fitness Tracker, Pink",
    "Samsung 55-inch 4K Smart TV",
    "Samsung 65-inch 4K Smart TV",
    "Samsung 43-inch Smart TV, 2020",
    "JUSTSTONE Tilt TV Wall Mount for 32-70 inch TVs",
    "JUSTSTONE TV Wall Mount Bracket, Black",
    "JUSTSTONE Full Motion TV Wall Mount Bracket",
    "Perlesmith TV Wall Mount Bracket",
    "Perlesmith Bracket TV Wall Mount",
    "Vivo Steel TV Wall Mount",
    "Mounting Dream TV Stand for 32-65 inch TVs",
    "Mounting Dream Swivel TV Stand",
    "Mounting Dream Floor TV Stand, Black",
    "iLLumiShield Screen Protector for Apple Watch",
    "iLLumiShield Screen Protector for Fitbit Versa",
    "iLLumiShield Screen Protector for Samsung Galaxy Watch",
    "Wearlizer Watch Band Replacement Strap, Black",
    "Wearlizer Silicone Watch Band Strap",
    "Wearlizer Leather Watch Strap",
    "Wearlizer Strap Watch Band, Black",
]


def product(brand, words, category=None):
    return SimpleNamespace(brand=brand, product=words, category=category, prompt=f"{brand} {words}")


@pytest.fixture(scope="module")
def rules():
    return AdRules(TRAINING, max_chars=80)


def test_products_brands_and_types_of_ads():
    assert products.brand_and_product("Fintie Band for Apple Watch 44mm") == ("Fintie", "Band")
    assert products.product_of("Samsung 55-inch 4K Smart TV, 2021 Model") == ("Samsung", "55-inch 4K Smart TV")
    assert products.product_of("Fintie Band for Apple Watch") == ("Fintie", "Band")
    assert products.product_of("Acme One Two Three Four Five Six Seven Widget, Black") is None  # the whole ad
    types = products.ProductTypes(TRAINING, {"fintie", "apple"})
    assert {"band", "mount", "bracket", "stand", "tv", "protector", "strap"} <= types.types
    assert types.singular("Bands") == "band" and types.singular("glass") == "glass"
    assert types.same_product("strap", "band") and types.same_product("bracket", "mount")
    assert not types.same_product("stand", "tv") and not types.same_product("protector", "mount")
    table = products.product_set(pd.DataFrame({"ad": TRAINING, "category": "x"}), 100)
    assert {"brand", "product", "prompt", "ad"} <= set(table.columns) and table["prompt"].is_unique
    assert ("Fintie", "Band") in set(zip(table["brand"], table["product"]))


def test_cut_keeps_the_last_complete_phrase(rules):
    prompt = "Fintie Band"
    assert rules.cut("Fintie Band for Apple Watch, Black, for", prompt) == "Fintie Band for Apple Watch, Black"
    assert rules.cut("Fintie Band for Apple Watch (Black", prompt) == "Fintie Band for Apple Watch"
    # A bracket that opens nothing (a keyword was written after it) goes alone, not the phrases after it.
    assert rules.cut("Fintie Band for Apple Watch [, 44mm, Black", prompt) == "Fintie Band for Apple Watch, 44mm, Black"
    assert rules.cut("Fintie Band for Apple Watch 44mm, Soft Sport", prompt, complete=False) == (
        "Fintie Band for Apple Watch 44mm"
    )
    assert rules.cut("Fintie Band for Apple Watch 44mm, Soft Sport", prompt, complete=True) == (
        "Fintie Band for Apple Watch 44mm, Soft Sport"
    )
    assert rules.cut("Fintie Band Soft", prompt, complete=False) == "Fintie Band"  # no phrase finished
    long = "Fintie Band for Apple Watch 44mm, Soft Silicone Sport Strap, Women Men, Black White Pink Gray Blue"
    cut = rules.cut(long, prompt)
    assert len(cut) <= 80 and cut == "Fintie Band for Apple Watch 44mm, Soft Silicone Sport Strap, Women Men"
    assert rules.cut("Fintie  Band\u200b  for Apple Watch", prompt) == "Fintie Band for Apple Watch"


def test_each_rule_rejects_what_it_should(rules):
    fintie = product("Fintie", "Band")
    mount = product("JUSTSTONE", "Tilt TV Wall Mount")
    tv = product("Samsung", "55-inch 4K Smart TV")
    cases = [
        (fintie, "Fintie Band for", "unfinished"),
        (fintie, "Fintie Strap Band for Fitbit Versa", "off product"),  # the product words are not kept
        (mount, "JUSTSTONE Tilt TV Wall Mount Screen Protector for 32 inch", "off product"),
        (tv, "Samsung 55-inch 4K Smart TV Stand, Black", "off product"),
        (fintie, "Fintie Band Apple Watch 44mm, Black Gold", "other brand"),  # named with the product: its maker
        (fintie, "Fintie Band " + "Soft Silicone Sport Loop Strap Replacement Wristband Gold " * 2, "too long"),
        (fintie, "fintie band  for apple watch 44mm, black", "training copy"),
    ]
    for item, ad, rule in cases:
        verdict = rules.judge(ad, item)
        assert rule in verdict.rejected_by, (ad, verdict)
        assert not verdict.passed and rule in verdict.rejection()
    assert rules.judge("Fintie Band Apple Watch, Black", fintie).reasons[0] == "names apple"
    assert rules.judge("Fintie Band for Apple Watch, Black", fintie).passed  # what it fits: any brand


def test_each_rule_keeps_what_it_should(rules):
    apple_band = product("Fintie", "Band", category="Apple Watch accessories")  # the input names Apple
    keep = [
        (apple_band, "Fintie Band for Apple Watch 38mm, Rose Gold"),
        (product("Fintie", "Band"), "Fintie Band Soft Silicone Sport Loop, Rose Gold"),
        (product("Wearlizer", "Watch Band"), "Wearlizer Watch Band Replacement Strap, Rose Gold"),  # a synonym
        (product("JUSTSTONE", "TV Wall Mount"), "JUSTSTONE TV Wall Mount Bracket for 26-55 inch"),
        (product("Samsung", "55-inch 4K Smart TV"), "Samsung 55-inch 4K Smart TV with HDR, 2021"),
        (product("Acme", "Widget"), "Acme Widget for Everyone, Blue"),  # a type the training ads never saw
    ]
    for item, ad in keep:
        verdict = rules.judge(ad, item)
        assert verdict.passed, (ad, verdict)
        assert verdict.ad == ad and verdict.rejection() == ""


def test_judged_as_written_an_unfinished_or_long_ad_fails(rules):
    fintie = product("Fintie", "Band", category="Apple")
    assert rules.judge("Fintie Band for Apple Watch, Soft", fintie, complete=True, cut=False).passed
    assert (
        "unfinished" in rules.judge("Fintie Band for Apple Watch, Soft", fintie, complete=False, cut=False).rejected_by
    )
    assert "unfinished" in rules.judge("Fintie Band for Apple Watch, Black,", fintie, cut=False).rejected_by
    too_long = "Fintie Band for Apple Watch 44mm, Soft Silicone Sport Strap, Women Men, Black White Pink Gray"
    assert "too long" in rules.judge(too_long, fintie, cut=False).rejected_by
    assert rules.judge(too_long, fintie, cut=True).passed  # cut at its last phrase within 80 characters


def test_choose_keeps_the_most_likely_distinct_passing_candidates():
    passing = [Verdict(text) for text in ["A b", "A c", "a  B", "A d"]]
    candidates = [Candidate(i + 1, v.ad, v) for i, v in enumerate(passing)]
    candidates.append(Candidate(5, "A e", Verdict("A e", ("other brand",), ("names x",))))
    likelihood = {"A b": -1.0, "A c": -3.0, "a  B": -1.0, "A d": -2.0}.__getitem__
    kept = selection.choose(candidates, likelihood, per_product=2)
    assert kept == ["A b", "A d"]  # the most likely two; "a  B" repeats "A b" (the earlier one wins the tie)
    assert [c.chosen for c in candidates] == [1, None, None, 2, None]
    assert candidates[2].verdict.rejected_by == ("repeat",) and "candidate 1" in candidates[2].verdict.reasons[0]
    assert candidates[4].likelihood is None  # rejected by a rule: never scored


def test_written_for_products_the_kept_ad_is_the_most_likely_that_passes(lstm_folder):
    model = load_ad_model(lstm_folder)
    rules = AdRules([ad for ad in LSTM_ADS if "Watch Band" not in ad])  # the bands it writes are no copies
    items = pd.DataFrame([{"brand": b, "product": "Watch Band", "category": None} for b in ["Apple", "Sony", "Garmin"]])
    items["prompt"] = items["brand"] + " " + items["product"]
    decoding = Decoding(do_sample=True, temperature=1.6, max_new_tokens=6)
    results = selection.write_for_products(model, items, rules, candidates=8, per_product=2, decoding=decoding, seed=3)
    compared = 0
    for result in results:
        assert len(result.candidates) == 8
        for c in result.candidates:
            assert isinstance(c.written, WrittenAd)
            if c.verdict.rejected_by and c.verdict.rejected_by != ("repeat",):
                assert c.likelihood is None
        passing = {c.verdict.ad for c in result.candidates if c.verdict.passed}
        if not passing:
            assert result.ads == [] and not result.passed
            continue
        scores = model.score(sorted(passing))
        own = dict(zip(sorted(passing), scores["log_prob"] / scores["words"]))
        ranked = sorted(own, key=lambda ad: -own[ad])
        assert result.ads == ranked[: len(result.ads)] and len(result.ads) == min(2, len(passing))
        compared += len(passing) > 1
    assert compared, "no product had two passing candidates to choose between"
