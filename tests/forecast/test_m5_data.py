"""M5 data layer on a generated dataset: shapes, the 12-level hierarchy, WRMSSE weights, features, rolling
splits, generator determinism, and that every malformed file is reported with its file, line and column."""
import doctest
import json
import shutil

import numpy as np
import pytest

from jaxsuite.forecast import m5_data
from jaxsuite.forecast.m5_data import (FEATURE_NAMES, LEVELS, M5FormatError, Split, aggregate,
                                       expected_series_count, features, load_m5, m5_weights, rolling_windows)
from jaxsuite.forecast.m5_generate import generate_m5

STORES = ("CA_1", "CA_2", "TX_1", "WI_1")
N_ITEMS, N_DAYS = 3, 500  # per department; 7 departments -> 21 items, 84 bottom series


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("m5")
    info = generate_m5(folder, n_items_per_dept=N_ITEMS, stores=STORES, n_days=N_DAYS, seed=0)
    data = load_m5(folder)
    return folder, info, data, aggregate(data)


def test_shapes_and_format(small):
    folder, info, data, _ = small
    assert data.sales.shape == data.prices.shape == (21 * 4, N_DAYS) == (info["n_series"], info["n_days"])
    assert data.sales.dtype == data.prices.dtype == np.float32
    assert data.ids[0] == "HOBBIES_1_001_CA_1_evaluation" and data.state_id[-1] == "WI"
    assert set(data.cat_id.tolist()) == {"HOBBIES", "HOUSEHOLD", "FOODS"} and len(set(data.dept_id.tolist())) == 7
    header = (folder / "sales_train_evaluation.csv").open().readline().strip().split(",")
    assert header == ["id", "item_id", "dept_id", "cat_id", "store_id", "state_id"] + [
        f"d_{t}" for t in range(1, N_DAYS + 1)]
    assert (folder / "calendar.csv").open().readline().strip() == (
        "date,wm_yr_wk,weekday,wday,month,year,d,event_name_1,event_type_1,event_name_2,event_type_2,"
        "snap_CA,snap_TX,snap_WI")
    cal = data.calendar
    assert all(len(v) == N_DAYS for v in cal.values())
    assert str(cal["date"][0]) == "2011-01-29" and cal["wm_yr_wk"][0] == 11101 and cal["wday"][0] == 1
    assert cal["event_name_1"][8] == "SuperBowl"  # 2011-02-06, d_9 as in the real calendar
    # Items launched late: no price row (NaN) and no sales before their launch day.
    for sid, day in info["truth"]["launch_day"].items():
        i = int(np.flatnonzero(data.ids == sid)[0])
        assert np.isnan(data.prices[i, :day]).all() and (data.sales[i, :day] == 0).all()
        assert np.isfinite(data.prices[i, day:]).all()
    assert (data.sales == 0).mean() > 0.3  # intermittent at the bottom level


def test_validation_file_fallback(small, tmp_path):
    folder = small[0]
    for name in ("calendar.csv", "sell_prices.csv"):
        shutil.copy(folder / name, tmp_path / name)
    shutil.copy(folder / "sales_train_evaluation.csv", tmp_path / "sales_train_validation.csv")
    data = load_m5(tmp_path)
    assert data.files["sales"].name == "sales_train_validation.csv"
    np.testing.assert_array_equal(data.sales, small[2].sales)


def test_exact_parser_matches_fast_parser(small, monkeypatch):
    monkeypatch.setattr(m5_data, "_arrow_table", lambda *args: None)
    slow = load_m5(small[0])
    np.testing.assert_array_equal(slow.sales, small[2].sales)
    np.testing.assert_array_equal(slow.prices, small[2].prices)
    np.testing.assert_array_equal(slow.ids, small[2].ids)


def test_aggregation(small):
    _, _, data, h = small
    assert h.series.shape == (len(h.keys), N_DAYS) and h.series.dtype == np.float32
    np.testing.assert_allclose(h.series[h.rows(1)][0], data.sales.sum(axis=0))
    for row in range(h.rows(3).start, h.rows(3).stop):  # level 3: one row per store, by hand
        np.testing.assert_allclose(h.series[row], data.sales[data.store_id == h.keys[row]].sum(axis=0))
    row = h.keys.index("CA_1 / HOBBIES")
    assert h.level[row] == 8
    hand = data.sales[(data.store_id == "CA_1") & (data.cat_id == "HOBBIES")].sum(axis=0)
    np.testing.assert_allclose(h.series[row], hand)
    np.testing.assert_array_equal(h.series[h.rows(12)], data.sales[np.argsort(h.index[11])])
    assert len(h.keys) == expected_series_count(n_states=3, n_stores=4, n_cats=3, n_depts=7, n_items=21) == 256
    assert np.bincount(h.level)[1:].tolist() == [1, 3, 4, 3, 7, 9, 21, 12, 28, 21, 63, 84]
    assert [name for _, name, _ in LEVELS] == list(h.level_names)
    x = np.random.default_rng(0).normal(size=(data.n_series, 2, 3))  # samples aggregate with the same index
    np.testing.assert_allclose(h.sum_bottom(x), (h.matrix(np.float64) @ x.reshape(data.n_series, -1))
                               .reshape(-1, 2, 3))
    assert doctest.testmod(m5_data).failed == 0  # expected_series_count(...) == 42,840 for the real M5


