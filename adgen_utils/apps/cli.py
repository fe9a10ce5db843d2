"""The ``adgen`` command. Each command imports what it runs when it runs, so ``adgen data report``
starts in a second and works without the optional extras."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from adgen_utils.apps.catalog import CatalogJob, generate_catalog
from adgen_utils.corpus import data
from adgen_utils.errors import USAGE, AdgenError
from adgen_utils.hardware import join_processes, launch, wait_for_processes
from adgen_utils.layout import DATA_FOLDER, DATASET_FILE, FINETUNED, comparison_path, model_dir
from adgen_utils.logs import say, show_messages
from adgen_utils.models import DECODINGS
from adgen_utils.settings import (
    ORIGINAL_PROMPTS,
    PROFILES,
    Catalog,
    Corpus,
    Finetune,
    Spark,
    default_run_dir,
    profile_values,
)
from adgen_utils.study.footing import load_ad_model
from adgen_utils.study.formats import FORMATS
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


def command_run(args) -> int:
    from adgen_utils.lessons import run_series, save_executed_copies

    if args.save_executed and (args.alone or args.only):
        raise ValueError("--save-executed needs the whole series in one run folder (no --only, no --alone)")
    runs = run_series(
        args.profile,
        only=args.only,
        run_dir=args.run_dir,
        overrides=_parameters(args.param),
        progress=not args.no_progress,
        alone=args.alone,
    )
    total = sum(r.seconds for r in runs)
    where = runs[0].output.parent.parent.parent if args.alone else runs[0].output.parent
    print(f"{len(runs)} notebook(s) ran in {total:.0f} s; executed copies under {where}")
    if args.save_executed:
        copies = save_executed_copies(runs[0].output.parent.parent)
        print(f"saved {len(copies)} executed copies for reading under {copies[0].parent}")
    return 0


def command_data(args) -> int:
    """``adgen data report`` prints the load report; ``adgen data prepare`` also saves the split ads."""
    ads, report = data.load_ads(
        args.path,
        categories=args.categories.split(",") if args.categories else None,
        clean=data.CleanConfig(min_chars=args.min_chars, max_chars=args.max_chars),
        split=data.SplitConfig(validation=args.validation, test=args.test, seed=args.seed),
        sample_size=args.sample_size,
        seed=args.seed,
        progress=sys.stderr.isatty(),
    )
    path = data.save_dataset(ads, report, args.out) if args.data_command == "prepare" else None
    print(json.dumps(report.to_dict(), indent=2))
    if path is not None:
        say(f"wrote {len(ads):,} ads to {path}")
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
    from adgen_utils.study.footing import evaluate_ad_model, read_test_csv

    if args.products:
        return evaluate_products(args)
    if not args.test:
        raise ValueError("give --test (test ads: next-word scores) or --products (held-out products: the seller's ads)")
    test, skipped = read_test_csv(args.test)
    if args.max_ads is not None and len(test) > args.max_ads:
        test = test.sample(n=args.max_ads, random_state=args.seed)
    examples = None
    if args.shots:
        if not args.examples:
            raise ValueError("--shots needs --examples: a CSV of training ads to draw the examples from")
        examples, _ = read_test_csv(args.examples)
        examples["category"] = examples["category"].fillna("")
        test = test.assign(category=test["category"].fillna(""))
    model = load_ad_model(args.model, shots=args.shots, examples=examples, seed=args.seed, models_dir=args.models_dir)
    if not test["category"].notna().all():  # categories are read only where every ad has one
        test = test.drop(columns="category")
    result = evaluate_ad_model(model, test, progress=sys.stderr.isatty())
    print(json.dumps({**result, "test": str(args.test), "skipped_rows": skipped}, indent=2, default=str))
    return 0


def evaluate_products(args) -> int:
    """``adgen evaluate --products``: the model's kept ad for each held-out product against its real ad,
    beside joining the inputs and the real ads themselves (:mod:`adgen_utils.study.references`)."""
    from adgen_utils.study import references
    from adgen_utils.study.selection import write_for_products

    model = load_ad_model(args.model, models_dir=args.models_dir)
    training, rules_source = training_ads_for(args.training_ads, model.describe().source)
    rules = AdRules(training, format=args.format)
    source = Path(args.products)
    if source.is_dir():  # a run folder: products of its test split, keywords from their real ads
        test = data.load_dataset(source / DATA_FOLDER, split="test")
        products = references.held_out_products(test, args.max_ads or 100, seed=args.seed, rules=rules)
    else:
        products = references.read_references(source)
        if args.max_ads is not None and len(products) > args.max_ads:
            products = products.sample(n=args.max_ads, random_state=args.seed).reset_index(drop=True)
    decoding = dataclasses.replace(DECODINGS[Catalog.decoding], max_new_tokens=Catalog.max_new_tokens)
    written = write_for_products(
        model,
        products,
        rules,
        candidates=args.candidates,
        decoding=decoding,
        seed=args.seed,
        progress=sys.stderr.isatty(),
    )
    table = references.reference_table({model.name: written}, products, rules)
    report = {"products": str(source), "format": args.format, "candidates": args.candidates, "rules_from": rules_source}
    print(json.dumps({**report, "figures": table.round(4).reset_index().to_dict("records")}, indent=2))
    return 0


def prepare_corpus(profile: str, run_dir: Path) -> None:
    """The profile's cleaned, split ads in ``run_dir/data``, as the corpus lesson saves them."""
    corpus = Corpus(**profile_values(profile, Corpus))
    say(f"{run_dir / DATA_FOLDER} has no split ads: preparing the {profile} profile's corpus ({corpus.data_source})")
    ads, report = data.load_ads(
        corpus.data_source,
        corpus.categories,
        clean=data.CleanConfig(min_chars=corpus.min_chars, max_chars=corpus.max_chars),
        split=data.SplitConfig(validation=corpus.validation_fraction, test=corpus.test_fraction, seed=corpus.seed),
        sample_size=corpus.sample_size,
        seed=corpus.seed,
        progress=sys.stderr.isatty(),
    )
    data.save_dataset(ads, report, run_dir / DATA_FOLDER)


