"""Architectures of the released Qwen3 dense models, as their config.json files give them.

Published parameter counts (Qwen3 technical report / model cards) are what `count_params` must reproduce;
tests check it with `jax.eval_shape`, so nothing is allocated.
"""
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
