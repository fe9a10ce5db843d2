"""Spreadsheet-safe CSV: every dangerous first character neutralised, ordinary text unchanged, and
files that read back exactly as written."""

import csv

import pandas as pd
import pytest

from adgen_utils import spreadsheet

DANGEROUS = ['=HYPERLINK("http://x","y")', "+1+2", "-2+3", "@SUM(A1)", "\tTab", "\rReturn", "=1", "-", "-1-1", "+A1"]
ORDINARY = ["Apple Watch Band 38mm", "", 'Fintie Band, "Black"', "5-Pack", "a=b", "x+y", "'quoted'", "e-mail @home"]
ORDINARY += ["-15.634", "+3", "-1e-05", ".5"]  # plain numbers are values, not formulas


@pytest.mark.parametrize("cell", DANGEROUS)
def test_every_formula_start_gets_a_leading_quote(cell):
    assert spreadsheet.is_formula_like(cell)
    safe = spreadsheet.neutralise(cell)
    assert safe == "'" + cell and not spreadsheet.is_formula_like(safe)
    assert spreadsheet.restore(safe) == cell


@pytest.mark.parametrize("cell", ORDINARY)
def test_ordinary_text_is_never_changed(cell):
    assert not spreadsheet.is_formula_like(cell)
    assert spreadsheet.neutralise(cell) == cell and spreadsheet.restore(cell) == cell


def test_a_cell_that_looks_neutralised_already_round_trips_too():
    for cell in ["'=1", "''=1", "'+x"]:
        assert spreadsheet.restore(spreadsheet.neutralise(cell)) == cell
    assert spreadsheet.neutralise(3) == 3 and spreadsheet.neutralise(None) is None


def test_written_files_hold_no_formula_and_read_back_exactly(tmp_path):
    rows = [["brand", "ad"], *[[cell, f"{cell} ad"] for cell in DANGEROUS + ORDINARY]]
    path = tmp_path / "ads.csv"
    path.write_text(spreadsheet.csv_text(rows), encoding="utf-8")
    with open(path, newline="", encoding="utf-8") as file:
        written = list(csv.reader(file))
    assert not [cell for row in written for cell in row if spreadsheet.is_formula_like(cell)]
    assert [[spreadsheet.restore(cell) for cell in row] for row in written] == rows

    frame = pd.DataFrame(
        {"ad": DANGEROUS + ORDINARY, "n": range(len(DANGEROUS + ORDINARY))}, index=DANGEROUS + ORDINARY
    )
    frame.index.name = "prompt"
    spreadsheet.to_csv(frame, tmp_path / "frame.csv")
    with open(tmp_path / "frame.csv", newline="", encoding="utf-8") as file:
        assert not [cell for row in csv.reader(file) for cell in row if spreadsheet.is_formula_like(cell)]
    back = spreadsheet.read_csv(tmp_path / "frame.csv", index_col=0, keep_default_na=False)
    assert back["ad"].tolist() == frame["ad"].tolist() and back.index.tolist() == frame.index.tolist()
    assert back["n"].tolist() == frame["n"].tolist()


def test_formula_cells_of_an_input_are_found():
    frame = pd.DataFrame({"brand": ["Sony", "=cmd", "Acme"], "product": ["TV", "x", "@once"], "other": ["=", "", ""]})
    assert spreadsheet.formula_cells(frame, ["brand", "product", "missing"]) == [(1, "brand"), (2, "product")]
