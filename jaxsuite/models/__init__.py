"""Decoder language models (Qwen3 / Qwen2 / Llama) and their shared layers."""
from jaxsuite.models.attention import KVCache
from jaxsuite.models.config import DecoderConfig, count_params
from jaxsuite.models.decoder import DecoderLM

__all__ = ["DecoderConfig", "DecoderLM", "KVCache", "count_params"]
