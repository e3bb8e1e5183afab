"""CausalLM: jaxsuite's one causal-LM family. Qwen3, Qwen2/Qwen2.5, Llama, HypeNet and any hybrid of softmax
attention with Lightning / simple GLA / GLA / gated-delta-rule layers are the same model with other mixers.

Layer i is a pre-norm block, x + mixer(input_layernorm(x)), then x + mlp(post_attention_layernorm(x)), whose mixer
is chosen by the architecture's i-th `MixerSpec` (`jaxsuite.models.mixer_specs`). One layer loop,
`_run_layers`, serves the full forward, decoding (each mixer advances the cache entry it owns) and HALO's per-layer
supervision (the `mixer_tap` hook sees every mixer's input and output and may replace the output).

Attribute names mirror the Hugging Face modules (`embed_tokens`, `layers[i].self_attn.q_proj`, `layers[i].mlp`,
`input_layernorm`, `post_attention_layernorm`, `norm`, `lm_head`) so `jaxsuite.hf`'s name tables read like the
checkpoints. The layers are an `nnx.List` looped in Python rather than scanned: hybrids mix layer kinds.
Compute dtype is the parameters' dtype (bf16 parameters give bf16 matmuls); RMSNorm and softmax are float32 and
logits are accumulated in float32.
"""
from __future__ import annotations

from typing import Callable, Union

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsuite.core.sharding import constrain
from jaxsuite.models.attention import Attention, decode_masks, make_attention_mask
from jaxsuite.models.config import DecoderConfig
from jaxsuite.models.context import KVCache, LayerContext
from jaxsuite.models.fused_attention import choose_attention
from jaxsuite.models.hypenet_config import HypeNetConfig
from jaxsuite.models.layers import Einsum, Embed, RMSNorm, SwiGLU, rope_cos_sin, rope_inv_freq
from jaxsuite.models.mixer_specs import LMArchitecture, MixerSpec
from jaxsuite.models.mixers_linear import LinearMixer

ACT_BTD = ("act_batch", "act_length", "act_embed")

# Rematerialisation per layer in the training forward (train.remat): what the backward pass keeps of each block.
#   none     keep every activation (fastest, most memory)
#   minimal  keep the outputs of the weight matmuls (projections, MLP); recompute norms, activations and the
#            attention scores (dots with batch dimensions), which are the [T, T]-sized part
#   full     keep only each block's input; recompute the whole block in the backward pass
REMAT_POLICIES = {"none": None, "minimal": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
                  "full": jax.checkpoint_policies.nothing_saveable}
LMConfig = Union[DecoderConfig, HypeNetConfig]

# mixer_tap(layer_index, layer, mixer_input [B, T, D], mixer_output [B, T, D], ctx) -> the output the forward
# continues with (return mixer_output unchanged to only observe).
MixerTap = Callable[[int, "Block", jax.Array, jax.Array, LayerContext], jax.Array]


