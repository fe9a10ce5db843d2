from adgen_utils.text import is_word, tokenize


def test_model_numbers_units_and_case_stay_whole():
    tokens = tokenize("ZAGG InvisibleShield for MQL12LL/A 42mm, Series 4/3/2/1 (Black) Women's Wi-Fi 12.5\"")
    assert tokens == [
        "ZAGG", "InvisibleShield", "for", "MQL12LL/A", "42mm", ",", "Series", "4/3/2/1",
        "(", "Black", ")", "Women's", "Wi-Fi", "12.5", '"',
    ]


def test_empty_and_punctuation_only_inputs():
    assert tokenize("") == []
    assert tokenize("  ") == []
    assert tokenize("!!") == ["!", "!"]
    assert [is_word(t) for t in ["(", "42mm", "-", "é"]] == [False, True, False, True]
