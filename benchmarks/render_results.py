"""Render results/*.json and the lessons' settings as Markdown tables.

Writes docs/results.md (a section per results file, with when, where and by which command it was
measured), docs/parameters.md (every field of adgen_utils/settings.py and what each profile changes)
and the README's one results table, between its `<!-- results: begin -->` and `end` markers.

    python benchmarks/render_results.py          # write them
    python benchmarks/render_results.py --check  # exit 1, naming each stale file, when one differs
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from adgen_utils import settings as lessons

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- results: begin -->", "<!-- results: end -->"
BENCH = "python -m benchmarks.bench"
SAVE_RUN = "python -m benchmarks.results save runs/quick"  # after ./run.sh: the quick run's table as JSON


def num(x, digits: int = 3) -> str:
    """`digits` significant figures; from 10**(digits-1) up, whole with thousands separators."""
    if x is None or isinstance(x, (bool, str)):
        return "" if x is None else str(x)
    return f"{x:,.0f}" if isinstance(x, int) or abs(x) >= 10 ** (digits - 1) else f"{x:#.{digits}g}"


def pct(x) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; `|` and `<` in cells are escaped so that they show as written."""
    cell = lambda v: str(v).replace("|", "\\|").replace("<", "&lt;")
    return "\n".join("| " + " | ".join(map(cell, line)) + " |" for line in [header, ["---"] * len(header), *rows])


def provenance(name: str, data: dict) -> str:
    measured, machine = data["measured"], data["measured"]["machine"]
    cpu = (
        f" ({machine['cpu']}: {', '.join(machine.get('instruction_sets') or ['no AVX2'])})" if "cpu" in machine else ""
    )
    where = f"{machine['cpu_cores']} cores{cpu}, {machine['memory_gib']} GiB, {machine.get('gpu') or 'no GPU'}"
    return f"_`results/{name}.json`: measured {measured['date']} on {where} by `{measured['command']}`._"


# fmt: off
# One table row per line reads better here than one cell per line.
def run_tables(d: dict) -> list[str]:
    rows = [[r["model"], pct(r["oov_share"]), pct(r["top1_accuracy"]), pct(r["top5_accuracy"]),
             num(r["per_word_perplexity"]), num(r["bits_per_char"]), num(r["model_tokens_per_word"])]
            for r in d["comparison"]]
    minutes = [[n["notebook"], n["status"], num(n["seconds"] / 60, 2)] for n in d["notebooks"]]
    return [table(["model", "unknown words", "top-1", "top-5", "per-word perplexity", "bits / char",
                   "model tokens / word"], rows), table(["notebook", "status", "minutes"], minutes)]


def data_tables(d: dict) -> list[str]:
    rows = [[way, num(r["median_seconds"]), num(r["peak_rss_mib"]), num(r["rows_read"]), num(r["rows_kept"])]
            for way, r in (("adgen load_ads: clean and split", d["adgen_load_ads"]),
                           ("pandas.read_csv", d["pandas_read_csv"]))]
    return [table(["way", "median s", "peak RSS MiB", "rows read", "ads kept"], rows)]


def lstm_tables(d: dict) -> list[str]:
    same = [[way, num(r["median_predictions_per_second"]), num(r.get("speedup_over_original", 1)),
             num(r["peak_rss_mib"]), num(r.get("peak_rss_over_original", 1))]
            for way, r in d["a_original_vs_ours"].items()]
    b = d["b_scale"]
    scale = [[way, num(b[way]["predictions_per_second"]), num(b[way]["peak_rss_mib"]),
              num(b[way]["epoch_hours_this_corpus"]), num(b[way]["projected_epoch_hours_full_corpus"])]
             for way in ("train_full_softmax", "train_sampled_softmax")]
    return [table(["same ads and vocabulary", "predictions / s", "× original", "peak RSS MiB", "RSS × original"],
                  same),
            table([f"on {b['corpus']}", "predictions / s", "peak RSS MiB", "h / epoch", "h / epoch, 3.2M ads"],
                  scale)]


def per_way(d: dict, key: str, label: str) -> list[str]:
    """A row per way measured as `median_<key>` and each run's `<key>`."""
    rows = [[way, num(r[f"median_{key}"]), ", ".join(map(num, r[key])), num(r["peak_rss_mib"])]
            for way, r in d.items() if isinstance(r, dict) and f"median_{key}" in r]
    return [table(["way", f"median {label}", "runs", "peak RSS MiB"], rows)]


