"""The ``adgen`` command: run the notebook series and inspect or prepare the data."""
from __future__ import annotations

import argparse
import json
import sys

from . import data
from .profiles import PROFILES


def _parse_value(text: str):
    """A -p value: JSON if it parses (numbers, null, lists), 'None' as None, else the string."""
    if text == "None":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parameters(pairs: list[str]) -> dict:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"-p takes NAME=VALUE, got {pair!r}")
        values[name.strip()] = _parse_value(value)
    return values


def _load_options(args) -> dict:
    return dict(
        categories=args.categories.split(",") if args.categories else None,
        clean=data.CleanConfig(min_chars=args.min_chars, max_chars=args.max_chars),
        split=data.SplitConfig(validation=args.validation, test=args.test, seed=args.seed),
        sample_size=args.sample_size,
        seed=args.seed,
        progress=sys.stderr.isatty(),
    )


def command_run(args) -> int:
    from .runner import run_series

    runs = run_series(
        args.profile,
        only=args.only,
        run_dir=args.run_dir,
        overrides=_parameters(args.param),
        progress=not args.no_progress,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    total = sum(r.seconds for r in runs)
    print(f"{len(runs)} notebook(s) ran in {total:.0f} s; executed copies in {runs[0].output.parent}")
    return 0


def command_data_report(args) -> int:
    _, report = data.load_ads(args.path, **_load_options(args))
    print(json.dumps(report.to_dict(), indent=2))
    return 0


def command_data_prepare(args) -> int:
    ads, report = data.load_ads(args.path, **_load_options(args))
    path = data.save_dataset(ads, report, args.out)
    print(json.dumps(report.to_dict(), indent=2))
    print(f"wrote {len(ads):,} ads to {path}", file=sys.stderr)
    return 0


def command_bench_data(args) -> int:
    from .bench import bench_data, print_json

    print_json(bench_data(args.path, repeats=args.repeats))
    return 0


def command_bench_lstm(args) -> int:
    from .bench import bench_lstm, print_json

    print_json(bench_lstm(args.corpus, repeats=args.repeats, original_steps=args.original_steps, steps=args.steps,
                          full_epoch=args.full_epoch, log=lambda line: print(line, file=sys.stderr, flush=True)))
    return 0


def command_bench_finetune(args) -> int:
    from .bench import bench_finetune, print_json

    print_json(bench_finetune(args.model, repeats=args.repeats, steps=args.steps, batch_size=args.batch_size,
                              block_size=args.block_size, lora=not args.no_lora,
                              log=lambda line: print(line, file=sys.stderr, flush=True)))
    return 0


def command_bench_generate(args) -> int:
    from .bench import bench_generate, print_json

    print_json(bench_generate(args.model, repeats=args.repeats, prompts=args.prompts, batch_size=args.batch_size,
                              max_new_tokens=args.max_new_tokens,
                              log=lambda line: print(line, file=sys.stderr, flush=True)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adgen", description="Generate product ad text: the adgen notebook series.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="execute the notebook series with papermill")
    run.add_argument("--profile", choices=list(PROFILES), default="quick",
                     help="; ".join(f"{name}: {p['description']}" for name, p in PROFILES.items()))
    run.add_argument("--only", action="append", metavar="NN",
                     help="run only this notebook (number like 01, or name); repeatable")
    run.add_argument("--run-dir", help="where data, models and executed notebooks go (default runs/<profile>)")
    run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                     help="override a notebook parameter, e.g. -p data_source=/path/to/corpus; repeatable")
    run.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")
    run.set_defaults(handler=command_run)

    data_parser = commands.add_parser("data", help="inspect or prepare a corpus")
    data_commands = data_parser.add_subparsers(dest="data_command", required=True)
    for name, handler, text in [
        ("report", command_data_report, "print the load report of a CSV file or corpus folder as JSON"),
        ("prepare", command_data_prepare, "clean and split a corpus and save it for the notebooks"),
    ]:
        sub = data_commands.add_parser(name, help=text, description=text)
        sub.add_argument("path", help="'embedded', 'kaggle', a CSV file or a corpus folder")
        sub.add_argument("--categories", help="comma-separated categories to keep (default: all)")
        sub.add_argument("--min-chars", type=int, default=data.CleanConfig.min_chars)
        sub.add_argument("--max-chars", type=int, default=data.CleanConfig.max_chars)
        sub.add_argument("--validation", type=float, default=data.SplitConfig.validation, help="fraction of products")
        sub.add_argument("--test", type=float, default=data.SplitConfig.test, help="fraction of products")
        sub.add_argument("--sample-size", type=int, help="keep this many cleaned ads, chosen at random")
        sub.add_argument("--seed", type=int, default=data.SplitConfig.seed, help="seed of the sample and salt of the split hash")
        if name == "prepare":
            sub.add_argument("--out", required=True, help="folder for ads.parquet and load_report.json")
        sub.set_defaults(handler=handler)
    bench = commands.add_parser("bench", help="benchmarks that print JSON")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True)
    bench_data = bench_commands.add_parser(
        "data", help="load time and peak RSS of the data layer against plain pandas.read_csv"
    )
    bench_data.add_argument("path", help="'embedded', a CSV file or a corpus folder")
    bench_data.add_argument("--repeats", type=int, default=3, help="runs of each way, alternated")
    bench_data.set_defaults(handler=command_bench_data)
    bench_lstm = bench_commands.add_parser(
        "lstm", help="the original one-hot window pipeline against ours, and a scale run on a corpus"
    )
    bench_lstm.add_argument("--corpus", help="a corpus for the scale run, e.g. ../shared/data/amazon_ads_sample10")
    bench_lstm.add_argument("--repeats", type=int, default=2, help="runs of each way in (a), alternated")
    bench_lstm.add_argument("--original-steps", type=int, default=3, help="timed batches of 4,096 windows for the original")
    bench_lstm.add_argument("--steps", type=int, default=60, help="timed batches of 64 ads for ours")
    bench_lstm.add_argument("--full-epoch", action="store_true", help="(b) also train one whole epoch (sampled softmax)")
    bench_lstm.set_defaults(handler=command_bench_lstm)
    model_help = "'smollm2-135m' (offline default), 'tiny', a model folder or a Hub id"
    bench_finetune = bench_commands.add_parser(
        "finetune", help="training tokens/s with packed blocks against one ad per padded row (and LoRA), with peak RSS"
    )
    bench_finetune.add_argument("--model", default="smollm2-135m", help=model_help)
    bench_finetune.add_argument("--repeats", type=int, default=2, help="runs of each way, alternated")
    bench_finetune.add_argument("--steps", type=int, default=3, help="timed optimizer steps per run (after 2 untimed)")
    bench_finetune.add_argument("--batch-size", type=int, default=4, help="rows per step")
    bench_finetune.add_argument("--block-size", type=int, default=128, help="tokens per row")
    bench_finetune.add_argument("--no-lora", action="store_true", help="skip the LoRA run")
    bench_finetune.set_defaults(handler=command_bench_finetune)
    bench_generate = bench_commands.add_parser(
        "generate", help="ads/s generating the same prompts batched against one prompt at a time"
    )
    bench_generate.add_argument("--model", default="smollm2-135m", help=model_help)
    bench_generate.add_argument("--repeats", type=int, default=2, help="runs of each way, alternated")
    bench_generate.add_argument("--prompts", type=int, default=64, help="prompts (first words of validation ads)")
    bench_generate.add_argument("--batch-size", type=int, default=64, help="prompts per generate() call when batched")
    bench_generate.add_argument("--max-new-tokens", type=int, default=24)
    bench_generate.set_defaults(handler=command_bench_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``adgen`` console command; returns the exit status."""
    from .pretrained import ModelUnavailable
    from .runner import NotebookFailed

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except NotebookFailed as error:
        print(f"adgen: {error}", file=sys.stderr)
        return 1
    except (data.CorpusUnavailable, ValueError, FileNotFoundError, ModelUnavailable) as error:
        print(f"adgen: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
