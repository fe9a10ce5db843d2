from adgen_utils.corpus.text import brand_of, is_word, tokenize


def test_model_numbers_units_and_case_stay_whole():
    tokens = tokenize("ZAGG InvisibleShield for MQL12LL/A 42mm, Series 4/3/2/1 (Black) Women's Wi-Fi 12.5\"")
    assert tokens == [
        "ZAGG",
        "InvisibleShield",
        "for",
        "MQL12LL/A",
        "42mm",
        ",",
        "Series",
        "4/3/2/1",
        "(",
        "Black",
        ")",
        "Women's",
        "Wi-Fi",
        "12.5",
        '"',
    ]


def test_empty_and_punctuation_only_inputs():
    assert tokenize("") == []
    assert tokenize("  ") == []
    assert tokenize("!!") == ["!", "!"]
    assert [is_word(t) for t in ["(", "42mm", "-", "é"]] == [False, True, False, True]


import json  # noqa: E402

import pytest  # noqa: E402

from adgen_utils.corpus.text import BOS_ID, EOS_ID, UNK_ID, Vocabulary, detokenize  # noqa: E402

TRAIN = ["Apple Watch Band Black", "Apple Watch Case (Black)", "Sony TV Remote", "Apple TV"]


def test_vocabulary_keeps_frequent_tokens_in_count_order_with_special_ids_first():
    vocabulary = Vocabulary.build((tokenize(a) for a in TRAIN), min_count=2)
    assert vocabulary.tokens == ["<pad>", "<unk>", "<bos>", "<eos>", "Apple", "Black", "TV", "Watch"]
    # <unk> holds the count of the 6 rarer tokens; <eos> one per training ad.
    assert vocabulary.counts[UNK_ID] == 6 and vocabulary.counts[EOS_ID] == 4
    assert vocabulary.encode(["Apple", "Fitbit"]) == [4, UNK_ID]
    assert vocabulary.decode([BOS_ID, 4, 7, EOS_ID]) == ["Apple", "Watch"]
    assert "Apple" in vocabulary and "Fitbit" not in vocabulary and "<eos>" not in vocabulary
    capped = Vocabulary.build((tokenize(a) for a in TRAIN), min_count=1, max_size=6)
    assert capped.tokens[4:] == ["Apple", "Black"]
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build([], min_count=0)


def test_vocabulary_round_trips_as_json_and_refuses_other_files(tmp_path):
    vocabulary = Vocabulary.build((tokenize(a) for a in TRAIN), min_count=1)
    path = vocabulary.save(tmp_path / "v" / "vocabulary.json")
    assert json.loads(path.read_text())["format"] == "adgen-vocabulary/1"
    again = Vocabulary.load(path)
    assert again.tokens == vocabulary.tokens and again.counts == vocabulary.counts
    (tmp_path / "other.json").write_text('{"tokens": []}')
    with pytest.raises(ValueError, match="not an adgen vocabulary"):
        Vocabulary.load(tmp_path / "other.json")
    with pytest.raises(FileNotFoundError, match="build one"):
        Vocabulary.load(tmp_path / "missing.json")


def test_unigram_log_probabilities_sum_to_one():
    import numpy as np

    vocabulary = Vocabulary.build((tokenize(a) for a in TRAIN), min_count=2)
    probs = np.exp(vocabulary.unigram_log_probs())
    assert probs.sum() == pytest.approx(1.0) and probs[0] == 0 and probs[BOS_ID] == 0


@pytest.mark.parametrize(
    "ad",
    [
        "Apple Watch Band 38mm, Black (2 Pack)",
        'Samsung 55" 4K TV - Black',
        "Fitbit Charge 4/3/2 Bands [Large]; Women's",
    ],
)
def test_detokenize_restores_ordinary_ads(ad):
    assert detokenize(tokenize(ad)) == ad


def test_the_brand_is_the_first_word_after_generic_openers():
    assert brand_of(["New", "Compatible", "Sony", "TV"]) == "Sony"
    assert brand_of(["2", "Pack", "Fitbit", "Bands"]) == "Fitbit"
    assert brand_of(["Replacement", "for"]) is None
