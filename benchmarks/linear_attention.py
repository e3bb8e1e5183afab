"""Linear attention (kernels_pallas) against the token-by-token reference and causal softmax attention.

  python benchmarks/linear_attention.py                        # CPU: T = 1K..32K, B=1, H=8, K=V=64, float32
  python benchmarks/linear_attention.py --lengths 1024 4096    # a subset
  python benchmarks/linear_attention.py --gpu                  # GPU: T = 4K..64K, B=1, H=16, K=V=128, bf16

CPU mode times forward and forward+backward (grads of q, k, v, g) of ``simple_gla`` (and, with
``--ops``, ``gla`` / ``gated_delta_rule``) with implementation="xla" and "reference", and of
``jax.nn.dot_product_attention(..., is_causal=True)``; prints a markdown table and writes a log-log
plot (benchmarks/linear_attention_cpu.png). Sizes whose memory would exceed --mem-gb are skipped and
listed.

GPU mode times implementation="pallas" (the Triton kernels) and "xla", flash-linear-attention's Triton
kernels through PyTorch (``fla.ops``, if installed) and cuDNN flash attention
(``jax.nn.dot_product_attention(implementation="cudnn")``), in bf16, and reports ms, TFLOP/s and GB/s
under the FLOP / byte model below.

FLOP model (multiply-adds count 2; summed over heads; fwd+bwd counted as 3x fwd for linear attention
and 3.5x for softmax attention, FlashAttention's convention):
  linear attention, recurrent form     4 T K V                  (S update + readout per token)
  linear attention, chunked (chunk C)  2 T (C (K + V) + 2 K V)  (what the xla / Pallas paths execute)
  causal softmax attention             4 T^2 D full, 2 T^2 D causal (XLA computes the full square)
Bytes: the op's inputs and outputs once (q, k, v, g, o; fwd+bwd adds do, dq, dk, dv, dg).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def flops_linear_chunked(t, h, dk, dv, c):
    return 2 * t * h * (c * (dk + dv) + 2 * dk * dv)


def flops_linear_recurrent(t, h, dk, dv):
    return 4 * t * h * dk * dv


def flops_softmax(t, h, d, causal_only):
    return (2 if causal_only else 4) * t * t * h * d


def _timeit(fn, args, repeats):
    import jax
    jax.block_until_ready(fn(*args))                       # compile + warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return min(times)


def _problem(t, b, h, dk, dv, dtype, seed=0):
    import jax.numpy as jnp
    rng = np.random.default_rng(seed)
    q = jnp.asarray(rng.standard_normal((b, t, h, dk)) * dk ** -0.5, dtype)
    k = jnp.asarray(rng.standard_normal((b, t, h, dk)) * dk ** -0.5, dtype)
    v = jnp.asarray(rng.standard_normal((b, t, h, dv)), dtype)
    g = jnp.asarray(np.log(rng.uniform(0.9, 1.0, (b, t, h))), jnp.float32)
    g_k = jnp.asarray(np.log(rng.uniform(0.9, 1.0, (b, t, h, dk))), jnp.float32)
    beta = jnp.asarray(rng.uniform(0.1, 0.9, (b, t, h)), jnp.float32)
    return q, k, v, g, g_k, beta


def _linear_fns(op, implementation, chunk, interpret=False):
    """(forward, forward+backward) jitted closures over the op, taking (q, k, v, g, g_k, beta)."""
    import jax
    import jax.numpy as jnp
    import kernels_pallas as kp

    def fwd(q, k, v, g, g_k, beta):
        kw = dict(chunk_size=chunk, implementation=implementation, interpret=interpret)
        if op == "simple_gla":
            return kp.simple_gla(q, k, v, g=g, **kw)[0]
        if op == "gla":
            return kp.gla(q, k, v, g_k, **kw)[0]
        kn = k / jnp.linalg.norm(k.astype(jnp.float32), axis=-1, keepdims=True).astype(k.dtype)
        return kp.gated_delta_rule(q, kn, v, g, beta, **kw)[0]

    def loss(q, k, v, g, g_k, beta):
        return jnp.sum(fwd(q, k, v, g, g_k, beta).astype(jnp.float32))

    return jax.jit(fwd), jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4, 5)))


def _softmax_fns(implementation=None):
    import jax
    import jax.numpy as jnp

    def fwd(q, k, v, *_):
        return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=implementation)

    def loss(q, k, v, *_):
        return jnp.sum(fwd(q, k, v).astype(jnp.float32))

    return jax.jit(fwd), jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


# ---------------------------------------------------------------------------------------------------
# CPU
# ---------------------------------------------------------------------------------------------------

def run_cpu(args):
    import jax
    import jax.numpy as jnp

    b, h, dk, dv, c = 1, args.heads, args.head_dim, args.head_dim, args.chunk
    gb = 1024 ** 3
    # Peak-memory estimates (float32) used to skip sizes that cannot fit --mem-gb on this machine.
    mem = {
        "softmax fwd": lambda t: 2 * b * h * t * t * 4,               # logits + probabilities
        "softmax fwd+bwd": lambda t: 4 * b * h * t * t * 4,           # + saved probabilities and their grad
        "reference fwd": lambda t: 8 * b * h * t * (dk + dv) * 4,
        "reference fwd+bwd": lambda t: b * h * t * dk * dv * 4 * 2,   # the scan saves every state
    }
    rows, skipped = [], []
    methods = [(f"{op} xla", *_linear_fns(op, "xla", c)) for op in args.ops]
    methods += [("simple_gla reference", *_linear_fns("simple_gla", "reference", c)),
                ("softmax (jax.nn.dot_product_attention)", *_softmax_fns())]
    for t in args.lengths:
        problem = _problem(t, b, h, dk, dv, jnp.float32)
        for name, fwd, fb in methods:
            kind = "softmax" if name.startswith("softmax") else "reference" if "reference" in name else "xla"
            for mode, fn in (("fwd", fwd), ("fwd+bwd", fb)):
                key = f"{kind} {mode}"
                if key in mem and mem[key](t) > args.mem_gb * gb:
                    skipped.append(f"{name} {mode} at T={t}: ~{mem[key](t) / gb:.0f} GB > --mem-gb {args.mem_gb}")
                    continue
                if kind == "reference" and t > args.max_reference:
                    skipped.append(f"{name} {mode} at T={t}: a {t}-step sequential scan (> --max-reference)")
                    continue
                sec = _timeit(fn, problem, args.repeats)
                rows.append(dict(method=name, mode=mode, T=t, ms=sec * 1e3))
                print(f"T={t:6d} {name:40s} {mode:8s} {sec * 1e3:10.1f} ms", flush=True)
        del problem

    print()
    print(_cpu_table(rows, args))
    if skipped:
        print("\nSkipped:\n" + "\n".join("- " + s for s in skipped))
    if args.plot:
        _plot(rows, args.plot)
        print(f"\nplot: {args.plot}")
    print(f"\nmachine: {platform.machine()} {os.cpu_count()} CPUs, jax {jax.__version__}, "
          f"{datetime.date.today().isoformat()}")


def _cpu_table(rows, args):
    lengths = sorted({r["T"] for r in rows})
    keys = []
    for r in rows:
        if (r["method"], r["mode"]) not in keys:
            keys.append((r["method"], r["mode"]))
    lookup = {(r["method"], r["mode"], r["T"]): r["ms"] for r in rows}
    head = "| method | pass | " + " | ".join(f"T={t // 1024}K" for t in lengths) + " |"
    sep = "|---|---|" + "---:|" * len(lengths)
    lines = [head, sep]
    for method, mode in keys:
        cells = [f"{lookup[(method, mode, t)]:.0f}" if (method, mode, t) in lookup else "skip" for t in lengths]
        lines.append(f"| {method} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot(rows, path):
    """Two log-log panels (forward, forward+backward); gray guides show slopes 1 (∝ T) and 2 (∝ T²)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in rows))
    colors = {m: f"C{i}" for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for ax, mode in zip(axes, ("fwd", "fwd+bwd")):
        for method in methods:
            pts = sorted((r["T"], r["ms"]) for r in rows if r["method"] == method and r["mode"] == mode)
            if pts:
                ax.plot(*zip(*pts), marker="o", color=colors[method], label=method)
        lengths = np.array(sorted({r["T"] for r in rows}), float)
        for slope, style, label in ((1, ":", "∝ T"), (2, "-.", "∝ T²")):
            anchor = next((r["ms"] for r in rows if r["mode"] == mode and r["T"] == lengths[0]
                           and ((slope == 2) == r["method"].startswith("softmax"))), None)
            if anchor is not None:
                ax.plot(lengths, anchor * (lengths / lengths[0]) ** slope, style, color="gray", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_title(f"{mode}: B=1, H=8, K=V=64, float32, 2-core CPU")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms per call (min of repeats)")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle("Chunked linear attention (xla) grows linearly in T; softmax attention quadratically")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------------------------------------------
# GPU
# ---------------------------------------------------------------------------------------------------

def run_gpu(args):
    import jax
    import jax.numpy as jnp

    if jax.default_backend() != "gpu":
        raise SystemExit(f"--gpu needs a GPU backend; this one is {jax.default_backend()!r}")
    b, h, d, c = 1, args.heads, args.head_dim, args.chunk
    lengths = args.lengths
    print(f"device: {jax.devices()[0].device_kind}; B={b} H={h} K=V={d} bf16 chunk={c}")
    print("| method | pass | T | ms | TFLOP/s | GB/s |")
    print("|---|---|---:|---:|---:|---:|")
    for t in lengths:
        problem = _problem(t, b, h, d, d, jnp.bfloat16)
        io_bytes = b * t * h * (3 * d + 1 + d) * 2
        for op in args.ops:
            for impl in ("pallas", "xla"):
                fwd, fb = _linear_fns(op, impl, c)
                for mode, fn, mult in (("fwd", fwd, 1), ("fwd+bwd", fb, 3)):
                    sec = _timeit(fn, problem, args.repeats)
                    fl = flops_linear_chunked(t, h, d, d, c) * b * mult
                    print(f"| {op} {impl} | {mode} | {t} | {sec * 1e3:.2f} | {fl / sec / 1e12:.1f} | "
                          f"{io_bytes * (2 if mult > 1 else 1) / sec / 1e9:.0f} |", flush=True)
            _fla_rows(op, t, b, h, d, c, args.repeats, io_bytes)
        fwd, fb = _softmax_fns("cudnn")
        for mode, fn, mult in (("fwd", fwd, 1), ("fwd+bwd", fb, 3.5)):
            sec = _timeit(fn, problem, args.repeats)
            fl = flops_softmax(t, h, d, causal_only=True) * b * mult
            print(f"| cudnn flash attention (causal) | {mode} | {t} | {sec * 1e3:.2f} | {fl / sec / 1e12:.1f} | "
                  f"{io_bytes * (2 if mult > 1 else 1) / sec / 1e9:.0f} |", flush=True)


def _fla_rows(op, t, b, h, d, c, repeats, io_bytes):
    """flash-linear-attention's Triton kernels through PyTorch, when torch has CUDA and fla is installed."""
    try:
        import torch
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
        from fla.ops.gla import chunk_gla
        from fla.ops.simple_gla import chunk_simple_gla
    except ImportError as e:
        print(f"| fla {op} | - | {t} | not run: {e} | | |")
        return
    if not torch.cuda.is_available():
        print(f"| fla {op} | - | {t} | not run: torch has no CUDA | | |")
        return
    dev, dt = "cuda", torch.bfloat16
    q, k = (torch.randn(b, t, h, d, device=dev, dtype=dt) * d ** -0.5 for _ in range(2))
    v = torch.randn(b, t, h, d, device=dev, dtype=dt)
    g = torch.log(torch.rand(b, t, h, device=dev) * 0.1 + 0.9)
    leaves = [q, k, v, g]
    if op == "simple_gla":
        call = lambda: chunk_simple_gla(q, k, v, g=g)[0]
    elif op == "gla":
        gk = torch.log(torch.rand(b, t, h, d, device=dev) * 0.1 + 0.9)
        leaves.append(gk)
        call = lambda: chunk_gla(q, k, v, gk)[0]
    else:
        k = torch.nn.functional.normalize(k.float(), dim=-1).to(dt)
        beta = torch.rand(b, t, h, device=dev)
        leaves += [k, beta]
        call = lambda: chunk_gated_delta_rule(q, k, v, g, beta)[0]
    for x in leaves:
        x.requires_grad_(True)

    def timed(fn):
        fn()
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3)
        return best

    for mode, fn, mult in (("fwd", lambda: call(), 1), ("fwd+bwd", lambda: call().float().sum().backward(), 3)):
        sec = timed(fn)
        fl = flops_linear_chunked(t, h, d, d, c) * b * mult
        print(f"| fla {op} (Triton, PyTorch) | {mode} | {t} | {sec * 1e3:.2f} | {fl / sec / 1e12:.1f} | "
              f"{io_bytes * (2 if mult > 1 else 1) / sec / 1e9:.0f} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="run the GPU benchmark (H200 setup) instead of CPU")
    ap.add_argument("--lengths", type=int, nargs="+", default=None)
    ap.add_argument("--ops", nargs="+", default=None, choices=["simple_gla", "gla", "gated_delta_rule"])
    ap.add_argument("--heads", type=int, default=None)
    ap.add_argument("--head-dim", type=int, default=None)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mem-gb", type=float, default=6.0, help="CPU: skip sizes estimated above this")
    ap.add_argument("--max-reference", type=int, default=32768, help="CPU: longest reference run")
    ap.add_argument("--plot", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "linear_attention_cpu.png"))
    args = ap.parse_args()
    if args.gpu:
        args.lengths = args.lengths or [4096, 8192, 16384, 32768, 65536]
        args.ops = args.ops or ["simple_gla", "gla", "gated_delta_rule"]
        args.heads, args.head_dim = args.heads or 16, args.head_dim or 128
        run_gpu(args)
    else:
        args.lengths = args.lengths or [1024, 2048, 4096, 8192, 16384, 32768]
        args.ops = args.ops or ["simple_gla"]
        args.heads, args.head_dim = args.heads or 8, args.head_dim or 64
        run_cpu(args)


if __name__ == "__main__":
    main()
