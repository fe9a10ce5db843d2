"""adgen generate on Spark: the ads of one process, cell for cell, on any number of partitions and
workers; resumable by chunk after a real kill; bad rows counted (a real local Spark, Java 17, the
real tiny transformer and a real word-level LSTM)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from adgen_utils.apps.catalog import CatalogJob, generate_catalog
from adgen_utils.errors import EngineUnavailable
from adgen_utils.models import Decoding
from adgen_utils.spreadsheet import restore
from adgen_utils.study.footing import load_ad_model

spark_module = pytest.importorskip("adgen_utils.apps.spark", exc_type=EngineUnavailable)

FAST = Decoding(do_sample=True, temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.2, max_new_tokens=8)
JOB = CatalogJob(per_product=2, candidates=4, decoding=FAST, batch_size=8, seed=5, chunk_products=3)
CSV_FILES = ("ads.csv", "ads.csv.candidates.csv", "ads.csv.skipped.csv")
# Keywords, a formula-like cell, rows with and without a category, a malformed row and an empty one.
PRODUCTS = "\n".join(
    [
        "brand,product,category,keywords",
        *(f"Brand{i},Widget {i},{'tv' if i % 2 else ''},{'44mm; Black' if i % 3 == 0 else ''}" for i in range(13)),
        '"Acme,Stand,,',  # malformed quoting
        "=HYPERLINK(1),Charger,,",
        ",,,",  # empty brand and product
        "Acme,Watch Band,watch,=1+1",
    ]
)


@pytest.fixture(scope="module")
def spark():
    session = spark_module.spark_session("local[2]", progress=False)
    yield session
    session.stop()


def one_process(model, products, folder, rules, job=JOB):
    """What adgen generate writes in one process: the folder holding its CSV files."""
    folder.mkdir(parents=True, exist_ok=True)
    options = {k: getattr(job, k) for k in ("per_product", "candidates", "decoding", "batch_size", "seed")}
    generate_catalog(
        model,
        products,
        folder / "ads.csv",
        rules,
        chunk_products=job.chunk_products,
        progress=False,
        log=None,
        **options,
    )
    return folder


def same_bytes(left, right) -> bool:
    return all(
        (left / name).exists() == (right / name).exists()
        and (not (left / name).exists() or (left / name).read_bytes() == (right / name).read_bytes())
        for name in CSV_FILES
    )


def cells(path):
    """A CSV file of adgen's as rows of cells, each as it was before it was made spreadsheet-safe."""
    import csv

    with open(path, newline="", encoding="utf-8") as file:
        return [[restore(cell) for cell in row] for row in csv.reader(file)][1:]


def test_spark_writes_the_ads_of_one_process_on_any_partitions(write_file, tmp_path, spark, tiny_model, rules):
    products = write_file("products.csv", PRODUCTS + "\n")
    plain = one_process(tiny_model, products, tmp_path / "plain", rules)
    assert len(cells(plain / "ads.csv")) == 2 * 15 and len(cells(plain / "ads.csv.skipped.csv")) == 2
    for partitions in (None, 1, 4):
        out = tmp_path / f"spark-{partitions}"
        summary = spark_module.generate_on_spark(
            spark, tiny_model, products, out, rules, JOB, csv=True, partitions=partitions, log=None
        )
        assert same_bytes(plain, out), partitions
        assert summary["products_written"] == 15 and summary["bad_rows"] == 2 and summary["chunks_written"] == 5
        assert summary["formula_cells"] == [{"row": 16, "field": "brand"}, {"row": 18, "field": "keywords"}]
    # The Parquet files hold the same cells, typed: numbers as numbers, no spreadsheet quote.
    ads = pd.concat(pd.read_parquet(p) for p in sorted((out / "ads").glob("chunk-*.parquet")))
    assert ads["row"].dtype == "int64" and ads["likelihood"].dtype == "float64"
    assert ads["keywords"].iloc[-1] == "=1+1" and (out / "ads.csv").read_text().count("'=1+1") == 2
    expected = [
        [int(r[0]), *r[1:5], int(r[5]), r[6], float(r[7]) if r[7] else None, *r[8:]] for r in cells(plain / "ads.csv")
    ]
    got = [[None if pd.isna(v) else v for v in row] for row in ads.astype(object).values.tolist()]
    assert got == expected
    # Another chunk size changes which products share a batch, in both engines alike.
    job = CatalogJob(**{**JOB.__dict__, "chunk_products": 7})
    plain7 = one_process(tiny_model, products, tmp_path / "plain7", rules, job)
    spark_module.generate_on_spark(spark, tiny_model, products, tmp_path / "spark7", rules, job, csv=True, log=None)
    assert same_bytes(plain7, tmp_path / "spark7")
    # A rerun with other settings is refused, and allowed to start over with overwrite.
    other = CatalogJob(**{**JOB.__dict__, "seed": 6})
    with pytest.raises(FileExistsError, match="seed"):
        spark_module.generate_on_spark(spark, tiny_model, products, out, rules, other, log=None)
    (out / "notes.txt").write_text("the user's own file")
    again = spark_module.generate_on_spark(spark, tiny_model, products, out, rules, other, overwrite=True, log=None)
    assert again["chunks_written"] == 5 and again["resumed_chunks"] == 0 and again["resumed_from"] == 0
    assert (out / "notes.txt").exists() and not (out / "ads.csv").exists()  # overwrite removes adgen's files only
    # A folder of other files, or a file, is never written into, overwrite or not.
    with pytest.raises(FileExistsError, match="other files than adgen's"):
        spark_module.generate_on_spark(spark, tiny_model, products, tmp_path, rules, JOB, overwrite=True, log=None)
    with pytest.raises(FileExistsError, match="is a file"):
        spark_module.generate_on_spark(spark, tiny_model, products, products, rules, JOB, log=None)


