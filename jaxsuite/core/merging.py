"""Model merging on parameter trees: linear interpolation, task arithmetic, TIES and DARE.

Pure functions over pytrees of arrays with the same structure (NNX state, a dict of tensors read from a
safetensors file, a LoRA adapter's tensors), applied leaf by leaf, so a merge can also stream tensor by tensor
(each function works on single arrays too). Following the papers' definitions:

    task vector       tau_i = theta_i - theta_base
    linear            sum_i w_i theta_i
    task arithmetic   theta_base + lambda * sum_i tau_i                         (Ilharco et al., 2023)
    TIES              trim each tau_i to its top-k fraction by magnitude, elect each entry's sign as the sign
                      of sum_i trimmed tau_i, average the trimmed entries that agree with it (the "disjoint
                      mean"), theta_base + lambda * that                         (Yadav et al., 2023)
    DARE              drop each entry of tau_i with probability p, rescale the survivors by 1 / (1 - p), then
                      combine by task arithmetic or TIES                         (Yu et al., 2024)
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _check(trees: Sequence[Any], what: str) -> None:
    if not trees:
        raise ValueError(f"{what}: no models to merge")
    first = jax.tree.structure(trees[0])
    for i, t in enumerate(trees[1:], 1):
        if jax.tree.structure(t) != first:
            raise ValueError(f"{what}: model {i} has a different parameter structure from model 0")
        for a, b in zip(jax.tree.leaves(trees[0]), jax.tree.leaves(t)):
            if np.shape(a) != np.shape(b):
                raise ValueError(f"{what}: model {i} has a tensor of shape {np.shape(b)} where model 0 has "
                                 f"{np.shape(a)}")


def linear(trees: Sequence[Any], weights: Sequence[float]) -> Any:
    """sum_i w_i theta_i (weights are used as given: pass ones that sum to 1 for an average)."""
    _check(trees, "linear")
    if len(weights) != len(trees):
        raise ValueError(f"linear: {len(trees)} models but {len(weights)} weights")
    return jax.tree.map(lambda *xs: sum(w * jnp.asarray(x, jnp.float32) for w, x in zip(weights, xs))
                        .astype(jnp.asarray(xs[0]).dtype), *trees)


def task_vectors(base: Any, finetuned: Sequence[Any]) -> list[Any]:
    _check([base, *finetuned], "task vectors")
    return [jax.tree.map(lambda t, b: jnp.asarray(t, jnp.float32) - jnp.asarray(b, jnp.float32), f, base)
            for f in finetuned]


def _apply(base: Any, delta: Any, scale: float) -> Any:
    return jax.tree.map(lambda b, d: (jnp.asarray(b, jnp.float32) + scale * d).astype(jnp.asarray(b).dtype),
                        base, delta)


def task_arithmetic(base: Any, finetuned: Sequence[Any], scale: float = 1.0) -> Any:
    """theta_base + scale * sum_i (theta_i - theta_base)."""
    taus = task_vectors(base, finetuned)
    return _apply(base, jax.tree.map(lambda *ts: sum(ts), *taus), scale)


def trim(tau: jax.Array, density: float) -> jax.Array:
    """tau with all but its `density` fraction of largest-magnitude entries set to 0 (ties at the threshold
    are kept)."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    if density == 1.0 or tau.size == 0:
        return tau
    k = max(1, int(np.ceil(density * tau.size)))
    threshold = jnp.sort(jnp.abs(tau).ravel())[-k]
    return jnp.where(jnp.abs(tau) >= threshold, tau, 0.0)


def ties_delta(taus: Sequence[jax.Array], density: float) -> jax.Array:
    """TIES on one tensor's task vectors: trim, elect sign, disjoint mean."""
    trimmed = jnp.stack([trim(t, density) for t in taus])                     # [M, ...]
    sign = jnp.sign(jnp.sum(trimmed, axis=0))                                 # [...] the elected sign
    agree = (jnp.sign(trimmed) == sign) & (trimmed != 0)                      # [M, ...]
    count = jnp.sum(agree, axis=0)
    return jnp.where(count > 0, jnp.sum(jnp.where(agree, trimmed, 0.0), axis=0) / jnp.maximum(count, 1), 0.0)


def ties(base: Any, finetuned: Sequence[Any], *, density: float = 0.2, scale: float = 1.0) -> Any:
    """TIES-merging of `finetuned` onto `base`."""
    taus = task_vectors(base, finetuned)
    return _apply(base, jax.tree.map(lambda *ts: ties_delta(ts, density), *taus), scale)


def dare_drop(tau: jax.Array, drop: float, key: jax.Array) -> jax.Array:
    """Each entry kept with probability 1 - drop and rescaled by 1 / (1 - drop), else 0."""
    if not 0.0 <= drop < 1.0:
        raise ValueError(f"drop must be in [0, 1), got {drop}")
    if drop == 0.0:
        return tau
    keep = jax.random.bernoulli(key, 1.0 - drop, tau.shape)
    return jnp.where(keep, tau / (1.0 - drop), 0.0)


def dare(base: Any, finetuned: Sequence[Any], *, drop: float = 0.9, seed: int = 0, combine: str = "task_arithmetic",
         density: float = 1.0, scale: float = 1.0) -> Any:
    """DARE: drop and rescale each task vector (a fixed seed per model and tensor), then combine them by task
    arithmetic or TIES (`combine="ties"`, with `density`)."""
    if combine not in ("task_arithmetic", "ties"):
        raise ValueError(f"combine must be 'task_arithmetic' or 'ties', got {combine!r}")
    taus = task_vectors(base, finetuned)
    dropped = []
    for m, tau in enumerate(taus):
        leaves, treedef = jax.tree.flatten(tau)
        keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), m), max(len(leaves), 1))
        dropped.append(jax.tree.unflatten(treedef, [dare_drop(x, drop, k) for x, k in zip(leaves, keys)]))
    if combine == "ties":
        delta = jax.tree.map(lambda *ts: ties_delta(ts, density), *dropped)
    else:
        delta = jax.tree.map(lambda *ts: sum(ts), *dropped)
    return _apply(base, delta, scale)
