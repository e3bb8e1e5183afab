"""DecoderLM: the pre-norm decoder of Qwen3, Qwen2/Qwen2.5 and Llama, laid out to mirror transformers.

Attribute names follow the Hugging Face modules (`embed_tokens`, `layers[i].self_attn.q_proj`, `layers[i].mlp`,
`input_layernorm`, `post_attention_layernorm`, `norm`, `lm_head`) so that `jaxsuite.hf`'s name table reads like
the checkpoint. The layers are an `nnx.List` looped in Python rather than scanned: HypeNet mixes layer kinds.

Compute dtype is the parameters' dtype (bf16 parameters give bf16 matmuls); RMSNorm and softmax are float32
and logits are accumulated in float32.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsuite.core.sharding import constrain
from jaxsuite.models.attention import Attention, KVCache, init_layer_cache, make_attention_mask
from jaxsuite.models.config import DecoderConfig
from jaxsuite.models.layers import Einsum, Embed, RMSNorm, SwiGLU, rope_cos_sin, rope_inv_freq

ACT_BTD = ("act_batch", "act_length", "act_embed")


class DecoderLayer(nnx.Module):
    """x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, param_dtype=param_dtype)
        self.self_attn = Attention(config, rngs=rngs, param_dtype=param_dtype)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, param_dtype=param_dtype)
        self.mlp = SwiGLU(config.hidden_size, config.intermediate_size, rngs=rngs, param_dtype=param_dtype)

    def __call__(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        x = constrain(x, ACT_BTD)
        x = x + self.mlp(self.post_attention_layernorm(x))
        return constrain(x, ACT_BTD)

    def decode(self, x, cos, sin, layer_cache, index, valid):
        h, layer_cache = self.self_attn.decode(self.input_layernorm(x), cos, sin, layer_cache, index, valid)
        x = constrain(x + h, ACT_BTD)
        x = x + self.mlp(self.post_attention_layernorm(x))
        return constrain(x, ACT_BTD), layer_cache


class DecoderLM(nnx.Module):
    """Causal LM: `model(input_ids)` -> float32 logits [B, T, V].

    The contract every jaxsuite LM keeps (HypeNetLM too), which `jaxsuite.generate` and the train step rely on:
      __call__(input_ids [B, T] | None, *, positions=None [B, T], segment_ids=None [B, T], inputs_embeds=None
               [B, T, D]) -> float32 logits [B, T, V]; positions default to arange(T); with segment_ids (packed
               rows, 0 = padding) a token attends only to earlier tokens of its own segment.
      hidden_states(...) same arguments -> final-normed hidden [B, T, D]; logits(hidden) -> [B, T, V].
      init_cache(batch_size, max_length, dtype=None) -> KVCache(layers, index, valid).
      decode(input_ids, positions, cache, *, token_mask=None, inputs_embeds=None, return_hidden=False)
               -> (logits, new cache): writes the T tokens into slots [index, index + T), marks them valid where
               token_mask, attends causally by slot over valid slots, advances index by T.
    Compute runs in the parameters' dtype; RMSNorm and softmax in float32.
    """

    def __init__(self, config: DecoderConfig, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.config = config
        self.param_dtype = jnp.dtype(param_dtype)
        self.embed_tokens = Embed(config.vocab_size, config.hidden_size, rngs=rngs, param_dtype=param_dtype)
        self.layers = nnx.List([DecoderLayer(config, rngs=rngs, param_dtype=param_dtype)
                                for _ in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, param_dtype=param_dtype)
        if config.tie_word_embeddings:
            self.lm_head = None
        else:
            self.lm_head = Einsum("btd,dv->btv", (config.hidden_size, config.vocab_size), ("embed", "vocab"),
                                  rngs=rngs, param_dtype=param_dtype)

    # --- pieces -------------------------------------------------------------------------------------------------
    @property
    def dtype(self):
        """The compute dtype: that of the parameters."""
        return self.embed_tokens.embedding[...].dtype

    def embed(self, input_ids: jax.Array) -> jax.Array:
        return constrain(self.embed_tokens(input_ids), ACT_BTD)

    def _inputs(self, input_ids, inputs_embeds) -> jax.Array:
        if inputs_embeds is not None:
            return constrain(inputs_embeds.astype(self.dtype), ACT_BTD)
        if input_ids is None:
            raise ValueError("pass input_ids or inputs_embeds")
        return self.embed(input_ids)

    def _rope(self, positions: jax.Array, dtype) -> tuple[jax.Array, jax.Array]:
        cfg = self.config
        inv_freq = rope_inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling_dict,
                                 max_position_embeddings=cfg.max_position_embeddings, positions=positions)
        return rope_cos_sin(positions, inv_freq, dtype)

    def logits(self, hidden: jax.Array) -> jax.Array:
        """Final-normed hidden [B, T, D] -> float32 logits [B, T, V] (tied or separate head)."""
        if self.lm_head is None:
            out = self.embed_tokens.attend(hidden)
        else:
            out = jnp.einsum("btd,dv->btv", hidden, self.lm_head.kernel[...].astype(hidden.dtype),
                             preferred_element_type=jnp.float32)
        return constrain(out, ("act_batch", "act_length", "act_vocab"))

    # --- full forward -------------------------------------------------------------------------------------------
    def hidden_states(self, input_ids=None, *, positions=None, segment_ids=None, inputs_embeds=None) -> jax.Array:
        """Final-normed hidden states [B, T, D] in the compute dtype."""
        x = self._inputs(input_ids, inputs_embeds)        # [B, T, D]
        b, t = x.shape[:2]
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        cos, sin = self._rope(positions, x.dtype)         # [B, T, Hd]
        mask = make_attention_mask(segment_ids, b, t)     # [B, T, T]
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)

    def __call__(self, input_ids=None, *, positions=None, segment_ids=None, inputs_embeds=None) -> jax.Array:
        return self.logits(self.hidden_states(input_ids, positions=positions, segment_ids=segment_ids,
                                              inputs_embeds=inputs_embeds))

    # --- generation ---------------------------------------------------------------------------------------------
    def init_cache(self, batch_size: int, max_length: int, dtype=None) -> KVCache:
        cfg = self.config
        dtype = self.dtype if dtype is None else dtype
        layers = tuple(init_layer_cache(batch_size, max_length, cfg.num_key_value_heads, cfg.head_dim, dtype)
                       for _ in range(cfg.num_hidden_layers))
        return KVCache(layers=layers, index=jnp.zeros((), jnp.int32),
                       valid=jnp.zeros((batch_size, max_length), jnp.bool_))

    def decode(self, input_ids, positions, cache: KVCache, *, token_mask=None, inputs_embeds=None,
               return_hidden: bool = False):
        """Runs T new tokens against the cache: (float32 logits [B, T, V], new cache).

        Writes slots [index, index + T), marks them valid where token_mask (default all True), attends causally
        by slot over valid slots, and advances index by T. `return_hidden=True` also returns the final-normed
        hidden [B, T, D] (latent-reasoning loops feed it back as inputs_embeds).
        """
        x = self._inputs(input_ids, inputs_embeds)        # [B, T, D]
        b, t = x.shape[:2]
        if token_mask is None:
            token_mask = jnp.ones((b, t), jnp.bool_)
        index = jnp.asarray(cache.index, jnp.int32)
        valid = jax.lax.dynamic_update_slice(cache.valid, token_mask.astype(jnp.bool_),
                                             (jnp.zeros((), jnp.int32), index))  # [B, S]
        cos, sin = self._rope(positions, x.dtype)
        new_layers = []
        for layer, layer_cache in zip(self.layers, cache.layers):
            x, layer_cache = layer.decode(x, cos, sin, layer_cache, index, valid)
            new_layers.append(layer_cache)
        hidden = self.norm(x)
        new_cache = KVCache(layers=tuple(new_layers), index=index + t, valid=valid)
        logits = self.logits(hidden)
        return (logits, new_cache, hidden) if return_hidden else (logits, new_cache)
