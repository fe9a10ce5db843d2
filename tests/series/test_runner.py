"""The papermill runner on small real notebooks written by the test."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from adgen_utils.errors import NotebookFailed
from adgen_utils.series.runner import run_series, series


def write_notebook(path, *sources, parameters='run_dir = "unset"\ngreeting = "hi"'):
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    cell = new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell] + [new_code_cell(s) for s in sources]
    nbformat.write(nb, path)


@pytest.fixture
def notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(
        folder / "01_first.ipynb", "from pathlib import Path\nPath(run_dir, 'first.txt').write_text(greeting)"
    )
    write_notebook(
        folder / "02_second.ipynb", "from pathlib import Path\nPath(run_dir, 'second.txt').write_text(greeting)"
    )
    (folder / "scratch.ipynb").write_text("{}")  # not part of the numbered series
    return folder


def test_series_runs_in_order_with_parameters_and_overrides(notebooks, tmp_path):
    lines = []
    runs = run_series(
        "ci",
        run_dir=tmp_path / "run",
        overrides={"greeting": "hello"},
        notebooks_dir=notebooks,
        progress=False,
        log=lines.append,
    )
    assert [r.name for r in runs] == ["01_first", "02_second"]
    assert (tmp_path / "run" / "first.txt").read_text() == "hello"
    assert (tmp_path / "run" / "notebooks" / "02_second.ipynb").exists()
    assert lines[0].startswith("[1/2] 01_first (ci)")
    summary = json.loads((tmp_path / "run" / "run_summary.json").read_text())
    assert [n["status"] for n in summary["notebooks"]] == ["ok", "ok"]


def test_only_selects_by_number_or_name(notebooks):
    assert [p.stem for p in series(notebooks, ["2"])] == ["02_second"]
    assert [p.stem for p in series(notebooks, ["01_first", "02"])] == ["01_first", "02_second"]
    with pytest.raises(ValueError, match="No notebook '07'.*01_first, 02_second"):
        series(notebooks, ["07"])


def test_first_failure_stops_the_series_with_a_clear_message(notebooks, tmp_path):
    write_notebook(notebooks / "01_first.ipynb", "x = 1", "raise ValueError('the corpus is missing')")
    with pytest.raises(NotebookFailed) as error:
        run_series("ci", run_dir=tmp_path / "run", notebooks_dir=notebooks, progress=False, log=lambda _: None)
    message = str(error.value)
    assert "01_first failed in cell" in message and "ValueError: the corpus is missing" in message
    assert str(tmp_path / "run" / "notebooks" / "01_first.ipynb") in message
    assert not (tmp_path / "run" / "second.txt").exists()
    summary = json.loads((tmp_path / "run" / "run_summary.json").read_text())
    assert [n["status"] for n in summary["notebooks"]] == ["failed"]


def test_unknown_parameters_and_profiles_are_refused(notebooks, tmp_path):
    with pytest.raises(ValueError, match="declares \\['colour'\\]"):
        run_series("ci", run_dir=tmp_path / "run", overrides={"colour": "red"}, notebooks_dir=notebooks)
    with pytest.raises(ValueError, match="Unknown profile 'huge'"):
        run_series("huge", notebooks_dir=notebooks)


def test_alone_runs_each_notebook_in_a_fresh_folder_of_its_own(notebooks, tmp_path):
    stale = tmp_path / "run-alone" / "02_second" / "left-over.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier run")
    runs = run_series(
        "ci", run_dir=tmp_path / "run", notebooks_dir=notebooks, progress=False, log=lambda _: None, alone=True
    )
    assert [r.output for r in runs] == [
        tmp_path / "run-alone" / n / "notebooks" / f"{n}.ipynb" for n in ("01_first", "02_second")
    ]
    assert (tmp_path / "run-alone" / "01_first" / "first.txt").exists()
    assert not (tmp_path / "run-alone" / "01_first" / "second.txt").exists()
    assert not stale.exists(), "a notebook run alone starts from an empty run folder"


def test_only_profile_run_dir_and_overrides_are_injected(tmp_path):
    from adgen_utils.series.runner import notebooks_folder, parameters_for

    path = notebooks_folder() / "04_embedding_lstm.ipynb"
    assert parameters_for(path, "full", tmp_path, {"units": 64, "not_declared_here": 1}) == {
        "profile": "full",
        "run_dir": str(tmp_path),
        "units": 64,
    }


def test_every_declared_parameter_can_be_set_headless(tmp_path):
    """papermill parses every parameters cell, so -p reaches any parameter (07's decoding once could not)."""
    from adgen_utils.series.runner import _check_overrides, notebooks_folder

    path = notebooks_folder() / "07_evaluation.ipynb"
    _check_overrides([path], {"decoding": "greedy", "shots": 1})
    with pytest.raises(ValueError, match="declares \\['colour'\\]"):
        _check_overrides([path], {"colour": "red"})
