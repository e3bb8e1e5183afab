"""Forecast metrics against values computed by hand on tiny arrays (the arithmetic is in the comments)."""
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from jaxsuite.forecast import metrics as M

# Two series, 5 history days, horizon 3.
# s0 = 0 0 1 3 2: first sale on day 3, so the in-sample series is 1 3 2 with steps +2, -1:
#     squared scale (4 + 1) / 2 = 2.5, absolute scale (2 + 1) / 2 = 1.5.
#     (Counting the leading zeros would give (0 + 1 + 4 + 1) / 4 = 1.5 instead.)
# s1 = 2 4 4 1 3: steps +2, 0, -3, +2: squared scale 17/4 = 4.25, absolute scale 7/4 = 1.75.
HIST = np.array([[0, 0, 1, 3, 2], [2, 4, 4, 1, 3]], dtype=float)
ACT = np.array([[2, 0, 1], [3, 5, 2]], dtype=float)
FC = np.array([[1, 1, 1], [4, 4, 4]], dtype=float)
W = np.array([0.25, 0.75])
# s0 errors 1, -1, 0 -> MSE 2/3 -> RMSSE sqrt((2/3) / 2.5) = sqrt(4/15)
# s1 errors -1, 1, -2 -> MSE 2 -> RMSSE sqrt(2 / 4.25) = sqrt(8/17)
RMSSE = np.array([math.sqrt(4 / 15), math.sqrt(8 / 17)])  # 0.5163977795, 0.6859943406
WRMSSE = 0.25 * math.sqrt(4 / 15) + 0.75 * math.sqrt(8 / 17)  # 0.6435952003


def test_naive_scale_counts_from_first_sale():
    np.testing.assert_allclose(M.naive_scale(HIST, power=2), [2.5, 4.25])
    np.testing.assert_allclose(M.naive_scale(HIST, power=1), [1.5, 1.75])
    # never sold, constant after the first sale, first sale on the last day: all undefined -> 0
    np.testing.assert_array_equal(M.naive_scale([[0, 0, 0], [0, 2, 2], [0, 0, 5]]), [0, 0, 0])


def test_rmsse_wrmsse_hand_values():
    np.testing.assert_allclose(M.rmsse(HIST, ACT, FC), RMSSE, atol=1e-12)
    assert M.wrmsse(HIST, ACT, FC, W) == pytest.approx(0.6435952003, abs=1e-6)
    assert M.wrmsse(HIST, ACT, FC, W) == pytest.approx(WRMSSE, abs=1e-12)
    assert M.wrmsse(HIST, ACT, ACT, W) == 0.0


def test_zero_scale_raise_and_exclude():
    hist = np.vstack([HIST, np.zeros(5)])  # third series never sold
    act, fc = np.vstack([ACT, [1, 1, 1]]), np.vstack([FC, [0, 0, 0]])
    with pytest.raises(ValueError, match="zero.*scale"):
        M.rmsse(hist, act, fc)
    with pytest.raises(ValueError, match="zero_scale='exclude'"):
        M.wrmsse(hist, act, fc, [0.125, 0.375, 0.5])
    per = M.rmsse(hist, act, fc, zero_scale="exclude")
    assert np.isnan(per[2]) and np.allclose(per[:2], RMSSE)
    with pytest.warns(UserWarning, match="excluded 1 zero-scale series carrying weight 0.5"):
        got = M.wrmsse(hist, act, fc, [0.125, 0.375, 0.5], zero_scale="exclude")
    assert got == pytest.approx(WRMSSE, abs=1e-12)  # remaining 0.125, 0.375 renormalised to 0.25, 0.75
    with warnings.catch_warnings():  # a zero-weight zero-scale series is skipped silently, even under "raise"
        warnings.simplefilter("error")
        assert M.wrmsse(hist, act, fc, [0.25, 0.75, 0.0]) == pytest.approx(WRMSSE, abs=1e-12)
    with pytest.raises(ValueError, match="zero_scale must be"):
        M.wrmsse(HIST, ACT, FC, W, zero_scale="ignore")


