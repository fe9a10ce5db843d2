"""adgen generate: a products CSV in, a resumable ads CSV out (real files, the real tiny transformer)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from adgen_utils.apps.catalog import generate_catalog, read_products
from adgen_utils.apps.cli import main
from adgen_utils.errors import CorpusFormatError
from adgen_utils.models import Decoding, Refusal, load_ad_model

# The default sampling preset with short ads, to keep the tests fast.
FAST = Decoding(do_sample=True, temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.2, max_new_tokens=8)


@pytest.fixture(scope="module")
def tiny_model(tiny_folder):
    return load_ad_model(tiny_folder)


def write_products(write_file, n, name="products.csv", extra_lines=()):
    """brand,product,category with ``n`` good rows (every other one with a category), then ``extra_lines``."""
    lines = ["brand,product,category"]
    lines += [f"Brand{i},Widget {i},{'tv' if i % 2 else ''}" for i in range(n)]
    return write_file(name, "\n".join([*lines, *extra_lines]) + "\n")


def read_ads(path):
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def pairs(rows):
    return [(int(r["row"]), int(r["ad_number"])) for r in rows]


class Wrapped:
    """The real model, with ``generate`` raising KeyboardInterrupt after ``calls`` calls (a Ctrl-C)."""

    def __init__(self, model, calls=10**9):
        self.model, self.calls = model, calls

    def __getattr__(self, name):
        return getattr(self.model, name)

    def generate(self, *args, **kwargs):
        self.calls -= 1
        if self.calls < 0:
            raise KeyboardInterrupt
        return self.model.generate(*args, **kwargs)


def test_read_products_keeps_good_rows_and_reports_each_bad_one(write_file):
    raw = (
        b"Brand , PRODUCT,Category,price\n"  # 1: header, any case, an extra column
        b"Sony,TV Remote,tv,10\n"  # 2
        b"Garmin,garmin  Watch\xe2\x80\x8b Band,,5\n"  # 3: brand not repeated, zero-width space, no category
        b"Sony,TV,tv\n"  # 4: 3 fields, the header has 4
        b"Bad\xff\xfeBrand,Thing,tv,1\n"  # 5: invalid UTF-8
        b", ,tv,1\n"  # 6: no brand, no product
        b"Acme," + b"x" * 5000 + b",tv,1\n"  # 7: a huge field
        b'Acme,"Wrapped\nTitle",tv,1\n'  # 8-9: a line break inside a quoted field
        b'"Anker","Power, Bank ""20K""",chargers,3\n'  # 10: commas and quotes, CSV-quoted
        b'Apple,"bad "quote,x,1\n'  # 11: malformed quoting
        b"\n"  # 12: blank, not a row
        b"Logitech,Mouse,,2\n"
    )  # 13
    products, bad = read_products(write_file("products.csv", raw))
    assert products["row"].tolist() == [2, 3, 10, 13]
    assert products["prompt"].tolist() == [
        "Sony TV Remote",
        "garmin Watch Band",
        'Anker Power, Bank "20K"',
        "Logitech Mouse",
    ]
    assert products["category"].tolist() == ["tv", None, "chargers", None]
    reasons = {b["row"]: b["reason"] for b in bad}
    assert sorted(reasons) == [4, 5, 6, 7, 8, 11]
    assert "wrong number of fields" in reasons[4]
    assert "invalid UTF-8" in reasons[5]
    assert reasons[6] == "empty brand and product"
    assert "longer than 200 characters" in reasons[7]
    assert "line break" in reasons[8]
    assert reasons[11] == "malformed quoting"


def test_a_file_without_a_product_column_or_header_is_a_clear_error(write_file):
    columns = r"no 'product' column; the columns are \['brand', 'name', 'category'\]"
    with pytest.raises(CorpusFormatError, match=columns):
        read_products(write_file("p.csv", "Brand,Name,Category\nSony,TV,tv\n"))
    with pytest.raises(CorpusFormatError, match="empty"):
        read_products(write_file("empty.csv", b""))


