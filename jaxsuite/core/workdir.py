"""The job contract in code: one `Workdir` that every job writes its outputs through.

    def run(config, workdir):
        wd = Workdir.start(workdir)          # the folder exists, the clock runs, an old finished-marker is gone
        ...                                  # train (checkpoints in wd.checkpoints, wd.metrics_writer()), plot
        return wd.finish(config, {"eval_loss": ...})   # results.json, then the finished-marker

A workdir holds, for every job alike:
  results.json     {"config": the resolved config, "wall_seconds": this run's wall time, <headline figures>}
  metrics.jsonl    one JSON line per logged step (jaxsuite.core.metrics.MetricsWriter)
  checkpoints/     orbax checkpoints (jaxsuite.core.checkpoint.Checkpointer)
  *.png            plots
  finished.json    written last, after everything else: the job completed with the config whose hash it
                   holds. A caller that runs jobs in sub-folders (the HALO pipeline's teacher and stages, the
                   CPMobius runs) skips one whose marker matches the config it would run it with.

Only the primary process (jax process 0) writes; on the others every write is a no-op, so a job calls the
same code on every process. All I/O goes through etils.epath with atomic writes (jaxsuite.core.files), so a
workdir may be a local folder or a bucket URL (gs://...).
"""
from __future__ import annotations

import io
import json
import os
import time
from typing import Any, Mapping

from jaxsuite.core import files
from jaxsuite.core.config_utils import config_hash, config_to_dict
from jaxsuite.core.metrics import MetricsWriter, pyplot, save_figure, to_python

RESULTS = "results.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
FINISHED = "finished.json"
# results.json's keys that every job has, before its own headline figures
CONTRACT_KEYS = ("config", "wall_seconds")

_MISSING = object()


