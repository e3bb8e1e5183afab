"""Public simple GLA ops: validation, implementation dispatch, layout changes.

    simple_gla(q, k, v, *, g=None, g_gamma=None, ...)   scalar log-decay per head: g [B, T, H] per token,
                                                       or g_gamma [H] fixed (Lightning attention)
    simple_gla_step(q, k, v, *, state, g=None, g_gamma=None, ...)   one decoding token

    S_t = exp(g_t) * S_{t-1} + k_t^T v_t,   o_t = scale * q_t S_t,   S [B, H, K, V] float32
"""
from __future__ import annotations

import jax.numpy as jnp

from kernels_pallas import common, dispatch
from kernels_pallas.chunk_loop import KernelConfig, match_varying
from kernels_pallas.simple_gla import chunk_xla, pallas, reference


def simple_gla(q, k, v, *, g=None, g_gamma=None, scale=None, initial_state=None, output_final_state=False,
               segment_ids=None, chunk_size=64, implementation=None, interpret=False, platform=None):
    """Simple gated linear attention (Lightning attention with ``g_gamma``).

    Args:
      q, k: [B, T, H, K]; v: [B, T, H, V]; float32, bfloat16 or float16 (one dtype; float16 not for the
        compiled Mosaic TPU kernels, which have no float16 loads: cast to bfloat16 there).
      g: [B, T, H] per-token log-decay (<= 0), or None.
      g_gamma: [H] fixed per-head log-decay (<= 0), e.g. ``lightning_g_gamma(H)``; excludes ``g``.
        With neither, there is no decay (plain causal linear attention).
      scale: query scale; default K ** -0.5.
      initial_state: [B, H, K, V] state before the first token (any float dtype; used as float32).
      output_final_state: return the state after the last token.
      segment_ids: [B, T] ints for packed sequences; the state resets to zero where the id changes
        (the first segment starts from ``initial_state``).
      chunk_size: C, a power of two (>= 16 for the Pallas kernels).
      implementation: None (the platform's default), "reference", "xla", "pallas" (the platform's
        kernel), "pallas_gpu" or "pallas_tpu".
      interpret: run Pallas kernels in the Pallas interpreter (CPU); True or a ``pltpu.InterpretParams``.
      platform: the target to compile for, "cpu", "gpu" or "tpu"; None reads it from the inputs' devices
        (``kernels_pallas.dispatch.target_platform``). Decides what "pallas" means and the default.

    Returns:
      (o [B, T, H, V] in v's dtype, final_state [B, H, K, V] float32 or None).
    """
    b, t, h, dk, dv = common.check_qkv(q, k, v)
    if g is not None and g_gamma is not None:
        raise ValueError("pass either g (per-token decay) or g_gamma (fixed per-head decay), not both")
    if g is not None:
        common.check_array("g", g, (b, t, h))
        gate = jnp.asarray(g, jnp.float32)                                  # [B, T, H]
    elif g_gamma is not None:
        g_gamma = jnp.asarray(g_gamma)
        common.check_array("g_gamma", g_gamma, (h,))
        gate = jnp.broadcast_to(g_gamma.astype(jnp.float32)[None, None, :], (b, t, h))
    else:
        gate = jnp.zeros((b, t, h), jnp.float32)
    common.check_common(b, h, dk, dv, t, initial_state=initial_state, segment_ids=segment_ids,
                        chunk_size=chunk_size, scale=scale)
    impl, kernel = dispatch.choose(implementation, platform=platform, interpret=interpret, q=q, k=k, v=v,
                                   chunk=chunk_size)
    scale = common.default_scale(dk, scale)
    if impl == "reference":
        o, final = reference.simple_gla_reference(q, k, v, gate, scale=scale, initial_state=initial_state,
                                                  segment_ids=segment_ids)
        return o, (final if output_final_state else None)

    c = chunk_size
    qh, kh, vh, gh, cnt = common.chunked_inputs(q, k, v, gate[..., None], segment_ids, c)  # gh [.., T_pad, 1]
    if impl == "xla":
        o, final = chunk_xla.chunk_simple_gla_xla(qh, kh, vh, gh, cnt, initial_state, scale=scale, chunk=c)
    else:
        cfg = KernelConfig(scale=scale, chunk=c, platform=kernel, interpret=interpret)
        o, final = _run_pallas(cfg, qh, kh, vh, gh, cnt, initial_state)
    return common.from_heads_first(o, t), (final if output_final_state else None)


def _run_pallas(cfg, qh, kh, vh, gh, cnt, initial_state):
    """The kernel on the layouts ``simple_gla_pallas`` takes: rows flattened to B*H, the gate as column,
    row and chunk-last value."""
    b, h, t_pad, dk = qh.shape
    dv = vh.shape[-1]
    bh, n, c = b * h, t_pad // cfg.chunk, cfg.chunk
    flat = lambda x: x.reshape(bh, t_pad, x.shape[-1])
    h0 = common.initial_state_f32(initial_state, b, h, dk, dv).reshape(bh, dk, dv)
    cc, cr, cl = common.count_layouts(cnt, b, h, t_pad, c)
    g_last = gh.reshape(bh, n, c, 1)[:, :, -1:, :]                          # [BH, N, 1, 1]
    args = (flat(qh), flat(kh), flat(vh), flat(gh), gh.reshape(bh, n, 1, c), g_last, h0, cc, cr, cl)
    o, final = pallas.simple_gla_pallas(cfg, *match_varying(*args))
    return o.reshape(b, h, t_pad, dv), final.reshape(b, h, dk, dv)


def simple_gla_step(q, k, v, *, state, g=None, g_gamma=None, scale=None):
    """One decoding step of simple GLA. q, k [B, H, K]; v [B, H, V]; g [B, H] or g_gamma [H];
    state [B, H, K, V]. Returns (o [B, H, V] in v's dtype, new state float32). O(K V) per head."""
    b, h, dk, dv = common.check_step(q, k, v, state)
    if g is not None and g_gamma is not None:
        raise ValueError("pass either g or g_gamma, not both")
    if g is not None:
        common.check_array("g", g, (b, h))
        gate = jnp.asarray(g, jnp.float32)                                  # [B, H]
    elif g_gamma is not None:
        g_gamma = jnp.asarray(g_gamma)
        common.check_array("g_gamma", g_gamma, (h,))
        gate = jnp.broadcast_to(g_gamma.astype(jnp.float32)[None, :], (b, h))
    else:
        gate = jnp.zeros((b, h), jnp.float32)
    o, new = reference.simple_gla_step_reference(q, k, v, gate, state, scale=common.default_scale(dk, scale))
    return o.astype(v.dtype), new
