"""Quality against training compute: the curves a run's models leave, when the fine-tuned model
overtakes the best LSTM, and the figure (curve files written by the test)."""

import math

import pandas as pd
import pytest

from adgen_utils import layout
from adgen_utils.models import CURVE_COLUMNS
from adgen_utils.study import compute


def write_curve(run_dir, model, rows):
    folder = layout.model_dir(run_dir, model)
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        [
            {
                "step": step,
                "epoch": step,
                "train_seconds": seconds,
                "train_flops": seconds * 1e12,
                "validation_ads": 50,
                "bits_per_char": bits,
                "per_word_perplexity": 2**bits * 100,
                "top5_accuracy": 0.4,
                "top1_accuracy": 0.2,
            }
            for step, seconds, bits in rows
        ],
        columns=CURVE_COLUMNS,
    )
    frame.to_csv(folder / layout.QUALITY_CURVE_FILE, index=False)


@pytest.fixture
def run_dir(tmp_path):
    write_curve(tmp_path, layout.ONE_HOT_LSTM, [(1, 50, 2.2), (2, 100, 2.0)])
    write_curve(tmp_path, layout.EMBEDDING_LSTM, [(1, 20, 1.9), (2, 40, 1.7), (3, 60, 1.6)])
    write_curve(tmp_path, layout.FINETUNED, [(0, 0, 2.5), (50, 100, 1.8), (100, 400, 1.4)])
    return tmp_path


def test_run_curves_reads_every_trained_model(run_dir, tmp_path_factory):
    curves = compute.run_curves(run_dir)
    assert set(curves["model"]) == {*compute.CONTENDERS.values(), *compute.CHALLENGER.values()}
    assert len(curves) == 8 and compute.run_curves(tmp_path_factory.mktemp("empty")).empty


def test_overtaking_interpolates_in_log_budget(run_dir):
    found = compute.overtaking(compute.run_curves(run_dir))
    assert found["best_lstm"]["model"] == compute.CONTENDERS[layout.EMBEDDING_LSTM]
    assert found["best_lstm"]["bits_per_char"] == pytest.approx(1.6)
    # 1.8 at 100 s, 1.4 at 400 s: 1.6 is halfway, in log seconds: 200 s.
    assert found["at_seconds"] == pytest.approx(200) and found["at_flops"] == pytest.approx(2e14)
    assert found["margin"] == pytest.approx(1 - 1.4 / 1.6) and found["finetuned_bits_per_char"] == 1.4
    assert found["finetuned_budget"] == {"train_seconds": 400, "train_flops": 4e14}


def test_no_overtaking_is_said_with_the_gap(run_dir):
    write_curve(run_dir, layout.FINETUNED, [(0, 0, 2.5), (50, 100, 1.8), (100, 400, 1.7)])
    curves = compute.run_curves(run_dir)
    found = compute.overtaking(curves)
    assert found["at_seconds"] is None and found["margin"] == pytest.approx(1 - 1.7 / 1.6)
    without = compute.overtaking(curves[curves["model"] != compute.CHALLENGER[layout.FINETUNED]])
    assert without["at_seconds"] is None and "margin" not in without


def test_a_crossing_from_no_training_is_linear():
    assert compute._crossing([0, 100], [2.0, 1.0], 1.5) == pytest.approx(50)
    assert compute._crossing([10, 100], [1.0, 0.5], 1.5) == 10  # below from the first point
    assert compute._crossing([10, 1000], [2.0, 1.0], 1.5) == pytest.approx(100)
    assert compute._crossing([10, 100], [2.0, 1.9], 1.5) is None
    assert not math.isnan(compute._crossing([1, 4], [3.0, 1.0], 2.0))


def test_figure(run_dir, tmp_path):
    curves = compute.run_curves(run_dir)
    compute.plot_quality_vs_compute(curves, {"smollm2 3-shot": 2.2}, tmp_path, "curves")
    assert (tmp_path / "curves.png").stat().st_size > 10_000