class Workdir:
    """A job's output folder (local path or bucket URL). `os.fspath(wd)` / `str(wd)` give its path.

    `primary` (default: jax process 0) decides whether this process writes; reads work everywhere.
    """

    def __init__(self, path: str | os.PathLike, *, primary: bool | None = None):
        if isinstance(path, Workdir):
            primary = path.primary if primary is None else primary
        self.root = os.fspath(path)
        self.primary = files.is_primary() if primary is None else bool(primary)
        self.started = time.time()

    @classmethod
    def start(cls, path: str | os.PathLike, *, primary: bool | None = None) -> "Workdir":
        """The workdir of a job that starts now: creates the folder and removes a finished-marker left by an
        earlier run (until this run finishes, the folder does not hold a finished job)."""
        wd = cls(path, primary=primary)
        if wd.primary:
            files.makedirs(wd.root)
            wd.clear_finished()
        return wd

    # -- paths ------------------------------------------------------------------------------------------
    def __fspath__(self) -> str:
        return self.root

    def __str__(self) -> str:
        return self.root

    def __repr__(self) -> str:
        return f"Workdir({self.root!r})"

    def path(self, *names: str) -> str:
        """The path of `names` inside the workdir, as a string (a bucket URL keeps its scheme)."""
        return files.join_path(self.root, *names)

    def sub(self, *names: str) -> "Workdir":
        """A sub-folder as a Workdir of its own (same primary process); nothing is created."""
        return Workdir(self.path(*names), primary=self.primary)

    @property
    def checkpoints(self) -> str:
        return self.path(CHECKPOINTS)

    @property
    def remote(self) -> bool:
        return files.is_remote(self.root)

    def exists(self, name: str) -> bool:
        return files.exists(self.path(name))

    def elapsed(self) -> float:
        """Seconds since this Workdir was made (the start of the job's run)."""
        return time.time() - self.started

    # -- reading ----------------------------------------------------------------------------------------
    def read_text(self, name: str) -> str:
        return files.read_text(self.path(name))

    def read_bytes(self, name: str) -> bytes:
        return files.read_bytes(self.path(name))

    def read_json(self, name: str, default: Any = _MISSING) -> Any:
        """The parsed JSON file; `default` when it is missing or unreadable (else the error propagates)."""
        try:
            return json.loads(self.read_text(name))
        except (FileNotFoundError, OSError, json.JSONDecodeError):
            if default is _MISSING:
                raise
            return default

    def read_jsonl(self, name: str) -> list[dict]:
        """The records of a JSON-lines file; a torn line (an interrupted write) is skipped. [] when missing."""
        try:
            text = self.read_text(name)
        except (FileNotFoundError, OSError):
            return []
        rows = []
        for line in text.splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    # -- writing (primary process only; each returns the path written, or None on other processes) -------
    def write_bytes(self, name: str, data: bytes) -> str | None:
        return files.atomic_write_bytes(self.path(name), data) if self.primary else None

    def write_text(self, name: str, text: str) -> str | None:
        return files.atomic_write_text(self.path(name), text) if self.primary else None

    def write_json(self, name: str, obj: Any) -> str | None:
        """JSON of `obj` (jax / numpy values become plain Python), indented and key-sorted."""
        return self.write_text(name, json.dumps(to_python(obj), indent=2, sort_keys=True) + "\n")

    def append_jsonl(self, name: str, record: Mapping[str, Any]) -> str | None:
        """Adds one JSON line. The file is rewritten whole through a temporary name (a bucket object cannot
        be appended to), so a crash leaves the old lines or the old lines plus this one."""
        if not self.primary:
            return None
        try:
            text = self.read_text(name)
        except (FileNotFoundError, OSError):
            text = ""
        if text and not text.endswith("\n"):   # a torn last line of a crashed writer stays on its own line
            text += "\n"
        return self.write_text(name, text + json.dumps(to_python(dict(record))) + "\n")

    def save_figure(self, fig, name: str, **savefig_kwargs) -> str | None:
        """Writes a matplotlib figure as PNG (primary only) and closes it on every process."""
        if not self.primary:
            pyplot().close(fig)
            return None
        return save_figure(fig, self.path(name), **savefig_kwargs)

    def save_npz(self, name: str, **arrays) -> str | None:
        """numpy arrays as one .npz file (primary only)."""
        import numpy as np
        if not self.primary:
            return None
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return self.write_bytes(name, buf.getvalue())

    def load_npz(self, name: str) -> dict:
        import numpy as np
        with np.load(io.BytesIO(self.read_bytes(name))) as z:
            return {k: z[k] for k in z.files}

    def metrics_writer(self, *, resume_step: int | None = None, filename: str = METRICS) -> MetricsWriter:
        """metrics.jsonl's writer; `resume_step` drops lines an interrupted run wrote after that step."""
        return MetricsWriter(self.root, resume_step=resume_step, filename=filename, primary=self.primary)

    # -- results and the finished-marker ----------------------------------------------------------------
    def results(self, config: Any, figures: Mapping[str, Any]) -> dict[str, Any]:
        """results.json's content: the resolved config, this run's wall time, then `figures`."""
        clash = [k for k in CONTRACT_KEYS if k in figures]
        if clash:
            raise ValueError(f"a job's headline figures may not use the contract's keys {clash}")
        out: dict[str, Any] = {"config": config_to_dict(config) if config is not None else None,
                               "wall_seconds": self.elapsed()}
        out.update({str(k): to_python(v) for k, v in figures.items()})
        return out

    def write_results(self, config: Any, figures: Mapping[str, Any]) -> dict[str, Any]:
        """Writes results.json (primary only) and returns its content (on every process)."""
        results = self.results(config, figures)
        self.write_json(RESULTS, results)
        return results

    def read_results(self) -> dict[str, Any] | None:
        return self.read_json(RESULTS, default=None)

    def finish(self, config: Any, figures: Mapping[str, Any]) -> dict[str, Any]:
        """The end of a job: results.json, then the finished-marker for `config`. Returns the results."""
        results = self.write_results(config, figures)
        self.mark_finished(config)
        return results

    def mark_finished(self, config: Any = None) -> str | None:
        marker = {"config_hash": config_hash(config) if config is not None else None, "time": time.time()}
        return self.write_json(FINISHED, marker)

    def clear_finished(self) -> None:
        if self.primary and self.exists(FINISHED):
            files.as_path(self.path(FINISHED)).unlink(missing_ok=True)

    def is_finished(self, config: Any = None) -> bool:
        """True when a job completed here (its finished-marker exists) and, if `config` is given, completed
        with that config (the same hash), so running it again would redo finished work."""
        marker = self.read_json(FINISHED, default=None)
        if not isinstance(marker, dict):
            return False
        return config is None or marker.get("config_hash") == config_hash(config)
