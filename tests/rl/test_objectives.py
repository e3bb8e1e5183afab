"""Every policy-gradient formula against a value worked out by hand."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.rl import objectives as obj


def test_group_advantages_hand_computed():
    # group 0: rewards 1, -1, 1, 1 -> mean 0.5, unbiased std sqrt((3 * 0.25 + 2.25) / 3) = 1
    # group 1: 0, 2 -> mean 1, std sqrt(2); group 2: a single reward keeps its raw value (mean 0, std 1)
    rewards = [1, -1, 1, 1, 0, 2, 5]
    groups = [0, 0, 0, 0, 1, 1, 2]
    adv = obj.group_advantages(rewards, groups, eps=0.0)
    s2 = math.sqrt(2)
    np.testing.assert_allclose(adv, [0.5, -1.5, 0.5, 0.5, -1 / s2, 1 / s2, 5.0], rtol=1e-6)
    no_std = obj.group_advantages(rewards, groups, norm_by_std=False)
    np.testing.assert_allclose(no_std, [0.5, -1.5, 0.5, 0.5, -1.0, 1.0, 5.0], rtol=1e-6)


def test_group_advantages_equal_rewards_are_zero_and_shapes_checked():
    np.testing.assert_allclose(obj.group_advantages([-1, -1, -1], [3, 3, 3]), [0, 0, 0])
    with pytest.raises(ValueError, match="2 entries for 3 rewards"):
        obj.group_advantages([1, 2, 3], [0, 0])


def test_reinforce_and_ema_baseline_by_hand():
    np.testing.assert_allclose(obj.reinforce_advantages([1.0, 3.0], baseline=1.5), [-0.5, 1.5])
    ema = obj.EMABaseline(decay=0.5)
    # first batch: baseline 0 for its own advantages, then b = mean = 2
    np.testing.assert_allclose(ema.advantages([1.0, 3.0]), [1.0, 3.0])
    assert ema.value == 2.0
    # second batch (mean 6): advantages against b = 2, then b = 0.5 * 2 + 0.5 * 6 = 4
    np.testing.assert_allclose(ema.advantages([4.0, 8.0]), [2.0, 6.0])
    assert ema.value == 4.0
    with pytest.raises(ValueError, match="decay"):
        obj.EMABaseline(decay=1.0)


def test_clipped_surrogate_by_hand_with_asymmetric_clip():
    logp = jnp.log(jnp.asarray([[1.5, 0.5, 1.25, 0.5]]))          # ratios against old_logp = 0
    old = jnp.zeros((1, 4))
    adv = jnp.asarray([[1.0, -2.0, 1.0, 3.0]])
    loss, clipped, ratio = obj.clipped_surrogate(logp, old, adv, clip_low=0.2, clip_high=0.28)
    np.testing.assert_allclose(ratio, [[1.5, 0.5, 1.25, 0.5]], rtol=1e-6)
    # 1: A>0, r=1.5 > 1.28 -> max(-1.5, -1.28) = -1.28, clipped
    # 2: A<0, r=0.5 < 0.8  -> max(2 * 0.5, 2 * 0.8) = 1.6, clipped
    # 3: A>0, r=1.25 inside [0.8, 1.28] -> -1.25, not clipped (it would be with a symmetric 0.2)
    # 4: A>0, r=0.5 below the range -> max(-1.5, -2.4) = -1.5: the pessimistic bound keeps the gradient
    np.testing.assert_allclose(loss, [[-1.28, 1.6, -1.25, -1.5]], rtol=1e-6)
    np.testing.assert_array_equal(clipped, [[1, 1, 0, 0]])
    loss_sym, _, _ = obj.clipped_surrogate(logp, old, adv, clip_low=0.2, clip_high=0.2)
    np.testing.assert_allclose(loss_sym[0, 2], -1.2, rtol=1e-6)


def test_k3_kl_by_hand():
    logp = jnp.log(jnp.asarray([0.5, 0.25, 0.3]))
    ref = jnp.log(jnp.asarray([0.25, 0.5, 0.3]))
    # d = ref - logp: log(1/2) -> 1/2 + log 2 - 1; log 2 -> 2 - log 2 - 1; 0 -> 0
    expected = [0.5 + math.log(2) - 1, 1 - math.log(2), 0.0]
    np.testing.assert_allclose(obj.k3_kl(logp, ref), expected, rtol=1e-5, atol=1e-7)
    assert float(obj.k3_kl(jnp.asarray(0.0), jnp.asarray(-100.0))) <= 10.0    # clamped


def test_entropy_from_logits_by_hand():
    np.testing.assert_allclose(obj.entropy_from_logits(jnp.zeros((2, 8))), [math.log(8)] * 2, rtol=1e-6)
    p = np.asarray([0.7, 0.2, 0.1])
    np.testing.assert_allclose(obj.entropy_from_logits(jnp.log(jnp.asarray(p))), -(p * np.log(p)).sum(), rtol=1e-6)


def test_aggregations_by_hand():
    values = jnp.asarray([[1.0, 2.0, 3.0, 9.0], [4.0, 9.0, 9.0, 9.0], [9.0, 9.0, 9.0, 9.0]])
    mask = jnp.asarray([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])     # row 3 is batch padding
    s, n = obj.aggregate(values, mask, "token-mean")
    assert (float(s), float(n)) == (10.0, 4.0)                         # (1 + 2 + 3 + 4) / 4 tokens
    s, n = obj.aggregate(values, mask, "seq-mean-token-mean")
    assert (float(s), float(n)) == (6.0, 2.0)                          # (2 + 4) / 2 sequences
    s, n = obj.aggregate(values, mask, "seq-mean-token-sum")
    assert (float(s), float(n)) == (10.0, 2.0)                         # (6 + 4) / 2 sequences
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        obj.aggregate(values, mask, "mean")


def test_informative_group_share_by_hand():
    from jaxsuite.rl.objectives import informative_group_share
    # groups (2.5, 2.5) teaches nothing, (1.0, 2.5) and (0.0, 1.5) do; ids need not be sorted
    assert informative_group_share([2.5, 1.0, 2.5, 0.0, 2.5, 1.5], [0, 1, 0, 2, 1, 2]) == pytest.approx(2 / 3)
    assert informative_group_share([1.0, 1.0, 1.0, 1.0], [5, 5, 5, 5]) == 0.0
    with pytest.raises(ValueError, match="3 entries for 2 rewards"):
        informative_group_share([1.0, 2.0], [0, 0, 1])
