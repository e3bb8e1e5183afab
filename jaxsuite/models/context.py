"""What the layer loop hands every mixer, and the decode cache the LM threads through `decode`.

`LayerContext` is built once per forward / decode call by the LM and shared by all layers: positions, the rotary
tables each head size needs, the attention mask, the packing ids, and for decode the cache bookkeeping. Mixers
read what they need from it, so one layer loop serves softmax attention and every linear mixer alike.

`KVCache` holds one entry per layer, owned by that layer's mixer (attention: keys and values; linear mixers: their
recurrent state), plus the bookkeeping shared by all layers (next slot, which slots hold real tokens).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
from flax import struct


@dataclasses.dataclass
class LayerContext:
    """Inputs shared by every layer of one call (a Python record, built inside the traced function).

    positions:   [B, T] int32 position ids of this call's tokens.
    ropes:       head_dim -> (cos, sin) [B, T, head_dim] in the compute dtype, for every head size that rotates.
    mask:        full forward: [B, T, T] bool (causal and same-segment); decode: the pair (valid slots written
                 before this call [B, T, S], this call's tokens causally among themselves [B, T, T]).
    segment_ids: [B, T] packing ids (0 = padding) or None; linear mixers reset their state at segment starts.
    Decode only: index (int32 scalar, first slot written), valid ([B, S] bool after this call's tokens were
    marked), token_mask ([B, T] bool, False for left-padding that must not touch any state), fresh (static: the
    cache held nothing before this call, a first prefill, so attention covers this call's T tokens only instead
    of all S slots).
    """
    positions: jax.Array
    ropes: dict[int, tuple[jax.Array, jax.Array]]
    mask: jax.Array | tuple[jax.Array, jax.Array]
    segment_ids: jax.Array | None = None
    index: jax.Array | None = None
    valid: jax.Array | None = None
    token_mask: jax.Array | None = None
    attention_impl: str = "xla"       # full forward: "xla", "splash" or "cudnn" (jaxsuite.models.fused_attention)
    fresh: bool = False

    @property
    def decoding(self) -> bool:
        return self.index is not None

    def rope(self, head_dim: int) -> tuple[jax.Array, jax.Array]:
        return self.ropes[head_dim]


@struct.dataclass
class KVCache:
    """The decode state of a whole LM.

    layers: one dict per layer, in the layout its mixer defines: softmax attention {"k", "v"} [B, Kv, S, Hd]
            (keys after RoPE; heads-major so single-query decode reads each head's keys contiguously), linear
            mixers {"state": [B, H, K, V] float32}.
    index:  int32 scalar, the first slot the next `decode` call writes.
    valid:  bool [B, S], True where a slot holds a real (non-pad) token.
    """
    layers: tuple[dict[str, Any], ...]
    index: jax.Array
    valid: jax.Array

    @property
    def max_length(self) -> int:
        return self.valid.shape[1]