def test_pinball_asymmetry():
    # y = 1, forecast 0 (under by 1) and 2 (over by 1) at u = 0.9: 0.9 and 0.1
    got = M.pinball(np.array([1.0, 1.0]), np.array([[0.0], [2.0]]), [0.9])
    np.testing.assert_allclose(got[:, 0], [0.9, 0.1])
    got = M.pinball(1.0, np.array([0.0, 2.0]), [0.1, 0.9])  # u=0.1 under by 1 -> 0.1; u=0.9 over by 1 -> 0.1
    np.testing.assert_allclose(got, [0.1, 0.1])


# Quantiles (0.1, 0.5, 0.9), the same quantile forecast on every horizon day.
# s0, y = 2 0 1, forecasts (0, 1, 2):
#   u=.1,q=0: .2 0 .1 -> 1/10; u=.5,q=1: .5 .5 0 -> 1/3; u=.9,q=2: 0 .2 .1 -> 1/10; / 1.5 -> 1/15, 2/9, 1/15
# s1, y = 3 5 2, forecasts (2, 3, 5):
#   u=.1,q=2: .1 .3 0 -> 2/15; u=.5,q=3: 0 1 .5 -> 1/2; u=.9,q=5: .2 0 .3 -> 1/6; / 1.75 -> 8/105, 2/7, 2/21
# WSPL = .25 * (16/45)/3 + .75 * (48/105)/3 = 4/135 + 4/35 = 136/945
Q3 = (0.1, 0.5, 0.9)
QF3 = np.stack([np.tile([0.0, 1.0, 2.0], (3, 1)), np.tile([2.0, 3.0, 5.0], (3, 1))])  # [N=2, H=3, Q=3]


def test_spl_wspl_three_quantiles():
    np.testing.assert_allclose(M.spl(HIST, ACT, QF3, Q3), [[1 / 15, 2 / 9, 1 / 15], [8 / 105, 2 / 7, 2 / 21]],
                               atol=1e-12)
    assert M.wspl(HIST, ACT, QF3, W, Q3) == pytest.approx(136 / 945, abs=1e-12)  # 0.1439153439


def test_spl_m5_grid():
    hist = np.array([[0.0, 1.0, 3.0]])  # from first sale: 1 3, absolute scale 2
    y = np.array([[2.0]])
    # constant forecast 1 (under by 1): loss u, mean over the symmetric M5 grid = 4.5 / 9 = 0.5, / 2 = 0.25
    assert M.wspl(hist, y, np.ones((1, 1, 9)), [1.0]) == pytest.approx(0.25, abs=1e-12)
    np.testing.assert_allclose(M.spl(hist, y, np.ones((1, 1, 9)))[0], np.array(M.M5_QUANTILES) / 2)
    # forecasts 0, .5, ..., 4 at the 9 levels; losses .01 .0375 .165 .125 0 .125 .165 .0375 .01
    # sum .675, mean .075, / 2 = .0375
    qf = np.arange(9, dtype=float).reshape(1, 1, 9) / 2
    assert M.wspl(hist, y, qf, [1.0]) == pytest.approx(0.0375, abs=1e-12)


def test_crps_samples_point_mass_and_two_points():
    y = np.array([1.0, -2.0])
    np.testing.assert_allclose(M.crps_samples(y, np.full((5, 2), 3.0)), [2.0, 5.0])  # = |3 - y|
    # samples {0, 2}, y = 1: E|X-y| = 1; E|X-X'| = 4/4 (biased) or 4/2 (fair) -> 0.5 and 0
    assert M.crps_samples(1.0, np.array([0.0, 2.0])) == pytest.approx(0.5)
    assert M.crps_samples(1.0, np.array([0.0, 2.0]), fair=True) == pytest.approx(0.0)


def test_crps_samples_matches_gaussian_closed_form():
    rng = np.random.default_rng(0)
    mu, sigma = np.array([0.0, 1.0, -3.0]), np.array([1.0, 2.0, 0.5])
    y = np.array([0.3, -1.0, -3.0])
    samples = mu + sigma * rng.standard_normal((200_000, 3))
    ref = M.crps_gaussian(y, mu, sigma)
    np.testing.assert_allclose(M.crps_samples(y, samples), ref, rtol=1e-2)
    np.testing.assert_allclose(M.crps_samples(y, samples, fair=True), ref, rtol=1e-2)
    # the closed form at y = mu: sigma (2 phi(0) - 1/sqrt(pi)) = sigma (sqrt(2) - 1) / sqrt(pi)
    assert M.crps_gaussian(0.0, 0.0, 1.0) == pytest.approx((math.sqrt(2) - 1) / math.sqrt(math.pi))


