"""Which implementation an op runs, and for which platform.

Two arguments decide it, on every op (``simple_gla``, ``gla``, ``gated_delta_rule``):

* ``platform``: the target the computation is compiled for, "cpu", "gpu" or "tpu". It decides what
  ``implementation="pallas"`` means (Mosaic TPU kernels on "tpu", Triton kernels on "gpu", the Mosaic TPU
  kernel in the Pallas interpreter on "cpu", which needs ``interpret=True``) and what the default
  implementation is. Pass it when compiling for a target this process is not running on (e.g. lowering
  for a TPU topology from a CPU host). ``None`` (default) reads it from the inputs, see ``target_platform``.
* ``implementation``: None (the platform's default), "auto" (the platform's Pallas kernel, verified on
  hardware or not, where it takes the shapes, else "xla": what a pod config asks for, so that the compile
  target decides), "reference", "xla", "pallas", or a Pallas kernel by name, "pallas_gpu" / "pallas_tpu". A kernel compiled for a platform other than the target only runs
  in the Pallas interpreter (``interpret=True``).
"""
from __future__ import annotations

from collections.abc import Iterable

import jax

IMPLEMENTATIONS = ("auto", "reference", "xla", "pallas", "pallas_gpu", "pallas_tpu")
PLATFORMS = ("cpu", "gpu", "tpu")

# Backends whose Pallas kernels have passed tests/kernels (the `accelerator`-marked hardware test) on real
# hardware. The default turns to Pallas only there: until then a kernel that has only run in the Pallas
# interpreter is opt-in (implementation="pallas"), never a silent default. As of 2026-11-25 no GPU or TPU has
# been available to run them, so the set is empty; add "gpu" / "tpu" once that test passes on the device.
PALLAS_VERIFIED_BACKENDS: frozenset[str] = frozenset()

# Device.platform / AbstractDevice.platform spellings -> the names used here.
_PLATFORM_ALIASES = {"cpu": "cpu", "gpu": "gpu", "cuda": "gpu", "rocm": "gpu", "tpu": "tpu"}


def _default_backend() -> str:
    """The process's default backend: the last resort of ``target_platform`` (a function so tests can
    stand in for a machine whose default backend is an accelerator)."""
    return jax.default_backend()


def _known(name: str, source: str) -> str:
    platform = _PLATFORM_ALIASES.get(name)
    if platform is None:
        raise ValueError(f"{source} is on platform {name!r}; kernels_pallas knows {PLATFORMS}")
    return platform


def _traced_platform(x) -> str | None:
    """The platform an abstract value's sharding names (explicit-sharding meshes carry an AbstractDevice)."""
    mesh = getattr(jax.typeof(x).sharding, "mesh", None)
    device = getattr(mesh, "abstract_device", None)
    return None if device is None else device.platform


def target_platform(platform: str | None, arrays: Iterable) -> str:
    """The platform to compile for: ``platform`` if given, else the one the inputs live on.

    With ``platform=None``, in order:
      1. concrete ``jax.Array`` inputs: the platform of their devices (all inputs must agree);
      2. traced inputs (inside ``jit``, ``grad``, ``shard_map``), which have no devices: the platform of
         the abstract device their sharding's mesh names, else that of the mesh in context
         (``jax.set_mesh``, ``jax.sharding.use_abstract_mesh``, the mesh of an enclosing ``shard_map``);
      3. otherwise (tracers with no mesh, numpy inputs) ``jax.default_backend()``.
    Under a plain ``jax.jit`` step 3 applies: the op cannot see which device the compiled function will run
    on, so a caller lowering for another target (``.lower(lowering_platforms=...)``) passes ``platform``.
    """
    if platform is not None:
        if platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {PLATFORMS} or None; got {platform!r}")
        return platform
    found: set[str] = set()
    for x in arrays:
        if isinstance(x, jax.core.Tracer):
            name = _traced_platform(x)
            if name is not None:
                found.add(_known(name, "a traced input's mesh"))
        elif isinstance(x, jax.Array):
            found.update(_known(d.platform, f"input device {d}") for d in x.sharding.device_set)
    if len(found) > 1:
        raise ValueError(f"the inputs live on several platforms {sorted(found)}; move them to one or pass "
                         "platform= explicitly")
    if found:
        return found.pop()
    context = getattr(jax.sharding.get_abstract_mesh(), "abstract_device", None)
    if context is not None:
        return _known(context.platform, "the mesh in context")
    return _known(_default_backend(), "the default backend")


