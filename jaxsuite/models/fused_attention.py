"""Attention without [T, T] scores for the full forward: on TPU the splash-attention Pallas kernel JAX ships in
`jax.experimental.pallas.ops.tpu.splash_attention` (a flash-attention kernel that also skips fully masked
blocks), on NVIDIA GPUs cuDNN's fused flash attention through `jax.nn.dot_product_attention(implementation=
"cudnn")`. `attention.dot_product_attention` stays the reference and the CPU path.

Which implementation a model uses is its static `attention_impl` attribute (part of the graphdef, like `remat`;
the training loop sets it from `train.attention`), resolved per call by `choose_attention`:
  xla     attention.dot_product_attention: float32 [B, Kv, G, T, T] scores per layer (the reference)
  splash  the TPU kernel; needs T a multiple of 128 (its block size). Off TPU it runs in Pallas interpret mode,
          which is how the tests check it against the reference on CPU.
  cudnn   cuDNN's flash attention (GPU only; bfloat16 or float16 activations, head dim a multiple of 8 up to
          128). Packed rows (segment ids) pass a [B, 1, T, T] same-segment mask, which cuDNN adds as a bias.
  auto    splash when the mesh's devices are TPUs and T divides into its blocks; cudnn when they are GPUs and the
          compute dtype is half precision; else xla. The mesh decides, not the machine running the code, so a
          deviceless compile for a TPU or GPU target gets that target's kernel.

Semantics match `dot_product_attention` with a causal (+ same segment) mask: queries are pre-scaled by
1/sqrt(Hd) (the kernel does not scale), padding tokens (segment 0) attend to earlier padding, and GQA maps
query head h to kv head h // (N / Kv) inside the kernel. Under a mesh the splash kernel runs in `shard_map` over
the batch and head axes the activations are sharded on (each device attends its own rows and heads); the cuDNN
call partitions itself (jax gives it a custom partitioning over batch and heads).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from jaxsuite.core import sharding as shd

IMPLS = ("auto", "xla", "splash", "cudnn")
HALF = (jnp.bfloat16, jnp.float16)     # the dtypes cuDNN's flash attention takes
SPLASH_BLOCK = 128          # the kernel's default block along q and kv: the sequence must divide into it


def choose_attention(name: str, seq_len: int, dtype=jnp.float32) -> str:
    """The implementation `name` means for a full forward over `seq_len` tokens of `dtype` activations, traced
    now: "auto" is splash when the mesh in context (or, without one, the default backend) is TPUs and seq_len
    divides into its blocks, cudnn when it is GPUs and dtype is bfloat16 / float16, else xla. The mesh decides,
    not the machine tracing, so a deviceless compile for a TPU or GPU target gets that target's kernel."""
    if name not in IMPLS:
        raise ValueError(f"attention_impl={name!r}: use one of {IMPLS}")
    if name == "splash" and seq_len % SPLASH_BLOCK:
        raise ValueError(f"splash attention needs a sequence length divisible by {SPLASH_BLOCK}, got {seq_len}; "
                         f"set train.attention='auto' or 'xla'")
    platform = shd.mesh_platform()
    if name == "cudnn" and (platform != "gpu" or jnp.dtype(dtype) not in HALF):
        raise ValueError(f"cudnn attention needs a GPU mesh and bfloat16/float16 activations (here: {platform}, "
                         f"{jnp.dtype(dtype).name}); set train.attention='auto' or 'xla'")
    if name != "auto":
        return name
    if platform == "tpu" and seq_len % SPLASH_BLOCK == 0:
        return "splash"
    return "cudnn" if platform == "gpu" and jnp.dtype(dtype) in HALF else "xla"


def _splash_one_shard(q, k, v, segment_ids, *, interpret: bool):
    """q [B, N, T, Hd] (pre-scaled), k/v [B, Kv, T, Hd], segment_ids [B, T] or None -> [B, N, T, Hd], on one
    shard's rows and heads. The kernel is built here, for the local head count, from a static causal mask."""
    from jax.experimental.pallas.ops.tpu import splash_attention as splash

    _, n, t, _ = q.shape
    mask = splash.MultiHeadMask([splash.CausalMask((t, t)) for _ in range(n)])
    kernel = splash.make_splash_mha(mask, head_shards=1, q_seq_shards=1, interpret=interpret)
    if segment_ids is None:
        return jax.vmap(kernel)(q, k, v)
    ids = segment_ids.astype(jnp.int32)
    return jax.vmap(lambda q, k, v, s: kernel(q, k, v, segment_ids=splash.SegmentIds(q=s, kv=s)))(q, k, v, ids)


def splash_attention(q: jax.Array, k: jax.Array, v: jax.Array, segment_ids: jax.Array | None,
                     scale: float) -> jax.Array:
    """Causal GQA attention by the splash kernel: q [B, T, N, Hd], k/v [B, T, Kv, Hd], segment_ids [B, T]
    (0 = padding) or None -> [B, T, N, Hd], equal to `dot_product_attention` with the causal (+ segment) mask."""
    qh = jnp.swapaxes(q * jnp.asarray(scale, q.dtype), 1, 2)                 # [B, N, T, Hd]
    kh, vh = jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2)                    # [B, Kv, T, Hd]
    context = shd.current_sharding()
    one = functools.partial(_splash_one_shard, interpret=shd.mesh_platform() != "tpu")
    if context is None:
        out = one(qh, kh, vh, segment_ids)
    else:
        mesh, rules = context
        q_spec = shd.activation_spec(qh.shape, ("act_batch", "act_heads", None, None), mesh, rules)
        kv_spec = shd.activation_spec(kh.shape, ("act_batch", "act_kv_heads", None, None), mesh, rules)
        if q_spec[1] != kv_spec[1]:    # e.g. 2 KV heads over tensor=4: keep heads whole so each shard holds
            q_spec = PartitionSpec(q_spec[0], None, None, None)               # whole GQA groups
            kv_spec = PartitionSpec(kv_spec[0], None, None, None)
        if segment_ids is None:
            out = jax.shard_map(lambda q, k, v: one(q, k, v, None), mesh=mesh, check_vma=False,
                                in_specs=(q_spec, kv_spec, kv_spec), out_specs=q_spec)(qh, kh, vh)
        else:
            out = jax.shard_map(one, mesh=mesh, check_vma=False,
                                in_specs=(q_spec, kv_spec, kv_spec, PartitionSpec(q_spec[0], None)),
                                out_specs=q_spec)(qh, kh, vh, segment_ids)
    return jnp.swapaxes(out, 1, 2)                                            # [B, T, N, Hd]


def cudnn_attention(q: jax.Array, k: jax.Array, v: jax.Array, segment_ids: jax.Array | None,
                    scale: float) -> jax.Array:
    """Causal GQA attention by cuDNN's fused kernel: q [B, T, N, Hd], k/v [B, T, Kv, Hd] (bfloat16 / float16),
    segment_ids [B, T] (0 = padding) or None -> [B, T, N, Hd], equal to `dot_product_attention` with the causal
    (+ segment) mask. Only a GPU runs it; a CPU host can compile it for a GPU target (jaxsuite.core.aot)."""
    hd = q.shape[-1]
    if hd % 8 or hd > 128:
        raise ValueError(f"cudnn attention takes head dims that are multiples of 8 up to 128, got {hd}; "
                         f"set train.attention='xla'")
    mask = None
    if segment_ids is not None:
        mask = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]          # [B, 1, T, T]
    return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=scale, is_causal=True, implementation="cudnn")
