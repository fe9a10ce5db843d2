"""benchmarks/render_results.py: results JSON and settings to Markdown tables, and --check."""

import json
import shutil
from dataclasses import fields
from pathlib import Path

from benchmarks import render_results
from benchmarks.render_results import BEGIN, END, main, parameters_markdown, readme_table, results_markdown

REPOSITORY = Path(render_results.__file__).resolve().parent.parent
MEASURED = {
    "date": "2026-12-05 10:00 UTC",
    "command": "adgen results save runs/quick",
    "machine": {"cpu_cores": 2, "memory_gib": 23.5, "gpu": None, "platform": "Linux", "python": "3.11.7"},
}
README = f"# adgen\n\nIntroduction.\n\n{BEGIN}\nan old table\n{END}\n\nThe rest stays.\n"


def comparison_row(model: str, bits: float, perplexity: float) -> dict:
    return {
        "model": model,
        "oov_share": 0.1,
        "top1_accuracy": 0.25,
        "top5_accuracy": 0.5,
        "per_word_perplexity": perplexity,
        "bits_per_char": bits,
        "model_tokens_per_word": 1.0,
    }


def write_repository(root: Path) -> Path:
    """A repository with a README, a saved quick run and one benchmark; the other results missing."""
    results = root / "results"
    results.mkdir(parents=True)
    run = {
        "measured": MEASURED,
        "comparison": [comparison_row("Embedding LSTM (04)", 1.66, 753.6), comparison_row("fine-tuned (06)", 1.4223, 291.9)],
        "notebooks": [{"notebook": "01_eda", "status": "ok", "seconds": 6.7}, {"notebook": "03_lstm", "status": "ok", "seconds": 112.0}],
    }  # fmt: skip
    (results / "run_quick.json").write_text(json.dumps(run))
    way = lambda seconds, rss, rows: {
        "median_seconds": seconds,
        "peak_rss_mib": rss,
        "rows_read": rows,
        "rows_kept": rows - 100,
    }
    data = {
        "measured": {**MEASURED, "command": "adgen bench data embedded"},
        "adgen_load_ads": way(4.98, 332.7, 321677),
        "pandas_read_csv": way(0.78, 183.9, 321654),
    }
    (results / "bench_data.json").write_text(json.dumps(data))
    (root / "README.md").write_text(README)
    return root


def test_readme_table_has_each_model_minutes_and_provenance(tmp_path):
    table = readme_table(write_repository(tmp_path) / "results")

    assert "| fine-tuned (06) | 1.42 | 292 |" in table
    assert "| Embedding LSTM (04) | 1.66 | 754 |" in table
    assert "Minutes per notebook: 01 0.11, 03 1.9." in table
    assert "measured 2026-12-05 10:00 UTC on 2 cores, 23.5 GiB, no GPU by `adgen results save runs/quick`" in table


def test_missing_results_say_how_to_measure_them(tmp_path):
    root = write_repository(tmp_path)
    (root / "results" / "run_quick.json").unlink()

    text = results_markdown(root / "results")

    assert "| adgen load_ads: clean and split | 4.98 | 333 | 321,677 | 321,577 |" in text
    assert "_Not measured yet: `python -m benchmarks.bench lstm --corpus PATH > results/bench_lstm.json`._" in text
    assert "_Not measured yet: `python -m benchmarks.bench generate > results/bench_generate.json`._" in text
    assert "No quick run saved yet" in readme_table(root / "results")


def test_write_then_check(tmp_path, capsys):
    root = write_repository(tmp_path)
    assert main(["--check", "--root", str(root)]) == 1
    assert (root / "README.md").read_text() == README  # --check writes nothing

    assert main(["--root", str(root)]) == 0

    readme = (root / "README.md").read_text()
    assert readme.startswith("# adgen\n\nIntroduction.\n\n") and readme.endswith(f"{END}\n\nThe rest stays.\n")
    assert "an old table" not in readme and "| fine-tuned (06) | 1.42 | 292 |" in readme
    assert (root / "docs" / "results.md").is_file() and (root / "docs" / "parameters.md").is_file()
    capsys.readouterr()
    assert main(["--check", "--root", str(root)]) == 0


def test_check_names_the_stale_file(tmp_path, capsys):
    root = write_repository(tmp_path)
    main(["--root", str(root)])
    data = json.loads((root / "results" / "bench_data.json").read_text())
    data["adgen_load_ads"]["median_seconds"] = 5.5
    (root / "results" / "bench_data.json").write_text(json.dumps(data))

    assert main(["--check", "--root", str(root)]) == 1

    stale = capsys.readouterr().err
    assert f"{root / 'docs' / 'results.md'} is out of date" in stale
    assert "README.md" not in stale


def test_every_saved_result_renders(tmp_path):
    shutil.copytree(REPOSITORY / "results", tmp_path / "results")

    text = results_markdown(tmp_path / "results")

    assert "Not measured yet" not in text
    for path in (tmp_path / "results").glob("*.json"):
        assert f"_`results/{path.name}`: measured " in text


def test_parameters_list_every_setting_and_profile_change():
    text = parameters_markdown()

    for settings in render_results.SETTINGS:
        assert f"## `{settings.__name__}`" in text
        for field in fields(settings):
            assert f"| `{field.name}` |" in text
    assert "| `units` | `128` | `32` |" in text  # OneHotLSTM under ci
