"""Chunkwise gated delta rule in plain jnp via the WY representation (default on CPU, fallback elsewhere).

Inside a chunk of C tokens, with G the chunk-local cumulative log-decay, Gamma_ij = exp(G_i - G_j) for
j <= i (0 otherwise, and 0 across segment starts) and S the state entering the chunk, unrolling the
recurrence gives S_i = exp(G_i) S + sum_{j<=i} Gamma_ij k_j^T u_j, where the corrected values u solve

    u_i = beta_i v_i - beta_i exp(G_i) k_i S - sum_{j<i} beta_i Gamma_ij (k_i . k_j) u_j
    <=>  (I + A) u = diag(beta) V - diag(beta e^G) K S,     A = strict_lower(diag(beta) (K K^T) ⊙ Gamma)

so with the WY factors W = (I + A)^{-1} diag(beta e^G) K and U = (I + A)^{-1} diag(beta) V (one unit
lower-triangular inverse per chunk, independent of S, all chunks at once):

    u      = U - W S
    o      = scale * [ (Q ⊙ e^G) S + ((Q K^T) ⊙ Gamma) u ]
    S_next = e^{G_C} S + (K ⊙ e^{G_C - G})^T u

Only the last three lines depend on S: a ``lax.scan`` over the T / C chunks carries S and emits u.
Gradients are JAX autodiff of this code.

The inverse is built from matmuls, (I + A)^{-1} = (I - A)(I + A^2)(I + A^4)..., not with
``jax.scipy.linalg.solve_triangular``: besides mapping onto matmul units, this avoids jaxlib's batched CPU
triangular solve, whose inner parallel-for blocks on the XLA thread pool and deadlocks when two solves
run concurrently on a 2-thread pool (observed with jax 0.10.2 on a 2-core machine: W's and U's solves).
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from kernels_pallas.common import chunk_count_layouts, initial_state_f32, segment_masks

_HI = lax.Precision.HIGHEST


def _einsum(spec, *xs):
    return jnp.einsum(spec, *xs, precision=_HI)


def unit_lower_inverse(a):
    """(I + a)^{-1} for strictly lower-triangular a [..., C, C], C a power of two: with N = -a nilpotent,
    sum_{p<C} N^p = (I + N)(I + N^2)(I + N^4)..., accumulated as T <- T + P T, P <- P P."""
    c = a.shape[-1]
    p = -a
    t = jnp.eye(c, dtype=a.dtype) + p
    for _ in range(max(c.bit_length() - 2, 0)):
        p = _einsum("...ij,...jk->...ik", p, p)
        t = t + _einsum("...ij,...jk->...ik", p, t)
    return t


def chunk_gated_delta_rule_xla(q, k, v, g, beta, cnt, initial_state, *, scale: float, chunk: int):
    """q, k [B, H, T_pad, K]; v [B, H, T_pad, V]; g [B, H, T_pad, 1] chunk-local cumulative log-decay
    (float32); beta [B, H, T_pad, 1]; cnt [B, T_pad] reset counts or None; initial_state [B, H, K, V] or
    None. Returns o [B, H, T_pad, V] (v's dtype) and the final state float32."""
    b, h, t_pad, dk = q.shape
    dv = v.shape[-1]
    n, c = t_pad // chunk, chunk
    split = lambda x: x.reshape(b, h, n, c, x.shape[-1]).astype(jnp.float32)
    qc, kc, vc, gc, bc = split(q), split(k), split(v), split(g), split(beta)   # [B, H, N, C, D]
    mq, mk, carry, same = segment_masks(*chunk_count_layouts(cnt, b, n, c), c)

    gamma = jnp.exp(jnp.where(same, gc - jnp.swapaxes(gc, -1, -2), -jnp.inf))   # [B, H, N, C, C]
    strict = ~jnp.eye(c, dtype=bool)
    a = jnp.where(strict, bc * _einsum("...ik,...jk->...ij", kc, kc) * gamma, 0.0)
    inv = unit_lower_inverse(a)                                                 # (I + A)^{-1}
    e_q = jnp.exp(gc) * mq                                                      # [B, H, N, C, 1]
    w = _einsum("...ij,...jk->...ik", inv, bc * e_q * kc)
    u_base = _einsum("...ij,...jv->...iv", inv, bc * vc)
    g_last = gc[..., -1:, :]                                                    # [B, H, N, 1, 1]
    k_dec = kc * jnp.exp(g_last - gc) * mk
    state_decay = jnp.exp(g_last) * carry                                       # [B, H, N, 1, 1]

    s0 = initial_state_f32(initial_state, b, h, dk, dv)

    def step(s, xs):
        w_n, u_n, k_n, decay_n = xs
        u_n = u_n - _einsum("bhck,bhkv->bhcv", w_n, s)
        s_next = decay_n * s + _einsum("bhck,bhcv->bhkv", k_n, u_n)
        return s_next, (s, u_n)

    chunk_major = lambda x: jnp.moveaxis(x, 2, 0)
    final, (s_prev, u) = lax.scan(step, s0, (chunk_major(w), chunk_major(u_base), chunk_major(k_dec),
                                             chunk_major(state_decay)))
    s_prev, u = jnp.moveaxis(s_prev, 0, 2), jnp.moveaxis(u, 0, 2)               # [B, H, N, K, V], [B, H, N, C, V]
    scores = _einsum("...ik,...jk->...ij", qc, kc) * gamma
    o = scale * (_einsum("bhnck,bhnkv->bhncv", qc * e_q, s_prev) + _einsum("bhnij,bhnjv->bhniv", scores, u))
    return o.reshape(b, h, t_pad, dv).astype(v.dtype), final
