"""Device mesh and logical-axis sharding.

Models never name mesh axes. Every parameter carries a tuple of *logical* axis names in its NNX metadata
(`nnx.Param(value, logical_axes=("embed", "mlp"))`) and activations are annotated with
`constrain(x, ("act_batch", "act_length", "act_embed"))`. A config holds the *rules* that map logical
names to mesh axes, so one model runs data-parallel on a laptop, FSDP x tensor-parallel on a pod, or
unsharded on one CPU without a code change.

We keep our own metadata key (`logical_axes`) instead of flax's `sharding_names` on purpose: flax >= 0.12
shards annotated variables eagerly at construction, which needs a mesh in scope. Ours is inert metadata
that this module resolves only when a step is compiled.

Conventions
  parameter axes:  vocab, embed, mlp, q_heads, kv_heads, head_dim, norm
  activation axes: act_batch, act_length, act_embed, act_heads, act_kv_heads, act_mlp, act_vocab
  mesh axes:       data, fsdp, tensor  (sizes from the config; -1 takes the remaining devices)
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any, Iterable, Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

LogicalAxes = tuple[str | None, ...]
# A rule maps one logical name to a mesh axis, a tuple of mesh axes, or None (replicated).
Rules = Sequence[tuple[str, str | Sequence[str] | None]]

MESH_AXES = ("data", "fsdp", "tensor")

# Sensible defaults: batch over data x fsdp; parameters' embed dimension over fsdp (ZeRO-3 style);
# heads, mlp and vocab over tensor (Megatron style). Activations' embed stays unsharded.
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("act_batch", ("data", "fsdp")),
    ("act_length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("norm", None),
)


def make_mesh(axis_sizes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds a mesh with the named axes in order; one size may be -1 and takes the remaining devices.

    >>> make_mesh({"data": -1, "fsdp": 2, "tensor": 2})   # on 8 devices: data=2
    """
    devices = list(jax.devices() if devices is None else devices)
    names = tuple(axis_sizes)
    sizes = [int(axis_sizes[n]) for n in names]
    unknown = [n for n in names if n not in MESH_AXES]
    if unknown:
        raise ValueError(f"unknown mesh axis {unknown}; mesh axes are {MESH_AXES}")
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {dict(zip(names, sizes))}")
    if any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"mesh axis sizes must be positive or -1, got {dict(zip(names, sizes))}")
    known = math.prod(s for s in sizes if s != -1)
    n = len(devices)
    if -1 in sizes:
        if n % known:
            raise ValueError(f"{n} devices cannot be split by the fixed mesh axes {dict(zip(names, sizes))} "
                             f"(product {known}): {_mesh_fix(names, sizes, n)}")
        sizes[sizes.index(-1)] = n // known
    if math.prod(sizes) != n:
        raise ValueError(f"mesh {dict(zip(names, sizes))} needs {math.prod(sizes)} devices, but {n} are "
                         f"available: {_mesh_fix(names, sizes, n)}")
    # mesh_utils orders devices so that the innermost (tensor) axis is on the fastest interconnect.
    try:
        from jax.experimental import mesh_utils
        grid = mesh_utils.create_device_mesh(sizes, devices=devices)
    except Exception:  # exotic topologies (e.g. forced CPU devices across processes): plain order
        grid = np.asarray(devices).reshape(sizes)
    return Mesh(grid, names)


def _mesh_fix(names: Sequence[str], sizes: Sequence[int], n_devices: int) -> str:
    """A mesh setting that fits `n_devices`, as config overrides: the first axis takes the remaining devices
    (-1) and every other axis keeps the largest size <= its own that still divides what is left."""
    left = n_devices
    advice = [f"--config.mesh.{names[0]}=-1"] if names else []
    for axis, size in list(zip(names, sizes))[1:]:
        fits = max(d for d in range(1, left + 1) if left % d == 0 and d <= max(size, 1))
        left //= fits
        advice.append(f"--config.mesh.{axis}={fits}")
    return "e.g. " + " ".join(advice)


def logical_to_spec(logical_axes: Iterable[str | None] | None, rules: Rules,
                    mesh: Mesh | None = None) -> PartitionSpec:
    """Maps logical axis names to a PartitionSpec. Unknown names and None are replicated.

    A mesh axis is used at most once per array (the first dimension that asks for it wins), and mesh axes
    the mesh does not have are dropped, so one rule set serves meshes with fewer axes.
    """
    if logical_axes is None:
        return PartitionSpec()
    table = dict(rules)
    used: set[str] = set()
    out = []
    for name in logical_axes:
        target = table.get(name) if name is not None else None
        if target is None:
            out.append(None)
            continue
        axes = (target,) if isinstance(target, str) else tuple(target)
        axes = tuple(a for a in axes if a not in used and (mesh is None or a in mesh.axis_names))
        used.update(axes)
        out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*out)


