"""Saved results: the JSON files in ``results/`` that ``benchmarks/render_results.py`` renders as tables.

Every saved result says when (UTC), where (:func:`adgen_utils.hardware.describe_machine`) and by
which command it was measured, in a ``measured`` block (:func:`with_provenance`). The benchmarks
(``python -m benchmarks.bench NAME > results/bench_NAME.json``) print such JSON; :func:`save_run`
writes one for a run of the lessons (``adgen run``): lesson 07's comparison rows, each lesson's
time, and the training figures of lessons 03, 04 and 06::

    python -m benchmarks.results save runs/quick    # -> results/run_quick.json

Units: times in seconds, memory in GiB (machine) or MiB (peak RSS).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
from pathlib import Path

from adgen_utils.hardware import describe_machine
from adgen_utils.layout import (
    EMBEDDING_LSTM,
    FINETUNE_RESULT_FILE,
    FINETUNED,
    HISTORY_FILE,
    LSTM_METRICS_FILE,
    LSTM_STATE_FILE,
    ONE_HOT_LSTM,
    PLAN_FILE,
    RUN_RESULT_FILE,
    SUMMARY_FILE,
    comparison_path,
    model_dir,
    results_dir,
)
from adgen_utils.pace import Plan


def with_provenance(result: dict, command: list[str], **context) -> dict:
    """``result`` under a ``measured`` block: ``date`` (UTC, to the minute), ``command`` (the words
    of the command line, joined), ``machine`` (:func:`describe_machine`) and any ``context``
    (e.g. ``profile``), so a saved file says where its figures came from."""
    measured = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(command),
        "machine": describe_machine(),
        **context,
    }
    return {"measured": measured, **result}


def _number(text: str):
    """A CSV cell as an int or float where it is one, else the text (None when empty)."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as file:
        return [{key: _number(value) for key, value in row.items()} for row in csv.DictReader(file)]


def _lstm_figures(folder: Path) -> dict | None:
    """An LSTM's training record (``training.json``: the settings its lesson recorded, its status and
    epochs run) and its test perplexity per model token, when its lesson wrote ``metrics.csv`` (row
    trained/test); None without a model."""
    state_path = folder / LSTM_STATE_FILE
    if not state_path.is_file():
        return None
    state = json.loads(state_path.read_text())
    figures = {**state["settings"], "status": state.get("status"), "epochs_run": state.get("epochs_run")}
    figures["precision"] = "fp32"  # Keras trains the LSTMs in float32 on every machine here
    plan = json.loads((folder / PLAN_FILE).read_text())["plan"] if (folder / PLAN_FILE).is_file() else None
    if plan:  # what the lesson measured before training, and what it then took
        figures["plan"] = plan
        figures["batches_per_epoch"] = plan["chosen"]
        figures["estimated_seconds"] = round(Plan(**plan).seconds, 1)
    history = folder / HISTORY_FILE
    if history.is_file():
        figures["train_wall_seconds"] = round(sum(r.get("seconds", 0) for r in _csv_rows(history)), 1)
    metrics = folder / LSTM_METRICS_FILE
    if metrics.is_file():
        test = [r for r in _csv_rows(metrics) if r.get("model") == "trained" and r.get("split") == "test"]
        if test:
            figures["test_perplexity"] = test[0]["perplexity"]
    return figures


def _finetune_figures(folder: Path) -> dict | None:
    """The fine-tuning's model, method, data, steps, time (s) and validation perplexity before and
    after (``finetune.json``); None without one."""
    path = folder / FINETUNE_RESULT_FILE
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    keep = ("method", "precision", "train_tokens", "steps", "epochs", "train_seconds", "train_wall_seconds")
    keep += ("plan", "perplexity_before", "perplexity_after")
    figures = {
        "base_model": Path(str(result.get("base_model"))).name,
        "train_texts": result["settings"].get("train_texts"),
        **{key: result.get(key) for key in keep},
    }
    if result.get("plan"):
        figures["estimated_seconds"] = round(Plan(**result["plan"]).seconds, 1)
    return figures


def run_results(run_dir: str | Path) -> dict:
    """What a run of the lessons in ``run_dir`` measured: ``profile``, ``notebooks`` (name, status,
    seconds; ``run_summary.json``), ``comparison`` (lesson 07's rows) and ``models`` (the training
    figures of the models of lessons 03, 04 and 06). Raises FileNotFoundError without lesson 07's table."""
    run_dir = Path(run_dir)
    comparison = comparison_path(run_dir)
    if not comparison.is_file():
        raise FileNotFoundError(f"{comparison} does not exist: run lesson 07 in {run_dir} first (adgen run)")
    summary_path = run_dir / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    models = {
        "03_lstm": _lstm_figures(model_dir(run_dir, ONE_HOT_LSTM)),
        "04_embedding_lstm": _lstm_figures(model_dir(run_dir, EMBEDDING_LSTM)),
        "06_fine_tuning": _finetune_figures(model_dir(run_dir, FINETUNED)),
    }
    return {
        "profile": summary.get("profile"),
        "run_dir": str(run_dir),
        "notebooks": [
            {key: row[key] for key in ("notebook", "status", "seconds")} for row in summary.get("notebooks", [])
        ],
        "comparison": _csv_rows(comparison),
        "models": {name: figures for name, figures in models.items() if figures is not None},
    }


def save_run(
    run_dir: str | Path, command: list[str], profile: str | None = None, folder: str | Path | None = None
) -> Path:
    """Write :func:`run_results` of ``run_dir``, with provenance, to ``folder`` (default the
    repository's ``results/``) as ``run_<profile>.json``; ``profile`` defaults to the one
    ``run_summary.json`` names, else the run folder's name. Returns the file's path. Save on the
    machine that ran the series: the file describes this machine."""
    result = run_results(run_dir)
    profile = profile or result["profile"] or Path(run_dir).resolve().name
    path = Path(folder or results_dir()) / RUN_RESULT_FILE.format(profile=profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = with_provenance({**result, "profile": profile}, command, profile=profile)
    path.write_text(json.dumps(saved, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.results save RUN_DIR [--profile P] [--results-dir D]``: prints the file's path."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.results", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    save = commands.add_parser("save", help="a run's comparison, lesson times and training figures as run_PROFILE.json")
    save.add_argument("run_dir", help="a run folder, e.g. runs/quick")
    save.add_argument("--profile", help="the run's profile (default: the one run_summary.json names)")
    save.add_argument("--results-dir", help="where to write (default: the repository's results/)")
    args = parser.parse_args(argv)
    try:
        path = save_run(args.run_dir, ["python", "-m", "benchmarks.results", *argv], args.profile, args.results_dir)
    except FileNotFoundError as error:
        print(f"benchmarks.results: error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
