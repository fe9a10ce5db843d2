"""The adgen command, in process and through its installed entry point."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SAMPLE_CORPUS

from adgen_utils.apps.cli import main


def test_data_report_prints_the_load_report(write_file, capsys):
    path = write_file("ads.csv", "ad\nSony TV Remote\nSony TV Remote\nGarmin Watch Band\n")
    assert main(["data", "report", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows_read"] == 3 and report["rows_kept"] == 2 and report["dropped"] == {"duplicate": 1}
    assert set(report) >= {"rows_read", "rows_kept", "dropped", "categories", "splits"}


def test_data_prepare_writes_the_dataset(write_file, tmp_path, capsys):
    path = write_file("ads.csv", "ad\nSony TV Remote\nGarmin Watch Band\n")
    assert main(["data", "prepare", str(path), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "ads.parquet").exists() and (tmp_path / "out" / "load_report.json").exists()


def test_errors_are_one_line_messages_not_tracebacks(tmp_path, capsys):
    assert main(["data", "report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adgen: error: No such file or folder") and "Traceback" not in err
    assert main(["run", "--profile", "ci", "--only", "99"]) == 2
    assert "No notebook '99'" in capsys.readouterr().err
    assert main(["run", "--profile", "ci", "-p", "novalue"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err


@pytest.mark.skipif(
    not SAMPLE_CORPUS.is_dir(), reason="../shared/data/amazon_ads_sample10 is not beside the repository"
)
def test_report_on_the_321k_sample_accounts_for_every_row():
    beside_python = Path(sys.executable).parent / "adgen"
    adgen = str(beside_python) if beside_python.exists() else shutil.which("adgen")
    assert adgen, "the adgen console command is not installed"
    result = subprocess.run([adgen, "data", "report", str(SAMPLE_CORPUS)], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    assert report["rows_kept"] + sum(report["dropped"].values()) == report["rows_read"]
    # 321,658 CSV records by a plain parser; runaway quotes hide 19 more lines, which are read as rows.
    assert report["rows_read"] >= 321_658
    assert len(report["categories"]) == 40
    assert report["files_read"] == 524 and not report["skipped_files"]
    assert sum(report["splits"].values()) == report["rows_kept"]
    assert {"duplicate", "malformed_quoting"} <= set(report["dropped"])
