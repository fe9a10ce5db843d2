"""Shared fixtures (real CSV files written into a temporary folder, the embedded ads, a tiny
model) and the kill-and-resume runner of the training tests."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CORPUS = REPO.parent / "shared" / "data" / "amazon_ads_sample10"


@pytest.fixture
def write_file(tmp_path):
    """write_file("a/b.csv", b"...") -> Path: writes bytes (or text as UTF-8) under tmp_path."""

    def write(relative: str, content) -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    return write


@pytest.fixture(scope="session")
def embedded_ads():
    """The embedded corpus, cleaned and split (DataFrame with ad, category, split, ...)."""
    from adgen_utils.data import load_ads

    ads, _ = load_ads("embedded", progress=False)
    return ads


@pytest.fixture(scope="session")
def tiny_folder(embedded_ads, tmp_path_factory):
    """An untrained tiny GPT-Neo with a tokenizer trained on 2,000 embedded training ads."""
    from adgen_utils import pretrained

    return pretrained.resolve_model("tiny", models_dir=tmp_path_factory.mktemp("models"),
                                    training_texts=embedded_ads.loc[embedded_ads["split"] == "train", "ad"].head(2000))


def run_until(script: Path, folder: Path, marker: str, *args: str) -> list[str]:
    """Run a training ``script`` (``python script folder *args``) and SIGKILL it as soon as it prints a
    line starting with ``marker``; return the lines it printed up to that one."""
    child = subprocess.Popen([sys.executable, str(script), str(folder), *args], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
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
    done = subprocess.run([sys.executable, str(script), str(folder), *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
