"""Which implementation the ops run, for which platform: the explicit ``platform=`` argument, the default
that follows the inputs' devices (or, for traced inputs, the mesh in context), the dispatch errors, and
that lowering for TPU (Mosaic) or GPU (Triton) from this CPU host puts that platform's kernels, forward
and backward, in the compiled program (also inside shard_map with its varying-axes checks)."""
import os
import sys

if "jax" not in sys.modules and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import kernels_pallas as kp
from kernels_pallas import dispatch

OPS = ("simple_gla", "gla", "gated_delta_rule")
# What a Pallas kernel lowers to: the custom call of each platform, and the lowering target's name.
KERNEL_CALL = {"tpu": "tpu_custom_call", "gpu": "__gpu$xla.gpu.triton"}
LOWERING_TARGET = {"tpu": "tpu", "gpu": "cuda"}


def _call(op, q, k, v, g, **kw):
    """The op on q, k, v with a gate g [B, T, H] (per-channel for GLA: broadcast over K)."""
    if op == "simple_gla":
        return kp.simple_gla(q, k, v, g=g, **kw)
    if op == "gla":
        return kp.gla(q, k, v, jnp.broadcast_to(g[..., None], q.shape), **kw)
    return kp.gated_delta_rule(q, k, v, g, jax.nn.sigmoid(g), **kw)


def _kernels_in(lowered_text):
    """(the custom calls in a lowered program, sorted; the names of the Pallas kernels it contains)."""
    calls = sorted(re.findall(r"custom_call @([\w$.]+)", lowered_text))
    names = set(re.findall(r"\b((?:simple_gla|gla|gated_delta_rule)_(?:fwd|bwd))\b", lowered_text))
    return calls, names


def _cpu_inputs(t=16, h=2, d=16, seed=0):
    rng = np.random.default_rng(seed)
    cpu = jax.devices("cpu")[0]
    q, k, v = (jax.device_put(rng.standard_normal((1, t, h, d)).astype(np.float32), cpu) for _ in range(3))
    g = jax.device_put(np.log(rng.uniform(0.5, 1.0, (1, t, h))).astype(np.float32), cpu)
    return q, k, v, g


def _platform_seen_inside(fn_wrapper=lambda f: f):
    """The target platform an op would pick for a traced input, inside ``fn_wrapper(jit-able fn)``."""
    seen = []

    def fn(x):
        seen.append(dispatch.target_platform(None, (x,)))
        return x

    jax.make_jaxpr(fn_wrapper(fn))(jax.ShapeDtypeStruct((8,), jnp.float32))
    return seen[0]


# --- resolving the implementation for a target platform ----------------------------------------------------

def test_default_is_xla_on_cpu_and_pallas_needs_interpret_or_a_target():
    resolve = functools.partial(dispatch.resolve_implementation, dk=64, dv=64, chunk=64)
    assert resolve(None, platform="cpu", interpret=False) == ("xla", None)
    assert resolve("pallas", platform="cpu", interpret=True) == ("pallas", "tpu")
    assert resolve("pallas_gpu", platform="cpu", interpret=True) == ("pallas", "gpu")
    q, k, v, _ = _cpu_inputs()
    for impl in ("pallas", "pallas_gpu", "pallas_tpu"):
        with pytest.raises(ValueError, match="interpret=True"):
            kp.simple_gla(q, k, v, implementation=impl)
    with pytest.raises(ValueError, match="implementation must be one of"):
        kp.simple_gla(q, k, v, implementation="cuda")
    with pytest.raises(ValueError, match="platform must be one of"):
        kp.gla(q, k, v, jnp.zeros(q.shape), platform="cuda")


def test_platform_decides_what_pallas_means_and_a_foreign_kernel_needs_the_interpreter(monkeypatch):
    monkeypatch.setattr(dispatch, "PALLAS_VERIFIED_BACKENDS", frozenset())
    resolve = functools.partial(dispatch.resolve_implementation, interpret=False, dk=64, dv=128, chunk=64)
    assert resolve("pallas", platform="gpu") == ("pallas", "gpu")
    assert resolve("pallas", platform="tpu") == ("pallas", "tpu")
    assert resolve("pallas_tpu", platform="tpu") == ("pallas", "tpu")
    assert resolve("xla", platform="tpu") == ("xla", None)
    assert resolve("reference", platform="gpu") == ("reference", None)
    with pytest.raises(ValueError, match="platform='gpu'"):
        resolve("pallas_gpu", platform="tpu")
    assert dispatch.resolve_implementation("pallas_gpu", platform="tpu", interpret=True, dk=64, dv=128,
                                           chunk=64) == ("pallas", "gpu")


