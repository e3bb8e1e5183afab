"""Faults a run survives: an unreadable latest checkpoint (truncated or deleted files) falls back to the one
before it, moved aside and reported in one line; one run per workdir (a lock naming its holder, taken over
from a killed run)."""
import json
import logging
import os
import subprocess
import sys

import grain
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.core.checkpoint import Checkpointer
from jaxsuite.core.lock import LOCK, WorkdirLock, WorkdirLocked


def _saved_steps(tmp_path, steps, iterator=None):
    state = {"w": jnp.arange(4096.0).reshape(64, 64), "n": jnp.int32(0)}
    with Checkpointer(tmp_path, max_to_keep=5) as ckpt:
        for step in steps:           # a step consumes one batch, then saves
            if iterator is not None:
                next(iterator)
            ckpt.save(step, {"w": state["w"] * step, "n": jnp.int32(step)}, data_iterator=iterator)
    return state


def _largest_file(folder):
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _loader():
    return grain.DataLoader(
        data_source=grain.sources.RangeDataSource(0, 40, 1),
        sampler=grain.samplers.IndexSampler(40, shard_options=grain.sharding.NoSharding(), shuffle=False,
                                            seed=0, num_epochs=1),
        operations=[grain.transforms.Batch(4)], worker_count=0)


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_an_unreadable_latest_checkpoint_falls_back_to_the_one_before(tmp_path, caplog, damage):
    iterator = iter(_loader())
    state = _saved_steps(tmp_path, (1, 2), iterator)
    victim = _largest_file(tmp_path / "checkpoints" / "2" / "state")
    if damage == "truncate":          # half of its largest file, as a disk that filled up would leave it
        data = victim.read_bytes()
        victim.write_bytes(data[:len(data) // 2])
    else:
        victim.unlink()
    fresh = iter(_loader())
    with caplog.at_level(logging.WARNING, logger="jaxsuite.checkpoint"):
        step, restored, extra = Checkpointer(tmp_path).restore_latest(state, data_iterator=fresh)
    assert step == 1 and int(restored["n"]) == 1
    np.testing.assert_array_equal(np.asarray(restored["w"]), np.arange(4096.0).reshape(64, 64))
    # the iterator resumes where step 1 left it (the second batch), not where the broken step 2 did
    assert extra["data_restored"] and np.asarray(next(fresh)).tolist() == [4, 5, 6, 7]
    # one line names the step and why; the broken checkpoint is out of the way, not deleted
    (line,) = [r.getMessage() for r in caplog.records if "does not restore" in r.getMessage()]
    assert line.startswith("checkpoint step 2 does not restore (") and "\n" not in line
    assert not (tmp_path / "checkpoints" / "2").exists()
    (aside,) = (tmp_path / "checkpoints.unreadable").iterdir()
    assert aside.name.startswith("2-") and (aside / "state").is_dir()
    assert Checkpointer(tmp_path).all_steps() == [1]


def test_no_checkpoint_that_restores_means_a_fresh_start(tmp_path):
    state = _saved_steps(tmp_path, (3,))
    _largest_file(tmp_path / "checkpoints" / "3" / "state").write_bytes(b"")
    assert Checkpointer(tmp_path).restore_latest(state) is None
    assert Checkpointer(tmp_path).all_steps() == []


def test_a_second_run_on_a_locked_workdir_stops_and_names_the_holder(tmp_path):
    with WorkdirLock(tmp_path, primary=True) as lock:
        holder = json.loads((tmp_path / LOCK).read_text())
        assert holder["pid"] == os.getpid() and lock.held
        with WorkdirLock(tmp_path, primary=True):      # re-entrant in the process that holds it
            pass
        other = WorkdirLock(tmp_path, primary=True)
        other.me = {**other.me, "pid": os.getpid() + 1}  # another process of this host
        with pytest.raises(WorkdirLocked, match=rf"in use by another run \(pid {os.getpid()} on "):
            other.acquire()
    assert not (tmp_path / LOCK).exists()
    # a lock of another host is not ours to judge; a non-primary process never takes one
    (tmp_path / LOCK).write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": 0.0}))
    with pytest.raises(WorkdirLocked, match=r"pid 1 on elsewhere.*delete .*run\.lock"):
        WorkdirLock(tmp_path, primary=True).acquire()
    assert not WorkdirLock(tmp_path, primary=False).acquire().held


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)                               # a process of this host that has exited
    import socket
    (tmp_path / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": 0.0}))
    with caplog.at_level(logging.WARNING, logger="jaxsuite.lock"):
        with WorkdirLock(tmp_path, primary=True):
            assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert any(f"pid {pid} on" in r.getMessage() and "gone" in r.getMessage() for r in caplog.records)


def test_the_launcher_refuses_a_workdir_another_run_holds(tmp_path, capsys):
    """The table's 'same command twice on one workdir': the second run exits 2 before touching anything."""
    import socket
    from jaxsuite import launch
    (tmp_path / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": 1, "started": 0.0,
                                             "command": "python -m jaxsuite.launch (the first run)"}))
    with pytest.raises(SystemExit) as e:
        launch.main(["--config", "configs/qwen3_pretrain.py:tiny", "--workdir", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m jaxsuite.launch: error: ") and "in use by another run (pid 1 on" in err[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK]      # nothing written, the lock untouched


def _launch(workdir, *extra):
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "jaxsuite.launch", "--config", "configs/qwen3_pretrain.py:tiny", "--workdir",
           str(workdir), "--config.train.steps=3000", "--config.train.checkpoint_every=1000",
           "--config.train.log_every=1", *extra]
    return subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})


