"""Baselines: seasonal naive against hand values, the two MLP nets on data with a known per-step Gaussian, the
Prophet-style structural model on a series with a known slope change and weekly pattern, and the errors."""
import numpy as np
import pytest

from jaxsuite.forecast.baselines import (BASELINES, GaussianNet, QuantileNet, SeasonalNaive, StructuralBayes,
                                         build_baseline, fit_and_predict)
from jaxsuite.forecast.metrics import M5_QUANTILES

C, H, MEAN, SD = 14, 7, 10.0, 2.0


def test_seasonal_naive_repeats_an_exact_weekly_pattern_with_zero_width():
    pattern = np.array([3.0, 0.0, 5.0, 1.0, 2.0, 8.0, 4.0])
    ctx = np.stack([np.tile(pattern, 4), np.tile(np.roll(pattern, 3), 4)])           # [2, 28]
    model = SeasonalNaive(season=7, horizon=10)
    info = model.fit({"context": ctx, "target": np.zeros((2, 10)), "covariates": None}, seed=0)
    assert info["steps"] == 0 and info["seconds"] >= 0
    q = model.predict_quantiles(ctx, None, M5_QUANTILES)                              # [2, 10, 9]
    assert q.shape == (2, 10, len(M5_QUANTILES)) and q.dtype == np.float32
    np.testing.assert_array_equal(q[0, :, 4], np.tile(pattern, 2)[:10])             # the median is the pattern
    np.testing.assert_array_equal(q[1, :, 4], np.tile(np.roll(pattern, 3), 2)[:10])
    np.testing.assert_array_equal(np.ptp(q, axis=-1), 0.0)                           # zero-width intervals


def test_seasonal_naive_hand_quantiles_clipping_and_horizon_scaling():
    ctx = np.array([[0.0, 1.0, 2.0, 4.0, 3.0, 2.0],        # residuals y_t - y_{t-2}: 2, 3, 1, -2
                    [5.0, 5.0, 0.0, 0.0, 0.0, 0.0]])       # residuals -5, -5, 0, 0; point 0
    q = SeasonalNaive(season=2, horizon=3).predict_quantiles(ctx, None, (0.25, 0.5, 0.75))
    # sorted residuals -2, 1, 2, 3: linear quantiles 0.25 -> 0.25, 0.5 -> 1.5, 0.75 -> 2.25; point 3, 2, 3
    np.testing.assert_allclose(q[0], [[3.25, 4.5, 5.25], [2.25, 3.5, 4.25], [3.25, 4.5, 5.25]], atol=1e-6)
    np.testing.assert_array_equal(q[1], 0.0)                                          # 0 - 5 clipped at 0
    wide = SeasonalNaive(season=2, horizon=3, horizon_scaling=True).predict_quantiles(ctx, None, (0.25, 0.75))
    np.testing.assert_allclose(wide[0, 2], 3.0 + np.sqrt(2.0) * np.array([0.25, 2.25]), atol=1e-6)  # 2 seasons


@pytest.fixture(scope="module")
def gaussian_windows():
    """Windows whose every value is an independent N(10, 2) draw: the best forecast is N(10, 2) at every step."""
    rng = np.random.default_rng(0)
    train = {"context": rng.normal(MEAN, SD, (2048, C)), "target": rng.normal(MEAN, SD, (2048, H)),
             "covariates": None}
    return train, rng.normal(MEAN, SD, (512, C)), rng.normal(MEAN, SD, (512, H))


def test_gaussian_net_recovers_mean_and_sigma_and_covers(gaussian_windows):
    train, ctx, truth = gaussian_windows
    model = GaussianNet(context_len=C, horizon=H, hidden=32, learning_rate=3e-3, steps=1500)
    info = model.fit(train, seed=0)
    assert info["final_loss"] < info["initial_loss"] and info["steps"] == 1500
    mu, sigma = model.predict_gaussian(ctx)                                           # [512, 7] each
    assert abs(mu.mean() - MEAN) < 0.3 and abs(sigma.mean() - SD) < 0.3
    q = model.predict_quantiles(ctx, None, (0.05, 0.5, 0.95))
    assert q.shape == (512, H, 3) and (np.diff(q, axis=-1) >= 0).all()
    coverage = np.mean((truth >= q[..., 0]) & (truth <= q[..., 2]))
    assert 0.85 < coverage < 0.95, coverage


def test_quantile_net_is_monotone_with_median_near_truth(gaussian_windows):
    train, ctx, truth = gaussian_windows
    model = QuantileNet(context_len=C, horizon=H, hidden=32, learning_rate=3e-3, steps=1500)
    info = model.fit(train, seed=0)
    assert info["final_loss"] < info["initial_loss"]
    q = model.predict_quantiles(ctx, None, M5_QUANTILES)                              # [512, 7, 9]
    assert (np.diff(q, axis=-1) >= 0).all()
    assert abs(np.median(q[..., 4]) - MEAN) < 0.4
    coverage = np.mean((truth >= q[..., 1]) & (truth <= q[..., 7]))                    # 2.5%..97.5%
    assert 0.9 < coverage < 0.99, coverage
    # untrained levels: linear in the level between the trained neighbours; outside the trained range: error
    mid = model.predict_quantiles(ctx, None, (0.2, 0.5))
    np.testing.assert_allclose(mid[..., 1], q[..., 4])
    assert ((mid[..., 0] >= q[..., 2] - 1e-5) & (mid[..., 0] <= q[..., 3] + 1e-5)).all()
    with pytest.raises(ValueError, match="outside the levels"):
        model.predict_quantiles(ctx, None, (0.001, 0.5))


