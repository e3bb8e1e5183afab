"""Multi-host on one machine: two processes of `python -m jaxsuite.launch` joined over loopback (gloo CPU
collectives), 2 forced CPU devices each, must compute exactly what one process with 4 devices computes.

The harness is `jaxsuite.core.distributed.spawn_local`; `run_launcher` below wraps it for any config (the
full pretrain job can be added with one more test that calls it).
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxsuite import launch
from jaxsuite.core import distributed

FIXTURES = Path(__file__).parent / "launch_fixtures"
REPO = Path(__file__).resolve().parents[2]
LINREG = FIXTURES / "linreg_config.py"


def run_launcher(num_processes, args, *, devices_per_process=2, timeout=120.0, **kwargs):
    """Runs `python -m jaxsuite.launch *args` as `num_processes` coordinated CPU processes from the repo root
    (with the fixture jobs importable); returns their ProcessResults."""
    env = {"PYTHONPATH": os.pathsep.join([str(FIXTURES), str(REPO), os.environ.get("PYTHONPATH", "")])}
    return distributed.spawn_local(num_processes, [str(a) for a in args], devices_per_process=devices_per_process,
                                   timeout=timeout, env=env, cwd=str(REPO), **kwargs)


def test_two_processes_match_one_process(tmp_path, monkeypatch):
    if jax.device_count() < 4:
        pytest.skip("the single-process reference needs 4 (forced host) devices")
    results = run_launcher(2, ["--config", LINREG, "--workdir", tmp_path / "multi"])
    assert all(r.ok for r in results), distributed.format_results(results)

    monkeypatch.syspath_prepend(str(FIXTURES))
    ref = launch.main(["--config", str(LINREG), "--workdir", str(tmp_path / "single")])   # 1 process, 4 devices
    assert ref["process_count"] == 1 and ref["mesh_devices"] == 4

    for pid in (0, 1):
        got = json.loads((tmp_path / "multi" / f"result_{pid}.json").read_text())
        assert (got["process_index"], got["process_count"], got["device_count"]) == (pid, 2, 4)
        np.testing.assert_allclose(got["losses"], ref["losses"], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got["w"], ref["w"], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got["b"], ref["b"], rtol=1e-6, atol=1e-7)
        # The checkpoint written by both processes, restored replicated, replays the same steps.
        assert got["resumed_from"] == 3
        np.testing.assert_allclose(got["resumed_losses"], got["losses"][3:], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got["w_after_resume"], got["w"], rtol=1e-6, atol=1e-7)
        assert got["rng_ok"] and got["metadata_loss"] == pytest.approx(got["losses"][2])

    multi = tmp_path / "multi"
    rows = [json.loads(ln) for ln in (multi / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]          # process 0 only, resume truncated
    assert json.loads((multi / "results.json").read_text())["final_loss"] == pytest.approx(ref["losses"][-1])
    data_dir = multi / "checkpoints" / "3" / "data"
    assert {"process_0-of-2.json", "process_1-of-2.json"} <= {p.name for p in data_dir.iterdir()}


def test_harness_reports_bad_arguments_from_every_process(tmp_path):
    results = run_launcher(2, ["--config", LINREG, "--workdir", tmp_path / "w", "--config.nope=1"], timeout=60)
    assert [r.returncode for r in results] == [2, 2], distributed.format_results(results)
    assert all("config.nope" in r.stderr for r in results)


def test_harness_stops_peers_of_a_failed_process(tmp_path):
    cfg = tmp_path / "fail_cfg.py"
    cfg.write_text("import ml_collections\n\ndef get_config():\n"
                   "    return ml_collections.ConfigDict(dict(job='launch_fixture_jobs:fail_on_one_process',"
                   " fail_process=1))\n")
    results = run_launcher(2, ["--config", cfg, "--workdir", tmp_path / "w"], timeout=90,
                           peer_failure_grace=3.0)
    assert results[1].returncode == 1 and "deliberate failure on process 1" in results[1].stderr
    assert not results[0].ok, distributed.format_results(results)   # killed, or aborted by jax's heartbeat
