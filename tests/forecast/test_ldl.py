"""The LDL forecasters: distribution helpers against scipy / hand values, the three variants' outputs, and
training that lowers the MMD loss."""
import numpy as np
import pytest
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from scipy import stats

from jaxsuite.forecast.ldl import (LDLConfig, LDLForecaster, binned_quantiles, forecast_quantiles,
                                   gaussian_mixture_quantiles, label_distribution, ldl_mmd_loss)

Q = (0.05, 0.25, 0.5, 0.75, 0.95)


def test_label_distribution_is_a_discretised_gaussian_around_the_target():
    centers = jnp.arange(10, dtype=jnp.float32) + 0.5
    lab = np.asarray(label_distribution(jnp.asarray([3.5, 0.0]), centers, 1.0))
    np.testing.assert_allclose(lab.sum(-1), 1.0, rtol=1e-6)
    assert lab[0].argmax() == 3
    expected = np.exp(-0.5 * (np.arange(10) + 0.5 - 3.5) ** 2)
    np.testing.assert_allclose(lab[0], expected / expected.sum(), rtol=1e-5)


def test_mixture_quantiles_match_scipy():
    mu = jnp.asarray([[[1.0, 2.0]], [[5.0, -1.0]]])                  # [B=1, K=2, H=2]
    sigma = jnp.asarray([[[0.5, 1.0]], [[2.0, 0.3]]])
    one = gaussian_mixture_quantiles(jnp.asarray([[1.0, 0.0]]), mu.reshape(1, 2, 2), sigma.reshape(1, 2, 2), Q)
    np.testing.assert_allclose(one[0, 0], stats.norm.ppf(Q, 1.0, 0.5), atol=1e-4)
    np.testing.assert_allclose(one[0, 1], stats.norm.ppf(Q, 2.0, 1.0), atol=1e-4)
    w = jnp.asarray([[0.3, 0.7]])
    got = np.asarray(gaussian_mixture_quantiles(w, mu.reshape(1, 2, 2), sigma.reshape(1, 2, 2), Q))[0, 0]
    cdf = lambda x: 0.3 * stats.norm.cdf(x, 1.0, 0.5) + 0.7 * stats.norm.cdf(x, 5.0, 2.0)   # noqa: E731
    np.testing.assert_allclose([cdf(x) for x in got], Q, atol=1e-4)


def test_binned_quantiles_hand_case():
    centers = jnp.asarray([0.5, 1.5, 2.5, 3.5])
    probs = jnp.asarray([[[0.25, 0.25, 0.25, 0.25], [0.0, 1.0, 0.0, 0.0]]])
    got = np.asarray(binned_quantiles(probs, centers, (0.25, 0.5, 0.9)))
    np.testing.assert_allclose(got[0, 0], [1.0, 2.0, 3.6], atol=1e-6)       # uniform on [0, 4]
    np.testing.assert_allclose(got[0, 1], [1.25, 1.5, 1.9], atol=1e-6)      # uniform on [1, 2]


@pytest.mark.parametrize("variant", ["discrete", "continuous", "pattern"])
def test_variants_shapes_quantiles_and_components(variant):
    cfg = LDLConfig(context_len=14, horizon=7, num_covariates=3, variant=variant, num_experts=3, hidden=16,
                    expert_hidden=16, n_bins=12)
    model = LDLForecaster(cfg, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    ctx = jnp.asarray(rng.poisson(3.0, (5, 14)), jnp.float32)
    ang = 2 * np.pi * (np.arange(21) % 7) / 7
    cov = np.stack([np.sin(ang), np.cos(ang), rng.normal(size=21)], -1)
    cov = jnp.asarray(np.broadcast_to(cov, (5, 21, 3)), jnp.float32)
    out = model(ctx, cov)
    qs = np.asarray(forecast_quantiles(model, out, Q))
    assert qs.shape == (5, 7, len(Q)) and (np.diff(qs, axis=-1) >= -1e-4).all() and (qs >= 0).all()
    if variant == "pattern":
        comps = out["components"]
        np.testing.assert_allclose(out["mu"][:, 0], comps["trend"] + comps["seasonality"] + comps["changepoint"],
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(out["sigma"][:, 0], comps["volatility"])
    else:
        np.testing.assert_allclose(np.asarray(out["gate"]).sum(-1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="covariates must have shape"):
        model(ctx, cov[:, :-1])


def test_config_errors():
    with pytest.raises(ValueError, match="variant must be one of"):
        LDLConfig(variant="gaussian")
    with pytest.raises(ValueError, match="weekday covariates"):
        LDLConfig(variant="pattern", num_covariates=1)


@pytest.mark.parametrize("variant", ["discrete", "continuous"])
def test_training_lowers_the_mmd_on_a_seasonal_series(variant):
    """A weekly pattern with noise: a few hundred Adam steps must cut the loss and put the median near truth."""
    cfg = LDLConfig(context_len=14, horizon=7, variant=variant, num_experts=2, hidden=32, expert_hidden=32,
                    n_bins=32, z_max=4.0)
    model = LDLForecaster(cfg, rngs=nnx.Rngs(1))
    rng = np.random.default_rng(1)
    t = np.arange(21)
    base = 5.0 + 3.0 * np.sin(2 * np.pi * t / 7)
    phases = rng.integers(0, 7, 64)
    series = np.stack([np.roll(base, p) for p in phases]) + rng.normal(0, 0.3, (64, 21))
    ctx, tgt = jnp.asarray(series[:, :14], jnp.float32), jnp.asarray(series[:, 14:], jnp.float32)
    graphdef, params = nnx.split(model)
    opt = optax.adam(3e-3)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, key):
        def loss_fn(p):
            m = nnx.merge(graphdef, p)
            return ldl_mmd_loss(m, m(ctx), tgt, key)
        loss, g = jax.value_and_grad(loss_fn)(params)
        upd, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, upd), opt_state, loss

    losses = []
    for i in range(300):
        params, opt_state, loss = step(params, opt_state, jax.random.key(i))
        losses.append(float(loss))
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:5])
    m = nnx.merge(graphdef, params)
    median = np.asarray(forecast_quantiles(m, m(ctx), (0.5,)))[..., 0]
    assert np.mean(np.abs(median - np.asarray(tgt))) < 1.0      # the weekly swing is +-3
