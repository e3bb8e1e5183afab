"""Ahead-of-time compiles for a target this machine does not have: `python -m jaxsuite.launch --compile_only`.

A job that supports it exposes `programs(config, mesh, rules) -> list[Program]` beside its `run`: every jitted
program it runs, with abstract arguments (ShapeDtypeStructs carrying their shardings) built from the config
alone, so no weights, tokenizer or data are needed. `compile_report` lowers and compiles each program for the
target's devices and measures what the compiler reports per device:

    target = resolve_target("v5p:2x2x1")                 # the 4 chips of a v5p-8, from libtpu (jax[tpu])
    mesh, rules = mesh_and_rules(config, target.devices)
    report = compile_report(job_programs(config, mesh, rules), target)
    write_report(report, workdir)                        # compile_report.json + a table on stdout

Memory per device is the compiler's buffer assignment (`compiled.memory_analysis()`): arguments, outputs,
temporaries, generated code and peak. A program fits when the larger of the compiler's peak and the total
(arguments + outputs + temporaries - aliased; the TPU peak is sometimes below the temporaries alone), each plus
what the job keeps resident beside it (`Program.resident_bytes`: e.g. the coach's state while the player
trains), is within the chip's memory; a program the compiler itself rejects (RESOURCE_EXHAUSTED: the temporaries exceed the HBM it can use) is reported as not
fitting, with the compiler's message. FLOPs are XLA's cost analysis of the compiled program, per device; a
loop body (gradient accumulation, the decode loop) is counted once, not once per iteration.

Targets: TPU topologies by libtpu's names ("v5e:2x2", "v5e:16x16", "v6e:2x4", "v5p:2x2x1", "v4:2x2x1"; the
`aot` extra installs libtpu), NVIDIA GPU nodes ("h100:8", "h200:8", or "h100:4x8" for 4 hosts of 8; the `aot`
extra installs the CUDA PJRT plugin, which compiles without CUDA, a driver or a GPU), and "cpu:N" (N of this
host's CPU devices, e.g. with XLA_FLAGS=--xla_force_host_platform_device_count=8), which checks a job's
programs lower and shard without any accelerator software.

A GPU target's memory is what JAX's allocator takes of it by default, XLA_PYTHON_CLIENT_MEM_FRACTION (0.75
unless set) of the card, since a run on the node gets no more than that. XLA's GPU compiler gives no FLOP count
without a device, so GFLOP/device is "-" there.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import re
import time
from typing import Any, Callable, Sequence

import jax

from jaxsuite.core import files

GiB = 2 ** 30

# HBM per chip (bytes) by TPU generation, as Google documents it. The compiler may keep a little of it for
# itself (v5p reports 95.74 GiB usable); a program over its own limit fails to compile and is reported so.
TPU_HBM = {"v4": 32 * GiB, "v5e": 16 * GiB, "v5p": 95 * GiB, "v6e": 32 * GiB}
TPU_NAMES = {"v4": "v4", "v5e": "v5e", "v5litepod": "v5e", "v5": "v5p", "v5p": "v5p", "v6e": "v6e"}


# What XLA's GPU compiler needs to know of a card to compile for it without one (the fields of a
# stream_executor GpuTargetConfigProto), from NVIDIA's specifications as the CUDA driver reports them.
GPU_SPECS: dict[str, dict[str, Any]] = {
    "h100": dict(name="NVIDIA H100 80GB HBM3", compute_capability=(9, 0), core_count=132,
                 device_memory_size=84_942_979_072, memory_bandwidth=3_352_320_000_000, clock_rate_ghz=1.98),
    "h200": dict(name="NVIDIA H200 141GB HBM3e", compute_capability=(9, 0), core_count=132,
                 device_memory_size=151_397_597_184, memory_bandwidth=4_800_000_000_000, clock_rate_ghz=1.98),
}
# Shared by both (Hopper, SXM): per-SM limits, L2, and the cuDNN a current CUDA 12 install has (9.10).
HOPPER = dict(threads_per_block_limit=1024, threads_per_warp=32, shared_memory_per_block=49_152,
              shared_memory_per_core=233_472, shared_memory_per_block_optin=232_448, threads_per_core_limit=2048,
              fpus_per_core=128, registers_per_core_limit=65_536, registers_per_block_limit=65_536,
              l2_cache_size=52_428_800, block_dim_limit_x=2_147_483_647, block_dim_limit_y=65_535,
              block_dim_limit_z=65_535)
CUDNN_VERSION = (9, 10, 0)
JAX_GPU_MEMORY_FRACTION = 0.75       # XLA_PYTHON_CLIENT_MEM_FRACTION's default: what a JAX process preallocates


def gpu_target_config(card: str) -> str:
    """The GpuTargetConfigProto (text format) of `card` ("h100", "h200") for a deviceless compile."""
    spec = {**HOPPER, **GPU_SPECS[card]}
    major, minor = spec.pop("compute_capability")
    name = spec.pop("name")
    fields = "\n".join(f"  {key}: {value}" for key, value in spec.items())
    dnn = dict(zip(("major", "minor", "patch"), CUDNN_VERSION))
    return (f"gpu_device_info {{\n{fields}\n  cuda_compute_capability {{ major: {major} minor: {minor} }}\n}}\n"
            f'platform_name: "CUDA"\n'
            f"dnn_version_info {{ major: {dnn['major']} minor: {dnn['minor']} patch: {dnn['patch']} }}\n"
            f'device_description_str: "{name}"\n')


@contextlib.contextmanager
def _cudnn_of_target():
    """While tracing for a GPU target: jax asks the *local* cuDNN library for its version before it emits a cuDNN
    attention call, and a deviceless compile host has none. The version the program is compiled for is the
    target's (CUDNN_VERSION, as in its GpuTargetConfigProto); XLA then compiles the call without a library."""
    from jax._src.cudnn import fused_attention_stablehlo as cudnn_attention
    major, minor, patch = CUDNN_VERSION
    original = cudnn_attention.check_cudnn_version
    cudnn_attention.check_cudnn_version = lambda: major * 10000 + minor * 100 + patch
    try:
        yield
    finally:
        cudnn_attention.check_cudnn_version = original