def _stop_after(proc, workdir, signum, logged_steps: int) -> tuple[int, str]:
    """Sends `signum` once metrics.jsonl holds `logged_steps` lines; (exit code, output)."""
    import time
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 240
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= logged_steps):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, "the run logged nothing in 4 minutes"
        time.sleep(0.2)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=240)
    return proc.returncode, out


@pytest.mark.slow
def test_ctrl_c_and_sigterm_save_a_checkpoint_and_say_how_to_resume(tmp_path):
    """A real SIGINT to a running launcher: it checkpoints the step it is on, prints where it stopped and the
    command that resumes, exits 130 without a traceback; the resumed run continues from that step and a SIGTERM
    (a preemption) stops it the same way with 143."""
    import re
    import signal
    code, out = _stop_after(_launch(tmp_path), tmp_path, signal.SIGINT, 3)
    assert code == 130 and "Traceback" not in out, out[-3000:]
    tail = out.strip().splitlines()
    m = re.search(r"stopped by SIGINT at step (\d+); checkpoint saved in (\S+)\. Resume with:", tail[-2])
    assert m and m.group(2) == str(tmp_path), tail[-4:]
    assert tail[-1].strip().startswith("python -m jaxsuite.launch --config configs/qwen3_pretrain.py:tiny")
    first = int(m.group(1))
    assert first >= 3 and (tmp_path / "checkpoints" / str(first)).is_dir() and not (tmp_path / LOCK).exists()
    code, out = _stop_after(_launch(tmp_path), tmp_path, signal.SIGTERM, first + 3)
    assert code == 143 and "Traceback" not in out, out[-3000:]
    assert f"resumed from step {first}" in out
    second = int(re.search(r"stopped by SIGTERM at step (\d+)", out).group(1))
    assert second > first and (tmp_path / "checkpoints" / str(second)).is_dir()


@pytest.mark.parametrize("case", ["negative seq_len", "malformed config.json", "missing init_from"])
def test_input_errors_end_in_one_line_without_a_traceback(tmp_path, capsys, case):
    """The table's bad inputs, through the launcher: exit 1, the last line names the key or file, no traceback
    (`--debug` gives it back)."""
    from jaxsuite import launch
    bad = tmp_path / "ckpt"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "qwen3", "hidden_size": ')
    extra, expected = {
        "negative seq_len": (["--config.data.seq_len=-4"], "seq_len"),
        "malformed config.json": ([f"--config.model.init_from={bad}"], f"{bad / 'config.json'} is not valid JSON"),
        "missing init_from": ([f"--config.model.init_from={tmp_path / 'nowhere'}"], str(tmp_path / "nowhere")),
    }[case]
    argv = ["--config", "configs/qwen3_pretrain.py:tiny", "--workdir", str(tmp_path / "run"), *extra]
    with pytest.raises(SystemExit) as e:
        launch.main(argv)
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert e.value.code in (1, 2) and "Traceback" not in err, err[-2000:]
    assert last.startswith("python -m jaxsuite.launch: error: ") and expected in last, last
    if e.value.code == 1:            # failed inside the job: --debug re-raises with the traceback
        with pytest.raises((ValueError, FileNotFoundError)):
            launch.main(argv + ["--debug"])


def test_a_truncated_safetensors_file_is_named_in_one_line(tmp_path, capsys):
    """model.init_from pointing at a checkpoint whose weights file was cut short: one line naming the file."""
    from jaxsuite import launch
    from jaxsuite.core.config_utils import load_config
    from jaxsuite.hf import save_pretrained
    from jaxsuite.models.factory import arch_from_config, init_model
    folder = tmp_path / "hf"
    save_pretrained(init_model(arch_from_config(load_config("configs/qwen3_pretrain.py:tiny").model.arch)), folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(SystemExit) as e:
        launch.main(["--config", "configs/qwen3_pretrain.py:tiny", "--workdir", str(tmp_path / "run"),
                     f"--config.model.init_from={folder}"])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert e.value.code == 1 and "Traceback" not in err
    assert last.startswith("python -m jaxsuite.launch: error: ") and str(weights) in last and "truncated" in last


def test_the_same_command_resumes_past_a_truncated_latest_checkpoint(tmp_path, caplog):
    """The table's 'latest checkpoint truncated, then the same command': the launcher's run resumes from the
    checkpoint before it (and finishes), the broken one moved aside."""
    from jaxsuite import launch
    argv = ["--config", "configs/qwen3_pretrain.py:tiny", "--workdir", str(tmp_path), "--config.train.steps=6",
            "--config.train.checkpoint_every=3", "--config.sample.num_samples=0"]
    launch.main(argv)
    victim = _largest_file(tmp_path / "checkpoints" / "6" / "state")
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    (tmp_path / "finished.json").unlink()       # as if the run had died after writing its last checkpoint
    with caplog.at_level(logging.INFO):
        results = launch.main(argv)
    assert results["resumed_from_step"] == 3 and results["steps"] == 6
    assert any("checkpoint step 6 does not restore" in r.getMessage() for r in caplog.records)
    assert [p.name[:2] for p in (tmp_path / "checkpoints.unreadable").iterdir()] == ["6-"]