def catalog_tables(d: dict) -> list[str]:
    killed, resumed = d["killed_run"], d["resumed_run"]
    rows = [["command", f"`{d['generate_command']}`"], ["products / s", num(resumed["products_per_second"])],
            ["peak RSS MiB", num(resumed["peak_rss_mib"])], ["killed after s", num(killed["seconds"])],
            ["ads on disk when killed", killed["ads_on_disk"]], ["products passing every rule", pct(d["passing_share"])],
            ["rows, lost, repeated after the resume", f"{d['rows']}, {d['lost']}, {d['repeated']}"],
            *[[f"candidates rejected: {rule}", count] for rule, count in d["rejected_candidates"].items()]]
    if "keywords" in d:  # measured since issue 20: the same products with keywords
        k = d["keywords"]
        rows += [[f"seconds per candidate, {way.replace('_', ' ')}", num(s, 4)]
                 for way, s in k["seconds_per_candidate"].items()]
        rows += [["with keywords / without", num(k["with_over_without"])],
                 ["products passing every rule, with keywords", pct(k["passing_share_with_keywords"])]]
    return [table(["batch generation", "value"], rows)]


def spark_tables(d: dict) -> list[str]:
    ways = (("one process", "one_process"), ("Spark local[1]", "local1"), ("Spark local[2]", "local2"))
    rows = [[label, num(d[key]["products_per_second"]), num(d[key].get("writing_products_per_second",
             d[key]["job_products_per_second"])), num(d[key]["driver_peak_rss_mib"]),
             " / ".join(num(w["peak_rss_mib"]) for w in d[key].get("workers", [])),
             num(d[key].get("spark_start_seconds", "")), " / ".join(num(w["model_load_seconds"])
             for w in d[key].get("workers", []))] for label, key in ways]
    same = "the same bytes" if all(d["same_bytes"].values()) else f"NOT the same bytes: {d['same_bytes']}"
    m = d["one_million_products"]
    hours = [[n, num(h)] for n, h in m["hours"].items()]
    return [f"{d['products']} test-split products, one ad each, `{d['model']}`, chunks of {d['chunk_products']}; "
            f"the three ways wrote {same}. Rules broadcast: {num(d['local2']['rules_broadcast_mib'])} MiB; "
            f"model folder each worker reads: {num(d['local2']['model_folder_mib'])} MiB.",
            table(["way", "products / s, end to end", "products / s, writing", "driver peak RSS MiB",
                   "worker peak RSS MiB", "Spark start s", "model load s per worker"], rows),
            table(["executors like this machine", "hours for 1M products"], hours),
            f"Prediction: {m['assumes']}, {num(m['rate_per_executor'])} products / s each."]


def seller_tables(d: dict) -> list[str]:
    counts = ", ".join(f"{n} with {k}" for k, n in d["keywords_per_product"].items())
    parts = [f"{d['products']} held-out products ({counts} keywords), {d['candidates']} candidates each, "
             f"decoding `{d['decoding']}`; seconds to write: "
             + ", ".join(f"{model} {num(s)}" for model, s in d["writing_seconds"].items()) + "."]
    for name, rows in d["formats"].items():
        parts.append(f"`{name}`:")
        parts.append(table(["model", "every keyword", "passing ad", "chrF", "ROUGE-L", "distinct-2", "training copies"],
                           [[r["model"], pct(r["keyword_inclusion"]), pct(r["passing_share"]), f"{r['chrf']:.1f}",
                             f"{r['rouge_l']:.1f}", num(r["distinct_2"]), pct(r["training_copies"])] for r in rows]))
    return parts


def compute_tables(d: dict) -> list[str]:
    rows = [[c["model"], num(c["train_seconds"]), f"{c['train_flops']:.2g}", num(c["bits_per_char"]),
             num(c["per_word_perplexity"]), pct(c["top5_accuracy"])] for c in d["curves"]]
    rows += [[model, 0, 0, num(bits), "", ""] for model, bits in d["flat"].items()]
    o = d["overtaking"]
    overtakes = [[o["best_lstm"]["model"], num(o["best_lstm"]["bits_per_char"]), num(o["at_seconds"]),
                  num(o["finetuned_bits_per_char"])]]
    return [f"![Quality against training compute](../{d['figure']})",
            table(["model", "training s", "training FLOPs", "bits / char", "per-word perplexity", "top-5"], rows),
            table(["best LSTM", "its bits / char", "fine-tuning passes it at s", "fine-tuned bits / char"], overtakes)]


def category_tables(d: dict) -> list[str]:
    rows = [[way, num(d[key]["bits_per_char"]), num(d[key]["per_word_perplexity"]), pct(d[key]["top5_accuracy"]),
             pct(d[key]["in_category"])] for way, key in (("without", "without_prefix"), ("with", "with_prefix"))]
    rows.append(["the products' real ads", "", "", "", pct(d["real_ads_in_category"])])
    examples = [[e["category"], e["without"], e["with"]] for e in d["examples"]]
    return [table(["category prefix", "bits / char", "per-word perplexity", "top-5", "ads in the category"], rows),
            table(["category", "ad without the prefix", "ad with the prefix"], examples)]


