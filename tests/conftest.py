"""Shared fixtures: real CSV files written into a temporary folder."""
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
