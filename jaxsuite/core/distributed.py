"""Multi-process start-up: decide whether this process is one of several, and join them.

`jax.distributed.initialize` must run before anything touches a jax backend (jax.devices(), the first
array), so the launcher calls `initialize()` right after parsing arguments. Where the processes come from:

  explicit   --coordinator_address host:port --num_processes N --process_id I (or the env vars
             JAXSUITE_COORDINATOR / JAXSUITE_NUM_PROCESSES / JAXSUITE_PROCESS_ID): any cluster, or N
             processes on one machine (CPU tests; `spawn_local` below starts them).
  slurm      srun with SLURM_NTASKS > 1: jax reads the SLURM variables itself. With one task per node we
             pass the SLURM values explicitly, because jax's SLURM auto-detection otherwise pins every process
             to the single GPU numbered SLURM_LOCALID (right for one task per GPU, wrong for one per node).
  tpu        a Cloud TPU VM (libtpu + /dev/accel* or /dev/vfio): jax finds the pod's workers from the TPU
             metadata; on a single-host TPU VM this yields one process.
  single     none of the above: no initialisation.

JAXSUITE_DISTRIBUTED=off skips all of this; JAXSUITE_DISTRIBUTED=auto calls jax's auto-detection anyway
(e.g. Open MPI / mpi4py clusters).

CPU multi-process needs a cross-process collectives backend: we select gloo (in jax 0.10.2 it is also the
default, but older versions defaulted to none and failed with "collectives not implemented").
"""
from __future__ import annotations

import dataclasses
import glob
import importlib.util
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Mapping, Sequence

log = logging.getLogger("jaxsuite.distributed")

ENV_COORDINATOR = "JAXSUITE_COORDINATOR"
ENV_NUM_PROCESSES = "JAXSUITE_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXSUITE_PROCESS_ID"
ENV_MODE = "JAXSUITE_DISTRIBUTED"


@dataclasses.dataclass(frozen=True)
class DistributedPlan:
    """What `initialize` will do: mode in {"single", "explicit", "slurm", "tpu", "auto"} and the keyword
    arguments for jax.distributed.initialize (empty = let jax auto-detect)."""
    mode: str
    kwargs: Mapping[str, Any]
    reason: str

    @property
    def multi_process(self) -> bool:
        return self.mode != "single"


def _on_tpu_vm(env: Mapping[str, str]) -> bool:
    if importlib.util.find_spec("libtpu") is None:
        return False
    return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*") or env.get("TPU_WORKER_HOSTNAMES")
                or env.get("TPU_ACCELERATOR_TYPE"))


def _slurm_tasks_per_node(env: Mapping[str, str]) -> int | None:
    """SLURM_NTASKS_PER_NODE when set, else inferred from SLURM_STEP_TASKS_PER_NODE ('2(x4)' -> 2)."""
    for var in ("SLURM_NTASKS_PER_NODE", "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"):
        m = re.match(r"^(\d+)", env.get(var, ""))
        if m:
            return int(m.group(1))
    return None


def slurm_coordinator_address(env: Mapping[str, str]) -> str:
    """First host of SLURM_STEP_NODELIST (or SLURM_JOB_NODELIST) and a port derived from the job id, as jax
    does, so every task computes the same address without talking to the others."""
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or ""
    m = re.match(r"^([^,\[]+)(?:\[([^,\-\]]+))?", nodes)
    if not m:
        raise ValueError(f"cannot parse the SLURM node list {nodes!r}")
    host = m.group(1) + (m.group(2) or "")
    port = env.get("JAX_COORDINATOR_PORT") or str(int(env["SLURM_JOB_ID"]) % 2**12 + (65535 - 2**12 + 1))
    return f"{host}:{port}"


