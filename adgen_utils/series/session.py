"""What every notebook does first: install on Colab, resolve its parameters, find its run folder.

* :func:`colab_install` is called by the setup cell on Colab only, after it cloned the repository:
  it installs the package with the extras this notebook needs (never Colab's torch, TensorFlow
  or kernel stack), once, and again if an earlier install did not finish.
* :func:`start` is the cell after ``parameters``: every parameter left as ``...`` takes the value
  of ``profile`` (so setting only ``profile = "full"`` by hand gives what ``adgen run --profile
  full`` gives), values are type-checked, Google Drive is mounted when ``drive`` is True, the
  settings are shown, and missing results of earlier notebooks are rebuilt or named.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

import adgen_utils
from adgen_utils.errors import ParameterError
from adgen_utils.layout import repository_root
from adgen_utils.logs import say, show_messages
from adgen_utils.parameters import DEFAULT_PROFILE, declared, matches_type, notebook
from adgen_utils.series.profiles import PROFILES, check_profile, profile_values
from adgen_utils.series.stages import ensure_earlier_stages

COLAB_HOME = Path("/content/adgen")  # where the setup cell clones the repository on Colab
DRIVE_MOUNT = Path("/content/drive")
DRIVE_RUNS = DRIVE_MOUNT / "MyDrive" / "adgen" / "runs"
RUNS_FOLDER = "runs"


def in_colab() -> bool:
    """True inside a Google Colab runtime (its ``google.colab`` module is loaded at start)."""
    return "google.colab" in sys.modules


# ---------------------------------------------------------------------------------------------
# Colab installation
# ---------------------------------------------------------------------------------------------


def install_marker(home: Path, extras: tuple[str, ...]) -> Path:
    """The file written once ``pip install -e home[extras]`` has finished."""
    return home / f".adgen-installed-{'-'.join(extras) or 'base'}"


def colab_install(name: str, version: str, home: str | Path = COLAB_HOME, run=None, log=say) -> None:
    """Install the cloned repository at ``home`` for notebook ``name`` and work from its notebooks.

    Only the package and the extras ``name`` declares are installed (``pip install -e``); pip
    keeps what Colab already has when it satisfies the requirements. The ``quantization`` extra
    (bitsandbytes) is added only where a CUDA GPU is present. A marker file records a finished
    install, so running the cell again does nothing, and an install that failed or was interrupted
    is redone. Raises RuntimeError with pip's last lines when the install fails.
    """

    run = run or subprocess.run
    home = Path(home)
    extras = tuple(e for e in notebook(name).extras if e != "quantization" or _has_cuda())
    marker = install_marker(home, extras)
    if not marker.is_file():
        target = f"{home}[{','.join(extras)}]" if extras else str(home)
        log(f"setup: installing adgen{' with ' + ', '.join(extras) if extras else ''} (about a minute)")
        result = run([sys.executable, "-m", "pip", "install", "--quiet", "-e", target], capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise RuntimeError(
                f"pip could not install {target}:\n{tail}\nRun this cell again to retry; if it fails "
                "the same way, Runtime > Disconnect and delete runtime gives a fresh machine."
            )
        marker.write_text(" ".join(extras) + "\n")
    if adgen_utils.__version__ != version:
        log(
            f"setup: note: this notebook was written for adgen {version}; the clone holds "
            f"{adgen_utils.__version__} (no tag v{version} in the repository)."
        )
    importlib.invalidate_caches()
    os.chdir(home / "notebooks")
    log(f"setup: adgen {adgen_utils.__version__} ready in {home}")


def _has_cuda() -> bool:
    """True where nvidia-smi sees a GPU (asked before the install, without importing torch)."""
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


def mount_drive(mount=None) -> Path:
    """Mount Google Drive (Colab only) and return the folder where run folders are kept."""
    if mount is None:
        if not in_colab():
            raise ParameterError("drive = True needs Google Colab; elsewhere set run_dir to a folder instead")
        from google.colab import drive

        mount = drive.mount
    if not (DRIVE_MOUNT / "MyDrive").is_dir():
        mount(str(DRIVE_MOUNT))
    DRIVE_RUNS.mkdir(parents=True, exist_ok=True)
    return DRIVE_RUNS


# ---------------------------------------------------------------------------------------------
# Parameters and the run folder
# ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    """A notebook's resolved settings: ``values`` (every parameter), where each came from
    (``sources``: "profile quick" or "set"), and the run and figures folders."""

    notebook: str
    profile: str
    values: dict
    sources: dict
    run_dir: Path
    figures_dir: Path
    stages: object = field(default=None, repr=False)

    def table(self):
        """The settings as a DataFrame: value, where it came from, and what it means."""

        meanings = {p.name: p.help for p in declared(self.notebook)}
        return pd.DataFrame(
            [
                {"parameter": name, "value": repr(value), "from": self.sources[name], "meaning": meanings[name]}
                for name, value in self.values.items()
            ]
        ).set_index("parameter")


def resolve(name: str, namespace: dict) -> tuple[dict, dict]:
    """``(values, sources)`` of notebook ``name``'s parameters from ``namespace`` (the notebook's
    globals): ``...`` or absent takes the profile's value; anything else must fit the declared type."""
    profile = namespace.get("profile", ...)
    profile = DEFAULT_PROFILE if profile is ... else profile
    if not isinstance(profile, str):
        raise ParameterError(f"profile must be one of {list(PROFILES)}, not {profile!r}")
    check_profile(profile)
    from_profile = profile_values(profile, name)
    values, sources = {"profile": profile}, {"profile": "set"}
    for parameter in declared(name)[1:]:  # after profile itself
        given = namespace.get(parameter.name, ...)
        if given is ...:
            values[parameter.name] = from_profile[parameter.name]
            sources[parameter.name] = f"profile {profile}"
            continue
        if isinstance(given, tuple):
            given = list(given)
        if not matches_type(given, parameter.type):
            raise ParameterError(f"{parameter.name} must be {parameter.type} ({parameter.help}), not {given!r}")
        values[parameter.name] = given
        sources[parameter.name] = "set"
    return values, sources


