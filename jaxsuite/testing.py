"""Helpers for tests and benchmarks that build reference models in transformers (PyTorch).

Not imported by the library itself. torch is imported inside the functions, so importing this module is free.
"""
from __future__ import annotations


def randomize_torch_parameters(model, seed: int | None = None):
    """Gives every parameter of a transformers model a random value, in place, and returns the model.

    A freshly initialised HF model has unit norm weights and zero biases, which hides mistakes in how norms
    and biases are mapped; here norms are 1 + 0.2 N(0, 1), biases 0.1 N(0, 1) and every other weight
    0.05 N(0, 1), small enough that a few layers keep the logits in float32 comfort.
    """
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))
    return model
