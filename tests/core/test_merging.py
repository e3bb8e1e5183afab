"""Model merging against hand-computed cases."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.core import merging

BASE = {"w": jnp.array([1.0, 1.0, 1.0, 1.0]), "b": jnp.array([[0.0, 0.0]])}
A = {"w": jnp.array([2.0, 0.5, 1.0, 4.0]), "b": jnp.array([[1.0, -1.0]])}   # tau_A: w [1, -.5, 0, 3], b [1, -1]
B = {"w": jnp.array([0.0, 0.0, 3.0, 2.0]), "b": jnp.array([[3.0, 1.0]])}   # tau_B: w [-1, -1, 2, 1], b [3, 1]


def close(tree, expected):
    for key, value in expected.items():
        np.testing.assert_allclose(np.asarray(tree[key]), value, rtol=1e-6, atol=1e-6)


def test_linear_and_task_arithmetic():
    close(merging.linear([A, B], [0.25, 0.75]), {"w": [0.5, 0.125, 2.5, 2.5], "b": [[2.5, 0.5]]})
    # base + 0.5 * (tau_A + tau_B) = 1 + 0.5 * [0, -1.5, 2, 4]
    close(merging.task_arithmetic(BASE, [A, B], scale=0.5), {"w": [1.0, 0.25, 2.0, 3.0], "b": [[2.0, 0.0]]})


def test_ties_trims_elects_signs_and_averages_the_agreeing_entries():
    # density 0.5 keeps the 2 largest of 4 entries of w per task vector, ties at the threshold included:
    #   tau_A [1, -.5, 0, 3] -> [1, 0, 0, 3]; tau_B [-1, -1, 2, 1] (threshold 1, three ties) -> all kept
    # summed [0, -1, 2, 4] -> elected signs [0, -, +, +]; means of the agreeing entries [0, -1, 2, (3 + 1) / 2]
    merged = merging.ties(BASE, [A, B], density=0.5)
    close(merged, {"w": [1.0, 0.0, 3.0, 3.0]})
    assert merging.trim(jnp.array([1.0, -1.0]), 0.5).tolist() == [1.0, -1.0]
    # b: tau_A trimmed [1, -1], tau_B trimmed [3, 0]; signs sum [4 -> +, -1 -> -]; means [(1 + 3) / 2, -1]
    close(merged, {"b": [[2.0, -1.0]]})


def test_dare_drops_and_rescales_with_a_seed():
    tau = jnp.ones((1000,))
    dropped = merging.dare_drop(tau, 0.9, jax.random.key(0))
    kept = np.asarray(dropped) != 0
    assert set(np.unique(np.asarray(dropped))) <= {0.0, 10.0}
    assert 60 < kept.sum() < 140                                   # ~10% of 1000 kept
    big_base = {"w": jnp.zeros(1000)}
    one = merging.dare(big_base, [{"w": tau}], drop=0.9, seed=3)
    again = merging.dare(big_base, [{"w": tau}], drop=0.9, seed=3)
    np.testing.assert_array_equal(np.asarray(one["w"]), np.asarray(again["w"]))
    assert abs(float(one["w"].mean()) - 1.0) < 0.35                 # unbiased in expectation
    close(merging.dare(BASE, [A, B], drop=0.0), {"w": merging.task_arithmetic(BASE, [A, B])["w"]})


def test_mismatched_models_are_named():
    with pytest.raises(ValueError, match="model 1 has a tensor of shape"):
        merging.linear([A, {"w": jnp.zeros(3), "b": jnp.zeros((1, 2))}], [0.5, 0.5])
    with pytest.raises(ValueError, match="different parameter structure"):
        merging.task_arithmetic(BASE, [{"w": jnp.zeros(4)}])
    with pytest.raises(ValueError, match="density must be in"):
        merging.ties(BASE, [A], density=0.0)
