"""File I/O for what jobs write and read, on local folders and bucket URLs (gs://...) alike.

Everything goes through `etils.epath` (the path layer orbax uses for checkpoints), so a workdir may be a
local folder or a bucket. Writes are atomic: the bytes go to a temporary name in the same folder, which is
then renamed over the target, so a reader (or a job resumed after a crash) sees the old file or the whole
new one, never a torn one. On a bucket the rename is a copy + delete, and the final object is still written
whole.
"""
from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

from etils import epath

PathLike = str | os.PathLike


def is_primary() -> bool:
    """True on process 0 (and in single-process runs): the one process that writes a job's files."""
    import jax
    return jax.process_index() == 0


def is_remote(path: PathLike) -> bool:
    return "://" in os.fspath(path)


def as_path(path: PathLike) -> epath.Path:
    return epath.Path(os.fspath(path))


def join_path(base: PathLike, *names: str) -> str:
    """`base/name/...` as a string; a bucket URL keeps its scheme (os.path.join would be wrong on Windows)."""
    out = os.fspath(base)
    for name in names:
        out = f"{out.rstrip('/')}/{name}" if is_remote(out) else os.path.join(out, name)
    return out


def cache_dir() -> Path:
    """Where jaxsuite caches what it builds once per machine (trained tokenizers, pre-trained teachers):
    $JAXSUITE_CACHE, else ~/.cache/jaxsuite. Always local."""
    return Path(os.environ.get("JAXSUITE_CACHE") or Path.home() / ".cache" / "jaxsuite")


def exists(path: PathLike) -> bool:
    return as_path(path).exists()


def makedirs(path: PathLike) -> str:
    as_path(path).mkdir(parents=True, exist_ok=True)
    return os.fspath(path)


def read_text(path: PathLike) -> str:
    return as_path(path).read_text()


def read_bytes(path: PathLike) -> bytes:
    return as_path(path).read_bytes()


def _fsync(f) -> None:
    """Flush to the disk where the file object is a local file; bucket file objects have no descriptor."""
    try:
        f.flush()
        os.fsync(f.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass


def atomic_write_bytes(path: PathLike, data: bytes) -> str:
    """Writes `data` to `path` via a temporary sibling and a rename; creates the parent folder. Returns the
    path as a string."""
    target = as_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        with tmp.open("wb") as f:
            f.write(data)
            _fsync(f)
        tmp.replace(target)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
    return os.fspath(path)


def atomic_write_text(path: PathLike, text: str) -> str:
    return atomic_write_bytes(path, text.encode("utf-8"))


def remove(path: PathLike) -> None:
    """Deletes a file (local or bucket); a missing one is not an error."""
    p = as_path(path)
    if p.exists():
        p.unlink()


def _copy_tree(src: epath.Path, dst: epath.Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        entry.copy(dst / entry.name) if entry.is_file() else _copy_tree(entry, dst / entry.name)


def replace_folder(new: PathLike, target: PathLike, keep=lambda name: False) -> None:
    """Renames the finished folder `new` over `target` (local folders). The old target's entries that `keep(name)`
    accepts and `new` lacks (tokenizer files, a README) are first copied into `new`; the old folder is moved
    aside before the rename and deleted after, so at every moment one complete folder is at `target` or beside it."""
    new, target = as_path(new), as_path(target)
    old = None
    if target.is_dir():
        for entry in target.iterdir():
            if keep(entry.name) and not (new / entry.name).exists():
                entry.copy(new / entry.name) if entry.is_file() else _copy_tree(entry, new / entry.name)
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
        target.rename(old)
    new.rename(target)
    if old is not None:
        old.rmtree(missing_ok=True)


def copy_file(src: PathLike, dst: PathLike) -> str:
    """Copies one file (either side local or in a bucket), atomically at the destination."""
    return atomic_write_bytes(dst, read_bytes(src))


def read_json_object(path: PathLike, *, missing: str = "") -> dict:
    """A JSON file holding one object (local or a bucket). A missing file raises FileNotFoundError
    (`path does not exist`, or `missing` where the caller can say more); bad JSON or another value raises
    ValueError naming the file, line and column."""
    import json
    path = as_path(path)
    if not path.exists():
        raise FileNotFoundError(missing or f"{path} does not exist")
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def iter_jsonl_objects(path: PathLike, *, error: type[Exception] = ValueError):
    """(line number, object) for every non-blank line of a JSON-lines file (local or a bucket); the first line
    that is not a JSON object raises `error` naming the file and line: `path:3: malformed JSON (...)`."""
    import json
    with as_path(path).open("r") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{path}:{number}: malformed JSON ({e.msg}, column {e.colno})") from None
            if not isinstance(row, dict):
                raise error(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield number, row
