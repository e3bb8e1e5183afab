"""HALO stage 0: build a HypeNet student from a Qwen3 teacher by copying weights (arXiv 2601.22156).

What carries over (from ../shared/reference/hypenet-halo.md, "HALO wiring"):
  * embeddings, final norm, lm_head, every layer's MLP and its two RMSNorms: copied;
  * attention layers (kept softmax attention): q, k, v, o projections and q_norm / k_norm copied; the new
    sigmoid output gate `o_gate` keeps its random N(0, 0.02) initialisation; RoPE is dropped (NoPE) and
    HyPE scaling is switched on only for inference (the recipe trains with it off);
  * Lightning (RNN) layers: q, o, q_norm, k_norm copied; with `expand_kv_proj` the teacher's K/V heads are
    repeat-interleaved out to all query heads (query head j uses KV head j // group, as GQA does), so the
    student starts from exactly the teacher's attention projections; `z_proj` (output gate) stays random and
    `o_norm` starts at ones.
Stage 1 then trains the Lightning layers to imitate the attention they replace.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
from flax import nnx

from jaxsuite.models.config import DecoderConfig
from jaxsuite.models.factory import init_model
from jaxsuite.models.hypenet_config import HypeNetConfig
from jaxsuite.models.lm import CausalLM

# Softmax-attention layers the paper keeps (0-based), chosen by its layer-selection sweep.
PAPER_ATTENTION_LAYERS = {
    "hypenet-2b": (2, 3, 6, 8, 9, 21, 25),                 # teacher Qwen3-1.7B, 7 of 28
    "hypenet-5b": (0, 1, 7, 14, 15, 22, 24, 31, 33),       # teacher Qwen3-4B, 9 of 36
    "hypenet-9b": (1, 2, 4, 6, 7, 10, 24, 33, 34),         # teacher Qwen3-8B, 9 of 36
}


def hypenet_config_from_teacher(teacher: DecoderConfig, attention_layers: Sequence[int], *,
                                 attn_logits_scaling: float | str | None = None, expand_kv_proj: bool = True,
                                 max_position_embeddings: int = 1048576, **overrides: Any) -> HypeNetConfig:
    """The HypeNet architecture HALO derives from a Qwen3 teacher: the paper's settings (Lightning layers
    with RoPE, q/k norm, output norm and gate; attention layers NoPE with an output gate) unless overridden.

    attn_logits_scaling: None while training (the recipe), "hype 500" for inference at long context.
    """
    if teacher.model_type != "qwen3":
        raise ValueError(f"HALO converts Qwen3 teachers (q/k norms carry over); got model_type="
                         f"{teacher.model_type!r}")
    if teacher.attention_bias:
        raise ValueError("the teacher has attention biases, which HypeNet's layers do not have")
    layers = sorted({int(i) for i in attention_layers})
    bad = [i for i in layers if not 0 <= i < teacher.num_hidden_layers]
    if bad:
        raise ValueError(f"attention layer indices {bad} are outside the teacher's "
                         f"{teacher.num_hidden_layers} layers")
    mixer_types = tuple("attn" if i in layers else "lightning-attn" for i in range(teacher.num_hidden_layers))
    fields = dict(
        vocab_size=teacher.vocab_size, hidden_size=teacher.hidden_size,
        intermediate_size=teacher.intermediate_size, num_hidden_layers=teacher.num_hidden_layers,
        num_attention_heads=teacher.num_attention_heads, num_key_value_heads=teacher.num_key_value_heads,
        head_dim=teacher.head_dim, rms_norm_eps=teacher.rms_norm_eps, rope_theta=teacher.rope_theta,
        max_position_embeddings=max_position_embeddings, tie_word_embeddings=teacher.tie_word_embeddings,
        mixer_types=mixer_types, attn_use_rope=False, attn_use_output_gate=True,
        attn_logits_scaling=attn_logits_scaling, lightning_nh=teacher.num_attention_heads,
        lightning_nkv=teacher.num_attention_heads if expand_kv_proj else teacher.num_key_value_heads,
        lightning_head_dim=teacher.head_dim, lightning_use_rope=True, lightning_use_qk_norm=True,
        lightning_use_output_norm=True, lightning_use_output_gate=True, expand_kv_proj=expand_kv_proj,
        bos_token_id=teacher.bos_token_id, eos_token_id=teacher.eos_token_id, pad_token_id=teacher.pad_token_id)
    fields.update(overrides)
    return HypeNetConfig(**fields)


def _copy(dst: nnx.Variable, value: Any, what: str) -> None:
    value = jnp.array(value, dst.get_value().dtype, copy=True)   # own buffers: a train step donates them
    if value.shape != dst.get_value().shape:
        raise ValueError(f"stage 0: {what} has shape {tuple(value.shape)} in the teacher, "
                         f"{tuple(dst.get_value().shape)} in the student")
    dst.set_value(value)


def _expand_heads(kernel: Any, heads: int) -> jnp.ndarray:
    """[D, Kv, Hd] -> [D, heads, Hd]: KV head j // (heads / Kv) for query head j (repeat-interleave). jnp, so it
    also runs abstractly (`--compile_only` assembles the student inside nnx.eval_shape)."""
    kv = kernel.shape[1]
    if heads % kv:
        raise ValueError(f"cannot expand {kv} KV heads to {heads} heads")
    return jnp.repeat(kernel, heads // kv, axis=1)


def stage0_transfer(teacher: CausalLM, config: HypeNetConfig, *, seed: int = 0, mesh=None,
                    rules=None) -> CausalLM:
    """A CausalLM initialised from `teacher` as HALO's stage 0 prescribes (see the module docstring)."""
    tcfg = teacher.config
    if config.num_hidden_layers != tcfg.num_hidden_layers or config.hidden_size != tcfg.hidden_size:
        raise ValueError(f"student ({config.num_hidden_layers} layers, hidden {config.hidden_size}) does not match "
                         f"the teacher ({tcfg.num_hidden_layers} layers, hidden {tcfg.hidden_size})")
    if not tcfg.qk_norm:
        raise ValueError("stage 0 needs a teacher with q/k norms (Qwen3)")
    student = init_model(config, seed=seed, mesh=mesh, rules=rules)
    _copy(student.embed_tokens.embedding, teacher.embed_tokens.embedding.get_value(), "embed_tokens")
    _copy(student.norm.scale, teacher.norm.scale.get_value(), "norm")
    if (student.lm_head is None) != (teacher.lm_head is None):
        raise ValueError("student and teacher disagree on tie_word_embeddings")
    if teacher.lm_head is not None:
        _copy(student.lm_head.kernel, teacher.lm_head.kernel.get_value(), "lm_head")
    for i, (s_layer, t_layer) in enumerate(zip(student.layers, teacher.layers)):
        for name in ("input_layernorm", "post_attention_layernorm"):
            _copy(getattr(s_layer, name).scale, getattr(t_layer, name).scale.get_value(), f"layers.{i}.{name}")
        for name in ("gate_proj", "up_proj", "down_proj"):
            _copy(getattr(s_layer.mlp, name).kernel, getattr(t_layer.mlp, name).kernel.get_value(),
                  f"layers.{i}.mlp.{name}")
        s_attn, t_attn = s_layer.self_attn, t_layer.self_attn
        heads = s_attn.q_proj.kernel.get_value().shape[1]
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            dst, value = getattr(s_attn, name).kernel, getattr(t_attn, name).kernel.get_value()
            if name in ("k_proj", "v_proj") and dst.get_value().shape[1] != value.shape[1]:
                value = _expand_heads(value, dst.get_value().shape[1])       # GQA -> MHA (expand_kv_proj)
            _copy(dst, value, f"layers.{i}.self_attn.{name}")
        if heads != tcfg.num_attention_heads:
            raise ValueError(f"layer {i}: the student has {heads} query heads, the teacher "
                             f"{tcfg.num_attention_heads}; stage 0 copies heads one to one")
        for name in ("q_norm", "k_norm"):
            if getattr(s_attn, name, None) is not None:
                _copy(getattr(s_attn, name).scale, getattr(t_attn, name).scale.get_value(),
                      f"layers.{i}.self_attn.{name}")
    return student
