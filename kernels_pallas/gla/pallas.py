"""Pallas kernels for GLA (a per-channel gate per token and head), forward and backward.

Each kernel is a per-chunk ``body`` run by ``kernels_pallas.chunk_loop.chunk_loop_call`` (Mosaic TPU
schedule or Triton GPU schedule; both interpretable on CPU). Per chunk, with masks from the segment
reset counts (``common.segment_masks``) and G the chunk-local cumulative log-decay (computed outside
the kernel, so the kernels never need a cumsum and autodiff turns dG into dg):

    forward   o = scale * [ (q ⊙ e^G) S + (A ⊙ M) v ]          S' = e^{G_C} ⊙ S + (k ⊙ e^{G_C - G})^T v
              A_ij = sum_c q_ic k_jc exp(G_ic - G_jc)   (a loop over the C key columns, each a [C, K]
              product; every exponent <= 0, no sub-chunk approximation needed)
    backward  runs the chunks in reverse, carrying dS; the forward (when differentiated) saved the
              state entering every chunk ([B*H, T/C, K, V] float32, like flash-linear-attention's h),
              so nothing sequential is recomputed. Gate gradients come out per token
              (dG = q ⊙ dq - k ⊙ dk plus the state terms).

The gate enters the kernel in several layouts (G as a column [C, 1] and as a row [1, C]; G_C as a row
and as a column): each is its own input with its own gradient output, and the wrapper's autodiff adds
them back together. That keeps every in-kernel array 2-D and free of transposes.

Matmul precision: operands in the input dtype (bf16 feeds the MXU / tensor cores), float32 accumulation;
states, gates and their exponentials are float32 throughout.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from kernels_pallas.chunk_loop import (KernelConfig, chunk_loop_call, colsum, dot, iota, masked_exp,
                                       matmul_cost_estimate, rowsum, saved_states, total)
from kernels_pallas.common import segment_masks


def _call(cfg, body, reverse, token_in, row_in, chunk_in, carry_init, token_out, chunk_out, name):
    q, v = token_in["q"], token_in["v"]
    return chunk_loop_call(
        functools.partial(body, cfg=cfg, cdt=q.dtype), platform=cfg.platform, interpret=cfg.interpret,
        chunk=cfg.chunk, reverse=reverse, token_in=token_in, row_in=row_in, chunk_in=chunk_in,
        carry_init=carry_init, token_out=token_out, chunk_out=chunk_out,
        carry_shape=(q.shape[-1], v.shape[-1]), name=name, cost_estimate=matmul_cost_estimate(q, v, cfg.chunk, backward=reverse))


def _key_column(j, k, g, cc, cr, c):
    """For key j: (k_j [1,K], decays E [C,K] = exp(G_i - G_j) on same-segment rows i >= j, else 0)."""
    at_j = iota((c, 1), 0) == j
    k_j = colsum(jnp.where(at_j, k, 0.0))                            # [1, K]
    g_j = colsum(jnp.where(at_j, g, 0.0))                            # [1, K]
    c_j = total(jnp.where(iota((1, c), 1) == j, cr, 0.0))            # [1, 1]
    rows_ok = (iota((c, 1), 0) >= j) & (cc == c_j)                   # [C, 1]
    return k_j, masked_exp(rows_ok, g - g_j)


def _gla_fwd_body(tok, rows, chunks, s, *, cfg: KernelConfig, cdt):
    c = cfg.chunk
    q, k, v, g, cc = tok["q"], tok["k"], tok["v"], tok["g"], tok["cc"]
    cr, glr, glc, cl = rows["cr"], chunks["glr"], chunks["glc"], chunks["cl"]
    mq, mk, carry, _ = segment_masks(cc, cr, cl, c)
    qf, kf = q.astype(jnp.float32), k.astype(jnp.float32)

    def column(j, a):
        k_j, e = _key_column(j, kf, g, cc, cr, c)
        return jnp.where(iota((c, c), 1) == j, rowsum(qf * k_j * e), a)

    a = lax.fori_loop(0, c, column, jnp.zeros((c, c), jnp.float32))  # scores, already masked
    eq = jnp.where(mq, jnp.exp(g), 0.0)                              # [C, K]
    o = cfg.scale * (dot(q * eq, s, dtype=cdt) + dot(a, v, dtype=cdt))
    ek = jnp.where(mk, jnp.exp(glr - g), 0.0)                        # [C, K]
    ec = jnp.where(carry, jnp.exp(glc), 0.0)                         # [K, 1]
    s_next = ec * s + dot(k * ek, v, ta=True, dtype=cdt)
    return {"o": o}, {"h": s}, s_next


def _gla_bwd_body(tok, rows, chunks, ds, *, cfg: KernelConfig, cdt):
    c = cfg.chunk
    q, k, v, g, cc, do = tok["q"], tok["k"], tok["v"], tok["g"], tok["cc"], tok["do"]
    cr, glr, glc, cl, s = rows["cr"], chunks["glr"], chunks["glc"], chunks["cl"], chunks["h"]
    mq, mk, carry, _ = segment_masks(cc, cr, cl, c)
    qf, kf = q.astype(jnp.float32), k.astype(jnp.float32)
    do = do.astype(jnp.float32) * cfg.scale
    da = dot(do, v, tb=True, dtype=cdt)                              # [C, C] d scores

    def column(j, carry_):
        a, dq, dk = carry_
        k_j, e = _key_column(j, kf, g, cc, cr, c)
        at_col = iota((c, c), 1) == j
        da_j = rowsum(jnp.where(at_col, da, 0.0))                    # [C, 1]
        a = jnp.where(at_col, rowsum(qf * k_j * e), a)
        dq = dq + da_j * k_j * e
        dk = jnp.where(iota((c, 1), 0) == j, colsum(da_j * qf * e), dk)
        return a, dq, dk

    zeros_ck = jnp.zeros(qf.shape, jnp.float32)
    a, dq, dk = lax.fori_loop(0, c, column, (jnp.zeros((c, c), jnp.float32), zeros_ck, zeros_ck))
    eq = jnp.where(mq, jnp.exp(g), 0.0)
    ek = jnp.where(mk, jnp.exp(glr - g), 0.0)
    ec = jnp.where(carry, jnp.exp(glc), 0.0)
    dq_state = dot(do, s, tb=True, dtype=cdt)                        # d(q ⊙ e^G)
    dk_state = dot(v, ds, tb=True, dtype=cdt)                        # d(k ⊙ e^{G_C - G})
    dq = dq + eq * dq_state
    dk = dk + ek * dk_state
    dv = dot(a, do, ta=True, dtype=cdt) + dot(k * ek, ds, dtype=cdt)
    dg = qf * dq - kf * dk                                           # every exp(G_i - ...) term
    dglr = colsum(kf * ek * dk_state)
    dglc = ec * rowsum(s * ds)
    ds_prev = ec * ds + dot(q * eq, do, ta=True, dtype=cdt)
    return {"dq": dq, "dk": dk, "dv": dv, "dg": dg}, {"dglr": dglr, "dglc": dglc}, ds_prev


def _gla_forward(cfg, q, k, v, g, glr, glc, h0, cc, cr, cl, *, save_states):
    bh, t_pad, dk = q.shape
    n, dv = t_pad // cfg.chunk, v.shape[-1]
    tout, cout, final = _call(
        cfg, _gla_fwd_body, False, dict(q=q, k=k, v=v, g=g, cc=cc), dict(cr=cr),
        dict(glr=glr, glc=glc, cl=cl), h0, dict(o=jax.ShapeDtypeStruct((bh, t_pad, dv), v.dtype)),
        saved_states(save_states, bh, n, dk, dv), "gla_fwd")
    return tout["o"], final, cout.get("h")


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def gla_pallas(cfg, q, k, v, g, glr, glc, h0, cc, cr, cl):
    """q, k [BH, T_pad, K]; v [BH, T_pad, V]; g [BH, T_pad, K] the chunk-local cumulative per-channel
    gate, its chunk-last value as a row glr [BH, N, 1, K] and as a column glc [BH, N, K, 1]; h0 [BH, K, V]
    float32; cc [BH, T_pad, 1], cr [BH, N, 1, C], cl [BH, N, 1, 1]: reset counts as column, row and
    chunk-last value. Returns (o [BH, T_pad, V], final state [BH, K, V] f32)."""
    o, final, _ = _gla_forward(cfg, q, k, v, g, glr, glc, h0, cc, cr, cl, save_states=False)
    return o, final


def _gla_vjp_fwd(cfg, q, k, v, g, glr, glc, h0, cc, cr, cl):
    o, final, h = _gla_forward(cfg, q, k, v, g, glr, glc, h0, cc, cr, cl, save_states=True)
    return (o, final), (q, k, v, g, glr, glc, cc, cr, cl, h)


def _gla_vjp_bwd(cfg, res, cts):
    q, k, v, g, glr, glc, cc, cr, cl, h = res
    do, dfinal = cts
    f32 = jnp.float32
    tout, cout, dh0 = _call(
        cfg, _gla_bwd_body, True, dict(q=q, k=k, v=v, g=g, cc=cc, do=do), dict(cr=cr),
        dict(glr=glr, glc=glc, cl=cl, h=h), dfinal.astype(f32),
        dict(dq=jax.ShapeDtypeStruct(q.shape, q.dtype), dk=jax.ShapeDtypeStruct(k.shape, k.dtype),
             dv=jax.ShapeDtypeStruct(v.shape, v.dtype), dg=jax.ShapeDtypeStruct(g.shape, f32)),
        dict(dglr=jax.ShapeDtypeStruct(glr.shape, f32), dglc=jax.ShapeDtypeStruct(glc.shape, f32)),
        "gla_bwd")
    zeros = [jnp.zeros_like(x) for x in (cc, cr, cl)]
    return (tout["dq"], tout["dk"], tout["dv"], tout["dg"], cout["dglr"], cout["dglc"], dh0, *zeros)


gla_pallas.defvjp(_gla_vjp_fwd, _gla_vjp_bwd)

