"""The footing: opening any model and scoring it on the same ads, from a DataFrame or a test CSV."""

import json

import pandas as pd
import pytest

from adgen_utils import models as admodel
from adgen_utils.study import footing


def test_the_footing_scores_every_ad_in_the_units_of_the_series(lstm_folder, tiny_folder):
    test = pd.DataFrame({"ad": ["Sony TV Remote Black", "Garmin Watch Band Zqxwv"], "category": ["tv", "wear"]})
    for folder, family in [(lstm_folder, admodel.WORD_LSTM), (tiny_folder, admodel.TRANSFORMER)]:
        model = footing.load_ad_model(folder, name="a model")
        row = footing.evaluate_ad_model(model, test)
        assert row["model"] == "a model" and row["family"] == family and row["ads"] == 2
        assert row["predictions"] == 10  # 4 words + the end, twice
        assert list(row)[:6] == ["model", "family", "setting", "unknown_words_charged", "source", "reads_category"]
        assert 0 <= row["top1_accuracy"] <= row["top5_accuracy"] <= 1 and row["bits_per_char"] > 0
        assert row["seconds"] >= 0
    assert footing.is_lstm_folder(lstm_folder) and not footing.is_lstm_folder(tiny_folder)
    with pytest.raises(ValueError, match="few-shot"):
        footing.load_ad_model(lstm_folder, shots=2)


def test_read_test_csv_counts_every_row_left_out(write_file):
    path = write_file(
        "test.csv",
        b'ad,category\nSony TV Remote,tv\n"broken, quote\n\xff\xfe bad bytes,tv\n   ,tv\n'
        b"Apple Watch Band,wear\n" + b"x" * 5000 + b",tv\n",
    )
    ads, skipped = footing.read_test_csv(path)
    assert ads["ad"].tolist() == ["Sony TV Remote", "Apple Watch Band"]
    assert ads["category"].tolist() == ["tv", "wear"]
    assert skipped == {"malformed_quoting": 1, "invalid_utf8": 1, "empty": 1, "too_long": 1}
    with pytest.raises(FileNotFoundError):
        footing.read_test_csv(path.parent / "missing.csv")
    with pytest.raises(ValueError, match="no ad"):
        footing.read_test_csv(write_file("empty.csv", "ad\n"))


def test_adgen_evaluate_prints_the_footing_for_lstm_and_transformer_folders(
    lstm_folder, tiny_folder, write_file, capsys
):
    test = write_file("test.csv", "ad\nSony TV Remote Black\nGarmin Watch Band Zqxwv\nApple Charger Cable Blue\n")
    from adgen_utils.apps import cli  # the command itself

    for folder, family in [(lstm_folder, admodel.WORD_LSTM), (tiny_folder, admodel.TRANSFORMER)]:
        assert cli.main(["evaluate", "--model", str(folder), "--test", str(test)]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["family"] == family and result["ads"] == 3 and result["predictions"] == 15
        assert result["setting"] in {admodel.FROM_SCRATCH, admodel.ZERO_SHOT}
        assert result["source"] == str(folder.resolve())
        assert result["per_word_perplexity"] > 1 and result["bits_per_char"] > 0
        assert result["oov_share"] == (pytest.approx(1 / 12) if family == admodel.WORD_LSTM else 0)
    assert cli.main(["evaluate", "--model", str(tiny_folder), "--test", str(test), "--shots", "2"]) == 2
    assert "--examples" in capsys.readouterr().err
    assert cli.main(["evaluate", "--model", str(test.parent / "nowhere"), "--test", str(test)]) == 2
