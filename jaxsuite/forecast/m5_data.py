"""M5 (Walmart) data layer: load and validate the CSVs, build the 12-level hierarchy, WRMSSE weights,
calendar/price features and rolling-origin splits.

Why numpy (plus pyarrow's CSV reader, already a jaxsuite dependency) and not pandas: pandas is not a
dependency, and everything downstream (the JAX forecaster, the metrics) wants dense float32 arrays anyway.
Layout, for the real data:

    sales   float32 [n_series=30490, n_days=1941]   bottom level (item x store), units sold
    prices  float32 [n_series, n_days]               sell price broadcast from weeks to days, NaN = not on sale
    calendar dict of arrays, each [n_days]           aligned with the sales days (d_1..d_N)
    Hierarchy.series float32 [42840, n_days]         the 12 official aggregation levels, level-major

Aggregation is one sparse [n_total, n_bottom] 0/1 matrix (scipy.sparse, else np.add.at) built from an
index table [12, n_bottom] (bottom series -> its row at each level), so forecasts and samples of the bottom
series aggregate with the same table (`Hierarchy.sum_bottom`). Parsing necessarily walks the CSV rows once;
nothing else loops over series in Python.

Every format problem raises `M5FormatError` naming the file, the 1-based line of the file and the column, so
a corrupted download is found without opening a 120 MB CSV in an editor.
"""
from __future__ import annotations

import csv
import math
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

SALES_FILES = ("sales_train_evaluation.csv", "sales_train_validation.csv")  # first one found is used
CALENDAR_FILE = "calendar.csv"
PRICES_FILE = "sell_prices.csv"
ID_COLUMNS = ("id", "item_id", "dept_id", "cat_id", "store_id", "state_id")
CALENDAR_COLUMNS = ("date", "wm_yr_wk", "weekday", "wday", "month", "year", "d",
                    "event_name_1", "event_type_1", "event_name_2", "event_type_2")  # + snap_<state>
PRICE_COLUMNS = ("store_id", "item_id", "wm_yr_wk", "sell_price")
HORIZON = 28  # the M5 forecast horizon, also the window of the WRMSSE weights

EVENT_TYPES = ("Cultural", "National", "Religious", "Sporting")  # the four types used in calendar.csv
SNAP_STATES = ("CA", "TX", "WI")
# Columns of M5Features.calendar, in order. Cyclic encodings avoid a jump at the period boundary;
# event flags are 1 when event_type_1 or event_type_2 has that type; snap_<S> is the calendar's SNAP day flag
# for state S (0 where the calendar has no such column).
FEATURE_NAMES = (["wday_sin", "wday_cos", "month_sin", "month_cos", "doy_sin", "doy_cos"]
                 + [f"event_{t.lower()}" for t in EVENT_TYPES] + [f"snap_{s}" for s in SNAP_STATES])

# The 12 official levels: (level, name, grouping columns). Level 12 is the bottom (item x store).
LEVELS = (
    (1, "Total", ()),
    (2, "State", ("state_id",)),
    (3, "Store", ("store_id",)),
    (4, "Category", ("cat_id",)),
    (5, "Department", ("dept_id",)),
    (6, "State x Category", ("state_id", "cat_id")),
    (7, "State x Department", ("state_id", "dept_id")),
    (8, "Store x Category", ("store_id", "cat_id")),
    (9, "Store x Department", ("store_id", "dept_id")),
    (10, "Item", ("item_id",)),
    (11, "Item x State", ("item_id", "state_id")),
    (12, "Item x Store", ("item_id", "store_id")),
)


class M5FormatError(ValueError):
    """A malformed M5 file. `path`, `line` (1-based line of the file, 1 = header) and `column` say where."""

    def __init__(self, path, line: int, column: str | None, message: str):
        self.path, self.line, self.column = Path(path), line, column
        self.message = message
        where = f"{self.path} line {line}" + (f", column {column!r}" if column is not None else "")
        super().__init__(f"{where}: {message}")

    def __reduce__(self):  # picklable across worker processes despite the 4-argument constructor
        return type(self), (self.path, self.line, self.column, self.message)


