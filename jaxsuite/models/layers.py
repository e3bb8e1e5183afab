"""Building blocks shared by the decoder LMs (and later HypeNet): RMSNorm, rotary embeddings, SwiGLU, projections.

Every function here reproduces transformers' arithmetic order, because exact logit parity with the Hugging Face
reference (<= 1e-4 in float32) is how the port is proven:
  * RMSNorm normalises in float32, casts back to the input dtype, and only then multiplies by the weight.
  * RoPE is the non-interleaved "rotate_half" form; inverse frequencies and cos/sin are float32, then cast to the
    activation dtype before they meet q and k.
Parameters carry logical axis names (`nnx.Param(value, logical_axes=(...))`) that `jaxsuite.core.sharding` maps to
mesh axes; the layers never name a mesh axis.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsuite.core.sharding import constrain

INIT_STD = 0.02  # transformers' initializer_range for all three families


def normal_param(rngs: nnx.Rngs, shape: Sequence[int], dtype, logical_axes: tuple[str | None, ...],
                 std: float = INIT_STD) -> nnx.Param:
    """A normal(0, std) matrix parameter, sampled in float32 then cast (bf16 sampling is coarse)."""
    value = std * jax.random.normal(rngs.params(), tuple(shape), jnp.float32)
    return nnx.Param(value.astype(dtype), logical_axes=logical_axes)


def const_param(value: float, shape: Sequence[int], dtype, logical_axes: tuple[str | None, ...]) -> nnx.Param:
    return nnx.Param(jnp.full(tuple(shape), value, dtype), logical_axes=logical_axes)


# --- projections ------------------------------------------------------------------------------------------------
class Einsum(nnx.Module):
    """A linear map written as an einsum, so that heads keep their own axis in the weight.

    `Einsum("btd,dnh->btnh", (D, N, Hd), ("embed", "q_heads", "head_dim"))` is q_proj in our layout ([in..., out...]
    instead of torch's [out, in]); `bias_shape` adds a bias over the output axes. `lora`: an optional low-rank
    adapter (`jaxsuite.models.lora.apply_lora` sets it), added to the output while active.
    """

    def __init__(self, spec: str, shape: Sequence[int], logical_axes: tuple[str | None, ...], *,
                 bias_shape: Sequence[int] | None = None, bias_axes: tuple[str | None, ...] | None = None,
                 rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.spec = spec
        self.kernel = normal_param(rngs, shape, param_dtype, logical_axes)
        self.bias = const_param(0.0, bias_shape, param_dtype, bias_axes) if bias_shape is not None else None
        self.lora = None

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        y = jnp.einsum(self.spec, x, kernel.astype(x.dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)
        if self.lora is not None and self.lora.active():
            y = y + self.lora(x).astype(y.dtype)
        return y


class Embed(nnx.Module):
    """Token embedding table [V, D]; `attend` gives the tied output projection."""

    def __init__(self, vocab_size: int, features: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.embedding = normal_param(rngs, (vocab_size, features), param_dtype, ("vocab", "embed"))

    def __call__(self, ids: jax.Array) -> jax.Array:
        # Gather from an explicitly replicated table: a gather from a vocab x fsdp sharded table otherwise makes
        # the SPMD partitioner replicate it anyway, with a warning (FSDP all-gathers every matrix in use too).
        table = constrain(self.embedding[...], (None, None))  # [V, D]
        return jnp.take(table, ids, axis=0)                    # [B, T, D]

    def attend(self, x: jax.Array) -> jax.Array:
        """Logits against the embedding table, accumulated in float32: [B, T, D] -> [B, T, V]."""
        return jnp.einsum("btd,vd->btv", x, self.embedding[...].astype(x.dtype),
                          preferred_element_type=jnp.float32)


# --- normalisation ----------------------------------------------------------------------------------------------
def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    """HF order: normalise in float32, cast back to x's dtype, then scale by the weight."""
    x32 = x.astype(jnp.float32)
    var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    y = (x32 * jax.lax.rsqrt(var + eps)).astype(x.dtype)
    return weight.astype(x.dtype) * y


class RMSNorm(nnx.Module):
    """RMSNorm over the last axis; weight initialised to ones."""

    def __init__(self, features: int, eps: float = 1e-6, *, param_dtype=jnp.float32,
                 logical_axes: tuple[str | None, ...] = ("norm",)):
        self.eps = float(eps)
        self.scale = const_param(1.0, (features,), param_dtype, logical_axes)

    def __call__(self, x: jax.Array) -> jax.Array:
        return rms_norm(x, self.scale[...], self.eps)


# --- rotary embeddings ------------------------------------------------------------------------------------------
def rope_inv_freq(head_dim: int, theta: float, scaling: Mapping[str, Any] | None = None, *,
                  max_position_embeddings: int | None = None, positions: jax.Array | None = None) -> jax.Array:
    """Inverse frequencies [head_dim // 2] in float32, as transformers' ROPE_INIT_FUNCTIONS compute them.

    rope_type "default": theta^(-2i/d). "linear": divided by `factor`. "llama3": Llama 3.1's wavelength-dependent
    smoothing. "dynamic" (NTK): theta is enlarged when the sequence (max(positions) + 1) exceeds
    `max_position_embeddings`, exactly as transformers' dynamic update does for the positions of the call.
    """
    scaling = dict(scaling or {})
    rope_type = scaling.get("rope_type", "default")
    dim = head_dim
    exponent = jnp.arange(0, dim, 2, dtype=jnp.float32) / dim  # [Hd/2]
    if rope_type == "dynamic":
        if max_position_embeddings is None or positions is None:
            raise ValueError("dynamic RoPE needs max_position_embeddings and the positions of the call")
        factor = float(scaling["factor"])
        seq_len = jnp.maximum(jnp.max(positions).astype(jnp.int32) + 1, max_position_embeddings)
        ratio = factor * seq_len.astype(jnp.float32) / max_position_embeddings - (factor - 1.0)
        base = jnp.float32(theta) * ratio ** jnp.float32(dim / (dim - 2))
        return 1.0 / (base ** exponent)
    inv_freq = 1.0 / (jnp.float32(theta) ** exponent)
    if rope_type == "default":
        return inv_freq
    if rope_type == "linear":
        return inv_freq / jnp.float32(scaling["factor"])
    if rope_type == "llama3":
        factor = float(scaling["factor"])
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old_len = float(scaling["original_max_position_embeddings"])
        low_wavelen, high_wavelen = old_len / low, old_len / high
        wavelen = 2 * math.pi / inv_freq
        scaled = jnp.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        return jnp.where(medium, smoothed, scaled)
    raise ValueError(f"unsupported rope_type {rope_type!r} (supported: default, linear, llama3, dynamic)")


def rope_cos_sin(positions: jax.Array, inv_freq: jax.Array, dtype) -> tuple[jax.Array, jax.Array]:
    """cos/sin [B, T, Hd] for integer positions [B, T]: float32 angles, cast to the activation dtype."""
    freqs = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, Hd/2]
    emb = jnp.concatenate([freqs, freqs], axis=-1)              # [B, T, Hd]
    return jnp.cos(emb).astype(dtype), jnp.sin(emb).astype(dtype)


def rotate_half(x: jax.Array) -> jax.Array:
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x [B, T, H, Hd] rotated by cos/sin [B, T, Hd] (non-interleaved halves, as in HF)."""
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    return x * cos + rotate_half(x) * sin


# --- MLP --------------------------------------------------------------------------------------------------------
class SwiGLU(nnx.Module):
    """down(silu(gate(x)) * up(x)); gate/up [D, I], down [I, D]."""

    def __init__(self, hidden_size: int, intermediate_size: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        d, i = hidden_size, intermediate_size
        self.gate_proj = Einsum("btd,di->bti", (d, i), ("embed", "mlp"), rngs=rngs, param_dtype=param_dtype)
        self.up_proj = Einsum("btd,di->bti", (d, i), ("embed", "mlp"), rngs=rngs, param_dtype=param_dtype)
        self.down_proj = Einsum("bti,id->btd", (i, d), ("mlp", "embed"), rngs=rngs, param_dtype=param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.silu(self.gate_proj(x)) * self.up_proj(x)  # [B, T, I]
        h = constrain(h, ("act_batch", "act_length", "act_mlp"))
        return self.down_proj(h)                                 # [B, T, D]
