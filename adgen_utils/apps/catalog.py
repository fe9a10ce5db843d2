"""Ads for a seller's catalog: read a products CSV, write ``per_product`` ads per product, resumably.

Batches are appended with one fsync'd write, so a killed run loses at most the batch in flight and a
rerun writes only the missing products; ``<output>.json`` records the settings so a resume never mixes
two. Units: ``row`` is a 1-based line number of the products file (header = line 1); seconds."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import mmap
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from adgen_utils.corpus.data import UNDECODABLE, csv_records, normalize_ad, read_header
from adgen_utils.corpus.facts import MAX_KEYWORDS, keywords_text, parse_keywords
from adgen_utils.errors import CorpusFormatError
from adgen_utils.hardware import launch, wait_for_processes
from adgen_utils.logs import say
from adgen_utils.models import DECODINGS, AdModel, Decoding
from adgen_utils.settings import Catalog
from adgen_utils.spreadsheet import csv_text, formula_cells, restore
from adgen_utils.study.selection import RULES, AdRules, ProductAds, keywords_of, write_for_products

MAX_FIELD_CHARS = 200  # a longer brand, product or category is a pasted description, not a name
COLUMNS = ["row", "brand", "product", "category", "keywords", "ad_number", "ad", "likelihood", "rejected", "model"]
PARTS_SUFFIX = ".parts"  # beside the output: each process's own files in a distributed run, gathered at the end
ADS_PART, CANDIDATES_PART = "ads", "candidates"  # a part's name: <stem>-<rank>.csv


@dataclasses.dataclass(frozen=True)
class OutputFiles:
    """Every file :func:`generate_catalog` writes for one output: the ads, its settings (``.json``),
    the skipped rows, the candidates, and the folder of the processes' parts in a distributed run."""

    ads: Path
    sidecar: Path
    skipped: Path
    candidates: Path
    parts: Path

    @classmethod
    def beside(cls, output: Path) -> OutputFiles:
        def named(suffix: str) -> Path:
            return output.with_name(output.name + suffix)

        return cls(output, named(".json"), named(".skipped.csv"), named(".candidates.csv"), named(PARTS_SUFFIX))

    def part(self, stem: str, rank: int) -> Path:
        """Process ``rank``'s own file of ``stem`` (ads or candidates) in a distributed run."""
        return self.parts / f"{stem}-{rank}.csv"

    def all(self, stem: str) -> list[Path]:
        """The ads (or candidates) file and the processes' parts of it."""
        main = self.ads if stem == ADS_PART else self.candidates
        return [main, *sorted(self.parts.glob(f"{stem}-*.csv"))] if self.parts.exists() else [main]


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
        raw = {name: fields[index] for name, index in wanted.items()}
        reason = _row_problem(raw)
        if reason is not None:
            bad_rows.append({"row": line_number, "reason": reason})
            continue
        products.append(
            {
                "row": line_number,
                "brand": normalize_ad(raw["brand"]),
                "product": normalize_ad(raw["product"]),
                "category": normalize_ad(raw.get("category", "")) or None,
                "keywords": parse_keywords(raw.get("keywords")),
                "prompt": make_prompt(raw["brand"], raw["product"]),
            }
        )
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


def _batch_seed(seed: int, row: int) -> int:
    """The seed of the batch whose first product is on line ``row`` (fits numpy's 32 bits)."""
    return (seed + row * 1000) % 2**31


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


