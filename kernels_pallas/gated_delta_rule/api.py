"""Public gated delta rule ops (Gated DeltaNet / Qwen3-Next's linear-attention mixer).

    gated_delta_rule(q, k, v, g, beta, ...) -> (o [B, T, H, V], final_state [B, H, K, V] float32 or None)
    gated_delta_rule_step(q, k, v, g, beta, state=...) -> (o [B, H, V], new_state)     one decoding token

    S_t = exp(g_t) (I - beta_t k_t^T k_t) S_{t-1} + beta_t k_t^T v_t,   o_t = scale * q_t S_t

g [B, T, H] log-decay (<= 0), beta [B, T, H] (usually sigmoid outputs). Keys should be L2-normalised
(as Gated DeltaNet does before calling); the op does not normalise them.
"""
from __future__ import annotations

import jax.numpy as jnp

from kernels_pallas import common, dispatch
from kernels_pallas.chunk_loop import KernelConfig, match_varying
from kernels_pallas.gated_delta_rule import chunk_xla, pallas, reference


def gated_delta_rule(q, k, v, g, beta, *, scale=None, initial_state=None, output_final_state=False,
                     segment_ids=None, chunk_size=64, implementation=None, interpret=False, platform=None):
    """Chunked gated delta rule.

    Args:
      q, k: [B, T, H, K]; v: [B, T, H, V]; float32, bfloat16 or float16 (one dtype; float16 not for the
        compiled Mosaic TPU kernels, which have no float16 loads: cast to bfloat16 there).
      g: [B, T, H] log-decay per token and head (<= 0).
      beta: [B, T, H] delta-rule step size (kept in float32 inside).
      Other arguments as in ``kernels_pallas.simple_gla``.

    Returns:
      (o [B, T, H, V] in v's dtype, final_state [B, H, K, V] float32 or None).
    """
    b, t, h, dk, dv = common.check_qkv(q, k, v)
    common.check_array("g", g, (b, t, h))
    common.check_array("beta", beta, (b, t, h))
    common.check_common(b, h, dk, dv, t, initial_state=initial_state, segment_ids=segment_ids,
                        chunk_size=chunk_size, scale=scale)
    impl, kernel = dispatch.choose(implementation, platform=platform, interpret=interpret, q=q, k=k, v=v,
                                   chunk=chunk_size)
    scale = common.default_scale(dk, scale)
    g, beta = jnp.asarray(g, jnp.float32), jnp.asarray(beta, jnp.float32)
    if impl == "reference":
        o, final = reference.gated_delta_rule_reference(q, k, v, g, beta, scale=scale,
                                                        initial_state=initial_state, segment_ids=segment_ids)
        return o, (final if output_final_state else None)

    c = chunk_size
    qh, kh, vh, gh, cnt = common.chunked_inputs(q, k, v, g[..., None], segment_ids, c)  # gh [B, H, T_pad, 1]
    t_pad = qh.shape[2]
    bh_ = common.to_heads_first(beta[..., None], t_pad)                        # zero beta on padding
    if impl == "xla":
        o, final = chunk_xla.chunk_gated_delta_rule_xla(qh, kh, vh, gh, bh_, cnt, initial_state, scale=scale,
                                                        chunk=c)
    else:
        n, rows = t_pad // c, b * h
        flat = lambda x: x.reshape(rows, t_pad, x.shape[-1])
        h0 = common.initial_state_f32(initial_state, b, h, dk, dv).reshape(rows, dk, dv)
        cc, cr, cl = common.count_layouts(cnt, b, h, t_pad, c)
        cfg = KernelConfig(scale=scale, chunk=c, platform=kernel, interpret=interpret)
        args = (flat(qh), flat(kh), flat(vh), flat(gh), gh.reshape(rows, n, 1, c),
                gh.reshape(rows, n, c, 1)[:, :, -1:, :], flat(bh_), h0, cc, cr, cl)
        o, final = pallas.gated_delta_rule_pallas(cfg, *match_varying(*args))
        o, final = o.reshape(b, h, t_pad, dv), final.reshape(b, h, dk, dv)
    return common.from_heads_first(o, t), (final if output_final_state else None)


def gated_delta_rule_step(q, k, v, g, beta, *, state, scale=None):
    """One decoding step. q, k [B, H, K]; v [B, H, V]; g, beta [B, H]; state [B, H, K, V].

    Returns (o [B, H, V] in v's dtype, new state float32).
    """
    b, h, dk, dv = common.check_step(q, k, v, state)
    common.check_array("g", g, (b, h))
    common.check_array("beta", beta, (b, h))
    o, new = reference.gated_delta_rule_step_reference(q, k, v, g, beta, state,
                                                       scale=common.default_scale(dk, scale))
    return o.astype(v.dtype), new
