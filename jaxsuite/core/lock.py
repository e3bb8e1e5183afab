"""One run per workdir: a lock file that names its holder, taken by the launcher on the primary process.

    with WorkdirLock(workdir):       # raises WorkdirLocked if another live run holds it
        job(config, workdir)

The lock is `<workdir>/run.lock`, JSON {"host", "pid", "started", "command"}. A second run on the same workdir
stops at once with a message naming the holder. A lock left by a run that was killed (SIGKILL, a lost VM) is
taken over with a warning when its holder is provably gone: same host and no such process. A holder on another
host cannot be checked from here, so that lock stands until it is removed by hand (the message says how).

Local workdirs are locked atomically (O_EXCL). On a bucket there is no exclusive create through epath, so the
lock is written and read back: two runs started within the same second may both pass. Only the primary
process (jax process 0) takes the lock: the other hosts of a multi-host run share its workdir.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from typing import Any

from jaxsuite.core import files

log = logging.getLogger("jaxsuite.lock")

LOCK = "run.lock"


class WorkdirLocked(RuntimeError):
    """Another run holds the workdir."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # someone else's process: alive
        return True
    return True


def describe(holder: dict[str, Any]) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("started", 0))))
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {started}"


class WorkdirLock:
    """The lock on `workdir` for this process (re-entrant within it). `primary=False` makes it a no-op."""

    def __init__(self, workdir: str | os.PathLike, *, primary: bool | None = None):
        self.workdir = os.fspath(workdir)
        self.path = files.join_path(self.workdir, LOCK)
        self.primary = files.is_primary() if primary is None else bool(primary)
        self.held = False
        self._created = False       # this instance wrote the lock (a re-entrant one leaves it to its creator)
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                   "command": " ".join(sys.argv)[:500]}

    # -- reading the holder
    def holder(self) -> dict[str, Any] | None:
        """The lock's contents, or None when unlocked. An unreadable lock file counts as a stale one."""
        if not files.exists(self.path):
            return None
        try:
            return json.loads(files.read_text(self.path))
        except (OSError, ValueError):
            return {"host": "?", "pid": -1, "started": 0.0, "unreadable": True}

    def _is_mine(self, holder: dict[str, Any]) -> bool:
        return holder.get("host") == self.me["host"] and holder.get("pid") == self.me["pid"]

    def _is_stale(self, holder: dict[str, Any]) -> bool:
        if holder.get("unreadable"):
            return True
        return holder.get("host") == self.me["host"] and not _pid_alive(int(holder.get("pid", -1)))

    # -- taking and releasing
    def acquire(self) -> "WorkdirLock":
        if not self.primary or self.held:
            return self
        files.makedirs(self.workdir)
        text = json.dumps(self.me)
        for _ in range(2):           # a stale lock is removed once, then the create is tried again
            if self._create(text):
                self.held = self._created = True
                return self
            holder = self.holder()
            if holder is None:       # released between our create and our read
                continue
            if self._is_mine(holder):
                self.held = True
                return self
            if not self._is_stale(holder):
                raise WorkdirLocked(
                    f"{self.workdir} is in use by another run ({describe(holder)}: {holder.get('command', '')}); "
                    f"wait for it, give this run another --workdir, or, if that run is gone, delete {self.path}")
            log.warning("taking over the lock of a run that is gone (%s) in %s", describe(holder), self.workdir)
            files.remove(self.path)
        raise WorkdirLocked(f"could not lock {self.workdir}: {self.path} keeps reappearing (another run starting?)")

    def _create(self, text: str) -> bool:
        """Creates the lock file unless it exists; True when this call created it."""
        if not files.is_remote(self.path):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                f.write(text)
            return True
        if files.exists(self.path):
            return False
        files.atomic_write_text(self.path, text)
        return files.read_text(self.path) == text     # the last writer wins on a bucket: check it was us

    def release(self) -> None:
        if not self.held:
            return
        holder = self.holder()
        if self._created and holder is not None and self._is_mine(holder):
            files.remove(self.path)
        self.held = self._created = False

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
