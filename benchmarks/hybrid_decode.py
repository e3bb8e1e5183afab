"""Decode cost of HypeNet against its Qwen3 teacher (same width and depth) from 1K to 128K tokens of context.

  python benchmarks/hybrid_decode.py                               # 1K..128K, 8 steps, CPU
  python benchmarks/hybrid_decode.py --lengths 1024 8192 --steps 4 --out /tmp/d.png

Models (random init, float32, batch 1): teacher = Qwen3 with hidden 512, 8 layers, 8 heads / 4 KV heads,
head_dim 64, MLP 1536, vocab 32000, tied embeddings; student = `hypenet_config_from_teacher(teacher,
attention_layers=(2, 6))`: 2 of the 8 layers keep softmax attention (with an output gate), 6 become Lightning
attention with K/V expanded to all 8 heads and an output gate. Timing never prefills: the cache is filled
with random values to the context length (`jaxsuite.halo.evaluation.synthetic_cache`) and `jaxsuite.generate`
continues it for `--steps` greedy tokens (`--steps` single-token decode calls in one jitted loop, the cache
donated and updated in place); ms per token is the median of 3 repeats after a compile call.

Floor (bytes read per decode step; decoding one token at batch 1 is memory-bound):
  teacher parameters: embedding 32000 x 512 = 16.38M (tied: it is also the LM head, read every step);
    per layer q 512x512 + k, v 512x256 + o 512x512 = 0.79M, MLP 3 x 512 x 1536 = 2.36M, norms 1152
    -> 3.147M x 8 = 25.18M; total 41.56M params = 166 MB in float32.
  student parameters: attention layers + o_gate 512x512 -> 3.409M x 2; Lightning layers q, k, v, o, z all
    512x512 (K/V expanded) = 1.31M + MLP 2.36M + norms -> 3.672M x 6; total 45.23M = 181 MB.
  KV cache per context token: teacher 8 layers x 2 (k, v) x 4 heads x 64 x 4 B = 16 KiB; student 2 attention
    layers -> 4 KiB; the student's 6 Lightning states are 6 x 8 x 64 x 64 x 4 B = 768 KiB at any length.
  bytes per step at context L: teacher 166 MB + 16 KiB x L; student 182 MB + 4 KiB x L.
    L = 1K: 183 MB vs 186 MB (ratio 0.98: the student's larger weights dominate);
    L = 128K: 2.31 GB vs 0.72 GB (ratio 3.2); as L -> infinity the ratio -> layers / attention layers
    = 8 / 2 = 4 (every step reads the whole KV of every attention layer; the weights become negligible).
  At ~10-20 GB/s of memory bandwidth (a 2-core VM) the teacher's floor at 128K is ~115-230 ms per token.
Cache memory has the same ratio without the weights: 16 KiB x L vs 4 KiB x L + 768 KiB (-> 4x).
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_LENGTHS = [1024 * 2 ** i for i in range(8)]          # 1K .. 128K
ATTENTION_LAYERS = (2, 6)


def build(seed: int = 0):
    """(teacher, student) random models with the docstring's configuration."""
    from jaxsuite.halo.transfer import hypenet_config_from_teacher
    from jaxsuite.models.config import DecoderConfig
    from jaxsuite.models.factory import init_model

    tcfg = DecoderConfig(vocab_size=32000, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                         num_attention_heads=8, num_key_value_heads=4, head_dim=64,
                         max_position_embeddings=262144, tie_word_embeddings=True)
    scfg = hypenet_config_from_teacher(tcfg, ATTENTION_LAYERS)
    return init_model(tcfg, seed=seed), init_model(scfg, seed=seed + 1)


def param_bytes(model) -> int:
    import jax
    from flax import nnx
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=DEFAULT_LENGTHS)
    ap.add_argument("--steps", type=int, default=8, help="decode steps per timed call")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "hybrid_decode_cpu.png"))
    args = ap.parse_args()

    import jax

    from jaxsuite.halo.evaluation import cache_bytes, decode_ms_per_token, plot_decode

    teacher, student = build()
    models = {"Qwen3 teacher": teacher, f"HypeNet ({len(ATTENTION_LAYERS)}/8 attention)": student}
    weights = {name: param_bytes(m) for name, m in models.items()}
    print(f"# {machine()}; jax {jax.__version__} ({jax.default_backend()}); {datetime.date.today()}")
    print("# parameters: " + ", ".join(f"{n} {w / 4 / 1e6:.2f}M ({w / 1e6:.0f} MB)" for n, w in weights.items()))
    print(f"# batch 1, float32, {args.steps} decode steps per call, median of {args.repeats}")

    ms = {name: {} for name in models}
    mem = {name: {} for name in models}
    for length in args.lengths:
        for name, model in models.items():                  # interleaved, so load drift hits both alike
            mem[name][length] = cache_bytes(model, 1, length)
            ms[name][length] = decode_ms_per_token(model, [length], steps=args.steps, repeats=args.repeats)[length]
        t, s = (ms[n][length] for n in models)
        print(f"# {length}: teacher {t:.2f} ms, student {s:.2f} ms", flush=True)

    (tn, t_ms), (sn, s_ms) = ms.items()
    print("\n| context | teacher ms/token | HypeNet ms/token | time ratio | teacher GB/s | HypeNet GB/s "
          "| teacher cache MiB | HypeNet cache MiB | cache ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for length in args.lengths:
        gbs = [(weights[n] + mem[n][length]) / (ms[n][length] * 1e-3) / 1e9 for n in (tn, sn)]
        label = f"{length // 1024}K" if length % 1024 == 0 else str(length)
        print(f"| {label} | {t_ms[length]:.2f} | {s_ms[length]:.2f} | {t_ms[length] / s_ms[length]:.2f} "
              f"| {gbs[0]:.1f} | {gbs[1]:.1f} | {mem[tn][length] / 2**20:.1f} | {mem[sn][length] / 2**20:.1f} "
              f"| {mem[tn][length] / mem[sn][length]:.2f} |")
    print("\n(GB/s = (parameter bytes + cache bytes) / time per token: the bytes each step must read.)")
    print(f"plot: {plot_decode(ms, mem, args.out)}")
    if not all(math.isfinite(v) for d in ms.values() for v in d.values()):
        sys.exit("non-finite timing")


if __name__ == "__main__":
    main()