def command_finetune(args) -> int:
    """Notebook 06's training steps as a command, with its settings and profiles, into the run
    folder's models/finetuned; under ``torchrun`` / ``accelerate launch``, data-parallel."""
    from adgen_utils.transformer import finetune
    from adgen_utils.transformer.admodel import footing_score

    values = {**profile_values(args.profile, Finetune), **_parameters(args.param)}
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(Finetune)})
    if unknown:
        raise ValueError(f"adgen finetune has no parameter {', '.join(unknown)}; see docs/parameters.md (Finetune)")
    settings = Finetune(**values)
    run_dir = Path(args.run_dir or default_run_dir(args.profile)).expanduser().resolve()
    here = join_processes()
    if here.main and not (run_dir / DATA_FOLDER / DATASET_FILE).is_file():
        prepare_corpus(args.profile, run_dir)
    wait_for_processes()  # the other processes read the split the main process made
    _, validation = finetune.read_training_ads(settings, run_dir)
    score = footing_score(validation, settings.category_prefix)
    progress = not args.no_progress and here.main
    result = finetune.finetune(settings, run_dir, score, progress=progress, fsdp=args.fsdp)
    if here.main:
        summary = {k: v for k, v in result.summary.items() if k != "settings"}
        print(json.dumps({"model_dir": str(model_dir(run_dir, FINETUNED)), **summary}, indent=2, default=str))
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
    if launch().distributed:
        raise ValueError(
            "adgen generate shares a catalog out with Spark, not torchrun: add --engine spark --master local[2] "
            "(two workers here) or run it on a cluster (README, 'A catalog of millions')"
        )
    if args.engine != "spark" and (args.master or args.spark_conf or args.csv):
        raise ValueError("--master, --spark-conf and --csv go with --engine spark")
    job = CatalogJob(args.per_product, args.candidates, decoding, args.batch_size, args.seed, args.chunk_products)
    started = time.perf_counter()
    spark = _spark_session(args) if args.engine == "spark" else None  # Java and pyspark checked before the model loads
    spark_start = time.perf_counter() - started
    # On Spark the driver only names the model to its workers: it keeps its own copy off the GPU.
    model = load_ad_model(args.model, models_dir=args.models_dir, **({"device": "cpu"} if spark else {}))
    training, source = training_ads_for(args.training_ads, model.describe().source)
    say(f"the seller's rules are fitted on {source}")
    rules = AdRules(training, max_chars=args.max_chars, format=args.format)
    log = lambda line: print(line, file=sys.stderr, flush=True)
    try:
        if spark is not None:
            from adgen_utils.apps.spark import generate_on_spark

            summary = generate_on_spark(
                spark, model, args.input, args.output, rules, job, source, args.csv, overwrite=args.overwrite, log=log
            )
            summary |= {"master": spark.sparkContext.master, "spark_start_seconds": round(spark_start, 2)}
        else:
            summary = generate_catalog(
                model,
                args.input,
                args.output,
                rules,
                per_product=job.per_product,
                candidates=job.candidates,
                decoding=job.decoding,
                batch_size=job.batch_size,
                seed=job.seed,
                chunk_products=job.chunk_products,
                rules_source=source,
                progress=not args.no_progress,
                log=log,
                overwrite=args.overwrite,
            )
    except KeyboardInterrupt:
        log(f"adgen: interrupted; the ads written so far are in {args.output}: run the same command again to resume")
        return 130
    finally:
        if spark is not None:
            spark.stop()
    print(json.dumps(summary, indent=2))
    return 0


