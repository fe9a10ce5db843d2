"""Every notebook opens in Colab from its badge, runs under papermill, takes its parameters from
one declaration and is stored clean; the README's generated parts agree with the declarations."""

import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import papermill
import pytest

from adgen_utils import __version__, errors, parameters
from adgen_utils.series import session, sync
from adgen_utils.series.profiles import PROFILES, changes, profile_values
from adgen_utils.series.runner import notebooks_folder, parameters_for, series

NOTEBOOKS = series(notebooks_folder())
REPO = notebooks_folder().parent


def tagged_source(nb, tag: str) -> str:
    (cell,) = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    return cell.source


def test_the_series_is_the_declared_series():
    assert [p.stem for p in NOTEBOOKS] == list(parameters.NOTEBOOKS)


def test_notebooks_and_readme_agree_with_the_declarations():
    assert sync.sync(check=True) == [], "run `adgen sync`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_papermill_and_colab_ready(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.metadata["language_info"]["name"] == "python"
    url = sync.repository_url()
    assert sync.badge_link(url, path.name) in nb.cells[0].source, "the first cell's badge opens this notebook"
    setup = tagged_source(nb, "setup")
    assert 'if "google.colab" in sys.modules:' in setup and f'"{url}"' in setup and f'"v{__version__}"' in setup
    every_github_address = set(re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", json.dumps(nb.dict())))
    assert every_github_address <= {url}, "no notebook points at another repository"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"^\s*(import google\.colab|from google\.colab)", code, re.M), (
        "a headless run must never import google.colab"
    )
    asks_for_gpu = nb.metadata.get("accelerator") == "GPU"
    assert asks_for_gpu == parameters.notebook(path.stem).gpu, "only notebooks that use a GPU ask Colab for one"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_declared_parameter_with_its_type(path: Path):
    found = papermill.inspect_notebook(str(path))
    declared = parameters.declared(path.stem)
    assert list(found) == [p.name for p in declared]
    for parameter in declared:
        assert found[parameter.name]["inferred_type_name"] == parameter.type
        assert found[parameter.name]["help"].endswith(parameter.help)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_profiles_change_only_declared_parameters_with_values_of_their_type(profile):
    for name in parameters.NOTEBOOKS:
        types_ = {p.name: p.type for p in parameters.declared(name)}
        for key, value in changes(profile, name).items():
            assert key in types_, f"profile {profile} changes {name}.{key}, which is not declared"
            assert parameters.matches_type(value, types_[key]), f"{profile}: {name}.{key}={value!r}"
    assert set(PROFILES[profile].changes) <= set(parameters.NOTEBOOKS)


def test_the_library_defaults_are_the_declared_defaults():
    from adgen_utils.corpus.data import CleanConfig, SplitConfig
    from adgen_utils.lstm.model import LSTMConfig
    from adgen_utils.transformer.finetune import FinetuneConfig

    nb01, nb03, nb06 = (parameters.defaults(n) for n in ("01_eda", "03_lstm", "06_fine_tuning"))
    assert (CleanConfig().min_chars, CleanConfig().max_chars) == (nb01["min_chars"], nb01["max_chars"])
    assert (SplitConfig().validation, SplitConfig().test) == (nb01["validation_fraction"], nb01["test_fraction"])
    lstm_config = LSTMConfig()
    for key in ("units", "layers", "dropout", "learning_rate", "batch_size", "epochs", "patience", "loss", "sampled"):
        assert getattr(lstm_config, key) == nb03[key], key
    finetune_config = FinetuneConfig()
    for key in (
        "block_size",
        "batch_size",
        "gradient_accumulation",
        "epochs",
        "max_steps",
        "learning_rate",
        "method",
        "category_prefix",
        "eval_steps",
    ):
        assert getattr(finetune_config, key) == nb06[key], key


# ---------------------------------------------------------------------------------------------
# One profile, set by hand or by adgen run, gives the same settings
# ---------------------------------------------------------------------------------------------


def run_parameters_cells(path: Path, profile_by_hand: str | None = None, injected: dict | None = None) -> dict:
    """Execute a notebook's parameters cell (and papermill's injected cell) as the kernel would;
    return the namespace."""
    nb = papermill.iorw.load_notebook_node(str(path))  # as papermill reads it (every cell gets tags)
    if injected is not None:
        nb = papermill.parameterize.parameterize_notebook(nb, injected)
    namespace: dict = {}
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "parameters" in tags or "injected-parameters" in tags:
            exec(cell.source, namespace)
            if profile_by_hand and "parameters" in tags:
                namespace["profile"] = profile_by_hand
    return namespace


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_profile_by_hand_equals_adgen_run(path, profile, tmp_path):
    by_hand, _ = session.resolve(path.stem, run_parameters_cells(path, profile_by_hand=profile))
    injected = parameters_for(path, profile, tmp_path)
    by_runner, _ = session.resolve(path.stem, run_parameters_cells(path, injected=injected))
    expected = profile_values(profile, path.stem)
    assert by_hand == expected
    assert by_runner == {**expected, "run_dir": str(tmp_path)}


