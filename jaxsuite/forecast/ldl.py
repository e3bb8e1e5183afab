"""Multi-expert label-distribution forecasters (arXiv 2602.04678, "Let Experts Feel Uncertainty").

Which parts are the paper's: only its abstract is public. It fixes (a) several experts with their own
parameters mixed by a gate, each predicting a *distribution* over future values (label distribution learning,
LDL), with a discrete and a continuous variant, the continuous one best; (b) a Pattern-Aware variant whose
sub-experts model trend, seasonality, changepoints and volatility and return those components; (c) training
with Maximum Mean Discrepancy (MMD) between predicted and label distributions. Everything else here is our
design, and each choice is a field of `LDLConfig`:

  inputs     a context window of past values, mean-scaled per series (z = y / s, s = 1 + mean of the context,
             DeepAR's scaling), plus per-day covariates over context + horizon (calendar, price, SNAP, events)
  encoder    an MLP over [context z, flattened covariates] -> h                                    [B, hidden]
  gate       softmax(W h)                                                                          [B, K]
  discrete   expert k: MLP(h) -> logits over `n_bins` bins of z per horizon step -> p_k [B, H, bins];
             p = sum_k gate_k p_k. The label distribution of an observed z is a Gaussian discretised on the
             same bins (`label_sigma` wide): LDL's soft label.
  continuous expert k: MLP(h) -> (mu_k, sigma_k) of a Gaussian over z per horizon step; the forecast is the
             gate-weighted mixture. For MMD it is represented by reparameterised samples of every component,
             weighted by gate_k / S, so the loss is differentiable in the gate too.
  pattern    sub-experts on the shared h: trend (level + slope over the horizon), weekly seasonality (Fourier
             coefficients on the future days' weekday features), changepoint (a jump of learned size at a
             learned horizon position, smoothed by a sigmoid) and volatility (the scale per step); the mean is
             trend + seasonality + changepoint, the distribution Gaussian(mean, volatility). The components are
             returned next to the total, in the series' units once multiplied by s.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsuite.forecast.metrics import mmd2

VARIANTS = ("discrete", "continuous", "pattern")


@dataclasses.dataclass(frozen=True)
class LDLConfig:
    context_len: int = 56
    horizon: int = 28
    num_covariates: int = 0          # per-day covariate features over context + horizon
    variant: str = "continuous"      # "discrete" | "continuous" | "pattern"
    num_experts: int = 4
    hidden: int = 128
    expert_hidden: int = 128
    n_bins: int = 64                 # discrete variant: bins of z over [0, z_max]
    z_max: float = 8.0
    label_sigma: float = 0.25        # width (in z units) of the discretised-Gaussian label distribution
    weekday_feature_index: int = 0   # pattern variant: covariates [idx, idx + 1] are sin/cos of the weekday
    fourier_order: int = 3           # pattern variant: weekly Fourier order
    min_sigma: float = 1e-3
    mmd_samples: int = 4             # Gaussian variants: reparameterised samples per expert and step for MMD
    mmd_bandwidths: tuple = (0.1, 0.3, 1.0)   # Gaussian-kernel bandwidths (z units); the kernel is their mean

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        for name in ("context_len", "horizon", "num_experts", "hidden", "expert_hidden", "n_bins"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.variant == "pattern" and self.num_covariates < self.weekday_feature_index + 2:
            raise ValueError("the pattern variant needs sin/cos weekday covariates at weekday_feature_index "
                             f"(num_covariates={self.num_covariates})")

    @property
    def bin_centers(self) -> jax.Array:
        width = self.z_max / self.n_bins
        return (jnp.arange(self.n_bins, dtype=jnp.float32) + 0.5) * width            # [bins]


def mean_scale(context: jax.Array) -> jax.Array:
    """Per-series scale s = 1 + mean of the context window (the +1 keeps all-zero series finite): [B, C] -> [B]."""
    return 1.0 + jnp.mean(context, axis=-1)


def label_distribution(z: jax.Array, centers: jax.Array, sigma: float) -> jax.Array:
    """LDL soft labels: a Gaussian around each observed z, discretised on the bins: [...] -> [..., bins]."""
    logits = -0.5 * jnp.square((centers - z[..., None]) / sigma)
    return jax.nn.softmax(logits, axis=-1)


class MLP(nnx.Module):
    def __init__(self, sizes: list[int], *, rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])

    def __call__(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = jax.nn.gelu(x)
        return x


class LDLForecaster(nnx.Module):
    """All three variants behind one interface: `model(context, covariates)` -> dict of distribution parameters.

    context [B, C] raw values (>= 0), covariates [B, C + H, F] (F = num_covariates, may be 0). Output keys:
      "scale" [B]; "gate" [B, K] (discrete / continuous);
      discrete:   "probs" [B, H, bins] (mixture), "expert_probs" [B, K, H, bins]
      continuous: "mu", "sigma" [B, K, H] per expert (z units)
      pattern:    "mu", "sigma" [B, 1, H] and "components": trend, seasonality, changepoint, volatility [B, H]
    """

    def __init__(self, config: LDLConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        in_dim = c.context_len + (c.context_len + c.horizon) * c.num_covariates
        self.encoder = MLP([in_dim, c.hidden, c.hidden], rngs=rngs)
        if c.variant == "pattern":
            # trend: level + slope; seasonality: 2 * order Fourier weights; changepoint: size, position; volatility
            self.trend = MLP([c.hidden, c.expert_hidden, 2], rngs=rngs)
            self.season = MLP([c.hidden, c.expert_hidden, 2 * c.fourier_order], rngs=rngs)
            self.changepoint = MLP([c.hidden, c.expert_hidden, 2], rngs=rngs)
            self.volatility = MLP([c.hidden, c.expert_hidden, c.horizon], rngs=rngs)
        else:
            out = c.horizon * (c.n_bins if c.variant == "discrete" else 2)
            self.experts = nnx.List([MLP([c.hidden, c.expert_hidden, out], rngs=rngs)
                                     for _ in range(c.num_experts)])
            self.gate = nnx.Linear(c.hidden, c.num_experts, rngs=rngs)

    def _encode(self, context, covariates):
        c = self.config
        scale = mean_scale(context)                                                     # [B]
        z = context / scale[:, None]                                                    # [B, C]
        parts = [z] if c.num_covariates == 0 else [z, covariates.reshape(covariates.shape[0], -1)]
        return self.encoder(jnp.concatenate(parts, axis=-1)), scale                     # [B, hidden]

    def __call__(self, context: jax.Array, covariates: jax.Array | None = None) -> dict:
        c = self.config
        b = context.shape[0]
        if context.shape[1] != c.context_len:
            raise ValueError(f"context has length {context.shape[1]}, the config says {c.context_len}")
        if c.num_covariates:
            want = (b, c.context_len + c.horizon, c.num_covariates)
            if covariates is None or tuple(covariates.shape) != want:
                raise ValueError(f"covariates must have shape {want}, got "
                                 f"{None if covariates is None else tuple(covariates.shape)}")
        h, scale = self._encode(context, covariates)
        if c.variant == "pattern":
            return self._pattern(h, scale, covariates)
        gate = jax.nn.softmax(self.gate(h), axis=-1)                                    # [B, K]
        outs = jnp.stack([e(h) for e in self.experts], axis=1)                          # [B, K, H * x]
        if c.variant == "discrete":
            probs_k = jax.nn.softmax(outs.reshape(b, c.num_experts, c.horizon, c.n_bins), axis=-1)
            probs = jnp.einsum("bk,bkhn->bhn", gate, probs_k)                           # [B, H, bins]
            return {"scale": scale, "gate": gate, "probs": probs, "expert_probs": probs_k}
        outs = outs.reshape(b, c.num_experts, c.horizon, 2)
        mu = jax.nn.softplus(outs[..., 0])                                              # z >= 0 mostly
        sigma = jax.nn.softplus(outs[..., 1]) + c.min_sigma
        return {"scale": scale, "gate": gate, "mu": mu, "sigma": sigma}

    def _pattern(self, h, scale, covariates) -> dict:
        c = self.config
        steps = (jnp.arange(c.horizon, dtype=jnp.float32) + 1.0) / c.horizon            # [H] in (0, 1]
        level, slope = jnp.split(self.trend(h), 2, axis=-1)                             # [B, 1] each
        trend = jax.nn.softplus(level) + slope * steps                                  # [B, H]
        # weekly Fourier basis from the future days' weekday angle (sin/cos covariates give the angle)
        fut = covariates[:, c.context_len:, c.weekday_feature_index:c.weekday_feature_index + 2]   # [B, H, 2]
        angle = jnp.arctan2(fut[..., 0], fut[..., 1])                                   # [B, H]
        orders = jnp.arange(1, c.fourier_order + 1, dtype=jnp.float32)
        basis = jnp.concatenate([jnp.sin(angle[..., None] * orders), jnp.cos(angle[..., None] * orders)], -1)
        season = jnp.einsum("bhf,bf->bh", basis, self.season(h))                        # [B, H]
        size, where = jnp.split(self.changepoint(h), 2, axis=-1)                        # [B, 1] each
        changepoint = size * jax.nn.sigmoid((steps - jax.nn.sigmoid(where)) * 20.0)     # a smoothed step
        volatility = jax.nn.softplus(self.volatility(h)) + c.min_sigma                  # [B, H]
        mu = trend + season + changepoint
        comps = {"trend": trend, "seasonality": season, "changepoint": changepoint, "volatility": volatility}
        return {"scale": scale, "mu": mu[:, None], "sigma": volatility[:, None], "components": comps}


# --- distributions out of the outputs ------------------------------------------------------------------------
def gaussian_mixture_quantiles(weights: jax.Array, mu: jax.Array, sigma: jax.Array, quantiles, iters: int = 60):
    """Quantiles of the mixture sum_k w_k N(mu_k, sigma_k) per [B, H] by bisection: w [B, K], mu/sigma
    [B, K, H] -> [B, H, Q]. Exact up to float32 (60 halvings of the bracket)."""
    q = jnp.asarray(quantiles, jnp.float32)
    lo = jnp.min(mu - 10 * sigma, axis=1)[..., None] + 0 * q                            # [B, H, Q]
    hi = jnp.max(mu + 10 * sigma, axis=1)[..., None] + 0 * q

    def cdf(x):                                                                         # x [B, H, Q]
        zs = (x[:, None] - mu[..., None]) / sigma[..., None]                            # [B, K, H, Q]
        return jnp.einsum("bk,bkhq->bhq", weights, jax.scipy.stats.norm.cdf(zs))

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        below = cdf(mid) < q
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
    return 0.5 * (lo + hi)


def binned_quantiles(probs: jax.Array, centers: jax.Array, quantiles) -> jax.Array:
    """Quantiles of a distribution over bins, linear inside each bin: probs [B, H, bins] -> [B, H, Q]."""
    width = centers[1] - centers[0] if centers.shape[0] > 1 else 2 * centers[0]
    edges = jnp.concatenate([centers - width / 2, centers[-1:] + width / 2])             # [bins + 1]
    cdf = jnp.concatenate([jnp.zeros(probs.shape[:-1] + (1,)), jnp.cumsum(probs, -1)], -1)   # [B, H, bins+1]
    q = jnp.asarray(quantiles, jnp.float32)
    interp = jax.vmap(jax.vmap(lambda c: jnp.interp(q, c, edges)))
    return interp(cdf)


def forecast_quantiles(model: LDLForecaster, out: dict, quantiles) -> jax.Array:
    """Quantile forecasts in the series' units: [B, H, Q]."""
    c = model.config
    if c.variant == "discrete":
        zq = binned_quantiles(out["probs"], c.bin_centers, quantiles)
    elif c.variant == "continuous":
        zq = gaussian_mixture_quantiles(out["gate"], out["mu"], out["sigma"], quantiles)
    else:
        zq = gaussian_mixture_quantiles(jnp.ones(out["mu"].shape[:2]), out["mu"], out["sigma"], quantiles)
    return jnp.maximum(zq, 0.0) * out["scale"][:, None, None]


