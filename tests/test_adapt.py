"""The forgetting demonstration (jaxsuite.adapt.job): its merges against direct computation, and the job's
artefacts, resumption and figures on the test variant."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsuite.adapt import job
from jaxsuite.models import lora
from jaxsuite.models.config import DecoderConfig
from jaxsuite.models.factory import init_model

CFG = DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=8, model_type="qwen3")
IDS = jnp.arange(16).reshape(2, 8) % 64


def _params(model) -> dict:
    return {jax.tree_util.keystr(p): np.asarray(x)
            for p, x in jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]}


def test_interpolating_a_full_fine_tune_back_to_the_base():
    base, tuned = init_model(CFG, seed=0), init_model(CFG, seed=1)
    b, t = _params(base), _params(tuned)
    for w in (0.0, 0.5, 1.0):
        merged = _params(job._merged_full(base, tuned, "interpolate", w))
        for k in b:
            np.testing.assert_allclose(merged[k], b[k] + w * (t[k] - b[k]), atol=1e-6, err_msg=k)
    kept = _params(job._merged_full(base, tuned, "ties", 1.0))       # density 1: nothing trimmed
    for k in b:
        np.testing.assert_allclose(kept[k], t[k], atol=1e-6, err_msg=k)
    after = _params(base)                                            # the base untouched
    assert all(np.array_equal(after[k], b[k]) for k in b)


def test_merging_a_lora_fine_tune_back_to_the_base():
    base = init_model(CFG)
    adapted = nnx.clone(base)
    lora.apply_lora(adapted, lora.LoraConfig(rank=2, alpha=4.0, targets=("q_proj", "down_proj")))
    for i, adapter in enumerate(lora.adapters(adapted).values()):
        adapter.b[...] = 0.3 * jax.random.normal(jax.random.key(i), adapter.b.shape)
    np.testing.assert_allclose(np.asarray(job._merged_lora(base, adapted, "interpolate", 1.0)(IDS)),
                               np.asarray(adapted(IDS)), atol=1e-5)
    np.testing.assert_allclose(np.asarray(job._merged_lora(base, adapted, "interpolate", 0.0)(IDS)),
                               np.asarray(base(IDS)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(job._merged_lora(base, adapted, "ties", 1.0)(IDS)),
                               np.asarray(adapted(IDS)), atol=1e-5)
    # TIES at density 0.3 keeps, per kernel, the 30% largest entries of scale * A B
    half = job._merged_lora(base, adapted, "ties", 0.3)
    path = "layers.0.mlp.down_proj"
    delta = np.asarray(lora.adapter_deltas(adapted)[path])
    kept = np.abs(delta) >= np.quantile(np.abs(delta), 0.7)
    got = np.asarray(dict(lora.projections(half))[path].kernel[...]) - np.asarray(
        dict(lora.projections(base))[path].kernel[...])
    np.testing.assert_allclose(got, np.where(kept, delta, 0.0), atol=1e-5)


@pytest.mark.slow
def test_the_demonstration_writes_its_points_and_resumes(tmp_path, check_png):
    from jaxsuite import launch
    work = tmp_path / "run"
    args = ["--config", "configs/lora_forgetting.py:test", "--workdir", str(work)]
    first = launch.main(args)
    lines = (work / "points.jsonl").read_text().splitlines()
    # the base, then per method 2 interpolation weights + 1 TIES density
    assert len(lines) == 1 + 2 * 3
    points = first["points"]
    assert {(p["method"], p["merge"], p["value"]) for p in points} == {
        (m, "interpolate", w) for m in ("full", "lora") for w in (0.5, 1.0)} | {(m, "ties", 0.3) for m in ("full", "lora")}
    for p in points:
        assert 0.0 <= p["accuracy"] <= 1.0 and np.isfinite(p["heldout_loss"])
        assert p["forgetting"] == pytest.approx(p["heldout_loss"] - first["base"]["heldout_loss"])
    # rank 2 on q/k/v/o/gate/up/down of 2 layers (hidden 32, mlp 64, 4 + 2 heads of 8): 1024 per layer
    assert first["lora_params"] == 2 * ((64 + 64) + 2 * (64 + 32) + (64 + 64) + 2 * (64 + 128) + (128 + 64))
    for method in ("full", "lora"):
        assert (work / method / "checkpoints").is_dir() and (work / method / "loss.png").is_file()
    check_png(work / "tradeoff.png")
    saved = json.loads((work / "results.json").read_text())
    assert saved["points"] == json.loads(json.dumps(points))
    again = launch.main(args)            # every run finished, every point recorded: nothing is recomputed
    assert (work / "points.jsonl").read_text().splitlines() == lines
    assert again["points"] == first["points"]
