"""Every notebook in the series opens in Colab, runs under papermill and is stored clean."""
import re
from pathlib import Path

import nbformat
import pytest

from adgen_utils import GITHUB_REPOSITORY
from adgen_utils.profiles import PROFILES
from adgen_utils.runner import notebooks_folder, series

NOTEBOOKS = series(notebooks_folder())


def test_the_series_starts_with_01_eda():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "01_eda.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_papermill_and_colab_ready(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.metadata["language_info"]["name"] == "python"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    badge = f"https://colab.research.google.com/github/{GITHUB_REPOSITORY}/blob/main/notebooks/{path.name}"
    assert badge in nb.cells[0].source, "the first cell carries an Open in Colab badge for this notebook"
    setup = nb.cells[1].source
    assert setup.splitlines()[0].startswith("# Colab only")
    assert 'if "google.colab" in sys.modules:' in setup
    assert f"https://github.com/{GITHUB_REPOSITORY}" in setup
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"^\s*(import google\.colab|from google\.colab)", code, re.M), \
        "a headless run must never import google.colab"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


@pytest.mark.parametrize("profile", list(PROFILES))
def test_profile_parameters_exist_in_their_notebooks(profile):
    import papermill

    by_name = {p.stem: p for p in NOTEBOOKS}
    for notebook, parameters in PROFILES[profile]["notebooks"].items():
        assert notebook in by_name, f"profile {profile} names a notebook that does not exist: {notebook}"
        declared = papermill.inspect_notebook(str(by_name[notebook]))
        assert set(parameters) <= set(declared), f"{notebook} lacks {set(parameters) - set(declared)}"
