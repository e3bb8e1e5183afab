"""Chunkwise-parallel simple GLA in plain jnp: the default on CPU and the fallback everywhere.

With chunks of C tokens, G the float32 cumulative log-decay inside the chunk (a scalar per token) and S the
state entering it:

    o_i    = scale * [ exp(G_i) q_i S  +  sum_{j <= i in chunk} exp(G_i - G_j) (q_i . k_j) v_j ]
    S_next = exp(G_C) S  +  sum_j exp(G_C - G_j) k_j^T v_j

With a scalar decay the intra-chunk scores are one masked matmul, (Q K^T) ⊙ exp(G_i - G_j). All chunks'
intra-chunk parts are computed at once; only the T / C states are a sequential ``lax.scan``. Work
O(T C K + T K V), memory O(T C + T / C * K V) per head; gradients are JAX autodiff of this code. Every
exponent is <= 0 (G is non-increasing), so nothing overflows under strong decay.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from kernels_pallas.common import chunk_count_layouts, initial_state_f32, scan_chunk_states, segment_masks

_HI = lax.Precision.HIGHEST


def _einsum(spec, *xs):
    return jnp.einsum(spec, *xs, precision=_HI)


def chunk_simple_gla_xla(q, k, v, g, cnt, initial_state, *, scale: float, chunk: int):
    """Chunked simple GLA on the padded head-major layout.

    q, k [B, H, T_pad, K]; v [B, H, T_pad, V]; g [B, H, T_pad, 1] chunk-local cumulative log-decays
    (float32); cnt [B, T_pad] reset counts or None; initial_state [B, H, K, V] or None.
    Returns o [B, H, T_pad, V] (v's dtype) and the final state float32.
    """
    b, h, t_pad, dk = q.shape
    dv = v.shape[-1]
    n, c = t_pad // chunk, chunk
    split = lambda x: x.reshape(b, h, n, c, x.shape[-1]).astype(jnp.float32)
    qc, kc, vc, gc = split(q), split(k), split(v), split(g)                # [B, H, N, C, D]; gc [.., C, 1]
    mq, mk, carry, same = segment_masks(*chunk_count_layouts(cnt, b, n, c), c)

    g_last = gc[..., -1:, :]                                               # [B, H, N, 1, 1]
    q_dec = qc * jnp.exp(gc) * mq                                          # reads the incoming state
    k_dec = kc * jnp.exp(g_last - gc) * mk                                 # writes the outgoing state
    state_decay = jnp.exp(g_last) * carry                                  # [B, H, N, 1, 1]

    decay = jnp.exp(jnp.where(same, gc - jnp.swapaxes(gc, -1, -2), -jnp.inf))   # [B, H, N, C, C]
    scores = _einsum("bhnik,bhnjk->bhnij", qc, kc) * decay
    o_intra = _einsum("bhnij,bhnjv->bhniv", scores, vc)

    delta = _einsum("bhnck,bhncv->bhnkv", k_dec, vc)                       # [B, H, N, K, V]
    final, s_prev = scan_chunk_states(state_decay, delta, initial_state_f32(initial_state, b, h, dk, dv))
    o_inter = _einsum("bhnck,bhnkv->bhncv", q_dec, s_prev)
    o = scale * (o_inter + o_intra)
    return o.reshape(b, h, t_pad, dv).astype(v.dtype), final
