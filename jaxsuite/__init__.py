"""jaxsuite: JAX/Flax reimplementations of recent Tsinghua/OpenBMB training systems.

Public API of the foundation:
  load_pretrained(source, dtype=...)  -> CausalLM      (HF folder or hub id; Qwen3 / Qwen2 / Llama)
  save_pretrained(model, path)                          (a folder transformers loads)
  generate(model, input_ids, max_new_tokens, ...)       (the one jit-compiled decode loop)
  CausalLM, DecoderConfig                              (the Flax NNX decoder and its architecture)

These names are imported on first use, not when the package is imported: `import jaxsuite.core` runs this
file first, and the core must not pull in the model zoo (a floor, checked by tests/test_import_contracts.py).

Note: the function `jaxsuite.generate` shadows the module of the same name as a package attribute; import
module-level names with `from jaxsuite.generate import GenerateOutput`.
"""
import importlib
import sys
import types

__version__ = "0.1.0"

# public name -> the module that defines it, imported when the name is first read
_LAZY_NAMES = {
    "DecoderConfig": "jaxsuite.models",
    "CausalLM": "jaxsuite.models",
    "KVCache": "jaxsuite.models",
    "count_params": "jaxsuite.models",
    "load_pretrained": "jaxsuite.hf",
    "save_pretrained": "jaxsuite.hf",
    "GenerateOutput": "jaxsuite.generate",
}
__all__ = [*_LAZY_NAMES, "generate"]


def __getattr__(name: str):
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
        globals()[name] = value   # later reads skip this function
        return value
    raise AttributeError(f"module 'jaxsuite' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """jaxsuite's module type: `jaxsuite.generate` is always the function, never the submodule.

    Importing a submodule binds it as an attribute of its package (import jaxsuite.generate sets
    jaxsuite.generate = <module>). The eager import this file used to make rebound the name to the function
    afterwards; lazily, the submodule may be first imported by anyone (the RL core, a notebook), so the
    public name is a property, which wins over the instance attribute the import machinery writes."""

    @property
    def generate(self):
        from jaxsuite.generate import generate
        return generate

    @generate.setter
    def generate(self, submodule) -> None:
        pass   # the import system binding the submodule; sys.modules["jaxsuite.generate"] still holds it


sys.modules[__name__].__class__ = _Package
