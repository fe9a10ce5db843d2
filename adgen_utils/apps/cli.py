"""The ``adgen`` command: run the notebook series, prepare and inspect the data, benchmark, evaluate,
write ads for a catalog, publish.

Each command imports what it runs when it runs (the series runner needs papermill, evaluation and
publishing load torch), so that ``adgen data report`` or ``adgen sync`` start in a second and work
without the optional extras.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from adgen_utils.apps.catalog import generate_catalog
from adgen_utils.apps.results import save_run, with_provenance
from adgen_utils.corpus import data
from adgen_utils.errors import USAGE, AdgenError
from adgen_utils.hardware import join_processes
from adgen_utils.layout import comparison_path
from adgen_utils.logs import say, show_messages
from adgen_utils.models import DECODINGS, load_ad_model
from adgen_utils.parameters import DEFAULT_PROFILE, ORIGINAL_PROMPTS, catalog_default
from adgen_utils.series.profiles import PROFILES
from adgen_utils.study.selection import AdRules, training_ads_for


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
    from adgen_utils.series.runner import run_series

    runs = run_series(
        args.profile,
        only=args.only,
        run_dir=args.run_dir,
        overrides=_parameters(args.param),
        progress=not args.no_progress,
        log=say,
        alone=args.alone,
    )
    total = sum(r.seconds for r in runs)
    where = runs[0].output.parent.parent.parent if args.alone else runs[0].output.parent
    print(f"{len(runs)} notebook(s) ran in {total:.0f} s; executed copies under {where}")
    return 0


def command_sync(args) -> int:
    from adgen_utils.series.sync import set_repository_url, sync

    if args.repository:
        set_repository_url(args.repository)
    differing = sync(check=args.check)
    if args.check:
        if differing:
            print(
                "adgen: out of date with the declarations (run `adgen sync`): " + ", ".join(differing), file=sys.stderr
            )
            return 1
        print("notebooks and README agree with pyproject.toml, adgen_utils/parameters.py and results/")
        return 0
    print(f"rewrote {', '.join(differing)}" if differing else "nothing to change")
    return 0


def command_data_report(args) -> int:
    _, report = data.load_ads(args.path, **_load_options(args))
    print(json.dumps(report.to_dict(), indent=2))
    return 0


def command_data_prepare(args) -> int:
    ads, report = data.load_ads(args.path, **_load_options(args))
    path = data.save_dataset(ads, report, args.out)
    print(json.dumps(report.to_dict(), indent=2))
    say(f"wrote {len(ads):,} ads to {path}")
    return 0


def command_bench_data(args) -> int:
    from adgen_utils.apps.bench import bench_data, print_json

    result = bench_data(args.path, **({"repeats": args.repeats} if args.repeats else {}))
    print_json(with_provenance(result, ["adgen", *sys.argv[1:]]))
    return 0


def _bench_options(args) -> dict:
    """The options given on the command line; the rest keep the bench function's own defaults."""
    given = {k: v for k, v in vars(args).items() if k not in {"command", "bench_command", "handler", "no_lora"}}
    if getattr(args, "no_lora", False):
        given["lora"] = False
    return given


def command_bench(args) -> int:
    from adgen_utils.apps import bench

    result = getattr(bench, f"bench_{args.bench_command}")(**_bench_options(args), log=say)
    bench.print_json(with_provenance(result, ["adgen", *sys.argv[1:]]))
    return 0


def command_results_save(args) -> int:

    path = save_run(args.run_dir, ["adgen", *sys.argv[1:]], profile=args.profile, folder=args.results_dir)
    print(path)
    return 0


def command_publish(args) -> int:

    from adgen_utils.study import publishing

    token, token_source = publishing.find_token()  # the token itself is never printed
    if args.push and token is None:
        print(
            "adgen: error: --push needs a Hugging Face token with write access: set HF_TOKEN (or the Colab "
            "secret HF_TOKEN); without --push, publish is a dry run",
            file=sys.stderr,
        )
        return 2
    prompts = args.prompt or ORIGINAL_PROMPTS
    default_metrics = comparison_path(Path(args.model).parent.parent)  # the model is run_dir/models/NAME
    metrics = (
        publishing.read_metrics(args.metrics)
        if args.metrics
        else publishing.read_metrics(default_metrics, missing_ok=True)
    )
    card = publishing.build_model_card(args.model, args.repo_id, metrics=metrics, widget_prompts=prompts)
    reload = publishing.check_reload(args.model, prompts)
    say(reload.to_string(index=False))
    result = publishing.publish(args.model, args.repo_id, card, push=args.push, token=token, private=args.private)
    print(
        json.dumps(
            {**result, "token": token_source, "metrics": metrics, "reload_same": bool(reload["same"].all())}, indent=2
        )
    )
    return 0


