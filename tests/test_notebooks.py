"""The lessons as a reader meets them: papermill- and Colab-ready, literal parameters equal to the
settings classes, a short setup cell that works on Colab only, and executed copies in step."""

import ast
import shutil
import subprocess
import sys
import types
from dataclasses import fields
from pathlib import Path

import nbformat
import papermill
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from adgen_utils import __version__, settings
from adgen_utils.lessons import EXECUTED_FOLDER, notebooks_folder, series, stale_executed_copies

REPO = notebooks_folder().parent
NOTEBOOKS = series()
LESSONS = {
    "01_eda": (settings.Corpus, "lessons"),
    "02_sequences": (settings.Sequences, "lessons"),
    "03_lstm": (settings.OneHotLSTM, "lessons"),
    "04_embedding_lstm": (settings.EmbeddingLSTM, "lessons"),
    "05_zero_few_shot": (settings.Prompting, "lessons,transformers"),
    "06_fine_tuning": (settings.Finetune, "lessons,transformers,quantization"),
    "07_evaluation": (settings.Evaluation, "lessons,transformers,evaluation"),
    "08_publishing": (settings.Publishing, "lessons,transformers"),
}
USES_A_GPU = {"03_lstm", "04_embedding_lstm", "05_zero_few_shot", "06_fine_tuning", "07_evaluation"}
REPOSITORY = "https://github.com/adgen-project/adgen"


def tagged(nb, tag: str):
    (cell,) = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    return cell


def read(path: Path):
    return nbformat.read(path, as_version=4)


def test_the_series_is_the_eight_lessons():
    assert [p.stem for p in NOTEBOOKS] == list(LESSONS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_lesson_is_papermill_and_colab_ready_and_stored_clean(path: Path):
    nb = read(path)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3" and nb.metadata["language_info"]["name"] == "python"
    badge = f"https://colab.research.google.com/github/adgen-project/adgen/blob/main/notebooks/{EXECUTED_FOLDER}/{path.name}"
    assert badge in nb.cells[0].source, "the first cell's badge opens the executed copy of this lesson"
    assert (nb.metadata.get("accelerator") == "GPU") == (path.stem in USES_A_GPU)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "stored without outputs"
    assert not any("import google.colab" in c.source or "from google.colab" in c.source for c in code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_setup_cell_is_three_lines_installing_this_version_with_the_lessons_extras(path: Path):
    source = tagged(read(path), "setup").source
    lines = source.splitlines()
    assert len(lines) <= 3
    assert lines[1] == 'if "google.colab" in sys.modules:'
    extras = LESSONS[path.stem][1]
    assert f"-b v{__version__} {REPOSITORY} /content/adgen" in lines[2]
    assert f'{{sys.executable}} -m pip install -q "/content/adgen[{extras}]"' in lines[2], "the kernel's own pip"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_parameters_cell_writes_the_settings_defaults_as_literals(path: Path):
    lesson = LESSONS[path.stem][0]
    cell = tagged(read(path), "parameters").source
    written = {}
    for statement in ast.parse(cell).body:
        assert isinstance(statement, ast.Assign), f"only NAME = literal lines: {ast.unparse(statement)}"
        written[statement.targets[0].id] = ast.literal_eval(statement.value)
    assert written == {f.name: getattr(lesson(), f.name) for f in fields(lesson)}
    for line in cell.splitlines():
        assert line.startswith("#") or "  # " in line, f"each value says what it changes: {line}"
    assert list(papermill.inspect_notebook(str(path))) == list(written), "papermill sees every parameter"


def namespace_after(path: Path, by_hand: str | None = None, injected: dict | None = None) -> dict:
    """Run a lesson's parameters cell (and papermill's injected cell) as the kernel would."""
    nb = papermill.iorw.load_notebook_node(str(path))
    if injected is not None:
        nb = papermill.parameterize.parameterize_notebook(nb, injected)
    namespace: dict = {}
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "parameters" in tags or "injected-parameters" in tags:
            exec(cell.source, namespace)
            if by_hand and "parameters" in tags:
                namespace["profile"] = by_hand
    return namespace


@pytest.mark.parametrize("profile", list(settings.PROFILES))
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_profile_set_by_hand_equals_adgen_run(path, profile, tmp_path):
    lesson = LESSONS[path.stem][0]
    nb = read(path)
    after = nb.cells[nb.cells.index(tagged(nb, "parameters")) + 1].source
    assert f"use_profile({lesson.__name__}, globals())" in after, "the cell after the parameters resolves them"
    by_hand = namespace_after(path, by_hand=profile)
    by_hand["run_dir"] = str(tmp_path)
    by_runner = namespace_after(path, injected={"profile": profile, "run_dir": str(tmp_path)})
    assert settings.use_profile(lesson, by_hand).settings == settings.use_profile(lesson, by_runner).settings


# ---------------------------------------------------------------------------------------------
# The setup cell, with Colab simulated at its boundary: a real git clone, pip only recorded
# ---------------------------------------------------------------------------------------------


class Shell:
    """Stands in for IPython's `!`: runs the command in bash with the repository address and
    /content/adgen pointed at test folders, and pip replaced by a record of its arguments."""

    def __init__(self, remote: Path, home: Path):
        self.remote, self.home, self.pip = remote, home, []

    def system(self, command: str) -> None:
        command = command.replace(REPOSITORY, f"file://{self.remote}").replace("/content/adgen", str(self.home))
        command = command.replace("{sys.executable} -m pip install", f"echo >> {self.home.parent}/pip.log")
        subprocess.run(["bash", "-c", command], check=False)


def run_setup(path: Path, shell: Shell) -> None:
    python = TransformerManager().transform_cell(tagged(read(path), "setup").source)
    exec(python, {"get_ipython": lambda: shell})


@pytest.fixture
def remote(tmp_path):
    """A repository to clone from, with this checkout's committed state and this version's tag."""
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(REPO), str(origin)], check=True)
    subprocess.run(["git", "--git-dir", str(origin), "tag", "-f", f"v{__version__}", "HEAD"], check=True)
    return origin


def test_the_setup_cell_does_nothing_outside_colab(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    shell = Shell(tmp_path / "nowhere", tmp_path / "adgen")
    run_setup(NOTEBOOKS[0], shell)
    assert not (tmp_path / "adgen").exists()


def test_the_setup_cell_clones_once_installs_each_time_and_says_when_it_failed(remote, tmp_path, monkeypatch, capfd):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    home = tmp_path / "content" / "adgen"
    home.parent.mkdir()
    shell = Shell(remote, home)
    run_setup(notebooks_folder() / "06_fine_tuning.ipynb", shell)
    assert (home / "pyproject.toml").is_file() and (home / "adgen_utils").is_dir()
    pip_log = home.parent / "pip.log"
    assert pip_log.read_text().split() == ["-q", f"{home}[lessons,transformers,quantization]"]
    shutil.rmtree(remote)
    run_setup(notebooks_folder() / "06_fine_tuning.ipynb", shell)  # again: no clone, the install is redone
    assert len(pip_log.read_text().splitlines()) == 2
    shutil.rmtree(home)  # a fresh machine whose clone fails
    run_setup(notebooks_folder() / "01_eda.ipynb", shell)
    assert "Setup failed (see above)" in capfd.readouterr().out
    assert len(pip_log.read_text().splitlines()) == 2, "nothing is installed from a failed clone"


def test_every_executed_copy_matches_its_lesson():
    assert stale_executed_copies() == [], "run ./run.sh --save-executed to regenerate notebooks/executed/"
