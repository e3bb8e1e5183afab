"""Grouped-query self-attention with the three masks a decoder needs, and the KV cache used for generation.

Masks, all boolean and combined before one float32 softmax:
  * causal by token order (training / full forward) or by cache slot (decode);
  * segment_ids for packed sequences: a token sees only earlier tokens with the same id (0 marks padding);
  * cache validity: a left-padded prompt writes its pad slots as invalid, so no later token attends to them.
Masked logits get float32's most negative finite value instead of -inf, so a row with nothing to attend to
(a pad token) yields a finite uniform average rather than NaN.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx, struct

from jaxsuite.core.sharding import constrain
from jaxsuite.models.layers import Einsum, RMSNorm, apply_rope

MASK_VALUE = float(jnp.finfo(jnp.float32).min)


@struct.dataclass
class KVCache:
    """Per-layer keys/values in slot order, the next free slot, and which slots hold real tokens.

    layers: one {"k": [B, S, Kv, Hd], "v": [B, S, Kv, Hd]} per decoder layer (keys stored after RoPE).
            (HypeNet's Lightning layers hold a constant-size {"state": [B, H, K, V] float32} instead.)
    index:  int32 scalar, the first slot the next `decode` call writes.
    valid:  bool [B, S], True where a slot holds a real (non-pad) token.
    """
    layers: tuple[dict[str, jax.Array], ...]
    index: jax.Array
    valid: jax.Array

    @property
    def max_length(self) -> int:
        return self.valid.shape[1]


def make_attention_mask(segment_ids: jax.Array | None, batch: int, length: int) -> jax.Array:
    """[B, T, T] bool: causal, and (when given) same segment id. Pad tokens (id 0) see only other pads."""
    idx = jnp.arange(length)
    mask = (idx[:, None] >= idx[None, :])[None]                      # [1, T, T]
    if segment_ids is not None:
        same = segment_ids[:, :, None] == segment_ids[:, None, :]    # [B, T, T]
        mask = mask & same
    return jnp.broadcast_to(mask, (batch, length, length))


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


class Attention(nnx.Module):
    """Self-attention of Qwen3 / Qwen2 / Llama: optional q/k/v bias, optional per-head q/k RMSNorm before RoPE."""

    def __init__(self, config, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        d, n, kv, hd = (config.hidden_size, config.num_attention_heads, config.num_key_value_heads,
                        config.head_dim)
        self.num_heads, self.num_kv_heads, self.head_dim = n, kv, hd
        self.scale = hd ** -0.5
        qkv_bias = bool(config.attention_bias)
        o_bias = qkv_bias and config.model_type != "qwen2"  # Qwen2 has q/k/v bias only; Llama/Qwen3 bias o too
        kw = dict(rngs=rngs, param_dtype=param_dtype)
        self.q_proj = Einsum("btd,dnh->btnh", (d, n, hd), ("embed", "q_heads", "head_dim"),
                             bias_shape=(n, hd) if qkv_bias else None, bias_axes=("q_heads", "head_dim"), **kw)
        self.k_proj = Einsum("btd,dkh->btkh", (d, kv, hd), ("embed", "kv_heads", "head_dim"),
                             bias_shape=(kv, hd) if qkv_bias else None, bias_axes=("kv_heads", "head_dim"), **kw)
        self.v_proj = Einsum("btd,dkh->btkh", (d, kv, hd), ("embed", "kv_heads", "head_dim"),
                             bias_shape=(kv, hd) if qkv_bias else None, bias_axes=("kv_heads", "head_dim"), **kw)
        self.o_proj = Einsum("btnh,nhd->btd", (n, hd, d), ("q_heads", "head_dim", "embed"),
                             bias_shape=(d,) if o_bias else None, bias_axes=("embed",), **kw)
        if config.qk_norm:
            self.q_norm = RMSNorm(hd, config.rms_norm_eps, param_dtype=param_dtype)
            self.k_norm = RMSNorm(hd, config.rms_norm_eps, param_dtype=param_dtype)
        else:
            self.q_norm = self.k_norm = None

    def _qkv(self, x: jax.Array, cos: jax.Array, sin: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        q = self.q_proj(x)  # [B, T, N, Hd]
        k = self.k_proj(x)  # [B, T, Kv, Hd]
        v = self.v_proj(x)  # [B, T, Kv, Hd]
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        q = constrain(q, ("act_batch", "act_length", "act_heads", None))
        k = constrain(k, ("act_batch", "act_length", "act_kv_heads", None))
        v = constrain(v, ("act_batch", "act_length", "act_kv_heads", None))
        return q, k, v

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, mask: jax.Array) -> jax.Array:
        """x [B, T, D], cos/sin [B, T, Hd], mask [B, T, T] -> [B, T, D]."""
        q, k, v = self._qkv(x, cos, sin)
        out = dot_product_attention(q, k, v, mask, self.scale)
        out = constrain(out, ("act_batch", "act_length", "act_heads", None))
        return self.o_proj(out)

    def decode(self, x: jax.Array, cos: jax.Array, sin: jax.Array, layer_cache: dict[str, jax.Array],
               index: jax.Array, valid: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Writes this call's K/V into slots [index, index + T) and attends over valid slots causally by slot.

        `valid` [B, S] is the cache validity *after* this call's tokens were marked.
        """
        q, k, v = self._qkv(x, cos, sin)
        t, s = x.shape[1], valid.shape[1]
        zero = jnp.zeros((), jnp.int32)
        k_all = jax.lax.dynamic_update_slice(layer_cache["k"], k.astype(layer_cache["k"].dtype),
                                             (zero, index, zero, zero))           # [B, S, Kv, Hd]
        v_all = jax.lax.dynamic_update_slice(layer_cache["v"], v.astype(layer_cache["v"].dtype),
                                             (zero, index, zero, zero))
        k_all = constrain(k_all, ("act_batch", "act_length", "act_kv_heads", None))
        v_all = constrain(v_all, ("act_batch", "act_length", "act_kv_heads", None))
        q_slot = index + jnp.arange(t)                                            # [T]
        causal = q_slot[:, None] >= jnp.arange(s)[None, :]                        # [T, S]
        mask = causal[None] & valid[:, None, :]                                   # [B, T, S]
        out = dot_product_attention(q, k_all.astype(q.dtype), v_all.astype(q.dtype), mask, self.scale)
        out = constrain(out, ("act_batch", "act_length", "act_heads", None))
        return self.o_proj(out), {"k": k_all, "v": v_all}


def init_layer_cache(batch: int, max_length: int, num_kv_heads: int, head_dim: int, dtype: Any
                     ) -> dict[str, jax.Array]:
    shape = (batch, max_length, num_kv_heads, head_dim)
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}
