"""Running the lessons: the series in order, an earlier lesson a later one needs, the executed copies.

* :func:`run_series` is ``adgen run``: the numbered notebooks in order with papermill, into
  ``run_dir/notebooks/``; with ``alone``, each in a fresh run folder of its own.
* :func:`run_first` is how a lesson opened on its own (say from its Colab badge) obtains an
  earlier lesson's results: it executes that notebook, so no lesson's code exists twice.
* :func:`save_executed_copies` turns a run's executed notebooks into the copies committed under
  ``notebooks/executed/``, which GitHub and the Colab badges show before anyone runs anything.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import papermill
from papermill.exceptions import PapermillExecutionError

from adgen_utils.errors import NotebookFailed, ParameterError, StageMissing
from adgen_utils.layout import NOTEBOOKS_FOLDER, SUMMARY_FILE, repository_root
from adgen_utils.logs import say
from adgen_utils.pace import REBUILD_LIMIT_ENV
from adgen_utils.settings import PROFILES, Run, default_run_dir

NOTEBOOK_NAME = re.compile(r"(\d\d)_[a-z0-9_]+\.ipynb")
EXECUTED_FOLDER = "executed"  # in notebooks/: the quick run's executed copies
INJECTED_TAG = "injected-parameters"  # papermill's tag on the cell it adds
FIGURE_WIDTH = 900  # pixels: figures in the executed copies are scaled down to this width at most
REBUILD_LIMIT_MINUTES = 20  # a lesson opened alone runs an earlier one first if its training fits this, measured here


@dataclass
class NotebookRun:
    """One executed notebook: where it went and how long it took (seconds)."""

    name: str
    output: Path
    seconds: float
    status: str


def notebooks_folder() -> Path:
    """The repository's ``notebooks/`` folder."""
    return repository_root() / NOTEBOOKS_FOLDER


def series(folder: Path | None = None, only: list[str] | None = None) -> list[Path]:
    """The lessons ``NN_name.ipynb`` in order, restricted to the numbers or names in ``only``."""
    folder = Path(folder or notebooks_folder())
    if not folder.is_dir():
        raise FileNotFoundError(f"No notebooks folder at {folder}; run adgen from a clone of the repository.")
    notebooks = sorted(p for p in folder.iterdir() if NOTEBOOK_NAME.fullmatch(p.name))
    if not only:
        return notebooks
    chosen = []
    for wanted in only:
        matches = [p for p in notebooks if p.stem == wanted or p.name[:2] == wanted.zfill(2)]
        if not matches:
            raise ParameterError(f"No notebook {wanted!r}; the series has {', '.join(p.stem for p in notebooks)}")
        chosen.extend(m for m in matches if m not in chosen)
    return sorted(chosen)


