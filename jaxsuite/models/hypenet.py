"""HypeNetLM: the hybrid softmax-attention / Lightning-attention LM of arXiv 2601.22156, mirroring the release.

Layer i is a pre-norm block (x + mixer(norm(x)), x + mlp(norm(x))) whose mixer `self_attn` is either
  * HypeAttention ("attn"): GQA softmax attention with per-head q/k RMSNorm, no RoPE (unless attn_use_rope),
    HyPE logit scaling (queries times ln(t + a) / ln(a)), and a sigmoid output gate before o_proj; or
  * LightningAttention ("lightning-attn"): q/k/v -> per-head q/k RMSNorm -> RoPE -> K/V repeat-interleaved to
    all query heads -> simple GLA with the fixed ALiBi decay (kernels_pallas, float32) -> ONE RMSNorm over the
    concatenated heads (o_norm) -> times sigmoid(z_proj(x)) -> o_proj.
Attribute names follow the released checkpoint so `jaxsuite.hf`'s HypeNet table reads like its tensor names.
HypeNetLM has DecoderLM's public API (__call__, hidden_states, logits, embed, dtype, init_cache, decode), so
`jaxsuite.generate` and training code take it unchanged. Its cache is a KVCache whose per-layer entries are
{"k", "v"} [B, S, Kv, Hd] for attention layers and a constant-size {"state": [B, H, K, V] float32} for
Lightning layers.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import kernels_pallas as kp
from jaxsuite.core.sharding import constrain
from jaxsuite.models.attention import KVCache, dot_product_attention, init_layer_cache, make_attention_mask
from jaxsuite.models.decoder import ACT_BTD, DecoderLM
from jaxsuite.models.hypenet_config import MIXER_ATTN, HypeNetConfig
from jaxsuite.models.layers import Einsum, Embed, RMSNorm, SwiGLU, apply_rope, rope_cos_sin, rope_inv_freq


def hype_scale(positions: jax.Array, a: float) -> jax.Array:
    """HyPE's query multiplier ln(t + a) / ln(a) for 0-based position ids t (1 at t = 0, no clamp), float32."""
    return jnp.log(positions.astype(jnp.float32) + jnp.float32(a)) / jnp.log(jnp.float32(a))


def _proj(spec, d, heads, hd, axes, kw):
    return Einsum(spec, (d, heads, hd), ("embed", axes, "head_dim"), **kw)


