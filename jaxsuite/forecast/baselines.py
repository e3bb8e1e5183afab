"""Baselines for the LDL forecasters: every one returns quantile forecasts [N, H, Q] in the series' units, so the
evaluation job scores them with the same metrics (WSPL, CRPS, coverage) on the same windows as the LDL models.

Two kinds, told apart by the class attribute `series_model`:

  window baselines (series_model = False): SeasonalNaive, GaussianNet, QuantileNet
      fit(train, *, seed, steps=None) -> {"final_loss", "seconds", ...}
          train = {"context": [M, C], "target": [M, H], "covariates": [M, C + H, F] or None}, windows cut from
          the training part of the series (what the LDL models are trained on)
      predict_quantiles(context [N, C], covariates [N, C + H, F] | None, quantiles) -> [N, H, Q]
  series baseline (series_model = True): StructuralBayes, the Prophet-style anchor
      fit_series(history [N, T], *, seed, steps=None) -> {...};  predict_quantiles_series(horizon, quantiles)
      It fits one model per series on that series' whole history and forecasts the H days right after it, so
      it does not use windows. The evaluation job must give it, for the N series it scores, the full history up
      to the forecast origin: history[:, -C:] is then exactly the `context` the window baselines get (one origin
      per series; with several rolling origins, fit once per origin on the history cut at that origin).
      `fit_and_predict` does this dispatch and checks that history and context line up.

`BASELINES` maps config names to classes; `build_baseline(name, config_dict)` and `fit_and_predict` build them
from config dicts. All predictions are float32 numpy arrays on the host, clipped at 0 (sales are >= 0).
"""
from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxsuite.core.extras import require
from jaxsuite.forecast.ldl import MLP, mean_scale
from jaxsuite.forecast.metrics import M5_QUANTILES

# numpyro is imported inside StructuralBayes (its import is slow); checked here so that a missing extra fails
# when the baselines are loaded, not after the other models have trained.
require("numpyro", extra="forecast", for_="jaxsuite.forecast.baselines (the Prophet-style baseline)", load=False)


# ------------------------------------------------------------------------------------------- validation
def _levels(quantiles) -> np.ndarray:
    q = np.asarray(quantiles, dtype=np.float64)
    if q.ndim != 1 or q.size == 0:
        raise ValueError(f"quantiles must be a non-empty 1-d sequence, got shape {q.shape}")
    if not (np.all(q > 0) and np.all(q < 1)) or (q.size > 1 and not np.all(np.diff(q) > 0)):
        raise ValueError(f"quantiles must be strictly increasing levels inside (0, 1), got {q.tolist()}")
    return q


def _matrix(name: str, x, *, rows: int | None = None, cols: int | None = None) -> np.ndarray:
    """A finite float32 [rows, cols] host array, or a ValueError naming the argument."""
    if x is None:
        raise ValueError(f"{name} is required")
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2 or (rows is not None and a.shape[0] != rows) or (cols is not None and a.shape[1] != cols):
        want = f"[{'N' if rows is None else rows}, {'*' if cols is None else cols}]"
        raise ValueError(f"{name} must have shape {want}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN/inf; fill them before forecasting")
    return a


def _covariates(name: str, x, n: int, length: int, num_covariates: int) -> np.ndarray | None:
    """[n, length, F] covariates. A model built without covariates ignores them (so the evaluation job can pass
    the same arrays to every baseline), but their shape is still checked."""
    if x is None:
        if num_covariates:
            raise ValueError(f"{name} is required: the model was built with num_covariates={num_covariates}")
        return None
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 3 or a.shape[:2] != (n, length) or (num_covariates and a.shape[2] != num_covariates):
        want = (n, length, num_covariates if num_covariates else "F")
        raise ValueError(f"{name} must have shape {want} = [N, C + H, F], got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN/inf")
    return a if num_covariates else None


def _check_train(train: dict, context_len: int | None, horizon: int, num_covariates: int):
    """train dict -> (context [M, C], target [M, H], covariates [M, C + H, F] | None)."""
    if not isinstance(train, dict) or "context" not in train or "target" not in train:
        raise ValueError("train must be a dict with 'context' [M, C], 'target' [M, H] and optional 'covariates'")
    ctx = _matrix("train['context']", train["context"], cols=context_len)
    tgt = _matrix("train['target']", train["target"], rows=ctx.shape[0], cols=horizon)
    cov = _covariates("train['covariates']", train.get("covariates"), ctx.shape[0], ctx.shape[1] + horizon,
                      num_covariates)
    if ctx.shape[0] == 0:
        raise ValueError("train['context'] has no windows")
    return ctx, tgt, cov


