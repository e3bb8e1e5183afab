"""Randomness that exists only while training: the step's dropout key, handed to the layers that ask for it.

A jitted train step is pure, so a layer cannot keep a random stream of its own across steps. Instead the step
enters `training_key(key)` around its forward pass, with a key folded from a seed, the step number and the
micro-batch index; a stochastic layer (LoRA dropout) asks `layer_key(salt)` for its own key, folded with a
salt fixed when the layer was built. Outside a train step (evaluation, scoring, generation) there is no key and
every layer is deterministic. Rematerialisation replays the same key, so the backward pass sees the masks the
forward pass drew.
"""
from __future__ import annotations

import contextlib
import contextvars

import jax

_KEY: contextvars.ContextVar[jax.Array | None] = contextvars.ContextVar("jaxsuite_training_key", default=None)


@contextlib.contextmanager
def training_key(key: jax.Array | None):
    """Within this context (around the tracing of a train step's forward pass), `layer_key` returns keys."""
    token = _KEY.set(key)
    try:
        yield
    finally:
        _KEY.reset(token)


def layer_key(salt: int) -> jax.Array | None:
    """The current training key folded with `salt`, or None outside training (then a layer is deterministic)."""
    key = _KEY.get()
    return None if key is None else jax.random.fold_in(key, salt)


def step_key(seed: int, step: jax.Array, micro_batch: jax.Array | int = 0) -> jax.Array:
    """The key of one micro-batch of one optimizer step: the same on every process and for every device count."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), step), micro_batch)
