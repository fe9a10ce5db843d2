"""Ads for a seller's catalog: read a products CSV, write ``per_product`` ads per product, resumably.

:func:`read_products` reads ``brand, product[, category]`` rows with the data layer's robust CSV
helpers and sets aside the rows it cannot use (one report per row, never a crash).
:func:`generate_catalog` writes the ads batch by batch to a CSV, each batch appended with one
write and fsync'd, so a killed run loses at most the batch in flight; run it again and it
generates only the missing ads. A sidecar ``<output>.json`` records the settings, so a resume
never mixes ads of two settings in one file.

Units: lengths are characters; ``row`` is a line number of the products file (1-based, the
header is line 1); times are seconds.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import time
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from adgen_utils.corpus.data import INVISIBLE, UNDECODABLE, csv_records, decode_lines, header_columns, normalize_ad
from adgen_utils.errors import CorpusFormatError
from adgen_utils.logs import say
from adgen_utils.models import DECODINGS, AdModel, Decoding, Refusal, categories_for
from adgen_utils.parameters import catalog_default

MAX_FIELD_CHARS = 200  # a longer brand, product or category is a pasted description, not a name
COLUMNS = ["row", "brand", "product", "category", "ad_number", "ad", "model"]
PRODUCT_COLUMNS = ["row", "brand", "product", "category", "prompt"]
SHOWN_PROBLEMS = 20
# Every line break str.splitlines knows (\n, \r, \v, \f, \x1c-\x1e, \x85, U+2028, U+2029).
_LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_prompt(brand: str, product: str) -> str:
    """``"brand product"``, normalised; the brand is not repeated when the product starts with it."""
    brand, product = normalize_ad(brand), normalize_ad(product)
    if brand and re.match(re.escape(brand) + r"(?!\w)", product, flags=re.IGNORECASE):
        return product
    return f"{brand} {product}".strip()


def _row_problem(fields: dict[str, str]) -> str | None:
    """Why a parsed row cannot be used (None if it can); ``fields`` are the raw brand/product/category."""
    for name, value in fields.items():
        if UNDECODABLE.search(value):
            return f"invalid UTF-8 bytes in {name}"
        if _LINE_BREAK.search(value):
            return f"line break inside {name}"
        if len(normalize_ad(value)) > MAX_FIELD_CHARS:
            return f"{name} longer than {MAX_FIELD_CHARS} characters ({len(value):,})"
    if not normalize_ad(fields["brand"]) and not normalize_ad(fields["product"]):
        return "empty brand and product"
    return None


def read_products(path) -> tuple[pd.DataFrame, list[dict]]:
    """Read a products CSV: columns ``brand``, ``product`` and optionally ``category``.

    Header names are matched case-insensitively after stripping spaces and quotes; other columns
    are ignored. Returns ``(products, bad_rows)``:

    - ``products``: one row per usable data row, in file order, with ``row`` (its line number,
      1-based, the header being line 1), ``brand``, ``product``, ``category`` (None when empty or
      absent), all normalised (NFKC, invisible characters removed, whitespace collapsed), and
      ``prompt`` = ``"brand product"`` (the brand once when the product already starts with it).
      Duplicate products are kept: a seller may list one product twice on purpose. Its ``attrs``
      hold ``source`` (the path), ``sha256`` (of the file's bytes) and ``bad_rows``.
    - ``bad_rows``: ``{"row": line, "reason": ...}`` per row set aside: malformed quoting, a wrong
      number of fields, invalid UTF-8 bytes, empty brand and product, a field longer than
      ``MAX_FIELD_CHARS`` characters, a line break inside a field (a quoted field over several
      lines). Only brand, product and category are checked. Blank lines are not rows.

    Raises :class:`CorpusFormatError` (a ``ValueError``) when the whole file is unusable: empty,
    no header, or no ``brand`` / ``product`` column.
    """
    path = Path(path)
    lines = decode_lines(path.read_bytes())
    if not lines or not lines[0].strip():
        raise CorpusFormatError(
            f"{path}: the file is empty or starts with a blank line, not a header "
            "(expected a first line like 'brand,product,category')"
        )
    columns = header_columns(lines[0], path)
    missing = [name for name in ("brand", "product") if name not in columns]
    if missing:
        raise CorpusFormatError(
            f"{path}: no {' or '.join(repr(m) for m in missing)} column; the columns are "
            f"{columns}. A products file needs 'brand' and 'product' ('category' optional)."
        )
    wanted = {name: columns.index(name) for name in ("brand", "product", "category") if name in columns}
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
                "prompt": make_prompt(raw["brand"], raw["product"]),
            }
        )
    frame = pd.DataFrame(products, columns=PRODUCT_COLUMNS).astype({"row": "int64"})
    frame["category"] = pd.Series([p["category"] for p in products], dtype=object)  # None, not NaN
    frame.attrs.update(source=str(path), sha256=_sha256(path), bad_rows=list(bad_rows))
    return frame, bad_rows


# ---------------------------------------------------------------------------------------
# Writing ads


def _refusal(model: AdModel, product) -> str | None:
    """Why the model cannot write an ad for this product (None if it can): its
    :meth:`~adgen_utils.models.AdModel.refusal` of the prompt, with the product's category if it reads one."""
    category = product.category if model.describe().reads_category else None
    refusal = model.refusal(product.prompt, category)
    return None if refusal is None else f"the model refuses the prompt: {refusal.reason}"


def _clean_ad(text: str) -> str:
    """The first line of a generated text, without invisible characters."""
    return INVISIBLE.sub("", _LINE_BREAK.split(text or "", maxsplit=1)[0]).strip()


def _truncate_torn_line(path: Path) -> int:
    """Cut a last line without its ``\\n`` (a write killed midway); returns the bytes removed."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "r+b") as file:
        file.seek(size - 1)
        if file.read(1) == b"\n":
            return 0
        keep, position = 0, size
        while position > 0 and not keep:  # find the last "\n", reading backwards in blocks
            start = max(0, position - (1 << 16))
            file.seek(start)
            block = file.read(position - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
            position = start
        file.truncate(keep)
        file.flush()
        os.fsync(file.fileno())
    return size - keep


def _done_pairs(path: Path) -> set[tuple[int, int]]:
    """The ``(row, ad_number)`` pairs already in an output file (header checked)."""
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            return set()
        if header != COLUMNS:
            raise FileExistsError(
                f"{path} exists and is not an ads file of adgen generate (its header is "
                f"{header[:8]}): pass overwrite=True / --overwrite or pick another output"
            )
        return {(int(record[0]), int(record[4])) for record in reader if record}


def _write_atomically(path: Path, text: str) -> None:
    staged = path.with_name(path.name + ".tmp")
    staged.write_text(text, encoding="utf-8")
    os.replace(staged, path)


def _csv_text(rows) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _batch_seed(seed: int, row: int, ad_number: int) -> int:
    """The seed of the batch whose first work item is ``(row, ad_number)`` (fits numpy's 32 bits)."""
    return (seed + row * 1000 + ad_number) % 2**31


def generate_catalog(
    model: AdModel,
    products,
    output,
    per_product: int = catalog_default("per_product"),
    decoding: Decoding = DECODINGS[catalog_default("decoding")],
    batch_size: int = catalog_default("batch_size"),
    seed: int = 0,
    progress: bool = True,
    log=say,
    overwrite: bool = False,
) -> dict:
    """Write ``per_product`` ads per product to the CSV ``output``; resume it if it exists.

    ``model`` is an :class:`adgen_utils.models.AdModel` (:func:`adgen_utils.models.load_ad_model`);
    ``products`` is a products CSV path or the DataFrame :func:`read_products` returns. The output
    has the columns ``COLUMNS`` (``row, brand, product, category, ad_number, ad, model``), one ad per
    line (an ad is cut at its first line break; commas and quotes are CSV-quoted). Work items,
    ``(row, ad_number)`` with ``ad_number`` 1..``per_product``, go through ``model.generate``
    ``batch_size`` at a time; each batch is appended with one write, flushed and fsync'd, so a kill
    loses at most that batch. A batch's seed is ``seed + first_row * 1000 + first_ad_number``, so
    with the same batch size a resumed run writes the same ads as an uninterrupted one.

    Resume: an existing ``output`` loses a torn last line (no ``\\n``), and only the missing pairs
    are generated. The settings (model name and source, ``per_product``, ``decoding``, ``seed``, the
    input's path and sha256) are kept in ``output + ".json"``; resuming with other settings (or
    the input changed) raises ``FileExistsError``, unless ``overwrite`` (the old files are then
    replaced). ``batch_size`` is recorded but may change on resume.

    Rows that could not be read and prompts the model refuses (``model.refusal``) are skipped, not
    fatal, and listed in ``output + ".skipped.csv"`` (``row, reason``). ``log`` gets one-line
    notes (None: silent); a tqdm bar counts ads unless ``progress`` is False.

    Returns ``products`` (usable products), ``bad_rows`` (count), ``problems`` (the first
    ``SHOWN_PROBLEMS`` bad rows), ``ads_written`` (this run), ``ads_total`` (now in the file),
    ``resumed_from`` (ads already there), ``seconds`` (this call, wall clock), ``ads_per_second``
    (this run's ads over ``seconds``) and ``output``.
    """

    started = time.perf_counter()
    log = log or (lambda line: None)
    if per_product < 1 or batch_size < 1:
        raise ValueError(f"per_product ({per_product}) and batch_size ({batch_size}) must be at least 1")
    if isinstance(products, pd.DataFrame):
        missing = {"row", "brand", "product", "prompt"} - set(products.columns)
        if missing:
            raise ValueError(f"products lacks columns {sorted(missing)}: read it with read_products")
        frame = products if "category" in products.columns else products.assign(category=None)
        source = frame.attrs.get("source")
        sha256 = frame.attrs.get("sha256") or hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()
        bad_rows = list(frame.attrs.get("bad_rows", []))
    else:
        frame, bad_rows = read_products(products)
        source, sha256 = frame.attrs["source"], frame.attrs["sha256"]
    if source is not None:
        source = str(Path(source).resolve())

    output = Path(output)
    sidecar = output.with_name(output.name + ".json")
    skipped = output.with_name(output.name + ".skipped.csv")
    settings = {
        "model": model.name,
        "model_path": model.describe().source,
        "per_product": per_product,
        "decoding": dataclasses.asdict(decoding),
        "seed": seed,
        "input": source,
        "input_sha256": sha256,
    }
    compared = [key for key in settings if key != "input"]  # the same bytes read from elsewhere are the same input

    if overwrite:
        for path in (output, sidecar, skipped):
            path.unlink(missing_ok=True)
    done: set[tuple[int, int]] = set()
    if output.exists():
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
        torn = _truncate_torn_line(output)
        if torn:
            log(f"removed a torn last line ({torn} bytes) from {output}")
        done = _done_pairs(output)
    _write_atomically(sidecar, json.dumps({**settings, "batch_size": batch_size}, indent=2) + "\n")
    if not output.exists() or output.stat().st_size == 0:
        with open(output, "w", newline="", encoding="utf-8") as file:
            file.write(_csv_text([COLUMNS]))
            file.flush()
            os.fsync(file.fileno())

    usable, items = [], []
    for product in frame.itertuples(index=False):
        if not isinstance(product.category, str) or not product.category:  # NaN or "" in a hand-made frame
            product = product._replace(category=None)
        reason = _refusal(model, product)
        if reason:
            bad_rows.append({"row": int(product.row), "reason": reason})
            continue
        usable.append(product)
        items += [(product, n) for n in range(1, per_product + 1) if (int(product.row), n) not in done]
    bad_rows.sort(key=lambda bad: bad["row"])
    if bad_rows:
        _write_atomically(skipped, _csv_text([["row", "reason"], *([b["row"], b["reason"]] for b in bad_rows)]))
        log(f"skipped {len(bad_rows)} row(s) of the products file: see {skipped}")
    else:
        skipped.unlink(missing_ok=True)
    if done:
        log(f"resuming {output}: {len(done)} ad(s) already there, {len(items)} to write")
    if per_product > 1 and not decoding.do_sample and decoding.num_beams == 1:
        log("note: greedy decoding writes the same ad for every ad_number of a product")

    written = 0
    bar = tqdm(total=len(done) + len(items), initial=len(done), unit="ad", desc="ads", disable=not progress)
    try:
        with open(output, "a", newline="", encoding="utf-8") as file:
            for start in range(0, len(items), batch_size):
                batch = items[start : start + batch_size]
                first, first_number = batch[0]
                ads = model.generate(
                    [p.prompt for p, _ in batch],
                    decoding,
                    seed=_batch_seed(seed, int(first.row), first_number),
                    batch_size=batch_size,
                    categories=categories_for(model, [p.category for p, _ in batch]),
                )
                if len(ads) != len(batch):
                    raise RuntimeError(f"{model.name} returned {len(ads)} ads for {len(batch)} prompts")
                refused = [ad for ad in ads if isinstance(ad, Refusal)]
                if refused:  # its refusal() accepted these prompts above
                    raise RuntimeError(f"{model.name} refused a prompt it had accepted: {refused[0].reason}")
                file.write(
                    _csv_text(
                        [int(p.row), p.brand, p.product, p.category or "", n, _clean_ad(ad), model.name]
                        for (p, n), ad in zip(batch, ads)
                    )
                )
                file.flush()
                os.fsync(file.fileno())
                written += len(batch)
                bar.update(len(batch))
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    return {
        "products": len(usable),
        "bad_rows": len(bad_rows),
        "problems": bad_rows[:SHOWN_PROBLEMS],
        "ads_written": written,
        "ads_total": len(done) + written,
        "resumed_from": len(done),
        "seconds": round(seconds, 2),
        "ads_per_second": round(written / seconds, 2) if seconds else 0.0,
        "output": str(output),
    }
