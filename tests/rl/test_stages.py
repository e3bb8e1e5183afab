"""An RL stage (jaxsuite.rl.stages.train_stage) asked to stop by a real SIGTERM: it saves a checkpoint at the step
boundary although none was due, stops with interrupt.Stopped, and the same call again resumes there and ends
with the uninterrupted stage's metrics, weights and summary (first and last rows included, which a resumed
stage must read back from metrics.jsonl, not from the steps its own process ran)."""
import json
import os
import signal

import jax
import numpy as np
import pytest
from flax import nnx
from ml_collections import ConfigDict

from jaxsuite.core import interrupt
from jaxsuite.core import sharding as shd
from jaxsuite.core.workdir import Workdir
from jaxsuite.models.config import DecoderConfig
from jaxsuite.models.factory import init_model
from jaxsuite.rl.rollout import pack_rl_batch
from jaxsuite.rl.stages import train_stage

STEPS = 4


def _block() -> ConfigDict:     # checkpoint_every beyond the last step: only a stop request saves mid-stage
    return ConfigDict(dict(steps=STEPS, log_every=1, checkpoint_every=100, clip=0.2,
                           optim=dict(lr=1e-2, warmup_steps=0)))


def _model():
    return init_model(DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                    num_attention_heads=2, num_key_value_heads=1, head_dim=16, model_type="qwen3"),
                      seed=0)


def _step_fn(stop_at: int | None):
    """One clipped policy update on rows drawn from the step's rng; at step `stop_at` this process is sent
    SIGTERM, as a preemption notice would be."""
    def step(policy, step: int, rng: np.random.Generator) -> dict:
        prompts = [list(rng.integers(3, 64, size=4)) for _ in range(4)]
        responses = [list(rng.integers(3, 64, size=5)) for _ in range(4)]
        metrics = policy.update(pack_rl_batch(prompts, responses, rng.normal(size=4), seq_len=12, pad_id=0))
        if step == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return metrics
    return step


def _run(root, stop_at=None):
    mesh = shd.make_mesh({"data": -1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
    with interrupt.handling_signals():
        module, summary = train_stage("rl", Workdir.start(root), _model(), _block(), _step_fn(stop_at), mesh=mesh,
                                      rules=shd.DEFAULT_RULES, seed=3)
    return jax.tree.map(np.asarray, nnx.state(module, nnx.Param)), summary


def _rows(root) -> list[dict]:
    lines = (root / "rl" / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(ln).items() if k != "time"} for ln in lines]


def test_a_stopped_stage_saves_at_the_boundary_and_resumes_to_the_uninterrupted_result(tmp_path):
    full_params, full = _run(tmp_path / "full")

    with pytest.raises(interrupt.Stopped) as stopped:
        _run(tmp_path / "cut", stop_at=2)
    assert (stopped.value.step, stopped.value.signum) == (2, signal.SIGTERM)
    saved = sorted(p.name for p in (tmp_path / "cut" / "rl" / "checkpoints").iterdir() if p.name.isdigit())
    assert saved == ["2"]                       # saved by the stop request; none was due before step 4
    assert [r["step"] for r in _rows(tmp_path / "cut")] == [1, 2]

    params, resumed = _run(tmp_path / "cut")
    assert resumed["resumed_from_step"] == 2 and full["resumed_from_step"] == 0
    assert _rows(tmp_path / "cut") == _rows(tmp_path / "full")     # the same rows, bit for bit
    assert resumed["first"] == full["first"] and resumed["last"] == full["last"]
    assert resumed["first"] == {k: v for k, v in _rows(tmp_path / "full")[0].items() if k != "step"}
    jax.tree.map(np.testing.assert_array_equal, params, full_params)
