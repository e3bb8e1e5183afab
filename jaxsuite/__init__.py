"""jaxsuite: JAX/Flax reimplementations of recent Tsinghua/OpenBMB training systems.

Public API of the foundation:
  load_pretrained(source, dtype=...)  -> DecoderLM      (HF folder or hub id; Qwen3 / Qwen2 / Llama)
  save_pretrained(model, path)                          (a folder transformers loads)
  generate(model, input_ids, max_new_tokens, ...)       (the one jit-compiled decode loop)
  DecoderLM, DecoderConfig                              (the Flax NNX decoder and its architecture)

Note: the function `jaxsuite.generate` shadows the module of the same name as a package attribute; import
module-level names with `from jaxsuite.generate import GenerateOutput`.
"""
from jaxsuite.models import DecoderConfig, DecoderLM, KVCache, count_params
from jaxsuite.hf import load_pretrained, save_pretrained
from jaxsuite.generate import GenerateOutput, generate

__version__ = "0.1.0"
__all__ = ["DecoderConfig", "DecoderLM", "KVCache", "count_params", "load_pretrained", "save_pretrained",
           "generate", "GenerateOutput"]
