"""Run the numbered notebooks in order with papermill, as one series, into a run folder."""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import papermill
from papermill.exceptions import PapermillExecutionError

from adgen_utils.errors import NotebookFailed
from adgen_utils.layout import repository_root
from adgen_utils.logs import say
from adgen_utils.series.profiles import check_profile
from adgen_utils.series.session import default_run_dir

NOTEBOOK_NAME = re.compile(r"(\d\d)_[a-z0-9_]+\.ipynb")


@dataclass
class NotebookRun:
    """One executed notebook: where it went and how long it took (seconds)."""

    name: str
    output: Path
    seconds: float
    status: str


def notebooks_folder() -> Path:
    """The repository's ``notebooks/`` folder."""
    return repository_root() / "notebooks"


def series(folder: Path | None = None, only: list[str] | None = None) -> list[Path]:
    """The notebooks ``NN_name.ipynb`` in order, restricted to the numbers or names in ``only``."""
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
            available = ", ".join(p.stem for p in notebooks)
            raise ValueError(f"No notebook {wanted!r} in the series; it has: {available}")
        chosen.extend(m for m in matches if m not in chosen)
    return sorted(chosen)


def parameters_for(notebook: Path, profile: str, run_dir: Path, overrides: dict | None = None) -> dict:
    """Parameters to inject: ``profile``, ``run_dir`` and the ``overrides`` the notebook's
    ``parameters`` cell declares. The notebook takes every other value from the profile itself
    (``session.start``), exactly as when a person sets ``profile`` by hand."""

    declared = papermill.inspect_notebook(str(notebook))
    values = {"profile": profile, "run_dir": str(run_dir), **(overrides or {})}
    return {name: value for name, value in values.items() if name in declared}


def run_series(
    profile: str,
    only: list[str] | None = None,
    run_dir: str | Path | None = None,
    overrides: dict | None = None,
    notebooks_dir: str | Path | None = None,
    progress: bool = True,
    log=say,
    alone: bool = False,
) -> list[NotebookRun]:
    """Execute the series for ``profile`` into ``run_dir/notebooks``; stop at the first failure.

    ``run_dir`` defaults to ``runs/<profile>`` in the repository. With ``alone``, each notebook
    runs in a fresh folder of its own, ``<run_dir>-alone/<NN_name>``, as a notebook opened from
    its Colab badge on a new machine: it rebuilds what it needs from earlier notebooks itself.
    Raises :class:`NotebookFailed` naming the notebook, the failing cell and the partly executed
    copy to open. A ``run_summary.json`` in ``run_dir`` records every notebook's status.
    """

    check_profile(profile)
    notebooks = series(notebooks_dir, only)
    if not notebooks:
        raise FileNotFoundError("The notebooks folder holds no NN_name.ipynb notebooks.")
    series_dir = Path(run_dir or default_run_dir(profile)).resolve()
    if alone:
        series_dir = series_dir.with_name(series_dir.name + "-alone")
    _check_overrides(notebooks, overrides or {})

    runs: list[NotebookRun] = []
    for position, notebook in enumerate(notebooks, start=1):
        run_dir = series_dir / notebook.stem if alone else series_dir
        if alone:
            shutil.rmtree(run_dir, ignore_errors=True)  # a fresh machine: nothing from earlier notebooks
        output_dir = run_dir / "notebooks"
        output_dir.mkdir(parents=True, exist_ok=True)
        summary_path = series_dir / "run_summary.json"
        output = output_dir / notebook.name
        parameters = parameters_for(notebook, profile, run_dir, overrides)
        log(f"[{position}/{len(notebooks)}] {notebook.stem} ({profile}{', alone' if alone else ''}) -> {output}")
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
            runs.append(NotebookRun(notebook.stem, output, time.perf_counter() - started, "failed"))
            _write_summary(summary_path, profile, runs)
            raise NotebookFailed(
                f"{notebook.stem} failed in cell {error.exec_count} with {error.ename}: {error.evalue}\n"
                f"The partly executed notebook, with the full traceback, is {output}. "
                f"Later notebooks were not run."
            ) from None
        runs.append(NotebookRun(notebook.stem, output, time.perf_counter() - started, "ok"))
        _write_summary(summary_path, profile, runs)
        log(f"    done in {runs[-1].seconds:.1f} s")
    return runs


def _check_overrides(notebooks: list[Path], overrides: dict) -> None:

    declared = set()
    for notebook in notebooks:
        declared.update(papermill.inspect_notebook(str(notebook)))
    unknown = sorted(set(overrides) - declared)
    if unknown:
        raise ValueError(f"No notebook in this run declares {unknown}; the parameters are {sorted(declared)}")


def _write_summary(path: Path, profile: str, runs: list[NotebookRun]) -> None:
    rows = [
        {"notebook": r.name, "status": r.status, "seconds": round(r.seconds, 1), "output": str(r.output)} for r in runs
    ]
    path.write_text(json.dumps({"profile": profile, "notebooks": rows}, indent=2) + "\n")
