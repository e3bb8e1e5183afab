"""Tiny random transformers checkpoints (Qwen3 / Qwen2 / Llama), built once per session and saved locally.

Shapes are deliberately awkward: head_dim 32 != hidden 64 / 4 heads, and 2 KV heads (GQA). Every parameter,
including norms and biases, is randomised, so a swapped or mis-transposed tensor cannot hide behind an identity
initialisation.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-6, max_position_embeddings=128)

LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}

# name -> (transformers config class name, extra config kwargs)
SPECS = {
    "qwen3_tied": ("Qwen3Config", dict(tie_word_embeddings=True, rope_theta=1e6)),
    "qwen3_untied": ("Qwen3Config", dict(tie_word_embeddings=False, rope_theta=1e6)),
    "qwen2_bias": ("Qwen2Config", dict(tie_word_embeddings=False, rope_theta=1e6)),
    "llama": ("LlamaConfig", dict(tie_word_embeddings=False, rope_theta=10000.0)),
    "llama_rope3": ("LlamaConfig", dict(tie_word_embeddings=False, rope_parameters=LLAMA3_ROPE)),
    # dynamic NTK only acts beyond max_position_embeddings: 8 < the 12-token test sequences
    "llama_dynamic": ("LlamaConfig", dict(tie_word_embeddings=True, max_position_embeddings=8,
                                          rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0,
                                                           "factor": 2.0})),
}


def build_hf_model(name: str, seed: int = 0):
    """A transformers CausalLM in float32 eval mode with every parameter randomised."""
    import torch
    import transformers

    cls_name, extra = SPECS[name]
    kwargs = {**TINY, **extra}
    if "rope_parameters" in kwargs:
        kwargs.pop("rope_theta", None)
    config = getattr(transformers, cls_name)(**kwargs, attn_implementation="eager")
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight") or "layernorm" in pname:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif pname.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))
    return model.eval()


class Checkpoints:
    """Lazily builds and saves each named checkpoint once; returns (folder, torch model)."""

    def __init__(self, root):
        self.root = root
        self._made: dict[str, tuple[str, object]] = {}

    def __call__(self, name: str, **save_kwargs):
        key = name + "".join(f"-{k}={v}" for k, v in sorted(save_kwargs.items()))
        if key not in self._made:
            model = build_hf_model(name)
            folder = os.path.join(self.root, key)
            to_save = model
            if "dtype" in save_kwargs:
                import copy
                to_save = copy.deepcopy(model).to(save_kwargs.pop("dtype"))
            to_save.save_pretrained(folder, **save_kwargs)
            self._made[key] = (folder, model)
        return self._made[key]


@pytest.fixture(scope="session")
def hf_checkpoints(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return Checkpoints(str(tmp_path_factory.mktemp("hf_ckpts")))


@pytest.fixture(scope="session")
def token_ids():
    return np.random.default_rng(0).integers(0, 256, size=(2, 12)).astype(np.int32)