def test_weights(small):
    _, _, data, h = small
    w = m5_weights(h, data, end_day=N_DAYS)
    assert w.shape == (len(h.keys),) and w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(np.bincount(h.level, weights=w)[1:], np.full(12, 1 / 12))
    window = slice(N_DAYS - 28, N_DAYS)
    dollars = data.sales[:, window].astype(np.float64) * np.nan_to_num(data.prices[:, window])
    ca1 = dollars[data.store_id == "CA_1"].sum() / dollars.sum() / 12
    assert w[h.keys.index("CA_1")] == pytest.approx(ca1, rel=1e-6)
    i = 5
    bottom_row = h.index[11, i]
    assert w[bottom_row] == pytest.approx(dollars[i].sum() / dollars.sum() / 12, rel=1e-6)
    w_early = m5_weights(h, data, end_day=300)
    assert not np.allclose(w_early, w)
    with pytest.raises(ValueError, match="end_day"):
        m5_weights(h, data, end_day=N_DAYS + 1)


def test_rolling_windows():
    assert rolling_windows(500) == [Split(388, (388, 416), (416, 444)), Split(416, (416, 444), (444, 472)),
                                    Split(444, (444, 472), (472, 500))]
    assert rolling_windows(100, horizon=7, n_origins=2, stride=14) == [Split(72, (72, 79), (79, 86)),
                                                                        Split(86, (86, 93), (93, 100))]
    assert rolling_windows(1941, n_origins=1)[0].test == (1913, 1941)  # the M5 evaluation window
    rolling_windows(28 * 3 + 56, min_train=28)
    with pytest.raises(ValueError, match="too short"):
        rolling_windows(28 * 3 + 55, min_train=28)


def test_features(small):
    _, _, data, _ = small
    f = features(data)
    assert f.calendar.shape == (N_DAYS, len(FEATURE_NAMES)) and f.calendar.dtype == np.float32
    assert f.rel_price.shape == f.snap.shape == data.sales.shape
    dom = (data.calendar["date"] - data.calendar["date"].astype("datetime64[M]")).astype(int) + 1
    np.testing.assert_array_equal(f.calendar[:, FEATURE_NAMES.index("snap_CA")], dom <= 10)
    np.testing.assert_array_equal(f.calendar[:, FEATURE_NAMES.index("snap_TX")],
                                  np.isin(dom, [1, 3, 5, 6, 7, 9, 11, 12, 15]))
    np.testing.assert_array_equal(f.calendar[:, FEATURE_NAMES.index("snap_WI")], data.calendar["snap_WI"])
    np.testing.assert_array_equal(f.snap[data.state_id == "TX"][0], data.calendar["snap_TX"])
    assert f.calendar[8, FEATURE_NAMES.index("event_sporting")] == 1  # SuperBowl
    christmas = np.flatnonzero(data.calendar["event_name_1"] == "Christmas")
    assert (f.calendar[christmas, FEATURE_NAMES.index("event_national")] == 1).all()
    np.testing.assert_allclose(np.hypot(f.calendar[:, 0], f.calendar[:, 1]), 1.0, rtol=1e-6)
    assert np.isfinite(f.rel_price).all() and (f.rel_price[np.isnan(data.prices)] == 1).all()
    on = np.isfinite(data.prices)
    np.testing.assert_allclose(np.where(on, f.rel_price, 0).sum(1) / on.sum(1), 1.0, rtol=1e-4)
    sub = features(data, day_index=[3, 10], price_ref_end=400)
    assert sub.calendar.shape == (2, len(FEATURE_NAMES)) and sub.rel_price.shape == (data.n_series, 2)
    np.testing.assert_array_equal(sub.calendar, f.calendar[[3, 10]])