@dataclass
class M5Data:
    """The bottom level of M5 plus its calendar and prices, all aligned on the sales days d_1..d_N."""
    sales: np.ndarray            # float32 [n_series, n_days]
    ids: np.ndarray              # str [n_series], e.g. "HOBBIES_1_001_CA_1_evaluation"
    item_id: np.ndarray          # str [n_series]
    dept_id: np.ndarray
    cat_id: np.ndarray
    store_id: np.ndarray
    state_id: np.ndarray
    calendar: dict               # name -> array [n_days]: date (datetime64[D]), d, wm_yr_wk, weekday, wday,
    #                              month, year, event_name/type_1/2 (str, "" = none), snap_<state> (int8)
    prices: np.ndarray           # float32 [n_series, n_days], NaN where the item is not on sale
    files: dict = field(default_factory=dict)  # role -> Path actually read

    @property
    def n_series(self) -> int:
        return self.sales.shape[0]

    @property
    def n_days(self) -> int:
        return self.sales.shape[1]


def _expected(folder: Path) -> str:
    return (f"an M5 folder {folder} holding {SALES_FILES[0]} (or {SALES_FILES[1]}), {CALENDAR_FILE} and "
            f"{PRICES_FILE}, as unzipped from the Kaggle 'm5-forecasting-accuracy' download")


