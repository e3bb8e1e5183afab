"""Attention without [T, T] scores for the full forward on TPU: the splash-attention Pallas kernel JAX ships in
`jax.experimental.pallas.ops.tpu.splash_attention` (a flash-attention kernel that also skips fully masked
blocks). `attention.dot_product_attention` stays the reference and the CPU path.

Which implementation a model uses is its static `attention_impl` attribute (part of the graphdef, like `remat`;
the training loop sets it from `train.attention`), resolved per call by `choose_attention`:
  xla     attention.dot_product_attention: float32 [B, Kv, G, T, T] scores per layer (the reference)
  splash  the TPU kernel; needs T a multiple of 128 (its block size). Off TPU it runs in Pallas interpret mode,
          which is how the tests check it against the reference on CPU.
  auto    splash when the mesh's devices are TPUs and T divides into its blocks, else xla. The mesh decides, not
          the machine running the code, so a deviceless compile for a TPU target gets the TPU kernel.

Semantics match `dot_product_attention` with a causal (+ same segment) mask: queries are pre-scaled by
1/sqrt(Hd) (the kernel does not scale), padding tokens (segment 0) attend to earlier padding, and GQA maps
query head h to kv head h // (N / Kv) inside the kernel. Under a mesh the kernel runs in `shard_map` over the
batch and head axes the activations are sharded on (each device attends its own rows and heads).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from jaxsuite.core import sharding as shd

IMPLS = ("auto", "xla", "splash")
SPLASH_BLOCK = 128          # the kernel's default block along q and kv: the sequence must divide into it


def _mesh_platform() -> str:
    """The platform of the mesh in context (the compile target), or of the default backend without one."""
    context = shd.current_sharding()
    return context[0].devices.flat[0].platform if context else jax.default_backend()


def choose_attention(name: str, seq_len: int) -> str:
    """The implementation `name` means for a full forward over `seq_len` tokens, traced now: "auto" is splash when
    the mesh in context (or, without one, the default backend) is TPUs and seq_len divides into its blocks, else
    xla. The mesh decides, not the machine tracing, so a deviceless compile for a TPU target gets the kernel."""
    if name not in IMPLS:
        raise ValueError(f"attention_impl={name!r}: use one of {IMPLS}")
    if name == "splash" and seq_len % SPLASH_BLOCK:
        raise ValueError(f"splash attention needs a sequence length divisible by {SPLASH_BLOCK}, got {seq_len}; "
                         f"set train.attention='auto' or 'xla'")
    if name != "auto":
        return name
    return "splash" if _mesh_platform() == "tpu" and seq_len % SPLASH_BLOCK == 0 else "xla"


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
    one = functools.partial(_splash_one_shard, interpret=_mesh_platform() != "tpu")
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