@dataclasses.dataclass(frozen=True)
class Target:
    """Devices to compile for, and the memory each has."""
    name: str
    platform: str
    devices: tuple
    memory_per_device: int

    def tracing(self):
        """The context a program for this target is lowered in."""
        return _cudnn_of_target() if self.platform == "gpu" else contextlib.nullcontext()


@dataclasses.dataclass
class Program:
    """One jitted program a job runs: `fn` (a jax.jit-wrapped function) and the abstract `args` it is called
    with (`kwargs`: static keyword arguments). `note` says what it is, e.g. "one optimizer step, global batch
    8 x 4096". `resident_bytes`: per device, what the job keeps alive beside the program's own arguments while it
    runs (another model's train state, say), which the device must hold too."""
    name: str
    fn: Callable
    args: tuple
    note: str = ""
    kwargs: dict = dataclasses.field(default_factory=dict)
    resident_bytes: int = 0


def per_device_bytes(tree: Any) -> int:
    """The bytes one device holds of a tree of ShapeDtypeStructs carrying shardings (the largest shard of each
    leaf, which is what the most loaded device holds)."""
    import math
    total = 0
    for x in jax.tree.leaves(tree):
        shape = x.sharding.shard_shape(x.shape) if getattr(x, "sharding", None) is not None else x.shape
        total += math.prod(shape) * x.dtype.itemsize
    return total


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def resolve_target(name: str) -> Target:
    """A target by name: a libtpu topology ("v5e:2x2", "v5p:2x2x1", ...) or "cpu:N". Raises ValueError naming
    the accepted forms."""
    name = name.strip()
    m = re.fullmatch(r"cpu:(\d+)", name)
    if m:
        n = int(m.group(1))
        devices = jax.devices("cpu")
        if n < 1 or n > len(devices):
            raise ValueError(f"--topology {name}: this host has {len(devices)} CPU device(s); set XLA_FLAGS="
                             f"--xla_force_host_platform_device_count={max(n, 1)} before starting to get {n}")
        return Target(name, "cpu", tuple(devices[:n]), _host_memory() // n)
    m = re.fullmatch(r"(h100|h200):(?:(\d+)x)?(\d+)", name)
    if m:
        return _gpu_target(name, m.group(1), int(m.group(2) or 1), int(m.group(3)))
    m = re.fullmatch(r"(v4|v5e|v5litepod|v5|v5p|v6e):(\d+(?:x\d+)+)", name)
    if not m:
        raise ValueError(f"--topology {name!r} is not a known target: use a TPU topology such as v5e:2x2, "
                         f"v5e:16x16, v6e:2x4, v5p:2x2x1, v4:2x2x1, a GPU node such as h100:8, h200:8 (h100:4x8: "
                         f"4 hosts of 8), or cpu:N")
    generation = TPU_NAMES[m.group(1)]
    try:
        import libtpu  # noqa: F401  (only to give the install hint instead of jax's backend error)
    except ImportError:
        raise ValueError(f"--topology {name}: TPU targets need libtpu: pip install 'jaxsuite[aot]'") from None
    # libtpu takes a host-wide lock file meant for processes that drive real chips; a deviceless compile drives
    # none, and without this a second process compiling at the same time (pytest -n 2) fails on the lock.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies
    libtpu_name = {"v5p": "v5", "v5e": "v5e"}.get(generation, generation) + ":" + m.group(2)
    # v4 runs as megacore (one device per chip, both TensorCores) as Cloud TPU v4 VMs do by default; without it
    # libtpu lists each TensorCore as a device.
    extra = {"chip_config_name": "megacore"} if generation == "v4" else {}
    try:
        topology = topologies.get_topology_desc(platform="tpu", topology_name=libtpu_name, **extra)
    except Exception as e:   # libtpu raises a bare RuntimeError / XlaRuntimeError for names it does not know
        raise ValueError(f"--topology {name}: libtpu does not know this topology ({e})") from None
    return Target(name, "tpu", tuple(topology.devices), TPU_HBM[generation])


def _gpu_target(name: str, card: str, hosts: int, per_host: int) -> Target:
    """`hosts` x `per_host` GPUs of one kind, through the CUDA PJRT plugin's deviceless topology."""
    if hosts < 1 or per_host < 1:
        raise ValueError(f"--topology {name}: need at least one host and one GPU per host")
    try:
        import jax_plugins.xla_cuda12  # noqa: F401  (only to give the install hint instead of jax's backend error)
    except ImportError:
        raise ValueError(f"--topology {name}: GPU targets need the CUDA compile plugin: pip install "
                         f"'jaxsuite[aot]'") from None
    from jax.experimental import topologies
    topology = topologies.get_topology_desc(platform="cuda", topology_name="", target_config=gpu_target_config(card),
                                            topology=f"1x{hosts}x{per_host}")
    fraction = float(os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", JAX_GPU_MEMORY_FRACTION))
    return Target(name, "gpu", tuple(topology.devices), int(GPU_SPECS[card]["device_memory_size"] * fraction))


def _compiler_limit(message: str) -> tuple[float | None, float | None]:
    """(needed GiB, available GiB) from an XLA RESOURCE_EXHAUSTED message, when it states them."""
    m = re.search(r"\(([\d.]+)([GM])\) exceeds available HBM \(([\d.]+)([GM])\)", message)
    if not m:
        return None, None
    scale = {"G": 1.0, "M": 1 / 1024}
    return float(m.group(1)) * scale[m.group(2)], float(m.group(3)) * scale[m.group(4)]


def total_bytes(row: dict[str, Any]) -> int:
    """Arguments + outputs + temporaries - aliased bytes of a report row (MaxText's "total memory" measure), plus
    what the job keeps resident beside the program (0 for most programs)."""
    return (row["argument_bytes"] + row["output_bytes"] + row["temp_bytes"] - row["alias_bytes"]
            + row.get("resident_bytes", 0))


@contextlib.contextmanager
def _no_persistent_cache(target: Target):
    """A deviceless TPU or GPU executable cannot be loaded back from JAX's persistent compilation cache (that
    needs a client of the platform), so writing it there (where a user has the cache on) only costs disk and a
    warning at the next compile. CPU targets keep the cache."""
    if target.platform == "cpu":
        yield
        return
    before = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", before)


def compile_program(program: Program, target: Target) -> dict[str, Any]:
    """Lowers and compiles one program; its per-device memory, FLOPs and compile seconds as a report row."""
    row: dict[str, Any] = {"program": program.name, "note": program.note,
                           "resident_bytes": int(program.resident_bytes)}
    t0 = time.perf_counter()
    try:
        with target.tracing(), _no_persistent_cache(target):
            compiled = program.fn.lower(*program.args, **program.kwargs).compile()
    except Exception as e:   # noqa: BLE001 - the compiler's own error is the finding; keep it in the report
        message = str(e).strip().splitlines()[0][:500]
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        needed, available = _compiler_limit(str(e))
        row.update(fits=False, compile_seconds=round(time.perf_counter() - t0, 1), error=message,
                   temp_bytes=None if needed is None else int(needed * GiB),
                   limit_bytes=None if available is None else int(available * GiB))
        return row
    row["compile_seconds"] = round(time.perf_counter() - t0, 1)
    mem = compiled.memory_analysis()
    if mem is not None:
        for key, attr in (("argument", "argument_size_in_bytes"), ("output", "output_size_in_bytes"),
                          ("alias", "alias_size_in_bytes"), ("temp", "temp_size_in_bytes"),
                          ("code", "generated_code_size_in_bytes"), ("peak", "peak_memory_in_bytes")):
            row[f"{key}_bytes"] = int(getattr(mem, attr, 0) or 0)
        row["total_bytes"] = total_bytes(row)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
    row["gflops"] = round(float(cost.get("flops", 0.0)) / 1e9, 2) if isinstance(cost, dict) else None
    # None: this backend gives no memory analysis, so nothing is claimed either way
    peak = row["peak_bytes"] + row["resident_bytes"]
    row["fits"] = None if mem is None else max(peak, row["total_bytes"]) <= target.memory_per_device
    return row


def compile_report(programs: Sequence[Program], target: Target, log: Callable[[str], None] = print,
                   on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Compiles every program for `target`; {"target", "platform", "devices", "memory_per_device_bytes",
    "programs": rows, "all_fit"}. A row: program, note, compile_seconds, fits, per-device argument / output /
    alias / temp / code / peak / total bytes, gflops; a program the compiler rejected has `error` (and, when the
    message states them, temp_bytes and the compiler's limit_bytes) instead. `on_row(report so far)` runs after
    each program (a full-size job's compiles take tens of minutes: the launcher saves what is done)."""
    report = {"target": target.name, "platform": target.platform, "devices": len(target.devices),
              "memory_per_device_bytes": target.memory_per_device, "programs": [], "all_fit": True}
    for i, program in enumerate(programs):
        log(f"compiling {program.name} for {target.name} ({len(target.devices)} devices, "
            f"{i + 1}/{len(programs)}) ...")
        row = compile_program(program, target)
        report["programs"].append(row)
        report["all_fit"] = report["all_fit"] and row["fits"] is not False
        # the compiler's working set of a full-size program is gigabytes of host memory: release it before the
        # next one rather than whenever the collector runs
        gc.collect()
        if on_row is not None:
            on_row(report)
    return report


FITS = {True: "yes", False: "**no**", None: "unknown"}


def format_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table, one row per program."""
    head = (f"target {report['target']}: {report['devices']} devices, "
            f"{report['memory_per_device_bytes'] / GiB:.2f} GiB each (memory per device below; resident: what the "
            f"job keeps alive beside the program, counted in its total)\n\n"
            "| program | arguments GiB | outputs GiB | temporaries GiB | peak GiB | resident GiB | total GiB | fits |"
            " compile s | GFLOP/device | note |\n|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|")
    lines = [head]
    for r in report["programs"]:
        def g(key):
            value = r.get(key)
            if value is None:
                return "-"
            return f"{value:.2f}" if key == "gflops" else f"{value / GiB:.3f}"
        note = r["note"] + (f"; {r['error']}" if "error" in r else "")
        lines.append(f"| {r['program']} | {g('argument_bytes')} | {g('output_bytes')} | {g('temp_bytes')} | "
                     f"{g('peak_bytes')} | {g('resident_bytes')} | {g('total_bytes')} | {FITS[r['fits']]} | "
                     f"{r['compile_seconds']} | {g('gflops')} | {note} |")
    return "\n".join(lines)


def write_report(report: dict[str, Any], workdir: str | os.PathLike) -> str:
    """Writes workdir/compile_report.json (atomically, any epath location); returns its path."""
    path = files.join_path(workdir, "compile_report.json")
    files.makedirs(workdir)
    files.atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    return str(path)


def abstract(tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs of `tree`'s leaves (arrays or ShapeDtypeStructs, bare or in nnx Variables, which keep
    their metadata) carrying `shardings` (a tree of the same structure, Variables replaced by shardings)."""
    from flax import nnx

    def one(x, s):
        if isinstance(x, nnx.Variable):
            return x.replace(jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s))
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)
    return jax.tree.map(one, tree, shardings, is_leaf=lambda x: isinstance(x, nnx.Variable))