def load_m5(folder) -> M5Data:
    """Read and validate the three M5 CSVs in `folder`.

    The evaluation file (d_1..d_1941) is preferred; the validation file (d_1..d_1913) is the fallback so that
    older downloads still load. The calendar may run past the sales days (the real one covers the 28 future
    days too); it is cut to the sales days. Raises FileNotFoundError for a missing folder or file and
    M5FormatError (file, 1-based line, column) for anything malformed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"M5 folder {folder} does not exist; expected {_expected(folder)}")
    sales_path = next((folder / f for f in SALES_FILES if (folder / f).is_file()), None)
    if sales_path is None:
        raise FileNotFoundError(f"{folder / SALES_FILES[0]} not found (nor {SALES_FILES[1]}); expected "
                                f"{_expected(folder)}")
    for name in (CALENDAR_FILE, PRICES_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found; expected {_expected(folder)}")
    cal_path, price_path = folder / CALENDAR_FILE, folder / PRICES_FILE

    ids, sales = _read_sales(sales_path)
    n_series, n_days = sales.shape
    states = sorted(set(ids["state_id"].tolist()))
    cal = _read_calendar(cal_path, n_days, states, sales_path.name)
    week_codes, week_of_cal_day = np.unique(cal["wm_yr_wk"], return_inverse=True)
    prices_week = _read_prices(price_path, ids, week_codes, sales_path.name)
    prices = prices_week[:, week_of_cal_day[:n_days]]  # [n_series, n_days], weeks broadcast to days
    calendar = {k: v[:n_days] for k, v in cal.items()}
    return M5Data(sales=sales, ids=ids["id"], item_id=ids["item_id"], dept_id=ids["dept_id"],
                  cat_id=ids["cat_id"], store_id=ids["store_id"], state_id=ids["state_id"], calendar=calendar,
                  prices=prices, files={"sales": sales_path, "calendar": cal_path, "prices": price_path})


def _open_header(f, path: Path) -> tuple[csv.reader, list[str]]:
    reader = csv.reader(f)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise M5FormatError(path, 1, None, "the file is empty; expected a header line") from None
    return reader, header


def _column_index(path: Path, header: list[str], required: Sequence[str]) -> dict[str, int]:
    missing = [c for c in required if c not in header]
    if missing:
        raise M5FormatError(path, 1, missing[0], f"missing column(s) {missing}; the header has "
                            f"{header[:12]}{' ...' if len(header) > 12 else ''}; required: {list(required)}")
    return {c: header.index(c) for c in required}


def _check_width(path: Path, reader, row: list[str], header: list[str]) -> None:
    if len(row) != len(header):
        j = min(len(row), len(header))
        col = header[j] if j < len(header) else f"#{j + 1} (beyond the header)"
        raise M5FormatError(path, reader.line_num, col,
                            f"the row has {len(row)} fields but the header has {len(header)}")


def _arrow_table(path: Path, types: dict[str, str]):
    """The whole CSV via pyarrow's multi-threaded reader, or None on any irregularity (or without pyarrow).

    Why two parsers: the csv module + per-row numpy conversion takes ~20 s on real-size files, pyarrow ~4 s,
    but pyarrow's errors do not say which line and column. So pyarrow is the optimistic fast path, and
    anything it rejects (bad number, empty cell, blank line, ragged row) is re-read by the exact parser, which
    names the line and column. With blank lines rejected, data row r is line r + 2 of the file.
    """
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:
        return None
    try:
        table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
                               convert_options=pacsv.ConvertOptions(
                                   column_types={c: getattr(pa, t)() for c, t in types.items()},
                                   include_columns=list(types)))
    except (pa.ArrowException, ValueError, OSError):  # ArrowInvalid is a ValueError
        return None
    return None if any(table.column(c).null_count for c in types) else table


def _read_sales(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    with open(path, newline="") as f:
        reader, header = _open_header(f, path)
        col = _column_index(path, header, ID_COLUMNS)
        day_pos = [j for j, c in enumerate(header) if c not in col]
        if not day_pos:
            raise M5FormatError(path, 1, None, "no day columns; expected d_1..d_N after the id columns")
        for k, j in enumerate(day_pos):
            if header[j] != f"d_{k + 1}":
                raise M5FormatError(path, 1, header[j], f"expected 'd_{k + 1}' at column {j + 1}: the day "
                                    f"columns must be d_1, d_2, ... in order, without gaps or other columns")
        table = _arrow_table(path, {**{c: "string" for c in ID_COLUMNS}, **{header[j]: "float32" for j in day_pos}})
        if table is not None:
            sales = np.empty((table.num_rows, len(day_pos)), np.float32)  # [n_series, n_days]
            for k, j in enumerate(day_pos):
                sales[:, k] = table.column(header[j]).to_numpy()
            ids = {c: np.char.strip(table.column(c).to_numpy().astype(str)) for c in ID_COLUMNS}
            line_of = np.arange(table.num_rows, dtype=np.int64) + 2
        else:
            ids, sales, line_of = _parse_sales_rows(path, reader, header, [col[c] for c in ID_COLUMNS], day_pos)
    if not len(sales):
        raise M5FormatError(path, 2, None, "no data rows after the header")
    bad = ~np.isfinite(sales) | (sales < 0)
    if bad.any():
        i, t = divmod(int(np.argmax(bad.ravel())), sales.shape[1])
        what = "negative" if sales[i, t] < 0 else "not finite"
        raise M5FormatError(path, int(line_of[i]), f"d_{t + 1}",
                            f"sales value {sales[i, t]!r} is {what}; unit sales must be >= 0")
    for c in ID_COLUMNS:
        empty = ids[c] == ""
        if empty.any():
            raise M5FormatError(path, int(line_of[np.argmax(empty)]), c, f"empty {c}")
    # The hierarchy must be a tree: one state per store, one category per department, one department per item.
    for child, parent in (("store_id", "state_id"), ("dept_id", "cat_id"), ("item_id", "dept_id")):
        _check_functional(path, line_of, ids, child, parent)
    item_code, store_code = (np.unique(ids[c], return_inverse=True)[1] for c in ("item_id", "store_id"))
    pair = item_code.astype(np.int64) * (store_code.max() + 1) + store_code
    _, first, inv = np.unique(pair, return_index=True, return_inverse=True)
    repeat = first[inv] != np.arange(len(pair))
    if repeat.any():
        i = int(np.argmax(repeat))
        raise M5FormatError(path, int(line_of[i]), "item_id", f"item {ids['item_id'][i]!r} at store "
                            f"{ids['store_id'][i]!r} appears twice (first on line {line_of[first[inv[i]]]})")
    return ids, sales


def _parse_sales_rows(path, reader, header, id_pos, day_pos):
    """The exact (slow) parser: every row through the csv module, errors with their line and column."""
    a, b = day_pos[0], day_pos[-1] + 1
    contiguous = b - a == len(day_pos)
    id_lists: list[list[str]] = [[] for _ in id_pos]
    rows, lines = [], array("q")
    for row in reader:
        if not row:
            continue
        _check_width(path, reader, row, header)
        vals = row[a:b] if contiguous else [row[j] for j in day_pos]
        try:
            rows.append(np.asarray(vals, dtype=np.float32))  # numpy parses the strings in C
        except ValueError:
            k = next(k for k, v in enumerate(vals) if not _is_float(v))
            raise M5FormatError(path, reader.line_num, header[day_pos[k]],
                                f"sales value {vals[k]!r} is not a number") from None
        for lst, j in zip(id_lists, id_pos):
            lst.append(row[j].strip())
        lines.append(reader.line_num)
    sales = np.stack(rows) if rows else np.zeros((0, len(day_pos)), np.float32)
    return ({c: np.asarray(lst, dtype=str) for c, lst in zip(ID_COLUMNS, id_lists)}, sales,
            np.asarray(lines, dtype=np.int64))


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _check_functional(path, line_of, ids, child: str, parent: str) -> None:
    _, first, inv = np.unique(ids[child], return_index=True, return_inverse=True)
    expected = ids[parent][first[inv]]
    bad = ids[parent] != expected
    if bad.any():
        i = int(np.argmax(bad))
        raise M5FormatError(path, int(line_of[i]), parent,
                            f"{child} {ids[child][i]!r} has {parent} {ids[parent][i]!r} here but "
                            f"{expected[i]!r} on line {line_of[first[inv[i]]]}")


def _read_calendar(path: Path, n_days: int, states: list[str], sales_name: str) -> dict[str, np.ndarray]:
    int_cols = ("wm_yr_wk", "wday", "month", "year")
    str_cols = ("weekday", "d", "event_name_1", "event_type_1", "event_name_2", "event_type_2")
    with open(path, newline="") as f:
        reader, header = _open_header(f, path)
        snap_cols = [f"snap_{s}" for s in states]
        col = _column_index(path, header, CALENDAR_COLUMNS + tuple(snap_cols))
        for h in header:  # also keep SNAP flags of states not in the sales file
            if h.startswith("snap_") and h not in col:
                col[h], snap_cols = header.index(h), snap_cols + [h]
        out: dict[str, list] = {c: [] for c in ("date",) + int_cols + str_cols + tuple(snap_cols)}
        for row in reader:
            if not row:
                continue
            _check_width(path, reader, row, header)
            k, line = len(out["d"]) + 1, reader.line_num
            if row[col["d"]].strip() != f"d_{k}":
                raise M5FormatError(path, line, "d", f"expected 'd_{k}', got {row[col['d']]!r}: calendar rows "
                                    f"must be d_1, d_2, ... in order")
            for c in str_cols:
                out[c].append(row[col[c]].strip())
            for c in int_cols + tuple(snap_cols) + ("date",):
                v = row[col[c]].strip()
                try:
                    out[c].append(np.datetime64(v, "D") if c == "date" else int(v))
                except ValueError:
                    kind = "an ISO date (YYYY-MM-DD)" if c == "date" else "an integer"
                    raise M5FormatError(path, line, c, f"{v!r} is not {kind}") from None
                if c.startswith("snap_") and out[c][-1] not in (0, 1):
                    raise M5FormatError(path, line, c, f"SNAP flag {v!r} must be 0 or 1")
    n_cal = len(out["d"])
    if n_cal < n_days:
        raise M5FormatError(path, n_cal + 2, "d", f"the calendar ends at d_{n_cal} but {sales_name} has days "
                            f"d_1..d_{n_days}; the calendar must cover every sales day")
    cal = {c: np.asarray(v) for c, v in out.items()}
    cal["date"] = cal["date"].astype("datetime64[D]")
    days = cal["date"].astype(np.int64)
    gap = days != days[0] + np.arange(n_cal)
    if gap.any():
        raise M5FormatError(path, int(np.argmax(gap)) + 2, "date", "dates must be consecutive days")
    # Guard against a calendar shifted against its own dates (M5 wday: 1 = Saturday ... 7 = Friday).
    derived = {"wday": (days + 3 - 5) % 7 + 1,  # (days + 3) % 7 is the weekday with Monday = 0
               "month": cal["date"].astype("datetime64[M]").astype(np.int64) % 12 + 1,
               "year": cal["date"].astype("datetime64[Y]").astype(np.int64) + 1970}
    for c, want in derived.items():
        bad = cal[c] != want
        if bad.any():
            i = int(np.argmax(bad))
            raise M5FormatError(path, i + 2, c, f"{c}={cal[c][i]} does not match date {cal['date'][i]} "
                                f"(expected {want[i]})")
    for c, dt in (("wm_yr_wk", np.int32), ("wday", np.int8), ("month", np.int8), ("year", np.int16)):
        cal[c] = cal[c].astype(dt)
    for c in snap_cols:
        cal[c] = cal[c].astype(np.int8)
    return cal


def _read_prices(path: Path, ids: dict[str, np.ndarray], week_codes: np.ndarray, sales_name: str) -> np.ndarray:
    """Weekly prices [n_series, n_weeks] (float32, NaN = no row: the item was not on sale that week)."""
    with open(path, newline="") as f:
        reader, header = _open_header(f, path)
        col = _column_index(path, header, PRICE_COLUMNS)
        parsed = _arrow_prices(path, ids, week_codes)
        if parsed is None:
            parsed = _parse_price_rows(path, reader, header, col, ids, week_codes, sales_name)
    ser, wk, val, line_of = parsed
    flat = ser * len(week_codes) + wk
    _, first, inv = np.unique(flat, return_index=True, return_inverse=True)
    repeat = first[inv] != np.arange(len(flat))
    if repeat.any():
        r = int(np.argmax(repeat))
        raise M5FormatError(path, int(line_of[r]), "wm_yr_wk", f"a second price for store "
                            f"{ids['store_id'][ser[r]]!r}, item {ids['item_id'][ser[r]]!r}, week "
                            f"{week_codes[wk[r]]} (first on line {line_of[first[inv[r]]]})")
    prices = np.full((len(ids["id"]), len(week_codes)), np.nan, dtype=np.float32)
    prices[ser, wk] = val
    return prices


def _arrow_prices(path: Path, ids: dict[str, np.ndarray], week_codes: np.ndarray):
    """(series, week, price, line) arrays via pyarrow, or None when anything is off (see `_arrow_table`)."""
    table = _arrow_table(path, {"store_id": "string", "item_id": "string", "wm_yr_wk": "int64",
                                "sell_price": "float64"})
    if table is None:
        return None
    stores, store_of = np.unique(ids["store_id"], return_inverse=True)
    items, item_of = np.unique(ids["item_id"], return_inverse=True)
    pair = np.full((len(stores), len(items)), -1, np.int64)
    pair[store_of, item_of] = np.arange(len(store_of))

    def codes(name, known):  # dictionary-encode 6.8M strings in C++, map the few distinct values in Python
        enc = table.column(name).combine_chunks().dictionary_encode()
        index = {v: k for k, v in enumerate(known.tolist())}
        lut = np.asarray([index.get(v, -1) for v in enc.dictionary.to_pylist()] + [-1], np.int64)
        return lut[enc.indices.to_numpy()]

    st, it = codes("store_id", stores), codes("item_id", items)
    ser = np.where((st >= 0) & (it >= 0), pair[st, it], -1)
    week = table.column("wm_yr_wk").to_numpy()
    wk = np.searchsorted(week_codes, week).clip(max=len(week_codes) - 1)
    price = table.column("sell_price").to_numpy()
    if (ser < 0).any() or (week_codes[wk] != week).any() or not (np.isfinite(price) & (price > 0)).all():
        return None
    return ser, wk, price.astype(np.float32), np.arange(len(ser), dtype=np.int64) + 2


def _parse_price_rows(path, reader, header, col, ids, week_codes, sales_name):
    """The exact (slow) parser for sell_prices.csv: each bad row is reported with its line and column."""
    series_of = {(s, i): n for n, (s, i) in enumerate(zip(ids["store_id"].tolist(), ids["item_id"].tolist()))}
    stores, items = set(ids["store_id"].tolist()), set(ids["item_id"].tolist())
    week_index = {str(c): w for w, c in enumerate(week_codes.tolist())}
    cs, ci, cw, cp = (col[c] for c in PRICE_COLUMNS)
    ser, wk, val, lines = array("q"), array("q"), array("d"), array("q")
    for row in reader:
        if not row:
            continue
        _check_width(path, reader, row, header)
        store, item = row[cs].strip(), row[ci].strip()
        n = series_of.get((store, item))
        if n is None:
            column, what = (("store_id", f"store {store!r} is not") if store not in stores else
                            ("item_id", f"item {item!r} is not") if item not in items else
                            ("item_id", f"item {item!r} is not sold at store {store!r}"))
            raise M5FormatError(path, reader.line_num, column, f"{what} in {sales_name}")
        w = week_index.get(row[cw].strip())
        if w is None:
            raise M5FormatError(path, reader.line_num, "wm_yr_wk", f"week {row[cw]!r} is not in {CALENDAR_FILE}")
        try:
            p = float(row[cp])
        except ValueError:
            raise M5FormatError(path, reader.line_num, "sell_price", f"price {row[cp]!r} is not a number") from None
        if not (p > 0 and math.isfinite(p)):
            raise M5FormatError(path, reader.line_num, "sell_price", f"price {row[cp]!r} must be > 0")
        ser.append(n), wk.append(w), val.append(p), lines.append(reader.line_num)
    return (np.asarray(ser, np.int64), np.asarray(wk, np.int64), np.asarray(val, np.float32),
            np.asarray(lines, np.int64))


# ----------------------------------------------------------------------------------------------- hierarchy
def expected_series_count(n_states: int, n_stores: int, n_cats: int, n_depts: int, n_items: int) -> int:
    """Series over the 12 levels when every combination exists (every item in every store).

    >>> expected_series_count(n_states=3, n_stores=10, n_cats=3, n_depts=7, n_items=3049)  # the real M5
    42840
    """
    return (1 + n_states + n_stores + n_cats + n_depts + n_states * n_cats + n_states * n_depts
            + n_stores * n_cats + n_stores * n_depts + n_items + n_items * n_states + n_items * n_stores)


@dataclass
class Hierarchy:
    """All 12 M5 levels, level-major: rows of level l are contiguous, groups sorted by key within a level."""
    series: np.ndarray       # float32 [n_total, n_days]
    level: np.ndarray        # int16 [n_total], 1..12
    keys: list               # str [n_total], e.g. "Total", "CA", "CA_1 / HOBBIES", "HOBBIES_1_001 / CA_1"
    index: np.ndarray        # int64 [12, n_bottom]: index[l - 1, b] = row of the level-l group holding bottom b
    level_names: tuple = tuple(name for _, name, _ in LEVELS)

    def rows(self, level: int) -> slice:
        """Rows of `level` (1..12) in `series`."""
        r = np.unique(self.index[level - 1])
        return slice(int(r[0]), int(r[-1]) + 1)

    def matrix(self, dtype=np.float32):
        """The summing matrix S [n_total, n_bottom] (scipy.sparse CSR): series = S @ bottom."""
        import scipy.sparse as sp
        n_bottom = self.index.shape[1]
        cols = np.tile(np.arange(n_bottom), self.index.shape[0])
        return sp.csr_matrix((np.ones(cols.size, dtype), (self.index.ravel(), cols)),
                             shape=(len(self.keys), n_bottom))

    def sum_bottom(self, x: np.ndarray) -> np.ndarray:
        """Aggregate anything shaped [n_bottom, ...] (sales, forecasts, samples) to [n_total, ...]."""
        x = np.asarray(x)
        x2 = x.reshape(x.shape[0], -1)
        dtype = x2.dtype if np.issubdtype(x2.dtype, np.floating) else np.float64
        try:
            out = np.asarray(self.matrix(dtype) @ x2)
        except ImportError:  # no scipy: a scatter-add per level, still vectorised over series
            out = np.zeros((len(self.keys), x2.shape[1]), dtype)
            for idx in self.index:
                np.add.at(out, idx, x2)
        return out.reshape((len(self.keys),) + x.shape[1:])


def hierarchy_index(data: M5Data) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(index [12, n_bottom], level [n_total], keys) for the 12 levels, without summing anything."""
    index, level, keys, offset = [], [], [], 0
    for lev, _, cols in LEVELS:
        if not cols:
            group, names = np.zeros(data.n_series, np.int64), np.asarray(["Total"])
        else:
            code = np.zeros(data.n_series, np.int64)
            for c in cols:  # mixed-radix code of the column values -> one integer per combination
                u, inv = np.unique(getattr(data, c), return_inverse=True)
                code = code * len(u) + inv
            _, first, group = np.unique(code, return_index=True, return_inverse=True)
            names = getattr(data, cols[0])[first].astype(object)
            for c in cols[1:]:
                names = names + " / " + getattr(data, c)[first].astype(object)
        index.append(group.reshape(-1) + offset)
        level.append(np.full(len(names), lev, np.int16))
        keys.extend(names.tolist())
        offset += len(names)
    return np.stack(index), np.concatenate(level), keys


