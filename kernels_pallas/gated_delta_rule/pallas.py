"""Pallas kernels for the gated delta rule: chunked WY forward and its hand-derived backward.

Per chunk (see ``chunk_xla`` for the derivation; Gamma_ij = exp(G_i - G_j) on same-segment j <= i):

    A = strict_lower(beta ⊙ (K K^T) ⊙ Gamma)        T = (I + A)^{-1}
    W = T (beta e^G ⊙ K)      U = T (beta ⊙ V)      u = U - W S
    o = scale [ (Q ⊙ e^G) S + ((Q K^T) ⊙ Gamma) u ]  S' = e^{G_C} S + (K ⊙ e^{G_C - G})^T u

The unit lower-triangular inverse uses only matmuls, so it maps onto the MXU / tensor cores and needs no
dynamic row indexing: with N = -A (nilpotent, N^C = 0),

    (I + A)^{-1} = sum_{p < C} N^p = (I + N)(I + N^2)(I + N^4) ... (I + N^{C/2})

built as T <- T + P T, P <- P P: 2 (log2 C - 1) [C, C] float32 matmuls. This is exact algebra (no
truncation); with L2-normalised keys and beta in (0, 1) the entries of N's powers stay bounded, and the
tests compare it against the triangular solve of the xla path.

Backward, per chunk in reverse (dS carried): the forward saved S per chunk; T, W, U, u are recomputed
from the chunk inputs and S. Then, with do' = scale do,
    du  = ((QK^T) ⊙ Gamma)^T do' + (K ⊙ e^{G_C-G}) dS
    dW  = -du S^T,  dS_prev = e^{G_C} dS + (Q ⊙ e^G)^T do' - W^T du
    dT  = du (beta V)^T + dW (beta e^G K)^T,   dA = -T^T dT T^T (strictly lower part)
and the chain rule through A = beta (K K^T) ⊙ Gamma and Gamma = exp(G_i - G_j) gives dk, dbeta, dG.
All matmuls touching T, W, U, u are float32; the big [C, C] x [C, D] products take the input dtype.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from kernels_pallas.chunk_loop import (KernelConfig, chunk_loop_call, colsum, dot, iota, masked_exp, rowsum,
                                       saved_states, total)
from kernels_pallas.common import segment_masks


def unit_lower_inverse(a):
    """(I + a)^{-1} for strictly lower-triangular a [C, C] (C a power of two), by repeated squaring."""
    c = a.shape[0]
    eye = jnp.where(iota((c, c), 0) == iota((c, c), 1), 1.0, 0.0)
    p = -a
    t = eye + p
    for _ in range(int(math.log2(c)) - 1):
        p = dot(p, p)
        t = t + dot(p, t)
    return t


def _chunk_factors(q, k, v, gc, beta, cc, gr, cr, gl, cl, s, cfg, cdt):
    """Recomputes the per-chunk quantities both passes need."""
    c = cfg.chunk
    mq, mk, carry, same = segment_masks(cc, cr, cl, c)
    kf, vf = k.astype(jnp.float32), v.astype(jnp.float32)
    gamma = masked_exp(same, gc - gr)                                # [C, C]
    kk = dot(k, k, tb=True, dtype=cdt)
    strict = iota((c, c), 0) > iota((c, c), 1)
    a = jnp.where(strict, beta * kk * gamma, 0.0)
    t = unit_lower_inverse(a)
    eq = jnp.where(mq, jnp.exp(gc), 0.0)                             # [C, 1]
    w = dot(t, beta * eq * kf)                                       # [C, K]
    u = dot(t, beta * vf) - dot(w, s)                                # [C, V]
    qk = dot(q, k, tb=True, dtype=cdt)
    ek = jnp.where(mk, jnp.exp(gl - gc), 0.0)                        # [C, 1]
    ec = jnp.where(carry, jnp.exp(gl), 0.0)                          # [1, 1]
    return dict(kf=kf, vf=vf, gamma=gamma, kk=kk, strict=strict, t=t, eq=eq, w=w, u=u, qk=qk, ek=ek, ec=ec)


def _fwd_body(tok, rows, chunks, s, *, cfg: KernelConfig, cdt):
    q, k, v = tok["q"], tok["k"], tok["v"]
    f = _chunk_factors(q, k, v, tok["gc"], tok["beta"], tok["cc"], rows["gr"], rows["cr"], chunks["gl"],
                       chunks["cl"], s, cfg, cdt)
    o = cfg.scale * (dot(q * f["eq"], s, dtype=cdt) + dot(f["qk"] * f["gamma"], f["u"], dtype=cdt))
    s_next = f["ec"] * s + dot(k * f["ek"], f["u"], ta=True, dtype=cdt)
    return {"o": o}, {"h": s}, s_next


def _bwd_body(tok, rows, chunks, ds, *, cfg: KernelConfig, cdt):
    q, k, v, beta, do = tok["q"], tok["k"], tok["v"], tok["beta"], tok["do"]
    s = chunks["h"]
    f = _chunk_factors(q, k, v, tok["gc"], beta, tok["cc"], rows["gr"], rows["cr"], chunks["gl"],
                       chunks["cl"], s, cfg, cdt)
    kf, vf, gamma, kk, t, eq, w, u, ek, ec = (f[n] for n in ("kf", "vf", "gamma", "kk", "t", "eq", "w", "u",
                                                             "ek", "ec"))
    qf = q.astype(jnp.float32)
    p = f["qk"] * gamma
    do = do.astype(jnp.float32) * cfg.scale

    # Output and state-update terms.
    du = dot(p, do, ta=True, dtype=cdt) + dot(k * ek, ds, dtype=cdt)     # [C, V]
    dp = dot(do, u, tb=True, dtype=cdt)                                  # [C, C]
    dq_state = dot(do, s, tb=True, dtype=cdt)                            # [C, K]
    dk_state = dot(u, ds, tb=True, dtype=cdt)                            # [C, K]
    dq = dot(dp * gamma, k, dtype=cdt) + eq * dq_state
    dk = dot(dp * gamma, q, ta=True, dtype=cdt) + ek * dk_state
    dgamma = dp * f["qk"]
    r = rowsum(kf * dk_state)
    dgc = eq * rowsum(qf * dq_state) - ek * r
    dgl = total(ek * r) + ec * total(s * ds)
    ds_prev = ec * ds + dot(q * eq, do, ta=True, dtype=cdt)

    # u = U - W S,  U = T (beta V),  W = T (beta e^G K).
    dw = -dot(du, s, tb=True)                                            # [C, K]
    ds_prev = ds_prev - dot(w, du, ta=True)
    dvb = dot(t, du, ta=True)                                            # d(beta V)
    dkb = dot(t, dw, ta=True)                                            # d(beta e^G K)
    dt = dot(du, beta * vf, tb=True) + dot(dw, beta * eq * kf, tb=True)  # [C, C]
    dv = beta * dvb
    z = rowsum(kf * dkb)
    dbeta = rowsum(vf * dvb) + eq * z
    dk = dk + beta * eq * dkb
    dgc = dgc + beta * eq * z

    # T = (I + A)^{-1},  A = strict(beta ⊙ K K^T ⊙ Gamma),  Gamma = exp(G_i - G_j).
    da = jnp.where(f["strict"], -dot(dot(t, dt, ta=True), t, tb=True), 0.0)
    dbeta = dbeta + rowsum(da * kk * gamma)
    dkk = da * beta * gamma
    dk = dk + dot(dkk, kf) + dot(dkk, kf, ta=True)
    zg = (dgamma + da * beta * kk) * gamma
    dgc = dgc + rowsum(zg)
    dgr = -colsum(zg)
    return ({"dq": dq, "dk": dk, "dv": dv, "dgc": dgc, "dbeta": dbeta}, {"dgr": dgr, "dgl": dgl}, ds_prev)


def _call(cfg, body, reverse, token_in, row_in, chunk_in, carry_init, token_out, chunk_out, name):
    q, v = token_in["q"], token_in["v"]
    bh, t_pad, dk = q.shape
    dv, c = v.shape[-1], cfg.chunk
    per_chunk = 2 * c * c * (dk + dv + 2 * c) + 2 * c * dk * dv * 3 + 2 * c ** 3 * 2 * int(math.log2(c))
    flops = bh * (t_pad // c) * per_chunk * (3 if reverse else 1)
    cost = pl.CostEstimate(flops=int(flops), transcendentals=int(bh * t_pad * c),
                           bytes_accessed=int((q.size * 2 + v.size) * q.dtype.itemsize * (2 if reverse else 1)
                                              + bh * (t_pad // c) * dk * dv * 4))
    return chunk_loop_call(
        functools.partial(body, cfg=cfg, cdt=q.dtype), platform=cfg.platform, interpret=cfg.interpret,
        chunk=c, reverse=reverse, token_in=token_in, row_in=row_in, chunk_in=chunk_in, carry_init=carry_init,
        token_out=token_out, chunk_out=chunk_out, carry_shape=(dk, dv), name=name, cost_estimate=cost,
        num_warps=8)


def _forward(cfg, q, k, v, gc, gr, gl, beta, h0, cc, cr, cl, *, save_states):
    bh, t_pad, dk = q.shape
    n, dv = t_pad // cfg.chunk, v.shape[-1]
    tout, cout, final = _call(
        cfg, _fwd_body, False, dict(q=q, k=k, v=v, gc=gc, beta=beta, cc=cc), dict(gr=gr, cr=cr),
        dict(gl=gl, cl=cl), h0, dict(o=jax.ShapeDtypeStruct((bh, t_pad, dv), v.dtype)),
        saved_states(save_states, bh, n, dk, dv), "gated_delta_rule_fwd")
    return tout["o"], final, cout.get("h")


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def gated_delta_rule_pallas(cfg, q, k, v, gc, gr, gl, beta, h0, cc, cr, cl):
    """q, k [BH, T_pad, K]; v [BH, T_pad, V]; gc [BH, T_pad, 1], gr [BH, N, 1, C], gl [BH, N, 1, 1]: the
    chunk-local cumulative gate as column, row and chunk-last value; beta [BH, T_pad, 1] float32; h0
    [BH, K, V] float32; cc, cr, cl: reset counts in the gate's three layouts.
    Returns (o [BH, T_pad, V], final state [BH, K, V] float32)."""
    o, final, _ = _forward(cfg, q, k, v, gc, gr, gl, beta, h0, cc, cr, cl, save_states=False)
    return o, final


def _vjp_fwd(cfg, q, k, v, gc, gr, gl, beta, h0, cc, cr, cl):
    o, final, h = _forward(cfg, q, k, v, gc, gr, gl, beta, h0, cc, cr, cl, save_states=True)
    return (o, final), (q, k, v, gc, gr, gl, beta, cc, cr, cl, h)


def _vjp_bwd(cfg, res, cts):
    q, k, v, gc, gr, gl, beta, cc, cr, cl, h = res
    do, dfinal = cts
    f32 = jnp.float32
    sds = lambda x, dt=None: jax.ShapeDtypeStruct(x.shape, dt or x.dtype)
    tout, cout, dh0 = _call(
        cfg, _bwd_body, True, dict(q=q, k=k, v=v, gc=gc, beta=beta, cc=cc, do=do), dict(gr=gr, cr=cr),
        dict(gl=gl, cl=cl, h=h), dfinal.astype(f32),
        dict(dq=sds(q), dk=sds(k), dv=sds(v), dgc=sds(gc, f32), dbeta=sds(beta, f32)),
        dict(dgr=sds(gr, f32), dgl=sds(gl, f32)), "gated_delta_rule_bwd")
    zeros = [jnp.zeros_like(x) for x in (cc, cr, cl)]
    return (tout["dq"], tout["dk"], tout["dv"], tout["dgc"], cout["dgr"], cout["dgl"], tout["dbeta"], dh0,
            *zeros)


gated_delta_rule_pallas.defvjp(_vjp_fwd, _vjp_bwd)