class HypeAttention(nnx.Module):
    """Softmax attention layer of HypeNet: q/k norm, optional RoPE, HyPE / constant logit scaling, o_gate."""

    def __init__(self, config: HypeNetConfig, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        d, n, kv, hd = (config.hidden_size, config.num_attention_heads, config.num_key_value_heads,
                        config.head_dim)
        self.scale = hd ** -0.5
        self.hype_base = config.hype_base
        self.constant_scaling = config.attn_constant_scaling
        kw = dict(rngs=rngs, param_dtype=param_dtype)
        self.q_proj = _proj("btd,dnh->btnh", d, n, hd, "q_heads", kw)
        self.k_proj = _proj("btd,dkh->btkh", d, kv, hd, "kv_heads", kw)
        self.v_proj = _proj("btd,dkh->btkh", d, kv, hd, "kv_heads", kw)
        self.o_proj = Einsum("btnh,nhd->btd", (n, hd, d), ("q_heads", "head_dim", "embed"), **kw)
        self.q_norm = RMSNorm(hd, config.rms_norm_eps, param_dtype=param_dtype)
        self.k_norm = RMSNorm(hd, config.rms_norm_eps, param_dtype=param_dtype)
        self.o_gate = _proj("btd,dnh->btnh", d, n, hd, "q_heads", kw) if config.attn_use_output_gate else None

    def _qkv(self, x, positions, rope):
        q, k, v = self.q_norm(self.q_proj(x)), self.k_norm(self.k_proj(x)), self.v_proj(x)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if self.hype_base is not None:     # HyPE: queries only, after q/k norm; the softmax scale still applies
            q = q * hype_scale(positions, self.hype_base)[:, :, None, None].astype(q.dtype)
        elif self.constant_scaling is not None:
            q = q * jnp.asarray(self.constant_scaling, q.dtype)
        q = constrain(q, ("act_batch", "act_length", "act_heads", None))
        k = constrain(k, ("act_batch", "act_length", "act_kv_heads", None))
        v = constrain(v, ("act_batch", "act_length", "act_kv_heads", None))
        return q, k, v

    def _out(self, x, o):
        o = constrain(o, ("act_batch", "act_length", "act_heads", None))
        if self.o_gate is not None:
            o = o * jax.nn.sigmoid(self.o_gate(x))
        return self.o_proj(o)

    def __call__(self, x, positions, rope, mask, segment_ids=None):
        """x [B, T, D], positions [B, T], rope (cos, sin) or None, mask [B, T, T] -> [B, T, D]."""
        q, k, v = self._qkv(x, positions, rope)
        return self._out(x, dot_product_attention(q, k, v, mask, self.scale))

    def decode(self, x, positions, rope, layer_cache, index, valid, token_mask):
        """As Attention.decode: writes slots [index, index + T), attends causally by slot over valid slots."""
        q, k, v = self._qkv(x, positions, rope)
        t, s = x.shape[1], valid.shape[1]
        zero = jnp.zeros((), jnp.int32)
        k_all = jax.lax.dynamic_update_slice(layer_cache["k"], k.astype(layer_cache["k"].dtype),
                                             (zero, index, zero, zero))
        v_all = jax.lax.dynamic_update_slice(layer_cache["v"], v.astype(layer_cache["v"].dtype),
                                             (zero, index, zero, zero))
        causal = (index + jnp.arange(t))[:, None] >= jnp.arange(s)[None, :]     # [T, S]
        mask = causal[None] & valid[:, None, :]                                 # [B, T, S]
        o = dot_product_attention(q, k_all.astype(q.dtype), v_all.astype(q.dtype), mask, self.scale)
        return self._out(x, o), {"k": k_all, "v": v_all}


class LightningAttention(nnx.Module):
    """Lightning-attention (simple GLA with fixed per-head decay) layer of HypeNet."""

    def __init__(self, config: HypeNetConfig, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        d, n, kv, hd = config.hidden_size, config.lightning_nh, config.lightning_nkv, config.lightning_head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = n, kv, hd
        self.scale = config.lightning_scale_value
        self.implementation = config.implementation
        kw = dict(rngs=rngs, param_dtype=param_dtype)
        self.q_proj = _proj("btd,dnh->btnh", d, n, hd, "q_heads", kw)
        self.k_proj = _proj("btd,dkh->btkh", d, kv, hd, "kv_heads", kw)
        self.v_proj = _proj("btd,dkh->btkh", d, kv, hd, "kv_heads", kw)
        self.o_proj = Einsum("btnh,nhd->btd", (n, hd, d), ("q_heads", "head_dim", "embed"), **kw)
        self.z_proj = _proj("btd,dnh->btnh", d, n, hd, "q_heads", kw) if config.lightning_use_output_gate else None
        # o_norm normalises the whole concatenated n*hd vector; its weight is stored flat, as in the checkpoint.
        self.o_norm = (RMSNorm(n * hd, config.rms_norm_eps, param_dtype=param_dtype)
                       if config.lightning_use_output_norm else None)
        if config.lightning_use_qk_norm:
            self.q_norm = RMSNorm(hd, config.rms_norm_eps, param_dtype=param_dtype)
            self.k_norm = RMSNorm(hd, config.rms_norm_eps, param_dtype=param_dtype)
        else:
            self.q_norm = self.k_norm = None

    @property
    def g_gamma(self) -> jax.Array:
        return jnp.asarray(kp.lightning_g_gamma(self.num_heads), jnp.float32)   # [H], shared by all layers

    def _qkv(self, x, rope):
        """float32 q, k, v [B, T, H, Hd] with K/V repeat-interleaved to all H query heads."""
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        group = self.num_heads // self.num_kv_heads
        if group > 1:                                    # query head j uses KV head j // group (GQA -> MHA)
            k, v = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)
        q = constrain(q, ("act_batch", "act_length", "act_heads", None))
        k = constrain(k, ("act_batch", "act_length", "act_heads", None))
        v = constrain(v, ("act_batch", "act_length", "act_heads", None))
        return q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32)

    def _out(self, x, o):
        """o [B, T, H, Hd] float32 -> o_norm over H*Hd -> * sigmoid(z_proj(x)) -> o_proj -> [B, T, D]."""
        b, t, n, hd = o.shape
        o = o.astype(x.dtype)
        if self.o_norm is not None:
            o = self.o_norm(o.reshape(b, t, n * hd)).reshape(b, t, n, hd)
        if self.z_proj is not None:
            o = o * jax.nn.sigmoid(self.z_proj(x))
        o = constrain(o, ("act_batch", "act_length", "act_heads", None))
        return self.o_proj(o)

    def __call__(self, x, positions, rope, mask, segment_ids=None):
        """x [B, T, D] -> [B, T, D]; segment_ids reset the recurrent state at every segment start."""
        q, k, v = self._qkv(x, rope)
        o, _ = kp.simple_gla(q, k, v, g_gamma=self.g_gamma, scale=self.scale, segment_ids=segment_ids,
                             implementation=self.implementation)
        return self._out(x, o)

    def decode(self, x, positions, rope, layer_cache, index, valid, token_mask):
        """Advances the constant-size state {"state": [B, H, K, V] float32} over T tokens.

        Tokens with token_mask False (left-padding of a batched prompt) must not touch the state. Zeroing their
        k and v removes their k^T v contribution, and their log-decay is set to 0 (decay factor exactly 1), so
        a pad neither adds to nor decays the state, wherever it sits and whatever the state holds: the row's
        state after the prompt equals that of the row run alone (with zero state before a leading pad run this
        would hold even with decay, but masking the decay makes it exact in every case).
        """
        q, k, v = self._qkv(x, rope)
        t = x.shape[1]
        keep = token_mask[:, :, None, None]
        k, v = jnp.where(keep, k, 0.0), jnp.where(keep, v, 0.0)
        g = jnp.where(token_mask[:, :, None], self.g_gamma[None, None, :], 0.0)   # [B, T, H] float32
        state = layer_cache["state"]
        if t == 1:
            o, state = kp.simple_gla_step(q[:, 0], k[:, 0], v[:, 0], state=state, g=g[:, 0], scale=self.scale)
            o = o[:, None]
        else:
            o, state = kp.simple_gla(q, k, v, g=g, scale=self.scale, initial_state=state,
                                     output_final_state=True, implementation=self.implementation)
        return self._out(x, o), {"state": state}

    def init_cache(self, batch: int) -> dict[str, jax.Array]:
        return {"state": jnp.zeros((batch, self.num_heads, self.head_dim, self.head_dim), jnp.float32)}