def _fits(shape: Sequence[int], spec: PartitionSpec, mesh: Mesh) -> PartitionSpec:
    """Drops sharding on dimensions the mesh axes do not divide (e.g. 2 KV heads over tensor=4)."""
    out = []
    for dim, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        axes = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
        size = math.prod(mesh.shape[a] for a in axes) if axes else 1
        out.append(entry if dim % size == 0 else None)
    return PartitionSpec(*out)


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def logical_axes_of(state: Any) -> Any:
    """The pytree of logical-axes tuples (None where a variable carries none) for an NNX state."""
    return jax.tree.map(lambda v: v.get_metadata().get("logical_axes") if _is_variable(v) else None,
                        state, is_leaf=_is_variable)


def state_shardings(state: Any, mesh: Mesh, rules: Rules) -> Any:
    """NamedShardings for every leaf of an NNX state (or any pytree of Variables / arrays).

    Variables without `logical_axes` and plain arrays are replicated.
    """
    def one(leaf):
        if _is_variable(leaf):
            axes = leaf.get_metadata().get("logical_axes")
            shape = np.shape(leaf.get_value())
        else:
            axes, shape = None, np.shape(leaf)
        spec = _fits(shape, logical_to_spec(axes, rules, mesh), mesh)
        return NamedSharding(mesh, spec)

    return jax.tree.map(one, state, is_leaf=_is_variable)


# --- activation constraints -------------------------------------------------------------------------------
_CONTEXT: contextvars.ContextVar[tuple[Mesh, Rules] | None] = contextvars.ContextVar("jaxsuite_sharding",
                                                                                     default=None)


@contextlib.contextmanager
def use_sharding(mesh: Mesh | None, rules: Rules = DEFAULT_RULES):
    """Within this context, `constrain` pins activations to the mesh; outside it is a no-op.

    Enter it around the *tracing* of a step (i.e. around the call of a jitted function the first time).
    """
    token = _CONTEXT.set((mesh, tuple(rules)) if mesh is not None else None)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_sharding() -> tuple[Mesh, Rules] | None:
    return _CONTEXT.get()


# Device.platform spellings -> "cpu" / "gpu" / "tpu" (a CUDA topology's devices say "gpu", a CUDA backend "cuda").
_PLATFORMS = {"cpu": "cpu", "gpu": "gpu", "cuda": "gpu", "rocm": "gpu", "tpu": "tpu"}


def mesh_platform() -> str:
    """The platform ("cpu", "gpu" or "tpu") of the mesh in context, which is the compile target, or of the
    default backend without one. Kernels are chosen by this, not by the machine tracing: a deviceless compile
    for a TPU topology or an H100 node traces on this CPU host with a mesh of the target's devices."""
    context = _CONTEXT.get()
    name = context[0].devices.flat[0].platform if context else jax.default_backend()
    return _PLATFORMS.get(name, name)


def activation_spec(shape: Sequence[int], logical_axes: LogicalAxes, mesh: Mesh, rules: Rules) -> PartitionSpec:
    """The PartitionSpec `constrain` gives an array of `shape` with these logical axes (dimensions the mesh axes
    do not divide stay whole)."""
    return _fits(shape, logical_to_spec(logical_axes, rules, mesh), mesh)


def constrain(x: jax.Array, logical_axes: LogicalAxes) -> jax.Array:
    """`with_sharding_constraint` by logical names; identity when no mesh context is active."""
    ctx = _CONTEXT.get()
    if ctx is None:
        return x
    mesh, rules = ctx
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, activation_spec(x.shape, logical_axes, mesh,
                                                                                   rules)))


def rules_from_config(rules_cfg: Any) -> tuple[tuple[str, Any], ...]:
    """Reads rules from a config: a sequence of (name, axis) pairs, or a mapping name -> axis.

    Mesh-axis strings are validated so a typo fails at start rather than silently replicating.
    """
    items = list(rules_cfg.items()) if hasattr(rules_cfg, "items") else [tuple(r) for r in rules_cfg]
    for name, target in items:
        axes = () if target is None else (target,) if isinstance(target, str) else tuple(target)
        bad = [a for a in axes if a not in MESH_AXES]
        if bad:
            raise ValueError(f"sharding rule {name!r} -> {target!r} names unknown mesh axis {bad}; "
                             f"mesh axes are {MESH_AXES}")
    return tuple((str(n), t if t is None or isinstance(t, str) else tuple(t)) for n, t in items)