def execute(notebook: Path, output: Path, parameters: dict, progress: bool = True) -> float:
    """Execute ``notebook`` with papermill into ``output``; return its seconds.

    Raises :class:`NotebookFailed` naming the failing cell and the partly executed copy to open.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            cwd=str(notebook.parent),
            progress_bar=progress,
            kernel_name="python3",
        )
    except PapermillExecutionError as error:
        if error.ename == StageMissing.__name__:  # the lesson measured its training and refused: say why
            raise StageMissing(error.evalue) from None
        raise NotebookFailed(
            f"{notebook.stem} failed in cell {error.exec_count} with {error.ename}: {error.evalue}\n"
            f"The partly executed notebook, with the full traceback, is {output}."
        ) from None
    return time.perf_counter() - started


def run_first(
    notebook: str, run: Run, needs: str | Path, progress: bool = True, limit_minutes: float = REBUILD_LIMIT_MINUTES
) -> None:
    """Execute the lesson ``notebook`` (a file stem in notebooks/) into ``run.run_dir`` unless
    ``run.run_dir / needs`` is already there: a lesson opened alone gets an earlier lesson's results
    by running that lesson itself, with the same profile and run folder.

    The earlier lesson times its first training steps on this machine before it trains; when its
    training would take longer than ``limit_minutes`` it stops, and this raises :class:`StageMissing`
    saying to run it first (a ``full`` profile's hours are not started unasked)."""
    if (run.run_dir / needs).exists():
        return
    source = notebooks_folder() / f"{notebook}.ipynb"
    if not source.is_file():
        raise FileNotFoundError(f"{source} is missing: run adgen from a clone of the repository")
    output = run.run_dir / NOTEBOOKS_FOLDER / source.name
    say(f"{run.run_dir / needs} is missing: running {notebook} first (profile {run.settings.profile}) -> {output}")
    parameters = {"profile": run.settings.profile, "run_dir": str(run.run_dir), "figures_dir": str(run.figures_dir)}
    earlier = os.environ.get(REBUILD_LIMIT_ENV)
    os.environ[REBUILD_LIMIT_ENV] = str(limit_minutes)  # the kernel papermill starts inherits it
    try:
        seconds = execute(source, output, parameters, progress)
    finally:
        if earlier is None:
            os.environ.pop(REBUILD_LIMIT_ENV, None)
        else:
            os.environ[REBUILD_LIMIT_ENV] = earlier
    say(f"{notebook} done in {seconds:.0f} s")


def run_series(
    profile: str,
    only: list[str] | None = None,
    run_dir: str | Path | None = None,
    overrides: dict | None = None,
    progress: bool = True,
    alone: bool = False,
    notebooks_dir: str | Path | None = None,
) -> list[NotebookRun]:
    """Execute the lessons for ``profile`` into ``run_dir/notebooks``; stop at the first failure.

    ``run_dir`` defaults to ``runs/<profile>`` in the repository. With ``alone``, each notebook
    runs in a fresh folder of its own, ``<run_dir>-alone/<NN_name>``, as a notebook opened from
    its Colab badge on a new machine: it runs the earlier lessons it needs itself. ``overrides``
    go to every notebook that declares them. ``run_summary.json`` records each notebook's status.
    """
    if profile not in PROFILES:
        raise ParameterError(f"Unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    notebooks = series(notebooks_dir, only)
    series_dir = Path(run_dir or default_run_dir(profile)).resolve()
    if alone:
        series_dir = series_dir.with_name(series_dir.name + "-alone")
    declared = {notebook: papermill.inspect_notebook(str(notebook)) for notebook in notebooks}
    unknown = sorted(set(overrides or {}) - set().union(*declared.values()))
    if unknown:
        raise ParameterError(f"No notebook of this run has the parameter(s) {unknown}")
    runs: list[NotebookRun] = []
    for position, notebook in enumerate(notebooks, start=1):
        folder = series_dir / notebook.stem if alone else series_dir
        if alone:
            shutil.rmtree(folder, ignore_errors=True)  # a fresh machine: nothing from earlier notebooks
        output = folder / NOTEBOOKS_FOLDER / notebook.name
        values = {"profile": profile, "run_dir": str(folder), **(overrides or {})}
        parameters = {name: value for name, value in values.items() if name in declared[notebook]}
        say(f"[{position}/{len(notebooks)}] {notebook.stem} ({profile}{', alone' if alone else ''}) -> {output}")
        started = time.perf_counter()
        try:
            execute(notebook, output, parameters, progress)
        except NotebookFailed:
            runs.append(NotebookRun(notebook.stem, output, time.perf_counter() - started, "failed"))
            _write_summary(series_dir / SUMMARY_FILE, profile, runs)
            raise
        runs.append(NotebookRun(notebook.stem, output, time.perf_counter() - started, "ok"))
        _write_summary(series_dir / SUMMARY_FILE, profile, runs)
        say(f"    done in {runs[-1].seconds:.1f} s")
    return runs


def _write_summary(path: Path, profile: str, runs: list[NotebookRun]) -> None:
    rows = [
        {"notebook": r.name, "status": r.status, "seconds": round(r.seconds, 1), "output": str(r.output)} for r in runs
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"profile": profile, "notebooks": rows}, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# Executed copies: the quick run's notebooks, readable before anyone runs them
# ---------------------------------------------------------------------------------------------


def code_sources(notebook: nbformat.NotebookNode) -> list[str]:
    """The source of every code cell but papermill's injected parameters."""
    return [
        c.source for c in notebook.cells if c.cell_type == "code" and INJECTED_TAG not in c.metadata.get("tags", [])
    ]


def save_executed_copies(run_dir: str | Path, destination: str | Path | None = None) -> list[Path]:
    """Copy the executed notebooks of ``run_dir`` into ``notebooks/executed/``, slimmed for reading.

    papermill's injected-parameters cell, stderr streams (TensorFlow's and the progress bars'
    noise), widgets (they need their kernel) and per-cell timings are left out; figures wider than
    FIGURE_WIDTH are scaled down. Every source notebook must have its executed copy in ``run_dir``.
    """
    executed_dir = Path(run_dir) / NOTEBOOKS_FOLDER
    destination = Path(destination or notebooks_folder() / EXECUTED_FOLDER)
    destination.mkdir(parents=True, exist_ok=True)
    missing = [p.name for p in series() if not (executed_dir / p.name).is_file()]
    if missing:
        raise FileNotFoundError(f"{executed_dir} has no executed {', '.join(missing)}: run the whole series first")
    written = []
    for source in series():
        notebook = nbformat.read(executed_dir / source.name, as_version=4)
        notebook.cells = [_slim_cell(c) for c in notebook.cells if INJECTED_TAG not in c.metadata.get("tags", [])]
        notebook.metadata.pop("widgets", None)
        notebook.metadata.get("papermill", {}).pop("input_path", None)
        notebook.metadata.get("papermill", {}).pop("output_path", None)
        path = destination / source.name
        nbformat.write(notebook, path)
        written.append(path)
    return written


def _slim_cell(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cell.metadata.pop("papermill", None)
    cell.metadata.pop("execution", None)
    if cell.cell_type != "code":
        return cell
    outputs = []
    for output in cell.outputs:
        if output.output_type == "stream" and output.name == "stderr":
            continue
        data = output.get("data", {})
        if "application/vnd.jupyter.widget-view+json" in data:
            continue  # a progress bar or control: without its kernel it shows only its class name
        if "image/png" in data:
            data["image/png"] = _scaled_png(data["image/png"])
        outputs.append(output)
    cell.outputs = outputs
    return cell


def _scaled_png(encoded: str) -> str:
    from PIL import Image  # matplotlib's own dependency

    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    if image.width <= FIGURE_WIDTH:
        return encoded
    height = round(image.height * FIGURE_WIDTH / image.width)
    buffer = io.BytesIO()
    image.resize((FIGURE_WIDTH, height), Image.LANCZOS).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def stale_executed_copies(folder: str | Path | None = None) -> list[str]:
    """The lessons whose executed copy is missing or whose code cells differ from the notebook's."""
    folder = Path(folder or notebooks_folder() / EXECUTED_FOLDER)
    stale = []
    for source in series():
        copy = folder / source.name
        if not copy.is_file() or code_sources(nbformat.read(copy, as_version=4)) != code_sources(
            nbformat.read(source, as_version=4)
        ):
            stale.append(source.stem)
    return stale