def test_one_value_overrides_the_profile_and_a_wrong_type_is_refused(tmp_path):
    path = notebooks_folder() / "03_lstm.ipynb"
    namespace = run_parameters_cells(path, injected=parameters_for(path, "full", tmp_path, {"units": 7}))
    values, sources = session.resolve("03_lstm", namespace)
    assert values["units"] == 7 and sources["units"] == "set"
    assert values["epochs"] == profile_values("full", "03_lstm")["epochs"] and sources["epochs"] == "profile full"
    namespace["units"] = "many"
    with pytest.raises(errors.ParameterError, match=r"units must be int \(LSTM units per layer"):
        session.resolve("03_lstm", namespace)
    namespace.update(units=7, profile="huge")
    with pytest.raises(ValueError, match="Unknown profile 'huge'"):
        session.resolve("03_lstm", namespace)


def test_start_fills_the_namespace_and_finds_the_run_folder(tmp_path):
    namespace = run_parameters_cells(notebooks_folder() / "08_publishing.ipynb")
    namespace["run_dir"] = str(tmp_path / "run")
    run = session.start("08_publishing", namespace, show=False, rebuild=False)
    assert namespace["repo_id"] == parameters.default("08_publishing", "repo_id")
    assert run.run_dir == tmp_path / "run" and run.run_dir.is_dir()
    assert run.figures_dir == REPO / "figures"  # quick: the repository's figures
    assert list(run.table().index) == [p.name for p in parameters.declared("08_publishing")]


def test_drive_keeps_the_run_folder_on_google_drive(tmp_path, monkeypatch):
    mounted = []
    monkeypatch.setattr(session, "DRIVE_MOUNT", tmp_path / "drive")
    monkeypatch.setattr(session, "DRIVE_RUNS", tmp_path / "drive" / "MyDrive" / "adgen" / "runs")
    fake_colab = types.ModuleType("google.colab")
    fake_colab.drive = types.SimpleNamespace(
        mount=lambda where: (mounted.append(where), Path(where, "MyDrive").mkdir(parents=True))
    )
    monkeypatch.setitem(sys.modules, "google.colab", fake_colab)
    namespace = run_parameters_cells(notebooks_folder() / "02_sequences.ipynb", profile_by_hand="ci")
    namespace["drive"] = True
    run = session.start("02_sequences", namespace, show=False, rebuild=False)
    assert mounted == [str(tmp_path / "drive")]
    assert run.run_dir == tmp_path / "drive" / "MyDrive" / "adgen" / "runs" / "ci"
    assert run.figures_dir == run.run_dir / "figures"
    again = session.start("02_sequences", dict(namespace), show=False, rebuild=False)
    assert again.run_dir == run.run_dir and len(mounted) == 1, "an already mounted Drive is not mounted again"


def test_drive_outside_colab_is_a_clear_error(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    with pytest.raises(errors.ParameterError, match="drive = True needs Google Colab"):
        session.mount_drive()


# ---------------------------------------------------------------------------------------------
# The repository address, in one place
# ---------------------------------------------------------------------------------------------


def copy_of_repository(tmp_path) -> Path:
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, root / name)
    for path in NOTEBOOKS:
        shutil.copy(path, root / "notebooks" / path.name)
    shutil.copytree(REPO / "results", root / "results")  # the README's measured section is written from it
    return root


def test_a_fork_moves_every_badge_setup_cell_and_link_with_one_command(tmp_path):
    root = copy_of_repository(tmp_path)
    old = sync.repository_url(root)
    sync.set_repository_url("https://github.com/someone/adgen-fork", root)
    assert sync.repository_url(root) == "https://github.com/someone/adgen-fork"
    changed = sync.sync(root=root)
    assert len(changed) == len(NOTEBOOKS) + 1
    texts = [p.read_text() for p in (root / "notebooks").glob("*.ipynb")] + [(root / "README.md").read_text()]
    assert not any(old in text for text in texts)
    for path in (root / "notebooks").glob("*.ipynb"):
        text = path.read_text()
        assert f"colab.research.google.com/github/someone/adgen-fork/blob/main/notebooks/{path.name}" in text
        assert "https://github.com/someone/adgen-fork" in text
    assert sync.sync(check=True, root=root) == []


def test_a_drifted_notebook_or_readme_is_found(tmp_path):
    root = copy_of_repository(tmp_path)
    readme = root / "README.md"
    readme.write_text(readme.read_text().replace("| `units` | `128`", "| `units` | `256`"))
    notebook = root / "notebooks" / "03_lstm.ipynb"
    notebook.write_text(notebook.read_text().replace("units: int = ...", "units: int = 256"))
    assert sync.sync(check=True, root=root) == ["notebooks/03_lstm.ipynb", "README.md"]