def test_crps_quantiles():
    # 2 x mean pinball: y = 1, levels (.1, .9) forecasts (0, 2): losses .1, .1 -> 2 * .1 = .2
    assert M.crps_quantiles(1.0, np.array([0.0, 2.0]), [0.1, 0.9]) == pytest.approx(0.2)
    levels = np.arange(1, 200) / 200  # dense even grid -> close to the Gaussian closed form
    got = M.crps_quantiles(np.array([0.5]), norm.ppf(levels)[None, :], levels)
    assert got[0] == pytest.approx(M.crps_gaussian(0.5, 0.0, 1.0), rel=2e-2)


def test_crps_samples_jax_matches_numpy_and_differentiates():
    rng = np.random.default_rng(1)
    s, y = rng.normal(size=(64, 4)), rng.normal(size=4)
    got = M.crps_samples(jnp.asarray(y), jnp.asarray(s))
    assert isinstance(got, jax.Array)
    np.testing.assert_allclose(np.asarray(got), M.crps_samples(y, s), rtol=1e-5)
    g = jax.grad(lambda x: M.crps_samples(jnp.asarray(y), x).sum())(jnp.asarray(s, jnp.float32))
    assert g.shape == s.shape and bool(jnp.all(jnp.isfinite(g)))


def test_mmd2_hand_two_point_sets():
    # x = {0, 1}, y = {0, 2}, sigma = 1, k(a,b) = exp(-(a-b)^2 / 2):
    # mean Kxx = (1 + e^-.5)/2, mean Kyy = (1 + e^-2)/2, mean Kxy = (1 + e^-2 + 2 e^-.5)/4
    # biased = (1 - e^-.5)/2 = 0.19673467; unbiased = e^-.5 + e^-2 - (1 + e^-2 + 2 e^-.5)/2 = (e^-2 - 1)/2
    x, y = np.array([0.0, 1.0]), np.array([0.0, 2.0])
    assert M.mmd2(x, y, bandwidths=(1.0,)) == pytest.approx((1 - math.exp(-0.5)) / 2, abs=1e-12)
    assert M.mmd2(x, y, bandwidths=(1.0,), unbiased=True) == pytest.approx((math.exp(-2) - 1) / 2, abs=1e-12)


def test_mmd2_properties():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(3, 6)), rng.normal(1.0, 1.0, size=(3, 8))  # batch 3, sets of 6 and 8 points
    np.testing.assert_allclose(M.mmd2(a, a), 0.0, atol=1e-12)
    np.testing.assert_allclose(M.mmd2(a, b), M.mmd2(b, a), atol=1e-12)
    assert M.mmd2(a, b).shape == (3,) and np.all(M.mmd2(a, b) > 0)
    # vector points [..., n, d]
    va, vb = rng.normal(size=(5, 2)), rng.normal(size=(4, 2)) + 2
    assert M.mmd2(va, vb, vector_points=True) > 0
    assert M.mmd2(va, va, vector_points=True) == pytest.approx(0.0, abs=1e-12)


def test_mmd2_weighted_equals_repeated_points():
    # {0 (w 2/3), 1 (w 1/3)} is the same distribution as the unweighted multiset {0, 0, 1}
    y = np.array([0.5, 2.0, -1.0])
    got = M.mmd2(np.array([0.0, 1.0]), y, weights_x=np.array([2.0, 1.0]))  # weights are normalised
    assert got == pytest.approx(M.mmd2(np.array([0.0, 0.0, 1.0]), y), abs=1e-12)
    # label distributions over bins: bin centres + probabilities; identical distributions -> 0
    centres, p = np.linspace(0, 1, 5), np.array([0.1, 0.2, 0.4, 0.2, 0.1])
    assert M.mmd2(centres, centres, weights_x=p, weights_y=p) == pytest.approx(0.0, abs=1e-12)


def test_mmd2_jax_matches_numpy_and_differentiates():
    rng = np.random.default_rng(3)
    x, y, w = rng.normal(size=(2, 5)), rng.normal(size=(2, 7)), rng.uniform(0.1, 1, size=(2, 5))
    ref = M.mmd2(x, y, weights_x=w, unbiased=True)
    got = M.mmd2(jnp.asarray(x), jnp.asarray(y), weights_x=jnp.asarray(w), unbiased=True)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-6)
    g = jax.jit(jax.grad(lambda a: M.mmd2(a, jnp.asarray(y)).sum()))(jnp.asarray(x, jnp.float32))
    assert g.shape == x.shape and bool(jnp.all(jnp.isfinite(g)))


