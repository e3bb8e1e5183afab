"""The sandbox's first process: confines itself, then becomes the Python that runs the untrusted code.

Run by jaxsuite.agents.sandbox as `python -I -S sandbox_launch.py <json>` (stdlib only, no site-packages, a
fresh single-threaded process: nothing here may import jaxsuite). In order:
  1. resource limits: CPU seconds, address space, file size, open files, no core dumps, and (with a
     dedicated uid) a process count, which is what stops a fork bomb;
  2. network: a new, empty network namespace (CLONE_NEWNET: no interface but a loopback that is down). As
     root that works directly; otherwise inside a new user namespace where the kernel allows one. Where
     neither is allowed the network is refused in Python only (socket creation raises): a guard against
     accidents, not a boundary, and the result says so (`isolation`);
  3. identity: as root, drop to the run's dedicated unprivileged uid/gid, so the code cannot write the
     project, the home folder or other runs' folders, nor read the parent's /proc/<pid>/environ;
  4. exec: the interpreter with a clean environment, in the run's private folder.
Steps 3-4 happen in a forked child; this process stays as the run's reaper: it enforces the wall clock, then
kills everything the run started (every process of the dedicated uid, or the run's process group) and waits
for all of it, so nothing a run forked outlives it or leaks into the next. It writes the isolation reached,
the run's exit status and whether the wall clock stopped it to the status pipe.
"""
import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
# World-writable places the code could otherwise leave files in: empty and private to the run.
SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")

# Refuses sockets in the child's Python when no network namespace could be made.
SOCKET_GUARD = """
import socket as _s
def _refuse(*a, **k):
    raise OSError(101, "network access is disabled in the sandbox")
class _NoSocket(_s.socket):
    def __init__(self, family=-1, *a, **k):
        if family in (-1, _s.AF_INET, _s.AF_INET6):
            _refuse()
        super().__init__(family, *a, **k)
_s.socket = _NoSocket
_s.create_connection = _refuse
_s.getaddrinfo = _refuse
"""


def _unshare(flags: int) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.unshare(flags) == 0


def _mount(source, target, fstype, flags, data=None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    enc = lambda v: v.encode() if isinstance(v, str) else v
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _mask(folder: str, keep: list[str]) -> None:
    """Covers `folder` with an empty tmpfs, then binds back only the paths in `keep` (each under `folder`),
    opened beforehand so the originals stay reachable once covered."""
    keep = sorted({p for p in keep if os.path.exists(p)})
    keep = [p for p in keep if not any(p != o and p.startswith(o.rstrip("/") + "/") for o in keep)]  # outermost
    handles = [(path, os.open(path, os.O_PATH)) for path in keep]
    _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m" if folder in SCRATCH else
           "mode=755,size=1m")
    for path, fd in handles:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "a").close()
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)


def private_filesystem(spec: dict) -> None:
    """A mount namespace of the run's own: folders the dedicated uid could not enter but whose contents it needs
    (the interpreter under /root, say) are replaced by a view holding only those contents, and the
    world-writable scratch folders are empty and private (the run's folder and packages bound back)."""
    if not _unshare(CLONE_NEWNS):
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)          # nothing done here propagates to the host
    needed = [os.path.realpath(p) for p in [spec["workdir"], *spec.get("python_path", []), *spec.get("needed", [])]]
    scratch = [f for f in SCRATCH if os.path.isdir(f)]
    under = lambda path, folder: path.startswith(folder.rstrip("/") + "/")
    for folder in scratch:                                # what the run needs there is bound back
        _mask(folder, [p for p in needed if under(p, folder)])
    for folder, keep in spec.get("reveal", {}).items():   # (under a scratch folder: done just above)
        if not any(under(folder, f) or folder == f for f in scratch):
            _mask(folder, keep)


def _write_id_maps(uid: int, gid: int) -> None:
    """Inside a fresh user namespace: map our outer ids to themselves so files keep their owners."""
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")


def isolate_network() -> str:
    if _unshare(CLONE_NEWNET):
        return "network-namespace"
    uid, gid = os.getuid(), os.getgid()
    if _unshare(CLONE_NEWUSER | CLONE_NEWNET):
        _write_id_maps(uid, gid)
        return "user+network-namespace"
    return "python-socket-guard"


def set_limits(spec: dict) -> None:
    def limit(which, value):
        if value is not None:
            resource.setrlimit(which, (int(value), int(value)))
    cpu = spec.get("cpu_seconds")
    if cpu is not None:   # soft: SIGXCPU (reported as a timeout); hard a second later: SIGKILL
        resource.setrlimit(resource.RLIMIT_CPU, (int(cpu), int(cpu) + 1))
    limit(resource.RLIMIT_AS, spec.get("memory_bytes"))
    limit(resource.RLIMIT_FSIZE, spec.get("file_bytes"))
    limit(resource.RLIMIT_NOFILE, spec.get("open_files"))
    limit(resource.RLIMIT_CORE, 0)
    if spec.get("uid") is not None:
        limit(resource.RLIMIT_NPROC, spec.get("processes"))


PR_SET_CHILD_SUBREAPER = 36


class _WallClock(Exception):
    pass


def _on_alarm(*_):
    raise _WallClock


def sweep(uid: int | None, group: int) -> None:
    """SIGKILL to everything the run started: with a dedicated uid, every process of that uid (kill(-1) from
    that uid reaches exactly those, wherever they moved); otherwise the run's process group."""
    if uid is None:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            for _ in range(3):
                os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        os._exit(0)
    os.waitpid(pid, 0)


def launch(spec: dict) -> None:
    status = os.fdopen(spec["status_fd"], "w")
    network = isolate_network() if spec.get("no_network", True) else "none"
    uid = spec.get("uid")
    if uid is not None:               # as root: the run's own filesystem view
        private_filesystem(spec)
    # Orphans of the run are re-parented here (not to the machine's init, which may never reap them), so every
    # process it forks is waited for and none lingers as a zombie holding a pid and the uid's process count.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    child = os.fork()
    if child == 0:
        status.close()
        os.setpgid(0, 0)
        if uid is not None:           # the run's unprivileged identity
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        set_limits(spec)              # after setuid: RLIMIT_NPROC counts the new uid's processes
        os.chdir(spec["workdir"])
        prelude = [SOCKET_GUARD] if network == "python-socket-guard" else []
        prelude.append(f"import sys; sys.path[:0] = {spec.get('python_path', [])!r}")
        prelude.append("import runpy; sys.argv = ['main.py']; runpy.run_path('main.py', run_name='__main__')")
        os.execve(spec["python"], [spec["python"], "-I", "-c", "\n".join(prelude)], spec["env"])
    sys.stdout.close()                # the run holds the output pipes; the launcher writes only its status
    sys.stderr.close()
    os.close(1)
    os.close(2)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, float(spec["wall_seconds"]))
    returncode, timed_out = None, False
    try:
        while returncode is None:
            pid, wait_status = os.waitpid(-1, 0)
            if pid == child:
                returncode = os.waitstatus_to_exitcode(wait_status)
    except _WallClock:
        timed_out = True
    signal.setitimer(signal.ITIMER_REAL, 0)
    for _ in range(100):              # kill, then reap; again while anything forked between the two
        sweep(uid, child)
        try:
            while os.waitpid(-1, os.WNOHANG)[0] != 0:
                pass
        except ChildProcessError:
            break                     # no process of the run is left
    status.write(json.dumps({"network": network, "identity": "dedicated-uid" if uid is not None else "same-user",
                             "returncode": returncode, "timed_out": timed_out}))
    status.close()


if __name__ == "__main__":
    launch(json.loads(sys.argv[1]))
