"""Where the repository is: the checkout holding the package, or, for a package installed from a
clone (the Colab setup cell), ADGEN_HOME or the clone at /content/adgen."""

from pathlib import Path

from adgen_utils import layout


def test_a_checkout_is_found_beside_the_package():
    assert (layout.repository_root() / layout.NOTEBOOKS_FOLDER / "01_eda.ipynb").is_file()


def test_an_installed_package_finds_adgen_home_or_the_colab_clone(tmp_path, monkeypatch):
    monkeypatch.setattr(layout, "__file__", str(tmp_path / "site-packages" / "adgen_utils" / "layout.py"))
    monkeypatch.delenv("ADGEN_HOME", raising=False)
    assert layout.repository_root() == Path("/content/adgen")
    monkeypatch.setenv("ADGEN_HOME", "")  # set but empty: not the current folder
    assert layout.repository_root() == Path("/content/adgen")
    monkeypatch.setenv("ADGEN_HOME", str(tmp_path / "clone"))
    assert layout.repository_root() == tmp_path / "clone"
