"""Running untrusted generated Python: a confined subprocess per run, many runs at once.

    pool = SandboxPool(workers=4)
    result = pool.run("print(sum(range(10)))")                 # -> ExecutionResult(outcome="ok", stdout="45\\n")
    results = pool.map(programs, limits=Limits(wall_seconds=5))

Each run gets, in a subprocess (jaxsuite/agents/sandbox_launch.py sets it up before the code starts):
  - a wall-clock timeout (the whole process group is killed), and CPU-time, address-space, file-size and
    open-file limits (`resource.setrlimit`);
  - no network: an empty network namespace, as root or through a user namespace where the kernel allows it;
    otherwise sockets refused in Python only (not a boundary). `ExecutionResult.isolation` says which;
  - as root, its own unprivileged uid (one per worker slot): it cannot write anything it was not given, read
    the parent's environment through /proc, or fork past `Limits.processes`; every process of that uid is
    killed when the run ends, so nothing it started survives into the next run;
  - a private temporary folder, its working directory, HOME and TMPDIR, deleted afterwards;
  - a clean environment (PATH, HOME, TMPDIR, locale, one BLAS thread): no inherited variables, no secrets;
  - stdout and stderr captured up to `Limits.output_bytes` each (the rest is read and dropped, `truncated`).
The outcome is "ok" (exit 0), "error" (non-zero exit: an exception), "timeout" (wall clock or CPU time),
"memory" (an allocation failed at the address-space limit) or "killed" (another signal).

On a machine without root or user namespaces the uid and the network namespace are unavailable: the run is
then confined by limits, the process group and the Python socket guard only, and `isolation` reports it.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

LAUNCHER = Path(__file__).with_name("sandbox_launch.py")
# Worker slot k runs as uid FIRST_UID + k when the parent is root: ids no account uses on a normal system.
FIRST_UID = 61000


@dataclasses.dataclass(frozen=True)
class Limits:
    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_bytes: int = 2 << 30           # address space: numpy + a few arrays fit, a runaway allocation does not
    file_bytes: int = 64 << 20            # largest file the code may write
    output_bytes: int = 64 << 10          # stdout and stderr kept, each
    open_files: int = 256
    processes: int = 64                   # with a dedicated uid: its processes and threads together
    no_network: bool = True


@dataclasses.dataclass(frozen=True)
class ExecutionResult:
    outcome: str                          # ok | error | timeout | memory | killed
    stdout: str
    stderr: str
    exit_code: int | None                 # negative: killed by that signal (subprocess's convention)
    seconds: float
    truncated: bool = False               # stdout or stderr passed Limits.output_bytes
    isolation: dict = dataclasses.field(default_factory=dict)   # {"network": ..., "identity": ..., "uid": ...}

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def observation(self, max_chars: int = 4000) -> str:
        """What a tool call shows the model: output, then the error or the limit that stopped the run."""
        parts = [self.stdout.rstrip()] if self.stdout.strip() else []
        if self.outcome == "error":
            parts.append(self.stderr.strip()[-max_chars // 2:])
        elif self.outcome != "ok":
            parts.append({"timeout": "Execution timed out.", "memory": "Execution ran out of memory.",
                          "killed": f"Execution was killed (signal {-(self.exit_code or 0)})."}[self.outcome])
        if self.truncated:
            parts.append("[output truncated]")
        text = "\n".join(parts) or "(no output)"
        return text if len(text) <= max_chars else text[:max_chars] + "\n[output truncated]"


def clean_environment(workdir: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _drain(stream, cap: int, sink: list, flags: dict) -> None:
    """Reads a pipe to its end, keeping the first `cap` bytes (a chatty program must not block on a full pipe)."""
    kept = 0
    while chunk := stream.read(65536):
        if kept < cap:
            sink.append(chunk[:cap - kept])
        if kept + len(chunk) > cap:
            flags["truncated"] = True
        kept += len(chunk)
    stream.close()


def _classify(code: int | None, stderr: str, timed_out: bool) -> str:
    if timed_out or code == -signal.SIGXCPU:
        return "timeout"
    if code == 0:
        return "ok"
    tail = stderr[-2000:]
    if "MemoryError" in tail or "Unable to allocate" in tail or "bad_alloc" in tail:
        return "memory"
    return "killed" if code is not None and code < 0 else "error"


def run_python(code: str, *, limits: Limits = Limits(), files: dict[str, str | bytes] | None = None,
               python_path: Sequence[str] = (), stdin: str = "", uid: int | None = None,
               root: str | None = None) -> ExecutionResult:
    """Runs `code` as main.py in a fresh private folder (with `files` written beside it) under `limits`.

    python_path: folders prepended to sys.path (packages the code may import; with a dedicated uid the folders
                 themselves must be readable by others, not the folders above them).
    uid: the unprivileged uid to run as (the parent must be root); None runs as the parent's user.
    """
    workdir = tempfile.mkdtemp(prefix="sandbox-", dir=root)
    try:
        work = Path(workdir)
        (work / "main.py").write_text(code)
        for name, content in (files or {}).items():
            target = (work / name).resolve()
            if work.resolve() not in target.parents:
                raise ValueError(f"sandbox file {name!r} is outside the run's folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
        if uid is not None:
            for path in [work, *work.rglob("*")]:
                os.chown(path, uid, uid)
        os.chmod(workdir, 0o700)
        status_read, status_write = os.pipe()
        spec = {"python": sys.executable, "workdir": workdir, "env": clean_environment(workdir),
                "python_path": [str(p) for p in python_path], "uid": uid, "status_fd": status_write,
                "needed": [*interpreter_paths(), *map(str, python_path)],
                "reveal": reveal_plan([*interpreter_paths(), *map(str, python_path)]) if uid is not None else {},
                "cpu_seconds": limits.cpu_seconds, "memory_bytes": limits.memory_bytes,
                "wall_seconds": limits.wall_seconds, "file_bytes": limits.file_bytes, "open_files": limits.open_files, "processes": limits.processes,
                "no_network": limits.no_network}
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(spec)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                pass_fds=(status_write,), start_new_session=True, env={}, cwd=workdir)
        os.close(status_write)
        out, err, flags = [], [], {"truncated": False}
        readers = [threading.Thread(target=_drain, args=(proc.stdout, limits.output_bytes, out, flags), daemon=True),
                   threading.Thread(target=_drain, args=(proc.stderr, limits.output_bytes, err, flags), daemon=True)]
        for r in readers:
            r.start()
        try:
            proc.stdin.write(stdin.encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        try:        # the launcher keeps the wall clock; this is the backstop should it be stuck itself
            proc.wait(timeout=limits.wall_seconds + 30)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
        for r in readers:
            r.join(timeout=5)
        with os.fdopen(status_read) as f:
            status = f.read()
        status = json.loads(status) if status else {"network": "unknown", "identity": "unknown",
                                                     "returncode": proc.returncode, "timed_out": True}
        isolation = {"network": status["network"], "identity": status["identity"], "uid": uid}
        returncode, timed_out = status["returncode"], status["timed_out"]
        stderr = b"".join(err).decode(errors="replace")
        return ExecutionResult(outcome=_classify(returncode, stderr, timed_out),
                               stdout=b"".join(out).decode(errors="replace"), stderr=stderr,
                               exit_code=returncode, seconds=time.monotonic() - start,
                               truncated=flags["truncated"], isolation=isolation)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def reveal_plan(paths: Iterable[str]) -> dict[str, list[str]]:
    """For each of `paths` behind a folder others may not enter (a pyenv under /root, 0700; a virtualenv in a
    0700 temporary folder): that folder -> the paths under it. The launcher covers the folder and shows the
    dedicated uid those paths only, through 0755 folders of its own."""
    targets = sorted({os.path.realpath(p) for p in paths})
    targets = [t for t in targets if not any(t != o and t.startswith(o.rstrip("/") + "/") for o in targets)]
    plan: dict[str, list[str]] = {}
    for target in targets:
        parts = Path(target).parts
        for depth in range(1, len(parts)):
            folder = str(Path(*parts[:depth + 1]))
            if os.path.isdir(folder) and not os.stat(folder).st_mode & 0o001:   # no search permission for others
                if folder != target:
                    plan.setdefault(folder, []).append(target)
                break
    return plan


def interpreter_paths() -> list[str]:
    """What the sandboxed interpreter must reach: its binary, its standard library and its site-packages, and
    any other site-packages folder on sys.path (one a .pth line adds: a virtualenv that borrows another
    environment's packages, as Colab-style installs and the notebook tests do)."""
    import sysconfig
    extra = [p for p in sys.path if p and os.path.basename(os.path.normpath(p)) in ("site-packages", "dist-packages")
             and os.path.isdir(p)]
    return [os.path.realpath(sys.executable), sys.base_prefix, sys.prefix,
            *{sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}, *sorted(set(extra))]


def dedicated_uids_available() -> bool:
    return hasattr(os, "getuid") and os.getuid() == 0


def claim_uid(first: int = FIRST_UID, count: int = 1000) -> tuple[int, int]:
    """A uid no other sandbox on this machine is using, held by an exclusive lock on a file named after it until
    the returned descriptor is closed (or the process dies): two pools, in two processes, never share a uid, so
    one run's sweep can never kill another's processes."""
    import fcntl
    folder = Path(tempfile.gettempdir()) / "jaxsuite-sandbox-uids"
    folder.mkdir(mode=0o700, exist_ok=True)
    for uid in range(first, first + count):
        fd = os.open(folder / f"{uid}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return uid, fd
        except BlockingIOError:
            os.close(fd)
    raise RuntimeError(f"no free sandbox uid in {first}..{first + count - 1}")


class SandboxPool:
    """Runs programs concurrently, `workers` at a time; as root each worker slot has its own uid, claimed for the
    pool's lifetime."""

    def __init__(self, workers: int = 4, *, limits: Limits = Limits(), root: str | None = None,
                 first_uid: int = FIRST_UID):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.limits, self.root = limits, root
        self._slots: queue.Queue = queue.Queue()
        self._locks: list[int] = []
        for _ in range(workers):
            uid = None
            if dedicated_uids_available():
                uid, lock = claim_uid(first_uid)
                self._locks.append(lock)
            self._slots.put(uid)
        self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="sandbox")

    def _run(self, code: str, limits: Limits | None, **kwargs) -> ExecutionResult:
        uid = self._slots.get()
        try:
            return run_python(code, limits=limits or self.limits, uid=uid, root=self.root, **kwargs)
        finally:
            self._slots.put(uid)

    def submit(self, code: str, *, limits: Limits | None = None, **kwargs) -> concurrent.futures.Future:
        return self._executor.submit(self._run, code, limits, **kwargs)

    def run(self, code: str, *, limits: Limits | None = None, **kwargs) -> ExecutionResult:
        return self.submit(code, limits=limits, **kwargs).result()

    def map(self, programs: Iterable[str], *, limits: Limits | None = None, **kwargs) -> list[ExecutionResult]:
        futures = [self.submit(p, limits=limits, **kwargs) for p in programs]
        return [f.result() for f in futures]

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for lock in self._locks:
            os.close(lock)
        self._locks = []

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