def _file_totals(output: Path, candidates_path: Path) -> dict:
    """What the whole output holds now (this run and the runs it resumed): products, those with at
    least one ad that passed every rule, their share, and how many candidates each rule rejected."""
    ads = _read_rows(output, COLUMNS)
    products = {int(r[0]) for r in ads}
    with_ad = {int(r[0]) for r in ads if r[COLUMNS.index("ad")]}
    rejected = Counter()
    if candidates_path.exists():
        for record in _read_rows(candidates_path, CANDIDATE_COLUMNS):
            rejected.update(rule for rule in record[CANDIDATE_COLUMNS.index("rejected_by")].split(" + ") if rule)
    return {
        "products_written": len(products),
        "products_with_ad": len(with_ad),
        "passing_share": round(len(with_ad) / len(products), 4) if products else 0.0,
        "rejected_candidates": {rule: rejected[rule] for rule in RULES if rejected[rule]},
    }


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
) -> dict:
    """Write ``per_product`` ads per product to ``output``, each the most likely of ``candidates`` that
    pass ``rules`` (empty where none did), with ``<output>.candidates.csv`` and ``<output>.skipped.csv``.

    Resumable: batches of ``batch_size // candidates`` products, seeded by their first row, so a rerun
    writes the same ads as an uninterrupted run; other settings raise FileExistsError unless ``overwrite``.
    Under torchrun, process ``r`` of ``N`` writes batches ``i % N == r``. Returns counts, timings and totals."""
    started = time.perf_counter()
    log = log or (lambda line: None)
    if per_product < 1 or batch_size < 1 or candidates < per_product:
        raise ValueError(
            f"per_product ({per_product}) and batch_size ({batch_size}) must be at least 1, and candidates "
            f"({candidates}) at least per_product"
        )
    frame = products if isinstance(products, pd.DataFrame) else read_products(products)[0]
    missing = {"row", "brand", "product", "prompt"} - set(frame.columns)
    if missing:
        raise ValueError(f"products lacks columns {sorted(missing)}: read it with read_products")
    if "category" not in frame.columns:
        frame = frame.assign(category=None)
    if "keywords" not in frame.columns:
        frame = frame.assign(keywords=[()] * len(frame))
    # read_products records the file and its hash; a frame made by hand is identified by its contents.
    source = frame.attrs.get("source")
    sha256 = frame.attrs.get("sha256") or hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()
    bad_rows = list(frame.attrs.get("bad_rows", []))
    if source is not None:
        source = str(Path(source).resolve())

    files = OutputFiles.beside(Path(output))
    output = files.ads
    settings = {
        "model": model.name,
        "model_path": model.describe().source,
        "per_product": per_product,
        "candidates": candidates,
        "format": rules.format.name,
        "max_chars": rules.max_chars,
        "rules_from": rules_source,
        "decoding": dataclasses.asdict(decoding),
        "seed": seed,
        "input": source,
        "input_sha256": sha256,
    }
    here = launch()
    log = log if here.main else (lambda line: None)

    usable = []
    for product in frame.itertuples(index=False):
        if not isinstance(product.category, str) or not product.category:  # NaN or "" in a hand-made frame
            product = product._replace(category=None)
        reason = _refusal(model, product)
        if reason:
            bad_rows.append({"row": int(product.row), "reason": reason})
            continue
        usable.append(product)
    bad_rows.sort(key=lambda bad: bad["row"])
    # Batches are fixed groups of the usable products, so a batch's seed and company are the same in
    # every run, on any number of processes: a batch a kill left partly written is written again whole.
    step = max(1, batch_size // candidates)
    batches = [usable[start : start + step] for start in range(0, len(usable), step)]
    formulas = [
        {"row": int(frame["row"].iloc[position]), "field": column}
        for position, column in formula_cells(
            frame.assign(keywords=frame["keywords"].map(keywords_text)), ["brand", "product", "category", "keywords"]
        )
    ]
    if here.main:  # the other processes wait: the files are made ready once
        _prepare_output(files, settings, batch_size, per_product, batches, overwrite, log)
        if bad_rows:
            rows = [["row", "reason"], *([b["row"], b["reason"]] for b in bad_rows)]
            _write_atomically(files.skipped, csv_text(rows))
            log(f"skipped {len(bad_rows)} row(s) of the products file: see {files.skipped}")
        else:
            files.skipped.unlink(missing_ok=True)
        if formulas:
            log(
                f"{len(formulas)} input cell(s) start like a spreadsheet formula (=, +, -, @, tab, CR), e.g. row "
                f"{formulas[0]['row']} {formulas[0]['field']}: written with a leading ' so no spreadsheet runs them"
            )
    wait_for_processes()
    done = _complete_products(files, per_product)
    todo = [i for i, batch in enumerate(batches) if any(int(p.row) not in done for p in batch)]
    remaining = sum(len(batches[i]) for i in todo)
    if done:
        log(f"resuming {output}: {len(done)} product(s) already there, {remaining} to write")
    if here.distributed:
        log(
            f"{here.processes} processes write every {here.processes}th batch each into {files.parts}; the main one gathers them"
        )
    if candidates > 1 and not decoding.do_sample and decoding.num_beams == 1:
        log("note: greedy decoding writes the same candidate every time: sample to give the rules a choice")
    mine = [batches[i] for i in todo if i % here.processes == here.rank]
    ads_file, candidates_file = (
        (files.part(ADS_PART, here.rank), files.part(CANDIDATES_PART, here.rank))
        if here.distributed
        else (files.ads, files.candidates)
    )
    for path, columns in ((ads_file, COLUMNS), (candidates_file, CANDIDATE_COLUMNS)):
        if not path.exists() or path.stat().st_size == 0:
            _write_atomically(path, csv_text([columns]))

    written = 0
    shown = len(done) + remaining
    bar = tqdm(total=shown, initial=len(done), unit="product", desc="products", disable=not progress or not here.main)
    try:
        for batch in mine:
            results = write_for_products(
                model,
                pd.DataFrame(batch),
                rules,
                candidates=candidates,
                per_product=per_product,
                decoding=decoding,
                seed=_batch_seed(seed, int(batch[0].row)),
                batch_size=batch_size,
            )
            refused = [
                c.verdict.reasons[0] for r in results for c in r.candidates if c.verdict.rejected_by == ("refused",)
            ]
            if refused:  # its refusal() accepted these prompts above
                raise RuntimeError(f"{model.name} refused a prompt it had accepted: {refused[0]}")
            _append(candidates_file, csv_text(row for p, r in zip(batch, results) for row in _candidate_rows(p, r)))
            _append(
                ads_file,
                csv_text(row for p, r in zip(batch, results) for row in _ad_rows(p, r, per_product, model.name)),
            )
            written += sum(len(r.ads) for r in results)
            bar.update(len(batch) * here.processes)  # the others advance about as fast
    finally:
        bar.close()
    wait_for_processes()
    if here.main and files.parts.exists():
        _gather_parts(files, [int(p.row) for p in usable])
    seconds = time.perf_counter() - started
    summary = {
        "products": len(usable),
        "bad_rows": len(bad_rows),
        "problems": bad_rows[:SHOWN_PROBLEMS],
        "formula_cells": formulas[:SHOWN_PROBLEMS],
        "products_done": remaining,
        "resumed_from": len(done),
        "processes": here.processes,
        "ads_written": written,
        "seconds": round(seconds, 2),
        "ads_per_second": round(written / seconds, 2) if seconds else 0.0,
        "output": str(output),
    }
    if here.main:
        summary.update(_file_totals(files.ads, files.candidates))
    return summary


def _complete_products(files: OutputFiles, per_product: int) -> set[int]:
    """The products whose ``per_product`` ads are all in the ads file, or all in one of the parts."""
    done = set()
    for path in files.all(ADS_PART):
        if path.exists():
            counts = Counter(int(record[0]) for record in _read_rows(path, COLUMNS))
            done |= {row for row, count in counts.items() if count >= per_product}
    return done


def _prepare_output(files: OutputFiles, settings, batch_size, per_product, batches, overwrite, log) -> None:
    """Make the output ready (main process): a new run's files, or a resumed one's settings checked,
    torn last lines cut and half-written batches removed."""
    output, sidecar, parts = files.ads, files.sidecar, files.parts
    if overwrite:
        for path in (output, sidecar, files.candidates, files.skipped):
            path.unlink(missing_ok=True)
        shutil.rmtree(parts, ignore_errors=True)
    compared = [key for key in settings if key != "input"]  # the same bytes read from elsewhere are the same input
    if output.exists() or parts.exists():
        if not sidecar.is_file():
            raise FileExistsError(
                f"{output} exists but {sidecar.name} (its settings) does not, so it cannot be "
                "resumed safely: pass overwrite=True / --overwrite or pick another output"
            )
        previous = json.loads(sidecar.read_text(encoding="utf-8"))
        changed = [key for key in compared if previous.get(key) != settings[key]]
        if changed:
            raise FileExistsError(
                f"{output} was written with other settings ({', '.join(changed)}: "
                f"{', '.join(f'{previous.get(k)!r} -> {settings[k]!r}' for k in changed)[:300]}): pass "
                "overwrite=True / --overwrite to start over, or pick another output"
            )
        for path in [*files.all(ADS_PART), *files.all(CANDIDATES_PART)]:
            if path.exists() and _truncate_torn_line(path):
                log(f"removed a torn last line from {path}")
    _write_atomically(sidecar, json.dumps({**settings, "batch_size": batch_size}, indent=2) + "\n")
    for path, columns in ((output, COLUMNS), (files.candidates, CANDIDATE_COLUMNS)):
        if not path.exists() or path.stat().st_size == 0:
            _write_atomically(path, csv_text([columns]))
    done = _complete_products(files, per_product)
    whole = done - {int(p.row) for batch in batches if any(int(q.row) not in done for q in batch) for p in batch}
    removed = sum(_keep_only(path, COLUMNS, whole) for path in files.all(ADS_PART))
    if removed:
        log(f"removed the ads of a batch that was not written whole ({removed} rows): it is written again")
    for path in files.all(CANDIDATES_PART):
        _keep_only(path, CANDIDATE_COLUMNS, whole)
    if launch().distributed:
        parts.mkdir(exist_ok=True)


def _gather_parts(files: OutputFiles, order: list[int]) -> None:
    """Merge the parts of a distributed run into the ads and candidates files, every product once,
    in the products file's order (then each ad's or candidate's number); then remove the parts."""
    position = {row: i for i, row in enumerate(order)}
    for target, stem, columns, number in (
        (files.ads, ADS_PART, COLUMNS, COLUMNS.index("ad_number")),
        (files.candidates, CANDIDATES_PART, CANDIDATE_COLUMNS, CANDIDATE_COLUMNS.index("candidate")),
    ):
        records = [record for path in files.all(stem) if path.exists() for record in _read_rows(path, columns)]
        records.sort(key=lambda r: (position[int(r[0])], int(r[number])))  # "row" is every file's first column
        _write_atomically(target, csv_text([columns, *records]))
    shutil.rmtree(files.parts)