def test_a_users_dataframe_gets_the_ads_of_one_process(tmp_path, spark, tiny_model, rules):
    frame = pd.DataFrame(
        {
            "brand": ["Sony", "Apple", "", "Garmin", "Fitbit"],
            "product": ["TV Remote", "Watch Band", "", "Watch Band", "Charge 4 Band"],
            "keywords": ["", "44mm", "", None, "Black; Small"],
        }
    )
    path = tmp_path / "products.csv"
    frame.to_csv(path, index=False)
    plain = one_process(tiny_model, path, tmp_path / "plain", rules)
    rows = spark_module.ads_for_dataframe(spark.createDataFrame(frame), tiny_model, rules, JOB).toPandas()
    written = rows[rows["reason"].isna()].sort_values(["row", "ad_number"])
    expected = [(int(r[0]), int(r[5]), r[6]) for r in cells(plain / "ads.csv")]  # row, ad number, ad
    assert [(int(r), int(n), ad) for r, n, ad in written[["row", "ad_number", "ad"]].values.tolist()] == expected
    assert rows.loc[rows["reason"].notna(), ["row", "reason"]].values.tolist() == [[4, "empty brand and product"]]


def test_bad_rows_are_counted_not_fatal(tmp_path, spark, lstm_folder, rules):
    """A Parquet catalog with every kind of bad row, and a real LSTM that refuses a product it knows no
    word of: the job writes the rest and gives each skipped row its reason."""
    model = load_ad_model(lstm_folder, name="lstm")
    products = tmp_path / "products.parquet"
    pd.DataFrame(
        {
            "brand": ["Sony", "", "Acme", "Acme", "Acme", "Qwzx", "Garmin"],
            "product": ["TV Remote", "", "Watch", "Band\nStrap", "Cable", "Vbnm Plork", "Watch Band"],
            "keywords": [None, None, "x" * 250, None, ";".join(f"k{i}" for i in range(9)), None, "Band"],
        }
    ).to_parquet(products)
    job = CatalogJob(per_product=1, candidates=2, decoding=Decoding(max_new_tokens=4), batch_size=2, chunk_products=2)
    summary = spark_module.generate_on_spark(spark, model, products, tmp_path / "out", rules, job, csv=True, log=None)
    skipped = cells(tmp_path / "out" / "ads.csv.skipped.csv")
    assert [(int(row), reason.split(" (")[0]) for row, reason in skipped] == [
        (3, "empty brand and product"),
        (4, "a keyword longer than 200 characters"),
        (5, "line break inside product"),
        (6, "9 keywords, more than 8: give the facts every ad must carry"),
        (7, f"the model refuses the prompt: {model.refusal('Qwzx Vbnm Plork').reason}".split(" (")[0]),
    ]
    assert summary["products_written"] == 2 and summary["bad_rows"] == 5
    assert [int(r[0]) for r in cells(tmp_path / "out" / "ads.csv")] == [2, 8]
    # Lake tables hold keywords as lists and nulls as nulls: read as the texts a CSV would hold.
    listed = {"brand": "Acme", "product": None, "category": float("nan"), "keywords": np.array(["44mm", "Black"])}
    assert spark_module.raw_fields(listed) == {"brand": "Acme", "product": "", "category": "", "keywords": "44mm;Black"}


