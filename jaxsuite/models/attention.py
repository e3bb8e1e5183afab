"""Softmax self-attention, the one mixer every family shares: Qwen3 / Qwen2 / Llama (RoPE, optional q/k norm and
biases) and HypeNet (no position encoding, HyPE query scaling, sigmoid output gate) are flags of one module.

Masks, all boolean and combined before one float32 softmax:
  * causal by token order (training / full forward) or by cache slot (decode);
  * segment_ids for packed sequences: a token sees only earlier tokens with the same id (0 marks padding);
  * cache validity: a left-padded prompt writes its pad slots as invalid, so no later token attends to them.
Masked logits get float32's most negative finite value instead of -inf, so a row with nothing to attend to
(a pad token) yields a finite uniform average rather than NaN.

The decode cache is stored heads-major, [B, Kv, S, Hd]: single-query decode contracts over Hd and then S for one
(batch, kv-head) at a time, and in this layout both operands are contiguous, so XLA reads the cache once instead
of transposing it every step (a [B, S, Kv, Hd] cache cost a full copy of V per layer per token).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsuite.core.sharding import constrain
from jaxsuite.models.context import LayerContext
from jaxsuite.models.fused_attention import cudnn_attention, splash_attention
from jaxsuite.models.layers import Einsum, RMSNorm, apply_rope
from jaxsuite.models.mixer_specs import MixerSpec

MASK_VALUE = float(jnp.finfo(jnp.float32).min)
CACHE_AXES = ("act_batch", "act_kv_heads", "act_length", None)   # [B, Kv, S, Hd]


def make_attention_mask(segment_ids: jax.Array | None, batch: int, length: int) -> jax.Array:
    """[B, T, T] bool: causal, and (when given) same segment id. Pad tokens (id 0) see only other pads."""
    idx = jnp.arange(length)
    mask = (idx[:, None] >= idx[None, :])[None]                      # [1, T, T]
    if segment_ids is not None:
        same = segment_ids[:, :, None] == segment_ids[:, None, :]    # [B, T, T]
        mask = mask & same
    return jnp.broadcast_to(mask, (batch, length, length))


def decode_masks(index: jax.Array, length: int, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Masks for T tokens decoded into slots [index, index + T) (`valid` [B, S] already marks them):

    cached [B, T, S]: the slots written before this call (slot < index) that hold real tokens;
    new    [B, T, T]: this call's own tokens, causal among themselves and real tokens only.
    Together they are the causal-by-slot mask over the cache after the write.
    """
    slots = jnp.arange(valid.shape[1])                                     # [S]
    cached = jnp.broadcast_to(((slots < index)[None, :] & valid)[:, None, :], (valid.shape[0], length, slots.size))
    mine = jax.lax.dynamic_slice_in_dim(valid, index, length, axis=1)      # [B, T]
    causal = jnp.arange(length)[:, None] >= jnp.arange(length)[None, :]    # [T, T]
    return cached, causal[None] & mine[:, None, :]


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, scale: float) -> jax.Array:
    """GQA attention. q [B, T, N, Hd], k/v [B, S, Kv, Hd], mask [B, T, S] bool -> [B, T, N, Hd].

    Query head h uses kv head h // (N // Kv), as transformers' repeat_kv does. Scores are scaled after the
    matmul and soft-maxed in float32, then cast back to the compute dtype before meeting v (HF's eager order).
    """
    b, t, n, hd = q.shape
    kv = k.shape[2]
    qg = q.reshape(b, t, kv, n // kv, hd)                                        # [B, T, Kv, G, Hd]
    scores = jnp.einsum("btkgh,bskh->bkgts", qg, k, preferred_element_type=jnp.float32) * scale
    scores = jnp.where(mask[:, None, None, :, :], scores, MASK_VALUE)             # [B, Kv, G, T, S]
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bskh->btkgh", probs, v)                              # [B, T, Kv, G, Hd]
    return out.reshape(b, t, n, hd)


def cached_attention(q: jax.Array, k_cache: jax.Array, v_cache: jax.Array, k: jax.Array, v: jax.Array,
                     cached_mask: jax.Array, new_mask: jax.Array, scale: float) -> jax.Array:
    """Attention of T new queries over the heads-major cache as it was before this call plus the T new keys:
    q [B, T, N, Hd], k_cache/v_cache [B, Kv, S, Hd], k/v [B, T, Kv, Hd], cached_mask [B, T, S], new_mask
    [B, T, T] -> [B, T, N, Hd]. Equal to attention over the cache after writing k/v at their slots.

    Decoding reads the whole cache for a handful of queries, so it is bound by memory bandwidth. Three choices
    keep it to one read of K and one of V:
      * the heads-major layout: each (batch, kv-head) slab is contiguous for both contractions;
      * normalising after the PV product (flash-decoding order: exp(s - max) in float32, PV, then divide by the
        row sums) instead of materialising normalised probabilities in an extra pass;
      * reading the cache as it was, not as written: the write then only feeds the next call, so XLA updates
        the donated buffer in place. Reading the written cache made XLA's CPU fusion duplicate the update into
        both consumers, each starting from a full copy of the buffer (benchmarks/RESULTS.md).
    Within ~1e-6 of `dot_product_attention` in float32.
    """
    b, t, n, hd = q.shape
    kv = k_cache.shape[1]
    qg = q.reshape(b, t, kv, n // kv, hd)                                            # [B, T, Kv, G, Hd]
    s_cache = jnp.einsum("btkgh,bksh->bkgts", qg, k_cache, preferred_element_type=jnp.float32) * scale
    s_cache = jnp.where(cached_mask[:, None, None], s_cache, MASK_VALUE)              # [B, Kv, G, T, S]
    s_new = jnp.einsum("btkgh,bukh->bkgtu", qg, k, preferred_element_type=jnp.float32) * scale
    s_new = jnp.where(new_mask[:, None, None], s_new, MASK_VALUE)                     # [B, Kv, G, T, T]
    row_max = jnp.maximum(jnp.max(s_cache, axis=-1), jnp.max(s_new, axis=-1))[..., None]
    p_cache, p_new = jnp.exp(s_cache - row_max), jnp.exp(s_new - row_max)
    row_sums = jnp.sum(p_cache, axis=-1) + jnp.sum(p_new, axis=-1)                    # [B, Kv, G, T]
    out = (jnp.einsum("bkgts,bksh->bkgth", p_cache.astype(v_cache.dtype), v_cache,
                      preferred_element_type=jnp.float32)
           + jnp.einsum("bkgtu,bukh->bkgth", p_new.astype(v.dtype), v, preferred_element_type=jnp.float32))
    out = (out / row_sums[..., None]).astype(q.dtype)                                 # [B, Kv, G, T, Hd]
    return jnp.transpose(out, (0, 3, 1, 2, 4)).reshape(b, t, n, hd)


def _after(update: jax.Array, read: jax.Array) -> jax.Array:
    """`update` [B, Kv, T, Hd] unchanged, but data-dependent on `read` [B, T, N, Hd] (adds 0 * read, summed per
    kv head, which XLA does not fold for floats).

    The cache write must come after the attention read of the same buffer for XLA to update the donated buffer in
    place. Without a data dependence XLA's CPU copy insertion cannot prove that order and copies the whole cache
    (twice) every step; with it, no copy (benchmarks/RESULTS.md, 128K decode)."""
    b, t, n, hd = read.shape
    kv = update.shape[1]
    zero = 0 * jnp.sum(read.reshape(b, t, kv, (n // kv) * hd), axis=-1)           # [B, T, Kv]
    return update + jnp.swapaxes(zero, 1, 2)[..., None].astype(update.dtype)


def hype_scale(positions: jax.Array, a: float) -> jax.Array:
    """HyPE's query multiplier ln(t + a) / ln(a) for 0-based position ids t (1 at t = 0, no clamp), float32."""
    return jnp.log(positions.astype(jnp.float32) + jnp.float32(a)) / jnp.log(jnp.float32(a))


class Attention(nnx.Module):
    """GQA softmax attention configured by a MixerSpec (kind "attention").

    Parameter names follow the checkpoints (q_proj / k_proj / v_proj / o_proj with optional biases, q_norm / k_norm,
    HypeNet's o_gate), so `jaxsuite.hf`'s tables read like the tensor names.
    """

    def __init__(self, spec: MixerSpec, hidden_size: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        d, n, kv, hd = hidden_size, spec.num_heads, spec.num_kv_heads, spec.head_dim
        self.spec = spec
        self.scale = hd ** -0.5
        kw = dict(rngs=rngs, param_dtype=param_dtype)
        bias = spec.qkv_bias
        self.q_proj = Einsum("btd,dnh->btnh", (d, n, hd), ("embed", "q_heads", "head_dim"),
                             bias_shape=(n, hd) if bias else None, bias_axes=("q_heads", "head_dim"), **kw)
        self.k_proj = Einsum("btd,dkh->btkh", (d, kv, hd), ("embed", "kv_heads", "head_dim"),
                             bias_shape=(kv, hd) if bias else None, bias_axes=("kv_heads", "head_dim"), **kw)
        self.v_proj = Einsum("btd,dkh->btkh", (d, kv, hd), ("embed", "kv_heads", "head_dim"),
                             bias_shape=(kv, hd) if bias else None, bias_axes=("kv_heads", "head_dim"), **kw)
        self.o_proj = Einsum("btnh,nhd->btd", (n, hd, d), ("q_heads", "head_dim", "embed"),
                             bias_shape=(d,) if spec.o_bias else None, bias_axes=("embed",), **kw)
        if spec.qk_norm:
            self.q_norm = RMSNorm(hd, spec.eps, param_dtype=param_dtype)
            self.k_norm = RMSNorm(hd, spec.eps, param_dtype=param_dtype)
        else:
            self.q_norm = self.k_norm = None
        self.o_gate = (Einsum("btd,dnh->btnh", (d, n, hd), ("embed", "q_heads", "head_dim"), **kw)
                       if spec.output_gate else None)

    def _qkv(self, x: jax.Array, ctx: LayerContext) -> tuple[jax.Array, jax.Array, jax.Array]:
        spec = self.spec
        q = self.q_proj(x)  # [B, T, N, Hd]
        k = self.k_proj(x)  # [B, T, Kv, Hd]
        v = self.v_proj(x)  # [B, T, Kv, Hd]
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if spec.use_rope:
            cos, sin = ctx.rope(spec.head_dim)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if spec.hype_base is not None:     # HyPE: queries only, after q/k norm; the softmax scale still applies
            q = q * hype_scale(ctx.positions, spec.hype_base)[:, :, None, None].astype(q.dtype)
        elif spec.constant_scaling is not None:
            q = q * jnp.asarray(spec.constant_scaling, q.dtype)
        q = constrain(q, ("act_batch", "act_length", "act_heads", None))
        k = constrain(k, ("act_batch", "act_length", "act_kv_heads", None))
        v = constrain(v, ("act_batch", "act_length", "act_kv_heads", None))
        return q, k, v

    def _out(self, x: jax.Array, o: jax.Array) -> jax.Array:
        o = constrain(o, ("act_batch", "act_length", "act_heads", None))
        if self.o_gate is not None:
            o = o * jax.nn.sigmoid(self.o_gate(x))
        return self.o_proj(o)

    def __call__(self, x: jax.Array, ctx: LayerContext) -> jax.Array:
        """x [B, T, D] -> [B, T, D] over the whole sequence (ctx.mask [B, T, T], or the splash / cuDNN kernel)."""
        q, k, v = self._qkv(x, ctx)
        if ctx.attention_impl == "splash":
            return self._out(x, splash_attention(q, k, v, ctx.segment_ids, self.scale))
        if ctx.attention_impl == "cudnn":
            return self._out(x, cudnn_attention(q, k, v, ctx.segment_ids, self.scale))
        return self._out(x, dot_product_attention(q, k, v, ctx.mask, self.scale))

    def decode(self, x: jax.Array, ctx: LayerContext, layer_cache: dict[str, jax.Array]
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Attends over the valid cached slots and this call's tokens (causally), then writes this call's K/V into
        slots [index, index + T) for the calls after it."""
        q, k, v = self._qkv(x, ctx)
        cached_mask, new_mask = ctx.mask
        if ctx.fresh:        # nothing cached yet: this call's own tokens are all there is to attend to
            o = dot_product_attention(q, k, v, new_mask, self.scale)
        else:
            o = cached_attention(q, layer_cache["k"].astype(q.dtype), layer_cache["v"].astype(q.dtype), k, v,
                                 cached_mask, new_mask, self.scale)
        zero = jnp.zeros((), jnp.int32)
        start = (zero, zero, ctx.index, zero)
        k_new = _after(jnp.swapaxes(k, 1, 2).astype(layer_cache["k"].dtype), o)     # [B, Kv, T, Hd]
        v_new = _after(jnp.swapaxes(v, 1, 2).astype(layer_cache["v"].dtype), o)
        k_all = constrain(jax.lax.dynamic_update_slice(layer_cache["k"], k_new, start), CACHE_AXES)  # [B, Kv, S, Hd]
        v_all = constrain(jax.lax.dynamic_update_slice(layer_cache["v"], v_new, start), CACHE_AXES)
        return self._out(x, o), {"k": k_all, "v": v_all}

    def init_cache(self, batch: int, max_length: int, dtype: Any) -> dict[str, jax.Array]:
        shape = (batch, self.spec.num_kv_heads, max_length, self.spec.head_dim)
        return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}
