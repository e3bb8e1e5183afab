"""What a layer's token mixer is, as small frozen (hashable, jit-static) records that configs produce.

The LM (`jaxsuite.models.lm.CausalLM`) never reads a config's family-specific fields: each architecture config
(DecoderConfig for Qwen3 / Qwen2 / Llama, HypeNetConfig for HypeNet and its linear-mixer extensions) turns itself
into `LMArchitecture` — one `MixerSpec` per layer plus the shared backbone sizes — and the layer loop builds the
mixer each spec names. Adding a mixer kind means a spec kind here and a class in `mixers_linear.py`; the LM, the
decode loop and the cache handling do not change.
"""
from __future__ import annotations

import dataclasses
from typing import Any

# Mixer kinds. "attention" is softmax attention (RoPE, or NoPE with HyPE scaling); the others are linear-attention
# recurrences with a constant-size state, computed by kernels_pallas.
ATTENTION = "attention"
LIGHTNING = "lightning"          # simple GLA with a fixed per-head decay (ALiBi slopes), HypeNet's RNN layer
SIMPLE_GLA = "simple_gla"        # simple GLA with a data-dependent scalar decay per head
GLA = "gla"                      # gated linear attention: a data-dependent decay per head and key channel
GATED_DELTA = "gated_delta"      # gated delta rule (Gated DeltaNet): decayed state corrected towards v
LINEAR_KINDS = (LIGHTNING, SIMPLE_GLA, GLA, GATED_DELTA)
MIXER_KINDS = (ATTENTION,) + LINEAR_KINDS


@dataclasses.dataclass(frozen=True)
class RopeSpec:
    """Rotary-embedding settings shared by every layer that rotates q and k (transformers' fields)."""
    theta: float = 10000.0
    scaling: tuple[tuple[str, Any], ...] | None = None   # (key, value) pairs of rope_scaling; None = default
    max_position_embeddings: int | None = None


@dataclasses.dataclass(frozen=True)
class MixerSpec:
    """One layer's token mixer.

    Shared: kind, num_heads, num_kv_heads, head_dim, eps (RMSNorm epsilon), use_rope, qk_norm (per-head RMSNorm on
    q and k), output_gate (sigmoid gate on the mixer output before o_proj).
    Attention only: qkv_bias, o_bias, hype_base (queries times ln(t + a) / ln(a)), constant_scaling (queries times
      a constant).
    Linear only: scale (query scale of the recurrence), output_norm (one RMSNorm over the concatenated heads),
      implementation (the kernels_pallas implementation: None picks by backend, or "xla", "pallas", ...).
    """
    kind: str
    num_heads: int
    num_kv_heads: int
    head_dim: int
    eps: float = 1e-6
    use_rope: bool = True
    qk_norm: bool = False
    output_gate: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    hype_base: float | None = None
    constant_scaling: float | None = None
    scale: float | None = None
    output_norm: bool = False
    implementation: str | None = None

    def __post_init__(self):
        if self.kind not in MIXER_KINDS:
            raise ValueError(f"unknown mixer kind {self.kind!r}; supported: {MIXER_KINDS}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"{self.kind}: num_heads={self.num_heads} is not a multiple of "
                             f"num_kv_heads={self.num_kv_heads}")
        if self.use_rope and self.head_dim % 2:
            raise ValueError(f"{self.kind}: head_dim={self.head_dim} must be even for rotary embeddings")

    @property
    def is_attention(self) -> bool:
        return self.kind == ATTENTION


@dataclasses.dataclass(frozen=True)
class LMArchitecture:
    """Everything the causal LM needs to build itself: the backbone sizes, RoPE, and one mixer per layer."""
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    rms_norm_eps: float
    tie_word_embeddings: bool
    rope: RopeSpec
    mixers: tuple[MixerSpec, ...]

    @property
    def num_layers(self) -> int:
        return len(self.mixers)
