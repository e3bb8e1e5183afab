"""Architectures of released models, as their config.json files give them: the Qwen3 dense models (HALO's
teachers, pre-training) and Qwen2.5-Math (CPMobius's coach and player). `--compile_only` builds a hub id's
model from these, so it needs nothing downloaded; a run loads the real config.json with the weights.

Published parameter counts (technical reports / model cards) are what `count_params` must reproduce; tests
check it with `jax.eval_shape`, so nothing is allocated.
"""
import dataclasses
import re

from jaxsuite.models.config import DecoderConfig

_QWEN3_COMMON = dict(vocab_size=151936, head_dim=128, num_key_value_heads=8, rms_norm_eps=1e-6,
                     rope_theta=1_000_000.0, max_position_embeddings=40960, model_type="qwen3", qk_norm=True,
                     attention_bias=False, bos_token_id=151643, eos_token_id=151645)

QWEN3_PRESETS: dict[str, DecoderConfig] = {
    "0.6b": DecoderConfig(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                          tie_word_embeddings=True, **_QWEN3_COMMON),
    "1.7b": DecoderConfig(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                          tie_word_embeddings=True, **_QWEN3_COMMON),
    "4b": DecoderConfig(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                        tie_word_embeddings=True, **_QWEN3_COMMON),
    "8b": DecoderConfig(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                        tie_word_embeddings=False, **_QWEN3_COMMON),
}

# Parameter counts as published on the model cards ("Number of Parameters"), in billions, one decimal.
QWEN3_PUBLISHED_BILLIONS = {"0.6b": 0.6, "1.7b": 1.7, "4b": 4.0, "8b": 8.2}
# ... and the non-embedding counts the same cards give, which pin down the layer shapes more tightly.
QWEN3_PUBLISHED_NON_EMBEDDING_BILLIONS = {"0.6b": 0.44, "1.7b": 1.4, "4b": 3.6, "8b": 6.95}


# Qwen2.5-Math (Qwen2 architecture: q/k/v biases, no q/k norms). The layer shapes are those of Qwen2.5-1.5B / 7B;
# the Math models were trained for a 4K context (max_position_embeddings 4096, rope_theta 10000), which is what
# CPMobius's 768 + 3300-token rollouts fit in. The Instruct models share the architecture of their base.
_QWEN2P5_MATH_COMMON = dict(head_dim=128, rms_norm_eps=1e-6, rope_theta=10_000.0, max_position_embeddings=4096,
                            model_type="qwen2", qk_norm=False, attention_bias=True, bos_token_id=151643,
                            eos_token_id=151643)

QWEN2P5_MATH_PRESETS: dict[str, DecoderConfig] = {
    "1.5b": DecoderConfig(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                          num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True,
                          **_QWEN2P5_MATH_COMMON),
    "7b": DecoderConfig(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                        num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False,
                        **_QWEN2P5_MATH_COMMON),
}
# Qwen2.5-Instruct (the general models): the same layer shapes, with rope_theta 1e6, a 32K context in config.json
# (longer with YaRN, not applied) and <|im_end|> (151645) as the end of a turn. EvoOpt-LLM's 7B-class base.
QWEN2P5_INSTRUCT_PRESETS: dict[str, DecoderConfig] = {
    size: dataclasses.replace(cfg, rope_theta=1_000_000.0, max_position_embeddings=32768, eos_token_id=151645)
    for size, cfg in QWEN2P5_MATH_PRESETS.items()}
# Qwen2.5's report (Table 1 / model cards): 1.54B (1.31B non-embedding) and 7.61B (6.53B non-embedding).
QWEN2P5_PUBLISHED_BILLIONS = {"1.5b": 1.54, "7b": 7.61}
QWEN2P5_PUBLISHED_NON_EMBEDDING_BILLIONS = {"1.5b": 1.31, "7b": 6.53}


def preset_of_hub_id(hub_id: str) -> DecoderConfig | None:
    """The architecture of a released hub id this module knows ("Qwen/Qwen3-1.7B", "Qwen/Qwen3-8B-Base",
    "Qwen/Qwen2.5-Math-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct", ...), or None."""
    m = re.fullmatch(r"Qwen/Qwen3-([\d.]+[bB])(?:-Base)?", hub_id)
    if m:
        return QWEN3_PRESETS.get(m.group(1).lower())
    m = re.fullmatch(r"Qwen/Qwen2\.5-Math-([\d.]+[bB])(?:-Instruct)?", hub_id)
    if m:
        return QWEN2P5_MATH_PRESETS.get(m.group(1).lower())
    m = re.fullmatch(r"Qwen/Qwen2\.5-([\d.]+[bB])-Instruct", hub_id)
    if m:
        return QWEN2P5_INSTRUCT_PRESETS.get(m.group(1).lower())
    return None
