"""The decoder's architecture, read from and written to Hugging Face `config.json` dictionaries.

One frozen dataclass covers Qwen3, Qwen2/Qwen2.5 and Llama: they differ only in flags (q/k norm, q/k/v bias,
tied embeddings, RoPE scaling). Both RoPE spellings are accepted: transformers >= 5 writes `rope_parameters`
(with `rope_theta` inside it), older checkpoints carry top-level `rope_theta` and `rope_scaling`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from jaxsuite.models.mixer_specs import ATTENTION, LMArchitecture, MixerSpec, RopeSpec

# model_type -> the flags that family fixes. Anything else in config.json that we do not model is rejected
# by `from_hf_config` when it would change the numbers (sliding windows, MoE, non-SiLU activations).
ARCHITECTURES = {
    "qwen3": {"hf_class": "Qwen3ForCausalLM", "qk_norm": True},
    "qwen2": {"hf_class": "Qwen2ForCausalLM", "qk_norm": False},
    "llama": {"hf_class": "LlamaForCausalLM", "qk_norm": False},
}
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3", "dynamic")


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """Architecture of a pre-norm decoder LM (Qwen3 / Qwen2 / Llama families)."""
    vocab_size: int = 151936
    hidden_size: int = 1024
    intermediate_size: int = 3072
    num_hidden_layers: int = 28
    num_attention_heads: int = 16
    num_key_value_heads: int = 8
    head_dim: int = 128                       # independent of hidden_size / heads (Qwen3)
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    rope_scaling: tuple[tuple[str, Any], ...] | None = None  # (key, value) pairs; hashable for jit
    max_position_embeddings: int = 40960
    tie_word_embeddings: bool = True
    attention_bias: bool = False              # q/k/v projection biases (Qwen2)
    qk_norm: bool = True                      # per-head RMSNorm on q and k before RoPE (Qwen3)
    model_type: str = "qwen3"
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None

    def __post_init__(self):
        if self.model_type not in ARCHITECTURES:
            raise ValueError(f"unknown architecture model_type={self.model_type!r}; "
                             f"supported: {sorted(ARCHITECTURES)}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                             f"num_key_value_heads={self.num_key_value_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        rope_type = self.rope_scaling_dict.get("rope_type", "default")
        if rope_type not in SUPPORTED_ROPE_TYPES:
            raise ValueError(f"unsupported rope_type {rope_type!r}; supported: {SUPPORTED_ROPE_TYPES}")

    @property
    def rope_scaling_dict(self) -> dict[str, Any]:
        return dict(self.rope_scaling or ())

    @property
    def num_kv_groups(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    def replace(self, **changes) -> "DecoderConfig":
        return dataclasses.replace(self, **changes)

    def architecture(self) -> LMArchitecture:
        """The causal LM this config describes: RoPE softmax attention in every layer."""
        spec = MixerSpec(kind=ATTENTION, num_heads=self.num_attention_heads, num_kv_heads=self.num_key_value_heads,
                         head_dim=self.head_dim, eps=self.rms_norm_eps, use_rope=True, qk_norm=self.qk_norm,
                         qkv_bias=self.attention_bias,
                         # Qwen2 has q/k/v biases only; Llama / Qwen3 attention_bias also biases o_proj.
                         o_bias=self.attention_bias and self.model_type != "qwen2")
        return LMArchitecture(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                              intermediate_size=self.intermediate_size, rms_norm_eps=self.rms_norm_eps,
                              tie_word_embeddings=self.tie_word_embeddings,
                              rope=RopeSpec(theta=self.rope_theta, scaling=self.rope_scaling,
                                            max_position_embeddings=self.max_position_embeddings),
                              mixers=(spec,) * self.num_hidden_layers)

    # --- Hugging Face config.json ----------------------------------------------------------------------------
    @classmethod
    def from_hf_config(cls, hf: Mapping[str, Any]) -> "DecoderConfig":
        hf = dict(hf)
        model_type = hf.get("model_type")
        if model_type not in ARCHITECTURES:
            archs = hf.get("architectures")
            raise ValueError(f"unknown architecture: model_type={model_type!r} (architectures={archs}); "
                             f"jaxsuite's decoder supports {sorted(ARCHITECTURES)}")
        act = hf.get("hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"hidden_act={act!r} is not supported (the decoder implements SwiGLU with silu)")
        if hf.get("use_sliding_window"):
            raise ValueError("sliding-window attention (use_sliding_window=true) is not supported")
        if hf.get("mlp_bias"):
            raise ValueError("mlp_bias=true is not supported")
        rope = dict(hf.get("rope_parameters") or {})
        legacy = hf.get("rope_scaling") or {}
        rope.update({k: v for k, v in legacy.items() if k not in rope})
        if "type" in rope and "rope_type" not in rope:  # very old spelling
            rope["rope_type"] = rope.pop("type")
        theta = float(rope.pop("rope_theta", hf.get("rope_theta", 10000.0)))
        rope.setdefault("rope_type", "default")
        heads = int(hf["num_attention_heads"])
        hidden = int(hf["hidden_size"])
        eos = hf.get("eos_token_id")
        return cls(
            vocab_size=int(hf["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(hf["intermediate_size"]),
            num_hidden_layers=int(hf["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(hf.get("num_key_value_heads") or heads),
            head_dim=int(hf.get("head_dim") or hidden // heads),
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope_theta=theta,
            rope_scaling=None if rope == {"rope_type": "default"} else tuple(sorted(rope.items())),
            max_position_embeddings=int(hf.get("max_position_embeddings", 32768)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            # Qwen2 in transformers always has q/k/v biases (its config has no attention_bias field).
            attention_bias=True if model_type == "qwen2" else bool(hf.get("attention_bias", False)),
            qk_norm=ARCHITECTURES[model_type]["qk_norm"],
            model_type=model_type,
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
            pad_token_id=hf.get("pad_token_id"),
        )

    def to_hf_config(self) -> dict[str, Any]:
        rope = {"rope_theta": self.rope_theta, "rope_type": "default", **self.rope_scaling_dict}
        out = {
            "architectures": [ARCHITECTURES[self.model_type]["hf_class"]],
            "model_type": self.model_type,
            **shared_hf_fields(self),
            "rope_theta": self.rope_theta,        # legacy readers
            "rope_parameters": rope,              # transformers >= 5
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "use_cache": True,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_id) if isinstance(self.eos_token_id, tuple) else self.eos_token_id,
            "pad_token_id": self.pad_token_id,
        }
        if self.model_type == "llama":
            out["mlp_bias"] = False
        if self.model_type == "qwen2":
            out["use_sliding_window"] = False
        return out


def shared_hf_fields(cfg: Any) -> dict[str, Any]:
    """The config.json fields every decoder-family architecture here writes the same way (Qwen3 / Qwen2 /
    Llama and HypeNet)."""
    return {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.rms_norm_eps,
    }


def count_params(cfg: DecoderConfig) -> int:
    """Parameter count from the architecture alone (the published sizes count tied embeddings once)."""
    d, h, kv, hd = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    attn = d * h * hd + 2 * d * kv * hd + h * hd * d
    if cfg.attention_bias:
        attn += h * hd + 2 * kv * hd
        if cfg.model_type != "qwen2":  # Llama/Qwen3 attention_bias also biases o_proj; Qwen2 does not
            attn += d
    if cfg.qk_norm:
        attn += 2 * hd
    mlp = 3 * d * cfg.intermediate_size
    layer = attn + mlp + 2 * d
    embed = cfg.vocab_size * d * (1 if cfg.tie_word_embeddings else 2)
    return cfg.num_hidden_layers * layer + embed + d
