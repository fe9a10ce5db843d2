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
from adgen_utils.errors import CorpusFormatError
from adgen_utils.models import Decoding, Refusal
from adgen_utils.spreadsheet import restore
from adgen_utils.study.footing import load_ad_model

# The default sampling preset with short ads, to keep the tests fast.
LONG_KEYWORD = "Stainless Steel Mesh Loop Strap With Magnetic Closure And Quick Release Pins"
FAST = Decoding(do_sample=True, temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.2, max_new_tokens=8)


def main(argv):
    """The adgen command (imported when a test runs it)."""
    from adgen_utils.apps.cli import main as adgen

    return adgen(argv)


def write_products(write_file, n, name="products.csv", extra_lines=()):
    """brand,product,category with ``n`` good rows (every other one with a category), then ``extra_lines``."""
    lines = ["brand,product,category"]
    lines += [f"Brand{i},Widget {i},{'tv' if i % 2 else ''}" for i in range(n)]
    return write_file(name, "\n".join([*lines, *extra_lines]) + "\n")


def read_ads(path):
    """The rows of a CSV adgen generate wrote, every cell as it was before it was made spreadsheet-safe."""
    with open(path, newline="", encoding="utf-8") as file:
        return [{key: restore(value) for key, value in row.items()} for row in csv.DictReader(file)]


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


def test_generate_catalog_writes_every_product_once(write_file, tmp_path, tiny_model, rules):
    path = write_products(write_file, 11, extra_lines=['Anker,"Power, Bank ""20K""",chargers', "Sony,TV", ","])
    output = tmp_path / "ads.csv"
    summary = generate_catalog(
        tiny_model,
        path,
        output,
        rules,
        per_product=2,
        candidates=3,
        decoding=FAST,
        batch_size=6,
        progress=False,
        log=None,
    )
    rows = read_ads(output)
    assert len(rows) == 24 and sorted(set(pairs(rows))) == sorted(pairs(rows))
    assert set(pairs(rows)) == {(r, n) for r in range(2, 14) for n in (1, 2)}
    assert len(output.read_text(encoding="utf-8").splitlines()) == 25  # one line per ad, even with commas/quotes
    products, _ = read_products(path)
    prompts = dict(zip(products["row"], products["prompt"]))
    for row in rows:
        assert row["model"] == tiny_model.name
        if row["ad"]:
            assert row["ad"].startswith(prompts[int(row["row"])]) and float(row["likelihood"]) < 0, row
        else:  # no candidate passed every rule: the row says which rules rejected how many
            assert row["likelihood"] == "" and "rejected" in row["rejected"], row
    assert {r["category"] for r in rows if r["row"] == "3"} == {"tv"}
    assert {r["category"] for r in rows if r["row"] == "2"} == {""}
    assert summary["products"] == 12 and summary["bad_rows"] == 2
    assert summary["products_done"] == summary["products_written"] == 12 and summary["resumed_from"] == 0
    assert summary["products_with_ad"] == len({r["row"] for r in rows if r["ad"]})
    assert summary["passing_share"] == round(summary["products_with_ad"] / 12, 4)
    assert summary["ads_written"] == sum(1 for r in rows if r["ad"])
    assert [p["row"] for p in summary["problems"]] == [14, 15]
    candidates = read_ads(tmp_path / "ads.csv.candidates.csv")
    assert len(candidates) == 36 and {(int(c["row"]), int(c["candidate"])) for c in candidates} == {
        (r, n) for r in range(2, 14) for n in (1, 2, 3)
    }
    for candidate in candidates:  # every candidate says whether it passed and, if not, which rule and why
        assert bool(candidate["rejected_by"]) == bool(candidate["why"])
        if candidate["ad_number"]:  # kept: it passed every rule and was scored
            assert not candidate["rejected_by"] and float(candidate["likelihood"]) < 0
        if candidate["rejected_by"] and candidate["rejected_by"] != "repeat":
            assert candidate["likelihood"] == "" and candidate["ad_number"] == ""
    rejected = sum(len(c["rejected_by"].split(" + ")) for c in candidates if c["rejected_by"])
    assert sum(summary["rejected_candidates"].values()) == rejected
    kept = {(int(c["row"]), int(c["ad_number"])): c["ad"] for c in candidates if c["ad_number"]}
    assert kept == {(int(r["row"]), int(r["ad_number"])): r["ad"] for r in rows if r["ad"]}
    skipped = read_ads(tmp_path / "ads.csv.skipped.csv")
    assert [r["row"] for r in skipped] == ["14", "15"] and "wrong number of fields" in skipped[0]["reason"]
    settings = json.loads((tmp_path / "ads.csv.json").read_text())
    assert settings["per_product"] == 2 and settings["candidates"] == 3 and settings["max_chars"] == rules.max_chars