def plan_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None, *, env: Mapping[str, str] | None = None) -> DistributedPlan:
    """Decides how (and whether) to initialise jax.distributed. Pure: reads only `env` and the arguments."""
    env = os.environ if env is None else env
    mode = env.get(ENV_MODE, "").strip().lower()
    if mode in ("off", "0", "false", "none"):
        return DistributedPlan("single", {}, f"{ENV_MODE}={env[ENV_MODE]}")
    coordinator_address = coordinator_address or env.get(ENV_COORDINATOR) or None
    if num_processes is None and env.get(ENV_NUM_PROCESSES):
        num_processes = int(env[ENV_NUM_PROCESSES])
    if process_id is None and env.get(ENV_PROCESS_ID):
        process_id = int(env[ENV_PROCESS_ID])
    explicit = {"coordinator_address": coordinator_address, "num_processes": num_processes,
                "process_id": process_id}
    if any(v is not None for v in explicit.values()):
        if num_processes == 1 and coordinator_address is None:
            return DistributedPlan("single", {}, "num_processes=1")
        missing = [k for k, v in explicit.items() if v is None]
        if missing:
            raise ValueError(f"multi-process launch needs --coordinator_address, --num_processes and "
                             f"--process_id (or ${ENV_COORDINATOR}/${ENV_NUM_PROCESSES}/${ENV_PROCESS_ID}); "
                             f"missing: {', '.join(missing)}")
        if not 0 <= process_id < num_processes:
            raise ValueError(f"--process_id {process_id} is outside [0, {num_processes})")
        return DistributedPlan("explicit", explicit, "explicit flags / JAXSUITE_* env vars")
    if mode == "auto":
        return DistributedPlan("auto", {}, f"{ENV_MODE}=auto")
    ntasks = int(env.get("SLURM_NTASKS") or env.get("SLURM_NPROCS") or 0)
    if "SLURM_JOB_ID" in env and "SLURM_PROCID" in env and ntasks > 1:
        if _slurm_tasks_per_node(env) == 1:
            kwargs = {"coordinator_address": slurm_coordinator_address(env), "num_processes": ntasks,
                      "process_id": int(env["SLURM_PROCID"]), "cluster_detection_method": "deactivate"}
            return DistributedPlan("slurm", kwargs, f"SLURM, {ntasks} tasks, one per node (all local GPUs)")
        return DistributedPlan("slurm", {}, f"SLURM, {ntasks} tasks (jax auto-detects, one GPU per task)")
    if _on_tpu_vm(env):
        return DistributedPlan("tpu", {}, "Cloud TPU VM (jax auto-detects the pod's workers)")
    return DistributedPlan("single", {}, "no coordinator flags, SLURM job or TPU VM")


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, env: Mapping[str, str] | None = None) -> DistributedPlan:
    """Joins the other processes when there are any. Call before any other jax use; idempotent."""
    plan = plan_distributed(coordinator_address, num_processes, process_id, env=env)
    if not plan.multi_process:
        return plan
    import jax
    if jax.distributed.is_initialized():
        return plan
    # Cross-process collectives on CPU (a no-op for GPU/TPU clients); must precede backend creation.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    log.info("initialising jax.distributed (%s): %s", plan.reason,
             {k: v for k, v in plan.kwargs.items()} or "auto-detect")
    try:
        jax.distributed.initialize(**plan.kwargs)
    except RuntimeError as e:
        raise RuntimeError(f"jax.distributed.initialize failed ({plan.reason}): {e}. It must run before any "
                           "other JAX use (jax.devices(), creating arrays) - a config file or an import that "
                           "touches devices at import time breaks this.") from e
    log.info("process %d of %d: %d local / %d global devices", jax.process_index(), jax.process_count(),
             jax.local_device_count(), jax.device_count())
    return plan


# --- local multi-process harness (tests, debugging multi-host code on one machine) -------------------------
def free_port() -> int:
    """A TCP port that was free a moment ago on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class ProcessResult:
    process_id: int
    returncode: int | None      # None: killed at the timeout (or after a peer failed)
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def format_results(results: Sequence[ProcessResult], tail: int = 3000) -> str:
    """The exit codes and the output tails of every process, for assertion messages."""
    out = []
    for r in results:
        out.append(f"--- process {r.process_id}: returncode {r.returncode}\n[stdout]\n{r.stdout[-tail:]}\n"
                   f"[stderr]\n{r.stderr[-tail:]}")
    return "\n".join(out)


def spawn_local(num_processes: int, args: Sequence[str], *, devices_per_process: int | None = None,
                timeout: float = 120.0, env: Mapping[str, str] | None = None, cwd: str | None = None,
                module: str = "jaxsuite.launch", platform: str | None = "cpu",
                peer_failure_grace: float = 10.0,
                on_start: Callable[[list[subprocess.Popen]], None] | None = None) -> list[ProcessResult]:
    """Runs `python -m <module> *args` as `num_processes` processes on this machine, joined through a
    coordinator on a free loopback port (--coordinator_address/--num_processes/--process_id are appended),
    and waits for all of them.

    devices_per_process sets --xla_force_host_platform_device_count for each (CPU). When one process fails,
    the others are killed after `peer_failure_grace` seconds (they would otherwise wait for it until jax's
    heartbeat timeout); at `timeout` every process still running is killed. Killed processes report
    returncode None. `on_start(processes)` runs once all have started (a test may signal one of them).
    """
    port = free_port()
    base_env = dict(os.environ)
    base_env.update(env or {})
    if devices_per_process is not None:
        flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", base_env.get("XLA_FLAGS", ""))
        base_env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices_per_process}".strip()
    if platform is not None:
        base_env["JAX_PLATFORMS"] = platform
    for var in (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID):
        base_env.pop(var, None)
    procs, files = [], []
    with tempfile.TemporaryDirectory(prefix="jaxsuite-spawn-") as tmp:
        for pid in range(num_processes):
            out = open(os.path.join(tmp, f"{pid}.out"), "w+")
            err = open(os.path.join(tmp, f"{pid}.err"), "w+")
            cmd = [sys.executable, "-m", module, *args, "--coordinator_address", f"127.0.0.1:{port}",
                   "--num_processes", str(num_processes), "--process_id", str(pid)]
            procs.append(subprocess.Popen(cmd, stdout=out, stderr=err, env=base_env, cwd=cwd))
            files.append((out, err))
        if on_start is not None:
            on_start(procs)
        deadline = time.monotonic() + timeout
        failed_at = None
        killed: set[int] = set()
        while any(p.poll() is None for p in procs):
            now = time.monotonic()
            if failed_at is None and any(p.poll() not in (None, 0) for p in procs):
                failed_at = now
            if now > deadline or (failed_at is not None and now > failed_at + peer_failure_grace):
                for i, p in enumerate(procs):
                    if p.poll() is None:
                        p.kill()
                        killed.add(i)
                break
            time.sleep(0.05)
        results = []
        for i, (p, (out, err)) in enumerate(zip(procs, files)):
            p.wait()
            out.seek(0)
            err.seek(0)
            results.append(ProcessResult(i, None if i in killed else p.returncode, out.read(), err.read()))
            out.close()
            err.close()
    return results