def pallas_problem(kernel: str, *, dk: int, dv: int, chunk: int, dtype=None, interpret: bool = False
                   ) -> str | None:
    """Why the Pallas kernels for ``kernel`` ("gpu" or "tpu") cannot take these inputs (None if they can)."""
    if kernel == "tpu" and not interpret and dtype is not None and jax.numpy.dtype(dtype) == jax.numpy.float16:
        # Mosaic TPU has no float16 vector loads (measured with jax 0.10.2 on v5e, v5p and v6e targets:
        # "Invalid vector type for load ... xf16"): refuse before lowering rather than fail inside Mosaic.
        return ("float16 inputs do not compile for the Mosaic TPU kernels (TPUs have no float16 vector "
                "loads); cast q, k, v to bfloat16 or use implementation='xla'")
    if chunk < 16:
        return f"chunk_size must be >= 16 for the Pallas kernels (matmul tiles); got {chunk}"
    if kernel == "gpu":
        for name, d in (("K (q/k head dim)", dk), ("V (v head dim)", dv)):
            if d < 16 or d & (d - 1):
                return f"{name} must be a power of two >= 16 for the Triton kernels; got {d}"
    return None


def resolve_implementation(implementation, *, platform: str, interpret, dk: int, dv: int,
                           chunk: int, dtype=None) -> tuple[str, str | None]:
    """Returns (implementation, Pallas kernel: "gpu", "tpu" or None) for the target ``platform``.

    Default (implementation=None): the platform's Pallas kernel where that platform is in
    PALLAS_VERIFIED_BACKENDS, else "xla" (CPU always; also the fallback when the kernels cannot take the
    shapes). "auto": the same without the verified-backends gate (the GPU / TPU kernel whenever it applies). An explicit choice never falls back: it runs or raises a ValueError that says why.
    """
    if implementation is not None and implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS} or None; got {implementation!r}")
    if platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS}; got {platform!r}")
    native = platform if platform in ("gpu", "tpu") else None
    if implementation in (None, "auto"):
        allowed = PALLAS_VERIFIED_BACKENDS if implementation is None else ("gpu", "tpu")
        if native in allowed and pallas_problem(native, dk=dk, dv=dv, chunk=chunk,
                                                                 dtype=dtype) is None:
            return "pallas", native
        return "xla", None
    if implementation in ("reference", "xla"):
        return implementation, None
    if implementation == "pallas":
        kernel = native or ("tpu" if interpret else None)
        if kernel is None:
            raise ValueError(
                f"implementation='pallas' needs a GPU or TPU target (the platform is {platform!r}); pass "
                "platform='gpu' / 'tpu' when compiling for one, interpret=True to run the kernels in the "
                "Pallas interpreter, or use implementation='xla'")
    else:
        kernel = implementation.removeprefix("pallas_")
        if kernel != native and not interpret:
            raise ValueError(
                f"implementation={implementation!r} compiles for {kernel.upper()} but the platform is "
                f"{platform!r}; pass platform={kernel!r} when compiling for one, or interpret=True to run it "
                "in the Pallas interpreter")
    problem = pallas_problem(kernel, dk=dk, dv=dv, chunk=chunk, dtype=dtype, interpret=bool(interpret))
    if problem is not None:
        raise ValueError(f"implementation={implementation!r} cannot run these inputs: {problem}")
    return "pallas", kernel


def choose(implementation, *, platform, interpret, q, k, v, chunk) -> tuple[str, str | None]:
    """``resolve_implementation`` for an op's inputs q, k [B, T, H, K], v [B, T, H, V], targeting
    ``target_platform(platform, (q, k, v))``."""
    return resolve_implementation(implementation, platform=target_platform(platform, (q, k, v)),
                                  interpret=interpret, dk=q.shape[-1], dv=v.shape[-1], chunk=chunk,
                                  dtype=q.dtype)