def distributed_tables(d: dict) -> list[str]:
    rows = [[r["processes"], num(r["tokens_per_second"]), " / ".join(map(num, r["peak_rss_mib_per_process"])),
             num(r["final_validation_loss"], 5)] for r in d["runs"].values()]
    return [table(["processes", "trained tokens / s", "peak RSS MiB per process", "final validation loss"], rows)]


def tokens_tables(d: dict) -> list[str]:
    rows = [[way, num(r["corpus_ads"]), num(r["tokens"]), num(r["prepare_seconds"]), num(r["peak_rss_mib"]),
             num(d[key]["projected_full_corpus_peak_rss_gib"])]
            for way, key in (("in memory", "in_memory"), ("streamed to a token file", "token_file"))
            for r in d[key]["runs"]]
    return [table(["way", "corpus ads", "tokens", "seconds", "peak RSS MiB", "projected GiB, 2.5M ads"], rows)]


SETTINGS = [lessons.Corpus, lessons.Sequences, lessons.OneHotLSTM, lessons.EmbeddingLSTM, lessons.Prompting,
            lessons.Finetune, lessons.Evaluation, lessons.Publishing, lessons.Catalog, lessons.Spark]

# (file stem, title, tables, the command that measures it); bench_generate* may be several files.
SECTIONS = [
    ("run_quick", "The quick run: every model on one footing", run_tables, f"./run.sh, then {SAVE_RUN}"),
    ("bench_data", "Loading, cleaning and splitting", data_tables, f"{BENCH} data PATH"),
    ("bench_lstm", "LSTM training: the original's pipeline and ours", lstm_tables, f"{BENCH} lstm --corpus PATH"),
    ("bench_finetune", "Fine-tuning: packed and padded rows",
     lambda d: per_way(d, "tokens_per_second", "trained tokens / s"), f"{BENCH} finetune"),
    ("bench_generate", "Generation: batched and one at a time",
     lambda d: per_way(d, "ads_per_second", "ads / s"), f"{BENCH} generate"),
    ("bench_catalog", "A catalog's ads, killed and resumed", catalog_tables, f"{BENCH} catalog"),
    ("bench_spark", "A catalog on Spark: local[1], local[2] and one process", spark_tables, f"{BENCH} spark"),
    ("bench_seller", "Ads against the real ad of held-out products", seller_tables,
     "python -m benchmarks.seller runs/quick"),
    ("bench_compute", "Quality against training compute", compute_tables, f"{BENCH} compute"),
    ("bench_category", "Category-conditioned ads", category_tables, f"{BENCH} category"),
    ("bench_distributed", "Several processes (torchrun)", distributed_tables, f"{BENCH} distributed"),
    ("bench_tokens", "Preparing the fine-tuning data", tokens_tables, f"{BENCH} tokens"),
]
# fmt: on


def results_markdown(results_dir: Path) -> str:
    """docs/results.md: a section per results file; a missing file's section says how to measure it."""
    parts = [
        "# Measured results",
        "Rendered by `python benchmarks/render_results.py` from `results/*.json`: do not edit. "
        "Commands recorded as `adgen bench NAME` are today's `python -m benchmarks.bench NAME` "
        "([benchmarks.md](benchmarks.md)).",
    ]
    for stem, title, tables, command in SECTIONS:
        paths = sorted(results_dir.glob(f"{stem}*.json")) if stem in ("bench_generate", "run_quick") else []
        for path in paths or [results_dir / f"{stem}.json"]:
            parts.append(f"## {title} (`{path.stem}`)")
            if not path.is_file():
                parts.append(f"_Not measured yet: `{command} > results/{path.name}`._")
                continue
            data = json.loads(path.read_text())
            parts += [*tables(data), provenance(path.stem, data)]
    return "\n\n".join(parts) + "\n"


def machine_line(machine: dict) -> str:
    """``2 cores (AMD EPYC: AVX2, FMA, AVX-512)``: the CPU and the instruction sets that set its pace."""
    sets = ", ".join(machine.get("instruction_sets") or []) or "no AVX2"
    cpu = f" ({machine['cpu']}: {sets})" if "cpu" in machine else ""
    return f"{machine['cpu_cores']} cores{cpu}" + (f", {machine['gpu']}" if machine.get("gpu") else "")


