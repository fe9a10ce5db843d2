"""Benchmarks that print JSON. Each measured run is a fresh child process, so its peak RSS
(the OS's own ``ru_maxrss``) and wall time are its own; two ways are alternated in one run."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

_LOAD_ADS = """
import sys
from adgen_utils.data import load_ads
ads, report = load_ads(sys.argv[1])
print(report.rows_read, report.rows_kept)
"""
# The naive baseline: pandas.read_csv on every file, no cleaning, no accounting.
_PANDAS_READ_CSV = """
import sys
import pandas as pd
from adgen_utils.data import corpus_files, resolve_source
frames = [pd.read_csv(path, on_bad_lines="skip", encoding_errors="replace", dtype=str)
          for path, _ in corpus_files(resolve_source(sys.argv[1]))]
rows = sum(len(f) for f in frames)
print(rows, rows)
"""


def _measure(script: str, source: str) -> dict:
    """Run ``script`` in a child Python; return its wall seconds, peak RSS (MiB) and printed rows."""
    import os
    import tempfile

    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-c", script, source], stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not all children's
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        if child.returncode != 0:
            raise RuntimeError(f"benchmark child failed:\n{stderr.read()[-2000:]}")
        rows_read, rows_kept = map(int, stdout.read().split())
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024, "rows_read": rows_read, "rows_kept": rows_kept}


def bench_data(source: str, repeats: int = 3) -> dict:
    """Time and peak RSS of ``load_ads`` against plain ``pandas.read_csv`` of the same files."""
    runs = {"adgen_load_ads": [], "pandas_read_csv": []}
    for _ in range(repeats):
        runs["adgen_load_ads"].append(_measure(_LOAD_ADS, source))
        runs["pandas_read_csv"].append(_measure(_PANDAS_READ_CSV, source))
    out = {"source": source, "repeats": repeats}
    for name, measured in runs.items():
        out[name] = {
            "median_seconds": round(statistics.median(m["seconds"] for m in measured), 2),
            "seconds": [round(m["seconds"], 2) for m in measured],
            "peak_rss_mib": round(max(m["peak_rss_mib"] for m in measured), 1),
            "rows_read": measured[0]["rows_read"],
            "rows_kept": measured[0]["rows_kept"],
        }
    out["time_ratio_adgen_over_pandas"] = round(
        out["adgen_load_ads"]["median_seconds"] / out["pandas_read_csv"]["median_seconds"], 2
    )
    return out


def print_json(result: dict) -> None:
    print(json.dumps(result, indent=2))
