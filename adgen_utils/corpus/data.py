"""Load, clean and split the Amazon ads corpus, accounting for every row.

:func:`load_ads` never crashes on a messy row and never drops one silently (:class:`LoadReport`);
:func:`split_ads` splits by a hash of :func:`product_key`, so variants of one product share a split."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from adgen_utils.errors import CorpusFormatError, CorpusUnavailable
from adgen_utils.layout import DATA_FOLDER, DATASET_FILE, REPORT_FILE, repository_root
from adgen_utils.settings import Corpus

TEXT_COLUMN = "ad"
CATEGORY_COLUMN = "category"
SPLITS = ("train", "validation", "test")
EMBEDDED_FILE = "amazon_tv_wearable_12k_holidays.csv"
KAGGLE_DATASET = "sachsene/amazons-advertisements"
FULL_CORPUS_ADS = 3_200_000  # ads in the full Kaggle corpus (40 categories), for projections
KAGGLE_URL = "https://www.kaggle.com/datasets/sachsene/amazons-advertisements"

# A quoted field that stays open longer than this is a runaway quote, not a wrapped title.
MAX_RECORD_LINES = 4
# Python's csv module refuses fields over 131,072 characters by default; the corpus has longer ones.
# Raised only while this module parses a record, so that importing it changes nothing process-wide.
LARGEST_FIELD = 2**31 - 1

_HEADER_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")
# An invalid UTF-8 byte, kept by decode_lines as a lone surrogate.
UNDECODABLE = re.compile("[\udc80-\udcff]")
_WHITESPACE = re.compile(r"\s+")
# Control and invisible format characters (zero-width space, BOM, bidi marks); not whitespace.
INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


@dataclass
class CleanConfig:
    """How rows are cleaned. Lengths are in characters after normalisation."""

    min_chars: int = Corpus.min_chars
    max_chars: int = Corpus.max_chars
    deduplicate: bool = True


@dataclass
class SplitConfig:
    """Fractions of products held out, and the salt of the split hash."""

    validation: float = Corpus.validation_fraction
    test: float = Corpus.test_fraction
    seed: int = Corpus.seed

    def __post_init__(self):
        if not (0 <= self.validation < 1 and 0 <= self.test < 1 and self.validation + self.test < 1):
            raise ValueError(
                f"validation ({self.validation}) and test ({self.test}) must be fractions in [0, 1) "
                "that leave some training data"
            )


@dataclass
class LoadReport:
    """What happened to every row read: ``rows_read == rows_kept + sum(dropped.values())``."""

    source: str
    files_read: int = 0
    rows_read: int = 0
    rows_kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    categories: dict = field(default_factory=dict)
    splits: dict = field(default_factory=dict)
    header_variants: dict = field(default_factory=dict)
    skipped_files: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """A JSON-ready dict; counters become plain dicts sorted by count."""
        out = asdict(self)
        for key in ("dropped", "repaired"):
            out[key] = dict(getattr(self, key).most_common())
        out["categories"] = dict(sorted(self.categories.items(), key=lambda kv: (-kv[1], kv[0])))
        out["seconds"] = round(self.seconds, 2)
        return out

    def check(self) -> None:
        """Raise if any row is unaccounted for."""
        dropped = sum(self.dropped.values())
        if self.rows_kept + dropped != self.rows_read:
            raise AssertionError(f"rows_read={self.rows_read} but kept {self.rows_kept} + dropped {dropped}")


# Finding the corpus ---


def embedded_data_path() -> Path:
    """Path of the CC0 corpus shipped in the repository's ``data/`` folder."""
    path = repository_root() / "data" / EMBEDDED_FILE
    if not path.exists():
        raise CorpusUnavailable(
            f"The embedded corpus {path} is missing. adgen_utils must be used from a clone "
            "of the repository (pip install -e .), not from a bare wheel."
        )
    return path


