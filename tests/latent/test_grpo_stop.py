"""LatentChem's GRPO asked to stop by a real SIGTERM: a checkpoint at the step boundary although none was due,
interrupt.Stopped, and the same call again resumes there and ends with the uninterrupted run's metrics, weights
and summary (the first reward and the means over all steps come from metrics.jsonl, so they cover the steps run
before the interruption)."""
import json
import os
import signal

import jax
import numpy as np
import pytest
from flax import nnx

from jaxsuite.core import interrupt
from jaxsuite.core import sharding as shd
from jaxsuite.core.config_utils import load_config
from jaxsuite.core.tokenizer import ByteTokenizer
from jaxsuite.latent import grpo
from jaxsuite.latent.chem_tasks import ChemExample
from jaxsuite.latent.head import LatentReasoner, LatentTokens
from jaxsuite.latent.sequences import SequenceFormat
from jaxsuite.models.config import DecoderConfig
from jaxsuite.models.factory import init_model

TOK = LatentTokens.after(259)
FMT = SequenceFormat(TOK, bos_id=1, eos_id=2, pad_id=0, num_queries=2, latents_per_step=1)
EXAMPLES = [ChemExample(task="rings", question=f"Rings in {s}?", answer=a, answer_type="int", steps=["count", "done"],
                        source=s) for s, a in (("C1CC1", "1"), ("c1ccccc1", "1"), ("CCO", "0"), ("C1CC1C1CC1", "2"))]


def _model():
    backbone = init_model(DecoderConfig(vocab_size=272, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                        model_type="qwen3"), seed=0)
    return LatentReasoner(backbone, TOK, mol_feature_dim=8, num_queries=2, heads=2, rngs=nnx.Rngs(1))


def _features(sources):                         # [B, 3, 8] per-molecule features, a function of the SMILES
    feats = np.stack([np.random.default_rng(sum(map(ord, s))).normal(size=(3, 8)) for s in sources])
    return feats.astype(np.float32), np.ones((len(sources), 3), bool)


def _run(root, monkeypatch, stop_at=None):
    cfg = load_config("configs/latentchem_tiny.py", "test").grpo
    cfg.update(steps=4, questions_per_step=2, checkpoint_every=100, optim={**cfg.optim, "lr": 1e-2})
    update, calls = grpo.Policy.update, []

    def update_then_maybe_stop(policy, batch):
        metrics = update(policy, batch)
        calls.append(1)
        if len(calls) == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)            # a preemption notice during step `stop_at`
        return metrics

    monkeypatch.setattr(grpo.Policy, "update", update_then_maybe_stop)
    # an untrained model rarely writes an <answer>: a reward that varies with the text gives every step a
    # different mean and a real gradient (the paper's reward is tested in test_sequences_and_job.py)
    monkeypatch.setattr(grpo, "chem_reward", lambda example, text: float(len(text) % 3))
    mesh = shd.make_mesh({"data": -1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
    with interrupt.handling_signals():
        model, summary = grpo.run_grpo(cfg, str(root), _model(), EXAMPLES, ByteTokenizer(), FMT, max_latents=3,
                                       seq_len=64, features=_features, mesh=mesh, rules=shd.DEFAULT_RULES, seed=5)
    return jax.tree.map(np.asarray, nnx.state(model, nnx.Param)), summary


def _rows(root) -> list[dict]:
    return [{k: v for k, v in json.loads(ln).items() if k != "time"}
            for ln in (root / "metrics.jsonl").read_text().splitlines()]


def test_stopped_grpo_saves_at_the_boundary_and_resumes_to_the_uninterrupted_summary(tmp_path, monkeypatch):
    full_params, full = _run(tmp_path / "full", monkeypatch)
    rewards = [r["reward_mean"] for r in _rows(tmp_path / "full")]
    assert len(set(rewards)) > 1                # the summary's first, last and mean are told apart

    with pytest.raises(interrupt.Stopped) as stopped:
        _run(tmp_path / "cut", monkeypatch, stop_at=2)
    assert (stopped.value.step, stopped.value.signum) == (2, signal.SIGTERM)
    saved = sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir() if p.name.isdigit())
    assert saved == ["2"]                       # saved by the stop request; none was due before step 4

    params, resumed = _run(tmp_path / "cut", monkeypatch)
    assert resumed["resumed_from_step"] == 2
    assert _rows(tmp_path / "cut") == _rows(tmp_path / "full")
    for key in ("reward_mean_first", "reward_mean_last", "reward_mean_all", "informative_groups_mean"):
        assert resumed[key] == full[key], key
    assert full["reward_mean_first"] == rewards[0] and full["reward_mean_all"] == pytest.approx(np.mean(rewards))
    jax.tree.map(np.testing.assert_array_equal, params, full_params)
