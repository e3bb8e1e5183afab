"""Batched greedy decoding: jaxsuite.generate (one jit'd while-loop over the KV cache) against
transformers' `generate` (PyTorch CPU, static-free dynamic cache), same weights, same prompts.

  python benchmarks/generate.py                    # B=4, prompt 32, 64 new tokens, ~76M-parameter Qwen3
  python benchmarks/generate.py --batch 8 --new 128

Both decode exactly max_new tokens (no stop token), greedy; the script checks the token streams agree and
prints new tokens/s for each and the ratio jaxsuite / transformers (> 1 means jaxsuite is faster).
Compilation is excluded (one warm-up call each), as it is paid once per shape bucket.

The floor is printed beside them. Each decode step must read every weight once (~300 MB in float32).
  * Bandwidth floor: a plain jitted read of those bytes.
  * XLA matmul floor: one jitted loop of `--new` steps. Each step does only the model's weight matmuls at
    batch B (q, k, v, o and the three MLP matmuls per layer, then the tied head and an argmax feeding the
    next step's input). It has no attention, norms or cache, so no decode on XLA can beat it on this machine.
"""
from __future__ import annotations

import argparse

import numpy as np

from lm_setup import BENCH_ARCH, build_models, machine, timeit


def matmul_floor_seconds(batch: int, steps: int, repeats: int) -> tuple[float, int]:
    """(seconds for `steps` weight-only decode steps at `batch`, weight bytes): random float32 weights shaped
    like BENCH_ARCH, every matmul a decode step does and nothing else, in one jitted fori_loop."""
    import jax
    import jax.numpy as jnp

    a = BENCH_ARCH
    d, f, v = a["hidden_size"], a["intermediate_size"], a["vocab_size"]
    q_width, kv_width = a["num_attention_heads"] * a["head_dim"], a["num_key_value_heads"] * a["head_dim"]
    rng = np.random.default_rng(0)

    def weight(*shape):
        return jnp.asarray(rng.standard_normal(shape, dtype=np.float32) * 0.02)

    layers = [dict(q=weight(d, q_width), k=weight(d, kv_width), v=weight(d, kv_width), o=weight(q_width, d),
                   gate=weight(d, f), up=weight(d, f), down=weight(f, d)) for _ in range(a["num_hidden_layers"])]
    embedding = weight(v, d)

    def step(_, x):                                           # x [B, D] -> the next token's embedding [B, D]
        for w in layers:
            kv = x @ w["k"] + x @ w["v"]                                             # [B, Kv * Hd]
            attn = (x @ w["q"]).at[:, :kv_width].add(kv)                            # [B, N * Hd]
            x = x + attn @ w["o"]
            x = x + (jax.nn.silu(x @ w["gate"]) * (x @ w["up"])) @ w["down"]
        logits = jnp.einsum("bd,vd->bv", x, embedding)                              # [B, V]
        return embedding[jnp.argmax(logits, axis=-1)]

    loop = jax.jit(lambda x: jax.lax.fori_loop(0, steps, step, x))
    x0 = weight(batch, d)
    seconds = timeit(lambda: jax.block_until_ready(loop(x0)), repeats)
    return seconds, sum(w.nbytes for w in jax.tree.leaves((layers, embedding)))


def read_seconds(nbytes: int, repeats: int) -> float:
    """Median seconds of a plain jitted full read (a sum) of nbytes of float32."""
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(np.random.default_rng(1).standard_normal(nbytes // 4, dtype=np.float32))
    total = jax.jit(jnp.sum)
    return timeit(lambda: jax.block_until_ready(total(x)), max(repeats, 10))


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

    t_floor, weight_bytes = matmul_floor_seconds(args.batch, args.new, args.repeats)
    t_read = read_seconds(weight_bytes, args.repeats)
    print(f"floor, per decode step ({weight_bytes / 1e6:.0f} MB of weights): plain read {t_read * 1e3:.1f} ms "
          f"({weight_bytes / t_read / 1e9:.1f} GB/s); XLA weight matmuls alone at batch {args.batch} "
          f"{t_floor / args.new * 1e3:.1f} ms ({weight_bytes / (t_floor / args.new) / 1e9:.1f} GB/s)")
    print(f"jaxsuite per step (prefill included): {t_jax / args.new * 1e3:.1f} ms = "
          f"{t_jax / t_floor:.2f}x the XLA matmul floor; transformers {t_torch / args.new * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