def default_run_dir(profile: str, on_drive: bool = False) -> Path:
    """``runs/<profile>`` in the repository, or in the adgen folder of Google Drive."""
    return (DRIVE_RUNS if on_drive else repository_root() / RUNS_FOLDER) / profile


def start(name: str, namespace: dict, show: bool = True, rebuild: bool = True, log=say) -> Run:
    """Resolve notebook ``name``'s parameters into ``namespace`` and prepare its run folder.

    Every parameter left as ``...`` takes ``profile``'s value; ``run_dir`` defaults to
    ``runs/<profile>`` (on Drive with ``drive = True``); ``figures_dir`` to ``figures/``
    (``run_dir/figures`` for the ci profile and on Drive). The resolved values are written back
    into ``namespace``, shown as a table, and earlier notebooks' missing results are rebuilt
    (see :func:`adgen_utils.stages.ensure_earlier_stages`). Returns the :class:`Run`.
    """
    show_messages()

    values, sources = resolve(name, namespace)
    profile = values["profile"]
    if values["drive"]:
        mount_drive()
    if values["run_dir"] is None:
        values["run_dir"] = str(default_run_dir(profile, on_drive=values["drive"]))
        sources["run_dir"] = "default" if not values["drive"] else "drive"
    run_dir = Path(values["run_dir"]).expanduser().resolve()
    if values["figures_dir"] is None:
        in_run = PROFILES[profile].figures_in_run_dir or values["drive"]
        values["figures_dir"] = str(run_dir / "figures" if in_run else repository_root() / "figures")
        sources["figures_dir"] = "default"
    run_dir.mkdir(parents=True, exist_ok=True)
    namespace.update(values)
    run = Run(name, profile, values, sources, run_dir, Path(values["figures_dir"]))
    if show:
        from IPython.display import display

        with _wide_columns():
            display(run.table())
    if rebuild:
        run.stages = ensure_earlier_stages(name, run_dir, profile, log=log)
    return run


def _wide_columns():

    return pd.option_context("display.max_colwidth", 200, "display.max_rows", 100)
