"""Public simple GLA / GLA ops: validation, implementation dispatch, layout changes.

    simple_gla(q, k, v, *, g=None, g_gamma=None, ...)   scalar log-decay per head: g [B, T, H] per token,
                                                       or g_gamma [H] fixed (Lightning attention)
    gla(q, k, v, g, ...)                                per-channel log-decay g [B, T, H, K]

    S_t = exp(g_t) * S_{t-1} + k_t^T v_t,   o_t = scale * q_t S_t,   S [B, H, K, V] float32

Both return (o [B, T, H, V] in v's dtype, final_state [B, H, K, V] float32 or None). simple GLA is GLA with
the gate broadcast over K; the two share every implementation, except that simple GLA's intra-chunk
scores are one masked matmul while GLA's need per-channel decays.
"""
from __future__ import annotations

import jax.numpy as jnp

from kernels_pallas import common
from kernels_pallas.chunk_loop import KernelConfig, match_varying
from kernels_pallas.gla import chunk_xla, pallas, reference


def simple_gla(q, k, v, *, g=None, g_gamma=None, scale=None, initial_state=None, output_final_state=False,
               segment_ids=None, chunk_size=64, implementation=None, interpret=False):
    """Simple gated linear attention (Lightning attention with ``g_gamma``).

    Args:
      q, k: [B, T, H, K]; v: [B, T, H, V]; float32, bfloat16 or float16 (one dtype).
      g: [B, T, H] per-token log-decay (<= 0), or None.
      g_gamma: [H] fixed per-head log-decay (<= 0), e.g. ``lightning_g_gamma(H)``; excludes ``g``.
        With neither, there is no decay (plain causal linear attention).
      scale: query scale; default K ** -0.5.
      initial_state: [B, H, K, V] state before the first token (any float dtype; used as float32).
      output_final_state: return the state after the last token.
      segment_ids: [B, T] ints for packed sequences; the state resets to zero where the id changes
        (the first segment starts from ``initial_state``).
      chunk_size: C, a power of two (>= 16 for the Pallas kernels).
      implementation: None (by backend), "reference", "xla", "pallas", "pallas_gpu" or "pallas_tpu".
      interpret: run Pallas kernels in the Pallas interpreter (CPU); True or a ``pltpu.InterpretParams``.

    Returns:
      (o [B, T, H, V] in v's dtype, final_state [B, H, K, V] float32 or None).
    """
    b, t, h, dk, dv = common.check_qkv(q, k, v)
    if g is not None and g_gamma is not None:
        raise ValueError("pass either g (per-token decay) or g_gamma (fixed per-head decay), not both")
    if g is not None:
        common.check_array("g", g, (b, t, h))
        gate = jnp.asarray(g, jnp.float32)[..., None]
    elif g_gamma is not None:
        g_gamma = jnp.asarray(g_gamma)
        common.check_array("g_gamma", g_gamma, (h,))
        gate = jnp.broadcast_to(g_gamma.astype(jnp.float32)[None, None, :, None], (b, t, h, 1))
    else:
        gate = jnp.zeros((b, t, h, 1), jnp.float32)
    return _run(q, k, v, gate, True, scale, initial_state, output_final_state, segment_ids, chunk_size,
                implementation, interpret)


def gla(q, k, v, g, *, scale=None, initial_state=None, output_final_state=False, segment_ids=None,
        chunk_size=64, implementation=None, interpret=False):
    """Gated linear attention with a per-channel log-decay g [B, T, H, K] (<= 0).

    Other arguments and the return value as in ``simple_gla``.
    """
    b, t, h, dk, dv = common.check_qkv(q, k, v)
    common.check_array("g", g, (b, t, h, dk))
    return _run(q, k, v, jnp.asarray(g, jnp.float32), False, scale, initial_state, output_final_state,
                segment_ids, chunk_size, implementation, interpret)