def test_generate_catalog_writes_every_ad_once(write_file, tmp_path, tiny_model):
    path = write_products(write_file, 11, extra_lines=['Anker,"Power, Bank ""20K""",chargers', "Sony,TV", ","])
    output = tmp_path / "ads.csv"
    summary = generate_catalog(
        tiny_model, path, output, per_product=2, decoding=FAST, batch_size=5, progress=False, log=None
    )
    rows = read_ads(output)
    assert len(rows) == 24 and sorted(set(pairs(rows))) == sorted(pairs(rows))
    assert set(pairs(rows)) == {(r, n) for r in range(2, 14) for n in (1, 2)}
    assert len(output.read_text(encoding="utf-8").splitlines()) == 25  # one line per ad, even with commas/quotes
    products, _ = read_products(path)
    prompts = dict(zip(products["row"], products["prompt"]))
    for row in rows:
        assert row["ad"].startswith(prompts[int(row["row"])]), row
        assert row["model"] == tiny_model.name
    assert {r["category"] for r in rows if r["row"] == "3"} == {"tv"}
    assert {r["category"] for r in rows if r["row"] == "2"} == {""}
    assert summary["products"] == 12 and summary["bad_rows"] == 2
    assert summary["ads_written"] == summary["ads_total"] == 24 and summary["resumed_from"] == 0
    assert [p["row"] for p in summary["problems"]] == [14, 15]
    assert summary["ads_per_second"] > 0
    skipped = read_ads(tmp_path / "ads.csv.skipped.csv")
    assert [r["row"] for r in skipped] == ["14", "15"] and "wrong number of fields" in skipped[0]["reason"]
    assert json.loads((tmp_path / "ads.csv.json").read_text())["per_product"] == 2


def test_an_interrupted_run_resumes_without_duplicates_or_losses(write_file, tmp_path, tiny_model):
    path = write_products(write_file, 12)
    output = tmp_path / "ads.csv"
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C during the 3rd batch
        generate_catalog(
            Wrapped(tiny_model, calls=2),
            path,
            output,
            per_product=2,
            decoding=FAST,
            batch_size=5,
            progress=False,
            log=None,
        )
    first = read_ads(output)
    assert len(first) == 10
    with open(output, "ab") as file:  # a kill in the middle of a write leaves a torn line
        file.write(b"4,Brand2,Widget 2,,1,Brand2 Wid")
    summary = generate_catalog(
        tiny_model, path, output, per_product=2, decoding=FAST, batch_size=5, progress=False, log=None
    )
    assert output.read_bytes().endswith(b"\n") and b"Brand2 Wid\n" not in output.read_bytes()
    rows = read_ads(output)
    assert sorted(pairs(rows)) == sorted({(r, n) for r in range(2, 14) for n in (1, 2)})
    assert rows[:10] == first
    assert summary["resumed_from"] == 10 and summary["ads_written"] == 14 and summary["ads_total"] == 24
    # With the same batch size, seeds follow the work items: the same ads as a run never interrupted.
    generate_catalog(
        tiny_model, path, tmp_path / "whole.csv", per_product=2, decoding=FAST, batch_size=5, progress=False, log=None
    )
    assert read_ads(tmp_path / "whole.csv") == rows


def generate_arguments(model, products, output, per_product: int, **options) -> list[str]:
    """``adgen generate`` arguments: 8 new tokens, no progress bar, ``options`` as ``--name value``."""
    arguments = ["generate", "--model", str(model), "--input", str(products), "--output", str(output)]
    arguments += ["--per-product", str(per_product), "--max-new-tokens", "8", "--no-progress"]
    for name, value in options.items():
        arguments += [f"--{name.replace('_', '-')}", str(value)]
    return arguments