def test_default_picks_the_platform_kernel_only_once_verified_and_falls_back_to_xla(monkeypatch):
    resolve = functools.partial(dispatch.resolve_implementation, interpret=False)
    # not yet verified on hardware: the default stays on xla, an explicit choice still compiles the kernel
    monkeypatch.setattr(dispatch, "PALLAS_VERIFIED_BACKENDS", frozenset())
    assert resolve(None, platform="gpu", dk=64, dv=128, chunk=64) == ("xla", None)
    monkeypatch.setattr(dispatch, "PALLAS_VERIFIED_BACKENDS", frozenset({"gpu", "tpu"}))
    assert resolve(None, platform="gpu", dk=64, dv=128, chunk=64) == ("pallas", "gpu")
    assert resolve(None, platform="cpu", dk=64, dv=128, chunk=64) == ("xla", None)
    assert resolve(None, platform="gpu", dk=48, dv=128, chunk=64) == ("xla", None)   # Triton: K not 2^n
    with pytest.raises(ValueError, match="K .*power of two"):
        resolve("pallas", platform="gpu", dk=48, dv=128, chunk=64)
    with pytest.raises(ValueError, match="chunk_size must be >= 16"):
        resolve("pallas_gpu", platform="gpu", dk=64, dv=64, chunk=8)
    assert resolve(None, platform="tpu", dk=48, dv=48, chunk=64) == ("pallas", "tpu")


# --- the default platform: the inputs' devices, else the mesh in context, else the default backend --------

def test_default_platform_follows_the_arrays_devices_not_the_default_backend(monkeypatch):
    """On a host whose default backend is a TPU (stood in for here), arrays placed on the CPU run the CPU
    default; traced inputs without a mesh fall back to the default backend."""
    monkeypatch.setattr(dispatch, "_default_backend", lambda: "tpu")
    monkeypatch.setattr(dispatch, "PALLAS_VERIFIED_BACKENDS", frozenset({"tpu"}))   # TPU default: the kernel
    q, k, v, g = _cpu_inputs()
    assert dispatch.target_platform(None, (q, k, v)) == "cpu"
    assert dispatch.target_platform("gpu", (q, k, v)) == "gpu"
    assert dispatch.target_platform(None, (np.asarray(q),)) == "tpu"       # numpy: no device to read
    # Eagerly, the CPU arrays pick "xla" (a Mosaic TPU kernel could not run here) and match the oracle.
    o, _ = kp.simple_gla(q, k, v, g=g, chunk_size=16)
    np.testing.assert_allclose(o, kp.simple_gla(q, k, v, g=g, implementation="reference")[0],
                               rtol=1e-5, atol=1e-5)
    # Traced without a mesh, the inputs have no devices: the (pretend TPU) default backend decides.
    jaxpr = lambda **kw: str(jax.make_jaxpr(
        lambda q, k, v: kp.simple_gla(q, k, v, g=g, chunk_size=16, **kw))(q, k, v))
    assert "pallas_call" in jaxpr()
    assert "pallas_call" not in jaxpr(platform="cpu")


def test_traced_inputs_take_the_platform_of_the_mesh_in_context(monkeypatch):
    monkeypatch.setattr(dispatch, "_default_backend", lambda: "tpu")
    assert _platform_seen_inside() == "tpu"                                # no mesh: the default backend
    gpu = jax.sharding.AbstractDevice(device_kind="NVIDIA H100", num_cores=None, platform="gpu")
    abstract = jax.sharding.AbstractMesh((2,), ("x",), (jax.sharding.AxisType.Explicit,), abstract_device=gpu)
    with jax.sharding.use_abstract_mesh(abstract):
        assert _platform_seen_inside() == "gpu"
    cpu_mesh = jax.make_mesh((1,), ("x",), axis_types=(jax.sharding.AxisType.Explicit,),
                             devices=jax.devices("cpu")[:1])
    with jax.set_mesh(cpu_mesh):
        assert _platform_seen_inside() == "cpu"
    in_shard_map = lambda f: jax.shard_map(f, mesh=cpu_mesh, in_specs=P(), out_specs=P())
    assert _platform_seen_inside(in_shard_map) == "cpu"


def test_tracing_under_an_abstract_tpu_mesh_lowers_the_tpu_kernel_by_default(monkeypatch):
    """A caller compiling for a TPU topology this host does not have only describes the mesh."""
    monkeypatch.setattr(dispatch, "PALLAS_VERIFIED_BACKENDS", frozenset({"tpu"}))
    tpu = jax.sharding.AbstractDevice(device_kind="TPU v5 lite", num_cores=1, platform="tpu")
    abstract = jax.sharding.AbstractMesh((1,), ("x",), (jax.sharding.AxisType.Explicit,), abstract_device=tpu)
    q = jax.ShapeDtypeStruct((1, 64, 2, 128), jnp.bfloat16)
    g = jax.ShapeDtypeStruct((1, 64, 2), jnp.float32)
    with jax.sharding.use_abstract_mesh(abstract):
        traced = jax.jit(lambda q, k, v, g: kp.simple_gla(q, k, v, g=g)[0]).trace(q, q, q, g)
    calls, names = _kernels_in(traced.lower(lowering_platforms=("tpu",)).as_text())
    assert calls == ["tpu_custom_call"] and names == {"simple_gla_fwd"}


