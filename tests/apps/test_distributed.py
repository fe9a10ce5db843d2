"""Past one process: ``adgen finetune`` under ``torchrun --nproc_per_node 2`` on this CPU (gloo): the
same model as one process on the same global batch, and resumes on another number of processes (real
runs, the tiny model). ``adgen generate`` shares a catalog out with Spark instead (tests/apps/test_spark.py)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from adgen_utils import layout
from adgen_utils.study.footing import load_ad_model

PYTHON = Path(sys.executable)
TORCHRUN = PYTHON.with_name("torchrun")
# Six steps of the ci profile's tiny model, an evaluation and a checkpoint every three.
TUNE = ["finetune", "--profile", "ci", "--no-progress", "-p", "max_steps=6", "-p", "eval_steps=3"]


def adgen(arguments: list[str], processes: int = 1, **popen) -> subprocess.Popen:
    """``adgen ARGUMENTS`` in one process, or under torchrun with ``processes``."""
    module = ["-m", "adgen_utils.apps.cli", *arguments]
    command = (
        [str(PYTHON), *module]
        if processes == 1
        else [str(TORCHRUN), "--standalone", f"--nproc_per_node={processes}", *module]
    )
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def finish(process: subprocess.Popen, timeout: float = 600) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return out


def history(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(layout.model_dir(run_dir, layout.FINETUNED) / layout.HISTORY_FILE)


def test_two_processes_fine_tune_the_model_one_process_does(tmp_path):
    # The same global batch (8 blocks: 4 per process) in the same order: the same gradients, from
    # matrix products over 4 blocks instead of 8 (bf16 autocast on a CPU that has it) summed in another
    # order; over 6 steps the losses then agree to ~1e-5 relative (rounding), so 1e-3 catches any real
    # difference (another batch, another order, a lost step) and no rounding.
    one, two = tmp_path / "one", tmp_path / "two"
    finish(adgen([*TUNE, "--run-dir", str(one)]))
    summary = json.loads(finish(adgen([*TUNE, "--run-dir", str(two)], processes=2)))
    assert summary["processes"] == 2 and len(summary["peak_rss_mib_per_process"]) == 2
    assert all(rss > 100 for rss in summary["peak_rss_mib_per_process"])
    a, b = history(one), history(two)
    assert a["step"].tolist() == b["step"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    for column in ("train_loss", "eval_loss"):
        pd.testing.assert_series_equal(a[column], b[column], rtol=1e-3)
    assert b["eval_loss"].dropna().iloc[-1] < b["eval_loss"].dropna().iloc[0]  # it learned
    folder = layout.model_dir(two, layout.FINETUNED)
    scores = load_ad_model(folder).score(["Apple Watch Band 38mm, Black", "Sony TV Remote"], categories=["x", "y"])
    assert len(scores) == 2 and (scores["log_prob"] < 0).all()  # the folder loads and scores


def test_a_checkpoint_of_two_processes_resumes_on_one(tmp_path):
    run = tmp_path / "run"
    long = [*TUNE[:-4], "-p", "max_steps=40", "-p", "eval_steps=8", "--run-dir", str(run)]
    checkpoints = layout.model_dir(run, layout.FINETUNED) / layout.CHECKPOINTS_FOLDER
    process = adgen(long, processes=2)
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("checkpoint-*/trainer_state.json")):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
    for pid in [*children(process.pid), process.pid]:  # both processes (each in a session of its own), torchrun
        os.kill(pid, signal.SIGKILL)
    process.communicate()
    assert not (layout.model_dir(run, layout.FINETUNED) / layout.FINETUNE_RESULT_FILE).exists()
    summary = json.loads(finish(adgen(long)))  # one process now
    assert summary["processes"] == 1 and summary["steps"] == 40
    assert summary["resumed_from"] in {f"checkpoint-{s}" for s in range(8, 40, 8)}
    whole = tmp_path / "whole"
    finish(adgen([*long[:-1], str(whole)]))
    resumed, uninterrupted = history(run).dropna(subset=["eval_loss"]), history(whole).dropna(subset=["eval_loss"])
    assert resumed["step"].tolist() == uninterrupted["step"].tolist() == list(range(0, 41, 8))
    pd.testing.assert_series_equal(resumed["eval_loss"], uninterrupted["eval_loss"], rtol=1e-3)


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_generate_under_torchrun_points_to_spark(monkeypatch, capsys, tmp_path):
    # Spark shares a catalog out (local[N] on one machine, a cluster past it): torchrun is for fine-tuning.
    from adgen_utils.apps.cli import main

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = main(["generate", "--input", "x.csv", "--output", str(tmp_path / "ads.csv"), "--model", "tiny"])
    assert code == 2 and "--engine spark --master local[2]" in capsys.readouterr().err