def _run(q, k, v, gate, scalar_gate, scale, initial_state, output_final_state, segment_ids, chunk_size,
         implementation, interpret):
    b, t, h, dk, dv = q.shape[0], q.shape[1], q.shape[2], q.shape[3], v.shape[3]
    common.check_common(b, h, dk, dv, t, initial_state=initial_state, segment_ids=segment_ids,
                        chunk_size=chunk_size, scale=scale)
    impl, platform = common.resolve_implementation(implementation, interpret=interpret, dk=dk, dv=dv,
                                                   chunk=chunk_size)
    scale = common.default_scale(dk, scale)
    if impl == "reference":
        o, final = reference.gla_reference(q, k, v, gate, scale=scale, initial_state=initial_state,
                                           segment_ids=segment_ids)
        return o, (final if output_final_state else None)

    c = chunk_size
    t_pad = common.padded_length(t, c)
    qh, kh, vh = (common.to_heads_first(x, t_pad) for x in (q, k, v))      # [B, H, T_pad, D]
    gh = common.chunk_local_cumsum(common.to_heads_first(gate, t_pad), c)   # [B, H, T_pad, Kg] f32
    cnt = None if segment_ids is None else common.reset_counts(segment_ids, t_pad, c)  # [B, T_pad]
    if impl == "xla":
        o, final = chunk_xla.chunk_gla_xla(qh, kh, vh, gh, cnt, initial_state, scale=scale, chunk=c,
                                           scalar_gate=scalar_gate)
    else:
        cfg = KernelConfig(scale=scale, chunk=c, platform=platform, interpret=interpret)
        o, final = _run_pallas(cfg, qh, kh, vh, gh, cnt, initial_state, scalar_gate)
    return common.from_heads_first(o, t), (final if output_final_state else None)


def _run_pallas(cfg, qh, kh, vh, gh, cnt, initial_state, scalar_gate):
    b, h, t_pad, dk = qh.shape
    dv = vh.shape[-1]
    bh, n, c = b * h, t_pad // cfg.chunk, cfg.chunk
    flat = lambda x: x.reshape(bh, t_pad, x.shape[-1])
    h0 = (jnp.zeros((bh, dk, dv), jnp.float32) if initial_state is None
          else initial_state.astype(jnp.float32).reshape(bh, dk, dv))
    cc, cr, cl = common.count_layouts(cnt, b, h, t_pad, c)
    g_last = gh.reshape(bh, n, c, gh.shape[-1])[:, :, -1:, :]               # [BH, N, 1, Kg]
    if scalar_gate:
        args = (flat(qh), flat(kh), flat(vh), flat(gh), gh.reshape(bh, n, 1, c), g_last, h0, cc, cr, cl)
        o, final = pallas.simple_gla_pallas(cfg, *match_varying(*args))
    else:
        args = (flat(qh), flat(kh), flat(vh), flat(gh), g_last, jnp.swapaxes(g_last, -1, -2), h0, cc, cr, cl)
        o, final = pallas.gla_pallas(cfg, *match_varying(*args))
    return o.reshape(b, h, t_pad, dv), final.reshape(b, h, dk, dv)


# ---------------------------------------------------------------------------------------------------
# Decoding: one token
# ---------------------------------------------------------------------------------------------------

def simple_gla_step(q, k, v, *, state, g=None, g_gamma=None, scale=None):
    """One decoding step of simple GLA. q, k [B, H, K]; v [B, H, V]; g [B, H] or g_gamma [H];
    state [B, H, K, V]. Returns (o [B, H, V] in v's dtype, new state float32). O(K V) per head."""
    b, h, dk, dv = common.check_step(q, k, v, state)
    if g is not None and g_gamma is not None:
        raise ValueError("pass either g or g_gamma, not both")
    if g is not None:
        common.check_array("g", g, (b, h))
        gate = jnp.asarray(g, jnp.float32)[..., None]
    elif g_gamma is not None:
        g_gamma = jnp.asarray(g_gamma)
        common.check_array("g_gamma", g_gamma, (h,))
        gate = jnp.broadcast_to(g_gamma.astype(jnp.float32)[None, :, None], (b, h, 1))
    else:
        gate = jnp.zeros((b, h, 1), jnp.float32)
    o, new = reference.gla_step_reference(q, k, v, gate, state, scale=common.default_scale(dk, scale))
    return o.astype(v.dtype), new


def gla_step(q, k, v, g, *, state, scale=None):
    """One decoding step of GLA; g [B, H, K]. Otherwise as ``simple_gla_step``."""
    b, h, dk, dv = common.check_step(q, k, v, state)
    common.check_array("g", g, (b, h, dk))
    o, new = reference.gla_step_reference(q, k, v, g, state, scale=common.default_scale(dk, scale))
    return o.astype(v.dtype), new
