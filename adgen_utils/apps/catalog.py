"""Ads for a seller's catalog: read a products CSV, write ``per_product`` ads per product, resumably.

The products are cut into chunks in input order and each chunk into batches (:class:`CatalogJob`);
a batch's ads and candidates (:func:`batch_rows`) are what every engine writes, here appended with
one fsync'd write, so a killed run loses at most the batch in flight and a rerun writes only the
missing products (:mod:`adgen_utils.apps.spark` writes whole chunks instead). ``<output>.json``
records the settings so a resume never mixes two. Units: ``row`` is a 1-based line number of the
products file (header = line 1); seconds."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import mmap
import os
import re
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from adgen_utils.corpus.data import UNDECODABLE, csv_records, normalize_ad, read_header
from adgen_utils.corpus.facts import MAX_KEYWORDS, keywords_text, parse_keywords
from adgen_utils.errors import CorpusFormatError
from adgen_utils.logs import say
from adgen_utils.models import DECODINGS, AdModel, Decoding
from adgen_utils.settings import Catalog
from adgen_utils.spreadsheet import csv_text, formula_cells, restore
from adgen_utils.study.selection import RULES, AdRules, ProductAds, keywords_of, write_for_products

MAX_FIELD_CHARS = 200  # a longer brand, product or category is a pasted description, not a name
COLUMNS = ["row", "brand", "product", "category", "keywords", "ad_number", "ad", "likelihood", "rejected", "model"]


@dataclasses.dataclass(frozen=True)
class OutputFiles:
    """Every file :func:`generate_catalog` writes for one output: the ads, its settings (``.json``),
    the skipped rows and the candidates."""

    ads: Path
    sidecar: Path
    skipped: Path
    candidates: Path

    @classmethod
    def beside(cls, output: Path) -> OutputFiles:
        def named(suffix: str) -> Path:
            return output.with_name(output.name + suffix)

        return cls(output, named(".json"), named(".skipped.csv"), named(".candidates.csv"))


@dataclasses.dataclass(frozen=True)
class CatalogJob:
    """How a catalog's ads are written, whatever the engine (one process or Spark's workers, which
    are sent this). Products are cut into chunks of ``chunk_products`` in input order, and each chunk
    into batches of ``batch_size // candidates`` products the model accepts: batches never cross a
    chunk, so every engine makes the same ``generate`` calls and writes the same ads."""

    per_product: int = Catalog.per_product
    candidates: int = Catalog.candidates
    decoding: Decoding = DECODINGS[Catalog.decoding]
    batch_size: int = Catalog.batch_size
    seed: int = 0
    chunk_products: int = Catalog.chunk_products

    def __post_init__(self):
        if min(self.per_product, self.batch_size, self.chunk_products) < 1 or self.candidates < self.per_product:
            raise ValueError(
                f"per_product ({self.per_product}), batch_size ({self.batch_size}) and chunk_products "
                f"({self.chunk_products}) must be at least 1, and candidates ({self.candidates}) at least per_product"
            )

    def settings(self, model: AdModel, rules: AdRules, rules_source: str | None) -> dict:
        """What makes the ads what they are: a resumed output must have been written with the same."""
        return {
            "model": model.name,
            "model_path": model.describe().source,
            "per_product": self.per_product,
            "candidates": self.candidates,
            "format": rules.format.name,
            "max_chars": rules.max_chars,
            "rules_from": rules_source,
            "decoding": dataclasses.asdict(self.decoding),
            "seed": self.seed,
            "seeds": "per product",  # not per batch, as before issue 21: such an output is not resumed
            "chunk_products": self.chunk_products,
        }


CANDIDATE_COLUMNS = ["row", "candidate", "written", "ad", "rejected_by", "why", "likelihood", "ad_number"]
PRODUCT_COLUMNS = ["row", "brand", "product", "category", "keywords", "prompt"]
SHOWN_PROBLEMS = 20
# Every line break str.splitlines knows (\n, \r, \v, \f, \x1c-\x1e, \x85, U+2028, U+2029).
_LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def make_prompt(brand: str, product: str) -> str:
    """``"brand product"``, normalised; the brand is not repeated when the product starts with it."""
    brand, product = normalize_ad(brand), normalize_ad(product)
    if brand and re.match(re.escape(brand) + r"(?!\w)", product, flags=re.IGNORECASE):
        return product
    return f"{brand} {product}".strip()


def _row_problem(fields: dict[str, str]) -> str | None:
    """Why a parsed row cannot be used (None if it can); ``fields`` are the raw brand/product/category/keywords."""
    for name, value in fields.items():
        if UNDECODABLE.search(value):
            return f"invalid UTF-8 bytes in {name}"
        if _LINE_BREAK.search(value):
            return f"line break inside {name}"
        longest = MAX_FIELD_CHARS * (MAX_KEYWORDS if name == "keywords" else 1)
        if len(normalize_ad(value)) > longest:
            return f"{name} longer than {longest} characters ({len(value):,})"
    if not normalize_ad(fields["brand"]) and not normalize_ad(fields["product"]):
        return "empty brand and product"
    keywords = parse_keywords(fields.get("keywords"))
    if len(keywords) > MAX_KEYWORDS:
        return f"{len(keywords)} keywords, more than {MAX_KEYWORDS}: give the facts every ad must carry"
    too_long = [k for k in keywords if len(k) > MAX_FIELD_CHARS]
    if too_long:
        return f"a keyword longer than {MAX_FIELD_CHARS} characters ({len(too_long[0]):,})"
    return None


def product_record(row: int, fields: dict[str, str]) -> dict | str:
    """One product as :func:`read_products` gives it, from its raw ``brand``, ``product`` and optional
    ``category`` and ``keywords`` texts; or why it cannot be used. Every engine checks rows with this."""
    reason = _row_problem(fields)
    if reason is not None:
        return reason
    return {
        "row": row,
        "brand": normalize_ad(fields["brand"]),
        "product": normalize_ad(fields["product"]),
        "category": normalize_ad(fields.get("category", "")) or None,
        "keywords": parse_keywords(fields.get("keywords")),
        "prompt": make_prompt(fields["brand"], fields["product"]),
    }


def read_products(path) -> tuple[pd.DataFrame, list[dict]]:
    """Read a products CSV (``brand``, ``product``, optional ``category`` and ``keywords``, phrases
    separated by ``;`` that every ad must carry; headers matched loosely).

    Returns ``(products, bad_rows)``: products has ``row``, ``brand``, ``product``, ``category`` (None when
    empty), ``keywords`` (a tuple, empty when none), ``prompt`` (normalised; duplicates kept) and ``attrs``
    ``source``, ``sha256``, ``bad_rows``;
    bad_rows is ``{"row", "reason"}`` per row set aside. Raises :class:`CorpusFormatError` for an unusable file."""
    path = Path(path)
    columns, lines = read_header(path, " (expected a first line like 'brand,product,category')")
    missing = [name for name in ("brand", "product") if name not in columns]
    if missing:
        raise CorpusFormatError(
            f"{path}: no {' or '.join(repr(m) for m in missing)} column; the columns are "
            f"{columns}. A products file needs 'brand' and 'product' ('category' and 'keywords' optional)."
        )
    wanted = {name: columns.index(name) for name in ("brand", "product", "category", "keywords") if name in columns}
    products, bad_rows = [], []
    for line_number, fields, _ in csv_records(lines, 1, len(columns)):
        if fields is None:
            bad_rows.append({"row": line_number, "reason": "malformed quoting"})
            continue
        if len(fields) == 1 and not fields[0].strip():
            continue  # a blank line
        if len(fields) != len(columns):
            bad_rows.append(
                {"row": line_number, "reason": f"wrong number of fields ({len(fields)}, the header has {len(columns)})"}
            )
            continue
        record = product_record(line_number, {name: fields[index] for name, index in wanted.items()})
        if isinstance(record, str):
            bad_rows.append({"row": line_number, "reason": record})
        else:
            products.append(record)
    frame = pd.DataFrame(products, columns=PRODUCT_COLUMNS).astype({"row": "int64"})
    frame["category"] = pd.Series([p["category"] for p in products], dtype=object)  # None, not NaN
    frame.attrs.update(source=str(path), sha256=hashlib.sha256(path.read_bytes()).hexdigest(), bad_rows=list(bad_rows))
    return frame, bad_rows


# Writing ads ---


def _refusal(model: AdModel, product) -> str | None:
    """Why the model cannot write an ad for this product (None if it can): its
    :meth:`~adgen_utils.models.AdModel.refusal` of the prompt, with the product's category if it reads one."""
    category = product.category if model.describe().reads_category else None
    refusal = model.refusal(product.prompt, category)
    return None if refusal is None else f"the model refuses the prompt: {refusal.reason}"


