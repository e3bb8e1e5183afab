"""The gated delta rule token by token, float32, ``lax.scan``: the oracle (Gated DeltaNet, Qwen3-Next).

With the state S [K, V] (flash-linear-attention's layout; the papers write its transpose):

    S'  = exp(g_t) * S_{t-1}                      decay (scalar log-decay g_t <= 0 per head)
    u_t = beta_t * (v_t - k_t S')                 delta rule: correct what S' predicts for k_t
    S_t = S' + k_t^T u_t
    o_t = scale * q_t S_t

i.e. S_t = exp(g_t) (I - beta_t k_t^T k_t) S_{t-1} + beta_t k_t^T v_t. A segment start zeroes S_{t-1}.
Keys are usually L2-normalised and beta = sigmoid(.) in (0, 1), which keeps the recurrence contractive;
the ops do not normalise for you.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from kernels_pallas.common import initial_state_f32, scan_tokens


def gated_delta_rule_step_reference(q, k, v, g, beta, state, *, scale: float):
    """One step. q, k [B, H, K]; v [B, H, V]; g, beta [B, H]; state [B, H, K, V].

    Returns o [B, H, V] float32 and the new float32 state.
    """
    q, k, v, g, beta = (x.astype(jnp.float32) for x in (q, k, v, g, beta))
    hi = lax.Precision.HIGHEST
    state = jnp.exp(g)[..., None, None] * state.astype(jnp.float32)
    u = beta[..., None] * (v - jnp.einsum("bhk,bhkv->bhv", k, state, precision=hi))
    state = state + k[..., :, None] * u[..., None, :]
    o = scale * jnp.einsum("bhk,bhkv->bhv", q, state, precision=hi)
    return o, state


def gated_delta_rule_reference(q, k, v, g, beta, *, scale: float, initial_state=None, segment_ids=None):
    """Full sequence. q, k [B, T, H, K]; v [B, T, H, V]; g, beta [B, T, H].

    Returns o [B, T, H, V] in v's dtype and the final state [B, H, K, V] float32.
    """
    b, _, h, dk = q.shape
    step = lambda state, q_t, k_t, v_t, g_t, beta_t: gated_delta_rule_step_reference(
        q_t, k_t, v_t, g_t, beta_t, state, scale=scale)
    o, state = scan_tokens(step, initial_state_f32(initial_state, b, h, dk, v.shape[-1]), (q, k, v, g, beta),
                           segment_ids)
    return o.astype(v.dtype), state