def test_formula_like_input_is_reported_and_every_cell_written_safe(write_file, tmp_path, tiny_model, rules):
    path = write_file(
        "products.csv",
        'brand,product,category\n"=HYPERLINK(""http://x"",""y"")",Widget,tv\nAcme,@Gadget,+cat\nSony,TV Remote,tv\n',
    )
    output = tmp_path / "ads.csv"
    summary = generate_catalog(
        tiny_model, path, output, rules, per_product=1, candidates=2, decoding=FAST, progress=False, log=None
    )
    assert summary["formula_cells"] == [
        {"row": 2, "field": "brand"},
        {"row": 3, "field": "product"},
        {"row": 3, "field": "category"},
    ]
    for written in (output, tmp_path / "ads.csv.candidates.csv"):
        with open(written, newline="", encoding="utf-8") as file:
            cells = [cell for row in csv.reader(file) for cell in row]
        assert cells and not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], written
    rows = read_ads(output)  # read back, the cells are the input's own
    assert rows[0]["brand"] == '=HYPERLINK("http://x","y")' and rows[1]["product"] == "@Gadget"
    assert rows[1]["category"] == "+cat"


def test_an_interrupted_run_resumes_without_duplicates_or_losses(write_file, tmp_path, tiny_model, rules):
    path = write_products(write_file, 12)
    output = tmp_path / "ads.csv"
    settings = dict(per_product=2, candidates=2, decoding=FAST, batch_size=10, progress=False, log=None)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C during the 3rd batch of 5 products
        generate_catalog(Wrapped(tiny_model, calls=2), path, output, rules, **settings)
    first = read_ads(output)
    assert len(first) == 20
    lines = output.read_bytes().splitlines(keepends=True)
    output.write_bytes(b"".join(lines[:-1]) + b"11,Brand9,Widget 9,tv,2,Brand9 Wid")  # product 11 cut short, torn
    summary = generate_catalog(tiny_model, path, output, rules, **settings)
    assert output.read_bytes().endswith(b"\n") and b"Brand9 Wid\r" not in output.read_bytes()
    rows = read_ads(output)
    assert sorted(pairs(rows)) == sorted({(r, n) for r in range(2, 14) for n in (1, 2)})
    # The batch of products 7-11 was cut short: it is written again whole, with the same seed and ads.
    assert rows[:20] == first
    assert summary["resumed_from"] == 5 and summary["products_done"] == 7 and summary["products_written"] == 12
    assert len(read_ads(tmp_path / "ads.csv.candidates.csv")) == 24  # every product's candidates once
    # With the same batch size, seeds follow the products: the same ads as a run never interrupted.
    generate_catalog(tiny_model, path, tmp_path / "whole.csv", rules, **settings)
    assert read_ads(tmp_path / "whole.csv") == rows
    assert read_ads(tmp_path / "whole.csv.candidates.csv") == read_ads(tmp_path / "ads.csv.candidates.csv")