def download_full_corpus() -> Path:
    """Download the full 3.2M-ad corpus with kagglehub and return its folder."""
    try:
        import kagglehub
    except ImportError as error:
        raise CorpusUnavailable(
            "kagglehub is not installed: `pip install kagglehub`, or download the corpus from "
            f"{KAGGLE_URL} and pass its folder as the data source."
        ) from error
    try:
        return Path(kagglehub.dataset_download(KAGGLE_DATASET))
    except Exception as error:  # kagglehub raises many kinds when offline or unauthorised
        raise CorpusUnavailable(
            f"Could not download the Kaggle dataset {KAGGLE_DATASET} "
            f"({type(error).__name__}: {str(error)[:200]}). Without internet access, download it "
            f"on another machine from {KAGGLE_URL}, unzip it, and point at the folder: "
            "data_source='/path/to/amazons-advertisements' in a notebook, or "
            "`adgen data report /path/to/amazons-advertisements`."
        ) from error


def resolve_source(source: str | Path) -> Path:
    """Turn ``"embedded"``, ``"kaggle"`` or a path into an existing file or folder."""
    if str(source) == "embedded":
        return embedded_data_path()
    if str(source) == "kaggle":
        return download_full_corpus()
    path = Path(source).expanduser()
    if not path.exists():
        raise CorpusUnavailable(
            f"No such file or folder: {path}. The data source is 'embedded' (the shipped "
            "13k ads), 'kaggle' (download the full corpus) or a path to a CSV file or to a "
            "corpus folder of category folders."
        )
    return path


def category_of(path: Path, root: Path) -> str:
    """Category of a corpus file: its top folder under the root, else its name without ``amazon_``."""
    relative = path.relative_to(root) if root.is_dir() else Path(path.name)
    if len(relative.parts) > 1:
        return relative.parts[0]
    stem = path.stem
    return stem[len("amazon_") :] if stem.startswith("amazon_") else stem


def corpus_files(root: Path) -> list[tuple[Path, str]]:
    """All CSV files under ``root`` (or ``root`` itself), sorted, each with its category."""
    if root.is_file():
        return [(root, category_of(root, root))]
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() == ".csv")
    if not files:
        raise CorpusUnavailable(f"No .csv files under {root}.")
    return [(p, category_of(p, root)) for p in files]


# Reading one file ---


