"""Public GLA ops: validation, implementation dispatch, layout changes.

    gla(q, k, v, g, ...)                    per-channel log-decay g [B, T, H, K]
    gla_step(q, k, v, g, *, state, ...)     one decoding token

    S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,   o_t = scale * q_t S_t,   S [B, H, K, V] float32

Returns (o [B, T, H, V] in v's dtype, final_state [B, H, K, V] float32 or None). A scalar decay per head
is simple GLA (``kernels_pallas.simple_gla``), whose intra-chunk scores are one masked matmul; GLA's
need the per-channel decays inside the [C, C] score matrix.
"""
from __future__ import annotations

import jax.numpy as jnp

from kernels_pallas import common, dispatch
from kernels_pallas.chunk_loop import KernelConfig, match_varying
from kernels_pallas.gla import chunk_xla, pallas, reference


def gla(q, k, v, g, *, scale=None, initial_state=None, output_final_state=False, segment_ids=None,
        chunk_size=64, implementation=None, interpret=False, platform=None):
    """Gated linear attention with a per-channel log-decay g [B, T, H, K] (<= 0).

    Other arguments and the return value as in ``kernels_pallas.simple_gla``.
    """
    b, t, h, dk, dv = common.check_qkv(q, k, v)
    common.check_array("g", g, (b, t, h, dk))
    common.check_common(b, h, dk, dv, t, initial_state=initial_state, segment_ids=segment_ids,
                        chunk_size=chunk_size, scale=scale)
    impl, kernel = dispatch.choose(implementation, platform=platform, interpret=interpret, q=q, k=k, v=v,
                                   chunk=chunk_size)
    scale = common.default_scale(dk, scale)
    gate = jnp.asarray(g, jnp.float32)                                      # [B, T, H, K]
    if impl == "reference":
        o, final = reference.gla_reference(q, k, v, gate, scale=scale, initial_state=initial_state,
                                           segment_ids=segment_ids)
        return o, (final if output_final_state else None)

    c = chunk_size
    qh, kh, vh, gh, cnt = common.chunked_inputs(q, k, v, gate, segment_ids, c)    # gh [B, H, T_pad, K]
    if impl == "xla":
        o, final = chunk_xla.chunk_gla_xla(qh, kh, vh, gh, cnt, initial_state, scale=scale, chunk=c)
    else:
        cfg = KernelConfig(scale=scale, chunk=c, platform=kernel, interpret=interpret)
        o, final = _run_pallas(cfg, qh, kh, vh, gh, cnt, initial_state)
    return common.from_heads_first(o, t), (final if output_final_state else None)


def _run_pallas(cfg, qh, kh, vh, gh, cnt, initial_state):
    """The kernel on the layouts ``gla_pallas`` takes: rows flattened to B*H, the chunk-last gate as a
    row and as a column."""
    b, h, t_pad, dk = qh.shape
    dv = vh.shape[-1]
    bh, n, c = b * h, t_pad // cfg.chunk, cfg.chunk
    flat = lambda x: x.reshape(bh, t_pad, x.shape[-1])
    h0 = common.initial_state_f32(initial_state, b, h, dk, dv).reshape(bh, dk, dv)
    cc, cr, cl = common.count_layouts(cnt, b, h, t_pad, c)
    g_last = gh.reshape(bh, n, c, dk)[:, :, -1:, :]                         # [BH, N, 1, K]
    args = (flat(qh), flat(kh), flat(vh), flat(gh), g_last, jnp.swapaxes(g_last, -1, -2), h0, cc, cr, cl)
    o, final = pallas.gla_pallas(cfg, *match_varying(*args))
    return o.reshape(b, h, t_pad, dv), final.reshape(b, h, dk, dv)


def gla_step(q, k, v, g, *, state, scale=None):
    """One decoding step of GLA. q, k [B, H, K]; v [B, H, V]; g [B, H, K]; state [B, H, K, V].
    Returns (o [B, H, V] in v's dtype, new state float32). O(K V) per head."""
    b, h, dk, dv = common.check_step(q, k, v, state)
    common.check_array("g", g, (b, h, dk))
    o, new = reference.gla_step_reference(q, k, v, g, state, scale=common.default_scale(dk, scale))
    return o.astype(v.dtype), new
