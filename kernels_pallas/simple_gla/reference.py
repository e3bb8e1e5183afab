"""Simple GLA as written in the papers: one token at a time, float32, ``lax.scan``. The oracle.

    S_t = exp(g_t) * S_{t-1} + k_t^T v_t        S [K, V], g_t a scalar log-decay per head
    o_t = scale * q_t S_t

A segment start (see ``kernels_pallas.common``) zeroes S_{t-1} before the update. The step is also what
decoding runs (``simple_gla_step`` in the api): O(K V) per token and head, whatever the context length.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from kernels_pallas.common import initial_state_f32, scan_tokens


def simple_gla_step_reference(q, k, v, g, state, *, scale: float):
    """One recurrence step. q, k [B, H, K]; v [B, H, V]; g [B, H]; state [B, H, K, V].

    Returns o [B, H, V] float32 and the new float32 state.
    """
    q, k, v, g = (x.astype(jnp.float32) for x in (q, k, v, g))
    state = jnp.exp(g)[..., None, None] * state.astype(jnp.float32) + k[..., :, None] * v[..., None, :]
    o = scale * jnp.einsum("bhk,bhkv->bhv", q, state, precision=lax.Precision.HIGHEST)
    return o, state


def simple_gla_reference(q, k, v, g, *, scale: float, initial_state=None, segment_ids=None):
    """Full sequence. q, k [B, T, H, K]; v [B, T, H, V]; g [B, T, H] (log-decays).

    Returns o [B, T, H, V] in v's dtype and the final state [B, H, K, V] float32.
    """
    b, _, h, dk = q.shape
    step = lambda state, q_t, k_t, v_t, g_t: simple_gla_step_reference(q_t, k_t, v_t, g_t, state, scale=scale)
    o, state = scan_tokens(step, initial_state_f32(initial_state, b, h, dk, v.shape[-1]), (q, k, v, g),
                           segment_ids)
    return o.astype(v.dtype), state