# --- lowering for the real targets (no accelerator needed) -------------------------------------------------

@pytest.mark.parametrize("platform", ["tpu", "gpu"])
@pytest.mark.parametrize("op", OPS)
def test_explicit_platform_picks_that_platforms_kernel(op, platform):
    """implementation="pallas" with platform= compiles that platform's kernel from this CPU host."""
    q = jax.ShapeDtypeStruct((1, 64, 2, 16), jnp.float32)
    g = jax.ShapeDtypeStruct((1, 64, 2), jnp.float32)
    fn = lambda q, k, v, g: _call(op, q, k, v, g, implementation="pallas", platform=platform)[0]
    text = jax.jit(fn).trace(q, q, q, g).lower(lowering_platforms=(LOWERING_TARGET[platform],)).as_text()
    assert _kernels_in(text) == ([KERNEL_CALL[platform]], {f"{op}_fwd"})


@pytest.mark.parametrize("platform", ["tpu", "gpu"])
def test_kernels_lower_for_tpu_and_gpu(monkeypatch, platform):
    """Forward and backward of all three ops lower through Mosaic TPU / Triton at production shapes
    (bf16, K = V = 128, C = 64), chosen by default once the platform is verified. Compiling and running
    them needs the hardware; see the README."""
    monkeypatch.setattr(dispatch, "PALLAS_VERIFIED_BACKENDS", frozenset({platform}))  # default -> the kernel
    b, t, h, d = 1, 256, 2, 128
    q = jax.ShapeDtypeStruct((b, t, h, d), jnp.bfloat16)
    g = jax.ShapeDtypeStruct((b, t, h), jnp.float32)
    s0 = jax.ShapeDtypeStruct((b, h, d, d), jnp.float32)
    seg = jax.ShapeDtypeStruct((b, t), jnp.int32)
    for op in OPS:
        def loss(q, k, v, g, s0, seg):
            o, s = _call(op, q, k, v, g, initial_state=s0, segment_ids=seg, output_final_state=True,
                         platform=platform)
            return jnp.sum(o.astype(jnp.float32)) + jnp.sum(s)
        lowered = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4))).trace(q, q, q, g, s0, seg).lower(
            lowering_platforms=(LOWERING_TARGET[platform],))
        calls, names = _kernels_in(lowered.as_text())
        assert calls == [KERNEL_CALL[platform]] * 2, f"{op}: expected the forward and backward kernels"
        assert names == {f"{op}_fwd", f"{op}_bwd"}, op


@pytest.mark.parametrize("platform", ["tpu", "gpu"])
def test_kernels_lower_inside_shard_map_with_vma_checks(platform):
    """Compiled kernels under jax.shard_map(check_vma=True): outputs declare their varying axes and the
    backward's cotangents match the inputs' (replicated inputs get their psum). The mesh is of CPU
    devices, so the target is named with platform=."""
    if jax.device_count() < 8:
        pytest.skip("needs --xla_force_host_platform_device_count=8 set before jax is imported")
    mesh = jax.make_mesh((8,), ("heads",), axis_types=(jax.sharding.AxisType.Auto,))
    q = jax.ShapeDtypeStruct((1, 128, 8, 64), jnp.bfloat16)
    g = jax.ShapeDtypeStruct((1, 128, 8), jnp.float32)
    seg = jax.ShapeDtypeStruct((1, 128), jnp.int32)
    hd = P(None, None, "heads")
    for op in ("simple_gla", "gated_delta_rule"):
        def per_shard(q, k, v, g, seg):
            return _call(op, q, k, v, g, segment_ids=seg, implementation="pallas", platform=platform)[0]
        sharded = jax.shard_map(per_shard, mesh=mesh, in_specs=(hd, hd, hd, hd, P()), out_specs=hd)
        loss = lambda *a: jnp.sum(sharded(*a).astype(jnp.float32))
        lowered = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3))).trace(q, q, q, g, seg).lower(
            lowering_platforms=(LOWERING_TARGET[platform],))
        calls, names = _kernels_in(lowered.as_text())
        assert calls == [KERNEL_CALL[platform]] * 2, f"{op}: expected the forward and backward kernels"
        assert names == {f"{op}_fwd", f"{op}_bwd"}, op