def build_mixer(spec: MixerSpec, hidden_size: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
    """The token mixer a spec names: softmax `Attention` or a `LinearMixer`."""
    cls = Attention if spec.is_attention else LinearMixer
    return cls(spec, hidden_size, rngs=rngs, param_dtype=param_dtype)


class Block(nnx.Module):
    """x + self_attn(input_layernorm(x)), then x + mlp(post_attention_layernorm(x))."""

    def __init__(self, arch: LMArchitecture, spec: MixerSpec, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        d = arch.hidden_size
        self.kind = spec.kind
        self.input_layernorm = RMSNorm(d, arch.rms_norm_eps, param_dtype=param_dtype)
        self.self_attn = build_mixer(spec, d, rngs=rngs, param_dtype=param_dtype)
        self.post_attention_layernorm = RMSNorm(d, arch.rms_norm_eps, param_dtype=param_dtype)
        self.mlp = SwiGLU(d, arch.intermediate_size, rngs=rngs, param_dtype=param_dtype)

    def mlp_residual(self, x: jax.Array) -> jax.Array:
        return constrain(x + self.mlp(self.post_attention_layernorm(x)), ACT_BTD)


class CausalLM(nnx.Module):
    """Causal LM: `model(input_ids)` -> float32 logits [B, T, V]. Implements `jaxsuite.models.LanguageModel`.

      __call__(input_ids [B, T] | None, *, positions=None [B, T], segment_ids=None [B, T], inputs_embeds=None
               [B, T, D]) -> float32 logits [B, T, V]; positions default to arange(T); with segment_ids (packed
               rows, 0 = padding) a token attends only to earlier tokens of its own segment and linear mixers
               restart their state at each segment.
      hidden_states(...) same arguments -> final-normed hidden [B, T, D]; logits(hidden) -> [B, T, V].
      init_cache(batch_size, max_length, dtype=None) -> KVCache (one mixer-owned entry per layer).
      decode(input_ids, positions, cache, *, token_mask=None, inputs_embeds=None, return_hidden=False)
               -> (logits, new cache): writes the T tokens into slots [index, index + T), marks them valid where
               token_mask, attends causally by slot over valid slots, advances index by T.
    """

    def __init__(self, config: LMConfig, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.config = config
        self.arch = arch = config.architecture()
        self.param_dtype = jnp.dtype(param_dtype)
        self.remat = "none"      # a static attribute (part of the graphdef): set before nnx.split to train with it
        self.attention_impl = "auto"  # static too: the full forward's attention, "auto" / "xla" / "splash" / "cudnn"
                                      # (models.fused_attention; "auto" is XLA's off TPU)
        self.embed_tokens = Embed(arch.vocab_size, arch.hidden_size, rngs=rngs, param_dtype=param_dtype)
        self.layers = nnx.List([Block(arch, spec, rngs=rngs, param_dtype=param_dtype) for spec in arch.mixers])
        self.norm = RMSNorm(arch.hidden_size, arch.rms_norm_eps, param_dtype=param_dtype)
        if arch.tie_word_embeddings:
            self.lm_head = None
        else:
            self.lm_head = Einsum("btd,dv->btv", (arch.hidden_size, arch.vocab_size), ("embed", "vocab"),
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

    def rope_tables(self, positions: jax.Array, dtype) -> dict[int, tuple[jax.Array, jax.Array]]:
        """cos/sin [B, T, Hd] for every head size some layer rotates, keyed by head size (computed once a call)."""
        rope = self.arch.rope
        head_dims = sorted({spec.head_dim for spec in self.arch.mixers if spec.use_rope})
        tables = {}
        for hd in head_dims:
            inv_freq = rope_inv_freq(hd, rope.theta, dict(rope.scaling or ()),
                                     max_position_embeddings=rope.max_position_embeddings, positions=positions)
            tables[hd] = rope_cos_sin(positions, inv_freq, dtype)
        return tables

    def layer_context(self, positions: jax.Array, dtype, *, segment_ids=None, mask=None, **decode) -> LayerContext:
        """The context all layers of one call share. Without `mask`, the causal (+ segment) mask of a full forward."""
        b, t = positions.shape
        impl = "xla"
        if mask is None:
            mask = make_attention_mask(segment_ids, b, t)                  # [B, T, T] (unused, so dropped, by kernels)
            impl = choose_attention(self.attention_impl, t, dtype)
        return LayerContext(positions=positions, ropes=self.rope_tables(positions, dtype), mask=mask,
                            segment_ids=segment_ids, attention_impl=impl, **decode)

    def logits(self, hidden: jax.Array) -> jax.Array:
        """Final-normed hidden [B, T, D] -> float32 logits [B, T, V] (tied or separate head)."""
        if self.lm_head is None:
            out = self.embed_tokens.attend(hidden)
        else:
            out = jnp.einsum("btd,dv->btv", hidden, self.lm_head.kernel[...].astype(hidden.dtype),
                             preferred_element_type=jnp.float32)
        return constrain(out, ("act_batch", "act_length", "act_vocab"))

    # --- the layer loop -----------------------------------------------------------------------------------------
    def _run_layers(self, x: jax.Array, ctx: LayerContext, caches=None, mixer_tap: MixerTap | None = None):
        """Every block over x [B, T, D]; with `caches` (one entry per layer) each mixer decodes against its own.

        Returns (x before the final norm, new caches or None)."""
        new_caches = [] if caches is not None else None
        if caches is None and mixer_tap is None and self.remat != "none":
            if self.remat not in REMAT_POLICIES:
                raise ValueError(f"remat must be one of {sorted(REMAT_POLICIES)}; got {self.remat!r}")

            def block(layer, x):     # [B, T, D] -> [B, T, D]; ctx is closed over (its arrays are not saved)
                x = constrain(x + layer.self_attn(layer.input_layernorm(x), ctx), ACT_BTD)
                return layer.mlp_residual(x)

            block = nnx.remat(block, policy=REMAT_POLICIES[self.remat])
            for layer in self.layers:
                x = block(layer, x)
            return x, None
        for i, layer in enumerate(self.layers):
            h = layer.input_layernorm(x)
            if caches is None:
                out = layer.self_attn(h, ctx)
            else:
                out, entry = layer.self_attn.decode(h, ctx, caches[i])
                new_caches.append(entry)
            if mixer_tap is not None:
                out = mixer_tap(i, layer, h, out, ctx)
            x = constrain(x + out, ACT_BTD)
            x = layer.mlp_residual(x)
        return x, (tuple(new_caches) if new_caches is not None else None)

    # --- full forward -------------------------------------------------------------------------------------------
    def hidden_states(self, input_ids=None, *, positions=None, segment_ids=None, inputs_embeds=None,
                      mixer_tap: MixerTap | None = None) -> jax.Array:
        """Final-normed hidden states [B, T, D] in the compute dtype. `mixer_tap` sees each layer's mixer."""
        x = self._inputs(input_ids, inputs_embeds)        # [B, T, D]
        b, t = x.shape[:2]
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        ctx = self.layer_context(positions, x.dtype, segment_ids=segment_ids)
        x, _ = self._run_layers(x, ctx, mixer_tap=mixer_tap)
        return self.norm(x)

    def __call__(self, input_ids=None, *, positions=None, segment_ids=None, inputs_embeds=None) -> jax.Array:
        return self.logits(self.hidden_states(input_ids, positions=positions, segment_ids=segment_ids,
                                              inputs_embeds=inputs_embeds))

    # --- generation ---------------------------------------------------------------------------------------------
    def init_cache(self, batch_size: int, max_length: int, dtype=None) -> KVCache:
        """Each mixer's empty cache entry (attention: K/V [B, Kv, S, Hd] in dtype; linear: float32 state)."""
        dtype = self.dtype if dtype is None else dtype
        layers = tuple(layer.self_attn.init_cache(batch_size, max_length, dtype) for layer in self.layers)
        return KVCache(layers=layers, index=jnp.zeros((), jnp.int32),
                       valid=jnp.zeros((batch_size, max_length), jnp.bool_))

    def decode(self, input_ids, positions, cache: KVCache, *, token_mask=None, inputs_embeds=None,
               return_hidden: bool = False, fresh: bool = False):
        """Runs T new tokens against the cache: (float32 logits [B, T, V], new cache[, final-normed hidden]).

        Writes slots [index, index + T), marks them valid where token_mask (default all True), attends causally
        by slot over valid slots, and advances index by T. `return_hidden=True` also returns the final-normed
        hidden [B, T, D] (latent-reasoning loops feed it back as inputs_embeds). `fresh=True` promises the cache
        is new (index 0, nothing valid): a first prefill then attends over its own T tokens, not all S slots,
        whose [T, S] scores dominate a long generation's prefill.
        """
        x = self._inputs(input_ids, inputs_embeds)        # [B, T, D]
        b, t = x.shape[:2]
        token_mask = jnp.ones((b, t), jnp.bool_) if token_mask is None else token_mask.astype(jnp.bool_)
        index = jnp.asarray(cache.index, jnp.int32)
        valid = jax.lax.dynamic_update_slice(cache.valid, token_mask, (jnp.zeros((), jnp.int32), index))  # [B, S]
        ctx = self.layer_context(positions, x.dtype, mask=decode_masks(index, t, valid), index=index, valid=valid,
                                 token_mask=token_mask, fresh=bool(fresh))
        x, layers = self._run_layers(x, ctx, caches=cache.layers)
        hidden = self.norm(x)
        new_cache = KVCache(layers=layers, index=index + t, valid=valid)
        logits = self.logits(hidden)
        return (logits, new_cache, hidden) if return_hidden else (logits, new_cache)

