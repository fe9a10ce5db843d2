"""Sequences: the flat arrays every split is encoded into once, saved, loaded and sampled."""

import numpy as np
import pandas as pd
import pytest

from adgen_utils.corpus import sequences
from adgen_utils.corpus.text import BOS_ID, EOS_ID, UNK_ID, Vocabulary, tokenize

ADS = ["Apple Watch Band Black", "Apple Watch Case Black Large", "Sony TV Remote", "Apple TV 4K"]


@pytest.fixture
def vocabulary():
    return Vocabulary.build((tokenize(a) for a in ADS), min_count=1)


def test_encode_frames_each_ad_and_counts_truncation(vocabulary):
    arrays, truncated = sequences.encode_ads(ADS + ["Zebra"], vocabulary, max_tokens=6)
    assert truncated == 1  # "Apple Watch Case Black Large": 5 words, room for 4
    assert arrays.ad(1).tolist() == [BOS_ID, *vocabulary.encode(["Apple", "Watch", "Case", "Black"]), EOS_ID]
    assert arrays.ad(4).tolist() == [BOS_ID, UNK_ID, EOS_ID]
    assert arrays.ids.dtype == np.uint32 and arrays.offsets[-1] == arrays.ids.size
    assert arrays.predictions == arrays.ids.size - 5
    with pytest.raises(ValueError, match="max_tokens"):
        sequences.encode_ads(ADS, vocabulary, max_tokens=2)


def test_saved_arrays_are_memory_mapped_and_checked(vocabulary, tmp_path):
    arrays, _ = sequences.encode_ads(ADS, vocabulary)
    sequences.save_token_arrays(arrays, tmp_path, "train")
    loaded = sequences.load_token_arrays(tmp_path, "train")
    assert isinstance(loaded.ids, np.memmap)
    assert [loaded.ad(i).tolist() for i in range(len(ADS))] == [arrays.ad(i).tolist() for i in range(len(ADS))]
    np.save(tmp_path / "train.offsets.npy", arrays.offsets[:-1])
    with pytest.raises(ValueError, match="disagree"):
        sequences.load_token_arrays(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="sequences lesson"):
        sequences.load_token_arrays(tmp_path, "test")


def test_prepare_builds_the_vocabulary_on_training_ads_only(tmp_path):
    ads = pd.DataFrame({"ad": ADS + ["Garmin Forerunner Watch"], "split": ["train"] * 4 + ["test"]})
    info = sequences.prepare_sequences(ads, tmp_path, min_count=1)
    vocabulary, splits = sequences.load_sequences(tmp_path)
    assert "Garmin" not in vocabulary and "Apple" in vocabulary
    assert info["splits"]["test"]["unknown_word_share"] == pytest.approx(2 / 3)
    assert len(splits["train"]) == 4 and len(splits["test"]) == 1 and len(splits["validation"]) == 0
    assert (tmp_path / "sequences.json").exists()
    with pytest.raises(ValueError, match="training split is empty"):
        sequences.prepare_sequences(ads.assign(split="test"), tmp_path / "x")


def test_window_counts_and_one_hot_bytes_of_the_original_windows():
    # 14 ids: windows start at 0, 3, 6 and 9 (each needs 4 inputs and a next id)
    assert sequences.window_count(14) == 4 and sequences.window_count(4) == 0
    assert sequences.one_hot_bytes(4, 100) == 4 * 5 * 100 * 4  # (4 inputs + 1 target) x V float32


def test_a_sample_is_drawn_at_random_in_saved_order_and_reproducible(vocabulary):
    arrays, _ = sequences.encode_ads([f"{ad} {i}" for i in range(50) for ad in ADS], vocabulary)
    sample = arrays.sample(20, seed=3)
    assert len(sample) == 20 and sample.ids.tolist() == arrays.sample(20, seed=3).ids.tolist()
    assert sample.ids.tolist() != arrays.subset(range(20)).ids.tolist()  # not the first 20
    assert arrays.sample(None) is arrays and arrays.sample(10_000) is arrays