class HypeNetLayer(nnx.Module):
    """x + self_attn(input_layernorm(x)), then x + mlp(post_attention_layernorm(x))."""

    def __init__(self, config: HypeNetConfig, kind: str, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.kind = kind
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, param_dtype=param_dtype)
        mixer = HypeAttention if kind == MIXER_ATTN else LightningAttention
        self.self_attn = mixer(config, rngs=rngs, param_dtype=param_dtype)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, param_dtype=param_dtype)
        self.mlp = SwiGLU(config.hidden_size, config.intermediate_size, rngs=rngs, param_dtype=param_dtype)

    def __call__(self, x, positions, rope, mask, segment_ids):
        x = constrain(x + self.self_attn(self.input_layernorm(x), positions, rope, mask, segment_ids), ACT_BTD)
        x = x + self.mlp(self.post_attention_layernorm(x))
        return constrain(x, ACT_BTD)

    def decode(self, x, positions, rope, layer_cache, index, valid, token_mask):
        h, layer_cache = self.self_attn.decode(self.input_layernorm(x), positions, rope, layer_cache, index,
                                               valid, token_mask)
        x = constrain(x + h, ACT_BTD)
        x = x + self.mlp(self.post_attention_layernorm(x))
        return constrain(x, ACT_BTD), layer_cache