def aggregate(data: M5Data) -> Hierarchy:
    """The 12-level M5 hierarchy of `data.sales`.

    On the real data (3 states, 10 stores, 3 categories, 7 departments, 3,049 items):

    >>> h = aggregate(load_m5("m5-forecasting-accuracy"))  # doctest: +SKIP
    >>> h.series.shape[0]  # doctest: +SKIP
    42840
    """
    index, level, keys = hierarchy_index(data)
    h = Hierarchy(series=np.empty((0, data.n_days), np.float32), level=level, keys=keys, index=index)
    h.series = h.sum_bottom(data.sales.astype(np.float32, copy=False))
    return h


def m5_weights(hierarchy: Hierarchy, data: M5Data, end_day: int) -> np.ndarray:
    """Official WRMSSE weights [n_total] (float64): dollar sales over days [end_day - 28, end_day).

    Dollar sales = units x sell price (NaN price counts as 0), summed up the hierarchy, normalised to sum to 1
    within each level and divided by 12, so that every level weighs the same and all weights sum to 1. In the
    competition `end_day` is the end of the training data (1913 for validation, 1941 for evaluation).
    """
    if not HORIZON <= end_day <= data.n_days:
        raise ValueError(f"end_day={end_day} must be in [{HORIZON}, {data.n_days}] (a {HORIZON}-day window "
                         f"inside the sales)")
    window = slice(end_day - HORIZON, end_day)
    dollars = np.nansum(data.sales[:, window].astype(np.float64) * data.prices[:, window], axis=1)
    agg = hierarchy.sum_bottom(dollars)  # [n_total]
    per_level = np.bincount(hierarchy.level, weights=agg, minlength=len(LEVELS) + 1)
    if not (per_level[1:] > 0).all():
        raise ValueError(f"no dollar sales in days [{end_day - HORIZON}, {end_day}): weights are undefined")
    return agg / per_level[hierarchy.level] / len(LEVELS)