def command_evaluate(args) -> int:
    from adgen_utils.apps.bench import print_json
    from adgen_utils.study import evaluation

    test, skipped = evaluation.read_test_csv(args.test)
    if args.max_ads is not None and len(test) > args.max_ads:
        test = test.sample(n=args.max_ads, random_state=args.seed)
    examples = None
    if args.shots:
        if not args.examples:
            raise ValueError("--shots needs --examples: a CSV of training ads to draw the examples from")
        examples, _ = evaluation.read_test_csv(args.examples)
        examples["category"] = examples["category"].fillna("")
        test = test.assign(category=test["category"].fillna(""))
    model = load_ad_model(args.model, shots=args.shots, examples=examples, seed=args.seed, models_dir=args.models_dir)
    categories = test["category"].tolist() if test["category"].notna().all() else None  # read only by models that do
    result = evaluation.evaluate_ad_model(model, test["ad"].tolist(), categories, progress=sys.stderr.isatty())
    print_json({**result, "test": str(args.test), "skipped_rows": skipped})
    return 0


def command_finetune(args) -> int:
    """Notebook 06's fine-tuning with its parameters and profiles, into the same model folder; under
    ``torchrun`` / ``accelerate launch`` data-parallel, the main process preparing the data first."""
    from adgen_utils.hardware import wait_for_processes
    from adgen_utils.layout import model_dir
    from adgen_utils.series.session import default_run_dir, resolve
    from adgen_utils.series.stages import ensure_earlier_stages
    from adgen_utils.transformer import finetune

    values, _ = resolve("06_fine_tuning", {"profile": args.profile, **_parameters(args.param)})
    run_dir = Path(args.run_dir or default_run_dir(args.profile)).expanduser().resolve()
    here = join_processes()
    # The main process makes what the others would otherwise make at once: the split, the base model's folder.
    if here.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        ensure_earlier_stages("06_fine_tuning", run_dir, args.profile, log=say)
        inputs = finetune.prepare_finetune(values, run_dir, log=say)
    wait_for_processes()
    if not here.main:
        inputs = finetune.prepare_finetune(values, run_dir, log=lambda *_: None)
    config = dataclasses.replace(finetune.config_from_parameters(values), fsdp=args.fsdp)
    output = model_dir(run_dir, "06_fine_tuning")
    progress = not args.no_progress and here.main
    result = finetune.finetune(
        inputs.model_path, inputs.train_texts, inputs.validation_texts, config, output, progress=progress
    )
    if here.main:
        print(
            json.dumps(
                {"model_dir": str(output), **{k: v for k, v in result.summary.items() if k != "settings"}}, indent=2
            )
        )
    return 0


