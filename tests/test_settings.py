"""Profiles and the reader's own values: use_profile on real namespaces, as a parameters cell leaves them."""

import sys
import types
from dataclasses import fields

import pytest

from adgen_utils import settings
from adgen_utils.errors import ParameterError
from adgen_utils.layout import repository_root
from adgen_utils.settings import PROFILES, Finetune, OneHotLSTM, Publishing, profile_values, use_profile

LESSONS = [settings.Corpus, settings.Sequences, OneHotLSTM, settings.EmbeddingLSTM, settings.Prompting, Finetune]
LESSONS += [settings.Evaluation, Publishing]


def as_written(lesson: type, **changes) -> dict:
    """A namespace as the lesson's parameters cell leaves it (its literal values), with ``changes``."""
    return {**{f.name: getattr(lesson(), f.name) for f in fields(lesson)}, **changes}


@pytest.mark.parametrize("profile", list(PROFILES))
def test_profiles_change_only_fields_of_their_class_with_values_of_the_same_kind(profile):
    for lesson, changes in PROFILES[profile].items():
        names = {f.name for f in fields(lesson)}
        for name, value in changes.items():
            assert name in names, f"profile {profile} changes {lesson.__name__}.{name}, which it does not have"
            assert settings._same_kind(value, getattr(lesson(), name)), f"{profile}: {lesson.__name__}.{name}"


def test_the_quick_profile_is_the_values_as_written(tmp_path):
    namespace = as_written(OneHotLSTM, run_dir=str(tmp_path))
    run = use_profile(OneHotLSTM, namespace)
    assert run.settings == OneHotLSTM(run_dir=str(tmp_path)) and run.sources == {"run_dir": "yours"}
    assert run.figures_dir == repository_root() / "figures"


@pytest.mark.parametrize("profile", ["ci", "full"])
def test_a_profile_set_by_hand_gives_its_values_and_keeps_the_readers_own(profile, tmp_path):
    namespace = as_written(Finetune, profile=profile, run_dir=str(tmp_path), learning_rate=1e-5)
    run = use_profile(Finetune, namespace)
    expected = {**profile_values(profile, Finetune), "run_dir": str(tmp_path), "learning_rate": 1e-5}
    assert {f.name: getattr(run.settings, f.name) for f in fields(Finetune)} == expected
    assert run.sources["learning_rate"] == "yours"
    assert run.sources["base_model"] == f"profile {profile}"
    assert namespace["base_model"] == expected["base_model"], "the notebook's names hold the resolved values"


def test_ci_keeps_its_figures_in_the_run_folder(tmp_path):
    run = use_profile(OneHotLSTM, as_written(OneHotLSTM, profile="ci", run_dir=str(tmp_path / "run")))
    assert run.figures_dir == tmp_path / "run" / "figures" and run.figures_dir.is_dir()


def test_wrong_values_are_refused_with_the_parameters_meaning(tmp_path):
    with pytest.raises(ParameterError, match=r"units = 'many': expected a value like 128 \(LSTM units"):
        use_profile(OneHotLSTM, as_written(OneHotLSTM, units="many", run_dir=str(tmp_path)))
    with pytest.raises(ParameterError, match="Unknown profile 'huge'; choose one of quick, ci, full, large"):
        use_profile(OneHotLSTM, as_written(OneHotLSTM, profile="huge"))
    namespace = as_written(OneHotLSTM)
    del namespace["epochs"]
    with pytest.raises(ParameterError, match="The parameters cell has no 'epochs'"):
        use_profile(OneHotLSTM, namespace)
    with pytest.raises(ParameterError, match="expected a value like False"):
        use_profile(Publishing, as_written(Publishing, push=1, run_dir=str(tmp_path)))


def test_drive_keeps_the_run_folder_on_google_drive(tmp_path, monkeypatch):
    mounted = []
    monkeypatch.setattr(settings, "DRIVE_RUNS", tmp_path / "MyDrive" / "adgen" / "runs")
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    run = use_profile(Publishing, as_written(Publishing, profile="ci", drive=True), mount_drive=mounted.append)
    assert mounted == ["/content/drive"]
    assert run.run_dir == tmp_path / "MyDrive" / "adgen" / "runs" / "ci" and run.run_dir.is_dir()


def test_drive_outside_colab_is_a_clear_error(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    with pytest.raises(ParameterError, match="drive = True works on Google Colab only"):
        use_profile(Publishing, as_written(Publishing, drive=True))


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda c: c.__name__)
def test_every_setting_says_what_it_changes(lesson):
    assert all(f.metadata.get("help") for f in fields(lesson))
