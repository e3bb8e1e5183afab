"""Building a decoder for a job: from an HF checkpoint, or freshly initialised straight onto a mesh.

`init_model` never materialises the whole model on one device: it traces the constructor abstractly
(`nnx.eval_shape`), derives each parameter's NamedSharding from its logical axes, and runs the initialiser
under `jax.jit` with those out_shardings, so every device computes only its own shard (an 8B model on a pod
is built in place). On one CPU it is just a jit'd constructor.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsuite.core import sharding as shd
from jaxsuite.models.config import DecoderConfig
from jaxsuite.models.lm import CausalLM, LMConfig


def init_model(cfg: LMConfig, *, seed: int = 0, mesh: jax.sharding.Mesh | None = None,
               rules: shd.Rules | None = None, param_dtype: Any = jnp.float32) -> CausalLM:
    """A randomly initialised CausalLM for a DecoderConfig or HypeNetConfig, sharded over `mesh` by `rules`."""
    def build():
        return CausalLM(cfg, rngs=nnx.Rngs(seed), param_dtype=param_dtype)

    if mesh is None:
        return build()
    rules = shd.DEFAULT_RULES if rules is None else rules
    abstract = nnx.eval_shape(build)
    graphdef, abstract_state = nnx.split(abstract)
    shardings = shd.state_shardings(abstract_state, mesh, rules)

    # out_shardings must mirror the state's array leaves (one NamedSharding per Variable value).
    leaf_sh = jax.tree.leaves(shardings, is_leaf=lambda x: isinstance(x, jax.sharding.NamedSharding))
    structure = jax.tree.structure(abstract_state)
    init = jax.jit(lambda: nnx.split(build())[1], out_shardings=jax.tree.unflatten(structure, leaf_sh))
    return nnx.merge(graphdef, init())


def arch_from_config(arch: Mapping[str, Any]) -> DecoderConfig:
    """DecoderConfig from a config's `model.arch` block (HF config.json field names), unknown keys rejected."""
    arch = dict(arch)
    known = {f for f in DecoderConfig.__dataclass_fields__}
    unknown = sorted(set(arch) - known)
    if unknown:
        raise ValueError(f"unknown field(s) in model.arch: {unknown}; known fields: {sorted(known)}")
    if isinstance(arch.get("eos_token_id"), list):
        arch["eos_token_id"] = tuple(arch["eos_token_id"])
    if arch.get("rope_scaling") is not None and hasattr(arch["rope_scaling"], "items"):
        arch["rope_scaling"] = tuple(sorted(dict(arch["rope_scaling"]).items()))
    return DecoderConfig(**arch)