def interpolate_levels(q_forecast: np.ndarray, grid: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantile forecasts at `levels` from those at `grid`, linear in the level: [..., K] -> [..., Q].
    Levels outside [grid[0], grid[-1]] raise: extrapolating a tail from the two nearest levels is a guess."""
    if levels[0] < grid[0] - 1e-9 or levels[-1] > grid[-1] + 1e-9:
        raise ValueError(f"quantiles {levels.tolist()} reach outside the levels the model was trained on "
                         f"[{grid[0]:g}, {grid[-1]:g}]; build it with quantiles covering them")
    if len(grid) == 1:
        return np.repeat(q_forecast, len(levels), axis=-1)
    j = np.clip(np.searchsorted(grid, levels), 1, len(grid) - 1)             # grid[j-1] <= level <= grid[j]
    t = ((levels - grid[j - 1]) / (grid[j] - grid[j - 1])).astype(q_forecast.dtype)
    return (1 - t) * q_forecast[..., j - 1] + t * q_forecast[..., j]


# ------------------------------------------------------------------------------------------ seasonal naive
class SeasonalNaive:
    """Point forecast = the value one season earlier (the last `season` context values repeated over the
    horizon); the predictive distribution is the point plus the empirical distribution of that series'
    in-sample seasonal-naive residuals r_t = y_t - y_{t-season} over its context window, clipped at 0.

    The residuals are one-season-ahead errors, but step h of the forecast is ceil(h / season) seasons ahead;
    by default the same residual quantiles serve every step (the usual empirical-residual baseline, fine for
    stationary demand). horizon_scaling=True widens them by sqrt(ceil(h / season)) (a seasonal random walk,
    as fable's SNAIVE intervals). No training: `fit` only checks the windows.
    """
    series_model = False

    def __init__(self, season: int = 7, horizon: int = 28, horizon_scaling: bool = False):
        if int(season) < 1 or int(horizon) < 1:
            raise ValueError(f"season and horizon must be >= 1, got season={season}, horizon={horizon}")
        self.season, self.horizon, self.horizon_scaling = int(season), int(horizon), bool(horizon_scaling)

    def fit(self, train: dict, *, seed: int = 0, steps: int | None = None) -> dict:
        t0 = time.perf_counter()
        _check_train(train, None, self.horizon, 0)
        return {"final_loss": float("nan"), "steps": 0, "seconds": time.perf_counter() - t0}

    def predict_quantiles(self, context, covariates, quantiles) -> np.ndarray:
        q = _levels(quantiles)
        ctx = _matrix("context", context).astype(np.float64)                  # [N, C]
        n, c = ctx.shape
        _covariates("covariates", covariates, n, c + self.horizon, 0)
        m = self.season
        if c <= m:
            raise ValueError(f"context must be longer than season={m} to have residuals, got length {c}")
        point = ctx[:, c - m + np.arange(self.horizon) % m]                  # [N, H]
        resid = ctx[:, m:] - ctx[:, :-m]                                      # [N, C - m]
        rq = np.quantile(resid, q, axis=1).T                                  # [N, Q]
        widen = np.ones(self.horizon)
        if self.horizon_scaling:
            widen = np.sqrt(np.arange(self.horizon) // m + 1.0)               # [H]
        out = point[:, :, None] + rq[:, None, :] * widen[None, :, None]       # [N, H, Q]
        return np.maximum(out, 0.0).astype(np.float32)


# ------------------------------------------------------------------------------------------ neural baselines
class _WindowMLP(nnx.Module):
    """[context / s, flattened covariates] -> MLP -> k numbers per horizon step (z units), plus the scale s."""

    def __init__(self, context_len, horizon, num_covariates, hidden, depth, k, *, rngs: nnx.Rngs):
        self.horizon, self.k = horizon, k
        in_dim = context_len + (context_len + horizon) * num_covariates
        self.mlp = MLP([in_dim] + [hidden] * depth + [horizon * k], rngs=rngs)

    def __call__(self, context, covariates=None):
        scale = mean_scale(context)                                           # [B]
        x = context / scale[:, None]                                          # [B, C]
        if covariates is not None:
            x = jnp.concatenate([x, covariates.reshape(covariates.shape[0], -1)], axis=-1)
        return self.mlp(x).reshape(x.shape[0], self.horizon, self.k), scale   # [B, H, k], [B]


class _NeuralBaseline:
    """Shared training/prediction for the MLP baselines: the subclasses give the output size per step, the loss
    on z = target / s and the z quantiles. Training is Adam on random minibatches in a jitted pure step over
    the split (graphdef, params) state; the model is (re)built in `fit` from the seed."""
    series_model = False
    out_per_step: int = 0

    def __init__(self, context_len: int = 56, horizon: int = 28, num_covariates: int = 0, hidden: int = 128,
                 depth: int = 2, learning_rate: float = 1e-3, batch_size: int = 256, steps: int = 2000,
                 predict_batch_size: int = 8192):
        for name, v in (("context_len", context_len), ("horizon", horizon), ("hidden", hidden),
                        ("depth", depth), ("batch_size", batch_size), ("steps", steps),
                        ("predict_batch_size", predict_batch_size)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if int(num_covariates) < 0:
            raise ValueError(f"num_covariates must be >= 0, got {num_covariates}")
        self.context_len, self.horizon, self.num_covariates = int(context_len), int(horizon), int(num_covariates)
        self.hidden, self.depth, self.learning_rate = int(hidden), int(depth), float(learning_rate)
        self.batch_size, self.steps, self.predict_batch_size = int(batch_size), int(steps), int(predict_batch_size)
        self._graphdef = self._params = None
        self.losses: np.ndarray | None = None

    def _loss(self, raw, z):            # raw [B, H, k], z [B, H] -> scalar
        raise NotImplementedError

    def _z_quantiles(self, raw, levels):  # raw [B, H, k] -> [B, H, Q]
        raise NotImplementedError

    def fit(self, train: dict, *, seed: int, steps: int | None = None) -> dict:
        t0 = time.perf_counter()
        ctx, tgt, cov = _check_train(train, self.context_len, self.horizon, self.num_covariates)
        steps = self.steps if steps is None else int(steps)
        model = _WindowMLP(self.context_len, self.horizon, self.num_covariates, self.hidden, self.depth,
                           self.out_per_step, rngs=nnx.Rngs(seed))
        graphdef, params = nnx.split(model)
        opt = optax.adam(self.learning_rate)
        opt_state = opt.init(params)
        m, bs = ctx.shape[0], min(self.batch_size, ctx.shape[0])

        # the data are arguments, not closure constants, so a large training set is not baked into the program
        @jax.jit
        def step(params, opt_state, key, ctx, tgt, cov):
            idx = jax.random.randint(key, (bs,), 0, m)

            def loss_fn(p):
                raw, scale = nnx.merge(graphdef, p)(ctx[idx], None if cov is None else cov[idx])
                return self._loss(raw, tgt[idx] / scale[:, None])
            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        ctx_d, tgt_d = jnp.asarray(ctx), jnp.asarray(tgt)
        cov_d = None if cov is None else jnp.asarray(cov)
        keys = jax.random.split(jax.random.key(seed + 1), max(steps, 1))
        losses = []
        for i in range(steps):
            params, opt_state, loss = step(params, opt_state, keys[i], ctx_d, tgt_d, cov_d)
            losses.append(loss)
        self._graphdef, self._params = graphdef, params
        self.losses = np.asarray(jnp.stack(losses)) if losses else np.zeros(0, np.float32)
        tail = self.losses[-max(1, steps // 10):] if steps else np.full(1, np.nan)
        return {"final_loss": float(np.mean(tail)), "initial_loss": float(self.losses[0]) if steps else math.nan,
                "steps": steps, "seconds": time.perf_counter() - t0}

    def predict_quantiles(self, context, covariates, quantiles) -> np.ndarray:
        if self._params is None:
            raise RuntimeError(f"{type(self).__name__}.predict_quantiles called before fit")
        levels = _levels(quantiles)
        ctx = _matrix("context", context, cols=self.context_len)             # [N, C]
        cov = _covariates("covariates", covariates, ctx.shape[0], self.context_len + self.horizon,
                          self.num_covariates)
        predict, levels_d = jax.jit(self._predict), jnp.asarray(levels, jnp.float32)
        outs = []
        for a in range(0, ctx.shape[0], self.predict_batch_size):
            b = a + self.predict_batch_size
            outs.append(np.asarray(predict(self._params, jnp.asarray(ctx[a:b]),
                                           None if cov is None else jnp.asarray(cov[a:b]), levels_d)))
        return np.concatenate(outs, 0) if outs else np.zeros((0, self.horizon, len(levels)), np.float32)

    def _predict(self, params, ctx, cov, levels):
        raw, scale = nnx.merge(self._graphdef, params)(ctx, cov)
        zq = self._z_quantiles(raw, levels)                                   # [B, H, Q]
        return jnp.maximum(zq, 0.0) * scale[:, None, None]


class GaussianNet(_NeuralBaseline):
    """DeepAR-like baseline: a Gaussian likelihood per horizon step on the mean-scaled series (z = y / s,
    s = 1 + mean(context), as DeepAR and `ldl.mean_scale`), trained by Gaussian NLL. Unlike DeepAR it is an
    MLP over the whole context that emits all H steps at once (direct multi-horizon), not an autoregressive
    RNN: the same encoder family as the LDL models, so the comparison isolates the output distribution and
    the loss. mu is unconstrained, sigma = softplus + min_sigma; quantiles mu + sigma * Phi^-1(u), clipped at
    0 and times s."""
    out_per_step = 2

    def __init__(self, *args, min_sigma: float = 1e-3, **kwargs):
        super().__init__(*args, **kwargs)
        self.min_sigma = float(min_sigma)

    def _mu_sigma(self, raw):
        return raw[..., 0], jax.nn.softplus(raw[..., 1]) + self.min_sigma     # [B, H] each

    def _loss(self, raw, z):
        mu, sigma = self._mu_sigma(raw)
        nll = 0.5 * jnp.square((z - mu) / sigma) + jnp.log(sigma) + 0.5 * math.log(2 * math.pi)
        return jnp.mean(nll)

    def _z_quantiles(self, raw, levels):
        mu, sigma = self._mu_sigma(raw)
        zs = jax.scipy.stats.norm.ppf(jnp.asarray(levels, jnp.float32))       # [Q]
        return mu[..., None] + sigma[..., None] * zs

    def predict_gaussian(self, context, covariates=None) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) [N, H] each in the series' units (before clipping at 0): for CRPS in closed form."""
        if self._params is None:
            raise RuntimeError("GaussianNet.predict_gaussian called before fit")
        ctx = _matrix("context", context, cols=self.context_len)
        cov = _covariates("covariates", covariates, ctx.shape[0], self.context_len + self.horizon,
                          self.num_covariates)
        raw, scale = nnx.merge(self._graphdef, self._params)(jnp.asarray(ctx), None if cov is None else cov)
        mu, sigma = self._mu_sigma(raw)
        return np.asarray(mu * scale[:, None]), np.asarray(sigma * scale[:, None])


class QuantileNet(_NeuralBaseline):
    """Direct quantile regression (MQ-style): the same MLP emits Q quantiles of z per step, monotone by
    construction (the lowest, then cumulative softplus increments), trained with the pinball loss averaged
    over levels, steps and windows. The levels are fixed at construction; train on the ones the evaluation
    asks for (default the 9 M5 levels). Other levels at predict time are interpolated linearly in the level
    between the trained ones; levels outside the trained range raise."""
    def __init__(self, *args, quantiles=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.quantiles = _levels(M5_QUANTILES if quantiles is None else quantiles)
        self.out_per_step = len(self.quantiles)

    def _ordered(self, raw):                                                  # [B, H, K] -> monotone [B, H, K]
        inc = jax.nn.softplus(raw[..., 1:])
        return jnp.concatenate([raw[..., :1], raw[..., :1] + jnp.cumsum(inc, axis=-1)], axis=-1)

    def _loss(self, raw, z):
        qz = self._ordered(raw)                                               # [B, H, K]
        tau = jnp.asarray(self.quantiles, jnp.float32)
        u = z[..., None] - qz
        return jnp.mean(jnp.maximum(tau * u, (tau - 1.0) * u))

    def _z_quantiles(self, raw, levels):
        return self._ordered(raw)                                             # trained levels; see predict

    def predict_quantiles(self, context, covariates, quantiles) -> np.ndarray:
        levels = _levels(quantiles)
        out = super().predict_quantiles(context, covariates, self.quantiles)  # [N, H, K]
        if len(levels) == len(self.quantiles) and np.allclose(levels, self.quantiles, atol=1e-9):
            return out
        return interpolate_levels(out, self.quantiles, levels).astype(np.float32)


# ------------------------------------------------------------------------------------ structural (Prophet)
class StructuralBayes:
    """Prophet-style Bayesian structural model, one per series, all N series in one numpyro model (a plate
    over series, so one SVI run or one NUTS chain fits them all):

        z_t ~ Normal(g(t) + s(t), sigma)          z = y / s_i (transform="scale", s_i = 1 + mean of history)
                                                  or z = log1p(y) (transform="log1p"; back with expm1)
        g(t) = (k + a(t).delta) t + (m + a(t).gamma),  gamma_j = -c_j delta_j   (piecewise linear, continuous)

    with t in [0, 1] over the history, `n_changepoints` (25) changepoints c_j placed uniformly in the first
    `changepoint_range` (80%) of it, delta_j ~ Laplace(0, changepoint_prior_scale = 0.05), k, m ~ N(0, 5),
    sigma ~ HalfNormal(0.5) and Fourier seasonality with coefficients ~ N(0, 10): weekly order 3, plus yearly
    order 10 when the history covers at least two years (yearly=None; True/False force it). These are
    Prophet's defaults; "scale" plays the role of Prophet's max-abs scaling (Prophet's own likelihood is
    additive Gaussian on the scaled series too). Forecast uncertainty is Prophet's: posterior draws, plus
    future trend changes simulated at the historical changepoint rate with Laplace(0, mean |delta|) sizes
    (future_trend_uncertainty), plus observation noise; samples are clipped at 0 and their quantiles taken.

    Inference: method="svi" (default) fits an AutoNormal guide (mean field) with Adam on a cosine-decaying step
    (`learning_rate` 0.005 -> 1%) for `steps` (500) steps, `num_particles` ELBO draws per step. It starts at
    a ridge-regression MAP estimate (`_map_init`; Prophet too starts from a fitted line) with guide scales
    `init_scale` = 1e-3: from a plain line with Adam at a constant 0.02 and the default scale 0.1, the fit
    wandered along the nearly collinear changepoint directions and the extrapolated trend was off by several
    units on the test series. Mean field ignores the (strong) posterior correlation of the deltas, so the
    parameter part of the intervals is approximate; it matched NUTS's interval width on the test series,
    where the noise dominates. method="nuts" runs NUTS from the same start with `num_warmup` warm-up and
    `steps` (default num_nuts_samples) kept draws, resampled to `num_samples` predictive draws: exact, but one
    chain over all N series' parameters, so only for a few series.

    Not a window model (series_model = True): see the module docstring for how the evaluation job calls it.
    Cost per SVI step is O(N T (n_changepoints + Fourier terms)); on the full M5 bottom level (30490 x 1941)
    run it on an accelerator or on a subset of series.
    """
    series_model = True

    def __init__(self, n_changepoints: int = 25, changepoint_range: float = 0.8,
                 changepoint_prior_scale: float = 0.05, seasonality_prior_scale: float = 10.0,
                 weekly_order: int = 3, yearly_order: int = 10, yearly: bool | None = None,
                 transform: str = "scale", method: str = "svi", steps: int = 500, learning_rate: float = 0.005,
                 num_warmup: int = 200, num_nuts_samples: int = 100, num_samples: int = 500,
                 future_trend_uncertainty: bool = True, predict_chunk: int = 4096, init_scale: float = 1e-3,
                 num_particles: int = 1):
        if transform not in ("scale", "log1p"):
            raise ValueError(f"transform must be 'scale' or 'log1p', got {transform!r}")
        if method not in ("svi", "nuts"):
            raise ValueError(f"method must be 'svi' or 'nuts', got {method!r}")
        if not 0.0 < changepoint_range <= 1.0 or changepoint_prior_scale <= 0 or seasonality_prior_scale <= 0:
            raise ValueError("changepoint_range must be in (0, 1] and the prior scales positive")
        for name, v in (("steps", steps), ("num_samples", num_samples), ("predict_chunk", predict_chunk),
                        ("num_nuts_samples", num_nuts_samples)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        self.n_changepoints, self.changepoint_range = int(n_changepoints), float(changepoint_range)
        self.changepoint_prior_scale, self.seasonality_prior_scale = float(changepoint_prior_scale), \
            float(seasonality_prior_scale)
        self.weekly_order, self.yearly_order, self.yearly = int(weekly_order), int(yearly_order), yearly
        self.transform, self.method, self.steps, self.learning_rate = transform, method, int(steps), \
            float(learning_rate)
        self.num_warmup, self.num_nuts_samples, self.num_samples = int(num_warmup), int(num_nuts_samples), \
            int(num_samples)
        self.future_trend_uncertainty, self.predict_chunk = bool(future_trend_uncertainty), int(predict_chunk)
        self.init_scale, self.num_particles = float(init_scale), int(num_particles)
        self._post = None

    # --- design ----------------------------------------------------------------------------------------
    def _fourier(self, days: np.ndarray) -> np.ndarray:
        """[D] day indices -> [D, F] sin/cos features (weekly, and yearly when enabled)."""
        cols = []
        terms = [(7.0, self.weekly_order)] + ([(365.25, self.yearly_order)] if self._use_yearly else [])
        for period, order in terms:
            for n in range(1, order + 1):
                ang = 2 * np.pi * n * days / period
                cols += [np.sin(ang), np.cos(ang)]
        return np.stack(cols, -1).astype(np.float32) if cols else np.zeros((len(days), 0), np.float32)

    @staticmethod
    def _trend(k, m, delta, t, cps):
        """Piecewise-linear trend: k, m [..., N], delta [..., N, S], t [D], cps [S] -> [..., N, D]."""
        a = (t[:, None] >= cps[None, :]).astype(jnp.float32)                 # [D, S]
        slope = k[..., None] + delta @ a.T                                    # [..., N, D]
        offset = m[..., None] + (-cps * delta) @ a.T
        return slope * t + offset

    def _model(self, t, cps, x_season, n, y=None):
        import numpyro
        import numpyro.distributions as dist
        s, f = cps.shape[0], x_season.shape[1]
        with numpyro.plate("series", n):
            k = numpyro.sample("k", dist.Normal(0.0, 5.0))                    # [N]
            m = numpyro.sample("m", dist.Normal(0.0, 5.0))                    # [N]
            sigma = numpyro.sample("sigma", dist.HalfNormal(0.5))             # [N]
            delta = numpyro.sample("delta", dist.Laplace(0.0, self.changepoint_prior_scale)
                                   .expand([s]).to_event(1))                  # [N, S]
            beta = numpyro.sample("beta", dist.Normal(0.0, self.seasonality_prior_scale)
                                  .expand([f]).to_event(1))                   # [N, F]
            mu = self._trend(k, m, delta, t, cps) + beta @ x_season.T          # [N, T]
            numpyro.sample("y", dist.Normal(mu, sigma[:, None]).to_event(1), obs=y)

    def _map_init(self, z, t, cps, x_season) -> dict:
        """Initial values near the MAP: ridge regression of z on [1, t, (t - c_j)+, Fourier] per series, with
        the Laplace prior on delta replaced by the Gaussian of the same variance (2 b^2) and sigma from a first
        unpenalised line + seasonality fit. The model is linear in everything but sigma, so this puts SVI (and
        NUTS) close to the mode; from a plain line, a few hundred SVI steps do not find the seasonality and the
        changepoints reliably."""
        big_t, s, f = z.shape[1], len(cps), x_season.shape[1]
        hinge = np.maximum(t[:, None] - cps[None, :], 0.0)                    # [T, S] = a_j(t) (t - c_j)
        design = np.concatenate([np.ones((big_t, 1)), t[:, None], hinge, x_season], 1).astype(np.float64)
        base = np.concatenate([design[:, :2], design[:, 2 + s:]], 1)          # line + seasonality
        prior_var = np.concatenate([np.full(2, 25.0), np.full(s, 2 * self.changepoint_prior_scale ** 2),
                                    np.full(f, self.seasonality_prior_scale ** 2)])      # [P]
        gram, eye = design.T @ design, np.eye(len(prior_var))                 # [P, P], shared by all series
        thetas, sds = [], []
        for a in range(0, z.shape[0], self.predict_chunk):                    # blocks bound the host memory
            zt = z[a:a + self.predict_chunk].T.astype(np.float64)            # [T, n]
            coef0, *_ = np.linalg.lstsq(base, zt, rcond=None)
            var0 = np.maximum(np.mean((zt - base @ coef0) ** 2, 0), 1e-6)     # [n]
            lhs = gram[None] + (var0[:, None] / prior_var[None])[:, :, None] * eye[None]  # [n, P, P]
            theta = np.linalg.solve(lhs, (design.T @ zt).T[..., None])[..., 0]           # [n, P]
            thetas.append(theta)
            sds.append(np.sqrt(np.mean((zt - design @ theta.T) ** 2, 0)) + 1e-3)
        theta = np.concatenate(thetas, 0)
        return {"m": theta[:, 0], "k": theta[:, 1], "delta": theta[:, 2:2 + s], "beta": theta[:, 2 + s:],
                "sigma": np.concatenate(sds)}

    # --- fit / predict ---------------------------------------------------------------------------------
    def fit_series(self, history, *, seed: int, steps: int | None = None) -> dict:
        """Fit on the full history [N, T] of the N series to forecast (T >= 14 days, values >= 0)."""
        from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO, init_to_value
        from numpyro.infer.autoguide import AutoNormal
        import numpyro.optim
        t0 = time.perf_counter()
        y = _matrix("history", history).astype(np.float64)                   # [N, T]
        n, big_t = y.shape
        if big_t < 14:
            raise ValueError(f"history must cover at least 14 days (two weeks), got {big_t}")
        if self.transform == "log1p" and np.any(y < 0):
            raise ValueError("history must be >= 0 for transform='log1p'")
        self._use_yearly = big_t >= 730 if self.yearly is None else bool(self.yearly)
        scale = 1.0 + y.mean(1) if self.transform == "scale" else np.ones(n)  # [N]
        z = (y / scale[:, None] if self.transform == "scale" else np.log1p(y)).astype(np.float32)
        t = np.arange(big_t, dtype=np.float32) / (big_t - 1)                 # [T] in [0, 1]
        n_cp = min(self.n_changepoints, max(int(self.changepoint_range * big_t) - 1, 0))
        # Prophet: linspace over the first changepoint_range of the history, dropping the origin
        cp_idx = np.linspace(0, int(self.changepoint_range * big_t) - 1, n_cp + 1).round().astype(int)[1:]
        cps = t[cp_idx].astype(np.float32)                                    # [S]
        x_season = self._fourier(np.arange(big_t, dtype=np.float64))          # [T, F]
        init = self._map_init(z, t, cps, x_season)
        init = {key: jnp.asarray(v, jnp.float32) for key, v in init.items()}
        args = (jnp.asarray(t), jnp.asarray(cps), jnp.asarray(x_season), n)
        key_fit, key_post = jax.random.split(jax.random.key(seed))
        if self.method == "svi":
            steps = self.steps if steps is None else int(steps)
            guide = AutoNormal(self._model, init_loc_fn=init_to_value(values=init), init_scale=self.init_scale)
            # a decaying step: the ELBO gradient is noisy along the nearly collinear changepoint directions, and a
            # constant Adam step keeps the means diffusing along them (which moves the extrapolated trend)
            sched = optax.cosine_decay_schedule(self.learning_rate, steps, alpha=0.01)
            optim = numpyro.optim.optax_to_numpyro(optax.adam(sched))
            svi = SVI(self._model, guide, optim, Trace_ELBO(num_particles=self.num_particles))
            res = svi.run(key_fit, steps, *args, y=jnp.asarray(z), progress_bar=False)
            post = guide.sample_posterior(key_post, res.params, sample_shape=(self.num_samples,))
            losses = np.asarray(res.losses) / (n * big_t)                     # negative ELBO per observation
            final = float(np.mean(losses[-max(1, steps // 10):]))
        else:
            steps = self.num_nuts_samples if steps is None else int(steps)
            mcmc = MCMC(NUTS(self._model, init_strategy=init_to_value(values=init)), num_warmup=self.num_warmup,
                        num_samples=steps, progress_bar=False)
            mcmc.run(key_fit, *args, y=jnp.asarray(z), extra_fields=("potential_energy",))
            post = mcmc.get_samples()
            # mean negative log joint density per observation over the kept draws
            final = float(np.mean(np.asarray(mcmc.get_extra_fields()["potential_energy"])) / (n * big_t))
        self._post = {key: np.asarray(post[key]) for key in ("k", "m", "sigma", "delta", "beta")}  # [P, N, ...]
        self._scale, self._t_len, self._cps, self._n, self._seed = scale, big_t, cps, n, int(seed)
        return {"final_loss": final, "steps": steps, "seconds": time.perf_counter() - t0, "method": self.method,
                "n_changepoints": n_cp, "yearly": self._use_yearly}

    def predict_quantiles_series(self, horizon: int, quantiles, *, seed: int | None = None) -> np.ndarray:
        """Quantiles of the posterior predictive for the `horizon` days after the history: [N, H, Q]."""
        if self._post is None:
            raise RuntimeError("StructuralBayes.predict_quantiles_series called before fit_series")
        if int(horizon) < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        levels = jnp.asarray(_levels(quantiles), jnp.float32)
        h, big_t = int(horizon), self._t_len
        days = np.arange(big_t, big_t + h, dtype=np.float64)
        t_f = jnp.asarray(days / (big_t - 1), jnp.float32)                   # [H]
        x_f = jnp.asarray(self._fourier(days))                                # [H, F]
        cps = jnp.asarray(self._cps)
        p = self._post["k"].shape[0]
        key = jax.random.key(self._seed + 7 if seed is None else seed)
        key, kidx = jax.random.split(key)
        # too few posterior draws (NUTS): resample them so the predictive still has num_samples draws
        idx = (np.arange(p) if p >= self.num_samples
               else np.asarray(jax.random.randint(kidx, (self.num_samples,), 0, p)))
        rate = min(1.0, len(self._cps) / (big_t - 1))                         # changepoints per day (Prophet)
        future = self.future_trend_uncertainty and len(self._cps) > 0

        @jax.jit
        def chunk(g, scale, key):                     # posterior draws [P, n, ...], scale [n] -> [n, H, Q]
            mu = self._trend(g["k"], g["m"], g["delta"], t_f, cps) + g["beta"] @ x_f.T   # [P, n, H]
            k_cp, k_size, k_noise = jax.random.split(key, 3)
            if future:
                lam = jnp.mean(jnp.abs(g["delta"]), -1, keepdims=True) + 1e-8  # [P, n, 1]
                hit = jax.random.bernoulli(k_cp, rate, mu.shape)
                size = jax.random.laplace(k_size, mu.shape) * lam * hit       # slope change on day j
                slope = jnp.cumsum(size, -1)                                   # [P, n, H]
                mu = mu + (jnp.cumsum(slope, -1) - slope) / (big_t - 1)       # sum_{c<=j} size_c (t_j - t_c)
            draws = mu + g["sigma"][..., None] * jax.random.normal(k_noise, mu.shape)
            draws = draws * scale[:, None] if self.transform == "scale" else jnp.expm1(draws)
            qs = jnp.quantile(jnp.maximum(draws, 0.0), levels, axis=0)         # [Q, n, H]
            return jnp.transpose(qs, (1, 2, 0))

        outs = []
        for a in range(0, self._n, self.predict_chunk):
            sl = slice(a, min(a + self.predict_chunk, self._n))
            g = {name: jnp.asarray(v[idx][:, sl]) for name, v in self._post.items()}   # [P, n, ...]
            key, sub = jax.random.split(key)
            outs.append(np.asarray(chunk(g, jnp.asarray(self._scale[sl], jnp.float32), sub)))
        return np.concatenate(outs, 0).astype(np.float32)


# ---------------------------------------------------------------------------------------------- registry
BASELINES = {"seasonal_naive": SeasonalNaive, "gaussian_net": GaussianNet, "quantile_net": QuantileNet,
             "structural_bayes": StructuralBayes}


def build_baseline(name: str, config: dict | None = None):
    """BASELINES[name](**config): e.g. build_baseline("gaussian_net", {"context_len": 56, "horizon": 28})."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
    return BASELINES[name](**(config or {}))


def fit_and_predict(name: str, config: dict | None = None, *, quantiles, seed: int = 0, steps: int | None = None,
                    train: dict | None = None, context=None, covariates=None, history=None,
                    horizon: int | None = None) -> tuple[np.ndarray, dict]:
    """Build, fit and forecast in one call -> (quantile forecasts [N, H, Q], fit info).

    Window baselines need `train` and `context` (+ `covariates` [N, C + H, F] when built with them). The series
    baseline needs `history` [N, T] (each forecast series' full history up to the origin) and `horizon`; if
    `context` is given too it must equal history[:, -C:], which catches histories cut at the wrong origin."""
    model = build_baseline(name, config)
    if model.series_model:
        if history is None or horizon is None:
            raise ValueError(f"{name} is fitted per series: pass history [N, T] and horizon, not windows")
        hist = _matrix("history", history)
        if context is not None:
            ctx = _matrix("context", context, rows=hist.shape[0])
            if ctx.shape[1] > hist.shape[1] or not np.allclose(hist[:, -ctx.shape[1]:], ctx):
                raise ValueError("history must end with the context windows (history[:, -C:] == context): "
                                 "the series model forecasts from the end of the history it is fitted on")
        info = model.fit_series(hist, seed=seed, steps=steps)
        return model.predict_quantiles_series(horizon, quantiles), info
    if train is None or context is None:
        raise ValueError(f"{name} is a window baseline: pass train windows and the context to forecast")
    if horizon is not None and int(horizon) != model.horizon:
        raise ValueError(f"horizon={horizon} but {name} was built with horizon={model.horizon}")
    info = model.fit(train, seed=seed, steps=steps)
    return model.predict_quantiles(context, covariates, quantiles), info


__all__ = ["SeasonalNaive", "GaussianNet", "QuantileNet", "StructuralBayes", "BASELINES", "build_baseline",
           "fit_and_predict", "interpolate_levels"]