def generate_arguments(model, products, output, per_product: int, **options) -> list[str]:
    """``adgen generate`` arguments: 8 new tokens, 2 candidates, no progress bar, ``options`` as
    ``--name value``, the rules fitted on the embedded corpus (the default for a model outside a run)."""
    arguments = ["generate", "--model", str(model), "--input", str(products), "--output", str(output)]
    arguments += ["--per-product", str(per_product), "--max-new-tokens", "8", "--candidates", "2", "--no-progress"]
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
    deadline = time.monotonic() + 90
    try:
        while not (output.exists() and output.read_bytes().count(b"\n") >= 1 + 4):  # the header and one batch
            assert process.poll() is None, process.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "no batch written within 90 s"
            time.sleep(0.01)
        assert process.poll() is None, "the run finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    content = output.read_bytes()
    kept = (content[: content.rfind(b"\n") + 1].count(b"\n") - 1) // 4  # batches (of 2 products) written whole
    killed = read_ads(output)[: 4 * kept]
    assert 0 < kept < 20
    assert main(arguments) == 0  # the same command again, in this process (a second start costs ~10 s)
    summary = json.loads(capsys.readouterr().out)
    rows = read_ads(output)
    assert sorted(pairs(rows)) == sorted({(r, n) for r in range(2, 42) for n in (1, 2)})
    assert rows[: 4 * kept] == killed
    assert summary["resumed_from"] == 2 * kept and summary["products_written"] == 40


def test_other_settings_need_overwrite(write_file, tmp_path, tiny_model, tiny_folder, rules, capsys):
    path = write_products(write_file, 3)
    output = tmp_path / "ads.csv"
    settings = dict(candidates=2, decoding=FAST, progress=False, log=None)
    generate_catalog(tiny_model, path, output, rules, per_product=2, **settings)
    with pytest.raises(FileExistsError, match="per_product.*overwrite"):
        generate_catalog(tiny_model, path, output, rules, per_product=3, **{**settings, "candidates": 3})
    assert len(read_ads(output)) == 6  # untouched
    command = generate_arguments(tiny_folder, path, output, per_product=1)
    assert main(command) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*command, "--overwrite"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["resumed_from"] == 0 and summary["products_written"] == 3
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


def test_a_refused_prompt_is_reported_not_fatal_and_ads_stay_one_line(write_file, tmp_path, tiny_model, rules):
    path = write_products(write_file, 2, extra_lines=["Refused,Thing,", "Tricky,Thing,"])
    output = tmp_path / "ads.csv"
    summary = generate_catalog(
        Picky(tiny_model), path, output, rules, per_product=1, candidates=1, decoding=FAST, progress=False, log=None
    )
    assert summary["bad_rows"] == 1 and summary["problems"][0]["row"] == 4
    assert "no known words" in summary["problems"][0]["reason"]
    rows = read_ads(output)
    assert pairs(rows) == [(2, 1), (3, 1), (5, 1)]
    assert rows[-1]["ad"] == 'Tricky Thing, "quoted"'
    assert read_ads(tmp_path / "ads.csv.skipped.csv") == [{"row": "4", "reason": summary["problems"][0]["reason"]}]


def test_an_lstm_refuses_products_it_knows_no_word_of_and_writes_the_rest(write_file, tmp_path, lstm_folder, rules):
    """A real word-level LSTM (trained on Apple/Sony/Fitbit/Garmin ads): a product with none of its words
    is skipped with the model's reason; categories in the file are not given to it (it reads none)."""
    model = load_ad_model(lstm_folder, name="lstm")
    path = write_file(
        "products.csv", "brand,product,category\nSony,TV Remote,tv\nQwzx,Vbnm Plork,tv\nGarmin,Zqxw Band,\n"
    )
    output = tmp_path / "ads.csv"
    greedy = Decoding(max_new_tokens=4)
    summary = generate_catalog(
        model, path, output, rules, per_product=1, candidates=1, decoding=greedy, batch_size=2, progress=False, log=None
    )
    assert summary["products"] == 2 and summary["bad_rows"] == 1 and summary["products_done"] == 2
    (problem,) = summary["problems"]
    assert (
        problem["row"] == 3
        and problem["reason"] == f"the model refuses the prompt: {model.refusal('Qwzx Vbnm Plork').reason}"
    )
    assert read_ads(tmp_path / "ads.csv.skipped.csv") == [{"row": "3", "reason": problem["reason"]}]
    rows = read_ads(output)
    assert pairs(rows) == [(2, 1), (4, 1)] and rows[0]["category"] == "tv"
    written = model.generate(["Sony TV Remote"], greedy)[0]  # greedy: what the model writes alone
    assert rows[0]["ad"] == rules.cut(written, "Sony TV Remote", written.complete) and rows[0]["ad"]
    settings = json.loads((tmp_path / "ads.csv.json").read_text())
    assert settings["model_path"] == model.describe().source == str(lstm_folder.resolve())


