"""Spreadsheet-safe CSV: no cell that Excel, LibreOffice or Google Sheets would run as a formula.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading quote
(OWASP's CSV-injection advice; a plain signed number stays a number). :func:`neutralise` and
:func:`restore` are exact inverses."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP: characters that make a cell a formula
QUOTE = "'"
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")  # a signed number: a value, not a formula
LINE_END = "\r\n"  # RFC 4180; with "\n" alone, the csv module leaves a cell's lone "\r" unquoted


def is_formula_like(text: str) -> bool:
    """True when a spreadsheet would read ``text`` (a cell) as a formula: it starts with one of
    :data:`FORMULA_STARTS` and is not a plain number ("-15.6" is a number; "-2+3" a formula)."""
    return isinstance(text, str) and text.startswith(FORMULA_STARTS) and not NUMBER.fullmatch(text)


def _needs_quote(text: str) -> bool:
    return is_formula_like(text) or (text.startswith(QUOTE) and _needs_quote(text[1:]))


def neutralise(value):
    """``value`` as a safe cell: a string that starts like a formula (or like an already
    neutralised one) gets a leading single quote; anything else is returned unchanged."""
    if isinstance(value, str) and _needs_quote(value):
        return QUOTE + value
    return value


def restore(text: str) -> str:
    """The inverse of :func:`neutralise`: a cell as it was before writing."""
    if isinstance(text, str) and text.startswith(QUOTE) and _needs_quote(text[1:]):
        return text[1:]
    return text


def csv_text(rows: Iterable[Sequence]) -> str:
    """CSV lines for ``rows``, every cell through :func:`neutralise`. Lines end with ``\\r\\n``
    (RFC 4180), which also makes the csv module quote a cell holding a lone carriage return."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=LINE_END).writerows([neutralise(cell) for cell in row] for row in rows)
    return buffer.getvalue()


def formula_cells(frame: pd.DataFrame, columns: Sequence[str]) -> list[tuple[int, str]]:
    """``(position, column)`` of every cell among ``columns`` that starts like a formula: what the
    caller reports about an input file before writing it back safely."""
    return [
        (position, column)
        for column in columns
        if column in frame
        for position, value in enumerate(frame[column].tolist())
        if is_formula_like(value)
    ]


def to_csv(frame: pd.DataFrame, path: str | Path, index: bool = True) -> Path:
    """``frame.to_csv(path)`` with every text cell (and the index and column names) neutralised."""
    safe = frame.map(neutralise)
    safe.index = safe.index.map(neutralise)
    safe.columns = [neutralise(column) for column in safe.columns]
    safe.to_csv(path, index=index, lineterminator=LINE_END)
    return Path(path)


def read_csv(path: str | Path, **options) -> pd.DataFrame:
    """A CSV written by :func:`to_csv` or :func:`csv_text`, every text cell :func:`restore`\\ d;
    ``options`` go to ``pandas.read_csv`` (e.g. ``index_col=0``, ``keep_default_na=False``)."""
    frame = pd.read_csv(path, **options)
    frame = frame.map(restore)
    frame.index = frame.index.map(restore)
    frame.columns = [restore(column) for column in frame.columns]
    return frame
