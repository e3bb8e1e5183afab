"""Synthetic data in the exact M5 file format, drawn from a known demand process.

Why: the real M5 download is 450 MB behind a Kaggle login, so tests, CPU smoke runs and the checks of the
pattern-aware experts (do they find the trend changepoints, the volatility regimes?) need data whose
generating parameters are known. `generate_m5` writes sales_train_evaluation.csv, calendar.csv and
sell_prices.csv (same columns, order and id style as Kaggle's) plus truth.json with every parameter.

The process, for bottom series i = (item, store) on day t (log scale unless said):

    log mu[i, t] = log base[item] + log store_mult[store]
                 + weekly[cat, wday]                          weekend uplift
                 + yearly[item](t)                            Fourier order 3, period 365.25
                 + trend[store](t) + trend[item](t)           piecewise linear: k t + sum_j delta_j (t - c_j)_+
                 + elasticity[item] * log(price / regular)    promotions lower the price, raise demand
                 + event[t] + snap_effect[state] * snap[state, t] * (cat == FOODS)
                 + shock[store, t]                            N(0, 0.04), N(0, 0.3) inside a volatility regime
    y[i, t] ~ NegBin(mean mu, shape r[item] * (0.2 inside a regime else 1)), then set to 0 with prob pi[item]
    y[i, t] = 0 before the item's launch day at that store (and no price rows before its launch week).

Everything is drawn from `seed` (numpy PCG64), so the same arguments give byte-identical files.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

DEPARTMENTS = (("HOBBIES", "HOBBIES_1"), ("HOBBIES", "HOBBIES_2"), ("HOUSEHOLD", "HOUSEHOLD_1"),
               ("HOUSEHOLD", "HOUSEHOLD_2"), ("FOODS", "FOODS_1"), ("FOODS", "FOODS_2"), ("FOODS", "FOODS_3"))
CATEGORIES = ("HOBBIES", "HOUSEHOLD", "FOODS")
M5_STORES = ("CA_1", "CA_2", "CA_3", "CA_4", "TX_1", "TX_2", "TX_3", "WI_1", "WI_2", "WI_3")
M5_ITEMS_PER_DEPT = {"HOBBIES_1": 416, "HOBBIES_2": 149, "HOUSEHOLD_1": 532, "HOUSEHOLD_2": 515,
                     "FOODS_1": 216, "FOODS_2": 398, "FOODS_3": 823}  # 3,049 items, as in the real data
M5_N_DAYS = 1941

# (name, type, month, first and last day of month, weekday with Monday = 0 or None, log effect on demand)
EVENTS = (
    ("NewYear", "National", 1, 1, 1, None, -0.25),
    ("OrthodoxChristmas", "Religious", 1, 7, 7, None, 0.05),
    ("SuperBowl", "Sporting", 2, 1, 7, 6, 0.20),
    ("ValentinesDay", "Cultural", 2, 14, 14, None, 0.10),
    ("StPatricksDay", "Cultural", 3, 17, 17, None, 0.05),
    ("MemorialDay", "National", 5, 25, 31, 0, 0.10),
    ("Father's day", "Cultural", 6, 15, 21, 6, 0.08),
    ("NBAFinalsEnd", "Sporting", 6, 16, 16, None, 0.10),  # can share a day with Father's day: event_name_2
    ("IndependenceDay", "National", 7, 4, 4, None, -0.10),
    ("LaborDay", "National", 9, 1, 7, 0, 0.05),
    ("Halloween", "Cultural", 10, 31, 31, None, 0.10),
    ("Thanksgiving", "National", 11, 22, 28, 3, -0.30),
    ("Christmas", "National", 12, 25, 25, None, -4.0),  # stores closed: almost no sales, as in M5
)
SNAP_DAYS = {"CA": tuple(range(1, 11)), "TX": (1, 3, 5, 6, 7, 9, 11, 12, 15),
             "WI": (2, 3, 5, 6, 8, 9, 11, 12, 14, 15)}  # days of month, as in the real calendar
SNAP_EFFECT = {"CA": 0.12, "TX": 0.18, "WI": 0.25}  # log uplift of FOODS on SNAP days; other states 0.15
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEKLY_PROFILE = np.array([0.25, 0.20, -0.06, -0.10, -0.10, -0.09, 0.05])  # M5 wday order: Sat, Sun, ..., Fri
WEEKLY_SCALE = {"HOBBIES": 0.8, "HOUSEHOLD": 1.0, "FOODS": 1.2}
BASE_RATE = {"HOBBIES": 0.6, "HOUSEHOLD": 0.9, "FOODS": 2.0}  # median units/day of an item in a store
BASE_PRICE = {"HOBBIES": 5.5, "HOUSEHOLD": 5.0, "FOODS": 3.0}
REGIME_SHAPE_FACTOR, REGIME_SHOCK_SD, SHOCK_SD = 0.2, 0.3, 0.04
PROMO_RATE, YEARLY_ORDER, YEAR = 0.05, 3, 365.25


def m5_calendar(start_date: str, n_days: int, states) -> dict[str, np.ndarray]:
    """calendar.csv columns as arrays [n_days]: dates, Walmart weeks, M5 wday (1 = Saturday), events, SNAP.

    wm_yr_wk = 1YYWW: Walmart fiscal year YY starts on the last Saturday on or before 31 January (so
    2011-01-29 is week 11101, as in M5); weeks run Saturday to Friday.
    """
    dates = np.datetime64(start_date, "D") + np.arange(n_days)
    days = dates.astype(np.int64)
    year = dates.astype("datetime64[Y]").astype(np.int64) + 1970
    month = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    dom = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    mon0 = (days + 3) % 7  # Monday = 0 (1970-01-01 was a Thursday)
    years = np.arange(year.min() - 1, year.max() + 1)
    jan31 = np.array([f"{y}-01-31" for y in years], dtype="datetime64[D]").astype(np.int64)
    fy_start = jan31 - (jan31 + 3 - 5) % 7  # back to the Saturday on or before
    k = np.searchsorted(fy_start, days, side="right") - 1
    wm_yr_wk = 10000 + (years[k] % 100) * 100 + (days - fy_start[k]) // 7 + 1
    names = [np.full(n_days, "", dtype=object) for _ in range(4)]  # name_1, type_1, name_2, type_2
    for name, kind, m, lo, hi, wd, _ in EVENTS:
        hit = (month == m) & (dom >= lo) & (dom <= hi) & ((mon0 == wd) if wd is not None else True)
        first = hit & (names[0] == "")
        second = hit & ~first
        names[0][first], names[1][first] = name, kind
        names[2][second], names[3][second] = name, kind
    cal = {"date": dates, "wm_yr_wk": wm_yr_wk, "weekday": np.asarray(WEEKDAY_NAMES)[mon0],
           "wday": (mon0 - 5) % 7 + 1, "month": month, "year": year,
           "d": np.asarray([f"d_{t + 1}" for t in range(n_days)]),
           "event_name_1": names[0], "event_type_1": names[1], "event_name_2": names[2], "event_type_2": names[3]}
    for s in list(SNAP_DAYS) + sorted(set(states) - set(SNAP_DAYS)):
        cal[f"snap_{s}"] = np.isin(dom, SNAP_DAYS.get(s, tuple(range(1, 11)))).astype(np.int64)
    return cal


def _piecewise_trend(rng, n: int, n_days: int, mean_changepoints: float, min_changepoints: int):
    """n piecewise-linear log trends [n, n_days] and their parameters (changepoints in the middle 80%)."""
    t = np.arange(n_days, dtype=np.float64)
    count = min_changepoints + rng.poisson(mean_changepoints, size=n)
    m = max(int(count.max()), 1)
    cp = np.sort(np.where(np.arange(m) < count[:, None],
                          rng.integers(int(0.1 * n_days), int(0.9 * n_days), size=(n, m)), n_days), axis=1)
    slope0 = rng.normal(0.0, 0.3 / n_days, size=n)
    delta = np.where(cp < n_days, rng.normal(0.0, 0.8 / n_days, size=(n, m)), 0.0)
    trend = slope0[:, None] * t
    for j in range(m):  # m is a handful of changepoints; vectorised over series
        trend += delta[:, j, None] * np.maximum(t - cp[:, j, None], 0.0)
    params = [{"slope0": float(slope0[i]), "changepoints": cp[i, :count[i]].tolist(),
               "slope_deltas": delta[i, :count[i]].tolist()} for i in range(n)]
    return trend, params


def generate_m5(folder, n_items_per_dept=3, stores=("CA_1", "CA_2", "TX_1", "WI_1"), n_days: int = 500,
                seed: int = 0, start_date: str = "2011-01-29", *, future_days: int = 28,
                elasticity: float = -1.5) -> dict:
    """Write an M5-format dataset into `folder` and return what was generated (paths, sizes, truth).

    n_items_per_dept: an int (the same for all 7 departments) or a dict department -> count;
    `M5_ITEMS_PER_DEPT`, `M5_STORES` and `M5_N_DAYS` give the real size. The calendar covers
    n_days + future_days days, like the real one (1,969 = 1,941 + 28).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    counts = (dict(n_items_per_dept) if isinstance(n_items_per_dept, dict)
              else {d: int(n_items_per_dept) for _, d in DEPARTMENTS})
    if set(counts) - {d for _, d in DEPARTMENTS} or min(counts.values(), default=0) < 1:
        raise ValueError(f"n_items_per_dept must give >= 1 item for departments of {DEPARTMENTS}: {counts}")
    stores = tuple(stores)
    if not stores or any("_" not in s for s in stores) or len(set(stores)) != len(stores):
        raise ValueError(f"stores must be distinct names like 'CA_1' (state prefix + '_'): {stores}")
    if n_days < 28:
        raise ValueError(f"n_days={n_days} is shorter than one 28-day horizon")
    states = [s.split("_")[0] for s in stores]
    dept_list = [(c, d) for c, d in DEPARTMENTS if d in counts]
    item = np.asarray([f"{d}_{k + 1:03d}" for _, d in dept_list for k in range(counts[d])])
    dept = np.asarray([d for _, d in dept_list for _ in range(counts[d])])
    cat = np.asarray([c for c, d in dept_list for _ in range(counts[d])])
    n_items, n_stores, T = len(item), len(stores), n_days
    cal = m5_calendar(start_date, n_days + future_days, states)
    week_codes, week_of_day = np.unique(cal["wm_yr_wk"], return_inverse=True)
    n_weeks = len(week_codes)

    rng = np.random.default_rng(seed)
    cat_code = np.asarray([CATEGORIES.index(c) for c in cat])
    base = np.log([BASE_RATE[c] for c in cat]) + rng.normal(0.0, 0.8, n_items)
    store_mult = np.exp(rng.normal(0.0, 0.2, n_stores))
    shape = np.exp(rng.normal(np.log(2.0), 0.4, n_items))
    zero_infl = rng.beta(1.0, 6.0, n_items)
    elast = np.clip(rng.normal(elasticity, 0.25, n_items), -3.0, -0.3)
    dept_names = [d for _, d in dept_list]
    dept_coef = rng.normal(0.0, 0.08, (len(dept_names), 2 * YEARLY_ORDER))
    dept_code = np.asarray([dept_names.index(d) for d in dept])
    item_coef = dept_coef[dept_code] + rng.normal(0.0, 0.03, (n_items, 2 * YEARLY_ORDER))
    t = np.arange(T, dtype=np.float64)
    harmonics = np.arange(1, YEARLY_ORDER + 1)[:, None] * 2 * np.pi * t / YEAR  # [K, T]
    yearly = item_coef @ np.concatenate([np.sin(harmonics), np.cos(harmonics)])  # [I, T]
    store_trend, store_trend_params = _piecewise_trend(rng, n_stores, T, 1.0, 1)
    item_trend, item_trend_params = _piecewise_trend(rng, n_items, T, 0.8, 0)
    weekly = np.stack([WEEKLY_SCALE[c] * (WEEKLY_PROFILE - WEEKLY_PROFILE.mean()) for c in CATEGORIES])
    event_log = np.zeros(n_days + future_days)
    for name, _, *_, effect in EVENTS:
        event_log += effect * ((cal["event_name_1"] == name) | (cal["event_name_2"] == name))

    # Prices in integer cents [I, S, W]: regular price, one permanent change for 30% of items, promotions.
    regular = np.round(np.exp(np.log([BASE_PRICE[c] for c in cat]) + rng.normal(0.0, 0.5, n_items))[:, None]
                       * np.exp(rng.normal(0.0, 0.03, n_stores))[None, :] * 100).clip(min=10)  # [I, S]
    change_week = np.where(rng.random(n_items) < 0.3, rng.integers(n_weeks // 4, 3 * n_weeks // 4 + 1, n_items),
                           n_weeks)
    change_factor = np.exp(rng.normal(0.05, 0.05, n_items))
    level = np.where(np.arange(n_weeks)[None, :] >= change_week[:, None], change_factor[:, None], 1.0)  # [I, W]
    promo = rng.random((n_items, n_stores, n_weeks)) < PROMO_RATE
    discount = np.where(promo, rng.uniform(0.10, 0.35, promo.shape), 0.0)
    cents = np.maximum(np.round(regular[:, :, None] * level[:, None, :] * (1 - discount)), 1).astype(np.int64)
    launch_week = np.where(rng.random((n_items, n_stores)) < 0.2,
                           rng.integers(1, max(n_weeks // 2, 2), (n_items, n_stores)), 0)
    first_day_of_week = np.searchsorted(week_of_day, np.arange(n_weeks))
    launch_day = first_day_of_week[launch_week]  # [I, S]

    regimes, in_regime = [], np.zeros((n_stores, T), bool)
    for s in range(n_stores):  # 1-2 regimes per store, each in its own segment of the history
        n_reg = 1 + int(rng.random() < 0.5)
        seg = T // n_reg
        for r in range(n_reg):
            length = int(min(rng.integers(28, 91), seg))
            start = r * seg + int(rng.integers(0, seg - length + 1))
            in_regime[s, start:start + length] = True
            regimes.append({"store": stores[s], "start": start, "end": start + length})
    shock = rng.normal(0.0, 1.0, (n_stores, T)) * np.where(in_regime, REGIME_SHOCK_SD, SHOCK_SD)
    snap_effect = {st: SNAP_EFFECT.get(st, 0.15) for st in set(states)}
    children = np.random.SeedSequence(seed).spawn(n_stores + 1)[1:]

    wday_idx = cal["wday"][:T] - 1
    is_food = (cat == "FOODS")[:, None]
    sales_path = folder / "sales_train_evaluation.csv"
    with open(sales_path, "w", newline="") as f:
        f.write(",".join(["id", "item_id", "dept_id", "cat_id", "store_id", "state_id"]
                         + [f"d_{k + 1}" for k in range(T)]) + "\n")
        for s, store in enumerate(stores):  # one store at a time keeps memory at [n_items, n_days]
            price = cents[:, s, week_of_day[:T]] / 100.0  # [I, T]
            log_mu = (base[:, None] + np.log(store_mult[s]) + weekly[cat_code][:, wday_idx] + yearly
                      + item_trend + store_trend[s] + elast[:, None] * np.log(price * 100.0 / regular[:, s, None])
                      + event_log[None, :T] + snap_effect[states[s]] * cal[f"snap_{states[s]}"][None, :T] * is_food
                      + shock[s])
            mu = np.where(t[None, :] >= launch_day[:, s, None], np.exp(np.minimum(log_mu, np.log(5e3))), 0.0)
            r = shape[:, None] * np.where(in_regime[s], REGIME_SHAPE_FACTOR, 1.0)[None, :]
            rng_s = np.random.default_rng(children[s])
            y = rng_s.negative_binomial(r, r / (r + mu))
            y[rng_s.random(y.shape) < zero_infl[:, None]] = 0
            table = np.asarray([str(v) for v in range(int(y.max()) + 1)], dtype=object)
            prefix = [f"{it}_{store}_evaluation,{it},{dp},{ct},{store},{states[s]},"
                      for it, dp, ct in zip(item.tolist(), dept.tolist(), cat.tolist())]
            f.writelines(p + ",".join(table[row].tolist()) + "\n" for p, row in zip(prefix, y))

    cal_path = folder / "calendar.csv"
    cal_cols = ["date", "wm_yr_wk", "weekday", "wday", "month", "year", "d", "event_name_1", "event_type_1",
                "event_name_2", "event_type_2"] + [c for c in cal if c.startswith("snap_")]
    with open(cal_path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(cal_cols)
        w.writerows(zip(*[cal[c].astype(str).tolist() if c == "date" else cal[c].tolist() for c in cal_cols]))

    price_path = folder / "sell_prices.csv"
    code_str = np.asarray([f",{c}," for c in week_codes.tolist()], dtype=object)
    with open(price_path, "w", newline="") as f:
        f.write("store_id,item_id,wm_yr_wk,sell_price\n")
        for s, store in enumerate(stores):
            ii, ww = np.nonzero(np.arange(n_weeks)[None, :] >= launch_week[:, s, None])  # item-major order
            uniq, inv = np.unique(cents[ii, s, ww], return_inverse=True)
            price_str = np.asarray([f"{c // 100}.{c % 100:02d}\n" for c in uniq.tolist()], dtype=object)
            prefix = np.asarray([f"{store},{it}" for it in item.tolist()], dtype=object)
            f.writelines(map("".join, zip(prefix[ii].tolist(), code_str[ww].tolist(), price_str[inv].tolist())))

    truth = {
        "seed": seed, "n_days": T, "start_date": start_date, "stores": list(stores), "items": item.tolist(),
        "process": (__doc__ or "").partition("The process, ")[2].partition("Everything is drawn")[0].strip(),
        "base_log_rate": base.tolist(), "store_multiplier": dict(zip(stores, store_mult.tolist())),
        "nb_shape": shape.tolist(), "zero_inflation": zero_infl.tolist(), "elasticity": elast.tolist(),
        "weekly_log_effect": {c: weekly[k].tolist() for k, c in enumerate(CATEGORIES)},
        "yearly": {"order": YEARLY_ORDER, "period": YEAR, "basis": "[sin(2 pi k t / P) k=1..K, cos(...) k=1..K]",
                   "dept_coef": dict(zip(dept_names, dept_coef.tolist())), "item_coef": item_coef.tolist()},
        "store_trend": dict(zip(stores, store_trend_params)), "item_trend": item_trend_params,
        "regular_price": {"cents": regular.tolist(), "permanent_change_week": change_week.tolist(),
                          "permanent_change_factor": change_factor.tolist(), "promotion_rate": PROMO_RATE},
        "events": {n: {"type": k, "log_effect": e, "days": np.flatnonzero(
            (cal["event_name_1"][:T] == n) | (cal["event_name_2"][:T] == n)).tolist()} for n, k, *_, e in EVENTS},
        "snap_log_effect_foods": snap_effect,
        "regimes": regimes, "regime_nb_shape_factor": REGIME_SHAPE_FACTOR,
        "regime_shock_sd": REGIME_SHOCK_SD, "shock_sd": SHOCK_SD,
        "launch_day": {f"{item[i]}_{stores[s]}_evaluation": int(launch_day[i, s])
                       for i, s in zip(*np.nonzero(launch_day))},
    }
    truth_path = folder / "truth.json"
    truth_path.write_text(json.dumps(truth))
    return {"folder": folder, "files": {"sales": sales_path, "calendar": cal_path, "prices": price_path,
                                        "truth": truth_path},
            "n_items": n_items, "n_stores": n_stores, "n_series": n_items * n_stores, "n_days": T,
            "n_calendar_days": n_days + future_days, "stores": list(stores), "states": sorted(set(states)),
            "truth": truth}