def adgen(arguments, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "adgen_utils.apps.cli", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def test_a_killed_job_reruns_only_the_chunks_it_had_not_written(write_file, tmp_path, tiny_folder, tiny_model, rules):
    """A real local[2] job from the command line, killed (driver, JVM and workers) once its first chunks
    are written, then run again: the chunks written before are kept as they are, the rest are written,
    and the whole equals one process's output, no product lost or repeated."""
    products = write_file("products.csv", "brand,product\n" + "".join(f"Brand{i},Widget {i}\n" for i in range(60)))
    out = tmp_path / "out"
    arguments = ["generate", "--engine", "spark", "--master", "local[2]", "--csv", "--no-progress"]
    arguments += ["--model", str(tiny_folder), "--input", str(products), "--output", str(out), "--chunk-products", "2"]
    arguments += [
        "--per-product",
        "2",
        "--candidates",
        "4",
        "--batch-size",
        "8",
        "--max-new-tokens",
        "8",
        "--seed",
        "5",
    ]
    arguments += ["--decoding", "sample temperature 0.8 top-k 50 top-p 0.95 rep 1.2"]
    process = adgen(arguments, start_new_session=True)
    deadline = time.monotonic() + 180
    try:
        while len(list((out / "ads").glob("chunk-*.parquet"))) < 2:
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no chunk written within 180 s"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)  # the driver, its JVM and the Python workers
    finally:
        process.kill()
        process.communicate()
    first = {p.name: p.stat().st_mtime_ns for p in (out / "ads").glob("chunk-*.parquet")}
    assert 2 <= len(first) < 30 and not (out / "ads.csv").exists()
    for path in (out / "ads").glob("chunk-*.parquet"):  # every visible chunk file is whole
        pq.read_metadata(path)
    again = adgen(arguments)
    stdout, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout)
    assert summary["resumed_chunks"] >= len(first) and summary["resumed_chunks"] + summary["chunks_written"] == 30
    assert {p: (out / "ads" / p).stat().st_mtime_ns for p in first} == first  # kept, not written again
    rows = cells(out / "ads.csv")
    assert [(int(r[0]), int(r[5])) for r in rows] == [(row, n) for row in range(2, 62) for n in (1, 2)]
    assert not list((out / "ads").glob(".*"))  # no temporary file left
    job = CatalogJob(**{**JOB.__dict__, "chunk_products": 2})
    assert same_bytes(one_process(tiny_model, products, tmp_path / "plain", rules, job), out)
    # local[1] from the command line, into another folder: the same bytes again.
    single = [
        *arguments[: arguments.index("--output") + 1],
        str(tmp_path / "single"),
        *arguments[arguments.index("--output") + 2 :],
    ]
    single[single.index("local[2]")] = "local[1]"
    run = adgen(single)
    assert run.communicate(timeout=600) and run.returncode == 0
    assert same_bytes(out, tmp_path / "single")


def test_without_java_the_error_names_the_package(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(EngineUnavailable, match="openjdk-17-jre-headless"):
        spark_module.require_java()
    from adgen_utils.apps.cli import main

    arguments = ["generate", "--engine", "spark", "--model", "tiny", "--input", "p.csv", "--output", str(tmp_path)]
    assert main(arguments) == 2
    assert "apt-get install openjdk-17-jre-headless" in capsys.readouterr().err
    old = tmp_path / "jdk" / "bin" / "java"
    old.parent.mkdir(parents=True)
    old.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\"' >&2\n")
    old.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    with pytest.raises(EngineUnavailable, match="Java 17 or later"):
        spark_module.require_java()
    shutil.rmtree(tmp_path / "jdk")


def test_without_pyspark_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # what a machine without the spark extra has
    monkeypatch.delitem(sys.modules, "adgen_utils.apps.spark")
    with pytest.raises(EngineUnavailable, match=r"pip install 'adgen\[spark\]'"):
        import adgen_utils.apps.spark  # noqa: F401


def test_local_workers_on_a_machine_with_gpus_claim_one_each(tmp_path):
    # What local[N] on Kaggle's 2 x T4 does: each Python worker takes a GPU no other worker holds.
    claims = [spark_module.claim_gpu(2, tmp_path) for _ in range(3)]
    assert claims == [0, 1, None]
    for lock in spark_module._CLAIMED[-2:]:  # a worker holds its GPU for its life; this test lets go
        lock.close()
    assert spark_module.claim_gpu(2, tmp_path) == 0
    spark_module._CLAIMED.pop().close()