def _spark_session(args):
    """The Spark session of ``adgen generate --engine spark``: --master and --spark-conf KEY=VALUE."""
    from adgen_utils.apps.spark import spark_session

    conf = {}
    for pair in args.spark_conf:
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith("spark."):
            raise ValueError(f"--spark-conf takes spark.KEY=VALUE, got {pair!r}")
        conf[key] = value
    return spark_session(args.master, conf, progress=not args.no_progress)


def _add_param_option(parser: argparse.ArgumentParser, text: str) -> None:
    """``-p NAME=VALUE``, repeatable: read by :func:`_parameters`."""
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help=text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adgen", description="Generate product ad text: the adgen notebook series.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="execute the notebook series with papermill")
    run.add_argument(
        "--profile",
        choices=list(PROFILES),
        default="quick",
        help="quick: real settings for a 2-core CPU; ci: tiny, for tests; full, large: the 3.2M-ad corpus on a GPU",
    )
    run.add_argument(
        "--only", action="append", metavar="NN", help="run only this notebook (number like 01, or name); repeatable"
    )
    run.add_argument("--run-dir", help="where data, models and executed notebooks go (default runs/<profile>)")
    _add_param_option(run, "override a notebook parameter, e.g. -p data_source=/path/to/corpus; repeatable")
    run.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")
    run.add_argument(
        "--save-executed",
        action="store_true",
        help="after the run, refresh notebooks/executed/ (the copies GitHub and the Colab badges show) from it",
    )
    run.add_argument(
        "--alone",
        action="store_true",
        help="run each notebook on its own, in a fresh run folder (RUN_DIR-alone/NN_name), as from a Colab "
        "badge: each runs the earlier notebooks it needs first",
    )
    run.set_defaults(handler=command_run)

    data_parser = commands.add_parser("data", help="inspect or prepare a corpus")
    data_commands = data_parser.add_subparsers(dest="data_command", required=True)
    for name, text in [
        ("report", "print the load report of a CSV file or corpus folder as JSON"),
        ("prepare", "clean and split a corpus and save it for the notebooks"),
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
        sub.set_defaults(handler=command_data)
    evaluate = commands.add_parser(
        "evaluate",
        help="score a saved model on test ads: next-word top-1/top-5, per-word perplexity, bits per "
        "character, out-of-vocabulary share (JSON)",
    )
    evaluate.add_argument(
        "--model", required=True, help="an LSTM folder (model.keras), a transformers folder, 'smollm2-135m' or a Hub id"
    )
    evaluate.add_argument("--test", help="a CSV with an 'ad' column (optionally 'category')")
    evaluate.add_argument(
        "--products",
        help="instead of --test: held-out products (a CSV of brand, product, ad[, category][, keywords], or a run "
        "folder, whose test ads give them); the kept ad of each is compared with its real ad",
    )
    evaluate.add_argument("--format", choices=list(FORMATS), default=Catalog.format, help="with --products")
    evaluate.add_argument(
        "--candidates", type=int, default=Catalog.candidates, help="with --products: ads written per product"
    )
    evaluate.add_argument("--training-ads", help="with --products: training ads for the rules (as adgen generate)")
    evaluate.add_argument("--shots", type=int, default=0, help="transformers: example ads before each ad (few-shot)")
    evaluate.add_argument("--examples", help="with --shots: a CSV of training ads to draw the examples from")
    evaluate.add_argument("--max-ads", type=int, help="score a random sample of this many ads")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the sample and of the examples drawn")
    evaluate.add_argument("--models-dir", help="where the 'tiny' model is built (default: none)")
    evaluate.set_defaults(handler=command_evaluate)
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
        "(default: evaluation/comparison.csv of the model's run folder, if present)",
    )
    publish.set_defaults(handler=command_publish)

    tune = commands.add_parser(
        "finetune",
        help="the fine-tuning lesson's training as a command (same parameters, profiles and model folder); "
        "under torchrun or accelerate launch, data-parallel on every process",
    )
    tune.add_argument("--profile", choices=list(PROFILES), default="quick")
    _add_param_option(tune, "a Finetune setting (docs/parameters.md)")
    tune.add_argument("--run-dir", help="the run folder (default runs/PROFILE); the profile's split is made if missing")
    tune.add_argument("--fsdp", action="store_true", help="shard the model over the GPUs (FSDP2, full fine-tuning)")
    tune.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    tune.set_defaults(handler=command_finetune)
    generate = commands.add_parser(
        "generate",
        help="write ads for a products CSV (brand, product[, category][, keywords]); resumes an interrupted run",
    )
    generate.add_argument(
        "--model",
        required=True,
        help="an LSTM folder (model.keras), a transformers folder, 'smollm2-135m', 'tiny' or a Hub id",
    )
    generate.add_argument(
        "--input",
        required=True,
        help="products CSV with columns brand, product[, category][, keywords: phrases separated by ';' that every ad "
        "must carry]; --engine spark also reads Parquet",
    )
    generate.add_argument(
        "--output",
        required=True,
        help="ads CSV (--engine spark: a folder of Parquet files); if it exists, only the missing ads are written",
    )
    generate.add_argument("--per-product", type=int, default=Catalog.per_product, help="ads per product")
    generate.add_argument(
        "--candidates",
        type=int,
        default=Catalog.candidates,
        help="ads written per product, of which the most likely that pass the seller's rules are kept",
    )
    generate.add_argument(
        "--format",
        choices=list(FORMATS),
        default=Catalog.format,
        help="where the ads run: its length limit and editorial rules (sources in docs/commands.md)",
    )
    generate.add_argument(
        "--max-chars", type=int, default=Catalog.max_chars, help="longest ad, in characters (default: the format's)"
    )
    generate.add_argument(
        "--training-ads",
        help="a run folder, dataset folder, CSV or corpus folder of training ads for the rules (brands, product "
        "types, copies); default: the model's run folder, else the embedded corpus",
    )
    generate.add_argument("--decoding", choices=list(DECODINGS), default=Catalog.decoding)
    generate.add_argument("--temperature", type=float, help="override the sampling preset's temperature")
    generate.add_argument("--top-k", type=int, help="override the sampling preset's top-k")
    generate.add_argument("--top-p", type=float, help="override the sampling preset's top-p")
    generate.add_argument(
        "--max-new-tokens",
        type=int,
        default=Catalog.max_new_tokens,
        help="tokens (words for an LSTM) per ad",
    )
    generate.add_argument("--batch-size", type=int, default=Catalog.batch_size, help="prompts per generate() call")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--overwrite", action="store_true", help="replace an output written with other settings")
    generate.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    generate.add_argument("--models-dir", help="where 'tiny' is built or found")
    generate.add_argument(
        "--chunk-products",
        type=int,
        default=Catalog.chunk_products,
        help="products per chunk: batches never cross one, so every engine writes the same ads; Spark's unit of work",
    )
    generate.add_argument(
        "--engine",
        choices=["one-process", "spark"],
        default="one-process",
        help="spark: Spark's workers write the chunks, each loading the model once (pip install 'adgen[spark]', Java 17)",
    )
    generate.add_argument(
        "--master", help=f"with --engine spark: where it runs (default: spark-submit's, else {Spark.master})"
    )
    generate.add_argument(
        "--spark-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --engine spark: a Spark setting, e.g. spark.executor.memoryOverhead=6g; repeatable",
    )
    generate.add_argument(
        "--csv",
        action="store_true",
        help="with --engine spark: also the CSV files adgen generate writes, in the folder",
    )
    generate.set_defaults(handler=command_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``adgen``: the exit status (0 done; an :mod:`adgen_utils.errors` error's ``exit_code``,
    printed as one line on stderr). Progress goes to stderr, results to stdout."""
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
