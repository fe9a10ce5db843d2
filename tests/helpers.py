"""What tests import by name: where the 10% development sample lies, the ads the small LSTM of the
``lstm_folder`` fixture learns, and the kill-and-resume runner of the training tests (run a script,
SIGKILL it at a marker line, run it again to its end)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_until(script: Path, folder: Path, marker: str, *args: str) -> list[str]:
    """Run a training ``script`` (``python script folder *args``) and SIGKILL it as soon as it prints a
    line starting with ``marker``; return the lines it printed up to that one."""
    child = subprocess.Popen(
        [sys.executable, str(script), str(folder), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = []
    try:
        for line in child.stdout:
            lines.append(line.strip())
            if line.startswith(marker):
                break
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert lines and lines[-1].startswith(marker), f"the script ended without printing {marker!r}"
    return lines


def run_to_end(script: Path, folder: Path, *args: str) -> str:
    """Run the ``script`` again to its end (it resumes); return what it printed."""
    done = subprocess.run(
        [sys.executable, str(script), str(folder), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


SAMPLE_CORPUS = REPO.parent / "shared" / "data" / "amazon_ads_sample10"

# Ads of 4 brands x 3 product types x 3 colours: what the small LSTM of conftest's lstm_folder learns.
LSTM_ADS = [
    f"{b} {p} {c}"
    for b in ["Apple", "Sony", "Fitbit", "Garmin"]
    for p in ["Watch Band", "TV Remote", "Charger Cable"]
    for c in ["Black", "White", "Blue"]
]
