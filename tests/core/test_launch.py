"""The job infrastructure: config loading and overrides, the launcher, process planning, metrics files and
checkpoints (sharded round trip onto another mesh, iterator state, rng, shape errors, atomicity, retention)."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import io
import json
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxsuite import launch
from jaxsuite.core import config_utils, distributed, metrics
from jaxsuite.core.checkpoint import Checkpointer, CheckpointMismatchError
from jaxsuite.core.config_utils import ConfigError

FIXTURES = Path(__file__).parent / "launch_fixtures"
REPO = Path(__file__).resolve().parents[2]

CONFIG_TEXT = textwrap.dedent('''
    """A tiny config for the launcher tests."""
    import ml_collections

    def get_config(arg=None):
        c = ml_collections.ConfigDict()
        c.job = "launch_fixture_jobs:record_job"
        c.seed = 0
        c.name = "base"
        c.lr = 0.1
        c.flag = True
        c.dims = (1, 2, 3)
        c.optional = None
        c.train = ml_collections.ConfigDict(dict(steps=10, schedule="cosine"))
        if arg == "small":
            c.train.steps = 2
            c.name = "small"
        return c
''')


@pytest.fixture
def cfg_file(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))   # makes launch_fixture_jobs importable in-process
    path = tmp_path / "tiny_cfg.py"
    path.write_text(CONFIG_TEXT)
    return path


# --- configs and overrides --------------------------------------------------------------------------------
def test_load_config_with_and_without_arg(cfg_file):
    base = config_utils.load_config(str(cfg_file))
    small = config_utils.load_config(f"{cfg_file}:small")
    assert (base.train.steps, base.name) == (10, "base")
    assert (small.train.steps, small.name) == (2, "small")
    assert config_utils.split_config_spec("a/b.py:x:y=1") == ("a/b.py", "x:y=1")
    with pytest.raises(ConfigError, match="no get_config"):
        (cfg_file.parent / "empty.py").write_text("x = 1\n")
        config_utils.load_config(str(cfg_file.parent / "empty.py"))


def test_overrides_are_parsed_by_field_type(cfg_file, tmp_path):
    args = launch.parse_args([
        "--config", f"{cfg_file}:small", "--workdir", str(tmp_path / "wd"),
        "--config.train.steps=7", "--config.lr", "1", "--config.flag=false", "--config.name=123",
        "--config.dims=(4,5)", "--config.optional=[1, 2]", "--config.train.schedule", "linear"])
    c = args.config
    assert c.train.steps == 7 and type(c.train.steps) is int
    assert c.lr == 1.0 and type(c.lr) is float          # an int literal for a float field becomes float
    assert c.flag is False
    assert c.name == "123"                              # a str field keeps digits as a string
    assert c.dims == (4, 5)
    assert c.optional == [1, 2]
    assert c.train.schedule == "linear"
    assert args.workdir == str(tmp_path / "wd") and args.config_arg == "small"
    assert args.overrides["train.steps"] == "7"


def test_unknown_key_and_bad_type_name_the_key(cfg_file):
    with pytest.raises(ConfigError, match=r"config\.train\.stepz.*did you mean 'steps'"):
        launch.parse_args(["--config", str(cfg_file), "--config.train.stepz=3"])
    with pytest.raises(ConfigError, match=r"config\.nope"):
        launch.parse_args(["--config", str(cfg_file), "--config.nope=1"])
    with pytest.raises(ConfigError, match=r"config\.train\.steps='abc'.*int"):
        launch.parse_args(["--config", str(cfg_file), "--config.train.steps=abc"])
    with pytest.raises(ConfigError, match=r"config\.train\.steps='2\.5'"):
        launch.parse_args(["--config", str(cfg_file), "--config.train.steps=2.5"])
    with pytest.raises(ConfigError, match=r"config\.flag='maybe'.*bool"):
        launch.parse_args(["--config", str(cfg_file), "--config.flag=maybe"])
    with pytest.raises(ConfigError, match=r"config\.lr.*needs a value"):
        launch.parse_args(["--config", str(cfg_file), "--config.lr"])
    with pytest.raises(ConfigError, match="unrecognised arguments: --wrkdir"):
        launch.parse_args(["--config", str(cfg_file), "--wrkdir", "x"])
    with pytest.raises(ConfigError, match="not found"):
        launch.parse_args(["--config", "no/such/config.py"])


def test_config_paths_resolve_cwd_first_then_repo_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config_utils.resolve_config_path("jaxsuite/launch.py") == REPO / "jaxsuite" / "launch.py"
    (tmp_path / "jaxsuite").mkdir()
    (tmp_path / "jaxsuite" / "launch.py").write_text("")
    assert config_utils.resolve_config_path("jaxsuite/launch.py") == tmp_path / "jaxsuite" / "launch.py"
    assert config_utils.DEFAULT_CONFIG == "configs/halo_tiny.py"
    assert config_utils.default_workdir("configs/qwen3_pretrain.py", "tiny") == os.path.join(
        "runs", "qwen3_pretrain-tiny")
    assert config_utils.default_workdir("x/cfg.py", None) == os.path.join("runs", "cfg")


# --- the launcher -----------------------------------------------------------------------------------------
def test_launcher_calls_the_job_and_warns_on_a_changed_config(cfg_file, tmp_path, caplog):
    wd = str(tmp_path / "run")
    assert launch.main(["--config", str(cfg_file), "--workdir", wd, "--config.train.steps=3"]) == "ok"
    called = json.loads((Path(wd) / "job_called.json").read_text())
    assert called["workdir"] == wd and called["config_type"] == "ConfigDict"
    assert called["config"]["train"]["steps"] == 3
    assert json.loads((Path(wd) / "config.json").read_text())["train"]["steps"] == 3

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jaxsuite.config"):
        launch.main(["--config", str(cfg_file), "--workdir", wd])          # same workdir, steps back to 10
    assert "DIFFERENT CONFIG" in caplog.text and "train.steps: 3 -> 10" in caplog.text
    assert json.loads((Path(wd) / "config.previous.json").read_text())["train"]["steps"] == 3
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jaxsuite.config"):
        launch.main(["--config", str(cfg_file), "--workdir", wd])          # identical rerun: no warning
    assert "DIFFERENT CONFIG" not in caplog.text


def test_launcher_rejects_a_job_that_does_not_exist(cfg_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        launch.main(["--config", str(cfg_file), "--workdir", str(tmp_path / "w"),
                     "--config.job=launch_fixture_jobs:no_such_job"])
    assert e.value.code == 2 and "no_such_job" in capsys.readouterr().err


def test_launcher_subprocess_fails_at_start_on_an_unknown_key(cfg_file, tmp_path):
    wd = tmp_path / "never"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(FIXTURES), str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "jaxsuite.launch", "--config", str(cfg_file),
                           "--workdir", str(wd), "--config.nope=1"],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "config.nope" in proc.stderr and "Traceback" not in proc.stderr
    assert not (wd / "job_called.json").exists()


# --- multi-process planning (pure: reads only the env dict it is given) ----------------------------------
def test_plan_distributed_sources():
    single = distributed.plan_distributed(env={})
    assert single.mode == "single" and not single.multi_process
    flags = distributed.plan_distributed("10.0.0.1:1234", 2, 1, env={})
    assert flags.mode == "explicit" and dict(flags.kwargs) == {
        "coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}
    env = {"JAXSUITE_COORDINATOR": "h:9", "JAXSUITE_NUM_PROCESSES": "4", "JAXSUITE_PROCESS_ID": "3"}
    assert dict(distributed.plan_distributed(env=env).kwargs)["process_id"] == 3
    assert dict(distributed.plan_distributed(process_id=0, env=env).kwargs)["process_id"] == 0  # flag wins
    with pytest.raises(ValueError, match="missing: coordinator_address"):
        distributed.plan_distributed(num_processes=2, process_id=0, env={})
    with pytest.raises(ValueError, match="outside"):
        distributed.plan_distributed("h:1", 2, 2, env={})
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_PROCID": "1", "SLURM_NTASKS": "4",
             "SLURM_STEP_NODELIST": "gpu[017-020],other", "SLURM_NTASKS_PER_NODE": "1"}
    per_node = distributed.plan_distributed(env=slurm)
    # jax's rule: first host of the node list, port = job id % 4096 + 61440.
    assert per_node.mode == "slurm" and dict(per_node.kwargs) == {
        "coordinator_address": f"gpu017:{4242 % 4096 + 61440}", "num_processes": 4, "process_id": 1,
        "cluster_detection_method": "deactivate"}
    per_gpu = distributed.plan_distributed(env=dict(slurm, SLURM_NTASKS_PER_NODE="8"))
    assert per_gpu.mode == "slurm" and dict(per_gpu.kwargs) == {}
    assert distributed.plan_distributed(env=dict(slurm, SLURM_NTASKS="1")).mode == "single"
    assert distributed.plan_distributed(env=dict(slurm, JAXSUITE_DISTRIBUTED="off")).mode == "single"


# --- metrics, results, progress, plots --------------------------------------------------------------------
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


def test_plot_curves(tmp_path):
    with metrics.MetricsWriter(tmp_path) as w:
        for step in range(1, 41):
            row = {"train/loss": 3.0 / step}
            if step % 10 == 0:
                row["eval/loss"] = 3.5 / step
            w.write(step, row)
    out = metrics.plot_curves(tmp_path / "metrics.jsonl", ["train/loss", "eval/loss"], tmp_path / "loss.png",
                              "loss", log_scale=True)
    assert Path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Path(out).stat().st_size > 5000
    with pytest.raises(ValueError, match="nope"):
        metrics.plot_curves(tmp_path / "metrics.jsonl", ["nope"], tmp_path / "x.png")


# --- checkpoints ------------------------------------------------------------------------------------------
def _train_state(mesh, spec_kernel):
    """A real train state: NNX Linear params (kernel sharded by `spec_kernel`) + adamw state + step."""
    model = nnx.Linear(8, 16, rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    opt_state = optax.adamw(1e-3).init(params)
    opt_state = jax.tree.map(lambda x: x + 0.25 if jnp.issubdtype(x.dtype, jnp.floating) else x, opt_state)
    state = {"params": params, "opt": opt_state, "step": jnp.int32(5)}

    def put(x):
        spec = spec_kernel if np.ndim(x) == 2 else P()
        return jax.device_put(x, NamedSharding(mesh, spec))
    return jax.tree.map(put, state)


def _abstract(state, mesh, spec_kernel):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(
        x.shape, x.dtype, sharding=NamedSharding(mesh, spec_kernel if x.ndim == 2 else P())), state)


@pytest.fixture
def meshes():
    if jax.device_count() < 8:
        pytest.skip("needs 8 (forced host) devices")
    devs = np.asarray(jax.devices()[:8])
    return Mesh(devs.reshape(4, 2), ("data", "tensor")), Mesh(devs[:4].reshape(2, 2), ("fsdp", "tensor"))


def test_checkpoint_round_trip_onto_another_mesh(tmp_path, meshes):
    mesh_a, mesh_b = meshes
    state = _train_state(mesh_a, P("data", "tensor"))
    it = iter(grain.MapDataset.range(100).shuffle(seed=3).batch(4).to_iter_dataset())
    for _ in range(3):
        next(it)
    rng = jax.random.fold_in(jax.random.key(7), 3)
    ckpt = Checkpointer(tmp_path, max_to_keep=3, config={"a": 1})
    assert ckpt.restore_latest(_abstract(state, mesh_b, P(None, "fsdp"))) is None       # fresh start
    assert ckpt.save(5, state, data_iterator=it, rng=rng, metadata={"loss": 1.5})
    assert not ckpt.save(5, state)                                                       # exists: skipped
    expected_next = np.asarray(next(it))                                                 # the 4th batch
    ckpt.close()

    fresh = iter(grain.MapDataset.range(100).shuffle(seed=3).batch(4).to_iter_dataset())
    target = _abstract(state, mesh_b, P(None, "fsdp"))                                  # other mesh + specs
    step, restored, extra = Checkpointer(tmp_path, config={"a": 1}).restore_latest(target, data_iterator=fresh)
    assert step == 5
    for got, want, tgt in zip(jax.tree.leaves(restored), jax.tree.leaves(state), jax.tree.leaves(target)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
        assert got.sharding == tgt.sharding
    assert isinstance(restored["params"], nnx.State)
    assert type(restored["opt"][0]).__name__ == "ScaleByAdamState"
    np.testing.assert_array_equal(np.asarray(next(fresh)), expected_next)
    np.testing.assert_array_equal(jax.random.key_data(extra["rng"]), jax.random.key_data(rng))
    assert extra["metadata"] == {"loss": 1.5} and extra["data_restored"]
    assert extra["config_hash"] == config_utils.config_hash({"a": 1})


def test_checkpoint_dataloader_iterator_and_raw_key(tmp_path):
    """A grain DataLoader iterator (bytes state) and a legacy uint32 PRNGKey survive a round trip."""
    def loader():
        return grain.DataLoader(
            data_source=grain.sources.RangeDataSource(0, 50, 1),
            sampler=grain.samplers.IndexSampler(50, shard_options=grain.sharding.NoSharding(), shuffle=True,
                                                seed=1, num_epochs=1),
            operations=[grain.transforms.Batch(5)], worker_count=0)
    it = iter(loader())
    next(it), next(it)
    state = {"w": jnp.arange(6.0).reshape(2, 3)}
    key = jax.random.PRNGKey(11)
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(2, state, data_iterator=it, rng=key)
    want = np.asarray(next(it))
    fresh = iter(loader())
    step, restored, extra = Checkpointer(tmp_path).restore_latest(state, data_iterator=fresh)
    np.testing.assert_array_equal(np.asarray(next(fresh)), want)
    np.testing.assert_array_equal(np.asarray(extra["rng"]), np.asarray(key))
    np.testing.assert_array_equal(np.asarray(restored["w"]), np.asarray(state["w"]))


def test_checkpoint_shape_mismatch_names_the_parameter(tmp_path, meshes):
    mesh_a, _ = meshes
    state = _train_state(mesh_a, P("data", "tensor"))
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state)
    wrong = _abstract(state, mesh_a, P())
    wrong["params"]["kernel"] = nnx.Param(jax.ShapeDtypeStruct((8, 12), jnp.float32))
    with pytest.raises(CheckpointMismatchError) as e:
        Checkpointer(tmp_path).restore_latest(wrong)
    msg = str(e.value)
    assert "params.kernel" in msg and "(8, 16)" in msg and "(8, 12)" in msg
    missing = _abstract(state, mesh_a, P())
    missing["extra_param"] = jax.ShapeDtypeStruct((3,), jnp.float32)
    with pytest.raises(CheckpointMismatchError, match="missing from the checkpoint.*extra_param"):
        Checkpointer(tmp_path).restore_latest(missing)


def test_checkpoint_ignores_a_crashed_save_and_keeps_max_to_keep(tmp_path):
    state = {"w": jnp.ones((4,)), "n": jnp.int32(0)}
    ckpt = Checkpointer(tmp_path, max_to_keep=2)
    for step in (1, 2, 3, 4):
        ckpt.save(step, {"w": state["w"] * step, "n": jnp.int32(step)})
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [3, 4]
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir() if p.name.isdigit()) == ["3", "4"]
    # A crash in the middle of writing step 6 (and an older-style tmp name for step 5): complete-looking
    # content, but never renamed into place.
    shutil.copytree(root / "4", root / "6.orbax-checkpoint-tmp")
    shutil.copytree(root / "4", root / "5.orbax-checkpoint-tmp-1700000000")
    step, restored, _ = ckpt.restore_latest(state)
    assert step == 4 and int(restored["n"]) == 4
    ckpt.close()
    step, restored, _ = Checkpointer(tmp_path, max_to_keep=2).restore_latest(state)   # a fresh process
    assert step == 4
    np.testing.assert_array_equal(np.asarray(restored["w"]), 4 * np.ones(4))
