"""Checkpoints of a whole run: train state, data-iterator position, RNG key and metadata, saved together.

One orbax `CheckpointManager` under workdir/checkpoints/<step>/ with four items:
  state  the train-state pytree (NNX State, optax state, plain arrays), saved sharded by every process
  data   the data iterator's `get_state()`, one JSON file per process (each process reads its own shard of
         the data, so each has its own position); written by a small handler so any iterator with
         get_state/set_state works: grain DatasetIterator (dict state), grain DataLoader iterator (bytes
         state) or our own
  meta   JSON: step, config hash, save time, the RNG key (as key data + impl name, so no device placement is
         involved) and whatever small metadata the caller adds

Why orbax: writes are atomic (a step is written into `<step>.orbax-checkpoint-tmp` and renamed when complete,
so a crash leaves a tmp folder that listing and restoring ignore), saves are asynchronous (training continues
while the files are written), and a restore target of ShapeDtypeStructs with shardings restores each array
directly into its shards, also onto a different mesh than the one that saved it.

Restoring a checkpoint into a target of different shapes would fail deep inside tensorstore with a message
that names no parameter, so we compare the saved array metadata with the target first and name every
mismatch (see `CheckpointMismatchError`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

log = logging.getLogger("jaxsuite.checkpoint")

STATE, DATA, META = "state", "data", "meta"


class CheckpointMismatchError(ValueError):
    """The checkpoint's arrays do not fit the restore target (shapes or tree structure)."""


# --- data-iterator state item -----------------------------------------------------------------------------
class IteratorStateHandler(ocp.CheckpointHandler):
    """Saves/restores an iterator's get_state() as process_<i>-of-<n>.json in the item's folder."""

    def save(self, directory: epath.Path, args: "IteratorStateSave") -> None:
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        (directory / name).write_text(json.dumps(args.state))

    def restore(self, directory: epath.Path, args: "IteratorStateRestore") -> Any:
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        path = directory / name
        if not path.exists():
            present = sorted(p.name for p in directory.iterdir()) if directory.exists() else []
            raise ValueError(f"no data-iterator state {name} in {directory} (found {present}): the checkpoint "
                             "was written by a different number of processes")
        payload = json.loads(path.read_text())
        state = payload["state"].encode() if payload["format"] == "bytes" else payload["state"]
        args.iterator.set_state(state)
        if hasattr(args.iterator, "start_prefetch"):   # grain iterators resume prefetching after set_state
            args.iterator.start_prefetch()
        return args.iterator

    def metadata(self, directory: epath.Path) -> None:
        return None

    def finalize(self, directory: epath.Path) -> None:
        pass

    def close(self) -> None:
        pass


@ocp.args.register_with_handler(IteratorStateHandler, for_save=True)
@dataclasses.dataclass
class IteratorStateSave(ocp.args.CheckpointArgs):
    state: Any   # {"format": "json" | "bytes", "state": ...}, captured when save() is called


@ocp.args.register_with_handler(IteratorStateHandler, for_restore=True)
@dataclasses.dataclass
class IteratorStateRestore(ocp.args.CheckpointArgs):
    iterator: Any


def _iterator_state(iterator: Any) -> dict:
    state = iterator.get_state()
    if isinstance(state, bytes):      # grain DataLoader iterators serialise their state to JSON bytes
        return {"format": "bytes", "state": state.decode()}
    return {"format": "json", "state": state}


# --- RNG keys as JSON -------------------------------------------------------------------------------------
def _host_value(x: jax.Array) -> np.ndarray:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if not x.sharding.is_fully_replicated:
            raise ValueError("the RNG key to checkpoint is sharded across processes; pass a replicated key")
        x = x.addressable_data(0)
    return np.asarray(x)


def rng_to_json(key: jax.Array) -> dict:
    """A typed key (jax.random.key) or a raw uint32 key (jax.random.PRNGKey) as a JSON-able dict."""
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    data = _host_value(jax.random.key_data(key) if typed else key)
    return {"typed": bool(typed), "impl": str(jax.random.key_impl(key)) if typed else None,
            "dtype": str(data.dtype), "shape": list(data.shape), "data": data.ravel().tolist()}


