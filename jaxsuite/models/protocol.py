"""The LM contract: what `jaxsuite.generate`, the train step, the RL core and the wings rely on.

`CausalLM` implements it, and so does any wrapper that changes how an LM is driven without changing what it is
(`jaxsuite.latent.head.LatentReasoner`). Code that takes "a model" types it as `LanguageModel`, so a new wrapper
is checked against the contract (`isinstance(m, LanguageModel)` checks the method names at run time; a type checker
checks the signatures).
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax

from jaxsuite.models.context import KVCache


@runtime_checkable
class LanguageModel(Protocol):
    """A causal LM over token ids (or input embeddings)."""

    config: Any

    @property
    def dtype(self) -> Any:
        """The compute dtype (that of the parameters)."""

    def __call__(self, input_ids: jax.Array | None = None, *, positions: jax.Array | None = None,
                 segment_ids: jax.Array | None = None, inputs_embeds: jax.Array | None = None) -> jax.Array:
        """ids [B, T] (or inputs_embeds [B, T, D]) -> float32 logits [B, T, V]."""

    def hidden_states(self, input_ids: jax.Array | None = None, *, positions: jax.Array | None = None,
                      segment_ids: jax.Array | None = None, inputs_embeds: jax.Array | None = None) -> jax.Array:
        """Final-normed hidden states [B, T, D] for the same arguments as __call__."""

    def logits(self, hidden: jax.Array) -> jax.Array:
        """[B, T, D] -> float32 logits [B, T, V]."""

    def embed(self, input_ids: jax.Array) -> jax.Array:
        """Token ids [B, T] -> input embeddings [B, T, D]."""

    def init_cache(self, batch_size: int, max_length: int, dtype: Any = None) -> KVCache:
        """An empty decode cache for batch_size rows of up to max_length slots."""

    def decode(self, input_ids: jax.Array | None, positions: jax.Array, cache: KVCache, *,
               token_mask: jax.Array | None = None, inputs_embeds: jax.Array | None = None,
               return_hidden: bool = False, fresh: bool = False) -> tuple:
        """T new tokens against the cache -> (logits [B, T, V], new cache[, final-normed hidden [B, T, D]])."""
