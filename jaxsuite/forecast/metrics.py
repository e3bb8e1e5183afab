"""Evaluation metrics for probabilistic forecasting on M5: WRMSSE, WSPL, CRPS, MMD and interval coverage.

Definitions followed (M5 Competitors' Guide, 10 March 2020, sections "Point forecasts", "Probabilistic
forecasts" and "Weighting"; Makridakis, Spiliotis & Assimakopoulos 2020):

  RMSSE_i = sqrt( (1/h) sum_{t=n+1}^{n+h} (Y_t - F_t)^2  /  ( (1/(n-1)) sum_{t=2}^{n} (Y_t - Y_{t-1})^2 ) )
  SPL_i(u) = (1/h) sum_{t=n+1}^{n+h} rho_u(Y_t - Q_t(u))  /  ( (1/(n-1)) sum_{t=2}^{n} |Y_t - Y_{t-1}| )
      with rho_u(e) = u * e if e >= 0 else (u - 1) * e  (the pinball / quantile loss)
  WRMSSE = sum_i w_i RMSSE_i,   WSPL = sum_i w_i (1/9) sum_j SPL_i(u_j),  u_j in M5_QUANTILES

where the in-sample series Y_1..Y_n is the history *counted from its first non-zero demand*: leading zeros
(days before the product was on sale) are dropped before the one-step naive errors of the scale are taken.
The weights w_i are each series' dollar sales over the last 28 in-sample days, normalised (in M5 per
aggregation level, and the 12 levels averaged; passing all levels' weights here and letting them be
normalised to sum 1 is the same average).

Zero scale. A series whose trimmed history has no non-zero one-step difference (all zeros, constant after
its first sale, or its first sale on the last day) has an undefined scaled error; M5 never had one among its
evaluated series. Every scaled metric takes `zero_scale`: "raise" (default) raises a ValueError naming the
rows; "exclude" gives those rows NaN in the per-series output and drops them from the weighted sum, with the
remaining weights renormalised to sum 1 (a warning says how much weight was dropped). A zero-scale series
whose weight is exactly 0 contributes nothing and is skipped silently by wrmsse/wspl under either option.

Weights that do not sum to 1 (within 1e-6) are normalised with a UserWarning; negative or non-finite weights
raise. Not M5 but used alongside: CRPS (sample, quantile and Gaussian forms), MMD^2 with a mixture of RBF
kernels (the training/evaluation discrepancy of the LDL-MoE paper, arXiv 2602.04678) and central interval
coverage. Everything runs on host numpy arrays in float64; `crps_samples` and `mmd2` also accept jax arrays
(then they use jax.numpy, skip value checks that would need concrete values, and are differentiable).
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import erf

M5_QUANTILES = (0.005, 0.025, 0.165, 0.25, 0.5, 0.75, 0.835, 0.975, 0.995)
DEFAULT_BANDWIDTHS = (0.2, 0.5, 1.0, 2.0, 5.0)
_ZERO_SCALE = ("raise", "exclude")


# ----------------------------------------------------------------------------------------- validation
def _host(name: str, x, ndim: int | None = None) -> np.ndarray:
    """float64 copy of `x`, rejecting NaN/inf (a NaN actual would silently poison every mean)."""
    arr = np.asarray(x, dtype=np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN/inf value(s); fill or drop them before scoring")
    return arr


def _same_shape(**arrays: np.ndarray) -> None:
    shapes = {k: tuple(v.shape) for k, v in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"shape mismatch: {shapes}")


def _quantile_grid(quantiles: Sequence[float]) -> np.ndarray:
    q = np.asarray(quantiles, dtype=np.float64)
    if q.ndim != 1 or q.size == 0:
        raise ValueError(f"quantiles must be a non-empty 1-d sequence, got shape {q.shape}")
    if not (np.all(q > 0) and np.all(q < 1)):
        raise ValueError(f"quantile levels must lie strictly inside (0, 1), got {q.tolist()}")
    if q.size > 1 and not np.all(np.diff(q) > 0):
        raise ValueError(f"quantile levels must be strictly increasing, got {q.tolist()}")
    return q


def _check_quantile_forecast(actual: np.ndarray, q_forecast: np.ndarray, q: np.ndarray) -> None:
    if q_forecast.shape != actual.shape + (q.size,):
        raise ValueError(f"quantile forecasts must have shape actual.shape + (Q,) = {actual.shape + (q.size,)}, "
                         f"got {q_forecast.shape}")


def _normalised_weights(weights, n: int) -> np.ndarray:
    w = _host("weights", weights, ndim=1)
    if w.shape[0] != n:
        raise ValueError(f"weights has {w.shape[0]} entries for {n} series")
    if np.any(w < 0):
        raise ValueError("weights must be non-negative")
    total = w.sum()
    if total <= 0:
        raise ValueError("weights sum to 0")
    if abs(total - 1.0) > 1e-6:
        warnings.warn(f"weights sum to {total:.6g}, not 1; normalising them (for all 12 M5 levels with "
                      "per-level weights this equals the M5 average over levels)", UserWarning, stacklevel=3)
    return w / total


def _check_history(history: np.ndarray, actual: np.ndarray) -> None:
    if history.ndim != 2 or actual.ndim != 2:
        raise ValueError(f"history [N, T_hist] and actual [N, H] must be 2-d, got {history.shape} and {actual.shape}")
    if history.shape[0] != actual.shape[0]:
        raise ValueError(f"history has {history.shape[0]} series but actual has {actual.shape[0]}")
    if history.shape[1] < 2:
        raise ValueError(f"history needs at least 2 days for a one-step naive error, got {history.shape[1]}")


# ------------------------------------------------------------------------------------------- M5 scales
def naive_scale(history, power: int = 2) -> np.ndarray:
    """Mean |one-step difference|**power of each history row counted from its first non-zero value. [N]

    power=2 is the RMSSE denominator, power=1 the SPL denominator (M5 guide). Entries are 0 where the
    scale is undefined or zero: an all-zero history, a constant one after the first sale, or a first sale on
    the last day (no difference left).
    """
    h = _host("history", history, ndim=2)                          # [N, T]
    n, t = h.shape
    nonzero = h != 0
    first = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), t)  # [N]; t = never sold
    diffs = np.abs(np.diff(h, axis=1)) ** power                   # [N, T-1]; index j is Y_{j+1} - Y_j
    keep = np.arange(t - 1)[None, :] >= first[:, None]             # differences inside the trimmed series
    count = keep.sum(axis=1)                                       # n_i - 1
    total = np.where(keep, diffs, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def _check_zero_scale_mode(zero_scale: str) -> None:
    if zero_scale not in _ZERO_SCALE:
        raise ValueError(f"zero_scale must be one of {_ZERO_SCALE}, got {zero_scale!r}")


def _zero_scale_error(what: str, rows: np.ndarray) -> ValueError:
    return ValueError(f"{what}: series {rows[:10].tolist()}{'...' if rows.size > 10 else ''} have a zero "
                      "in-sample scale (no non-zero one-step difference after the first sale); pass "
                      "zero_scale='exclude' to drop them and renormalise the weights")


def _weighted_mean_over_series(per_series: np.ndarray, weights, ok: np.ndarray, zero_scale: str,
                               what: str) -> float:
    """sum_i w_i x_i over usable rows; weights normalised first, then over the kept rows (see module doc)."""
    w = _normalised_weights(weights, per_series.shape[0])
    drop = ~ok & (w > 0)                                            # zero-scale rows that carry weight
    if drop.any():
        if zero_scale == "raise":
            raise _zero_scale_error(what, np.flatnonzero(drop))
        lost = float(w[drop].sum())
        if lost >= 1.0 - 1e-12:
            raise ValueError(f"{what}: every weighted series has a zero scale; nothing to score")
        warnings.warn(f"{what}: excluded {int(drop.sum())} zero-scale series carrying weight {lost:.4g}; "
                      "renormalised the rest", UserWarning, stacklevel=3)
    w = np.where(ok, w, 0.0)
    w = w / w.sum()
    return float(np.sum(w * np.where(ok, per_series, 0.0)))


def _rmsse_rows(history, actual, forecast) -> tuple[np.ndarray, np.ndarray]:
    """(RMSSE [N] with NaN where the scale is zero, usable-row mask [N])."""
    hist = _host("history", history)
    y = _host("actual", actual)
    f = _host("forecast", forecast)
    _check_history(hist, y)
    _same_shape(actual=y, forecast=f)
    scale = naive_scale(hist, power=2)                                # [N]
    ok = scale > 0
    mse = np.mean((y - f) ** 2, axis=1)                               # [N]
    return np.where(ok, np.sqrt(mse / np.where(ok, scale, 1.0)), np.nan), ok


def _spl_rows(history, actual, quantile_forecasts, quantiles) -> tuple[np.ndarray, np.ndarray]:
    """(SPL [N, Q] with NaN rows where the scale is zero, usable-row mask [N])."""
    hist = _host("history", history)
    y = _host("actual", actual)
    _check_history(hist, y)
    loss = pinball(y, quantile_forecasts, quantiles).mean(axis=1)    # [N, Q]: pinball averaged over horizon
    scale = naive_scale(hist, power=1)                                # [N]
    ok = scale > 0
    return np.where(ok[:, None], loss / np.where(ok, scale, 1.0)[:, None], np.nan), ok


def rmsse(history, actual, forecast, *, zero_scale: str = "raise") -> np.ndarray:
    """Root mean squared scaled error per series (M5 guide, point forecasts). [N]

    history [N, T_hist], actual [N, H], forecast [N, H]. Under zero_scale='exclude' undefined rows are NaN.
    """
    _check_zero_scale_mode(zero_scale)
    per, ok = _rmsse_rows(history, actual, forecast)
    if zero_scale == "raise" and not ok.all():
        raise _zero_scale_error("rmsse", np.flatnonzero(~ok))
    return per


def wrmsse(history, actual, forecast, weights, *, zero_scale: str = "raise") -> float:
    """Weighted RMSSE, sum_i w_i RMSSE_i with weights [N] (M5 guide, "Weighting").

    A zero-scale series with weight exactly 0 is skipped even under zero_scale='raise'.
    """
    _check_zero_scale_mode(zero_scale)
    per, ok = _rmsse_rows(history, actual, forecast)
    return _weighted_mean_over_series(per, weights, ok, zero_scale, "wrmsse")


# ------------------------------------------------------------------------------------ quantile losses
def pinball(actual, q_forecast, quantiles) -> np.ndarray:
    """Pinball loss rho_u(y - q) per quantile. actual [...], q_forecast [..., Q] -> [..., Q].

    Under-prediction (q < y) costs u per unit, over-prediction (1 - u): a high quantile is penalised more for
    being too low, which is what makes the minimiser the u-quantile.
    """
    q = _quantile_grid(quantiles)
    y = _host("actual", actual)
    f = _host("q_forecast", q_forecast)
    _check_quantile_forecast(y, f, q)
    err = y[..., None] - f                                            # [..., Q]
    return np.where(err >= 0, q * err, (q - 1.0) * err)


def spl(history, actual, quantile_forecasts, quantiles=M5_QUANTILES, *, zero_scale: str = "raise") -> np.ndarray:
    """Scaled pinball loss per series and quantile (M5 guide, probabilistic forecasts). -> [N, Q]

    history [N, T_hist], actual [N, H], quantile_forecasts [N, H, Q]. The pinball loss is averaged over the
    horizon and divided by the mean absolute one-step difference of the history from its first non-zero
    demand. Kept per quantile ([N, Q], not averaged) so quantile-wise calibration can be read off; `wspl`
    averages over Q. Zero-scale rows are NaN under zero_scale='exclude'.
    """
    _check_zero_scale_mode(zero_scale)
    per, ok = _spl_rows(history, actual, quantile_forecasts, quantiles)
    if zero_scale == "raise" and not ok.all():
        raise _zero_scale_error("spl", np.flatnonzero(~ok))
    return per


def wspl(history, actual, quantile_forecasts, weights, quantiles=M5_QUANTILES, *,
         zero_scale: str = "raise") -> float:
    """Weighted SPL: sum_i w_i (1/Q) sum_j SPL_i(u_j), the M5 uncertainty score (same weights as WRMSSE).

    A zero-scale series with weight exactly 0 is skipped even under zero_scale='raise'.
    """
    _check_zero_scale_mode(zero_scale)
    per, ok = _spl_rows(history, actual, quantile_forecasts, quantiles)
    return _weighted_mean_over_series(per.mean(axis=1), weights, ok, zero_scale, "wspl")


# ------------------------------------------------------------------------------------------------- CRPS
def crps_samples(actual, samples, *, fair: bool = False):
    """CRPS from an ensemble in energy form: E|X - y| - 0.5 E|X - X'|. actual [...], samples [S, ...] -> [...]

    E|X - X'| over all S^2 ordered pairs (diagonal included) is the plug-in estimate: the CRPS of the
    empirical distribution itself. fair=True divides by S(S-1) instead (Ferro 2014), unbiased for the CRPS of
    the distribution the samples were drawn from. Computed from sorted samples in O(S log S):
    sum_{i,j} |x_i - x_j| = 2 sum_k (2k - S - 1) x_(k). Works (and differentiates) on jax arrays.
    """
    xp = jnp if isinstance(samples, jax.Array) or isinstance(actual, jax.Array) else np
    if xp is np:
        y = _host("actual", actual)
        x = _host("samples", samples)
    else:
        y, x = jnp.asarray(actual), jnp.asarray(samples)
        dt = jnp.result_type(y.dtype, x.dtype, jnp.float32)
        y, x = y.astype(dt), x.astype(dt)
    if x.ndim < 1 or tuple(x.shape[1:]) != tuple(y.shape):
        raise ValueError(f"samples must have shape (S,) + actual.shape = (S,) + {tuple(y.shape)}, got {tuple(x.shape)}")
    s = x.shape[0]
    if fair and s < 2:
        raise ValueError("fair CRPS needs at least 2 samples")
    term1 = xp.mean(xp.abs(x - y[None]), axis=0)                      # [...]
    xs = xp.sort(x, axis=0)                                           # [S, ...]
    k = xp.arange(1, s + 1, dtype=xs.dtype).reshape((s,) + (1,) * y.ndim)
    pair_sum = 2.0 * xp.sum((2.0 * k - s - 1.0) * xs, axis=0)          # sum_{i,j} |x_i - x_j|
    denom = s * (s - 1) if fair else s * s
    return term1 - 0.5 * pair_sum / denom


def crps_quantiles(actual, q_forecast, quantiles) -> np.ndarray:
    """CRPS approximated from quantile forecasts as 2 x mean pinball over the grid. [...]

    CRPS(F, y) = 2 int_0^1 rho_u(y - F^{-1}(u)) du (Gneiting & Raftery 2007, Laio & Tamea 2007); the mean over
    the given levels is a Riemann sum of that integral. It is accurate for a dense, evenly spaced grid (e.g.
    0.01..0.99); on the uneven 9-level M5 grid it is only a rough, grid-dependent number, comparable between
    models scored on the same grid but not to a sample-based CRPS.
    """
    return 2.0 * pinball(actual, q_forecast, quantiles).mean(axis=-1)


def crps_gaussian(actual, mu, sigma) -> np.ndarray:
    """Closed-form CRPS of N(mu, sigma^2): sigma [z(2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)], z = (y - mu)/sigma."""
    y, m, s = _host("actual", actual), _host("mu", mu), _host("sigma", sigma)
    if np.any(s <= 0):
        raise ValueError("sigma must be positive")
    z = (y - m) / s
    cdf = 0.5 * (1.0 + erf(z / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return s * (z * (2.0 * cdf - 1.0) + 2.0 * pdf - 1.0 / math.sqrt(math.pi))


# -------------------------------------------------------------------------------------------------- MMD
def _points(xp, name: str, x, vector_points: bool):
    """Shape [..., n, d] regardless of whether points are scalars ([..., n]) or vectors ([..., n, d])."""
    if vector_points:
        if x.ndim < 2:
            raise ValueError(f"{name} with vector_points=True must be [..., n, d], got shape {tuple(x.shape)}")
        return x
    if x.ndim < 1:
        raise ValueError(f"{name} must be [..., n], got a scalar")
    return x[..., None]


def _set_weights(xp, name: str, w, pts, batch):
    n = pts.shape[-2]
    if w is None:
        return xp.full(batch + (n,), 1.0 / n, dtype=pts.dtype)
    w = xp.asarray(w, dtype=pts.dtype)
    if tuple(w.shape) != tuple(pts.shape[:-1]):
        raise ValueError(f"{name} must have shape {tuple(pts.shape[:-1])} (one weight per point), got {tuple(w.shape)}")
    if xp is np and (not np.all(np.isfinite(w)) or np.any(w < 0) or np.any(w.sum(-1) <= 0)):
        raise ValueError(f"{name} must be finite, non-negative and not all zero")
    return w / xp.sum(w, axis=-1, keepdims=True)


def mmd2(x, y, bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS, weights_x=None, weights_y=None, *,
         unbiased: bool = False, vector_points: bool = False):
    """Squared maximum mean discrepancy with a mixture of Gaussian kernels. -> [...] (batch shape)

    x [..., n] and y [..., m] (scalar points), or [..., n, d] / [..., m, d] with vector_points=True; the batch
    shapes must match. k(a, b) = (1/B) sum_b exp(-|a - b|^2 / (2 sigma_b^2)), the mean over the bandwidths so
    that k(a, a) = 1 whatever B is; several bandwidths keep the test sensitive at several length scales
    (Gretton et al. 2012; Li et al. 2015). The data should be on a scale where the bandwidths make sense
    (e.g. divided by the series' naive scale).

    Weighted point sets: a label distribution over bins is the bin centres with their probabilities; weights
    are normalised to sum 1 per set. Biased V-statistic (default):
        wx' Kxx wx + wy' Kyy wy - 2 wx' Kxy wy   (>= 0; equals unweighted MMD on repeated points)
    unbiased=True drops the diagonals of Kxx and Kyy and rescales by 1 / (1 - sum w_i^2), which for uniform
    weights is the U-statistic sum_{i!=j} k / (n(n-1)) of Gretton et al.; it can be negative. Accepts jax
    arrays (computed in jax.numpy, differentiable) for use as a training loss.
    """
    xp = jnp if isinstance(x, jax.Array) or isinstance(y, jax.Array) else np
    if xp is np:
        xa, ya = _host("x", x), _host("y", y)
    else:
        xa, ya = jnp.asarray(x), jnp.asarray(y)
        dt = jnp.result_type(xa.dtype, ya.dtype, jnp.float32)
        xa, ya = xa.astype(dt), ya.astype(dt)
    bw = np.asarray(bandwidths, dtype=np.float64).reshape(-1)
    if bw.size == 0 or not np.all(bw > 0):
        raise ValueError(f"bandwidths must be a non-empty sequence of positive numbers, got {bandwidths}")
    px, py = _points(xp, "x", xa, vector_points), _points(xp, "y", ya, vector_points)  # [..., n, d], [..., m, d]
    if tuple(px.shape[:-2]) != tuple(py.shape[:-2]) or px.shape[-1] != py.shape[-1]:
        raise ValueError(f"x and y must share batch shape and point dimension, got {tuple(xa.shape)} and "
                         f"{tuple(ya.shape)} (vector_points={vector_points})")
    batch = tuple(px.shape[:-2])
    wx = _set_weights(xp, "weights_x", weights_x, px, batch)          # [..., n]
    wy = _set_weights(xp, "weights_y", weights_y, py, batch)          # [..., m]
    if unbiased and (px.shape[-2] < 2 or py.shape[-2] < 2):
        raise ValueError("unbiased MMD needs at least 2 points in each set")
    inv2s2 = xp.asarray(1.0 / (2.0 * bw ** 2), dtype=px.dtype)       # [B]

    def gram(a, b):                                                   # [..., p, d], [..., r, d] -> [..., p, r]
        d2 = xp.sum((a[..., :, None, :] - b[..., None, :, :]) ** 2, axis=-1)
        return xp.mean(xp.exp(-d2[..., None] * inv2s2), axis=-1)

    def quad(w1, k, w2):                                              # w1' K w2 per batch element
        return xp.sum(w1[..., :, None] * k * w2[..., None, :], axis=(-2, -1))

    kxx, kyy, kxy = gram(px, px), gram(py, py), gram(px, py)
    if not unbiased:
        return quad(wx, kxx, wx) + quad(wy, kyy, wy) - 2.0 * quad(wx, kxy, wy)

    def within(w, k):                                                 # sum_{i!=j} w_i w_j k_ij / (1 - sum w^2)
        diag = xp.sum(w * w * xp.diagonal(k, axis1=-2, axis2=-1), axis=-1)
        return (quad(w, k, w) - diag) / (1.0 - xp.sum(w * w, axis=-1))

    return within(wx, kxx) + within(wy, kyy) - 2.0 * quad(wx, kxy, wy)


# ------------------------------------------------------------------------------------------- coverage
def interval_coverage(actual, lower, upper) -> float:
    """Fraction of actuals inside the closed interval [lower, upper]; all three of the same shape."""
    y, lo, hi = _host("actual", actual), _host("lower", lower), _host("upper", upper)
    _same_shape(actual=y, lower=lo, upper=hi)
    if y.size == 0:
        raise ValueError("actual is empty")
    if np.any(lo > hi):
        raise ValueError(f"{int(np.sum(lo > hi))} interval(s) have lower > upper (crossing quantiles?); "
                         "sort the quantile forecasts along the last axis or pass rearrange=True")
    return float(np.mean((y >= lo) & (y <= hi)))


def _quantile_at(q_forecast: np.ndarray, grid: np.ndarray, level: float) -> np.ndarray:
    """Forecast of quantile `level`, linear in the level between the two neighbouring grid points."""
    if level < grid[0] - 1e-12 or level > grid[-1] + 1e-12:
        raise ValueError(f"quantile level {level:g} lies outside the forecast grid [{grid[0]:g}, {grid[-1]:g}]; "
                         "cannot interpolate, only extrapolate")
    hit = np.flatnonzero(np.isclose(grid, level, rtol=0, atol=1e-9))
    if hit.size:
        return q_forecast[..., hit[0]]
    j = int(np.searchsorted(grid, level))                             # grid[j-1] < level < grid[j]
    t = (level - grid[j - 1]) / (grid[j] - grid[j - 1])
    return (1.0 - t) * q_forecast[..., j - 1] + t * q_forecast[..., j]


def coverage_from_quantiles(actual, q_forecast, quantiles, levels: Sequence[float] = (0.5, 0.8, 0.95), *,
                            rearrange: bool = False) -> dict[float, float]:
    """Empirical coverage of central intervals [(1-l)/2, (1+l)/2] per nominal level l. -> {l: coverage}

    actual [...], q_forecast [..., Q]. Quantile levels not in the grid are interpolated linearly in the level
    between neighbouring grid points (on the M5 grid: 50% uses 0.25/0.75 and 95% uses 0.025/0.975 exactly;
    80% needs 0.1/0.9, interpolated between 0.025 and 0.165 and between 0.835 and 0.975). Levels outside the
    grid raise. rearrange=True sorts crossing quantile forecasts (Chernozhukov et al. 2010) first.
    """
    grid = _quantile_grid(quantiles)
    y = _host("actual", actual)
    f = _host("q_forecast", q_forecast)
    _check_quantile_forecast(y, f, grid)
    if rearrange:
        f = np.sort(f, axis=-1)
    out = {}
    for level in levels:
        level = float(level)
        if not 0.0 < level < 1.0:
            raise ValueError(f"coverage levels must lie in (0, 1), got {level}")
        lo = _quantile_at(f, grid, (1.0 - level) / 2.0)
        hi = _quantile_at(f, grid, (1.0 + level) / 2.0)
        out[level] = interval_coverage(y, lo, hi)
    return out


__all__ = ["M5_QUANTILES", "DEFAULT_BANDWIDTHS", "naive_scale", "rmsse", "wrmsse", "pinball", "spl", "wspl",
           "crps_samples", "crps_quantiles", "crps_gaussian", "mmd2", "interval_coverage",
           "coverage_from_quantiles"]
