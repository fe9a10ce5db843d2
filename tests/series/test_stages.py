"""Notebooks run on their own: earlier results are rebuilt with the profile's parameters, or named."""

import json

import pytest

from adgen_utils import errors, layout
from adgen_utils.corpus.data import load_dataset
from adgen_utils.series import stages
from adgen_utils.series.profiles import profile_values


def test_a_notebook_alone_rebuilds_the_cheap_stages_it_needs(tmp_path):
    lines = []
    report = stages.ensure_earlier_stages("03_lstm", tmp_path, "ci", log=lines.append, limit_seconds=0)
    assert report.rebuilt == ["01_eda", "02_sequences"] and not report.missing
    ads = load_dataset(tmp_path / layout.DATA_FOLDER)
    assert len(ads) == profile_values("ci", "01_eda")["sample_size"]
    info = json.loads((tmp_path / layout.SEQUENCES_FOLDER / layout.SEQUENCES_INFO_FILE).read_text())
    assert info["min_count"] == profile_values("ci", "02_sequences")["min_count"]
    assert any("01_eda has not been run" in line and "profile 'ci'" in line for line in lines)
    again = stages.ensure_earlier_stages("04_embedding_lstm", tmp_path, "ci", log=lines.append)
    assert again.present == ["02_sequences"] and not again.rebuilt  # its own results stand for 01


def test_a_stage_too_long_to_rebuild_is_named_or_skipped(tmp_path):
    stages.ensure_earlier_stages("02_sequences", tmp_path, "ci", log=lambda _: None)
    with pytest.raises(errors.StageMissing, match=r"Run notebook 06_fine_tuning first with profile 'ci'"):
        stages.ensure_earlier_stages("08_publishing", tmp_path, "ci", log=lambda _: None, limit_seconds=0)
    lines = []
    report = stages.ensure_earlier_stages("07_evaluation", tmp_path, "ci", log=lines.append, limit_seconds=0)
    assert set(report.missing) == {"03_lstm", "04_embedding_lstm", "06_fine_tuning"}
    assert report.present == ["01_eda"]
    assert sum("Carrying on without it" in line for line in lines) == 3


def test_an_interrupted_lstm_is_not_taken_for_a_finished_one(tmp_path):
    folder = layout.model_dir(tmp_path, "03_lstm")
    folder.mkdir(parents=True)
    (folder / layout.LSTM_STATE_FILE).write_text(json.dumps({"status": "training"}))
    assert not stages.is_done("03_lstm", tmp_path)
    (folder / layout.LSTM_STATE_FILE).write_text(json.dumps({"status": "complete"}))
    assert stages.is_done("03_lstm", tmp_path)


def test_a_rebuilt_lstm_is_the_notebooks_model(tmp_path):
    report = stages.ensure_earlier_stages("07_evaluation", tmp_path, "ci", log=lambda _: None)
    assert {"03_lstm", "04_embedding_lstm", "06_fine_tuning"} <= set(report.rebuilt)
    state = json.loads((layout.model_dir(tmp_path, "04_embedding_lstm") / layout.LSTM_STATE_FILE).read_text())
    ci = profile_values("ci", "04_embedding_lstm")
    assert state["status"] == "complete"
    assert state["settings"]["config"]["units"] == ci["units"] and state["settings"]["train_ads"] == ci["max_train_ads"]
    finetuned = json.loads((layout.model_dir(tmp_path, "06_fine_tuning") / layout.FINETUNE_RESULT_FILE).read_text())
    assert finetuned["settings"]["train_texts"] == profile_values("ci", "06_fine_tuning")["max_train_ads"]
