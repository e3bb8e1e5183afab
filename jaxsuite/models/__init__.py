"""jaxsuite's causal-LM family (Qwen3 / Qwen2 / Llama, HypeNet and linear-attention hybrids are one `CausalLM`),
its architecture configs, and the LM contract (`LanguageModel`)."""
from jaxsuite.models.config import DecoderConfig, count_params
from jaxsuite.models.context import KVCache, LayerContext
from jaxsuite.models.hypenet_config import HypeNetConfig
from jaxsuite.models.lm import CausalLM, LMConfig
from jaxsuite.models.mixer_specs import LMArchitecture, MixerSpec
from jaxsuite.models.protocol import LanguageModel

__all__ = ["CausalLM", "DecoderConfig", "HypeNetConfig", "KVCache", "LMArchitecture", "LMConfig", "LanguageModel",
           "LayerContext", "MixerSpec", "count_params"]
