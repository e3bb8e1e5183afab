"""From an M5 hierarchy to model inputs: per-series covariates and (context, horizon) windows.

Every series of the chosen levels is a row; the models are global (one network for all rows), so windows of
all rows are pooled for training. Covariates per row and day, float32 [rows, days, F]:
  the calendar features of jaxsuite.forecast.m5_data.FEATURE_NAMES (weekday sin/cos first: the pattern-aware
  model's seasonality reads them), then the row's relative price and SNAP flag. For an aggregate row these two
  are the means over its bottom series (the share of its items on promotion / in a SNAP state).
"""
from __future__ import annotations

import numpy as np

from jaxsuite.forecast.m5_data import Hierarchy, M5Data, features

COVARIATE_NAMES_EXTRA = ("rel_price", "snap")


def select_rows(hierarchy: Hierarchy, levels) -> np.ndarray:
    """Row indices of the hierarchy's series at the given levels (1..12), level-major."""
    levels = [int(lv) for lv in levels]
    bad = [lv for lv in levels if not 1 <= lv <= 12]
    if bad:
        raise ValueError(f"M5 levels are 1..12, got {bad}")
    return np.concatenate([np.arange(hierarchy.rows(lv).start, hierarchy.rows(lv).stop) for lv in sorted(levels)])


def series_covariates(hierarchy: Hierarchy, data: M5Data, rows: np.ndarray, *, price_ref_end: int) -> np.ndarray:
    """float32 [len(rows), n_days, F]: calendar (shared) + mean relative price + mean SNAP flag per row."""
    feats = features(data, price_ref_end=price_ref_end)
    counts = hierarchy.sum_bottom(np.ones(data.n_series, np.float32))[rows]                 # [R]
    rel = hierarchy.sum_bottom(feats.rel_price)[rows] / counts[:, None]                     # [R, T]
    snap = hierarchy.sum_bottom(feats.snap)[rows] / counts[:, None]                         # [R, T]
    cal = np.broadcast_to(feats.calendar[None], (len(rows),) + feats.calendar.shape)        # [R, T, Fc]
    return np.concatenate([cal, rel[..., None], snap[..., None]], axis=-1).astype(np.float32)


def training_windows(series: np.ndarray, covariates: np.ndarray, end: int, *, context: int, horizon: int,
                     stride: int) -> dict[str, np.ndarray]:
    """All windows whose horizon ends at or before day `end`, every `stride` days, newest aligned to `end`.

    series [R, T], covariates [R, T, F] -> {"context" [M, C], "target" [M, H], "covariates" [M, C + H, F]}.
    """
    if end > series.shape[1]:
        raise ValueError(f"end={end} is past the {series.shape[1]} days of data")
    starts = np.arange(end - context - horizon, -1, -stride)[::-1]                          # window start days
    if starts.size == 0:
        raise ValueError(f"no training window: {end} days before the cut-off, but a window needs "
                         f"context {context} + horizon {horizon}")
    idx = starts[:, None] + np.arange(context + horizon)[None]                              # [W, C + H]
    ctx_tgt = series[:, idx]                                                                # [R, W, C + H]
    cov = covariates[:, idx]                                                                # [R, W, C + H, F]
    flat = ctx_tgt.reshape(-1, context + horizon)
    return {"context": flat[:, :context].astype(np.float32), "target": flat[:, context:].astype(np.float32),
            "covariates": cov.reshape(flat.shape[0], context + horizon, -1).astype(np.float32)}


def forecast_inputs(series: np.ndarray, covariates: np.ndarray, start: int, *, context: int,
                    horizon: int) -> dict[str, np.ndarray]:
    """The inputs to forecast days [start, start + horizon) of every row, and the truth."""
    if start - context < 0 or start + horizon > series.shape[1]:
        raise ValueError(f"a forecast from day {start} needs days [{start - context}, {start + horizon}) "
                         f"within the {series.shape[1]} days of data")
    days = np.arange(start - context, start + horizon)
    return {"context": series[:, start - context:start].astype(np.float32),
            "target": series[:, start:start + horizon].astype(np.float32),
            "covariates": covariates[:, days].astype(np.float32)}