# ------------------------------------------------------------------------------------------------ features
@dataclass
class M5Features:
    calendar: np.ndarray     # float32 [T, len(FEATURE_NAMES)]
    rel_price: np.ndarray    # float32 [n_series, T], price / the series' mean price, 1 where not on sale
    snap: np.ndarray         # float32 [n_series, T], the SNAP flag of each series' own state
    day_index: np.ndarray    # int64 [T], the days these features describe
    names: list = field(default_factory=lambda: list(FEATURE_NAMES))


def features(data: M5Data, day_index=None, *, price_ref_end: int | None = None) -> M5Features:
    """Calendar, event, SNAP and relative-price features for the days `day_index` (default: all days).

    The mean price per series is taken over days [0, price_ref_end) (default all days): pass the training end
    so that test-window prices do not leak into the normalisation.
    """
    days = np.arange(data.n_days) if day_index is None else np.asarray(day_index, dtype=np.int64).reshape(-1)
    if days.size and (days.min() < 0 or days.max() >= data.n_days):
        raise IndexError(f"day_index must lie in [0, {data.n_days}); got [{days.min()}, {days.max()}]")
    cal = data.calendar
    date = cal["date"][days]
    doy = (date - date.astype("datetime64[Y]")).astype(np.int64)  # 0-based day of year
    angles = (2 * np.pi * (cal["wday"][days].astype(np.float64) - 1) / 7,
              2 * np.pi * (cal["month"][days].astype(np.float64) - 1) / 12, 2 * np.pi * doy / 365.25)
    cols = [f(a) for a in angles for f in (np.sin, np.cos)]
    for t in EVENT_TYPES:
        cols.append((cal["event_type_1"][days] == t) | (cal["event_type_2"][days] == t))
    for s in SNAP_STATES:
        cols.append(cal[f"snap_{s}"][days] if f"snap_{s}" in cal else np.zeros(days.size))
    calendar = np.stack(cols, axis=1).astype(np.float32)  # [T, F]

    ref = data.prices[:, :price_ref_end]
    n = np.isfinite(ref).sum(axis=1)
    mean = np.nan_to_num(ref).sum(axis=1, dtype=np.float64) / np.maximum(n, 1)  # [n_series]
    price = data.prices[:, days]
    rel = price / np.where(n > 0, mean, np.nan).astype(np.float32)[:, None]
    rel[~np.isfinite(rel)] = 1.0  # not on sale (or never on sale before price_ref_end)

    states, state_code = np.unique(data.state_id, return_inverse=True)
    snap_by_state = np.stack([cal[f"snap_{s}"][days] for s in states.tolist()])  # [n_states, T]
    return M5Features(calendar=calendar, rel_price=rel,
                      snap=snap_by_state[state_code].astype(np.float32), day_index=days)


