"""The jitted RL update against an independent, naive implementation of the same loss and Adam's first step.

Oracle: a test-local loss written with take_along_axis / explicit softmax (not the library's one-hot picks,
aggregation or objective helpers), differentiated with jax.grad. Adam's first step (zero moments, bias
correction) moves every parameter by lr * sign(grad), so the update can be predicted exactly.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsuite.core import sharding as shd
from jaxsuite.models.config import DecoderConfig
from jaxsuite.models.factory import init_model
from jaxsuite.rl.policy import Policy, PolicyLossConfig
from jaxsuite.rl.rollout import pack_rl_batch

ARCH = dict(vocab_size=48, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, max_position_embeddings=64, tie_word_embeddings=False,
            model_type="qwen3")
LR = 1e-3
OPTIM = dict(lr=LR, warmup_steps=0, min_lr_ratio=1.0, steps=10, weight_decay=0.0, b1=0.9, b2=0.999, eps=1e-20,
             grad_clip=0.0)


def _model(seed):
    return init_model(DecoderConfig(**ARCH), seed=seed)


def _batch(rows=8, seed=0):
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(3, 48, size=rng.integers(2, 6)).tolist() for _ in range(rows)]
    responses = [rng.integers(3, 48, size=rng.integers(1, 7)).tolist() for _ in range(rows)]
    advantages = rng.normal(size=rows)
    return pack_rl_batch(prompts, responses, advantages, seq_len=14, pad_id=0)


def _mesh(n=1):
    return shd.make_mesh({"data": n, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:n])


def _naive_terms(model, batch, temperature):
    """Per-token log p(target) and entropy, written independently of the library."""
    logits = model(jnp.asarray(batch["inputs"]), positions=jnp.asarray(batch["positions"])) / temperature
    logz = jax.scipy.special.logsumexp(logits, axis=-1, keepdims=True)
    logp_all = logits - logz
    logp = jnp.take_along_axis(logp_all, jnp.asarray(batch["targets"])[..., None], axis=-1)[..., 0]
    entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
    return logp, entropy


def _naive_loss(params, graphdef, rest, batch, ref_model, cfg):
    model = nnx.merge(graphdef, params, rest)
    logp, entropy = _naive_terms(model, batch, cfg.temperature)
    old = jax.lax.stop_gradient(logp)                      # the old log-probs are the current ones
    ratio = jnp.exp(logp - old)
    a = jnp.asarray(batch["advantages"])
    pg = jnp.maximum(-a * ratio, -a * jnp.clip(ratio, 1 - cfg.clip_low, 1 + cfg.clip_high))
    ref_logp, _ = _naive_terms(ref_model, batch, cfg.temperature)
    d = ref_logp - logp
    kl = jnp.exp(d) - d - 1
    per_token = pg + cfg.kl_coef * kl - cfg.entropy_coef * entropy
    m = jnp.asarray(batch["loss_mask"])
    return jnp.sum(per_token * m) / jnp.sum(m)


@pytest.mark.parametrize("devices", [1, 8])
def test_update_matches_naive_loss_and_adam_first_step(devices):
    cfg = PolicyLossConfig(clip_low=0.2, clip_high=0.28, kl_coef=0.05, entropy_coef=-0.01, temperature=0.7)
    model, ref = _model(0), _model(1)               # a reference that differs, so the KL term is non-zero
    batch = _batch()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    expected_loss, grads = jax.value_and_grad(_naive_loss)(params, graphdef, rest, batch, ref, cfg)
    before = jax.tree.map(np.asarray, params)

    policy = Policy(model, optim=OPTIM, loss=cfg, mesh=_mesh(devices), rules=shd.DEFAULT_RULES, reference=ref)
    metrics = policy.update(batch)
    assert metrics["loss"] == pytest.approx(float(expected_loss), rel=1e-4, abs=1e-6)
    assert metrics["kl"] > 0 and metrics["clip_frac"] == 0.0 and metrics["ratio"] == pytest.approx(1.0)
    after = jax.tree.map(np.asarray, policy.state.params)
    for b, a, g in zip(jax.tree.leaves(before), jax.tree.leaves(after), jax.tree.leaves(grads)):
        g = np.asarray(g)
        big = np.abs(g) > 1e-7       # Adam's first step is lr * sign(g) where the gradient is not tiny
        np.testing.assert_allclose((b - a)[big], LR * np.sign(g[big]), rtol=1e-3)


def test_kl_metric_is_the_naive_k3_mean_and_vanishes_against_itself():
    cfg = PolicyLossConfig(kl_coef=1.0)
    batch = _batch(seed=3)
    model, ref = _model(0), _model(1)
    policy = Policy(model, optim=OPTIM, loss=cfg, mesh=_mesh(), reference=ref)
    logp, _ = _naive_terms(_model(0), batch, 1.0)
    ref_logp, _ = _naive_terms(ref, batch, 1.0)
    d = np.asarray(ref_logp - logp)
    m = batch["loss_mask"]
    expected = np.sum((np.exp(d) - d - 1) * m) / m.sum()
    assert policy.update(batch)["kl"] == pytest.approx(expected, rel=1e-4)


def test_fully_clipped_tokens_give_no_gradient():
    batch = _batch(seed=5)
    batch["advantages"] = np.abs(batch["advantages"]) + batch["loss_mask"]       # A > 0 on every token
    policy = Policy(_model(0), optim=OPTIM, loss=PolicyLossConfig(clip_high=0.2), mesh=_mesh())
    logp, _ = policy.score(batch)
    batch["old_logprobs"] = logp - 0.5          # ratio e^0.5 = 1.65 > 1.2 everywhere: the clipped branch
    before = jax.tree.map(np.asarray, policy.state.params)
    metrics = policy.update(batch)
    assert metrics["clip_frac"] == pytest.approx(1.0)
    assert metrics["grad_norm"] == pytest.approx(0.0, abs=1e-9)
    for b, a in zip(jax.tree.leaves(before), jax.tree.leaves(jax.tree.map(np.asarray, policy.state.params))):
        np.testing.assert_array_equal(a, b)


def test_sequence_mean_aggregation_and_the_default_reference():
    # the default reference is the initial policy itself: the KL of the first update is 0, and the loss is
    # the pg term alone, averaged per sequence and then over sequences
    cfg = PolicyLossConfig(aggregation="seq-mean-token-mean", kl_coef=1.0)
    batch = _batch(seed=7)
    policy = Policy(_model(0), optim=OPTIM, loss=cfg, mesh=_mesh())
    m, a = batch["loss_mask"], batch["advantages"]
    per_seq = (-a * m).sum(1) / m.sum(1)         # ratio 1: the pg loss per token is -A
    metrics = policy.update(batch)
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["loss"] == pytest.approx(float(per_seq.mean()), rel=1e-4)


def test_minibatches_epochs_snapshot_and_errors():
    batch = _batch(rows=8, seed=2)
    policy = Policy(_model(0), optim=OPTIM, loss=PolicyLossConfig(), mesh=_mesh(), mini_batch_size=4, epochs=2)
    snap = policy.snapshot()
    assert policy.update(batch)["updates"] == 4 and policy.step == 4
    policy.restore(snap)
    assert policy.step == 0
    np.testing.assert_array_equal(jax.tree.leaves(policy.state.params)[0], jax.tree.leaves(snap.params)[0])
    with pytest.raises(ValueError, match="not a multiple of mini_batch_size"):
        Policy(_model(0), optim=OPTIM, loss=PolicyLossConfig(), mesh=_mesh(), mini_batch_size=3).update(batch)
    with pytest.raises(KeyError, match="advantages"):
        policy.update({k: v for k, v in batch.items() if k != "advantages"})
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        PolicyLossConfig(aggregation="sum")


def test_scoring_runs_one_micro_batch_per_call_and_equals_the_naive_pass():
    """With accum_steps the scoring pass takes one accumulation micro-batch per call (a whole rollout batch of
    float32 full-vocabulary logits would not fit a device at scale); the log-probs and entropies of 10 rows
    (padded to 12: 2 calls of 6 on 2 devices with accum_steps 2) equal the naive forward's."""
    from jaxsuite.rl.policy import score_rows
    assert score_rows(10, 2, 2) == 6 and score_rows(256, 8, 16) == 16 and score_rows(8, 1, 1) == 8
    batch = _batch(rows=10, seed=5)
    policy = Policy(_model(0), optim=OPTIM, loss=PolicyLossConfig(temperature=0.7), mesh=_mesh(2), accum_steps=2)
    calls = []
    score = policy._score
    policy._score = lambda *a: calls.append(a[2]["inputs"].shape[0]) or score(*a)
    logp, entropy = policy.score(batch)
    want_logp, want_entropy = _naive_terms(_model(0), batch, 0.7)
    assert calls == [6, 6]
    np.testing.assert_allclose(logp, np.asarray(want_logp), atol=1e-5)
    np.testing.assert_allclose(entropy, np.asarray(want_entropy), atol=1e-4)