def decode_lines(raw: bytes) -> list[str]:
    """Physical lines of a file; invalid UTF-8 bytes become lone surrogates, not errors."""
    text = raw.decode("utf-8", errors="surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\n" not in text and "\r" in text:
        return text.split("\r")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _parse_csv_text(text: str) -> tuple[str, list[str]]:
    """Parse text as one CSV record: ("ok", fields), ("open", []) or ("malformed", [])."""
    usual_limit = csv.field_size_limit(LARGEST_FIELD)
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as error:
        return ("open" if "unexpected end of data" in str(error) else "malformed"), []
    finally:
        csv.field_size_limit(usual_limit)
    if len(rows) != 1:
        return "malformed", []
    return "ok", rows[0]


def csv_records(lines: Sequence[str], start: int, n_fields: int) -> Iterator[tuple[int, list[str] | None, str]]:
    """Yield ``(line_number, fields or None, note)`` per record from ``lines[start:]``.

    A quoted field may span MAX_RECORD_LINES lines; a runaway quote costs one row, not the rest of the file.
    ``note``: "", "joined_lines", "unterminated_quote" (repaired) or "malformed_quoting" (fields None)."""
    i = start
    while i < len(lines):
        line = lines[i]
        if '"' not in line:
            yield i + 1, (line.split(",") if n_fields > 1 else [line]), ""
            i += 1
            continue
        status, fields = _parse_csv_text(line)
        last = i
        text = line
        while status == "open" and last + 1 < len(lines) and last - i + 1 < MAX_RECORD_LINES:
            last += 1
            text += "\n" + lines[last]
            status, fields = _parse_csv_text(text)
        if status == "ok" and len(fields) == n_fields:
            yield i + 1, fields, ("joined_lines" if last > i else "")
            i = last + 1
            continue
        if n_fields == 1 and line.startswith('"') and _parse_csv_text(line)[0] == "open":
            yield i + 1, [line[1:].replace('""', '"')], "unterminated_quote"
        else:
            yield i + 1, None, "malformed_quoting"
        i += 1


def read_header(path: Path, expected: str = "") -> tuple[list[str], list[str]]:
    """A CSV file's column names, lower-cased, and its physical lines (the header first); a
    CorpusFormatError naming ``path`` when the first line is not a header (``expected`` ends its message)."""
    lines = decode_lines(Path(path).read_bytes())
    if not lines or not lines[0].strip():
        raise CorpusFormatError(f"{path}: the file is empty or starts with a blank line, not a header{expected}")
    status, fields = _parse_csv_text(lines[0])
    if status != "ok":
        raise CorpusFormatError(f"{path}: the first line is not a CSV header: {lines[0][:80]!r}")
    return [f.strip().strip('"').strip().lower() for f in fields], lines


def read_ads_file(
    path: Path, category: str, text_column: str = TEXT_COLUMN
) -> tuple[str, list[tuple[str | None, str, int, str]]]:
    """Read one CSV file: its header and ``(raw_text, category, line_number, note)`` per record
    (``raw_text`` None: unparseable). A one-column file's column is the ad whatever its name; a wider one
    needs ``text_column``. Raises :class:`CorpusFormatError` without a usable header."""
    columns, lines = read_header(path)
    if len(columns) == 1:
        if not _HEADER_NAME.fullmatch(columns[0]):
            raise CorpusFormatError(
                f"{path}: the first line {lines[0][:80]!r} does not look like a header. "
                f"Add a first line naming the column, e.g. '{text_column}'."
            )
        text_index, category_index = 0, None
    else:
        if text_column not in columns:
            raise CorpusFormatError(
                f"{path}: no '{text_column}' column; the columns are {columns}. "
                f"Rename the ad-text column to '{text_column}' or pass text_column=..."
            )
        text_index = columns.index(text_column)
        category_index = columns.index(CATEGORY_COLUMN) if CATEGORY_COLUMN in columns else None
    records = []
    for line_number, fields, note in csv_records(lines, 1, len(columns)):
        if fields is None:
            records.append((None, category, line_number, note))
            continue
        row_category = category
        if category_index is not None and fields[category_index].strip():
            row_category = fields[category_index].strip()
        records.append((fields[text_index], row_category, line_number, note))
    return lines[0], records


# Cleaning ---


def normalize_ad(text: str) -> str:
    """NFKC-normalise, remove invisible characters and collapse whitespace to single spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = INVISIBLE.sub("", text)
    return _WHITESPACE.sub(" ", text).strip()


def drop_reason(raw: str | None, note: str, clean: str, config: CleanConfig, header: str) -> str | None:
    """Why a record is left out (None: kept), the key of :attr:`LoadReport.dropped` it counts under.
    De-duplication is a separate step."""
    if raw is None:
        return note
    if UNDECODABLE.search(raw):
        return "invalid_utf8"
    if not clean:
        return "empty"
    if "\ufffd" in clean:
        return "replacement_character"
    if clean.lower() == header:
        return "repeated_header"
    if len(clean) < config.min_chars:
        return "too_short"
    if len(clean) > config.max_chars:
        return "too_long"
    return None


def load_ads(
    source: str | Path = "embedded",
    categories: Iterable[str] | None = None,
    clean: CleanConfig | None = None,
    split: SplitConfig | None = None,
    sample_size: int | None = None,
    seed: int = 0,
    text_column: str = TEXT_COLUMN,
    progress: bool = False,
) -> tuple[pd.DataFrame, LoadReport]:
    """Load, clean, de-duplicate, optionally sample and split a corpus: ``(ads, report)``.

    Columns: ``ad``, ``category``, ``file``, ``line`` (1-based), ``product_key``, ``split``. Ads left out
    by ``sample_size`` count as ``sampled_out``; an ad's split never depends on the sample."""
    clean = clean or CleanConfig()
    if sample_size is not None and sample_size <= 0:
        raise ValueError(f"sample_size must be positive or None, got {sample_size}")
    started = time.perf_counter()
    root = resolve_source(source)
    files = corpus_files(root)
    if categories is not None:
        wanted = set(categories)
        available = sorted({c for _, c in files})
        unknown = wanted - set(available)
        if unknown:
            raise ValueError(f"Unknown categories {sorted(unknown)}; this corpus has {available}")
        files = [(p, c) for p, c in files if c in wanted]

    report = LoadReport(source=str(root))
    seen: set[str] = set()
    kept_ads, kept_categories, kept_files, kept_lines = [], [], [], []
    for path, category in tqdm(files, desc="reading files", unit="file", disable=not progress):
        relative = str(path.relative_to(root)) if root.is_dir() else path.name
        try:
            header, records = read_ads_file(path, category, text_column)
        except CorpusFormatError as error:
            if root.is_file():
                raise
            report.skipped_files[relative] = str(error)
            continue
        report.files_read += 1
        if header != text_column:
            report.header_variants[relative] = header
        for raw, row_category, line_number, note in records:
            report.rows_read += 1
            cleaned = normalize_ad(raw) if raw is not None else ""
            reason = drop_reason(raw, note, cleaned, clean, text_column)
            if reason is None and clean.deduplicate:
                if cleaned in seen:
                    reason = "duplicate"
                else:
                    seen.add(cleaned)
            if reason is not None:
                report.dropped[reason] += 1
                continue
            if note:
                report.repaired[note] += 1
            kept_ads.append(cleaned)
            kept_categories.append(row_category)
            kept_files.append(relative)
            kept_lines.append(line_number)

    ads = pd.DataFrame(
        {
            "ad": kept_ads,
            "category": pd.Categorical(kept_categories),
            "file": pd.Categorical(kept_files),
            "line": np.asarray(kept_lines, dtype=np.int64),
        }
    )
    sampled = _sample(ads, sample_size, seed)
    if len(sampled) < len(ads):
        report.dropped["sampled_out"] += len(ads) - len(sampled)
    ads = split_ads(sampled, split or SplitConfig())
    report.rows_kept = len(ads)
    report.categories = {str(k): int(v) for k, v in ads["category"].value_counts().items() if v}
    report.splits = {name: int((ads["split"] == name).sum()) for name in SPLITS}
    report.seconds = time.perf_counter() - started
    report.check()
    return ads, report


# Splitting ---

_COLOURS = """
black white red blue green yellow orange purple pink brown grey gray silver gold beige
navy teal turquoise aqua cyan magenta maroon burgundy wine olive khaki tan ivory cream
coral salmon peach mint lime lavender lilac violet indigo charcoal champagne bronze copper
rose rosegold multicolor multicolour multi clear transparent natural nude camel mustard
fuchsia plum mauve taupe sand stone slate graphite gunmetal platinum titanium espresso
chocolate coffee denim emerald jade ruby sapphire space midnight starlight sky royal
light dark pale deep bright neon matte glossy metallic heather solid assorted mixed
striped floral leopard camo camouflage rainbow
"""
_SIZES = """
x xxs xs s m l xl xxl xxxl xxxxl 1x 2x 3x 4x 5x 2xl 3xl 4xl 5xl 6xl small medium large
x-large xx-large xxx-large extra big tall petite plus regular slim wide narrow short long
one size sizes us uk eu women womens men mens boys girls kids toddler infant baby
youth adult unisex months month years year yrs mo little
"""
_PACKS = """
pack packs pk count ct pcs pc piece pieces set sets of pair pairs qty quantity lot bundle
and with in
"""
_VARIANT_WORDS = frozenset((_COLOURS + _SIZES + _PACKS).split())
_MEASURE = re.compile(
    r"(\d+([.,/x]\d+)*(mm|cm|m|in|inch|inches|ft|oz|fl|ml|l|lb|lbs|g|kg|gb|tb|pcs|pk|ct|x|t|w)?|[\"'])"
)
_TRAILING_BRACKET = re.compile(r"\s*[(\[]([^()\[\]]*)[)\]]\s*$")
_TRAILING_SEGMENT = re.compile(r"\s*(?:,|\s[-–—|]\s)\s*([^,]*?)\s*$")
_VARIANT_SPLIT = re.compile(r"[\s/&+,\-–]+")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def _is_variant(segment: str) -> bool:
    words = [w.strip(".:;#") for w in _VARIANT_SPLIT.split(segment) if w.strip(".:;#")]
    return bool(words) and all(w in _VARIANT_WORDS or _MEASURE.fullmatch(w) for w in words)


def product_key(ad: str) -> str:
    """Lower-cased ad without trailing colour/size/pack variants, the unit of the split:
    "Nike Sport Band (Black)" and "nike sport band - Blue, Large" both give "nike sport band"."""
    text = ad.lower().strip()
    while True:
        match = _TRAILING_BRACKET.search(text) or _TRAILING_SEGMENT.search(text)
        if not match or not _is_variant(match.group(1)) or match.start() == 0:
            break
        text = text[: match.start()]
    key = _NON_ALNUM.sub(" ", text).strip()
    return key or _NON_ALNUM.sub(" ", ad.lower()).strip() or ad


def split_of(key: str, config: SplitConfig) -> str:
    """Split of one product key: a deterministic hash, independent of every other row."""
    digest = hashlib.blake2b(f"{config.seed}\x00{key}".encode("utf-8", "surrogatepass"), digest_size=8)
    position = int.from_bytes(digest.digest(), "big") / 2**64
    if position < config.test:
        return "test"
    if position < config.test + config.validation:
        return "validation"
    return "train"


def split_ads(ads: pd.DataFrame, config: SplitConfig) -> pd.DataFrame:
    """Add ``product_key`` and ``split`` columns (a new frame; ``ads`` is not modified)."""
    keys = [product_key(ad) for ad in ads["ad"]]
    out = ads.copy()
    out["product_key"] = keys
    cache: dict[str, str] = {}
    out["split"] = pd.Categorical(
        [cache.get(k) or cache.setdefault(k, split_of(k, config)) for k in keys], categories=list(SPLITS)
    )
    return out


def _sample(ads: pd.DataFrame, sample_size: int | None, seed: int) -> pd.DataFrame:
    """A reproducible random subset of ``sample_size`` rows, in corpus order (all rows if None)."""
    if sample_size is None or sample_size >= len(ads):
        return ads
    return ads.sample(n=sample_size, random_state=seed).sort_index().reset_index(drop=True)


# Saving the split for every later notebook ---


def save_dataset(ads: pd.DataFrame, report: LoadReport, folder: str | Path) -> Path:
    """Write ``ads.parquet`` and ``load_report.json`` into ``folder``; return the parquet path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DATASET_FILE
    ads.to_parquet(path, index=False)
    (folder / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return path


def load_dataset(folder: str | Path, split: str | None = None) -> pd.DataFrame:
    """Read the ads saved by :func:`save_dataset`, optionally one split only."""
    path = Path(folder) / DATASET_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist. Run the corpus lesson (01) first, or `adgen data prepare SOURCE --out {folder}`."
        )
    ads = pd.read_parquet(path)
    missing = {"ad", "category", "split"} - set(ads.columns)
    if missing:
        raise ValueError(f"{path} lacks columns {sorted(missing)}; prepare it again.")
    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        ads = ads[ads["split"] == split].reset_index(drop=True)
    return ads


def validation_ads(run_dir: str | Path, count: int | None, seed: int = 0) -> pd.DataFrame:
    """``count`` validation ads (and categories) drawn with ``seed`` (None: all): the ads every quality
    curve scores. Drawn, not the first ones: the saved order groups similar products."""
    ads = load_dataset(Path(run_dir) / DATA_FOLDER, split="validation")
    if count is None or count >= len(ads):
        return ads
    return ads.sample(n=count, random_state=seed).reset_index(drop=True)
