"""Every model of a run against the real ad of each held-out product, in each format:
``python -m benchmarks.seller RUN_DIR [--products 100] [--candidates 8]``.

Prints JSON, saved as ``results/bench_seller.json``: per format, one row per model (the two LSTMs,
the pretrained model zero-shot and few-shot, the fine-tuned model), then ``join the inputs`` and
``real ad``, with the figures of :mod:`adgen_utils.study.references` and the seconds each model took
to write. The products are held
out from the run's test split with up to 3 facts of their real ad as keywords; the candidates are
written once, as Amazon titles, and judged again for each format (:func:`selection.rejudge`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from adgen_utils import layout
from adgen_utils.corpus.data import load_dataset
from adgen_utils.models import DECODINGS
from adgen_utils.settings import Catalog, Evaluation
from adgen_utils.study import references, selection
from adgen_utils.study.footing import load_ad_model
from adgen_utils.transformer.admodel import with_shots
from benchmarks.results import with_provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.seller", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder of the whole series (runs/quick)")
    parser.add_argument("--products", type=int, default=100, help="held-out products (100)")
    parser.add_argument("--candidates", type=int, default=Catalog.candidates, help="ads written per product (8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ads = load_dataset(args.run_dir / layout.DATA_FOLDER)
    train = ads[ads["split"] == "train"]
    rules = selection.AdRules(train["ad"].tolist())
    products = references.held_out_products(ads[ads["split"] == "test"], args.products, seed=args.seed, rules=rules)
    pretrained = load_ad_model(Evaluation.pretrained_model)
    models = [
        load_ad_model(layout.model_dir(args.run_dir, layout.ONE_HOT_LSTM), name="one-hot LSTM"),
        load_ad_model(layout.model_dir(args.run_dir, layout.EMBEDDING_LSTM), name="Embedding LSTM"),
        pretrained,
        with_shots(pretrained, Evaluation.shots, train[["ad", "category"]], seed=args.seed),
        load_ad_model(layout.model_dir(args.run_dir, layout.FINETUNED), name="fine-tuned"),
    ]
    decoding = replace(DECODINGS[Catalog.decoding], max_new_tokens=Catalog.max_new_tokens)
    written, seconds = {}, {}
    for model in models:
        started = time.perf_counter()
        written[model.name] = selection.write_for_products(
            model, products, rules, args.candidates, decoding=decoding, seed=args.seed, batch_size=Catalog.batch_size
        )
        seconds[model.name] = round(time.perf_counter() - started, 1)
    tables = references.tables_by_format(models, written, products, rules)
    report = {name: table.round(4).reset_index().to_dict("records") for name, table in tables.items()}
    keyword_counts = products["keywords"].map(len).value_counts().sort_index()
    result = {
        "run_dir": str(args.run_dir),
        "products": len(products),
        "keywords_per_product": {int(k): int(v) for k, v in keyword_counts.items()},
        "candidates": args.candidates,
        "decoding": Catalog.decoding,
        "writing_seconds": seconds,
        "formats": report,
    }
    command = ["python", "-m", "benchmarks.seller", *(sys.argv[1:] if argv is None else argv)]
    print(json.dumps(with_provenance(result, command), indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
