"""Chunkwise-parallel GLA in plain jnp: the default on CPU and the fallback everywhere.

With chunks of C tokens, G the float32 cumulative log-decay inside the chunk and S the state entering it:

    o_i    = scale * [ (q_i ⊙ exp(G_i)) S  +  sum_{j <= i in chunk} (sum_c q_ic k_jc exp(G_ic - G_jc)) v_j ]
    S_next = exp(G_C) ⊙ S  +  sum_j (k_j ⊙ exp(G_C - G_j))^T v_j

All chunks' intra-chunk parts are computed at once (batched masked matmuls); only the T / C states
are a sequential ``lax.scan``. Work O(T C K + T K V), memory O(T C + T / C * K V) per head; gradients are
JAX autodiff of this code (the scan stores the chunk states).

Every exponent is <= 0: G is non-increasing (log-decays are <= 0), so exp(G_i - G_j) for j <= i and
exp(G_C - G_j) never overflow. For per-channel gates the [C, C] score matrix is not a single matmul; it
is assembled from sub-chunks of c = 16 tokens (flash-linear-attention's scheme): blocks below the
diagonal use a reference point r = G at the first token of the query's sub-chunk,
q_i exp(G_i - r) . k_j exp(r - G_j), where both exponents are <= 0 because j < r's token <= i; diagonal
blocks are computed exactly as a [c, c, K] product. We never form exp(G_i) * exp(-G_j).
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from kernels_pallas.common import chunk_count_layouts, initial_state_f32, scan_chunk_states, segment_masks

_HI = lax.Precision.HIGHEST
SUB_CHUNK = 16


def _einsum(spec, *xs):
    return jnp.einsum(spec, *xs, precision=_HI)


def _scores_per_channel(q, k, g, same):
    """[.., C, K] x3 -> sum_c q_ic k_jc exp(G_ic - G_jc) on same-segment causal pairs (sub-chunk scheme)."""
    *lead, c, dk = q.shape
    sc = min(SUB_CHUNK, c)
    ns = c // sc
    qs, ks, gs = (x.reshape(*lead, ns, sc, dk) for x in (q, k, g))       # [.., S, c, K]
    # Diagonal blocks, exactly: [.., S, c(i), c(j), K].
    tri = jnp.tril(jnp.ones((sc, sc), bool))[:, :, None]
    diff = gs[..., :, None, :] - gs[..., None, :, :]
    diag = _einsum("...ik,...jk,...ijk->...ij", qs, ks, jnp.exp(jnp.where(tri, diff, -jnp.inf)))
    # Blocks a > b through the reference point r_a = G at the first token of sub-chunk a.
    ref = gs[..., :1, :]                                                   # [.., S, 1, K]
    q_hat = qs * jnp.exp(gs - ref)                                         # exponent <= 0
    below = (jnp.arange(ns)[:, None] > jnp.arange(ns)[None, :])[:, :, None, None]  # [S(a), S(b), 1, 1]
    expo = ref[..., :, None, :, :] - gs[..., None, :, :, :]               # [.., S(a), S(b), c, K]
    k_hat = ks[..., None, :, :, :] * jnp.exp(jnp.where(below, expo, -jnp.inf))
    off = _einsum("...aik,...abjk->...aibj", q_hat, k_hat)                 # [.., S, c, S, c]
    scores = off + _place_diag(diag, ns, sc)
    scores = scores.reshape(*lead, c, c)
    return jnp.where(same, scores, 0.0)


def _place_diag(diag, ns: int, sc: int):
    """[.., S, c, c] diagonal blocks -> [.., S, c, S, c] with the blocks at a == b (zeros elsewhere)."""
    eye = jnp.eye(ns, dtype=diag.dtype)                                    # [S(a), S(b)]
    return diag[..., :, :, None, :] * eye[:, None, :, None]


def chunk_gla_xla(q, k, v, g, cnt, initial_state, *, scale: float, chunk: int):
    """Chunked GLA on the padded head-major layout.

    q, k [B, H, T_pad, K]; v [B, H, T_pad, V]; g [B, H, T_pad, K] chunk-local cumulative log-decays
    (float32); cnt [B, T_pad] reset counts or None; initial_state [B, H, K, V] or None.
    Returns o [B, H, T_pad, V] (v's dtype) and the final state float32.
    """
    b, h, t_pad, dk = q.shape
    dv = v.shape[-1]
    n, c = t_pad // chunk, chunk
    split = lambda x: x.reshape(b, h, n, c, x.shape[-1]).astype(jnp.float32)
    qc, kc, vc, gc = split(q), split(k), split(v), split(g)                # [B, H, N, C, D]
    mq, mk, carry, same = segment_masks(*chunk_count_layouts(cnt, b, n, c), c)

    g_last = gc[..., -1:, :]                                               # [B, H, N, 1, K]
    q_dec = qc * jnp.exp(gc) * mq                                          # reads the incoming state
    k_dec = kc * jnp.exp(g_last - gc) * mk                                 # writes the outgoing state
    state_decay = jnp.swapaxes(jnp.exp(g_last) * carry, -1, -2)            # [B, H, N, K, 1]

    scores = _scores_per_channel(qc, kc, gc, same)                         # [B, H, N, C, C]
    o_intra = _einsum("bhnij,bhnjv->bhniv", scores, vc)

    delta = _einsum("bhnck,bhncv->bhnkv", k_dec, vc)                       # [B, H, N, K, V]
    final, s_prev = scan_chunk_states(state_decay, delta, initial_state_f32(initial_state, b, h, dk, dv))
    o_inter = _einsum("bhnck,bhnkv->bhncv", q_dec, s_prev)
    o = scale * (o_inter + o_intra)
    return o.reshape(b, h, t_pad, dv).astype(v.dtype), final