def weighted_samples(out: dict, rng: jax.Array, num_samples: int) -> tuple[jax.Array, jax.Array]:
    """Reparameterised samples of a Gaussian-mixture output as a weighted point set per [B, H]:
    points [B, H, K * S], weights [B, H, K * S] (gate_k / S), differentiable in mu, sigma and the gate."""
    mu, sigma = out["mu"], out["sigma"]                                                 # [B, K, H]
    b, k, h = mu.shape
    gate = out.get("gate", jnp.ones((b, k)) / k)
    eps = jax.random.normal(rng, (b, k, h, num_samples))
    pts = mu[..., None] + sigma[..., None] * eps                                        # [B, K, H, S]
    pts = jnp.transpose(pts, (0, 2, 1, 3)).reshape(b, h, k * num_samples)
    w = jnp.broadcast_to(gate[:, None, :, None] / num_samples, (b, h, k, num_samples)).reshape(b, h, -1)
    return pts, w


def ldl_mmd_loss(model: LDLForecaster, out: dict, target: jax.Array, rng: jax.Array, *,
                 bandwidths=None, num_samples: int | None = None) -> jax.Array:
    """Mean MMD^2 between each step's predicted distribution and its LDL label distribution (z units).

    target [B, H] in the series' units; the label is the discretised Gaussian around z = target / scale on the
    model's bins (the discrete variant) or on a fixed grid over [0, z_max] (the Gaussian variants)."""
    c = model.config
    bandwidths = tuple(c.mmd_bandwidths) if bandwidths is None else tuple(bandwidths)
    # the kernel matrices are [B, H, K*S, K*S]: the sample count is the cost of a training step
    num_samples = int(c.mmd_samples) if num_samples is None else int(num_samples)
    z = target / out["scale"][:, None]                                                  # [B, H]
    centers = c.bin_centers
    label = label_distribution(z, centers, c.label_sigma)                               # [B, H, bins]
    grid = jnp.broadcast_to(centers, label.shape)
    if c.variant == "discrete":
        mmd = mmd2(grid, grid, bandwidths, weights_x=out["probs"], weights_y=label)
    else:
        pts, w = weighted_samples(out, rng, num_samples)
        mmd = mmd2(pts, grid, bandwidths, weights_x=w, weights_y=label)
    return jnp.mean(mmd)


def gaussian_nll(out: dict, target: jax.Array) -> jax.Array:
    """Mean negative log-likelihood of the targets (z units) under the Gaussian mixture: an optional extra term."""
    z = target / out["scale"][:, None]
    mu, sigma = out["mu"], out["sigma"]
    gate = out.get("gate", jnp.ones(mu.shape[:2]) / mu.shape[1])
    logp = -0.5 * jnp.square((z[:, None] - mu) / sigma) - jnp.log(sigma) - 0.5 * math.log(2 * math.pi)
    return -jnp.mean(jax.scipy.special.logsumexp(logp + jnp.log(gate)[..., None], axis=1))
