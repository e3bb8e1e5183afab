"""Plots of the forecasting job: fan charts (median and 50/80/95% intervals over the last test window) and
the pattern-aware model's components (trend, seasonality, changepoint, volatility)."""
from __future__ import annotations

import numpy as np

from jaxsuite.core.files import join_path
from jaxsuite.core.metrics import pyplot, save_figure


def showcase_rows(levels: np.ndarray, per_level=(1, 3, 5, 12)) -> list[int]:
    """One row (index into the modelled rows) per level in `per_level` that is present: the busiest level
    first (the total), then a store, a department and a bottom series."""
    picks = []
    for lv in per_level:
        where = np.flatnonzero(levels == lv)
        if where.size:
            picks.append(int(where[0]))
    return picks or [0]


def fan_charts(series, levels, keys, rows, split, fans: dict, quantiles, workdir: str, *, context: int) -> list[str]:
    """fan_<model>.png per model: the last `context` days of history, the truth and the forecast's intervals."""
    plt = pyplot()
    q = list(quantiles)
    start, end = split.test
    picks = showcase_rows(levels)
    paths = []
    for name, (qf, _) in fans.items():
        fig, axes = plt.subplots(1, len(picks), figsize=(4.2 * len(picks), 3.2), squeeze=False)
        for ax, r in zip(axes[0], picks):
            days = np.arange(start - context, end)
            ax.plot(days, series[r, start - context:end], color="black", lw=1, label="actual")
            fut = np.arange(start, end)
            for level, alpha in ((0.95, 0.15), (0.8, 0.25), (0.5, 0.4)):
                lo_q, hi_q = round((1 - level) / 2, 3), round((1 + level) / 2, 3)
                if lo_q in q and hi_q in q:
                    ax.fill_between(fut, qf[r, :, q.index(lo_q)], qf[r, :, q.index(hi_q)], color="tab:blue",
                                    alpha=alpha, lw=0, label=f"{int(level * 100)}%")
            ax.plot(fut, qf[r, :, q.index(0.5)], color="tab:blue", lw=1.5, label="median")
            ax.set_title(f"L{int(levels[r])}: {keys[rows[r]]}"[:48], fontsize=9)
            ax.axvline(start, color="gray", lw=0.8, ls=":")
        axes[0][0].legend(fontsize=7, loc="upper left")
        fig.suptitle(f"{name}: forecasts of the last test window")
        fig.tight_layout()
        paths.append(save_figure(fig, join_path(workdir, f"fan_{name}.png"), dpi=110))
    return paths


def component_plot(series, levels, keys, split, out: dict, out_png: str) -> str:
    """The pattern-aware model's components for the showcase series (in the series' units: z times scale)."""
    plt = pyplot()
    picks = showcase_rows(levels)
    comps, scale = out["components"], out["scale"]
    names = ("trend", "seasonality", "changepoint", "volatility")
    fig, axes = plt.subplots(len(names) + 1, len(picks), figsize=(4.2 * len(picks), 9), squeeze=False, sharex=True)
    start, end = split.test
    fut = np.arange(start, end)
    for j, r in enumerate(picks):
        total = (comps["trend"][r] + comps["seasonality"][r] + comps["changepoint"][r]) * scale[r]
        axes[0][j].plot(fut, series[r, start:end], color="black", lw=1, label="actual")
        axes[0][j].plot(fut, total, color="tab:red", lw=1.5, label="mean = trend + season + changepoint")
        axes[0][j].set_title(f"L{int(levels[r])}: {keys[r]}"[:48], fontsize=9)
        for i, name in enumerate(names, start=1):
            axes[i][j].plot(fut, comps[name][r] * scale[r], color="tab:green")
            axes[i][j].set_ylabel(name, fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Pattern-aware LDL-MoE: forecast components (last test window)")
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=110)
