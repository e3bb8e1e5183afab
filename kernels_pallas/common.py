"""Shared plumbing: argument validation, ALiBi slopes, chunk layouts, segment masks, the scans.

Conventions (those of flash-linear-attention): q, k [B, T, H, K]; v [B, T, H, V]; states [B, H, K, V]
float32; gates are natural-log decays (<= 0). Internally every implementation except the reference works
on a head-major, zero-padded layout [B, H, T_pad, D] with T_pad a multiple of the chunk length C; padded
tokens have q = k = v = 0, gate 0 and (delta rule) beta 0, so they leave the state untouched.

Segment resets (``segment_ids`` [B, T], packed sequences): the state is set to zero before the first token
of every segment after the first, i.e. wherever ``segment_ids[b, t] != segment_ids[b, t - 1]``. The first
segment of a row starts from ``initial_state`` (zero if none). ``final_state`` is the state after the last
token, hence that of the row's last segment. Id values carry no meaning beyond "changed" (padding id 0 is
just another segment). Inside chunks the reset is represented by a per-token count of resets since the
chunk start (``reset_counts``): two tokens interact only if their counts match, and a token sees the state
carried into its chunk only if its count is 0. Unlike a -inf log-decay, this keeps every exponent finite.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_FLOAT_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)


# ---------------------------------------------------------------------------------------------------
# ALiBi slopes (Lightning attention's fixed per-head decay, as in HypeNet)
# ---------------------------------------------------------------------------------------------------

def alibi_slopes(num_heads: int) -> np.ndarray:
    """ALiBi slopes [H] float32: 2^(-8 (h+1) / H) for H a power of two.

    For other H, the standard ALiBi fallback (Press et al., reference code): the slopes of the nearest
    lower power of two n, followed by every other slope of 2n until H are filled.
    """
    if not isinstance(num_heads, (int, np.integer)) or num_heads < 1:
        raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")

    def power_of_two(n):
        return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]

    if num_heads & (num_heads - 1) == 0:
        slopes = power_of_two(num_heads)
    else:
        n = 2 ** math.floor(math.log2(num_heads))
        slopes = power_of_two(n) + power_of_two(2 * n)[0::2][: num_heads - n]
    return np.asarray(slopes, np.float32)


def lightning_g_gamma(num_heads: int) -> np.ndarray:
    """Lightning attention's per-head log-decay g_gamma = -alibi_slopes(H), as HypeNet uses it."""
    return -alibi_slopes(num_heads)


# ---------------------------------------------------------------------------------------------------
# Validation: every error names the offending argument
# ---------------------------------------------------------------------------------------------------

def _is_float(x) -> bool:
    return any(jnp.dtype(x.dtype) == jnp.dtype(d) for d in _FLOAT_DTYPES)


def check_qkv(q, k, v) -> tuple[int, int, int, int, int]:
    """Checks q, k [B, T, H, K] and v [B, T, H, V]; returns (B, T, H, K, V)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not hasattr(x, "shape") or x.ndim != 4:
            raise ValueError(f"{name} must be a 4-D array [B, T, H, D]; got shape {getattr(x, 'shape', None)}")
        if not _is_float(x):
            raise TypeError(f"{name} must be float32, bfloat16 or float16; got {x.dtype}")
    if k.shape != q.shape:
        raise ValueError(f"k must have the shape of q {q.shape}; got {k.shape}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be [B, T, H, V] with B, T, H of q {q.shape[:3]}; got {v.shape}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must share a dtype; got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    if q.shape[1] < 1:
        raise ValueError(f"q must have at least one token; got T = {q.shape[1]}")
    b, t, h, dk = q.shape
    return b, t, h, dk, v.shape[3]


def check_array(name: str, x, shape: tuple[int, ...], *, floating: bool = True):
    if not hasattr(x, "shape") or tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got {getattr(x, 'shape', None)}")
    if floating and not _is_float(x):
        raise TypeError(f"{name} must be float32, bfloat16 or float16; got {x.dtype}")
    if not floating and not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"{name} must be an integer array; got {x.dtype}")


def check_step(q, k, v, state) -> tuple[int, int, int, int]:
    """Checks one decoding token: q, k [B, H, K], v [B, H, V], state [B, H, K, V]; returns (B, H, K, V)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not hasattr(x, "shape") or x.ndim != 3:
            raise ValueError(f"{name} must be [B, H, D] (one token); got shape {getattr(x, 'shape', None)}")
    if k.shape != q.shape:
        raise ValueError(f"k must have the shape of q {q.shape}; got {k.shape}")
    if v.shape[:2] != q.shape[:2]:
        raise ValueError(f"v must be [B, H, V] with B, H of q {q.shape[:2]}; got {v.shape}")
    b, h, dk = q.shape
    check_array("state", state, (b, h, dk, v.shape[2]))
    return b, h, dk, v.shape[2]