def test_keywords_are_read_checked_and_every_kept_ad_carries_them(write_file, tmp_path, tiny_model, rules):
    many = "; ".join(f"fact {i}" for i in range(9))
    path = write_file(
        "products.csv",
        "brand,product,category,keywords\n"
        "Acme,Watch Band,,44mm; Black ;;black\n"  # repeats and empty phrases left out
        "Acme,TV Remote,tv,\n"  # no keywords: none required
        f'Acme,Charger,,"{many}"\n'  # more than MAX_KEYWORDS
        f"Acme,Cable,,{'x' * 250}\n"  # a keyword longer than a field may be
        "Acme,Stand,,=1+1\n"  # a formula-like cell
        f"Acme,Loop,,{LONG_KEYWORD}\n",  # more words than the 8 new tokens can hold
    )
    products, bad = read_products(path)
    assert products["keywords"].tolist() == [("44mm", "Black"), (), ("=1+1",), (LONG_KEYWORD,)]
    assert [(b["row"], b["reason"].split(",")[0]) for b in bad] == [
        (4, "9 keywords"),
        (5, "a keyword longer than 200 characters (250)"),
    ]
    output = tmp_path / "ads.csv"
    summary = generate_catalog(
        tiny_model,
        path,
        output,
        rules,
        per_product=1,
        candidates=4,
        decoding=FAST,
        batch_size=8,
        progress=False,
        log=None,
    )
    assert summary["formula_cells"] == [{"row": 6, "field": "keywords"}]
    rows = {r["row"]: r for r in read_ads(output)}
    assert rows["2"]["keywords"] == "44mm; Black" and rows["3"]["keywords"] == ""
    for row in rows.values():  # an ad kept carries every keyword, case aside
        for keyword in filter(None, row["keywords"].split("; ")):
            assert not row["ad"] or keyword.lower() in row["ad"].lower()
    candidates = read_ads(tmp_path / "ads.csv.candidates.csv")
    assert not [c for c in candidates if c["row"] == "2" and "missing keyword" in c["rejected_by"]]  # written in
    dropped = [c for c in candidates if c["row"] == "7"]
    assert rows["7"]["ad"] == "" and all(f"lacks '{LONG_KEYWORD}'" in c["why"] for c in dropped)  # named
    assert output.read_text(encoding="utf-8").count("'=1+1") == 1  # written spreadsheet-safe


def test_the_format_sets_the_length_and_is_recorded(write_file, tmp_path, tiny_folder, capsys):
    path = write_products(write_file, 3)
    output = tmp_path / "headlines.csv"
    common = ["generate", "--model", str(tiny_folder), "--input", str(path), "--output", str(output)]
    common += ["--per-product", "1", "--candidates", "3", "--max-new-tokens", "8", "--no-progress"]
    assert main([*common, "--format", "google-headline"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["products_written"] == 3
    assert all(len(r["ad"]) <= 30 for r in read_ads(output))
    settings = json.loads((tmp_path / "headlines.csv.json").read_text())
    assert (settings["format"], settings["max_chars"]) == ("google-headline", 30)
    assert main([*common, "--format", "amazon-title"]) == 2  # another format: not mixed into the same file
    assert "format" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*common, "--format", "facebook-post"])
