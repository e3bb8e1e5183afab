"""Shared set-up for the LM benchmarks: one ~76M-parameter Qwen3 built in transformers (PyTorch, CPU),
saved to a temporary folder and loaded into jaxsuite, so both sides run the same weights.

Floor (write it down before optimising). Forward FLOPs ~ 2 * N_params * tokens (+ attention 4 * L * T^2 * d
per sequence, small here). For B=2, T=256: 2 * 76e6 * 512 = 78 GFLOP. A 2-core AVX2/AVX-512 CPU sustains
roughly 50-150 GFLOP/s in f32 GEMM, so the floor is ~0.5-1.5 s per forward; both frameworks are GEMM-bound.
Decoding one token for B rows reads every weight once: 76e6 * 4 bytes = 304 MB per step, so at ~10-20 GB/s
memory bandwidth the floor is ~15-30 ms per decode step, whatever the batch size (up to compute limits).
"""
from __future__ import annotations

import os
import tempfile
import time

BENCH_ARCH = dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=8,
                  num_attention_heads=12, num_key_value_heads=4, head_dim=64, rms_norm_eps=1e-6,
                  rope_theta=1_000_000.0, max_position_embeddings=4096, tie_word_embeddings=True)


def build_models(seed: int = 0, threads: int | None = None):
    """Returns (torch_model, jax_model, n_params): identical weights, float32, eval mode."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    import jaxsuite

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    cfg = Qwen3Config(**BENCH_ARCH, attn_implementation="sdpa")
    tmodel = Qwen3ForCausalLM(cfg).eval()
    with tempfile.TemporaryDirectory() as tmp:
        tmodel.save_pretrained(tmp)
        jmodel = jaxsuite.load_pretrained(tmp)
    n_params = sum(p.numel() for p in tmodel.parameters())
    return tmodel, jmodel, n_params


def timeit(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of fn() in seconds (fn must block until its result is ready)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def machine() -> str:
    import platform
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
