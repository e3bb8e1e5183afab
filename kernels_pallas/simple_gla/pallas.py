"""Pallas kernels for simple GLA (a scalar gate per token and head), forward and backward.

Each kernel is a per-chunk ``body`` run by ``kernels_pallas.chunk_loop.chunk_loop_call`` (Mosaic TPU
schedule or Triton GPU schedule; both interpretable on CPU). Per chunk, with masks from the segment
reset counts (``common.segment_masks``) and G the chunk-local cumulative log-decay (computed outside the
kernel, so the kernels never need a cumsum and autodiff turns dG into dg):

    forward   o = scale * [ (q e^G) S + (A ⊙ M) v ],  A = (q k^T) ⊙ exp(G_i - G_j)   (two matmuls)
              S' = e^{G_C} S + (k ⊙ e^{G_C - G})^T v
    backward  runs the chunks in reverse, carrying dS; the forward (when differentiated) saved the
              state entering every chunk ([B*H, T/C, K, V] float32, like flash-linear-attention's h),
              so nothing sequential is recomputed. Gate gradients come out per token.

The gate enters the kernel as a column [C, 1] and as a row [1, C], and its chunk-last value as [1, 1]:
each layout is its own input with its own gradient output, and the wrapper's autodiff adds them back
together. That keeps every in-kernel array 2-D and free of transposes.

Matmul precision: operands in the input dtype (bf16 feeds the MXU / tensor cores), float32 accumulation;
states, gates and their exponentials are float32 throughout.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from kernels_pallas.chunk_loop import (KernelConfig, chunk_loop_call, colsum, dot, masked_exp,
                                       matmul_cost_estimate, rowsum, saved_states, total)
from kernels_pallas.common import segment_masks


def _fwd_body(tok, rows, chunks, s, *, cfg: KernelConfig, cdt):
    q, k, v, gc, cc = tok["q"], tok["k"], tok["v"], tok["gc"], tok["cc"]
    gr, cr, gl, cl = rows["gr"], rows["cr"], chunks["gl"], chunks["cl"]
    mq, mk, carry, same = segment_masks(cc, cr, cl, cfg.chunk)
    p = dot(q, k, tb=True, dtype=cdt) * masked_exp(same, gc - gr)    # [C, C]
    eq = jnp.where(mq, jnp.exp(gc), 0.0)                             # [C, 1]
    o = cfg.scale * (dot(q * eq, s, dtype=cdt) + dot(p, v, dtype=cdt))
    ek = jnp.where(mk, jnp.exp(gl - gc), 0.0)                        # [C, 1]
    ec = jnp.where(carry, jnp.exp(gl), 0.0)                          # [1, 1]
    s_next = ec * s + dot(k * ek, v, ta=True, dtype=cdt)
    return {"o": o}, {"h": s}, s_next


def _bwd_body(tok, rows, chunks, ds, *, cfg: KernelConfig, cdt):
    q, k, v, gc, cc, do = tok["q"], tok["k"], tok["v"], tok["gc"], tok["cc"], tok["do"]
    gr, cr, gl, cl, s = rows["gr"], rows["cr"], chunks["gl"], chunks["cl"], chunks["h"]
    mq, mk, carry, same = segment_masks(cc, cr, cl, cfg.chunk)
    p = dot(q, k, tb=True, dtype=cdt) * masked_exp(same, gc - gr)
    eq = jnp.where(mq, jnp.exp(gc), 0.0)
    ek = jnp.where(mk, jnp.exp(gl - gc), 0.0)
    ec = jnp.where(carry, jnp.exp(gl), 0.0)
    do = do.astype(jnp.float32) * cfg.scale

    dp = dot(do, v, tb=True, dtype=cdt)                              # [C, C]
    dsc = dp * masked_exp(same, gc - gr)                             # d(q k^T)
    dq_state = dot(do, s, tb=True, dtype=cdt)                        # [C, K]
    dk_state = dot(v, ds, tb=True, dtype=cdt)                        # [C, K]
    dq = dot(dsc, k, dtype=cdt) + eq * dq_state
    dk = dot(dsc, q, ta=True, dtype=cdt) + ek * dk_state
    dv = dot(p, do, ta=True, dtype=cdt) + dot(k * ek, ds, dtype=cdt)
    z = dp * p                                                       # d decay ⊙ decay
    r = rowsum(k * dk_state)                                         # d ek
    dgc = rowsum(z) + eq * rowsum(q * dq_state) - ek * r
    dgr = -colsum(z)
    dgl = total(ek * r) + ec * total(s * ds)
    ds_prev = ec * ds + dot(q * eq, do, ta=True, dtype=cdt)
    return {"dq": dq, "dk": dk, "dv": dv, "dgc": dgc}, {"dgr": dgr, "dgl": dgl}, ds_prev


def _call(cfg, body, reverse, token_in, row_in, chunk_in, carry_init, token_out, chunk_out, name):
    q, v = token_in["q"], token_in["v"]
    return chunk_loop_call(
        functools.partial(body, cfg=cfg, cdt=q.dtype), platform=cfg.platform, interpret=cfg.interpret,
        chunk=cfg.chunk, reverse=reverse, token_in=token_in, row_in=row_in, chunk_in=chunk_in,
        carry_init=carry_init, token_out=token_out, chunk_out=chunk_out,
        carry_shape=(q.shape[-1], v.shape[-1]), name=name, cost_estimate=matmul_cost_estimate(q, v, cfg.chunk, backward=reverse))


def _forward(cfg, q, k, v, gc, gr, gl, h0, cc, cr, cl, *, save_states):
    bh, t_pad, dk = q.shape
    n, dv = t_pad // cfg.chunk, v.shape[-1]
    tout, cout, final = _call(
        cfg, _fwd_body, False, dict(q=q, k=k, v=v, gc=gc, cc=cc), dict(gr=gr, cr=cr),
        dict(gl=gl, cl=cl), h0, dict(o=jax.ShapeDtypeStruct((bh, t_pad, dv), v.dtype)),
        saved_states(save_states, bh, n, dk, dv), "simple_gla_fwd")
    return tout["o"], final, cout.get("h")


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def simple_gla_pallas(cfg, q, k, v, gc, gr, gl, h0, cc, cr, cl):
    """q, k [BH, T_pad, K]; v [BH, T_pad, V]; gc [BH, T_pad, 1] / gr [BH, N, 1, C] / gl [BH, N, 1, 1]:
    chunk-local cumulative gate as column, row and chunk-last value; h0 [BH, K, V] float32; cc, cr, cl:
    reset counts in the same three layouts. Returns (o [BH, T_pad, V], final state [BH, K, V] f32)."""
    o, final, _ = _forward(cfg, q, k, v, gc, gr, gl, h0, cc, cr, cl, save_states=False)
    return o, final


def _vjp_fwd(cfg, q, k, v, gc, gr, gl, h0, cc, cr, cl):
    o, final, h = _forward(cfg, q, k, v, gc, gr, gl, h0, cc, cr, cl, save_states=True)
    return (o, final), (q, k, v, gc, gr, gl, cc, cr, cl, h)


def _vjp_bwd(cfg, res, cts):
    q, k, v, gc, gr, gl, cc, cr, cl, h = res
    do, dfinal = cts
    f32 = jnp.float32
    sds = lambda x, dt=None: jax.ShapeDtypeStruct(x.shape, dt or x.dtype)
    tout, cout, dh0 = _call(
        cfg, _bwd_body, True, dict(q=q, k=k, v=v, gc=gc, cc=cc, do=do), dict(gr=gr, cr=cr),
        dict(gl=gl, cl=cl, h=h), dfinal.astype(f32),
        dict(dq=sds(q), dk=sds(k), dv=sds(v), dgc=sds(gc, f32)), dict(dgr=sds(gr, f32), dgl=sds(gl, f32)),
        "simple_gla_bwd")
    zeros = [jnp.zeros_like(x) for x in (cc, cr, cl)]
    return (tout["dq"], tout["dk"], tout["dv"], tout["dgc"], cout["dgr"], cout["dgl"], dh0, *zeros)


simple_gla_pallas.defvjp(_vjp_fwd, _vjp_bwd)
