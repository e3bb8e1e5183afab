"""What a job leaves behind besides checkpoints: metrics.jsonl, results.json, progress lines and plots.

Every job writes the same files (the job contract in ARCHITECTURE.md), so reports and tests read any run the
same way:
  metrics.jsonl  one JSON object per logged step: {"step": 100, "train/loss": 2.31, ..., "time": 1.7e9}
  results.json   the headline figures of the run, plain keys, rewritten atomically
  *.png          curves drawn from metrics.jsonl

Only process 0 writes (the values are global anyway); the other processes get no-op writers, so a job calls
the same code on every process. A resumed run truncates metrics.jsonl to the resumed step first, so the
file never holds the same step twice. Workdirs may be local folders or bucket URLs (gs://...): all I/O goes
through jaxsuite.core.files (etils.epath, atomic writes); a bucket object cannot be appended to, so there
metrics.jsonl is rewritten whole at every logged step. jaxsuite.core.workdir.Workdir wraps these for a job.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import sys
import time
from typing import Any, Mapping, Sequence, TextIO

import numpy as np

# is_primary, is_remote, join_path, read_text and atomic_write_text are also used from here (re-exported).
from jaxsuite.core.files import (as_path, atomic_write_bytes, atomic_write_text, is_primary,  # noqa: F401
                                 is_remote, join_path, read_text)


def to_python(x: Any) -> Any:
    """jax / numpy values -> plain Python for JSON: scalars -> int/float/bool, arrays -> nested lists."""
    if isinstance(x, (str, bool, int, float)) or x is None:
        return x
    if isinstance(x, Mapping):
        return {str(k): to_python(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_python(v) for v in x]
    try:
        import jax
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            # A global array spanning other processes: metrics are replicated, so a local shard holds it all.
            if not x.sharding.is_fully_replicated:
                raise ValueError(f"cannot log a sharded non-addressable array of shape {x.shape}; "
                                 "reduce it to a replicated value first")
            x = x.addressable_data(0)
    except ImportError:
        pass
    arr = np.asarray(x)
    if arr.ndim == 0:
        return arr.item()
    return arr.tolist()


# --- metrics.jsonl ----------------------------------------------------------------------------------------
class MetricsWriter:
    """Appends one JSON line per logged step to workdir/metrics.jsonl (process 0 only).

    `resume_step`: when the job resumed from a checkpoint at that step (0 for a fresh start), lines with a
    larger step (written after that checkpoint by the interrupted run) are dropped first. None keeps the
    file as it is.

        writer = MetricsWriter(workdir, resume_step=start_step)
        writer.write(step, {"train/loss": loss, "lr": lr})
        writer.close()
    """

    def __init__(self, workdir: str | os.PathLike, *, resume_step: int | None = None,
                 filename: str = "metrics.jsonl", primary: bool | None = None):
        self.path = join_path(workdir, filename)
        self.enabled = is_primary() if primary is None else primary
        self._remote = is_remote(self.path)
        self._lines: list[str] = []        # remote files cannot be appended to: keep them and rewrite
        self._file: TextIO | None = None
        if not self.enabled:
            return
        as_path(self.path).parent.mkdir(parents=True, exist_ok=True)
        existing = self._read_lines()
        if resume_step is not None:
            kept = [ln for ln in existing if _line_step(ln) is not None and _line_step(ln) <= resume_step]
            if len(kept) != len(existing):
                atomic_write_text(self.path, "".join(ln + "\n" for ln in kept))
            existing = kept
        if self._remote:
            self._lines = existing
        else:
            self._file = as_path(self.path).open("a")

    def _read_lines(self) -> list[str]:
        try:
            text = read_text(self.path)
        except (FileNotFoundError, OSError):
            return []
        return [ln for ln in text.splitlines() if ln.strip()]

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Logs `metrics` (scalars; jax/numpy values are converted) at `step`."""
        if not self.enabled:
            return
        row = {"step": int(step)}
        row.update({str(k): to_python(v) for k, v in metrics.items()})
        row.setdefault("time", time.time())
        line = json.dumps(row)
        if self._remote:
            self._lines.append(line)
            atomic_write_text(self.path, "".join(ln + "\n" for ln in self._lines))
        else:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _line_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None   # a torn last line of a crashed run: dropped on resume


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The rows of a metrics.jsonl (a file, or a workdir containing one); torn lines are skipped."""
    path = os.fspath(path)
    if not path.endswith(".jsonl"):
        path = join_path(path, "metrics.jsonl")
    rows = []
    for ln in read_text(path).splitlines():
        try:
            rows.append(json.loads(ln))
        except json.JSONDecodeError:
            continue
    return rows


# --- results.json -----------------------------------------------------------------------------------------
def write_results(workdir: str | os.PathLike, results: Mapping[str, Any], *, filename: str = "results.json",
                  merge: bool = False) -> str | None:
    """Writes the run's headline figures atomically (process 0 only; returns the path there, else None).

    merge=True keeps keys already in the file that `results` does not set (e.g. eval adds to train's).
    """
    if not is_primary():
        return None
    path = join_path(workdir, filename)
    data: dict[str, Any] = {}
    if merge:
        try:
            data = json.loads(read_text(path))
        except (FileNotFoundError, OSError, json.JSONDecodeError):
            data = {}
    data.update({str(k): to_python(v) for k, v in results.items()})
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


# --- progress ---------------------------------------------------------------------------------------------
def _fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _fmt_rate(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.1f}"


_PHASES: list[tuple[str, int]] = []     # (label, training steps of the phases after it), innermost last


@contextlib.contextmanager
def phase(label: str, later_steps: int = 0):
    """Progress lines inside the block start with `[label]` (a pipeline's "stage 2/3") and, when the later
    phases' training steps are given, end with an overall ETA: this phase's remaining steps plus those, at the
    current rate. It is a rough figure (a later phase's step may cost more or less), and says so with "~"."""
    _PHASES.append((str(label), int(later_steps)))
    try:
        yield
    finally:
        _PHASES.pop()


class Progress:
    """Periodic one-line progress reports on stderr: step/total, steps/s, tokens/s, scalars, ETA (with the
    pipeline phase and an overall ETA inside `phase(...)`).

        progress = Progress(cfg.train.steps, start_step=step, every=cfg.train.log_every,
                            tokens_per_step=cfg.data.batch_size * cfg.data.seq_len)
        for step in range(step + 1, cfg.train.steps + 1):
            ...
            progress.update(step, loss=loss)   # prints every `every` steps and at the last step

    Rates are measured over the window since the previous report (the first window includes compilation),
    so they follow the current speed; the ETA extrapolates the last window. Only process 0 prints.
    """

    def __init__(self, total_steps: int, start_step: int = 0, every: int = 100, *,
                 tokens_per_step: int | None = None, name: str = "train", stream: TextIO | None = None,
                 primary: bool | None = None):
        self.total_steps = int(total_steps)
        self.every = max(1, int(every))
        self.tokens_per_step = tokens_per_step
        self.name = name
        self.stream = stream
        self.enabled = is_primary() if primary is None else primary
        self._start_time = self._last_time = time.perf_counter()
        self._last_step = int(start_step)
        self._tokens = 0.0

    def update(self, step: int, *, tokens: float | None = None, **scalars: Any) -> str | None:
        """Records `step` as done (`tokens` processed in it, default tokens_per_step); returns the printed
        line when one is due, else None."""
        self._tokens += tokens if tokens is not None else (self.tokens_per_step or 0)
        if step % self.every and step != self.total_steps:
            return None
        now = time.perf_counter()
        dt = max(now - self._last_time, 1e-9)
        steps = step - self._last_step
        rate = steps / dt if steps > 0 else 0.0
        label = f"[{_PHASES[-1][0]}] " if _PHASES else ""
        parts = [f"{label}{self.name} step {step}/{self.total_steps} "
                 f"({100.0 * step / max(self.total_steps, 1):.0f}%)", f"{rate:.2f} steps/s"]
        if self._tokens:
            parts.append(f"{_fmt_rate(self._tokens / dt)} tok/s")
        for k, v in scalars.items():
            v = to_python(v)
            parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
        eta = (self.total_steps - step) / rate if rate > 0 else float("inf")
        parts.append(f"elapsed {_fmt_duration(now - self._start_time)}")
        parts.append(f"ETA {_fmt_duration(eta) if step < self.total_steps else 'done'}")
        later = _PHASES[-1][1] if _PHASES else 0
        if later and rate > 0:
            parts.append(f"overall ETA ~{_fmt_duration((self.total_steps - step + later) / rate)}")
        line = " | ".join(parts)
        self._last_time, self._last_step, self._tokens = now, step, 0.0
        if self.enabled:
            stream = self.stream or sys.stderr
            stream.write(time.strftime("%H:%M:%S ") + line + "\n")
            stream.flush()
        return line


# --- plots ------------------------------------------------------------------------------------------------
def pyplot():
    """matplotlib.pyplot on the Agg backend: plots are written to files on machines without a display."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, out_png: str | os.PathLike, **savefig_kwargs) -> str:
    """Writes a matplotlib figure as PNG to a local path or a bucket URL (atomically) and closes it."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", **savefig_kwargs)
    finally:
        pyplot().close(fig)
    return atomic_write_bytes(out_png, buf.getvalue())


def plot_curves(metrics_jsonl: str | os.PathLike, keys: Sequence[str], out_png: str | os.PathLike,
                title: str = "", *, log_scale: bool = False, x_key: str = "step") -> str:
    """Draws `keys` of metrics.jsonl against `x_key` into a PNG (matplotlib Agg, no display needed).

    Each key is drawn from the rows that have it, so a train loss logged every step and an eval loss logged
    every 500 share one axis. Raises ValueError when none of the keys occurs in the file.
    """
    plt = pyplot()

    rows = read_metrics(metrics_jsonl)
    series = {}
    for key in keys:
        pts = [(r[x_key], r[key]) for r in rows if key in r and x_key in r and isinstance(r[key], (int, float))]
        if pts:
            series[key] = np.asarray(pts, dtype=np.float64)
    if not series:
        present = sorted({k for r in rows for k in r})
        raise ValueError(f"none of {list(keys)} occurs in {metrics_jsonl} (keys there: {present})")
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for key, pts in series.items():
        sparse = len(pts) < 30
        ax.plot(pts[:, 0], pts[:, 1], marker="o" if sparse else None, markersize=3, linewidth=1.3, label=key)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel(x_key)
    ax.set_title(title or os.fspath(metrics_jsonl))
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, out_png)
