"""Past one process: ``adgen finetune`` and ``adgen generate`` under ``torchrun --nproc_per_node 2``
on this CPU (gloo): the same model as one process on the same global batch, resumes on another
number of processes, and sharded generation that survives a killed process (real runs, the tiny model)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from adgen_utils import layout
from adgen_utils.spreadsheet import restore
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


def read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as file:
        return [{k: restore(v) for k, v in row.items()} for row in csv.DictReader(file)]


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_sharded_generation_survives_a_killed_process(write_file, tmp_path, tiny_folder):
    products = write_file("products.csv", "brand,product\n" + "".join(f"Brand{i},Widget {i}\n" for i in range(40)))
    common = ["--input", str(products), "--per-product", "2", "--candidates", "2", "--batch-size", "4"]
    common += ["--max-new-tokens", "8", "--no-progress", "--model", str(tiny_folder)]  # rules: the embedded ads
    output = tmp_path / "ads.csv"
    process = adgen(["generate", "--output", str(output), *common], processes=2, start_new_session=True)
    parts = output.with_name("ads.csv.parts")
    deadline = time.monotonic() + 300
    while not ((parts / "ads-1.csv").is_file() and (parts / "ads-1.csv").read_bytes().count(b"\n") >= 1 + 4):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no batch written within 300 s"
        time.sleep(0.02)
    workers = children(process.pid)
    assert len(workers) == 2
    os.kill(workers[1], signal.SIGKILL)  # one process of two; torchrun then stops the other
    process.communicate(timeout=120)
    assert process.returncode != 0 and parts.is_dir() and len(read(output)) < 80
    summary = json.loads(finish(adgen(["generate", "--output", str(output), *common], processes=2)))
    assert summary["processes"] == 2 and summary["resumed_from"] > 0 and summary["products_written"] == 40
    rows = read(output)
    assert [(int(r["row"]), int(r["ad_number"])) for r in rows] == [(r, n) for r in range(2, 42) for n in (1, 2)]
    assert not parts.exists() and len(read(output.with_name("ads.csv.candidates.csv"))) == 80
    alone = tmp_path / "alone.csv"
    finish(adgen(["generate", "--output", str(alone), *common]))
    assert read(alone) == rows  # the seeds follow the batches: the ads one process writes
    assert read(alone.with_name("alone.csv.candidates.csv")) == read(output.with_name("ads.csv.candidates.csv"))
