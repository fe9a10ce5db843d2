"""Time budgets measured on the machine at hand: the timing, the plan, its record and the refusal
of a long rebuild. A fake clock stands in where the point is the arithmetic."""

import itertools
import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from adgen_utils import lessons, pace
from adgen_utils.errors import StageMissing
from adgen_utils.settings import OneHotLSTM, use_profile


def ticking(*durations):
    """A clock whose successive (start, stop) readings are ``durations`` apart."""
    readings = itertools.chain.from_iterable((0.0, d) for d in durations)
    return lambda: next(readings)


def test_the_median_of_the_timed_steps_after_the_warm_up():
    calls = []
    seconds = pace.seconds_per_step(lambda: calls.append(1), timed=3, warmup=2, clock=ticking(1.0, 9.0, 2.0))
    assert seconds == 2.0  # the median: one slow step (a hiccup) does not decide the estimate
    assert len(calls) == 5  # the warm-up steps ran, untimed
    with pytest.raises(ValueError, match="at least one"):
        pace.seconds_per_step(lambda: None, timed=0)


def test_a_plan_within_its_budget_runs_every_step():
    plan = pace.plan(100, 0.5, "step", minutes=2.0, fixed_seconds=10)
    assert (plan.chosen, plan.cut, plan.seconds) == (100, False, 60.0)
    assert "100 steps would take about 60 s, 10 s of it evaluation" in plan.describe()
    assert pace.plan(100, 50.0, "step", minutes=None).chosen == 100  # no budget: as set


def test_a_plan_over_its_budget_is_cut_to_fit_with_its_evaluations():
    plan = pace.plan(94, 0.3, "batch of 32 ads", minutes=2.0, passes=5, fixed_seconds=10)
    assert plan.cut and plan.chosen == 73  # 5 x 73 x 0.3 + 10 = 119.5 s <= 120 s
    assert plan.seconds <= 120 < 5 * 74 * 0.3 + 10
    line = plan.describe()
    assert "5 epochs x 94 batches would take about 2.5 min" in line
    assert "over the 2-minute budget, so 5 epochs x 73 batches run" in line
    assert pace.plan(10, 100.0, "step", minutes=1.0).chosen == 1  # at least one step, however slow


def test_plans_refuse_nonsense():
    with pytest.raises(ValueError, match="nothing to train"):
        pace.plan(0, 1.0, "step", 1.0)
    with pytest.raises(ValueError, match="more than 0 minutes"):
        pace.plan(10, 1.0, "step", 0)


def test_a_saved_plan_is_read_back_only_for_the_same_settings(tmp_path):
    plan = pace.plan(200, 3.0, "optimizer step", 5.0, timed=2, fixed_seconds=30)
    path = tmp_path / "checkpoints" / "plan.json"
    pace.save_plan(plan, path, {"max_steps": 200, "minutes": 5.0})
    assert pace.load_plan(path, {"max_steps": 200, "minutes": 5.0}) == plan
    assert pace.load_plan(path, {"max_steps": 100, "minutes": 5.0}) is None  # other settings: time again
    assert pace.load_plan(tmp_path / "none.json", {}) is None


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.213, "0.21 s"), (1.04, "1.0 s"), (42.4, "42 s"), (210, "3.5 min"), (9000, "2.5 h")]
)
def test_durations_read_as_a_person_reads_them(seconds, shown):
    assert pace.format_seconds(seconds) == shown


def test_a_long_training_refuses_to_start_only_as_an_earlier_stage(monkeypatch):
    long = pace.plan(9000, 2.0, "optimizer step", minutes=None)  # 5 hours
    monkeypatch.delenv(pace.REBUILD_LIMIT_ENV, raising=False)
    pace.refuse_long_rebuild(long, "06_fine_tuning")  # opened by the reader: it trains
    monkeypatch.setenv(pace.REBUILD_LIMIT_ENV, "20")
    pace.refuse_long_rebuild(pace.plan(100, 2.0, "step", None), "06_fine_tuning")  # 200 s: rebuilt
    with pytest.raises(
        StageMissing, match=r"06_fine_tuning would train for about 5.0 h here .* Run 06_fine_tuning first"
    ):
        pace.refuse_long_rebuild(long, "06_fine_tuning")


def test_run_first_reports_an_earlier_lesson_that_measured_itself_too_long(tmp_path, monkeypatch):
    """A real notebook, executed by papermill: it plans 5 hours and refuses under run_first's limit."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    cell = new_code_cell(
        "from adgen_utils import pace\n"
        "pace.refuse_long_rebuild(pace.plan(9000, 2.0, 'optimizer step', None), '09_slow')\n"
        "open('ran.txt', 'w').write('trained')"
    )
    parameters = new_code_cell(
        "profile = 'quick'\nrun_dir = None\nfigures_dir = None", metadata={"tags": ["parameters"]}
    )
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(new_notebook(cells=[parameters, cell], metadata=kernel), notebooks / "09_slow.ipynb")
    monkeypatch.setattr(lessons, "notebooks_folder", lambda: notebooks)
    namespace = {f: v for f, v in vars(OneHotLSTM()).items()} | {"run_dir": str(tmp_path / "run")}
    namespace["figures_dir"] = str(tmp_path / "figures")
    run = use_profile(OneHotLSTM, namespace)
    monkeypatch.delenv(pace.REBUILD_LIMIT_ENV, raising=False)
    with pytest.raises(StageMissing, match="09_slow would train for about 5.0 h here"):
        lessons.run_first("09_slow", run, needs="missing.txt", progress=False)
    assert not (notebooks / "ran.txt").exists()  # it stopped before training
    assert pace.REBUILD_LIMIT_ENV not in os.environ  # the limit is not left behind


def test_a_simulated_slower_machine_plans_fewer_steps_and_says_so(monkeypatch):
    monkeypatch.setenv(pace.SLOWDOWN_ENV, "4")
    seconds = pace.seconds_per_step(lambda: None, timed=3, warmup=0, clock=ticking(1.0, 1.0, 1.0))
    assert seconds == 4.0
    plan = pace.plan(100, seconds, "step", minutes=2.0)
    assert plan.chosen == 30 and plan.slowdown == 4.0
    assert "times 4 to simulate a slower machine" in plan.describe()
    monkeypatch.setenv(pace.SLOWDOWN_ENV, "0.5")
    with pytest.raises(ValueError, match="must be 1 or more"):
        pace.simulated_slowdown()
