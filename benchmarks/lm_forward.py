"""Forward-pass throughput: jaxsuite (jit, XLA CPU) against transformers (PyTorch CPU), same weights.

  python benchmarks/lm_forward.py                  # B=2, T=256, ~76M-parameter Qwen3, float32
  python benchmarks/lm_forward.py --batch 4 --length 512

Prints tokens/s for both and the ratio jaxsuite / transformers (> 1 means jaxsuite is faster), and checks
that the two produce the same logits, so the comparison is between equal computations.
"""
from __future__ import annotations

import argparse

import numpy as np

from lm_setup import build_models, machine, timeit


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    tmodel, jmodel, n_params = build_models()
    ids = np.random.default_rng(0).integers(0, tmodel.config.vocab_size, (args.batch, args.length))
    tokens = args.batch * args.length

    tids = torch.from_numpy(ids)

    def torch_forward():
        with torch.inference_mode():
            return tmodel(tids).logits

    graphdef, state = nnx.split(jmodel)

    @jax.jit
    def jax_forward(state, ids):
        return nnx.merge(graphdef, state)(ids)

    jids = jnp.asarray(ids, jnp.int32)
    ref = torch_forward().numpy()
    out = np.asarray(jax_forward(state, jids))
    max_diff = float(np.max(np.abs(ref - out)))

    t_torch = timeit(torch_forward, args.repeats)
    t_jax = timeit(lambda: jax_forward(state, jids).block_until_ready(), args.repeats)
    print(f"machine: {machine()}; jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(f"model: Qwen3 {n_params / 1e6:.1f}M params, float32; batch {args.batch} x length {args.length}; "
          f"logits max |diff| {max_diff:.2e}")
    print(f"transformers: {tokens / t_torch:10.1f} tokens/s  ({t_torch * 1e3:.1f} ms / forward)")
    print(f"jaxsuite:     {tokens / t_jax:10.1f} tokens/s  ({t_jax * 1e3:.1f} ms / forward)")
    print(f"ratio jaxsuite / transformers: {t_torch / t_jax:.2f}x")


if __name__ == "__main__":
    main()