def _structural_series(rng, t_hist=200, horizon=28):
    """Three series: the trend slope changes at day 100, a weekly sine of amplitude `amp`, N(0, 1) noise."""
    d = np.arange(t_hist + horizon)
    specs = [(0.05, 0.15, 5.0, 0), (0.1, -0.05, 3.0, 2), (0.0, 0.1, 4.0, 5)]    # slope before/after, amp, phase
    truth = np.stack([20 + a * np.minimum(d, 100) + b * np.maximum(d - 100, 0) + amp * np.sin(2 * np.pi * (d + p) / 7)
                      for a, b, amp, p in specs])
    return truth, truth + rng.normal(0, 1, truth.shape), 2 * np.array([s[2] for s in specs])


def test_structural_bayes_tracks_a_slope_change_and_weekly_pattern():
    truth, y, swing = _structural_series(np.random.default_rng(0))
    model = StructuralBayes()                                                          # SVI, 500 steps
    info = model.fit_series(y[:, :200], seed=0)
    assert info["method"] == "svi" and info["n_changepoints"] == 25 and not info["yearly"]
    q = model.predict_quantiles_series(28, (0.05, 0.5, 0.95))                          # [3, 28, 3]
    assert q.shape == (3, 28, 3) and (q >= 0).all() and (np.diff(q, axis=-1) >= 0).all()
    mae = np.abs(q[..., 1] - truth[:, 200:]).mean(axis=1)
    assert (mae < 0.15 * swing).all(), (mae, swing)
    coverage = np.mean((y[:, 200:] >= q[..., 0]) & (y[:, 200:] <= q[..., 2]))
    assert coverage > 0.75, coverage


def test_structural_bayes_nuts_runs_on_a_tiny_series():
    truth, y, swing = _structural_series(np.random.default_rng(1), t_hist=70, horizon=7)
    model = StructuralBayes(method="nuts", n_changepoints=5, num_warmup=60, num_samples=100)
    info = model.fit_series(y[:1, :70], seed=0, steps=40)
    assert info["method"] == "nuts" and info["steps"] == 40 and np.isfinite(info["final_loss"])
    q = model.predict_quantiles_series(7, (0.1, 0.5, 0.9))
    assert q.shape == (1, 7, 3) and (np.diff(q, axis=-1) >= 0).all()
    assert np.abs(q[0, :, 1] - truth[0, 70:]).mean() < 0.3 * swing[0]


def test_registry_and_fit_and_predict():
    assert set(BASELINES) == {"seasonal_naive", "gaussian_net", "quantile_net", "structural_bayes"}
    assert isinstance(build_baseline("quantile_net", {"context_len": 7, "horizon": 2}), QuantileNet)
    ctx = np.tile(np.arange(7.0), (3, 3))                                              # [3, 21]
    train = {"context": ctx, "target": np.zeros((3, 7)), "covariates": None}
    q, info = fit_and_predict("seasonal_naive", {"horizon": 7}, quantiles=(0.5,), train=train, context=ctx)
    np.testing.assert_array_equal(q[..., 0], np.tile(np.arange(7.0), (3, 1)))
    with pytest.raises(ValueError, match="history must end with the context"):
        fit_and_predict("structural_bayes", quantiles=(0.5,), history=ctx, context=ctx[:, :14] + 1, horizon=7)
    with pytest.raises(ValueError, match="pass history"):
        fit_and_predict("structural_bayes", quantiles=(0.5,), train=train, context=ctx)
    with pytest.raises(ValueError, match="unknown baseline"):
        build_baseline("prophet")


def test_wrong_shapes_raise_naming_the_argument():
    rng = np.random.default_rng(0)
    train = {"context": rng.normal(5, 1, (16, 7)), "target": rng.normal(5, 1, (16, 3)),
             "covariates": rng.normal(size=(16, 10, 2))}
    net = GaussianNet(context_len=7, horizon=3, num_covariates=2, hidden=8, steps=1)
    with pytest.raises(RuntimeError, match="before fit"):
        net.predict_quantiles(train["context"], train["covariates"], (0.5,))
    with pytest.raises(ValueError, match=r"train\['target'\] must have shape"):
        net.fit({**train, "target": train["target"][:, :2]}, seed=0)
    with pytest.raises(ValueError, match=r"train\['covariates'\] is required"):
        net.fit({**train, "covariates": None}, seed=0)
    net.fit(train, seed=0)
    with pytest.raises(ValueError, match="context must have shape"):
        net.predict_quantiles(train["context"][:, :5], train["covariates"], (0.5,))
    with pytest.raises(ValueError, match="covariates must have shape"):
        net.predict_quantiles(train["context"], train["covariates"][:, :9], (0.5,))
    with pytest.raises(ValueError, match="quantiles must be"):
        net.predict_quantiles(train["context"], train["covariates"], (0.5, 0.1))
    with pytest.raises(ValueError, match="context must have shape"):
        SeasonalNaive(horizon=3).predict_quantiles(np.zeros(20), None, (0.5,))
    with pytest.raises(ValueError, match="longer than season"):
        SeasonalNaive(season=7, horizon=3).predict_quantiles(np.zeros((2, 7)), None, (0.5,))
    with pytest.raises(ValueError, match="history must have shape"):
        StructuralBayes().fit_series(np.zeros(30), seed=0)
    with pytest.raises(ValueError, match="history must cover"):
        StructuralBayes().fit_series(np.zeros((2, 10)), seed=0)
    with pytest.raises(RuntimeError, match="before fit_series"):
        StructuralBayes().predict_quantiles_series(7, (0.5,))