def timing_rows(results_dir: Path) -> list[list]:
    """One row per saved quick run (``run_quick*.json``): where, in which precision, how long, the
    trainings' measured estimates beside what they took, and the study's answer on that machine."""
    rows = []
    for path in sorted(results_dir.glob("run_quick*.json")):
        d = json.loads(path.read_text())
        models = d.get("models") or {}
        finetuned = models.get("06_fine_tuning") or {}
        trainings = [
            f"{name[:2]} {num(m['estimated_seconds'] / 60, 2)} / {num(m['train_wall_seconds'] / 60, 2)}"
            for name, m in models.items()
            if m and m.get("estimated_seconds") and m.get("train_wall_seconds")
        ]
        bits = {r["model"]: r["bits_per_char"] for r in d["comparison"]}
        lstm = min(bits.get("one-hot LSTM", float("inf")), bits.get("Embedding LSTM", float("inf")))
        answer = f"{pct(1 - bits['fine-tuned'] / lstm)} fewer" if "fine-tuned" in bits and lstm < float("inf") else "-"
        minutes = sum(n["seconds"] for n in d.get("notebooks", [])) / 60
        rows.append([f"`{path.stem}`", machine_line(d["measured"]["machine"]), finetuned.get("precision", "-"),
                     num(minutes, 3), ", ".join(trainings) or "-", answer])  # fmt: skip
    return rows


def readme_table(results_dir: Path) -> str:
    """The README's tables: each model's test bits per character and per-word perplexity (quick run),
    and how long each saved quick run took where it ran."""
    path = results_dir / "run_quick.json"
    if not path.is_file():
        return f"_No quick run saved yet: `./run.sh`, then `{SAVE_RUN}`._"
    d = json.loads(path.read_text())
    rows = [[r["model"], num(r["bits_per_char"]), num(r["per_word_perplexity"])] for r in d["comparison"]]
    lines = [table(["model (the same test ads)", "bits / char", "per-word perplexity"], rows)]
    if d.get("notebooks"):
        minutes = ", ".join(f"{n['notebook'][:2]} {num(n['seconds'] / 60, 2)}" for n in d["notebooks"])
        lines.append(f"Minutes per notebook: {minutes}.")
    lines.append(provenance(path.stem, d))
    lines.append(
        table(
            [
                "quick run",
                "measured on",
                "fine-tuning in",
                "minutes, 01-08",
                "training minutes: estimated / taken",
                "fine-tuned vs best LSTM (bits / char)",
            ],
            timing_rows(results_dir),
        )  # fmt: skip
    )
    return "\n\n".join(lines)


def parameters_markdown() -> str:
    """docs/parameters.md: every settings class's fields, defaults (quick) and each profile's changes."""
    literal = lambda v: f"`{v!r}`"
    parts = [
        "# Parameters and profiles",
        "Rendered by `python benchmarks/render_results.py` from `adgen_utils/settings.py`: do not edit. "
        "A class's defaults are the `quick` profile (real settings for a 2-core CPU); a profile's column "
        "shows only what it changes: `ci` tiny settings for the tests, `full` the 3.2M-ad corpus on a GPU "
        "(each lesson within a free Colab T4 session), `large` `full` with a 200k-ad GPT-Neo-1.3B fine-tune "
        "(an L4 or A100). A lesson's value you edit is kept whatever the profile ([lessons.md](lessons.md)).",
        "## Every lesson",
        table(
            ["parameter", "default", "meaning"],
            [[f"`{f.name}`", literal(f.default), f.metadata["help"]] for f in fields(lessons.Common)],
        ),
    ]
    common = {f.name for f in fields(lessons.Common)}
    for settings in SETTINGS:
        rows = []
        for f in fields(settings):
            if f.name in common:
                continue
            changes = [lessons.PROFILES[profile].get(settings, {}) for profile in ("ci", "full", "large")]
            profiled = [literal(change[f.name]) if f.name in change else "" for change in changes]
            rows.append([f"`{f.name}`", literal(getattr(settings(), f.name)), *profiled, f.metadata["help"]])
        parts.append(f"## `{settings.__name__}`: {settings.__doc__.strip().rstrip('.')}")
        parts.append(table(["parameter", "default (quick)", "ci", "full", "large", "meaning"], rows))
    return "\n\n".join(parts) + "\n"


def expected_files(root: Path) -> dict[Path, str]:
    """What README.md, docs/results.md and docs/parameters.md under `root` should hold."""
    readme = (root / "README.md").read_text()
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"{root / 'README.md'} has no {BEGIN} ... {END} markers for the results table")
    head, rest = readme.split(BEGIN, 1)
    return {
        root / "README.md": f"{head}{BEGIN}\n{readme_table(root / 'results')}\n{END}{rest.split(END, 1)[1]}",
        root / "docs" / "results.md": results_markdown(root / "results"),
        root / "docs" / "parameters.md": parameters_markdown(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1, naming each file that is out of date")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this one)")
    args = parser.parse_args(argv)
    expected = expected_files(args.root)
    stale = [path for path, text in expected.items() if not path.is_file() or path.read_text() != text]
    for path in stale:
        if args.check:
            print(f"{path} is out of date: run python benchmarks/render_results.py", file=sys.stderr)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(expected[path])
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