def _truncate_torn_line(path: Path) -> int:
    """Cut a last line without its ``\\n`` (a write killed midway); returns the bytes removed."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "r+b") as file:
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:  # the file is not read into memory
            keep = view.rfind(b"\n") + 1  # 0 when there is no "\n" at all
        if keep == size:
            return 0
        file.truncate(keep)
        file.flush()
        os.fsync(file.fileno())
    return size - keep


def _read_rows(path: Path, columns: list[str]) -> list[list[str]]:
    """The records of a CSV this module wrote (its header checked against ``columns``), every cell as
    it was before :mod:`adgen_utils.spreadsheet` made it safe."""
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            return []
        if header != columns:
            raise FileExistsError(
                f"{path} exists and is not a file of adgen generate (its header is {header[:8]}): pass "
                "overwrite=True / --overwrite or pick another output"
            )
        return [[restore(cell) for cell in record] for record in reader if record]


def _keep_only(path: Path, columns: list[str], done: set[int]) -> int:
    """Keep in ``path`` (the ads or the candidates file) only the rows of the products ``done``;
    returns how many rows went."""
    if not path.exists():
        return 0
    _truncate_torn_line(path)
    records = _read_rows(path, columns)
    kept = [r for r in records if int(r[0]) in done]
    if len(kept) < len(records):
        _write_atomically(path, csv_text([columns, *kept]))
    return len(records) - len(kept)


def _write_atomically(path: Path, text: str) -> None:
    staged = path.with_name(path.name + ".tmp")
    staged.write_text(text, encoding="utf-8")
    os.replace(staged, path)


def _append(path: Path, text: str) -> None:
    """Append ``text`` with one write, then flush and fsync: a kill loses at most this write."""
    with open(path, "a", newline="", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def _ad_rows(product, result: ProductAds, per_product: int, model_name: str) -> list[list]:
    """The ``per_product`` rows of one product in the ads file: its kept ads, best first, then
    empty ads where fewer passed every rule."""
    by_number = {c.chosen: c for c in result.candidates if c.chosen}
    product_cells = [
        int(product.row),
        product.brand,
        product.product,
        product.category or "",
        keywords_text(keywords_of(product)),
    ]
    rows = []
    for number in range(1, per_product + 1):
        chosen = by_number.get(number)
        ad, likelihood = (chosen.verdict.ad, f"{chosen.likelihood:.4f}") if chosen else ("", "")
        rows.append([*product_cells, number, ad, likelihood, result.summary(), model_name])
    return rows


def _candidate_rows(product, result: ProductAds) -> list[list]:
    """One row per candidate of a product: as written, as cut, the rules that rejected it and why,
    its likelihood and the ad number it got."""
    return [
        [
            int(product.row),
            c.number,
            str(c.written),
            c.verdict.ad,
            " + ".join(c.verdict.rejected_by),
            c.verdict.rejection(),
            "" if c.likelihood is None else f"{c.likelihood:.4f}",
            c.chosen or "",
        ]
        for c in result.candidates
    ]


def catalog_totals(ads: Iterable[tuple], rejections: Iterable[str]) -> dict:
    """What a whole output holds (this run and the runs it resumed), from each ads row's ``(row, ad)``
    and each candidate's ``rejected_by``, read once: products, those with at least one ad that passed
    every rule, their share, and how many candidates each rule rejected."""
    products, with_ad = set(), set()
    for row, ad in ads:
        products.add(int(row))
        if ad:
            with_ad.add(int(row))
    rejected = Counter(rule for rejected_by in rejections for rule in rejected_by.split(" + ") if rule)
    return {
        "products_written": len(products),
        "products_with_ad": len(with_ad),
        "passing_share": round(len(with_ad) / len(products), 4) if products else 0.0,
        "rejected_candidates": {rule: rejected[rule] for rule in RULES if rejected[rule]},
    }


def catalog_products(products) -> pd.DataFrame:
    """The products of :func:`read_products` (a path is read with it), with ``category`` and
    ``keywords`` columns however the frame was made."""
    frame = products if isinstance(products, pd.DataFrame) else read_products(products)[0]
    missing = {"row", "brand", "product", "prompt"} - set(frame.columns)
    if missing:
        raise ValueError(f"products lacks columns {sorted(missing)}: read it with read_products")
    if "category" not in frame.columns:
        frame = frame.assign(category=None)
    if "keywords" not in frame.columns:
        frame = frame.assign(keywords=[()] * len(frame))
    return frame


def chunk_batches(model: AdModel, products: list, job: CatalogJob) -> tuple[list[list], list[dict]]:
    """One chunk of products (rows of :func:`catalog_products`, in input order) as the batches the
    model writes and the ``{"row", "reason"}`` of each product it refuses."""
    usable, refused = [], []
    for product in products:
        if not isinstance(product.category, str) or not product.category:  # NaN or "" in a hand-made frame
            product = product._replace(category=None)
        reason = _refusal(model, product)
        if reason:
            refused.append({"row": int(product.row), "reason": reason})
        else:
            usable.append(product)
    step = max(1, job.batch_size // job.candidates)
    return [usable[start : start + step] for start in range(0, len(usable), step)], refused


def batch_rows(model: AdModel, batch: list, rules: AdRules, job: CatalogJob) -> tuple[list[list], list[list], int]:
    """The ads rows and candidate rows of one batch, and how many ads passed: the one code path of
    every engine. Each product draws with seeds of its own (:func:`product_seed`)."""
    results = write_for_products(
        model,
        pd.DataFrame(batch),
        rules,
        candidates=job.candidates,
        per_product=job.per_product,
        decoding=job.decoding,
        seed=job.seed,
        batch_size=job.batch_size,
    )
    refused = [c.verdict.reasons[0] for r in results for c in r.candidates if c.verdict.rejected_by == ("refused",)]
    if refused:  # its refusal() accepted these prompts in chunk_batches
        raise RuntimeError(f"{model.name} refused a prompt it had accepted: {refused[0]}")
    ads = [row for p, r in zip(batch, results) for row in _ad_rows(p, r, job.per_product, model.name)]
    candidates = [row for p, r in zip(batch, results) for row in _candidate_rows(p, r)]
    return ads, candidates, sum(len(r.ads) for r in results)


def catalog_batches(model: AdModel, frame: pd.DataFrame, job: CatalogJob) -> tuple[list[list], list[dict]]:
    """Every batch of a catalog, chunk by chunk, and the products the model refuses."""
    products = list(frame.itertuples(index=False))
    batches, refused = [], []
    for start in range(0, len(products), job.chunk_products):
        chunk, chunk_refused = chunk_batches(model, products[start : start + job.chunk_products], job)
        batches += chunk
        refused += chunk_refused
    return batches, refused


def input_formulas(frame: pd.DataFrame) -> list[dict]:
    """The input cells that start like a spreadsheet formula, as ``{"row", "field"}``."""
    return [
        {"row": int(frame["row"].iloc[position]), "field": column}
        for position, column in formula_cells(
            frame.assign(keywords=frame["keywords"].map(keywords_text)), ["brand", "product", "category", "keywords"]
        )
    ]


def log_formulas(formulas: list[dict], log) -> None:
    if formulas:
        log(
            f"{len(formulas)} input cell(s) start like a spreadsheet formula (=, +, -, @, tab, CR), e.g. row "
            f"{formulas[0]['row']} {formulas[0]['field']}: written with a leading ' so no spreadsheet runs them"
        )


def generate_catalog(
    model: AdModel,
    products,
    output,
    rules: AdRules,
    per_product: int = Catalog.per_product,
    candidates: int = Catalog.candidates,
    decoding: Decoding = DECODINGS[Catalog.decoding],
    batch_size: int = Catalog.batch_size,
    seed: int = 0,
    progress: bool = True,
    log=say,
    overwrite: bool = False,
    rules_source: str | None = None,
    chunk_products: int = Catalog.chunk_products,
) -> dict:
    """Write ``per_product`` ads per product to ``output``, each the most likely of ``candidates`` that
    pass ``rules`` (empty where none did), with ``<output>.candidates.csv`` and ``<output>.skipped.csv``.

    Resumable: each batch is appended whole, and a product's ads depend on the product, the settings
    and its chunk's batches only (:class:`CatalogJob`), so a rerun writes the same ads as an
    uninterrupted run; other settings raise FileExistsError unless ``overwrite``. Returns counts,
    timings and totals."""
    started = time.perf_counter()
    log = log or (lambda line: None)
    job = CatalogJob(per_product, candidates, decoding, batch_size, seed, chunk_products)
    frame = catalog_products(products)
    # read_products records the file and its hash; a frame made by hand is identified by its contents.
    source = frame.attrs.get("source")
    sha256 = frame.attrs.get("sha256") or hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()
    settings = {
        **job.settings(model, rules, rules_source),
        "input": None if source is None else str(Path(source).resolve()),
        "input_sha256": sha256,
    }
    files = OutputFiles.beside(Path(output))
    batches, refused = catalog_batches(model, frame, job)
    bad_rows = sorted([*frame.attrs.get("bad_rows", []), *refused], key=lambda bad: bad["row"])
    formulas = input_formulas(frame)
    done = _prepare_output(files, settings, batch_size, per_product, batches, overwrite, log)
    if bad_rows:
        _write_atomically(files.skipped, csv_text([["row", "reason"], *([b["row"], b["reason"]] for b in bad_rows)]))
        log(f"skipped {len(bad_rows)} row(s) of the products file: see {files.skipped}")
    else:
        files.skipped.unlink(missing_ok=True)
    log_formulas(formulas, log)
    todo = [batch for batch in batches if any(int(p.row) not in done for p in batch)]
    remaining = sum(len(batch) for batch in todo)
    if done:
        log(f"resuming {files.ads}: {len(done)} product(s) already there, {remaining} to write")
    if candidates > 1 and not decoding.do_sample and decoding.num_beams == 1:
        log("note: greedy decoding writes the same candidate every time: sample to give the rules a choice")

    written = 0
    bar = tqdm(total=len(done) + remaining, initial=len(done), unit="product", desc="products", disable=not progress)
    try:
        for batch in todo:
            ads, candidate_rows, passed = batch_rows(model, batch, rules, job)
            _append(files.candidates, csv_text(candidate_rows))
            _append(files.ads, csv_text(ads))
            written += passed
            bar.update(len(batch))
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    return {
        "products": sum(len(batch) for batch in batches),
        "bad_rows": len(bad_rows),
        "problems": bad_rows[:SHOWN_PROBLEMS],
        "formula_cells": formulas[:SHOWN_PROBLEMS],
        "products_done": remaining,
        "resumed_from": len(done),
        "ads_written": written,
        "seconds": round(seconds, 2),
        "ads_per_second": round(written / seconds, 2) if seconds else 0.0,
        "output": str(files.ads),
        **catalog_totals(
            ((r[0], r[COLUMNS.index("ad")]) for r in _read_rows(files.ads, COLUMNS)),
            (r[CANDIDATE_COLUMNS.index("rejected_by")] for r in _read_rows(files.candidates, CANDIDATE_COLUMNS)),
        ),
    }


def _complete_products(ads: Path, per_product: int) -> set[int]:
    """The products whose ``per_product`` ads are all in the ads file."""
    if not ads.exists():
        return set()
    counts = Counter(int(record[0]) for record in _read_rows(ads, COLUMNS))
    return {row for row, count in counts.items() if count >= per_product}


def check_settings(sidecar: Path, settings: dict, written: Path) -> None:
    """Raise FileExistsError unless ``written`` (an output that exists) was written with ``settings``,
    as its ``sidecar`` records them."""
    if not sidecar.is_file():
        raise FileExistsError(
            f"{written} exists but {sidecar.name} (its settings) does not, so it cannot be "
            "resumed safely: pass overwrite=True / --overwrite or pick another output"
        )
    previous = json.loads(sidecar.read_text(encoding="utf-8"))
    compared = [key for key in settings if key != "input"]  # the same bytes read from elsewhere are the same input
    changed = [key for key in compared if previous.get(key) != settings[key]]
    if changed:
        raise FileExistsError(
            f"{written} was written with other settings ({', '.join(changed)}: "
            f"{', '.join(f'{previous.get(k)!r} -> {settings[k]!r}' for k in changed)[:300]}): pass "
            "overwrite=True / --overwrite to start over, or pick another output"
        )


def _prepare_output(files: OutputFiles, settings, batch_size, per_product, batches, overwrite, log) -> set[int]:
    """Make the output ready: a new run's files, or a resumed one's settings checked, torn last
    lines cut and half-written batches removed. Returns the products written whole."""
    if overwrite:
        for path in (files.ads, files.sidecar, files.candidates, files.skipped):
            path.unlink(missing_ok=True)
    if files.ads.exists():
        check_settings(files.sidecar, settings, files.ads)
        for path in (files.ads, files.candidates):
            if path.exists() and _truncate_torn_line(path):
                log(f"removed a torn last line from {path}")
    _write_atomically(files.sidecar, json.dumps({**settings, "batch_size": batch_size}, indent=2) + "\n")
    for path, columns in ((files.ads, COLUMNS), (files.candidates, CANDIDATE_COLUMNS)):
        if not path.exists() or path.stat().st_size == 0:
            _write_atomically(path, csv_text([columns]))
    done = _complete_products(files.ads, per_product)
    whole = done - {int(p.row) for batch in batches if any(int(q.row) not in done for q in batch) for p in batch}
    removed = _keep_only(files.ads, COLUMNS, whole)
    if removed:
        log(f"removed the ads of a batch that was not written whole ({removed} rows): it is written again")
    _keep_only(files.candidates, CANDIDATE_COLUMNS, whole)
    return whole
