"""When the seller's keywords are written into an ad being generated (adgen_utils.corpus.steering): the
decision alone, on ad texts; the families' generation with it is tested in their own test files."""

import pytest

from adgen_utils.corpus.steering import Insertion, KeywordSteering, steering_for


def words(text: str) -> int:
    return len(text.split())


def test_a_missing_keyword_opens_the_next_phrase():
    steering = KeywordSteering(["44mm", "Stainless Steel"])
    assert steering.insertion("Fintie Band Compatible with Apple Watch,", False, 30, words) == Insertion(" 44mm")
    assert steering.insertion("Fintie Band Compatible with Apple Watch, ", False, 30, words) == Insertion("44mm")
    assert steering.insertion("Fintie Band 44mm -", False, 30, words) == Insertion(" Stainless Steel")
    assert steering.insertion("Fintie Band 44mm |", False, 30, words) == Insertion(" Stainless Steel")


def test_the_model_chooses_inside_a_phrase_and_once_every_keyword_is_in():
    steering = KeywordSteering(["44mm", "stainless steel"])
    assert steering.insertion("Fintie Band Compatible with", False, 30, words) is None
    assert steering.insertion("Fintie Band 44MM, Stainless Steel,", False, 30, words) is None  # case aside
    assert steering.insertion("Fintie Band 144mm Stainless Steel,", False, 30, words) == Insertion(" 44mm")  # words
    assert KeywordSteering().insertion("Fintie Band,", True, 0, words) is None


def test_a_missing_keyword_opens_a_phrase_where_the_model_would_end_the_ad():
    steering = KeywordSteering(["44mm", "Stainless Steel", "Black"])
    assert steering.insertion("Fintie Band", True, 30, words) == Insertion(", 44mm")  # not closed: the model goes on
    assert steering.insertion("Fintie Band,", True, 30, words) == Insertion(" 44mm")  # its own comma kept
    assert steering.insertion("Fintie Band 44mm Black", True, 30, words) == Insertion(", Stainless Steel")
    assert steering.insertion("Fintie Band 44mm Black Stainless Steel", True, 30, words) is None  # it ends


def test_the_missing_keywords_close_an_ad_with_no_room_left_for_them():
    steering = KeywordSteering(["44mm", "Stainless Steel", "Black"])
    closing = Insertion(", 44mm, Stainless Steel, Black", closes=True)
    assert steering.insertion("Fintie Band for Apple Watch", False, 6, words) == closing  # 5 words and the end
    assert steering.insertion("Fintie Band for Apple Watch", True, 6, words) == closing  # ending or not
    assert steering.insertion("Fintie Band for Apple Watch", False, 7, words) is None


def test_one_steering_per_ad():
    assert [s.keywords for s in steering_for([("44mm",), ()], 2)] == [("44mm",), ()]
    assert [s.keywords for s in steering_for(None, 3)] == [(), (), ()]
    with pytest.raises(ValueError, match="2 prompts but 1 keyword lists"):
        steering_for([("44mm",)], 2)


def test_within_a_format_the_keywords_close_the_ad_before_its_length_is_reached():
    steering = KeywordSteering(["44mm", "Black"], max_chars=60)
    closing = Insertion(", 44mm, Black", closes=True)
    assert steering.insertion("Fintie Band for Apple Watch", False, 30, words) is None  # 27 + 13 + 12 < 60
    assert steering.insertion("Fintie Band for Apple Watch Series", False, 30, words) is None  # 34 + 25 < 60
    assert steering.insertion("Fintie Band for Apple Watch Series 4", False, 30, words) == closing  # 36 + 25
    assert KeywordSteering(["44mm"]).insertion("Fintie Band for Apple Watches" * 9, False, 30, words) is None
