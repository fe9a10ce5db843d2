"""Measuring in child processes: every measured run is a fresh Python started from the repository
root, so its wall time and peak RSS (the OS's own ``ru_maxrss`` from ``wait4``) are its own.

Units: seconds, MiB (peak RSS).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from adgen_utils.layout import repository_root


def run_child(arguments: list[str], kill_after: float | None = None) -> dict:
    """Run ``python ARGUMENTS`` in the repository root (so ``-m benchmarks...`` imports) and wait for
    it, or SIGKILL it once it has run ``kill_after`` seconds. Returns its ``exit_code`` (-9 when
    killed), ``stdout``, ``stderr``, wall ``seconds`` and ``peak_rss_mib`` (its own, not its children's)."""
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, *arguments], stdout=stdout, stderr=stderr, cwd=repository_root())
        while True:
            pid, status, usage = os.wait4(child.pid, 0 if kill_after is None else os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started >= kill_after:
                child.send_signal(signal.SIGKILL)
                kill_after = None  # now wait for it to die
            else:
                time.sleep(0.05)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        return {
            "exit_code": child.returncode,
            "stdout": stdout.read(),
            "stderr": stderr.read(),
            "seconds": seconds,
            "peak_rss_mib": usage.ru_maxrss / 1024,
        }


def succeeded(child: dict, what: str) -> dict:
    """``child`` (from :func:`run_child`) when it exited with 0; else a RuntimeError with its stderr's end."""
    if child["exit_code"] != 0:
        raise RuntimeError(f"{what} failed (exit code {child['exit_code']}):\n{child['stderr'][-3000:]}")
    return child


def printed_json(child: dict, what: str):
    """The JSON object a command printed after its log lines (``adgen finetune``, ``adgen generate``)."""
    stdout = succeeded(child, what)["stdout"]
    return json.loads(stdout[stdout.index("{") :])


def measure(workload: str, **arguments) -> dict:
    """Run one workload of :mod:`benchmarks.workloads` in a child Python; its result plus wall
    ``seconds`` and ``peak_rss_mib``."""
    child = succeeded(run_child(["-m", "benchmarks.workloads", workload, json.dumps(arguments)]), workload)
    result = json.loads(child["stdout"].strip().splitlines()[-1])  # the workload prints it last, on one line
    return {**result, "seconds": child["seconds"], "peak_rss_mib": child["peak_rss_mib"]}


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator to 3 significant digits (a fixed number of decimals would turn 0.04 into 0.0)."""
    return float(f"{numerator / denominator:.3g}")


def summary(measured: list[dict], rate_key: str | None = None) -> dict:
    """Repeated runs of one way: median and every ``seconds``, the highest peak RSS, the median and
    every value of ``rate_key``, and the first run's other results."""
    out = {
        "median_seconds": round(statistics.median(m["seconds"] for m in measured), 2),
        "seconds": [round(m["seconds"], 2) for m in measured],
        "peak_rss_mib": round(max(m["peak_rss_mib"] for m in measured), 1),
    }
    if rate_key:  # 4 significant digits: ratios of small rates (0.8 ads/s) must not come from rounded values
        out[f"median_{rate_key}"] = float(f"{statistics.median(m[rate_key] for m in measured):.4g}")
        out[rate_key] = [float(f"{m[rate_key]:.4g}") for m in measured]
    keep = {k: v for k, v in measured[0].items() if k not in ("seconds", "peak_rss_mib", rate_key)}
    return {**out, **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in keep.items()}}