class HypeNetLM(nnx.Module):
    """HypeNet causal LM with DecoderLM's API. `model(input_ids)` -> float32 logits [B, T, V]."""

    def __init__(self, config: HypeNetConfig, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.config = config
        self.param_dtype = jnp.dtype(param_dtype)
        self.embed_tokens = Embed(config.vocab_size, config.hidden_size, rngs=rngs, param_dtype=param_dtype)
        self.layers = nnx.List([HypeNetLayer(config, kind, rngs=rngs, param_dtype=param_dtype)
                                for kind in config.mixer_types])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, param_dtype=param_dtype)
        if config.tie_word_embeddings:
            self.lm_head = None
        else:
            self.lm_head = Einsum("btd,dv->btv", (config.hidden_size, config.vocab_size), ("embed", "vocab"),
                                  rngs=rngs, param_dtype=param_dtype)

    # The pieces that do not depend on the layer kinds are DecoderLM's own (same attributes, same behaviour).
    dtype = DecoderLM.dtype
    embed = DecoderLM.embed
    _inputs = DecoderLM._inputs
    logits = DecoderLM.logits
    __call__ = DecoderLM.__call__

    def _ropes(self, positions, dtype):
        """(cos, sin) for attention layers and for Lightning layers, each None when that kind has no RoPE."""
        cfg = self.config

        def rope(hd):
            return rope_cos_sin(positions, rope_inv_freq(hd, cfg.rope_theta), dtype)
        lin = rope(cfg.lightning_head_dim) if cfg.lightning_use_rope else None
        if not cfg.attn_use_rope:
            attn = None
        elif lin is not None and cfg.head_dim == cfg.lightning_head_dim:
            attn = lin
        else:
            attn = rope(cfg.head_dim)
        return attn, lin

    @staticmethod
    def _rope_for(ropes, layer):
        return ropes[0] if layer.kind == MIXER_ATTN else ropes[1]

    def hidden_states(self, input_ids=None, *, positions=None, segment_ids=None, inputs_embeds=None) -> jax.Array:
        """Final-normed hidden states [B, T, D]; segment_ids mask attention and reset Lightning states."""
        x = self._inputs(input_ids, inputs_embeds)
        b, t = x.shape[:2]
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        ropes = self._ropes(positions, x.dtype)
        mask = make_attention_mask(segment_ids, b, t)
        for layer in self.layers:
            x = layer(x, positions, self._rope_for(ropes, layer), mask, segment_ids)
        return self.norm(x)

    # --- generation ---------------------------------------------------------------------------------------------
    def init_cache(self, batch_size: int, max_length: int, dtype=None) -> KVCache:
        """Attention layers: {"k", "v"} [B, S, Kv, Hd] in dtype; Lightning: {"state"} [B, H, K, V] float32."""
        cfg = self.config
        dtype = self.dtype if dtype is None else dtype
        layers = tuple(
            init_layer_cache(batch_size, max_length, cfg.num_key_value_heads, cfg.head_dim, dtype)
            if layer.kind == MIXER_ATTN else layer.self_attn.init_cache(batch_size)
            for layer in self.layers)
        return KVCache(layers=layers, index=jnp.zeros((), jnp.int32),
                       valid=jnp.zeros((batch_size, max_length), jnp.bool_))

    def decode(self, input_ids, positions, cache: KVCache, *, token_mask=None, inputs_embeds=None,
               return_hidden: bool = False):
        """T new tokens against the cache -> (float32 logits [B, T, V], new cache[, final-normed hidden])."""
        x = self._inputs(input_ids, inputs_embeds)
        b, t = x.shape[:2]
        if token_mask is None:
            token_mask = jnp.ones((b, t), jnp.bool_)
        token_mask = token_mask.astype(jnp.bool_)
        index = jnp.asarray(cache.index, jnp.int32)
        valid = jax.lax.dynamic_update_slice(cache.valid, token_mask, (jnp.zeros((), jnp.int32), index))
        ropes = self._ropes(positions, x.dtype)
        new_layers = []
        for layer, layer_cache in zip(self.layers, cache.layers):
            x, layer_cache = layer.decode(x, positions, self._rope_for(ropes, layer), layer_cache, index, valid,
                                          token_mask)
            new_layers.append(layer_cache)
        hidden = self.norm(x)
        new_cache = KVCache(layers=tuple(new_layers), index=index + t, valid=valid)
        logits = self.logits(hidden)
        return (logits, new_cache, hidden) if return_hidden else (logits, new_cache)