@pytest.mark.parametrize("url", ["https://gitlab.com/a/b", "github.com/a/b", "https://github.com/only-owner"])
def test_only_github_addresses_are_accepted(url):
    with pytest.raises(ValueError, match="not a GitHub repository address"):
        sync.check_github_url(url)


# ---------------------------------------------------------------------------------------------
# The setup cell, with Colab simulated at its boundary
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def remote(tmp_path):
    """A repository to clone from (a file URL), holding this checkout's committed state."""
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(REPO), str(origin)], check=True)
    return origin


def colab_setup_source(name: str, url: str, home: Path) -> str:
    return sync.setup_cell(name, url).replace(f'"{session.COLAB_HOME}"', f'"{home}"')


@pytest.fixture
def fake_colab(monkeypatch):
    installs = []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(session, "colab_install", lambda name, version: installs.append((name, version)))
    saved_path = list(sys.path)
    yield installs
    sys.path[:] = saved_path


def test_the_setup_cell_does_nothing_outside_colab(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(colab_setup_source("01_eda", "file:///nonexistent", tmp_path / "adgen"), {})
    assert not (tmp_path / "adgen").exists()


def test_the_setup_cell_clones_once_and_redoes_an_interrupted_clone(remote, tmp_path, fake_colab, capfd):
    home = tmp_path / "content" / "adgen"
    source = colab_setup_source("05_zero_few_shot", f"file://{remote}", home)
    exec(source, {})  # no tag v<version> in the remote: falls back to its default branch
    assert (home / ".adgen-cloned").is_file() and (home / "adgen_utils" / "series" / "session.py").is_file()
    assert fake_colab == [("05_zero_few_shot", __version__)]
    shutil.rmtree(remote)
    exec(source, {})  # run again: nothing to clone
    assert len(fake_colab) == 2
    (home / ".adgen-cloned").unlink()  # as if the first run was interrupted mid-clone
    with pytest.raises(subprocess.CalledProcessError):
        exec(source, {})
    assert re.search(r"(?s)fatal: .*Could not clone file://.*run this cell again", capfd.readouterr().err)
    assert not (home / ".adgen-cloned").exists()


def test_the_setup_cell_prefers_the_tag_of_its_version(remote, tmp_path, fake_colab):
    subprocess.run(["git", "--git-dir", str(remote), "tag", f"v{__version__}", "HEAD~1"], check=True)
    home = tmp_path / "adgen"
    exec(colab_setup_source("01_eda", f"file://{remote}", home), {})
    cloned = subprocess.run(["git", "-C", str(home), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    tagged = subprocess.run(["git", "--git-dir", str(remote), "rev-parse", "HEAD~1"], capture_output=True, text=True)
    assert cloned == tagged.stdout


class FakePip:
    """Records pip calls; fails the first ``failures`` of them with pip-like output."""

    def __init__(self, failures: int = 0):
        self.calls, self.failures = [], failures

    def __call__(self, command, **_):
        self.calls.append(command)
        failed = len(self.calls) <= self.failures
        return types.SimpleNamespace(
            returncode=1 if failed else 0,
            stdout="Collecting x\n",
            stderr="ERROR: No matching distribution found for gguf" if failed else "",
        )


def test_colab_install_installs_only_what_the_notebook_needs_once(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(session, "_has_cuda", lambda: False)
    pip = FakePip()
    session.colab_install("01_eda", __version__, home=tmp_path, run=pip, log=lambda _: None)
    session.colab_install("01_eda", __version__, home=tmp_path, run=pip, log=lambda _: None)
    assert len(pip.calls) == 1 and pip.calls[0][-1] == str(tmp_path), "no extras, and only once"
    session.colab_install("06_fine_tuning", __version__, home=tmp_path, run=pip, log=lambda _: None)
    assert pip.calls[1][-1] == f"{tmp_path}[transformers]", "no bitsandbytes without a GPU"
    monkeypatch.setattr(session, "_has_cuda", lambda: True)
    session.colab_install("06_fine_tuning", __version__, home=tmp_path, run=pip, log=lambda _: None)
    assert pip.calls[2][-1] == f"{tmp_path}[transformers,quantization]"
    assert not any("run" in c[-1].split("[")[-1] for c in pip.calls), "never the kernel stack of the run extra"
    assert Path.cwd() == tmp_path / "notebooks"


def test_a_failed_install_says_why_and_is_redone(tmp_path):
    (tmp_path / "notebooks").mkdir()
    pip = FakePip(failures=1)
    with pytest.raises(RuntimeError, match=r"(?s)No matching distribution found for gguf.*Run this cell again"):
        session.colab_install("05_zero_few_shot", __version__, home=tmp_path, run=pip, log=lambda _: None)
    messages = []
    session.colab_install("05_zero_few_shot", "0.0.1", home=tmp_path, run=pip, log=messages.append)
    assert len(pip.calls) == 2
    assert any("written for adgen 0.0.1" in m for m in messages), "a version mismatch is said"
