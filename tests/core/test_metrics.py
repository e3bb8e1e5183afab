"""jaxsuite.core.metrics: the metrics.jsonl writer (truncation on resume, primary-only writes), atomic
results.json, progress lines, and the loss-curve plot."""
import io
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.core import metrics


def test_metrics_writer_truncates_on_resume(tmp_path):
    with metrics.MetricsWriter(tmp_path) as w:
        for step in range(1, 6):
            w.write(step, {"train/loss": np.float32(1.0 / step), "lr": jnp.asarray(0.5)})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "train/lo')                  # a line torn by a crash
    with metrics.MetricsWriter(tmp_path, resume_step=3) as w:
        w.write(4, {"train/loss": 9.0})
    rows = metrics.read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[1]["train/loss"] == pytest.approx(0.5) and rows[0]["lr"] == 0.5 and rows[3]["train/loss"] == 9.0
    assert metrics.MetricsWriter(tmp_path / "other", primary=False).enabled is False
    assert not (tmp_path / "other" / "metrics.jsonl").exists()


def test_write_results_is_atomic_json(tmp_path):
    metrics.write_results(tmp_path, {"loss": np.float64(2.5), "steps": jnp.int32(7), "name": "x"})
    metrics.write_results(tmp_path, {"eval": 1.25}, merge=True)
    assert json.loads((tmp_path / "results.json").read_text()) == {"loss": 2.5, "steps": 7, "name": "x",
                                                                    "eval": 1.25}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]   # no temp file left behind


def test_progress_lines():
    stream = io.StringIO()
    prog = metrics.Progress(10, start_step=0, every=5, tokens_per_step=1000, stream=stream, primary=True)
    lines = [prog.update(s, loss=jnp.float32(1.5)) for s in range(1, 11)]
    assert [i + 1 for i, ln in enumerate(lines) if ln] == [5, 10]
    assert "step 5/10 (50%)" in lines[4] and "steps/s" in lines[4] and "tok/s" in lines[4]
    assert "loss=1.5" in lines[4] and "ETA" in lines[4] and "ETA done" in lines[9]
    assert stream.getvalue().count("\n") == 2


def test_progress_names_the_phase_and_gives_an_overall_eta(monkeypatch):
    """Inside `phase("stage 2/3", later_steps=30)`: a line starts with the phase and ends with the overall ETA,
    this phase's remaining steps plus the later ones at the current rate (here 1 step per second, by a fake
    clock: 10 + 30 steps = 40 s)."""
    now = [0.0]
    monkeypatch.setattr(metrics.time, "perf_counter", lambda: now[0])
    prog = metrics.Progress(20, every=10, stream=io.StringIO(), primary=True)
    with metrics.phase("stage 2/3", later_steps=30):
        for step in range(1, 11):
            now[0] += 1.0                                   # each step takes a second
            line = prog.update(step)
    assert line.startswith("[stage 2/3] train step 10/20") and "ETA 10s" in line
    assert line.endswith("overall ETA ~40s"), line
    assert not prog.update(20).startswith("[")             # outside the phase: no label, no overall ETA


def test_plot_curves(tmp_path, check_png):
    with metrics.MetricsWriter(tmp_path) as w:
        for step in range(1, 41):
            row = {"train/loss": 3.0 / step}
            if step % 10 == 0:
                row["eval/loss"] = 3.5 / step
            w.write(step, row)
    out = metrics.plot_curves(tmp_path / "metrics.jsonl", ["train/loss", "eval/loss"], tmp_path / "loss.png",
                              "loss", log_scale=True)
    assert Path(out) == tmp_path / "loss.png"
    check_png(out, size=(770, 462))                      # 7 x 4.2 inches at 110 dpi
    with pytest.raises(ValueError, match="nope"):
        metrics.plot_curves(tmp_path / "metrics.jsonl", ["nope"], tmp_path / "x.png")