def test_float16_is_refused_for_compiled_tpu_kernels_before_lowering(monkeypatch):
    """Mosaic TPU cannot load float16 vectors: an explicit TPU kernel names the fix, the default falls back to
    xla, and the GPU kernel and the TPU kernel in the interpreter still take float16."""
    resolve = functools.partial(dispatch.resolve_implementation, dk=64, dv=64, chunk=64, dtype=jnp.float16)
    with pytest.raises(ValueError, match="float16 .*bfloat16"):
        resolve("pallas", platform="tpu", interpret=False)
    monkeypatch.setattr(dispatch, "PALLAS_VERIFIED_BACKENDS", frozenset({"gpu", "tpu"}))
    assert resolve(None, platform="tpu", interpret=False) == ("xla", None)
    assert resolve("pallas", platform="gpu", interpret=False) == ("pallas", "gpu")
    assert resolve("pallas_tpu", platform="cpu", interpret=True) == ("pallas", "tpu")
    assert dispatch.resolve_implementation("pallas", platform="tpu", interpret=False, dk=64, dv=64, chunk=64,
                                           dtype=jnp.bfloat16) == ("pallas", "tpu")
    # through an op: q, k, v in float16 aimed at a TPU target fail before any lowering
    q = jnp.zeros((1, 32, 2, 64), jnp.float16)
    with pytest.raises(ValueError, match="float16"):
        kp.simple_gla(q, q, q, g_gamma=jnp.full((2,), -0.1), implementation="pallas", platform="tpu")


# --- deviceless compiles for real TPU chips (libtpu, the `aot` extra) -------------------------------------

@pytest.mark.parametrize("topology, dtypes", [("v5e:2x2", ("bfloat16", "float32")), ("v5p:2x2x1", ("bfloat16",)),
                                              ("v6e:2x4", ("bfloat16",))])
def test_kernels_compile_for_tpu_chips(monkeypatch, topology, dtypes):
    """Mosaic compiles the forward and backward kernels of every op for the chip (lowering alone does not run
    Mosaic's own checks, which is where float16 failed). One device of the topology; grad includes forward."""
    pytest.importorskip("libtpu", reason="deviceless TPU compiles need libtpu: pip install 'jaxsuite[aot]'")
    from jaxsuite.core.aot import resolve_target
    monkeypatch.setattr(dispatch, "PALLAS_VERIFIED_BACKENDS", frozenset({"tpu"}))
    device = resolve_target(topology).devices[0]
    on_chip = jax.sharding.SingleDeviceSharding(device)
    b, t, h, d = 1, 256, 2, 128
    for dtype in dtypes:
        q = jax.ShapeDtypeStruct((b, t, h, d), jnp.dtype(dtype), sharding=on_chip)
        g = jax.ShapeDtypeStruct((b, t, h), jnp.float32, sharding=on_chip)
        for op in OPS:
            def loss(q, k, v, g):
                return jnp.sum(_call(op, q, k, v, g, implementation="pallas", platform="tpu")[0].astype(jnp.float32))
            compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3))).lower(q, q, q, g).compile()
            assert "tpu_custom_call" in compiled.as_text(), (topology, dtype, op)


# Every op in bfloat16, and GLA in float32 as well (the float32 Triton path is one code path for all three ops;
# simple GLA's and the gated delta rule's float32 compiles took ~15 s and ~45 s on 2 cores and added no path).
@pytest.mark.parametrize("op, dtype", [(op, "bfloat16") for op in OPS] + [("gla", "float32")])
def test_kernels_compile_for_an_h100(op, dtype):
    """XLA's GPU compiler (the CUDA plugin, deviceless: no driver or GPU) builds the Triton forward and backward
    kernels of the op for an H100; grad includes forward."""
    pytest.importorskip("jax_plugins.xla_cuda12", reason="GPU targets need the CUDA plugin: pip install 'jaxsuite[aot]'")
    from jaxsuite.core.aot import resolve_target
    target = resolve_target("h100:1")
    on_gpu = jax.sharding.SingleDeviceSharding(target.devices[0])
    b, t, h, d = 1, 128, 2, 64
    q = jax.ShapeDtypeStruct((b, t, h, d), jnp.dtype(dtype), sharding=on_gpu)
    g = jax.ShapeDtypeStruct((b, t, h), jnp.float32, sharding=on_gpu)

    def loss(q, k, v, g):
        return jnp.sum(_call(op, q, k, v, g, implementation="pallas", platform="gpu")[0].astype(jnp.float32))
    with target.tracing():
        compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3))).lower(q, q, q, g).compile()
    names = set(re.findall(rf"\b{op}_(?:fwd|bwd)\b", compiled.as_text()))
    assert names == {f"{op}_fwd", f"{op}_bwd"}, names
