"""Sequences: the original windows exactly, and the flat arrays and batches used for training."""

import numpy as np
import pandas as pd
import pytest

from adgen_utils.corpus import sequences
from adgen_utils.corpus.text import BOS_ID, EOS_ID, UNK_ID, Vocabulary, tokenize
from adgen_utils.lstm import model as lstm

ADS = ["Apple Watch Band Black", "Apple Watch Case Black Large", "Sony TV Remote", "Apple TV 4K"]


@pytest.fixture
def vocabulary():
    return Vocabulary.build((tokenize(a) for a in ADS), min_count=1)


def test_original_windows_are_four_ids_then_the_next_moving_by_three():
    inputs, targets = sequences.original_windows(np.arange(14))
    assert inputs.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9], [9, 10, 11, 12]]
    assert targets.tolist() == [4, 7, 10, 13]
    assert sequences.window_count(14) == 4
    empty_inputs, empty_targets = sequences.original_windows(np.arange(4))
    assert empty_inputs.shape == (0, 4) and empty_targets.shape == (0,)


def test_one_hot_batch_has_one_one_per_word():
    x, y = sequences.one_hot_batch(np.array([[1, 2, 3, 4]]), np.array([5]), 8)
    assert x.shape == (1, 4, 8) and y.shape == (1, 8)
    assert x.sum() == 4 and x[0, 2, 3] == 1 and y[0, 5] == 1


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
    with pytest.raises(FileNotFoundError, match="02_sequences"):
        sequences.load_token_arrays(tmp_path, "test")


def test_batches_shift_targets_weight_real_tokens_and_cover_every_prediction(vocabulary):
    arrays, _ = sequences.encode_ads(ADS * 10, vocabulary)
    seen = 0
    for shuffle in (False, True):
        total = 0
        for inputs, targets, weights in lstm.many_to_many_dataset(arrays, 8, shuffle=shuffle, chunk_batches=2):
            inputs, targets, weights = inputs.numpy(), targets.numpy(), weights.numpy()
            assert inputs.shape == targets.shape == weights.shape
            assert (inputs[:, 0] == BOS_ID).all()
            assert ((targets != 0) == (weights == 1)).all()
            assert (inputs[:, 1:][weights[:, :-1] == 1] == targets[:, :-1][weights[:, :-1] == 1]).all()
            total += int(weights.sum())
        assert total == arrays.predictions
        seen += 1
    assert seen == 2
    with pytest.raises(ValueError, match="no ads"):
        lstm.many_to_many_dataset(sequences.TokenArrays(np.zeros(0, np.uint32), np.zeros(1, np.int64)), 8)


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


def test_memory_comparison_counts_bytes(vocabulary):
    arrays, _ = sequences.encode_ads(ADS, vocabulary)
    comparison = sequences.memory_comparison(arrays, len(vocabulary))
    windows = sequences.window_count(arrays.ids.size - 2 * len(ADS))
    assert comparison["original windows"] == windows
    assert comparison["original one-hot arrays, all windows (bytes)"] == windows * 5 * len(vocabulary) * 4
    assert comparison["flat uint32 ids + offsets (bytes)"] == arrays.ids.size * 4 + (len(ADS) + 1) * 8