# ----------------------------------------------------------------------------------------- rolling origins
@dataclass(frozen=True)
class Split:
    """Day indices (0-based, end exclusive): fit on [0, train_end), early-stop on val, score on test."""
    train_end: int
    val: tuple[int, int]
    test: tuple[int, int]


def rolling_windows(n_days: int, horizon: int = HORIZON, n_origins: int = 3, stride: int = HORIZON,
                    min_train: int | None = None) -> list[Split]:
    """Rolling-origin splits, oldest first; the last test window is the final `horizon` days.

    Origin k (0-based) has test = [n_days - (n_origins - 1 - k) * stride - horizon, ... + horizon), the
    validation window is the `horizon` days just before it, and training ends where validation starts.
    Raises ValueError when the oldest origin would leave fewer than `min_train` (default `horizon`) days of
    training history.
    """
    if horizon < 1 or n_origins < 1 or stride < 1:
        raise ValueError(f"horizon ({horizon}), n_origins ({n_origins}) and stride ({stride}) must be >= 1")
    min_train = horizon if min_train is None else min_train
    splits = []
    for k in range(n_origins):
        test_end = n_days - (n_origins - 1 - k) * stride
        test_start = test_end - horizon
        val_start = test_start - horizon
        splits.append(Split(train_end=val_start, val=(val_start, test_start), test=(test_start, test_end)))
    if splits[0].train_end < min_train:
        need = min_train + 2 * horizon + (n_origins - 1) * stride
        raise ValueError(f"history too short: {n_days} days, but {n_origins} origins with horizon {horizon} and "
                         f"stride {stride} need at least {need} (min_train={min_train})")
    return splits
