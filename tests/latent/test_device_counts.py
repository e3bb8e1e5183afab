"""GRPO's sampling and update on 1 and 8 devices (issue 20): the same answers and the same step up to
floating-point reduction order. The whole job on 1 and 8 devices is compared in
test_sequences_and_job.py::test_tiny_latentchem_job_end_to_end (it reuses that test's 8-device run).

The 8 devices are the forced host devices of tests/conftest.py; the 1-device run uses a mesh over the first
of them, as a 1-device host would.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsuite.core import sharding as shd
from jaxsuite.core.tokenizer import ByteTokenizer
from jaxsuite.latent.chem_tasks import ChemExample
from jaxsuite.latent.head import LatentReasoner, LatentTokens
from jaxsuite.models.config import DecoderConfig
from jaxsuite.models.factory import init_model

TOK = LatentTokens.after(259)
EXAMPLES = [ChemExample(task="rings", question=f"Rings in {s}?", answer=a, answer_type="int", steps=["count", "done"],
                        source=s) for s, a in (("C1CC1", "1"), ("c1ccccc1", "1"), ("CCO", "0"), ("C1CC1C1CC1", "2"))]


def _needs_8():
    if jax.device_count() < 8:
        pytest.skip("needs --xla_force_host_platform_device_count=8 set before jax is imported")


def _mesh(n: int):
    return shd.make_mesh({"data": -1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:n])


def _model():
    backbone = init_model(DecoderConfig(vocab_size=272, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                        model_type="qwen3"), seed=0)
    return LatentReasoner(backbone, TOK, mol_feature_dim=8, num_queries=2, heads=2, rngs=nnx.Rngs(1))


def _grpo_step(devices: int):
    """Sampled latent rollouts (4 questions x 2 answers) and one clipped GRPO update on a mesh of `devices`."""
    from jaxsuite.generate import generate
    from jaxsuite.latent.grpo import rollout_batch
    from jaxsuite.latent.head import latent_hook
    from jaxsuite.latent.sequences import SequenceFormat, prompt_ids
    from jaxsuite.rl.policy import Policy, PolicyLossConfig

    mesh = _mesh(devices)
    fmt = SequenceFormat(TOK, bos_id=1, eos_id=2, pad_id=0, num_queries=2, latents_per_step=1)
    rows = [e for e in EXAMPLES for _ in range(2)]
    prompts = [prompt_ids(e, ByteTokenizer(), fmt, latent=True) for e in rows]
    feats = np.random.default_rng(0).normal(size=(len(rows), 3, 8)).astype(np.float32)
    inputs = {"mol_features": jnp.asarray(feats), "mol_mask": jnp.ones((len(rows), 3), bool)}
    policy = Policy(_model(), optim=dict(lr=1e-2, steps=1, warmup_steps=0), mesh=mesh,
                    loss=PolicyLossConfig(clip_low=0.2, clip_high=0.2, kl_coef=0.0, temperature=0.7))
    with shd.use_sharding(mesh, shd.DEFAULT_RULES):
        out = generate(policy.module(), prompts, 8, temperature=0.7, top_p=0.9, stop_tokens=2, pad_token_id=0,
                       seed=11, prefill_hook=latent_hook(3), hook_inputs=inputs, extra_cache_slots=4)
    advantages = np.asarray([1.0, -1.0, 0.5, -0.5, -1.0, 1.0, 0.3, -0.3], np.float32)   # a real gradient
    batch = rollout_batch(TOK, prompts, out, advantages, seq_len=96, pad_id=0, max_latents=3)
    batch.update(mol_features=feats, mol_mask=np.ones((len(rows), 3), bool))
    metrics = policy.update(batch)
    params = jax.tree.map(np.asarray, nnx.state(policy.module(), nnx.Param))
    return np.asarray(out.sequences()), np.asarray(out.extras["latent_steps"]), metrics, params


def test_grpo_sampling_and_update_agree_on_1_and_8_devices():
    _needs_8()
    seq1, steps1, m1, p1 = _grpo_step(1)
    seq8, steps8, m8, p8 = _grpo_step(8)
    np.testing.assert_array_equal(seq1, seq8)            # the same sampled answers (partitionable RNG)
    np.testing.assert_array_equal(steps1, steps8)        # the same number of thoughts per row
    assert m1["grad_norm"] > 0
    for key in ("loss", "grad_norm", "pg_loss", "entropy"):
        assert m8[key] == pytest.approx(m1[key], rel=1e-5, abs=1e-7), key
    # Adam's first step is lr * g / (|g| + eps): where a gradient entry is as small as eps (1e-8), reduction-order
    # noise in g moves that entry's update by a visible fraction of lr, so parameters agree to a share of lr
    lr = 1e-2
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=5e-3 * lr), p1, p8)