def command_generate(args) -> int:

    decoding = DECODINGS[args.decoding]
    overrides = {
        k: v
        for k, v in [("temperature", args.temperature), ("top_k", args.top_k), ("top_p", args.top_p)]
        if v is not None
    }
    if overrides and not decoding.do_sample:
        raise ValueError(
            f"--temperature, --top-k and --top-p apply to sampling; {args.decoding!r} does not sample: "
            "pick a 'sample ...' --decoding"
        )
    decoding = dataclasses.replace(decoding, **overrides, max_new_tokens=args.max_new_tokens)
    here = join_processes()  # under torchrun / accelerate launch: each process on its own GPU, a share of the products
    model = load_ad_model(args.model, models_dir=args.models_dir)
    training, source = training_ads_for(args.training_ads, model.describe().source)
    if here.main:
        say(f"the seller's rules are fitted on {source}")
    log = lambda line: print(line, file=sys.stderr, flush=True)
    try:
        summary = generate_catalog(
            model,
            args.input,
            args.output,
            AdRules(training, max_chars=args.max_chars),
            per_product=args.per_product,
            candidates=args.candidates,
            rules_source=source,
            decoding=decoding,
            batch_size=args.batch_size,
            seed=args.seed,
            progress=not args.no_progress,
            log=log,
            overwrite=args.overwrite,
        )
    except KeyboardInterrupt:
        log(f"adgen: interrupted; the ads written so far are in {args.output}: run the same command again to resume")
        return 130
    if here.main:
        print(json.dumps(summary, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adgen", description="Generate product ad text: the adgen notebook series.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="execute the notebook series with papermill")
    run.add_argument(
        "--profile",
        choices=list(PROFILES),
        default=DEFAULT_PROFILE,
        help="; ".join(f"{name}: {p.description}" for name, p in PROFILES.items()),
    )
    run.add_argument(
        "--only", action="append", metavar="NN", help="run only this notebook (number like 01, or name); repeatable"
    )
    run.add_argument("--run-dir", help="where data, models and executed notebooks go (default runs/<profile>)")
    run.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a notebook parameter, e.g. -p data_source=/path/to/corpus; repeatable",
    )
    run.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")
    run.add_argument(
        "--alone",
        action="store_true",
        help="run each notebook on its own, in a fresh run folder (RUN_DIR/NN_name), as from a Colab "
        "badge: each rebuilds what it needs from earlier notebooks",
    )
    run.set_defaults(handler=command_run)

    sync_parser = commands.add_parser(
        "sync",
        help="write the notebooks' badges, setup and parameters cells and the README's tables from the "
        "declarations (pyproject.toml, adgen_utils/parameters.py) and the saved results (results/)",
    )
    sync_parser.add_argument("--check", action="store_true", help="only list what differs (exit 1 if anything does)")
    sync_parser.add_argument(
        "--repository",
        metavar="URL",
        help="declare a new repository address first (a fork: https://github.com/OWNER/NAME)",
    )
    sync_parser.set_defaults(handler=command_sync)

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
        sub.add_argument(
            "--seed", type=int, default=data.SplitConfig.seed, help="seed of the sample and salt of the split hash"
        )
        if name == "prepare":
            sub.add_argument("--out", required=True, help="folder for ads.parquet and load_report.json")
        sub.set_defaults(handler=handler)
    evaluate = commands.add_parser(
        "evaluate",
        help="score a saved model on test ads: next-word top-1/top-5, per-word perplexity, bits per "
        "character, out-of-vocabulary share (JSON)",
    )
    evaluate.add_argument(
        "--model", required=True, help="an LSTM folder (model.keras), a transformers folder, 'smollm2-135m' or a Hub id"
    )
    evaluate.add_argument("--test", required=True, help="a CSV with an 'ad' column (optionally 'category')")
    evaluate.add_argument("--shots", type=int, default=0, help="transformers: example ads before each ad (few-shot)")
    evaluate.add_argument("--examples", help="with --shots: a CSV of training ads to draw the examples from")
    evaluate.add_argument("--max-ads", type=int, help="score a random sample of this many ads")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the sample and of the examples drawn")
    evaluate.add_argument("--models-dir", help="where the 'tiny' model is built (default: none)")
    evaluate.set_defaults(handler=command_evaluate)
    bench = commands.add_parser("bench", help="benchmarks that print JSON")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True)
    bench_data = bench_commands.add_parser(
        "data", help="load time and peak RSS of the data layer against plain pandas.read_csv"
    )
    bench_data.add_argument("path", help="'embedded', a CSV file or a corpus folder")
    bench_data.add_argument("--repeats", type=int, help="runs of each way, alternated (default 3)")
    bench_data.set_defaults(handler=command_bench_data)

    def bench_parser(name: str, text: str, repeats: str | None = "runs of each way, alternated"):
        # Absent options keep the bench function's own defaults (its signature is their one home).
        sub = bench_commands.add_parser(name, help=text, argument_default=argparse.SUPPRESS)
        if repeats:
            sub.add_argument("--repeats", type=int, help=repeats)
        sub.set_defaults(handler=command_bench)
        return sub

    bench_lstm = bench_parser(
        "lstm",
        "the original one-hot window pipeline against ours, and a scale run on a corpus",
        repeats="runs of each way in (a), alternated",
    )
    bench_lstm.add_argument("--corpus", help="a corpus for the scale run, e.g. ../shared/data/amazon_ads_sample10")
    bench_lstm.add_argument("--original-steps", type=int, help="timed batches of 4,096 windows for the original")
    bench_lstm.add_argument("--steps", type=int, help="timed batches of 64 ads for ours")
    bench_lstm.add_argument(
        "--full-epoch", action="store_true", help="(b) also train one whole epoch (sampled softmax)"
    )
    model_help = "'smollm2-135m' (offline default), 'tiny', a model folder or a Hub id"
    bench_finetune = bench_parser(
        "finetune", "training tokens/s with packed blocks against one ad per padded row (and LoRA), with peak RSS"
    )
    bench_finetune.add_argument("--model", help=model_help)
    bench_finetune.add_argument("--steps", type=int, help="timed optimizer steps per run (after 2 untimed)")
    bench_finetune.add_argument("--batch-size", type=int, help="rows per step")
    bench_finetune.add_argument("--block-size", type=int, help="tokens per row")
    bench_finetune.add_argument("--no-lora", action="store_true", help="skip the LoRA run")
    bench_generate = bench_parser("generate", "ads/s generating the same prompts batched against one prompt at a time")
    bench_generate.add_argument("--model", help=model_help)
    bench_generate.add_argument("--prompts", type=int, help="prompts (first words of validation ads)")
    bench_generate.add_argument("--batch-size", type=int, help="prompts per generate() call when batched")
    bench_generate.add_argument("--max-new-tokens", type=int)
    bench_catalog = bench_parser(
        "catalog", "adgen generate batched on test-split products: killed, resumed, every row checked", repeats=None
    )
    bench_catalog.add_argument("--model", help="'smollm2-135m' (offline default), a model folder or a Hub id")
    bench_catalog.add_argument("--products", type=int, help="products of the embedded test split (one ad each)")
    bench_catalog.add_argument("--kill-after", type=float, help="seconds after which the first run is killed")
    bench_catalog.add_argument("--batch-size", type=int, help="prompts per generate() call")
    bench_catalog.add_argument("--max-new-tokens", type=int)
    bench_compute = bench_parser(
        "compute",
        "quality against training compute: every model family on the same ads, bits per char against seconds and FLOPs",
        repeats=None,
    )
    bench_compute.add_argument("--profile", choices=list(PROFILES), help="the settings and data (default quick)")
    bench_compute.add_argument("--corpus", help="a corpus in place of the profile's data source")
    bench_compute.add_argument("--epochs-scale", type=float, help="LSTM epochs, times the profile's (default 2)")
    bench_compute.add_argument(
        "--fractions", type=float, nargs="+", help="fine-tuning budgets, as fractions of notebook 06's steps"
    )
    bench_compute.add_argument("--figure", help="where the figure goes (default figures/bench_compute.png)")
    bench_category = bench_parser(
        "category",
        "fine-tuning with and without the category prefix on a 40-category corpus: bits per char, ads in category",
        repeats=None,
    )
    bench_category.add_argument(
        "--corpus", help="a corpus with categories (default ../shared/data/amazon_ads_sample10)"
    )
    bench_category.add_argument("--sample-size", type=int, help="ads drawn from it (default 30,000)")
    bench_category.add_argument("--steps", type=int, help="fine-tuning steps of each run (default notebook 06's)")
    bench_category.add_argument("--products", type=int, help="validation products asked for one ad each")
    bench_category.add_argument("--base-model", help="in place of notebook 06's base model")
    bench_distributed = bench_parser(
        "distributed",
        "adgen finetune under torchrun on 1 and 2 processes: tokens/s, peak RSS per process, the same result",
        repeats=None,
    )
    bench_distributed.add_argument("--model", help=model_help)
    bench_distributed.add_argument("--processes", type=int, nargs="+", help="process counts (default 1 2)")
    bench_distributed.add_argument("--steps", type=int, help="optimizer steps of each run")
    bench_distributed.add_argument("--batch-size", type=int, help="blocks per step, shared by the processes")
    bench_distributed.add_argument("--block-size", type=int, help="tokens per block")
    bench_tokens = bench_parser(
        "tokens",
        "peak RSS of preparing the fine-tuning data in memory against streamed to a token file; the full corpus projected",
        repeats=None,
    )
    bench_tokens.add_argument("--corpus", help="a corpus (default ../shared/data/amazon_ads_sample10)")
    bench_tokens.add_argument("--model", help="whose tokenizer (default notebook 06's base model)")
    bench_tokens.add_argument("--block-size", type=int, help="tokens per block")
    results = commands.add_parser("results", help="save results for the README's measured section (results/)")
    results_commands = results.add_subparsers(dest="results_command", required=True)
    results_save = results_commands.add_parser(
        "save",
        help="save a run's notebook 07 comparison, notebook times and training figures as results/run_PROFILE.json",
    )
    results_save.add_argument("run_dir", help="a run folder, e.g. runs/quick")
    results_save.add_argument("--profile", help="the run's profile (default: the one run_summary.json names)")
    results_save.add_argument("--results-dir", help="where to write (default: the repository's results/)")
    results_save.set_defaults(handler=command_results_save)
    publish = commands.add_parser(
        "publish",
        help="write the model card and upload a fine-tuned model to the Hugging Face Hub (dry run without --push)",
    )
    publish.add_argument("--model", required=True, help="the fine-tuned model folder, e.g. runs/quick/models/finetuned")
    publish.add_argument("--repo-id", required=True, help="the Hub repository, 'owner/name'")
    publish.add_argument("--push", action="store_true", help="upload (needs HF_TOKEN); otherwise only report the files")
    publish.add_argument("--private", action="store_true", help="create the repository private")
    publish.add_argument(
        "--prompt",
        action="append",
        metavar="TEXT",
        help="a widget prompt (first words of an ad); repeatable; default: the original study's three",
    )
    publish.add_argument(
        "--metrics",
        help="a JSON file {metric: value} or notebook 07's comparison CSV "
        "(default: evaluation/07_comparison.csv of the model's run folder, if present)",
    )
    publish.set_defaults(handler=command_publish)

    tune = commands.add_parser(
        "finetune",
        help="notebook 06's fine-tuning as a command (same parameters, profiles and model folder); "
        "under torchrun or accelerate launch, data-parallel on every process",
    )
    tune.add_argument("--profile", choices=list(PROFILES), default=DEFAULT_PROFILE)
    tune.add_argument(
        "-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="one of notebook 06's parameters"
    )
    tune.add_argument("--run-dir", help="the run folder (default runs/PROFILE); notebook 01's split is made if missing")
    tune.add_argument("--fsdp", action="store_true", help="shard the model over the GPUs (FSDP2, full fine-tuning)")
    tune.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    tune.set_defaults(handler=command_finetune)
    generate = commands.add_parser(
        "generate", help="write ads for a products CSV (brand, product[, category]); resumes an interrupted run"
    )
    generate.add_argument(
        "--model",
        required=True,
        help="an LSTM folder (model.keras), a transformers folder, 'smollm2-135m', 'tiny' or a Hub id",
    )
    generate.add_argument("--input", required=True, help="products CSV with columns brand, product[, category]")
    generate.add_argument("--output", required=True, help="ads CSV; if it exists, only the missing ads are written")
    generate.add_argument("--per-product", type=int, default=catalog_default("per_product"), help="ads per product")
    generate.add_argument(
        "--candidates",
        type=int,
        default=catalog_default("candidates"),
        help="ads written per product, of which the most likely that pass the seller's rules are kept",
    )
    generate.add_argument(
        "--max-chars", type=int, default=catalog_default("max_chars"), help="longest ad, in characters"
    )
    generate.add_argument(
        "--training-ads",
        help="a run folder, dataset folder, CSV or corpus folder of training ads for the rules (brands, product "
        "types, copies); default: the model's run folder, else the embedded corpus",
    )
    generate.add_argument("--decoding", choices=list(DECODINGS), default=catalog_default("decoding"))
    generate.add_argument("--temperature", type=float, help="override the sampling preset's temperature")
    generate.add_argument("--top-k", type=int, help="override the sampling preset's top-k")
    generate.add_argument("--top-p", type=float, help="override the sampling preset's top-p")
    generate.add_argument(
        "--max-new-tokens",
        type=int,
        default=catalog_default("max_new_tokens"),
        help="tokens (words for an LSTM) per ad",
    )
    generate.add_argument(
        "--batch-size", type=int, default=catalog_default("batch_size"), help="prompts per generate() call"
    )
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--overwrite", action="store_true", help="replace an output written with other settings")
    generate.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    generate.add_argument("--models-dir", help="where 'tiny' is built or found")
    generate.set_defaults(handler=command_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``adgen`` console command. Returns the exit status: 0 done; for a project
    error (:mod:`adgen_utils.errors`) its ``exit_code`` (2: the input or request is wrong, 1: the work
    failed), printed as one line ``adgen: error: ...`` on stderr, never a traceback. Progress
    messages go to stderr too (:func:`adgen_utils.logs.show_messages`): stdout holds only results."""
    args = build_parser().parse_args(argv)
    show_messages()
    try:
        return args.handler(args)
    except AdgenError as error:
        print(f"adgen: error: {error}", file=sys.stderr)
        return error.exit_code
    except (ValueError, FileNotFoundError, FileExistsError) as error:  # a library check refused the input
        print(f"adgen: error: {error}", file=sys.stderr)
        return USAGE


if __name__ == "__main__":
    sys.exit(main())