def test_generator_deterministic_and_truth(small, tmp_path):
    folder, info, data, h = small
    info2 = generate_m5(tmp_path / "again", n_items_per_dept=N_ITEMS, stores=STORES, n_days=N_DAYS, seed=0)
    for role, path in info["files"].items():
        assert path.read_bytes() == info2["files"][role].read_bytes(), role
    other = generate_m5(tmp_path / "other", n_items_per_dept=N_ITEMS, stores=STORES, n_days=N_DAYS, seed=1)
    assert other["files"]["sales"].read_bytes() != info["files"]["sales"].read_bytes()
    truth = json.loads((folder / "truth.json").read_text())
    assert len(truth["regimes"]) >= len(STORES)
    assert all(0 <= r["start"] < r["end"] <= N_DAYS for r in truth["regimes"])
    for p in list(truth["store_trend"].values()) + truth["item_trend"]:
        assert all(0.1 * N_DAYS <= c < 0.9 * N_DAYS for c in p["changepoints"])
    total = h.series[0]
    christmas = truth["events"]["Christmas"]["days"]
    assert christmas and total[christmas].max() < 0.1 * total.mean()  # stores closed
    weekend = np.isin(data.calendar["wday"], [1, 2])
    assert total[weekend].mean() > 1.2 * total[~weekend].mean()  # weekly seasonality


def _corrupt(src, dst, name, edit):
    """Copy the dataset from src to dst, applying edit(list of lines) to file `name` (None = delete it)."""
    shutil.copytree(src, dst)
    path = dst / name
    if edit is None:
        path.unlink()
        return dst
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    return dst


def _set_cell(line_no, col, value):
    def edit(lines):
        header = lines[0].split(",")
        cells = lines[line_no - 1].split(",")
        cells[header.index(col)] = value
        lines[line_no - 1] = ",".join(cells)
    return edit


def _drop_column(col):
    def edit(lines):
        j = lines[0].split(",").index(col)
        lines[:] = [",".join(c for k, c in enumerate(line.split(",")) if k != j) for line in lines]
    return edit


SALES, CAL, PRICES = "sales_train_evaluation.csv", "calendar.csv", "sell_prices.csv"
CORRUPTIONS = {  # name: (file, edit, expected line, expected column)
    "non_numeric_sales": (SALES, _set_cell(4, "d_17", "abc"), 4, "d_17"),
    "empty_sales_cell": (SALES, _set_cell(3, "d_1", ""), 3, "d_1"),
    "negative_sales": (SALES, _set_cell(7, "d_3", "-2"), 7, "d_3"),
    "missing_sales_column": (SALES, _drop_column("cat_id"), 1, "cat_id"),
    "day_gap": (SALES, lambda lines: lines.__setitem__(0, lines[0].replace(",d_5,", ",d_6,")), 1, "d_6"),
    "store_in_two_states": (SALES, _set_cell(5, "state_id", "TX"), 5, "state_id"),
    "calendar_too_short": (CAL, lambda lines: lines.__delitem__(slice(401, None)), 402, "d"),
    "calendar_missing_snap": (CAL, _drop_column("snap_TX"), 1, "snap_TX"),
    "calendar_bad_date": (CAL, _set_cell(10, "date", "2011-02-31"), 10, "date"),
    "price_unknown_item": (PRICES, lambda lines: lines.append("CA_1,HOBBIES_1_999,11101,1.00"), -1, "item_id"),
    "price_unknown_store": (PRICES, _set_cell(9, "store_id", "NY_1"), 9, "store_id"),
    "price_zero": (PRICES, _set_cell(5, "sell_price", "0.00"), 5, "sell_price"),
    "price_non_numeric": (PRICES, _set_cell(6, "sell_price", "n/a"), 6, "sell_price"),
    "price_unknown_week": (PRICES, _set_cell(8, "wm_yr_wk", "19999"), 8, "wm_yr_wk"),
    "price_duplicate": (PRICES, lambda lines: lines.append(lines[1]), -1, "wm_yr_wk"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_malformed_files_name_file_line_and_column(small, tmp_path, case):
    name, edit, line, column = CORRUPTIONS[case]
    folder = _corrupt(small[0], tmp_path / "m5", name, edit)
    if line == -1:
        line = len((folder / name).read_text().splitlines())
    with pytest.raises(M5FormatError) as err:
        load_m5(folder)
    msg = str(err.value)
    assert name in msg and f"line {line}," in msg and f"column {column!r}" in msg, msg
    assert (err.value.line, err.value.column, err.value.path.name) == (line, column, name)


@pytest.mark.parametrize("name", [SALES, CAL, PRICES])
def test_missing_files(small, tmp_path, name):
    folder = _corrupt(small[0], tmp_path / "m5", name, None)
    with pytest.raises(FileNotFoundError) as err:
        load_m5(folder)
    msg = str(err.value)
    assert name in msg and all(f in msg for f in (SALES, CAL, PRICES)), msg
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_m5(tmp_path / "nowhere")
