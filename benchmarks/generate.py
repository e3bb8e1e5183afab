"""Batched greedy decoding: jaxsuite.generate (one jit'd while-loop over the KV cache) against
transformers' `generate` (PyTorch CPU, static-free dynamic cache), same weights, same prompts.

  python benchmarks/generate.py                    # B=4, prompt 32, 64 new tokens, ~76M-parameter Qwen3
  python benchmarks/generate.py --batch 8 --new 128

Both decode exactly max_new tokens (no stop token), greedy; the script checks the token streams agree and
prints new tokens/s for each and the ratio jaxsuite / transformers (> 1 means jaxsuite is faster).
Compilation is excluded (one warm-up call each), as it is paid once per shape bucket.
"""
from __future__ import annotations

import argparse

import numpy as np

from lm_setup import build_models, machine, timeit


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import jax
    import torch

    import jaxsuite

    tmodel, jmodel, n_params = build_models()
    ids = np.random.default_rng(0).integers(0, tmodel.config.vocab_size, (args.batch, args.prompt))
    tids = torch.from_numpy(ids)

    def torch_generate():
        with torch.inference_mode():
            out = tmodel.generate(tids, attention_mask=torch.ones_like(tids), max_new_tokens=args.new,
                                  min_new_tokens=args.new, do_sample=False, eos_token_id=None, pad_token_id=0)
        return out[:, args.prompt:].numpy()

    def jax_generate():
        return jaxsuite.generate(jmodel, ids, args.new, stop_tokens=(), pad_token_id=0).tokens

    t_ref, j_ref = torch_generate(), jax_generate()
    agree = float(np.mean(t_ref == j_ref))
    t_torch = timeit(torch_generate, args.repeats)
    t_jax = timeit(jax_generate, args.repeats)
    new_tokens = args.batch * args.new
    print(f"machine: {machine()}; jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(f"model: Qwen3 {n_params / 1e6:.1f}M params, float32; batch {args.batch}, prompt {args.prompt}, "
          f"{args.new} new tokens, greedy; token agreement {agree:.3f}")
    print(f"transformers: {new_tokens / t_torch:8.1f} new tokens/s  ({t_torch:.2f} s)")
    print(f"jaxsuite:     {new_tokens / t_jax:8.1f} new tokens/s  ({t_jax:.2f} s)")
    print(f"ratio jaxsuite / transformers: {t_torch / t_jax:.2f}x")


if __name__ == "__main__":
    main()