def check_common(b, h, dk, dv, t, *, initial_state, segment_ids, chunk_size, scale):
    if initial_state is not None:
        check_array("initial_state", initial_state, (b, h, dk, dv))
    if segment_ids is not None:
        check_array("segment_ids", segment_ids, (b, t), floating=False)
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a positive power of two; got {chunk_size!r}")
    if scale is not None and not isinstance(scale, (int, float, np.floating)):
        raise TypeError(f"scale must be a Python float (it is baked into the kernels); got {type(scale)}")


# ---------------------------------------------------------------------------------------------------
# Chunk layouts and segment masks
# ---------------------------------------------------------------------------------------------------

def padded_length(t: int, chunk: int) -> int:
    return -(-t // chunk) * chunk


def to_heads_first(x, t_pad: int):
    """[B, T, H, ...] -> [B, H, T_pad, ...], zero-padded along time."""
    x = jnp.moveaxis(x, 2, 1)
    pad = [(0, 0)] * x.ndim
    pad[2] = (0, t_pad - x.shape[2])
    return jnp.pad(x, pad)


def from_heads_first(x, t: int):
    """[B, H, T_pad, ...] -> [B, T, H, ...]."""
    return jnp.moveaxis(x[:, :, :t], 1, 2)


def chunk_local_cumsum(g, chunk: int):
    """Inclusive cumulative sum of float32 log-decays inside each chunk, along axis 2 of [B, H, T_pad, ...].

    Kept in float32 and restarted every chunk, so it never grows beyond C steps of decay.
    """
    b, h, t_pad = g.shape[:3]
    rest = g.shape[3:]
    gc = g.astype(jnp.float32).reshape(b, h, t_pad // chunk, chunk, *rest)
    return jnp.cumsum(gc, axis=3).reshape(g.shape)


def reset_counts(segment_ids, t_pad: int, chunk: int):
    """[B, T] ids -> [B, T_pad] float32: number of segment starts in the chunk up to and including t.

    The first token of a row is never a reset (it continues from initial_state); padding continues the
    last segment.
    """
    seg = jnp.asarray(segment_ids)
    starts = jnp.concatenate(
        [jnp.zeros_like(seg[:, :1], dtype=jnp.float32), (seg[:, 1:] != seg[:, :-1]).astype(jnp.float32)], axis=1)
    starts = jnp.pad(starts, ((0, 0), (0, t_pad - seg.shape[1])))
    b = seg.shape[0]
    return jnp.cumsum(starts.reshape(b, t_pad // chunk, chunk), axis=2).reshape(b, t_pad)


def default_scale(dk: int, scale) -> float:
    return float(dk) ** -0.5 if scale is None else float(scale)


def chunked_inputs(q, k, v, gate, segment_ids, chunk: int):
    """The layout every chunked implementation starts from.

    q, k [B, T, H, K]; v [B, T, H, V]; gate [B, T, H, Kg] float32 log-decays (Kg = 1 for scalar gates).
    Returns q, k, v as [B, H, T_pad, D] (zero-padded), the chunk-local cumulative gate [B, H, T_pad, Kg]
    float32 and the reset counts [B, T_pad] (None without segments).
    """
    t_pad = padded_length(q.shape[1], chunk)
    qh, kh, vh = (to_heads_first(x, t_pad) for x in (q, k, v))
    gh = chunk_local_cumsum(to_heads_first(gate, t_pad), chunk)
    cnt = None if segment_ids is None else reset_counts(segment_ids, t_pad, chunk)
    return qh, kh, vh, gh, cnt


def count_layouts(cnt, b, h, t_pad, c):
    """For the Pallas kernels: reset counts [B, T_pad] (or None) -> column [BH, T_pad, 1], row
    [BH, N, 1, C], chunk-last [BH, N, 1, 1]."""
    n = t_pad // c
    if cnt is None:
        cnt = jnp.zeros((b, t_pad), jnp.float32)
    full = jnp.broadcast_to(cnt[:, None, :], (b, h, t_pad)).reshape(b * h, t_pad)
    return full[..., None], full.reshape(b * h, n, 1, c), full.reshape(b * h, n, c)[:, :, -1:, None]


def chunk_count_layouts(cnt, b, n, c):
    """For the xla paths: reset counts [B, T_pad] (or None) -> column [B, 1, N, C, 1], row [B, 1, N, 1, C],
    chunk-last [B, 1, N, 1, 1] (the 1 broadcasts over heads)."""
    if cnt is None:
        cnt = jnp.zeros((b, n * c), jnp.float32)
    col = cnt.reshape(b, 1, n, c, 1)
    return col, jnp.swapaxes(col, -1, -2), col[:, :, :, -1:, :]


def segment_masks(col, row, last, c: int):
    """Segment masks of a chunk from its reset counts, given as a column [.., C, 1], a row [.., 1, C] and
    the chunk's last count [.., 1, 1] (``count_layouts`` inside a kernel, ``chunk_count_layouts`` batched).

    Returns (mq [.., C, 1]: the token reads the state entering the chunk, mk [.., C, 1]: the token's key
    reaches the state leaving it, carry [.., 1, 1]: the entering state survives the chunk, same [.., C, C]:
    i and j in the same segment and j <= i). Only iota, compares and broadcasting, so the one function
    serves the Pallas kernels (2-D blocks on Mosaic TPU and Triton) and the batched jnp paths.
    """
    causal = lax.broadcasted_iota(jnp.int32, (c, c), 0) >= lax.broadcasted_iota(jnp.int32, (c, c), 1)
    return col == 0, col == last, last == 0, causal & (col == row)


# ---------------------------------------------------------------------------------------------------
# Initial state and the sequential scans (the references' token scan, the xla paths' chunk-state scan)
# ---------------------------------------------------------------------------------------------------

def initial_state_f32(initial_state, b: int, h: int, dk: int, dv: int) -> jax.Array:
    """The recurrence's starting state [B, H, K, V] in float32 (zeros when none is given)."""
    if initial_state is None:
        return jnp.zeros((b, h, dk, dv), jnp.float32)
    return initial_state.astype(jnp.float32)


def segment_starts(segment_ids, b: int, t: int) -> jax.Array:
    """[B, T] bool: True where a new segment begins (the id changes). The first token is never a start:
    it continues `initial_state`; every later segment starts from a zero state."""
    if segment_ids is None:
        return jnp.zeros((b, t), bool)
    return jnp.concatenate([jnp.zeros((b, 1), bool), segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1)


def scan_tokens(step, initial_state, inputs, segment_ids):
    """Runs a one-token recurrence over time: the references' loop.

    ``step(state, *inputs_t) -> (o_t, state)`` with ``inputs`` arrays [B, T, ...] (``inputs_t`` their
    [B, ...] slices); the state [B, H, K, V] is zeroed before every segment start. Returns
    (o [B, T, ...], final state).
    """
    b, t = inputs[0].shape[:2]
    starts = segment_starts(segment_ids, b, t)        # [B, T]: the state resets to zero there

    def body(state, xs):
        *inputs_t, start_t = xs
        state = jnp.where(start_t[:, None, None, None], 0.0, state)
        o_t, state = step(state, *inputs_t)
        return state, o_t

    time_major = lambda x: jnp.moveaxis(x, 1, 0)
    state, o = lax.scan(body, initial_state, tuple(map(time_major, (*inputs, starts))))
    return jnp.moveaxis(o, 0, 1), state


def scan_chunk_states(state_decay, delta, s0):
    """The inter-chunk pass of the (simple) GLA chunked forms: S_{n+1} = state_decay_n * S_n + delta_n.

    state_decay [B, H, N, Kg, 1] (Kg = 1 or K, broadcast over V); delta [B, H, N, K, V]; s0 [B, H, K, V]
    float32. Returns (final state [B, H, K, V], the state entering every chunk [B, H, N, K, V]).
    """
    def step(s, xs):
        decay_n, delta_n = xs
        return decay_n * s + delta_n, s

    final, s_prev = lax.scan(step, s0, (jnp.moveaxis(state_decay, 2, 0), jnp.moveaxis(delta, 2, 0)))
    return final, jnp.moveaxis(s_prev, 0, 2)