def test_a_killed_command_resumes_to_a_complete_file(write_file, tmp_path, tiny_folder, capsys):
    path = write_products(write_file, 40)
    output = tmp_path / "ads.csv"
    arguments = generate_arguments(tiny_folder, path, output, per_product=2, batch_size=4)
    process = subprocess.Popen(
        [sys.executable, "-m", "adgen_utils.apps.cli", *arguments], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    try:
        while not (output.exists() and output.read_bytes().count(b"\n") >= 1 + 4):  # the header and one batch
            assert process.poll() is None, process.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "no batch written within 60 s"
            time.sleep(0.01)
        assert process.poll() is None, "the run finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    content = output.read_bytes()
    kept = content[: content.rfind(b"\n") + 1].count(b"\n") - 1  # complete lines, less the header
    killed = read_ads(output)[:kept]
    assert 0 < kept < 80
    assert main(arguments) == 0  # the same command again, in this process (a second start costs ~10 s)
    summary = json.loads(capsys.readouterr().out)
    rows = read_ads(output)
    assert sorted(pairs(rows)) == sorted({(r, n) for r in range(2, 42) for n in (1, 2)})
    assert rows[:kept] == killed
    assert summary["resumed_from"] == kept and summary["ads_total"] == 80


def test_other_settings_need_overwrite(write_file, tmp_path, tiny_model, tiny_folder, capsys):
    path = write_products(write_file, 3)
    output = tmp_path / "ads.csv"
    generate_catalog(tiny_model, path, output, per_product=2, decoding=FAST, progress=False, log=None)
    with pytest.raises(FileExistsError, match="per_product.*overwrite"):
        generate_catalog(tiny_model, path, output, per_product=3, decoding=FAST, progress=False, log=None)
    assert len(read_ads(output)) == 6  # untouched
    command = generate_arguments(tiny_folder, path, output, per_product=1)
    assert main(command) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*command, "--overwrite"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["resumed_from"] == 0 and summary["ads_total"] == 3
    assert sorted(pairs(read_ads(output))) == [(2, 1), (3, 1), (4, 1)]


class Picky(Wrapped):
    """Refuses prompts with "Refused"; writes a line break and CSV metacharacters into some ads."""

    def refusal(self, prompt, category=None):
        return Refusal("no known words") if "Refused" in prompt else self.model.refusal(prompt, category)

    def generate(self, prompts, *args, **kwargs):
        return [
            f'{p}, "quoted"\nsecond line' if "Tricky" in p else ad
            for p, ad in zip(prompts, self.model.generate(prompts, *args, **kwargs))
        ]


def test_a_refused_prompt_is_reported_not_fatal_and_ads_stay_one_line(write_file, tmp_path, tiny_model):
    path = write_products(write_file, 2, extra_lines=["Refused,Thing,", "Tricky,Thing,"])
    output = tmp_path / "ads.csv"
    summary = generate_catalog(Picky(tiny_model), path, output, per_product=1, decoding=FAST, progress=False, log=None)
    assert summary["bad_rows"] == 1 and summary["problems"][0]["row"] == 4
    assert "no known words" in summary["problems"][0]["reason"]
    rows = read_ads(output)
    assert pairs(rows) == [(2, 1), (3, 1), (5, 1)]
    assert rows[-1]["ad"] == 'Tricky Thing, "quoted"'
    assert read_ads(tmp_path / "ads.csv.skipped.csv") == [{"row": "4", "reason": summary["problems"][0]["reason"]}]


def test_an_lstm_refuses_products_it_knows_no_word_of_and_writes_the_rest(write_file, tmp_path, lstm_folder):
    """A real word-level LSTM (trained on Apple/Sony/Fitbit/Garmin ads): a product with none of its words
    is skipped with the model's reason; categories in the file are not given to it (it reads none)."""
    model = load_ad_model(lstm_folder, name="lstm")
    path = write_file(
        "products.csv", "brand,product,category\nSony,TV Remote,tv\nQwzx,Vbnm Plork,tv\nGarmin,Zqxw Band,\n"
    )
    output = tmp_path / "ads.csv"
    greedy = Decoding(max_new_tokens=4)
    summary = generate_catalog(
        model, path, output, per_product=1, decoding=greedy, batch_size=2, progress=False, log=None
    )
    assert summary["products"] == 2 and summary["bad_rows"] == 1 and summary["ads_written"] == 2
    (problem,) = summary["problems"]
    assert (
        problem["row"] == 3
        and problem["reason"] == f"the model refuses the prompt: {model.refusal('Qwzx Vbnm Plork').reason}"
    )
    assert read_ads(tmp_path / "ads.csv.skipped.csv") == [{"row": "3", "reason": problem["reason"]}]
    rows = read_ads(output)
    assert (
        pairs(rows) == [(2, 1), (4, 1)] and rows[0]["ad"].startswith("Sony TV Remote") and rows[0]["category"] == "tv"
    )
    assert rows[0]["ad"] == model.generate(["Sony TV Remote"], greedy)[0]  # greedy: what the model writes alone
    settings = json.loads((tmp_path / "ads.csv.json").read_text())
    assert settings["model_path"] == model.describe().source == str(lstm_folder.resolve())
