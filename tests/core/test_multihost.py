"""Multi-host on one machine: two processes of `python -m jaxsuite.launch` joined over loopback (gloo CPU
collectives), 2 forced CPU devices each, must compute exactly what one process with 4 devices computes.

The harness is `jaxsuite.core.distributed.spawn_local`; `run_launcher` below wraps it for any config. Three
levels: a sharded linear regression (checkpoint / data-iterator / metrics plumbing), the real CausalLM and
train step on a mesh whose fsdp axis spans the processes (bit-for-bit the 1-process numbers, up to float
summation order), and the main pre-training job end to end (train, eval, checkpoint, sample, HF export, resume).
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
DECODER = FIXTURES / "decoder_config.py"


def run_launcher(num_processes, args, *, devices_per_process=2, timeout=120.0, env=None, **kwargs):
    """Runs `python -m jaxsuite.launch *args` as `num_processes` coordinated CPU processes from the repo root
    (with the fixture jobs importable, plus any `env` variables); returns their ProcessResults."""
    env = {**(env or {}),
           "PYTHONPATH": os.pathsep.join([str(FIXTURES), str(REPO), os.environ.get("PYTHONPATH", "")])}
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


def _digest_matrix(digest):
    """{leaf path: [sum, sum of squares, weighted sum]} -> [leaves, 3] array in a fixed leaf order."""
    return np.asarray([digest[k] for k in sorted(digest)])


@pytest.mark.slow
def test_decoder_train_steps_match_across_processes(tmp_path, monkeypatch):
    """init_model + create_train_state + 3 make_train_step steps of a CausalLM: 2 processes x 2 devices with
    fsdp spanning the processes compute what 1 process with 4 devices computes."""
    if jax.device_count() < 4:
        pytest.skip("the single-process reference needs 4 (forced host) devices")
    results = run_launcher(2, ["--config", DECODER, "--workdir", tmp_path / "multi"])
    assert all(r.ok for r in results), distributed.format_results(results)

    monkeypatch.syspath_prepend(str(FIXTURES))
    ref = launch.main(["--config", str(DECODER), "--workdir", str(tmp_path / "single")])  # 1 process, 4 devices
    assert ref["process_count"] == 1 and ref["rows"] == list(range(8)) and ref["batch_ok"]
    assert ref["mesh"] == {"data": 2, "fsdp": 2, "tensor": 1}
    assert ref["param_specs"]["['embed_tokens']['embedding'].value"] == "P('tensor', 'fsdp')"
    assert len(set(ref["losses"])) == 3 and all(np.isfinite(ref["losses"]))   # every step moved the params

    for pid in (0, 1):
        got = json.loads((tmp_path / "multi" / f"result_{pid}.json").read_text())
        assert (got["process_index"], got["process_count"], got["device_count"]) == (pid, 2, 4)
        # Batch rows follow the mesh's (data, fsdp) flattening: block i of 2 rows lives on mesh position
        # (i // 2, i % 2); fsdp is the process axis, so each process holds every other block.
        assert got["rows"] == [[0, 1, 4, 5], [2, 3, 6, 7]][pid]
        assert got["batch_ok"]                      # the assembled global batch is the numpy global batch
        assert got["param_specs"] == ref["param_specs"] and got["step"] == 3
        # Random init does not depend on the process layout: identical bits.
        np.testing.assert_array_equal(_digest_matrix(got["init_digest"]), _digest_matrix(ref["init_digest"]))
        np.testing.assert_allclose(got["losses"], ref["losses"], rtol=1e-6)
        np.testing.assert_allclose(got["grad_norms"], ref["grad_norms"], rtol=1e-6)
        # Cross-process (gloo) reductions add in another order than in-process ones: float32 noise only.
        g, r = _digest_matrix(got["final_digest"]), _digest_matrix(ref["final_digest"])
        np.testing.assert_allclose(g[:, 1], r[:, 1], rtol=1e-6)                 # sums of squares (> 0)
        np.testing.assert_allclose(g[:, [0, 2]], r[:, [0, 2]], rtol=1e-6, atol=1e-6)  # signed sums near 0
        assert not np.allclose(g, _digest_matrix(got["init_digest"]), rtol=1e-3)   # training changed them


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_pretrain_job_runs_and_resumes_across_processes(tmp_path):
    """The main job (configs/qwen3_pretrain.py:tiny) as 2 processes x 2 devices, parameters sharded over all 4
    devices (fsdp=4 spans the processes): train, eval, checkpoint, sample, export; then the same command again
    resumes from the final checkpoint and only evaluates / samples / exports."""
    from safetensors.numpy import load_file

    work = tmp_path / "run"
    args = ["--config", REPO / "configs" / "qwen3_pretrain.py:tiny", "--workdir", work,
            "--config.train.steps=6", "--config.train.checkpoint_every=3", "--config.mesh.fsdp=4",
            "--config.model.arch.num_hidden_layers=1"]
    # A compilation cache private to this test: the resumed run compiles the same programs (init, eval,
    # sampling) and loads them instead, which halves its time on CPU; it changes no numbers.
    cache = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
             "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    results = run_launcher(2, args, timeout=240, env=cache)
    assert [r.returncode for r in results] == [0, 0], distributed.format_results(results)

    first = json.loads((work / "results.json").read_text())
    assert first["resumed_from_step"] == 0 and first["steps"] == 6
    assert np.isfinite(first["final_train_loss"]) and np.isfinite(first["eval_loss"])
    rows = _read_jsonl(work / "metrics.jsonl")
    assert [r["step"] for r in rows] == [2, 4, 6]                     # log_every=2, process 0 only
    assert all(np.isfinite(r["train/loss"]) for r in rows)
    assert rows[-1]["train/loss"] == pytest.approx(first["final_train_loss"])
    assert rows[-1]["eval/loss"] == pytest.approx(first["eval_loss"])
    assert sorted(p.name for p in (work / "checkpoints").iterdir() if p.name.isdigit()) == ["3", "6"]
    for step in ("3", "6"):      # the data-iterator state of every process is in each checkpoint
        names = {p.name for p in (work / "checkpoints" / step / "data").iterdir()}
        assert {"process_0-of-2.json", "process_1-of-2.json"} <= names
    assert len(first["samples"]) == 1 and first["samples"][0].startswith("def fibonacci(n):\n")
    assert (work / "samples.txt").read_text().startswith(first["samples"][0])
    assert (work / "loss.png").stat().st_size > 0

    # The export holds the whole final model (gathered from shards on both processes): its global norm is the
    # param_norm the train step measured after update 6.
    hf_config = json.loads((work / "hf" / "config.json").read_text())
    assert (hf_config["model_type"], hf_config["num_hidden_layers"], hf_config["hidden_size"]) == ("qwen3", 1, 64)
    weights = load_file(str(work / "hf" / "model.safetensors"))
    assert weights["model.embed_tokens.weight"].shape == (260, 64)
    norm = np.sqrt(sum(float(np.sum(np.square(w, dtype=np.float64))) for w in weights.values()))
    assert norm == pytest.approx(rows[-1]["train/param_norm"], rel=1e-5)

    # Same command again: resumes at step 6, trains nothing, reproduces eval / samples / export from the
    # restored state.
    results = run_launcher(2, args, timeout=240, env=cache)
    assert [r.returncode for r in results] == [0, 0], distributed.format_results(results)
    again = json.loads((work / "results.json").read_text())
    assert again["resumed_from_step"] == 6 and again["train_tokens_per_second_this_run"] == 0
    assert _read_jsonl(work / "metrics.jsonl") == rows
    assert sorted(p.name for p in (work / "checkpoints").iterdir() if p.name.isdigit()) == ["3", "6"]
    assert again["eval_loss"] == pytest.approx(first["eval_loss"], rel=1e-6)
    assert again["samples"] == first["samples"]
    reloaded = load_file(str(work / "hf" / "model.safetensors"))
    assert reloaded.keys() == weights.keys()
    for name, w in weights.items():
        np.testing.assert_array_equal(reloaded[name], w, err_msg=name)


@pytest.mark.slow
def test_a_preemption_notice_to_one_host_stops_every_host_at_the_same_step(tmp_path):
    """SIGTERM to process 1 only (one host's preemption notice): the processes agree at the next check, save
    one checkpoint of that step together, and both exit 143; process 0 says where the run stopped."""
    import re
    import signal
    import threading
    import time

    work = tmp_path / "run"
    args = ["--config", REPO / "configs" / "qwen3_pretrain.py:tiny", "--workdir", work,
            "--config.train.steps=3000", "--config.train.checkpoint_every=1000", "--config.train.log_every=1",
            "--config.mesh.fsdp=4", "--config.model.arch.num_hidden_layers=1", "--config.sample.num_samples=0"]

    def preempt_process_1(procs):
        def watch():
            metrics = work / "metrics.jsonl"
            deadline = time.time() + 200
            while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
                time.sleep(0.2)
            procs[1].send_signal(signal.SIGTERM)
        threading.Thread(target=watch, daemon=True).start()

    results = run_launcher(2, args, timeout=240, on_start=preempt_process_1)
    assert [r.returncode for r in results] == [143, 143], distributed.format_results(results)
    said = re.search(r"stopped by SIGTERM at step (\d+); checkpoint saved in (\S+)\. Resume with:", results[0].stderr)
    assert said and said.group(2) == str(work), results[0].stderr[-2000:]
    step = int(said.group(1))
    assert step >= 3 and (work / "checkpoints" / str(step)).is_dir()
    names = {p.name for p in (work / "checkpoints" / str(step) / "data").iterdir()}
    assert {"process_0-of-2.json", "process_1-of-2.json"} <= names     # both processes wrote that step
    assert "Traceback" not in results[0].stderr + results[1].stderr