def rng_from_json(d: Mapping) -> jax.Array:
    data = np.asarray(d["data"], dtype=d["dtype"]).reshape(d["shape"])
    return jax.random.wrap_key_data(data, impl=d["impl"]) if d["typed"] else jnp.asarray(data)


# --- restore-target checks --------------------------------------------------------------------------------
def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) for every array of a pytree: a restore target from a live state."""
    def one(x):
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        if isinstance(x, (np.ndarray, np.generic)):
            return jax.ShapeDtypeStruct(np.shape(x), x.dtype)
        return x
    return jax.tree.map(one, tree)


def _flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    flat = ocp.tree.to_flat_dict(tree)
    out = {}
    for path, leaf in flat.items():
        shape = getattr(leaf, "shape", None)
        if shape is not None:
            out[".".join(str(p) for p in path)] = tuple(shape)
    return out


def check_compatible(saved_tree_metadata: Any, abstract_state: Any, where: str = "checkpoint") -> None:
    """Raises CheckpointMismatchError naming each parameter whose saved shape differs from the target's,
    and parameters present on one side only."""
    saved = _flat_shapes(saved_tree_metadata)
    target = _flat_shapes(ocp.tree.serialize_tree(abstract_state, keep_empty_nodes=True))
    problems = []
    for name in sorted(set(saved) & set(target)):
        if saved[name] != target[name]:
            problems.append(f"parameter {name!r}: shape {saved[name]} in the checkpoint, {target[name]} in the "
                            "restore target")
    only_saved, only_target = sorted(set(saved) - set(target)), sorted(set(target) - set(saved))
    if only_target:
        problems.append(f"missing from the checkpoint: {only_target[:10]}" + (" ..." if len(only_target) > 10 else ""))
    if only_saved:
        problems.append(f"in the checkpoint but not in the restore target: {only_saved[:10]}"
                        + (" ..." if len(only_saved) > 10 else ""))
    if problems:
        raise CheckpointMismatchError(f"{where} does not match the restore target:\n  " + "\n  ".join(problems))


def _first_line(e: BaseException, limit: int = 300) -> str:
    """An exception's first non-empty line, shortened: orbax and TensorStore errors run to many lines."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return (lines[0] if lines else "")[:limit]


