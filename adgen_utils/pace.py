"""Time budgets measured on the machine at hand.

Before a long training, a lesson times a few of its steps here (:func:`seconds_per_step`) and
extrapolates (:func:`plan`): the estimate it prints is this machine's, not a constant fitted to
another one. With a budget in minutes, a plan that would run over it is cut to the steps that fit,
and says so. The plan is saved beside the model (:func:`save_plan`), so that a run resumed after an
interruption keeps the choice made at its start instead of timing again.

A lesson opened alone that must first run an earlier one (``lessons.run_first``) sets
``ADGEN_REBUILD_LIMIT_MINUTES``; a plan longer than that refuses to start (:class:`StageMissing`),
saying which notebook to run first, instead of training for hours unasked.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from adgen_utils.errors import StageMissing

REBUILD_LIMIT_ENV = "ADGEN_REBUILD_LIMIT_MINUTES"
# What a slower machine would train: every measured time multiplied by this (benchmarks only; the
# plan says so). Issue 19's 2-core AVX2 machine without bfloat16 is about 4 times slower than ours.
SLOWDOWN_ENV = "ADGEN_SIMULATE_SLOWDOWN"


@dataclass(frozen=True)
class Plan:
    """How many steps a training takes here, and why: ``passes`` times ``chosen`` steps (an epoch's
    batches, or the optimizer steps of a run with ``passes`` 1), plus ``fixed_seconds`` of evaluation."""

    unit: str  # what one step is, e.g. "batch of 32 ads" or "optimizer step of 8 x 64 tokens"
    wanted: int  # steps per pass the settings ask for
    chosen: int  # steps per pass that will run: wanted, or fewer to fit the budget
    seconds_per_step: float  # measured here
    timed: int  # steps timed for that measure
    minutes: float | None  # the budget (None: none)
    passes: int = 1  # epochs
    fixed_seconds: float = 0.0  # evaluations around the steps, measured here too
    slowdown: float = 1.0  # above 1: the times above are this machine's multiplied by it (a simulation)

    @property
    def seconds(self) -> float:
        """The estimated time of the whole training: the chosen steps and the evaluations."""
        return self.passes * self.chosen * self.seconds_per_step + self.fixed_seconds

    @property
    def cut(self) -> bool:
        return self.chosen < self.wanted

    def describe(self) -> str:
        """One line: the measure, what the settings would take, and what runs."""

        def amount(steps: int) -> str:
            return f"{self.passes} epochs x {steps:,} batches" if self.passes > 1 else f"{steps:,} steps"

        here = "here" if self.slowdown == 1 else f"here, times {self.slowdown:g} to simulate a slower machine"
        each = f"{format_seconds(self.seconds_per_step)} per {self.unit} (the median of {self.timed} timed {here})"
        full = self.passes * self.wanted * self.seconds_per_step + self.fixed_seconds
        evaluation = f", {format_seconds(self.fixed_seconds)} of it evaluation" if self.fixed_seconds else ""
        line = f"{each}: {amount(self.wanted)} would take about {format_seconds(full)}{evaluation}"
        if self.cut:
            line += (
                f"; over the {self.minutes:g}-minute budget, so {amount(self.chosen)} run "
                f"(about {format_seconds(self.seconds)})"
            )
        return line


def format_seconds(seconds: float) -> str:
    """``0.21 s``, ``4.2 s``, ``42 s``, ``3.5 min`` or ``2.1 h``: a duration as a person reads it."""
    if seconds < 10:
        return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def seconds_per_step(step: Callable[[], object], timed: int = 3, warmup: int = 1, clock=time.perf_counter) -> float:
    """The median wall time of ``timed`` calls of ``step`` after ``warmup`` untimed ones (the first
    calls trace graphs, allocate and fill caches, and would overstate the rest)."""
    if timed < 1:
        raise ValueError("time at least one step")
    slowdown = simulated_slowdown()
    for _ in range(warmup):
        step()
    times = []
    for _ in range(timed):
        started = clock()
        step()
        times.append(clock() - started)
    return statistics.median(times) * slowdown


def simulated_slowdown() -> float:
    """``ADGEN_SIMULATE_SLOWDOWN`` (at least 1), or 1: how much slower than this one the machine is
    whose plans are made (benchmarks of what a slow machine would learn in its budget)."""
    value = float(os.environ.get(SLOWDOWN_ENV) or 1)
    if value < 1:
        raise ValueError(f"{SLOWDOWN_ENV} must be 1 or more, not {value}")
    return value


def plan(
    wanted: int,
    seconds_each: float,
    unit: str,
    minutes: float | None,
    timed: int = 3,
    passes: int = 1,
    fixed_seconds: float = 0.0,
    least: int = 1,
) -> Plan:
    """The steps per pass to run: ``wanted``, or as many as fit ``minutes`` (at least ``least``) at
    ``seconds_each`` a step, ``passes`` times, beside ``fixed_seconds`` of evaluation."""
    if wanted < 1 or passes < 1:
        raise ValueError(f"nothing to train: {passes} x {wanted} steps")
    if minutes is not None and minutes <= 0:
        raise ValueError(f"the budget must be more than 0 minutes (None: no budget), not {minutes}")
    chosen = wanted
    if minutes is not None and passes * wanted * seconds_each + fixed_seconds > minutes * 60:
        fits = (minutes * 60 - fixed_seconds) / (passes * max(seconds_each, 1e-9))
        chosen = max(least, min(wanted, math.floor(fits)))
    return Plan(unit, wanted, chosen, seconds_each, timed, minutes, passes, fixed_seconds, simulated_slowdown())


def refuse_long_rebuild(plan: Plan, lesson: str) -> None:
    """Raise :class:`StageMissing` when this lesson runs as an earlier stage of a lesson opened alone
    (``ADGEN_REBUILD_LIMIT_MINUTES`` set) and ``plan`` would take longer than that limit."""
    limit = os.environ.get(REBUILD_LIMIT_ENV)
    if limit and plan.seconds > float(limit) * 60:
        raise StageMissing(
            f"{lesson} would train for about {format_seconds(plan.seconds)} here ({plan.describe()}), longer than "
            f"the {float(limit):g} minutes a lesson opened alone waits for an earlier one. Run {lesson} first, "
            "with the same profile and run folder (on Colab: drive = True in both), then this lesson."
        )


def save_plan(plan: Plan, path: str | Path, key: dict | None = None) -> None:
    """Keep ``plan`` at ``path`` with ``key`` (the settings it was made for)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"key": key, "plan": asdict(plan)}, indent=2, default=str))


def load_plan(path: str | Path, key: dict | None = None) -> Plan | None:
    """The plan saved at ``path`` for ``key``; None when there is none, or one for other settings."""
    path = Path(path)
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if saved.get("key") != json.loads(json.dumps(key, default=str)):
        return None
    return Plan(**saved["plan"])
