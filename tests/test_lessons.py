"""The papermill runner, run_first and the executed copies, on small real notebooks written by the test."""

import base64
import io
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from PIL import Image

from adgen_utils import lessons
from adgen_utils.errors import NotebookFailed, ParameterError
from adgen_utils.lessons import run_first, run_series, save_executed_copies, series, stale_executed_copies
from adgen_utils.settings import Common, Run


def write_notebook(path, *sources, parameters='run_dir = "unset"\ngreeting = "hi"\nprofile = "quick"'):
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    cell = new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [new_markdown_cell("# a lesson"), cell] + [new_code_cell(s) for s in sources]
    nbformat.write(nb, path)


@pytest.fixture
def notebooks(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(
        folder / "01_first.ipynb", "from pathlib import Path\nPath(run_dir, 'first.txt').write_text(greeting)"
    )
    write_notebook(
        folder / "02_second.ipynb",
        "import sys\nprint('noise', file=sys.stderr)\nfrom pathlib import Path\nPath(run_dir, 'second.txt').write_text(greeting)",
    )
    (folder / "scratch.ipynb").write_text("{}")  # not part of the numbered series
    monkeypatch.setattr(lessons, "notebooks_folder", lambda: folder)
    return folder


def test_series_runs_in_order_with_parameters_and_overrides(notebooks, tmp_path):
    runs = run_series("ci", run_dir=tmp_path / "run", overrides={"greeting": "hello"}, progress=False)
    assert [r.name for r in runs] == ["01_first", "02_second"]
    assert (tmp_path / "run" / "first.txt").read_text() == "hello"
    assert (tmp_path / "run" / "notebooks" / "02_second.ipynb").exists()
    summary = json.loads((tmp_path / "run" / "run_summary.json").read_text())
    assert [n["status"] for n in summary["notebooks"]] == ["ok", "ok"]


def test_only_selects_by_number_or_name(notebooks):
    assert [p.stem for p in series(notebooks, ["2"])] == ["02_second"]
    assert [p.stem for p in series(notebooks, ["01_first", "02"])] == ["01_first", "02_second"]
    with pytest.raises(ParameterError, match="No notebook '07'.*01_first, 02_second"):
        series(notebooks, ["07"])


def test_first_failure_stops_the_series_with_a_clear_message(notebooks, tmp_path):
    write_notebook(notebooks / "01_first.ipynb", "x = 1", "raise ValueError('the corpus is missing')")
    with pytest.raises(NotebookFailed) as error:
        run_series("ci", run_dir=tmp_path / "run", progress=False)
    message = str(error.value)
    assert "01_first failed in cell" in message and "ValueError: the corpus is missing" in message
    assert str(tmp_path / "run" / "notebooks" / "01_first.ipynb") in message
    assert not (tmp_path / "run" / "second.txt").exists()
    summary = json.loads((tmp_path / "run" / "run_summary.json").read_text())
    assert [n["status"] for n in summary["notebooks"]] == ["failed"]


def test_unknown_parameters_and_profiles_are_refused(notebooks, tmp_path):
    with pytest.raises(ParameterError, match="parameter\\(s\\) \\['colour'\\]"):
        run_series("ci", run_dir=tmp_path / "run", overrides={"colour": "red"})
    with pytest.raises(ParameterError, match="Unknown profile 'huge'"):
        run_series("huge")


def test_alone_runs_each_notebook_in_a_fresh_folder_of_its_own(notebooks, tmp_path):
    stale = tmp_path / "run-alone" / "02_second" / "left-over.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier run")
    runs = run_series("ci", run_dir=tmp_path / "run", progress=False, alone=True)
    assert [r.output for r in runs] == [
        tmp_path / "run-alone" / n / "notebooks" / f"{n}.ipynb" for n in ("01_first", "02_second")
    ]
    assert (tmp_path / "run-alone" / "01_first" / "first.txt").exists()
    assert not (tmp_path / "run-alone" / "01_first" / "second.txt").exists()
    assert not stale.exists(), "a notebook run alone starts from an empty run folder"


def test_run_first_executes_the_earlier_lesson_only_when_its_result_is_missing(notebooks, tmp_path):
    run = Run(Common(profile="ci"), tmp_path / "run", tmp_path / "figures", {})
    run.run_dir.mkdir()
    run_first("01_first", run, needs="first.txt", progress=False)
    assert (run.run_dir / "first.txt").read_text() == "hi"
    executed = nbformat.read(run.run_dir / "notebooks" / "01_first.ipynb", as_version=4)
    assert executed.metadata.papermill.parameters["profile"] == "ci", "the same profile as the lesson that asked"
    (run.run_dir / "first.txt").write_text("kept")
    run_first("01_first", run, needs="first.txt", progress=False)
    assert (run.run_dir / "first.txt").read_text() == "kept", "a result already there is not made again"
    with pytest.raises(FileNotFoundError, match="09_missing.ipynb is missing"):
        run_first("09_missing", run, needs="nothing.txt")


def png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def test_executed_copies_are_slim_and_stale_ones_are_found(notebooks, tmp_path):
    run_series("ci", run_dir=tmp_path / "run", progress=False)
    executed = tmp_path / "run" / "notebooks" / "01_first.ipynb"
    nb = nbformat.read(executed, as_version=4)
    nb.cells[-1].outputs = [new_output("display_data", data={"image/png": png(2000, 1000), "text/plain": "<Figure>"})]
    nbformat.write(nb, executed)
    copies = save_executed_copies(tmp_path / "run", tmp_path / "executed")
    assert [p.name for p in copies] == ["01_first.ipynb", "02_second.ipynb"]
    first, second = (nbformat.read(p, as_version=4) for p in copies)
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in first.cells), "no papermill cell"
    image = Image.open(io.BytesIO(base64.b64decode(first.cells[-1].outputs[0].data["image/png"])))
    assert image.size == (lessons.FIGURE_WIDTH, lessons.FIGURE_WIDTH // 2)
    assert all(o.get("name") != "stderr" for c in second.cells if c.cell_type == "code" for o in c.outputs)
    assert stale_executed_copies(tmp_path / "executed") == []
    write_notebook(notebooks / "02_second.ipynb", "print('a changed lesson')")
    assert stale_executed_copies(tmp_path / "executed") == ["02_second"]
    (tmp_path / "executed" / "01_first.ipynb").unlink()
    assert stale_executed_copies(tmp_path / "executed") == ["01_first", "02_second"]


def test_executed_copies_need_the_whole_series(notebooks, tmp_path):
    run_series("ci", run_dir=tmp_path / "run", only=["01"], progress=False)
    with pytest.raises(FileNotFoundError, match="no executed 02_second.ipynb"):
        save_executed_copies(tmp_path / "run", tmp_path / "executed")
