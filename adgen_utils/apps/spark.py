"""Ads for a catalog on Apache Spark: ``adgen generate --engine spark``, or :func:`ads_for_dataframe`
in a PySpark job of your own.

The products are cut into chunks in input order (:class:`~adgen_utils.apps.catalog.CatalogJob`).
Spark's Python workers each load the model once and write whole chunks with the code of one
process (:func:`~adgen_utils.apps.catalog.chunk_batches`, :func:`~adgen_utils.apps.catalog.batch_rows`),
so the ads are those of ``adgen generate``, cell for cell, on any number of workers. Each chunk's
Parquet files go to a hidden temporary name and are then renamed, the ads file last: a job killed
and run again skips the chunks already written, and a retried task writes the same bytes.

Output folder: ``settings.json``, ``products.parquet`` (the products as read, with ``row`` and
``chunk``), and ``ads/``, ``candidates/``, ``skipped/`` of ``chunk-NNNNN.parquet`` files
(``skipped/input.parquet``: rows of the input that cannot be read), plus the CSV files of
``adgen generate`` when asked. Units: seconds, MiB."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import pickle
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from adgen_utils.apps.catalog import (
    CANDIDATE_COLUMNS,
    COLUMNS,
    PRODUCT_COLUMNS,
    SHOWN_PROBLEMS,
    CatalogJob,
    batch_rows,
    catalog_totals,
    check_settings,
    chunk_batches,
    input_formulas,
    log_formulas,
    product_record,
    read_products,
)
from adgen_utils.corpus.facts import parse_keywords
from adgen_utils.errors import CorpusFormatError, EngineUnavailable
from adgen_utils.logs import say
from adgen_utils.models import FINE_TUNED, FROM_SCRATCH, ZERO_SHOT, AdModel
from adgen_utils.settings import Spark
from adgen_utils.spreadsheet import csv_text
from adgen_utils.study.footing import load_ad_model
from adgen_utils.study.selection import AdRules

# pyspark warns on every import that pandas 3 is new to it; mapInPandas, all this module uses, is tested here.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
try:
    from pyspark import SparkConf, SparkContext, TaskContext
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
except ImportError as error:  # the CLI turns this into one line that says what to install
    raise EngineUnavailable("--engine spark needs pyspark: pip install 'adgen[spark]'") from error

JAVA_PACKAGE = "openjdk-17-jre-headless"
OUTPUT_FOLDERS = ("ads", "candidates", "skipped")
CSV_FILES = ("ads.csv", "ads.csv.candidates.csv", "ads.csv.skipped.csv")
SKIPPED_COLUMNS = ["row", "reason"]
STATUS_SCHEMA = (
    "chunk long, products long, skipped long, ads_passed long, written boolean, seconds double, "
    "worker_pid long, model_load_seconds double, peak_rss_mib double"
)
# The rows of a user's DataFrame (ads_for_dataframe): the ads file's columns, and a skipped product's reason.
ROWS_SCHEMA = (
    "row long, brand string, product string, category string, keywords string, ad_number long, ad string, "
    "likelihood double, rejected string, model string, reason string"
)
ROWS_COLUMNS = [column.split()[0] for column in ROWS_SCHEMA.split(", ")]
_NUMBERS = {"row": pa.int64(), "ad_number": pa.int64(), "candidate": pa.int64(), "likelihood": pa.float64()}


# Starting Spark ---


def require_java() -> str:
    """The ``java`` Spark will run (``JAVA_HOME``'s, else the one on PATH); raises
    :class:`EngineUnavailable`, naming Debian's package, when there is none or it is older than 17."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    install = f"install Java 17: apt-get install {JAVA_PACKAGE} (Debian, Ubuntu), or set JAVA_HOME"
    if not java or not Path(java).is_file():
        raise EngineUnavailable(f"--engine spark needs Java 17 or later and finds none: {install}")
    shown = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', shown)
    major = int(found[1]) if found and found[1] != "1" else int(found[2]) if found else 0  # "1.8.0" is Java 8
    if major < 17:
        raise EngineUnavailable(f"--engine spark needs Java 17 or later, {java} is {shown.splitlines()[:1]}: {install}")
    return java


def spark_session(master: str | None = None, conf: dict[str, str] | None = None, progress: bool = True):
    """A Spark session for writing ads: ``master`` (else spark-submit's, else ``local[*]``), ``conf``
    over spark-submit's settings over :class:`~adgen_utils.settings.Spark`'s defaults."""
    require_java()
    if os.environ.get("PYSPARK_GATEWAY_PORT"):  # spark-submit started this process and its JVM: read its settings
        SparkContext._ensure_initialized()
    settings = SparkConf()  # spark-submit's --master and --conf, when it started this process
    if master or not settings.contains("spark.master"):
        settings.setMaster(master or Spark.master)
    local = settings.get("spark.master").startswith("local")
    defaults = {
        "spark.app.name": "adgen generate",
        "spark.driver.memory": Spark.driver_memory,
        "spark.python.worker.reuse": "true",  # a worker keeps its model from one task to the next
        "spark.ui.showConsoleProgress": str(progress).lower(),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Not spark.executor.pyspark.memory: it sets an address-space limit that breaks torch's allocations.
    }
    if local:  # the workers run this Python, with this environment's packages (pyspark reads only the variable)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        defaults |= {"spark.ui.enabled": "false"}
    else:
        defaults |= {
            "spark.executor.cores": str(Spark.executor_cores),
            "spark.task.cpus": str(Spark.task_cpus),
            "spark.executor.memory": Spark.executor_memory,
            "spark.executor.memoryOverhead": Spark.memory_overhead,
        }
    for key, value in defaults.items():
        settings.setIfMissing(key, value)
    for key, value in (conf or {}).items():
        settings.set(key, value)
    session = SparkSession.builder.config(conf=settings).getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


# On a worker ---

_MODELS: dict[tuple[str, str], tuple[AdModel, float]] = {}  # per Python worker: (folder, name) -> model, load s


def _worker_model(source: str, name: str) -> tuple[AdModel, float]:
    """The model, loaded once per Python worker with the task's cores (and GPU, on a cluster that
    gives one), and the seconds its loading took."""
    if (source, name) not in _MODELS:
        import torch

        context = TaskContext.get()
        gpu = context.resources().get("gpu") if context is not None else None
        if context is not None:
            torch.set_num_threads(max(1, context.cpus()))
        if gpu is not None and gpu.addresses and torch.cuda.is_available():  # a cluster's GPU scheduling
            torch.cuda.set_device(int(gpu.addresses[0]))
        elif torch.cuda.device_count() > 1:  # local[N] on a machine with several GPUs: one each, then shared
            claimed = claim_gpu(torch.cuda.device_count())
            torch.cuda.set_device(claimed if claimed is not None else os.getpid() % torch.cuda.device_count())
        started = time.perf_counter()
        _MODELS[(source, name)] = load_ad_model(source, name=name), time.perf_counter() - started
    return _MODELS[(source, name)]


_CLAIMED: list = []  # the lock files this worker holds for its life


def claim_gpu(count: int, folder: str | None = None) -> int | None:
    """The first of ``count`` GPUs no other worker on this machine has claimed, claimed for this
    worker's life (a lock file per GPU); None when every one is taken."""
    for index in range(count):
        lock = open(Path(folder or tempfile.gettempdir()) / f"adgen-gpu-{index}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        _CLAIMED.append(lock)
        return index
    return None


def _whole_chunks(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Arrow batches of rows sorted by chunk, as one frame per chunk (a chunk may span batches)."""
    held: list[pd.DataFrame] = []
    for frame in batches:
        for chunk, part in frame.groupby("chunk", sort=False):
            if held and held[0]["chunk"].iloc[0] != chunk:
                yield pd.concat(held, ignore_index=True)
                held = []
            held.append(part)
    if held:
        yield pd.concat(held, ignore_index=True)


def raw_fields(values: dict) -> dict[str, str]:
    """A Parquet or DataFrame row's ``brand``, ``product``, ``category`` and ``keywords`` as the texts
    a CSV would hold: missing or null as empty, a list of keywords joined by ``;``."""
    fields = {}
    for name in ("brand", "product", "category", "keywords"):
        value = values.get(name)
        if isinstance(value, (list, tuple, np.ndarray)):
            value = ";".join(str(v) for v in value)
        fields[name] = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    return fields


def checked_products(rows: Iterable[tuple[int, dict]]) -> tuple[pd.DataFrame, list[dict]]:
    """``(row, values)`` pairs of a Parquet file or DataFrame checked as one process checks a CSV's
    rows: the products (:func:`~adgen_utils.apps.catalog.read_products`'s columns) and the
    ``{"row", "reason"}`` of each row set aside."""
    products, bad_rows = [], []
    for row, values in rows:
        record = product_record(row, raw_fields(values))
        if isinstance(record, str):
            bad_rows.append({"row": row, "reason": record})
        else:
            products.append(record)
    return pd.DataFrame(products, columns=PRODUCT_COLUMNS), bad_rows


def chunk_rows(model: AdModel, chunk: pd.DataFrame, rules: AdRules, job: CatalogJob) -> tuple[list, list, list]:
    """The ads, candidate and skipped rows of one chunk of raw products (``row``, ``brand``,
    ``product``, optional ``category`` and ``keywords``), as one process writes them."""
    frame, bad_rows = checked_products((int(raw["row"]), raw) for raw in chunk.to_dict("records"))
    batches, refused = chunk_batches(model, list(frame.itertuples(index=False)), job)
    skipped = [[bad["row"], bad["reason"]] for bad in bad_rows + refused]
    ads, candidates = [], []
    for batch in batches:
        batch_ads, batch_candidates, _ = batch_rows(model, batch, rules, job)
        ads += batch_ads
        candidates += batch_candidates
    return ads, candidates, sorted(skipped)


def _table(rows: list[list], columns: list[str]) -> pa.Table:
    """Rows as the CSV files hold them, typed: numbers as numbers (null where empty), text as text
    (empty where the CSV's cell is)."""
    cells = list(zip(*rows)) if rows else [()] * len(columns)
    arrays = {}
    for column, values in zip(columns, cells):
        kind = _NUMBERS.get(column, pa.string())
        if kind == pa.string():
            arrays[column] = pa.array(values, kind)
        else:
            number = float if kind == pa.float64() else int
            arrays[column] = pa.array([None if v == "" else number(v) for v in values], kind)
    return pa.table(arrays)


def _write_parquet(path: Path, table: pa.Table, attempt: int) -> None:
    """Write ``path`` whole or not at all: a hidden temporary file of this task attempt, then a rename."""
    staged = path.with_name(f".{path.name}.tmp-{attempt}")
    pq.write_table(table, staged)
    with open(staged, "rb") as file:
        os.fsync(file.fileno())
    os.replace(staged, path)


def _chunk_file(output: Path, kind: str, chunk: int) -> Path:
    return output / kind / f"chunk-{chunk:05d}.parquet"


def _chunk_files(output: Path, kind: str) -> list[Path]:
    """The chunk files of ``kind`` in chunk order (their numbers may outgrow the padding), and for
    ``skipped`` the input's bad rows first."""
    files = sorted((output / kind).glob("chunk-*.parquet"), key=lambda path: int(path.stem.split("-")[1]))
    return [output / kind / "input.parquet", *files] if kind == "skipped" else files


def write_chunks(
    batches: Iterator[pd.DataFrame], source: str, name: str, rules, job: CatalogJob, output: str
) -> Iterator[pd.DataFrame]:
    """``mapInPandas``'s function for :func:`generate_on_spark`: write each whole chunk of products
    (candidates, skipped, then ads: the ads file says the chunk is done), one status row per chunk
    (its seconds: writing it, the model's loading apart).
    A chunk already written is left as it is. ``rules`` is a broadcast :class:`AdRules`."""
    output = Path(output)
    context = TaskContext.get()
    attempt = context.taskAttemptId() if context is not None else os.getpid()
    for chunk in _whole_chunks(batches):
        number = int(chunk["chunk"].iloc[0])
        model, load_seconds = _worker_model(source, name)
        started = time.perf_counter()
        written = not _readable(_chunk_file(output, "ads", number))
        ads, skipped = [], []
        if written:
            ads, candidates, skipped = chunk_rows(model, chunk, rules.value, job)
            _write_parquet(_chunk_file(output, "candidates", number), _table(candidates, CANDIDATE_COLUMNS), attempt)
            _write_parquet(_chunk_file(output, "skipped", number), _table(skipped, SKIPPED_COLUMNS), attempt)
            _write_parquet(_chunk_file(output, "ads", number), _table(ads, COLUMNS), attempt)
        status = {
            "chunk": number,
            "products": len(chunk),
            "skipped": len(skipped),
            "ads_passed": sum(1 for row in ads if row[COLUMNS.index("ad")]),
            "written": written,
            "seconds": time.perf_counter() - started,
            "worker_pid": os.getpid(),
            "model_load_seconds": load_seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        yield pd.DataFrame([status])


def _rows_of_chunks(batches: Iterator[pd.DataFrame], source: str, name: str, rules, job: CatalogJob):
    """``mapInPandas``'s function for :func:`ads_for_dataframe`: the ads rows and skipped rows of each chunk."""
    for chunk in _whole_chunks(batches):
        model, _ = _worker_model(source, name)
        ads, _, skipped = chunk_rows(model, chunk, rules.value, job)
        records = [*_table(ads, COLUMNS).to_pylist(), *(dict(zip(SKIPPED_COLUMNS, bad)) for bad in skipped)]
        # Text as Python objects: pyspark 4.3 cannot send pandas 3's Arrow-backed string columns.
        frame = pd.DataFrame(records, columns=ROWS_COLUMNS, dtype=object)
        yield frame.astype({"row": "int64", "ad_number": "Int64", "likelihood": "float64"})


# On the driver ---


def _readable(path: Path) -> bool:
    """A Parquet file is there whole: its footer reads (a rename is not atomic on every mounted store)."""
    try:
        pq.read_metadata(path)
        return True
    except (OSError, pa.ArrowInvalid):
        return False


def read_catalog(path) -> tuple[pd.DataFrame, list[dict]]:
    """A products CSV (read as :func:`~adgen_utils.apps.catalog.read_products` reads it, line numbers
    as rows) or Parquet file (row ``i`` is numbered ``i + 2``, as if under a header line), checked
    by the same rules: ``(products, bad_rows)``."""
    path = Path(path)
    if path.suffix.lower() != ".parquet" and not path.is_dir():
        return read_products(path)
    raw = pd.read_parquet(path)
    missing = [name for name in ("brand", "product") if name not in raw.columns]
    if missing:
        raise CorpusFormatError(f"{path}: no {' or '.join(missing)} column; the columns are {list(raw.columns)}")
    return checked_products((position + 2, values) for position, values in enumerate(raw.to_dict("records")))


def _stage(products: pd.DataFrame, bad_rows: list[dict], output: Path, job: CatalogJob) -> None:
    """``products.parquet`` (with each product's chunk) and ``skipped/input.parquet``, written once."""
    staged = products.assign(
        chunk=[position // job.chunk_products for position in range(len(products))],
        keywords=products["keywords"].map(";".join),  # never longer than the cell they were read from
    )
    table = pa.Table.from_pandas(
        staged[["row", "chunk", "brand", "product", "category", "keywords"]], preserve_index=False
    )
    _write_parquet(
        output / "skipped" / "input.parquet", _table([[b["row"], b["reason"]] for b in bad_rows], SKIPPED_COLUMNS), 0
    )
    _write_parquet(output / "products.parquet", table, 0)


def _model_of(model: AdModel) -> tuple[str, str]:
    """The folder every worker loads and the name the ads carry: a name like 'tiny' or
    'smollm2-135m' was resolved when ``model`` was loaded, so no worker builds or downloads it again."""
    description = model.describe()
    if description.setting not in (ZERO_SHOT, FINE_TUNED, FROM_SCRATCH):  # its examples would be lost on the way
        raise ValueError(f"{model.name}: a few-shot model is not written on Spark; give a fine-tuned or zero-shot one")
    return description.source, model.name


def _input_digest(path: Path) -> str:
    """The input's SHA-256, or for a folder of Parquet files, of its files' names, sizes and times."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    listing = sorted((str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns) for f in path.rglob("*"))
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def _prepare(output: Path, settings: dict, overwrite: bool) -> bool:
    """Make ``output`` ready: with ``overwrite``, adgen's own files removed (nothing else); a folder
    that holds other files refused. True when the products are staged already (a resume, its
    settings checked); leftover temporary files of a killed job removed."""
    sidecar = output / "settings.json"
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"{output} is a file: with --engine spark, --output is a folder")
    if output.is_dir() and any(output.iterdir()) and not sidecar.is_file():
        raise FileExistsError(f"{output} holds other files than adgen's: pick another output")
    if overwrite:
        for kind in OUTPUT_FOLDERS:
            shutil.rmtree(output / kind, ignore_errors=True)
        for name in ("products.parquet", "settings.json", *CSV_FILES):
            (output / name).unlink(missing_ok=True)
    for folder in (output, *(output / kind for kind in OUTPUT_FOLDERS)):
        folder.mkdir(parents=True, exist_ok=True)
        for leftover in folder.glob(".*.tmp*"):  # a killed job's, never renamed
            leftover.unlink()
    staged = _readable(output / "products.parquet")
    if staged:
        check_settings(sidecar, settings, output)
    else:
        sidecar.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    return staged


def generate_on_spark(
    spark,
    model: AdModel,
    products,
    output,
    rules: AdRules,
    job: CatalogJob | None = None,
    rules_source: str | None = None,
    csv: bool = False,
    partitions: int | None = None,
    overwrite: bool = False,
    log=say,
) -> dict:
    """:func:`~adgen_utils.apps.catalog.generate_catalog` as a Spark job: the ads of ``products`` (a
    CSV or Parquet file or folder) by ``model`` (each worker loads its folder once) into the folder
    ``output``; with ``csv``, also the CSV files ``adgen generate`` writes, byte for byte. Chunks are
    spread over ``partitions`` tasks (default: one per chunk left). Resumable: a rerun writes only
    the chunks not written; other settings raise FileExistsError unless ``overwrite``."""
    started = time.perf_counter()
    log = log or (lambda line: None)
    job = job or CatalogJob()
    output, products = Path(output), Path(products)
    source, name = _model_of(model)
    settings = {
        **job.settings(model, rules, rules_source),
        "input": str(products.resolve()),
        "input_sha256": _input_digest(products),
    }
    if not _prepare(output, settings, overwrite):
        frame, bad_rows = read_catalog(products)
        _stage(frame, bad_rows, output, job)
    staged = pd.read_parquet(output / "products.parquet")
    bad_rows = pq.read_table(output / "skipped" / "input.parquet").num_rows
    if bad_rows:
        log(f"skipped {bad_rows} row(s) of the products file: see {output / 'skipped'}")
    formulas = input_formulas(staged.assign(keywords=staged["keywords"].map(parse_keywords)))
    log_formulas(formulas, log)
    chunks = int(staged["chunk"].max()) + 1 if len(staged) else 0
    done = [c for c in range(chunks) if _readable(_chunk_file(output, "ads", c))]
    todo = chunks - len(done)
    if done:
        log(f"resuming {output}: {len(done)} of {chunks} chunk(s) already written, {todo} to write")
    statuses = []
    if todo:
        rows = spark.read.parquet(str(output / "products.parquet")).where(~F.col("chunk").isin(done))
        shared = spark.sparkContext.broadcast(rules)  # sent once per executor
        write = functools.partial(
            write_chunks, source=source, name=name, rules=shared, job=job, output=str(output.resolve())
        )
        spread = rows.repartitionByRange(min(partitions or todo, todo), "chunk").sortWithinPartitions("chunk", "row")
        statuses = [row.asDict() for row in spread.mapInPandas(write, STATUS_SCHEMA).collect()]
    summary = {
        **_summary(output, statuses, done, started),
        "formula_cells": formulas[:SHOWN_PROBLEMS],
        # What a worker gets before it writes: the rules sent once per executor, the model folder it reads.
        "rules_broadcast_mib": round(len(pickle.dumps(rules)) / 2**20, 2),
        "model_folder_mib": round(sum(f.stat().st_size for f in Path(source).rglob("*") if f.is_file()) / 2**20, 1),
    }
    if csv:
        write_csv(output)
    return summary


def _column(output: Path, kind: str, *columns: str):
    """``columns`` of every row of the ``kind`` files, file by file (never all in memory)."""
    for path in _chunk_files(output, kind):
        table = pq.read_table(path, columns=list(columns))
        yield from zip(*(table.column(c).to_pylist() for c in columns))


def _cells(records: list[dict], columns: list[str]) -> list[list]:
    """Parquet rows back to the CSV's cells: likelihoods with 4 decimals, empty where null."""
    return [["" if r[c] is None else f"{r[c]:.4f}" if c == "likelihood" else r[c] for c in columns] for r in records]


def _summary(output: Path, statuses: list[dict], done: list[int], started: float) -> dict:
    """What :func:`generate_catalog` sums up, from the chunk files, with each worker's pid, chunks,
    writing seconds, model load seconds and peak memory."""
    skipped = sorted(_column(output, "skipped", "row", "reason"))
    workers = {}
    for status in statuses:
        worker = workers.setdefault(
            status["worker_pid"], {"chunks": 0, "writing_seconds": 0.0, "model_load_seconds": 0.0, "peak_rss_mib": 0.0}
        )
        worker["chunks"] += 1
        worker["writing_seconds"] = round(worker["writing_seconds"] + status["seconds"], 2)
        worker["model_load_seconds"] = round(max(worker["model_load_seconds"], status["model_load_seconds"]), 2)
        worker["peak_rss_mib"] = round(max(worker["peak_rss_mib"], status["peak_rss_mib"]), 1)
    written = [s for s in statuses if s["written"]]
    seconds = time.perf_counter() - started
    totals = catalog_totals(
        _column(output, "ads", "row", "ad"), (r for (r,) in _column(output, "candidates", "rejected_by"))
    )
    products_done = sum(s["products"] - s["skipped"] for s in written)
    ads_written = sum(s["ads_passed"] for s in written)
    return {
        "engine": "spark",
        "products": totals["products_written"],
        "bad_rows": len(skipped),
        "problems": [{"row": row, "reason": reason} for row, reason in skipped[:SHOWN_PROBLEMS]],
        "products_done": products_done,
        "resumed_from": totals["products_written"] - products_done,
        "resumed_chunks": len(done),
        "chunks_written": len(written),
        "ads_written": ads_written,
        "seconds": round(seconds, 2),
        "ads_per_second": round(ads_written / seconds, 2) if seconds else 0.0,
        "workers": [{"pid": pid, **worker} for pid, worker in workers.items()],
        "output": str(output),
        **totals,
    }


def write_csv(output) -> list[Path]:
    """``ads.csv``, ``ads.csv.candidates.csv`` and ``ads.csv.skipped.csv`` (when a row was skipped)
    in ``output``: the bytes ``adgen generate --output ads.csv`` writes for the same products."""
    output = Path(output)
    written = []
    for name, kind, columns in zip(CSV_FILES, ("ads", "candidates"), (COLUMNS, CANDIDATE_COLUMNS)):
        target = output / name
        staged = target.with_name(f".{name}.tmp")
        with open(staged, "w", newline="", encoding="utf-8") as file:
            file.write(csv_text([columns]))
            for path in _chunk_files(output, kind):  # chunk by chunk: never all in memory
                file.write(csv_text(_cells(pq.read_table(path).to_pylist(), columns)))
        os.replace(staged, target)
        written.append(target)
    skipped = sorted(_column(output, "skipped", "row", "reason"))
    target = output / CSV_FILES[2]
    target.unlink(missing_ok=True)
    if skipped:
        target.write_text(csv_text([SKIPPED_COLUMNS, *skipped]), encoding="utf-8")
        written.append(target)
    return written


def ads_for_dataframe(df: DataFrame, model: AdModel, rules: AdRules, job: CatalogJob | None = None) -> DataFrame:
    """The ads of a Spark DataFrame of products (``brand``, ``product``, optional ``category``,
    ``keywords`` and ``row``), for a PySpark job of your own: one row per product and ad number with
    the ads file's columns, and one row with ``reason`` per product skipped. Rows are numbered (and
    cut into chunks) in the DataFrame's order, so an ordered DataFrame gives the ads of ``adgen
    generate`` on its rows in that order; for a job that resumes, use :func:`generate_on_spark`."""
    job = job or CatalogJob()
    source, name = _model_of(model)
    spark = df.sparkSession
    schema = T.StructType([*df.schema.fields, T.StructField("_position", T.LongType())])
    positioned = spark.createDataFrame(df.rdd.zipWithIndex().map(lambda pair: (*pair[0], pair[1])), schema)
    if "row" not in df.columns:
        positioned = positioned.withColumn("row", F.col("_position") + 2)
    positioned = positioned.withColumn("chunk", (F.col("_position") / job.chunk_products).cast("long"))
    for column in ("category", "keywords"):
        if column not in df.columns:
            positioned = positioned.withColumn(column, F.lit(None).cast("string"))
    rows = functools.partial(
        _rows_of_chunks, source=source, name=name, rules=spark.sparkContext.broadcast(rules), job=job
    )
    chunks = positioned.select("row", "chunk", "brand", "product", "category", "keywords")
    return chunks.repartitionByRange("chunk").sortWithinPartitions("chunk", "row").mapInPandas(rows, ROWS_SCHEMA)
