"""Decoder language models (Qwen3 / Qwen2 / Llama), HypeNet, and their shared layers."""
from jaxsuite.models.attention import KVCache
from jaxsuite.models.config import DecoderConfig, count_params
from jaxsuite.models.decoder import DecoderLM
from jaxsuite.models.hypenet import HypeNetLM
from jaxsuite.models.hypenet_config import HypeNetConfig

__all__ = ["DecoderConfig", "DecoderLM", "HypeNetConfig", "HypeNetLM", "KVCache", "count_params"]