# --- the checkpointer -------------------------------------------------------------------------------------
class Checkpointer:
    """Saves and restores (state, data-iterator state, RNG key, metadata) under workdir/checkpoints.

        ckpt = Checkpointer(workdir, max_to_keep=cfg.train.keep_checkpoints, config=cfg)
        restored = ckpt.restore_latest(abstract_state, data_iterator=it)   # abstract: ShapeDtypeStructs
        if restored:                                                       # carrying NamedShardings
            step, state, extra = restored; rng = extra["rng"]
        ...
        if step % cfg.train.checkpoint_every == 0 or step == cfg.train.steps:
            ckpt.save(step, state, data_iterator=it, rng=rng, metadata={"loss": float(loss)})
        ckpt.close()   # waits for the last asynchronous save

    Every process must call save/restore (the state is sharded over all of them). The caller decides when to
    save; `save` skips (returns False) a step that is already saved.
    """

    def __init__(self, workdir: str | os.PathLike, *, max_to_keep: int | None = 3, config: Any = None,
                 subdir: str = "checkpoints", async_save: bool = True):
        from jaxsuite.core.config_utils import config_hash   # same floor

        path = os.fspath(workdir)
        self.directory = epath.Path(path.rstrip("/") + "/" + subdir if "://" in path
                                    else os.path.abspath(os.path.join(path, subdir)))
        self.config_hash = config_hash(config) if config is not None else None
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(max_to_keep),
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,   # leftovers of a crashed save are removed at start
            create=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={STATE: ocp.StandardCheckpointHandler(), META: ocp.JsonCheckpointHandler(),
                           DATA: IteratorStateHandler()})

    # -- queries
    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    # -- save
    def save(self, step: int, state: Any, *, data_iterator: Any = None, rng: jax.Array | None = None,
             metadata: Mapping[str, Any] | None = None) -> bool:
        """Starts saving `state` (+ iterator position, rng, metadata) as `step`; returns False if that step
        exists already. The iterator state is captured now, so the iterator may advance right after."""
        step = int(step)
        if step in self._manager.all_steps():
            log.info("checkpoint step %d exists in %s; not saving it again", step, self.directory)
            return False
        meta = {"step": step, "config_hash": self.config_hash, "time": time.time(),
                "rng": rng_to_json(rng) if rng is not None else None,
                "has_data": data_iterator is not None, "metadata": dict(metadata or {})}
        items = {STATE: ocp.args.StandardSave(state), META: ocp.args.JsonSave(meta)}
        if data_iterator is not None:
            items[DATA] = IteratorStateSave(_iterator_state(data_iterator))
        saved = self._manager.save(step, args=ocp.args.Composite(**items), force=True)
        if saved:
            log.info("saving checkpoint step %d to %s", step, self.directory)
        return bool(saved)

    # -- restore
    def restore(self, step: int, abstract_state: Any, data_iterator: Any = None) -> tuple[int, Any, dict]:
        """Restores `step` into the shapes/dtypes/shardings of `abstract_state` (ShapeDtypeStructs with
        shardings, or live arrays whose shardings to reuse). Returns (step, state, extra) with
        extra = {"rng": key | None, "metadata": dict, "config_hash": str | None, "data_restored": bool}."""
        step = int(step)
        abstract_state = abstract_like(abstract_state)
        where = f"checkpoint step {step} in {self.directory}"
        tree_meta = self._manager.item_metadata(step)[STATE]
        if tree_meta is None:
            raise FileNotFoundError(f"{where} has no '{STATE}' item")
        check_compatible(getattr(tree_meta, "tree", tree_meta), abstract_state, where)
        step_dir = self.directory / str(step)
        has_data = (step_dir / DATA).exists()
        items = {STATE: ocp.args.StandardRestore(abstract_state), META: ocp.args.JsonRestore()}
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        # the iterator only after the state restored: a checkpoint that fails leaves the iterator untouched
        if data_iterator is not None and has_data:
            self._manager.restore(step, args=ocp.args.Composite(**{DATA: IteratorStateRestore(data_iterator)}))
        elif data_iterator is not None:
            log.warning("%s holds no data-iterator state; the data iterator starts from its current position",
                        where)
        meta = restored[META] or {}
        if self.config_hash and meta.get("config_hash") and meta["config_hash"] != self.config_hash:
            log.warning("%s was written with a different config (hash %s, now %s)", where,
                        meta["config_hash"], self.config_hash)
        extra = {"rng": rng_from_json(meta["rng"]) if meta.get("rng") else None,
                 "metadata": meta.get("metadata", {}), "config_hash": meta.get("config_hash"),
                 "data_restored": data_iterator is not None and has_data}
        log.info("restored %s", where)
        return step, restored[STATE], extra

    def restore_latest(self, abstract_state: Any, data_iterator: Any = None) -> tuple[int, Any, dict] | None:
        """Restores the newest checkpoint that restores, or returns None when there is none (fresh start).

        A checkpoint that fails to restore (a truncated or deleted file, unreadable metadata) is reported in one
        line, moved aside to `<checkpoints>.unreadable/<step>-<time>` (kept, not deleted: a transient read error
        can be undone by moving it back), and the next older one is tried. A checkpoint of
        another model (CheckpointMismatchError: wrong shapes) stops the run instead: it is intact, and the
        workdir or the config is what is wrong."""
        self._manager.reload()   # another process/run may have written since this manager was created
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                return self.restore(step, abstract_state, data_iterator)
            except CheckpointMismatchError:
                raise
            except Exception as e:    # noqa: BLE001 - any failure to read it makes this checkpoint unusable
                aside = self._move_aside(step)
                log.warning("checkpoint step %d does not restore (%s: %s); moved to %s, trying the one before",
                            step, type(e).__name__, _first_line(e), aside)
        self._manager.reload()
        return None

    def _move_aside(self, step: int) -> str:
        """Moves checkpoint `step` out of the manager's folder (primary process only); returns where to."""
        src = self.directory / str(step)
        dst_root = self.directory.parent / (self.directory.name + ".unreadable")
        dst = dst_root / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        if jax.process_index() == 0 and src.exists():
            dst_root.mkdir(parents=True, exist_ok=True)
            src.rename(dst)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f"jaxsuite checkpoint {step} moved aside")
        self._manager.reload()
        return str(dst)

    # -- lifetime
    def wait_until_finished(self) -> None:
        """Blocks until pending asynchronous saves are committed (call before exiting)."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
