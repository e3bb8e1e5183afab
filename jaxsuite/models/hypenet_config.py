"""HypeNet's architecture (arXiv 2601.22156), read from and written to the released `config.json` fields.

The field names are those of the official checkpoints (chen-yingfa/HypeNet-2B / -5B, model_type "hypenet"):
`mixer_types` lists each layer's kind ("attn" or "lightning-attn"), `attn_*` configure the softmax-attention
layers (NoPE + HyPE logit scaling + output gate), `lightning_*` the Lightning-attention (simple GLA) layers.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from jaxsuite.models import mixer_specs as ms
from jaxsuite.models.config import shared_hf_fields

MIXER_ATTN = "attn"
MIXER_LIGHTNING = "lightning-attn"
# jaxsuite's extension of the format: the linear mixers with a learned decay, configured by the lightning_* fields
# (heads, head size, q/k norm, output norm and gate, scale). The released HypeNet code knows only the first two.
MIXER_SIMPLE_GLA = "simple-gla"
MIXER_GLA = "gla"
MIXER_GATED_DELTA = "gated-delta"
_MIXER_ALIASES = {"attn": MIXER_ATTN, "lightning-attn": MIXER_LIGHTNING, "lightning_attn": MIXER_LIGHTNING,
                  "simple-gla": MIXER_SIMPLE_GLA, "simple_gla": MIXER_SIMPLE_GLA, "gla": MIXER_GLA,
                  "gated-delta": MIXER_GATED_DELTA, "gated_delta": MIXER_GATED_DELTA}
# mixer_types entry -> the LM's mixer kind
MIXER_KIND = {MIXER_ATTN: ms.ATTENTION, MIXER_LIGHTNING: ms.LIGHTNING, MIXER_SIMPLE_GLA: ms.SIMPLE_GLA,
              MIXER_GLA: ms.GLA, MIXER_GATED_DELTA: ms.GATED_DELTA}
HYPE_DEFAULT_BASE = 362.0          # the official code's default when "hype" carries no number
LIGHTNING_SCALES = ("1/sqrt(d)", "1/d")


@dataclasses.dataclass(frozen=True)
class HypeNetConfig:
    """Architecture of a HypeNet hybrid LM (softmax-attention + Lightning-attention layers).

    mixer_types: one entry per layer, "attn" or "lightning-attn" ("lightning_attn" is accepted and normalised),
      or one of jaxsuite's learned-decay linear mixers "simple-gla", "gla", "gated-delta" (configured by the same
      lightning_* fields); empty means all attention. Any other kind raises ValueError naming it and its layer index.
    attn_logits_scaling: None (off), a float (constant query multiplier) or "hype <a>" (queries times
      ln(t + a) / ln(a), t the position id; a = 362 when the number is missing).
    lightning_nh / lightning_nkv / lightning_head_dim: None defaults to the attention values.
    lightning_use_short_conv: the official code's optional short convolution is NOT implemented here; true
      raises ValueError (HypeNet's released checkpoints have it off).
    lightning_scale: "1/sqrt(d)" (default) -> dL^-0.5, "1/d" -> 1/dL, anything else -> 1.0.
    expand_kv_proj: recorded for HALO's conversion (K/V projections expanded to all heads at stage 0); the model
      itself only uses lightning_nkv.
    implementation: the kernels_pallas implementation of the Lightning layers (not an HF field).
    """
    vocab_size: int = 151936
    hidden_size: int = 2048
    intermediate_size: int = 6144
    num_hidden_layers: int = 28
    num_attention_heads: int = 16
    num_key_value_heads: int = 8
    head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 1048576
    tie_word_embeddings: bool = True
    mixer_types: tuple[str, ...] = ()
    attn_use_rope: bool = False
    attn_use_output_gate: bool = True
    attn_logits_scaling: float | str | None = None
    lightning_nh: int | None = None
    lightning_nkv: int | None = None
    lightning_head_dim: int | None = None
    lightning_use_rope: bool = True
    lightning_use_qk_norm: bool = False
    lightning_use_output_norm: bool = False
    lightning_use_output_gate: bool = False
    lightning_use_short_conv: bool = False
    lightning_conv_size: int = 4
    lightning_scale: str = "1/sqrt(d)"
    expand_kv_proj: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    implementation: str = "xla"

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen: normalise in place once)
        kinds = tuple(self.mixer_types) or (MIXER_ATTN,) * self.num_hidden_layers
        if len(kinds) != self.num_hidden_layers:
            raise ValueError(f"mixer_types has {len(kinds)} entries but num_hidden_layers={self.num_hidden_layers}")
        norm = []
        for i, kind in enumerate(kinds):
            if kind not in _MIXER_ALIASES:
                raise ValueError(f"unknown mixer type {kind!r} at layer {i} (mixer_types[{i}]); supported: "
                                 f"'attn', 'lightning-attn' ('lightning_attn'), 'simple-gla', 'gla', 'gated-delta'")
            norm.append(_MIXER_ALIASES[kind])
        set_("mixer_types", tuple(norm))
        for name, default in (("lightning_nh", self.num_attention_heads),
                              ("lightning_nkv", self.num_key_value_heads),
                              ("lightning_head_dim", self.head_dim)):
            if getattr(self, name) is None:
                set_(name, int(default))
        if isinstance(self.eos_token_id, list):
            set_("eos_token_id", tuple(self.eos_token_id))
        if self.lightning_use_short_conv:
            raise ValueError("lightning_use_short_conv=true is not supported: jaxsuite's HypeNet Lightning layers "
                             "have no short convolution (the released HypeNet checkpoints do not use one)")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                             f"num_key_value_heads={self.num_key_value_heads}")
        if self.lightning_nh % self.lightning_nkv:
            raise ValueError(f"lightning_nh={self.lightning_nh} is not a multiple of "
                             f"lightning_nkv={self.lightning_nkv}")
        for name in ("head_dim", "lightning_head_dim"):
            if getattr(self, name) % 2:
                raise ValueError(f"{name}={getattr(self, name)} must be even for rotary embeddings")
        self.hype_base  # validates attn_logits_scaling

    # --- derived ------------------------------------------------------------------------------------------------
    @property
    def model_type(self) -> str:
        return "hypenet"

    @property
    def attention_layers(self) -> tuple[int, ...]:
        return tuple(i for i, k in enumerate(self.mixer_types) if k == MIXER_ATTN)

    @property
    def hype_base(self) -> float | None:
        """a of "hype <a>", or None when attention logits are not HyPE-scaled."""
        s = self.attn_logits_scaling
        if s is None or isinstance(s, (int, float)):
            return None
        parts = str(s).split()
        if not parts or parts[0] != "hype" or len(parts) > 2:
            raise ValueError(f"attn_logits_scaling={s!r}: expected null, a number or 'hype <a>'")
        a = float(parts[1]) if len(parts) == 2 else HYPE_DEFAULT_BASE
        if a <= 1:
            raise ValueError(f"attn_logits_scaling={s!r}: the HyPE base a must be > 1")
        return a

    @property
    def attn_constant_scaling(self) -> float | None:
        s = self.attn_logits_scaling
        return float(s) if isinstance(s, (int, float)) and not isinstance(s, bool) else None

    @property
    def lightning_scale_value(self) -> float:
        d = self.lightning_head_dim
        if self.lightning_scale == "1/sqrt(d)":
            return 1.0 / math.sqrt(d)
        if self.lightning_scale == "1/d":
            return 1.0 / d
        return 1.0

    def replace(self, **changes) -> "HypeNetConfig":
        return dataclasses.replace(self, **changes)

    def architecture(self) -> ms.LMArchitecture:
        """The causal LM this config describes: HyPE / NoPE attention layers and linear-mixer layers."""
        attn = ms.MixerSpec(kind=ms.ATTENTION, num_heads=self.num_attention_heads,
                            num_kv_heads=self.num_key_value_heads, head_dim=self.head_dim, eps=self.rms_norm_eps,
                            use_rope=self.attn_use_rope, qk_norm=True, output_gate=self.attn_use_output_gate,
                            hype_base=self.hype_base, constant_scaling=self.attn_constant_scaling)

        def linear(kind: str) -> ms.MixerSpec:
            return ms.MixerSpec(kind=kind, num_heads=self.lightning_nh, num_kv_heads=self.lightning_nkv,
                                head_dim=self.lightning_head_dim, eps=self.rms_norm_eps,
                                use_rope=self.lightning_use_rope, qk_norm=self.lightning_use_qk_norm,
                                output_gate=self.lightning_use_output_gate, output_norm=self.lightning_use_output_norm,
                                scale=self.lightning_scale_value, implementation=self.implementation)
        mixers = tuple(attn if t == MIXER_ATTN else linear(MIXER_KIND[t]) for t in self.mixer_types)
        return ms.LMArchitecture(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                                 intermediate_size=self.intermediate_size, rms_norm_eps=self.rms_norm_eps,
                                 tie_word_embeddings=self.tie_word_embeddings,
                                 rope=ms.RopeSpec(theta=self.rope_theta,
                                                  max_position_embeddings=self.max_position_embeddings),
                                 mixers=mixers)

    # --- Hugging Face config.json ----------------------------------------------------------------------------
    @classmethod
    def from_hf_config(cls, hf: Mapping[str, Any]) -> "HypeNetConfig":
        hf = dict(hf)
        if hf.get("model_type") != "hypenet":
            raise ValueError(f"not a HypeNet config: model_type={hf.get('model_type')!r}")
        act = hf.get("hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"hidden_act={act!r} is not supported (HypeNet's MLP is SwiGLU with silu)")
        for flag in ("attention_bias", "mlp_bias"):
            if hf.get(flag):
                raise ValueError(f"{flag}=true is not supported (HypeNet has no biases)")
        heads = int(hf["num_attention_heads"])
        hidden = int(hf["hidden_size"])
        rope = hf.get("rope_parameters") or {}
        theta = float(rope.get("rope_theta", hf.get("rope_theta", 1_000_000.0)))
        opt_int = lambda k: None if hf.get(k) is None else int(hf[k])  # noqa: E731
        kwargs = dict(
            vocab_size=int(hf["vocab_size"]), hidden_size=hidden, intermediate_size=int(hf["intermediate_size"]),
            num_hidden_layers=int(hf["num_hidden_layers"]), num_attention_heads=heads,
            num_key_value_heads=int(hf.get("num_key_value_heads") or heads),
            head_dim=int(hf.get("head_dim") or hidden // heads), rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope_theta=theta, max_position_embeddings=int(hf.get("max_position_embeddings", 1048576)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", True)),
            mixer_types=tuple(hf.get("mixer_types") or ()),
            attn_logits_scaling=hf.get("attn_logits_scaling"),
            lightning_nh=opt_int("lightning_nh"), lightning_nkv=opt_int("lightning_nkv"),
            lightning_head_dim=opt_int("lightning_head_dim"),
            lightning_conv_size=int(hf.get("lightning_conv_size", 4)),
            lightning_scale=str(hf.get("lightning_scale", "1/sqrt(d)")),
            bos_token_id=hf.get("bos_token_id"), eos_token_id=hf.get("eos_token_id"),
            pad_token_id=hf.get("pad_token_id"),
        )
        for flag in ("attn_use_rope", "attn_use_output_gate", "lightning_use_rope", "lightning_use_qk_norm",
                     "lightning_use_output_norm", "lightning_use_output_gate", "lightning_use_short_conv",
                     "expand_kv_proj"):
            if flag in hf:
                kwargs[flag] = bool(hf[flag])
        return cls(**kwargs)

    def to_hf_config(self) -> dict[str, Any]:
        # The official checkpoints also carry `auto_map` (their custom modeling code); we write none, so
        # transformers cannot load our folders without that code being supplied separately.
        return {
            "architectures": ["HypeNetForCausalLM"],
            "model_type": "hypenet",
            **shared_hf_fields(self),
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "mixer_types": list(self.mixer_types),
            "attn_use_rope": self.attn_use_rope,
            "attn_use_output_gate": self.attn_use_output_gate,
            "attn_logits_scaling": self.attn_logits_scaling,
            "lightning_nh": self.lightning_nh,
            "lightning_nkv": self.lightning_nkv,
            "lightning_head_dim": self.lightning_head_dim,
            "lightning_use_rope": self.lightning_use_rope,
            "lightning_use_qk_norm": self.lightning_use_qk_norm,
            "lightning_use_output_norm": self.lightning_use_output_norm,
            "lightning_use_output_gate": self.lightning_use_output_gate,
            "lightning_use_short_conv": self.lightning_use_short_conv,
            "lightning_conv_size": self.lightning_conv_size,
            "lightning_scale": self.lightning_scale,
            "expand_kv_proj": self.expand_kv_proj,
            "initializer_range": 0.02,
            "use_cache": True,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_id) if isinstance(self.eos_token_id, tuple) else self.eos_token_id,
            "pad_token_id": self.pad_token_id,
        }
