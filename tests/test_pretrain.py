"""jaxsuite/pretrain.py: the main job end to end (configs/qwen3_pretrain.py:tiny), its artefacts and exact
resumption after a real SIGKILL mid-run (`slow`: each runs the job in a subprocess), and its tokenizer export."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 60


def launch_cmd(workdir: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "jaxsuite.launch", "--config", "configs/qwen3_pretrain.py:tiny",
            "--workdir", workdir, f"--config.train.steps={STEPS}", "--config.train.log_every=1",
            "--config.train.checkpoint_every=10", "--config.train.eval_every=30", "--config.export_hf=False",
            "--config.sample.num_samples=0", *extra]


def env() -> dict:
    e = dict(os.environ)
    e["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"   # one device: the job's default mesh
    e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
    return e


def losses(workdir: str) -> dict[int, float]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)), f"metrics.jsonl has duplicated or unordered steps: {steps}"
    return {r["step"]: r["train/loss"] for r in rows}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("straight"))
    subprocess.run(launch_cmd(workdir), cwd=REPO, env=env(), check=True, capture_output=True, timeout=300)
    return workdir


@pytest.mark.slow
def test_artefacts_of_the_job_contract(uninterrupted, check_png):
    results = json.load(open(os.path.join(uninterrupted, "results.json")))
    assert results["steps"] == STEPS and results["resumed_from_step"] == 0
    assert np.isfinite(results["eval_loss"]) and results["eval_perplexity"] == pytest.approx(
        np.exp(results["eval_loss"]), rel=1e-6)
    curve = losses(uninterrupted)
    assert sorted(curve) == list(range(1, STEPS + 1))
    # a byte-level model learns the easy part of Python source quickly: the loss must clearly fall
    assert np.mean([curve[s] for s in range(51, 61)]) < np.mean([curve[s] for s in range(1, 6)]) - 1.0
    check_png(os.path.join(uninterrupted, "loss.png"), size=(770, 462))   # plot_curves: 7 x 4.2 in at 110 dpi
    assert json.load(open(os.path.join(uninterrupted, "config.json")))["train"]["steps"] == STEPS
    ckpts = sorted(int(d) for d in os.listdir(os.path.join(uninterrupted, "checkpoints")) if d.isdigit())
    assert ckpts == [50, 60]   # keep_checkpoints = 2


@pytest.mark.slow
def test_killed_run_resumes_and_reproduces_losses_exactly(uninterrupted, tmp_path):
    workdir = str(tmp_path / "killed")
    proc = subprocess.Popen(launch_cmd(workdir), cwd=REPO, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    deadline = time.time() + 240
    try:   # kill -9 as soon as the first checkpoint is committed, i.e. somewhere mid-run
        while time.time() < deadline and proc.poll() is None:
            if os.path.isdir(ckpt_dir) and any(d.isdigit() for d in os.listdir(ckpt_dir)):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed; raise STEPS"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    killed_at = max(losses(workdir)) if os.path.exists(os.path.join(workdir, "metrics.jsonl")) else 0
    assert killed_at < STEPS

    done = subprocess.run(launch_cmd(workdir), cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert 10 <= results["resumed_from_step"] < STEPS
    assert losses(workdir) == losses(uninterrupted)   # every step, bit for bit
    assert results["eval_loss"] == json.load(open(os.path.join(uninterrupted, "results.json")))["eval_loss"]


def test_bad_override_fails_at_start_naming_the_key(tmp_path):
    out = subprocess.run(launch_cmd(str(tmp_path), "--config.train.stepz=3"), cwd=REPO, env=env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "train.stepz" in out.stderr
    assert not os.path.exists(os.path.join(tmp_path, "metrics.jsonl"))


def test_export_tokenizer_puts_the_sentencepiece_model_beside_the_weights(tmp_path):
    from jaxsuite.core.tokenizer import ByteTokenizer, SentencePieceTokenizer, train_sentencepiece
    from jaxsuite.core.build import export_tokenizer

    text = ["def f(x):\n    return x + 1\n", "class A:\n    pass\n", "import os, sys\n"] * 50
    sp = train_sentencepiece(text, vocab_size=300, model_prefix=str(tmp_path / "sp"))
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    assert export_tokenizer(sp, str(hf_dir)) == ["tokenizer.model"]
    copy = SentencePieceTokenizer(hf_dir / "tokenizer.model")
    assert copy.encode("def g(y): return y") == sp.encode("def g(y): return y")
    assert export_tokenizer(ByteTokenizer(), str(hf_dir)) == []
