"""The job infrastructure: config loading and overrides, the launcher, and process planning. (Metrics files and
plots are in test_metrics.py, checkpoints in test_checkpoint.py.)"""
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxsuite import launch
from jaxsuite.core import config_utils, distributed
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
def test_list_shows_every_config_and_each_listed_variant_loads(capsys):
    """`--list`: every file in configs/ with its summary and variants (the first marked default); every variant
    it lists builds, with the job it names importable, and the default is what the bare file gives."""
    assert launch.main(["--list"]) is None
    text = capsys.readouterr().out
    files = sorted(p.name for p in (REPO / "configs").glob("*.py"))
    assert [line.split(":")[0] for line in text.splitlines() if not line.startswith(" ")] == [
        f"configs/{f}" for f in files]
    for entry in config_utils.list_configs():
        assert entry["variants"] and not entry["summary"].startswith("(does not"), entry
        for i, name in enumerate(entry["variants"]):
            assert f"    :{name:<10} " in text and (i > 0 or f":{name:<10} " in text)
            config = config_utils.load_config(entry["path"], name)
            if i == 0:
                assert config.to_dict() == config_utils.load_config(entry["path"]).to_dict(), entry["path"]
            module, _, function = config.job.partition(":")
            assert callable(getattr(__import__(module, fromlist=[function]), function))
    with pytest.raises(ValueError, match=r"choose one of: cpu, tiny, 0\.6b, 1\.7b, 4b, 8b"):
        config_utils.load_config("configs/qwen3_pretrain.py", "13b")


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