def test_interval_coverage_hand():
    # 1 in [0,1] yes; 2 in [2.5,3] no; 3 in [3,3] yes (closed); 4 in [0,3] no -> 0.5
    assert M.interval_coverage([1, 2, 3, 4], [0, 2.5, 3, 0], [1, 3, 3, 3]) == 0.5


def test_coverage_from_quantiles_interpolates():
    # grid .1 .25 .75 .9 with forecasts -2 -1 1 2. 50%: [-1, 1]; 80%: [-2, 2];
    # 60% needs levels .2 and .8: -2 + (.1/.15) * 1 = -4/3 and 1 + (.05/.15) * 1 = 4/3
    grid = (0.1, 0.25, 0.75, 0.9)
    y = np.array([0.0, 1.2, -1.3, 1.5, -3.0])
    qf = np.tile([-2.0, -1.0, 1.0, 2.0], (5, 1))
    got = M.coverage_from_quantiles(y, qf, grid, levels=(0.5, 0.8, 0.6))
    assert got == pytest.approx({0.5: 0.2, 0.8: 0.8, 0.6: 0.6})
    with pytest.raises(ValueError, match="outside the forecast grid"):
        M.coverage_from_quantiles(y, qf, grid, levels=(0.95,))
    # M5 grid: 95% uses .025/.975 exactly
    qf9 = np.tile(np.arange(9.0), (5, 1))  # level .025 -> 1, .975 -> 7
    assert M.coverage_from_quantiles(np.array([0.5, 1, 4, 7, 7.5]), qf9, M.M5_QUANTILES,
                                     levels=(0.95,)) == {0.95: pytest.approx(0.6)}
    # crossing quantiles raise unless rearranged
    crossed = qf[:, ::-1]
    with pytest.raises(ValueError, match="lower > upper"):
        M.coverage_from_quantiles(y, crossed, grid)
    assert M.coverage_from_quantiles(y, crossed, grid, levels=(0.5,), rearrange=True) == {0.5: pytest.approx(0.2)}


def test_errors_have_messages():
    with pytest.raises(ValueError, match="shape mismatch"):
        M.rmsse(HIST, ACT, FC[:, :2])
    with pytest.raises(ValueError, match="actual contains 1 NaN"):
        M.rmsse(HIST, np.where(ACT == 5, np.nan, ACT), FC)
    with pytest.raises(ValueError, match="strictly increasing"):
        M.pinball(ACT, QF3, (0.5, 0.1, 0.9))
    with pytest.raises(ValueError, match=r"strictly inside \(0, 1\)"):
        M.pinball(ACT, QF3, (0.0, 0.5, 1.0))
    with pytest.raises(ValueError, match=r"actual.shape \+ \(Q,\)"):
        M.spl(HIST, ACT, QF3[..., :2], Q3)
    with pytest.raises(ValueError, match="2 series but actual has 1"):
        M.wrmsse(HIST, ACT[:1], FC[:1], W)
    with pytest.raises(ValueError, match="non-negative"):
        M.wrmsse(HIST, ACT, FC, [-0.25, 1.25])
    with pytest.raises(ValueError, match="weights has 3 entries for 2 series"):
        M.wrmsse(HIST, ACT, FC, [0.2, 0.3, 0.5])
    with pytest.warns(UserWarning, match="normalising"):
        assert M.wrmsse(HIST, ACT, FC, [1.0, 3.0]) == pytest.approx(WRMSSE, abs=1e-12)
    with pytest.raises(ValueError, match="samples must have shape"):
        M.crps_samples(np.zeros(3), np.zeros((10, 4)))
    with pytest.raises(ValueError, match="batch shape"):
        M.mmd2(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="one weight per point"):
        M.mmd2(np.zeros(3), np.zeros(4), weights_x=np.ones(4))
    with pytest.raises(ValueError, match="bandwidths"):
        M.mmd2(np.zeros(3), np.zeros(4), bandwidths=(0.0,))
    with pytest.raises(ValueError, match="sigma must be positive"):
        M.crps_gaussian(0.0, 0.0, 0.0)
