"""GLA as written in the papers: one token at a time, float32, ``lax.scan``. The oracle.

    S_t = exp(g_t)[:, None] * S_{t-1} + k_t^T v_t        S [K, V], g_t [K] a log-decay per channel
    o_t = scale * q_t S_t

A segment start (see ``kernels_pallas.common``) zeroes S_{t-1} before the update. ``gla_step_reference``
is the recurrence for one token and is also what decoding runs (``gla_step`` in the api): O(K V) per
token and head, whatever the context length. A gate of width 1 ([.., 1]) broadcasts over K, which is
simple GLA (its own oracle is ``kernels_pallas.simple_gla.reference``).
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from kernels_pallas.common import initial_state_f32, scan_tokens


def gla_step_reference(q, k, v, g, state, *, scale: float):
    """One recurrence step. q, k [B, H, K]; v [B, H, V]; g [B, H, K] or [B, H, 1]; state [B, H, K, V].

    Returns o [B, H, V] float32 and the new float32 state.
    """
    q, k, v, g = (x.astype(jnp.float32) for x in (q, k, v, g))
    state = jnp.exp(g)[..., :, None] * state.astype(jnp.float32) + k[..., :, None] * v[..., None, :]
    o = scale * jnp.einsum("bhk,bhkv->bhv", q, state, precision=lax.Precision.HIGHEST)
    return o, state


def gla_reference(q, k, v, g, *, scale: float, initial_state=None, segment_ids=None):
    """Full sequence. q, k [B, T, H, K]; v [B, T, H, V]; g [B, T, H, K] or [B, T, H, 1] (log-decays).

    Returns o [B, T, H, V] in v's dtype and the final state [B, H, K, V] float32.
    """
    b, _, h, dk = q.shape
    step = lambda state, q_t, k_t, v_t, g_t: gla_step_reference(q_t, k_t, v_t, g_t, state, scale=scale)
    o, state = scan_tokens(step, initial_state_f32(initial_state, b, h, dk, v.shape[-1]), (q, k, v, g),
                           segment_ids)
    return o.astype(v.dtype), state


def gla_attention_matrix_reference(q, k, v, g, *, scale: float):
    """The same map in its parallel (quadratic) form, for tests: o = scale * ((Q K^T) ⊙ decay) V.

    decay_ij = exp(sum_{j < s <= i} g_s) per channel, so the score is sum_c q_ic k_jc exp(G_ic - G_jc)
    with G the cumulative sum of g. No initial state, no segments; float32; O(T^2 K) memory.
    """
    q, k, v, g = (x.astype(jnp.float32) for x in (q, k, v, g))
    big_g = jnp.cumsum(g, axis=1)                                      # [B, T, H, Kg]
    t = q.shape[1]
    causal = jnp.tril(jnp.ones((t, t), bool))[None, :, :, None, None]  # [1, T, T, 1, 1]
    diff = big_g[:, :, None] - big_g[:, None, :]                        # [B, T(i), T(j), H, Kg]
    decay = jnp.exp(jnp.where(causal, diff, -jnp.inf))
    scores = jnp.einsum("bihc,bjhc,bijhc->bhij", q, k, jnp.broadcast_to(decay, (*decay.shape[:4], q.shape[-1])),
                        precision=lax.Precision.HIGHEST)
    return scale * jnp.einsum("bhij,bjhv->bihv", scores, v, precision=lax.Precision.HIGHEST)
