"""The real decoder and train step across processes: importable as `decoder_fixture_jobs` with this folder on
the path (see decoder_config.py for the command).

`decoder_train_steps` builds a tiny CausalLM with `init_model` on a mesh over the devices of all processes,
creates the train state with `create_train_state` and runs `make_train_step` on a fixed global batch of the
training-batch contract. Every process builds the same global batch with numpy and hands jax only the rows
its own devices hold, as a per-process data loader would. The losses and digests of the initial and final
parameters go to result_<process>.json, so a test can compare a 2-process run with a 1-process run.
"""
from __future__ import annotations

import json
import os

import numpy as np


def make_global_batch(seed: int, batch: int, length: int, vocab: int) -> dict[str, np.ndarray]:
    """A packed batch [B, T]: each row holds 1-4 documents (segments 1, 2, ...) then padding (segment 0).

    A document of L positions is L + 1 random tokens: inputs = tokens[:-1], targets = tokens[1:] (the next token
    of the same segment), positions 0..L-1, loss_mask 1; padding has inputs = targets = 0 and loss_mask 0."""
    r = np.random.default_rng(seed)
    out = {"inputs": np.zeros((batch, length), np.int32), "targets": np.zeros((batch, length), np.int32),
           "segment_ids": np.zeros((batch, length), np.int32), "positions": np.zeros((batch, length), np.int32),
           "loss_mask": np.zeros((batch, length), np.float32)}
    for b in range(batch):
        t, seg = 0, 1
        used = int(r.integers(length // 2, length + 1))          # the rest of the row is padding
        while t < used and seg <= 4:
            n = min(int(r.integers(2, 9)), used - t)
            tokens = r.integers(1, vocab, size=n + 1)
            out["inputs"][b, t:t + n] = tokens[:-1]
            out["targets"][b, t:t + n] = tokens[1:]
            out["segment_ids"][b, t:t + n] = seg
            out["positions"][b, t:t + n] = np.arange(n)
            out["loss_mask"][b, t:t + n] = 1.0
            t, seg = t + n, seg + 1
    return out


def process_rows(sharding, global_shape) -> np.ndarray:
    """The global row indices (sorted) held by this process's devices under `sharding`.

    `make_array_from_process_local_data` expects exactly these rows, in this order: a process's device slices
    are concatenated in increasing global index (slices [0, 2) and [4, 6) -> local rows 0..3)."""
    slices = sharding.addressable_devices_indices_map(tuple(global_shape)).values()
    return np.asarray(sorted({i for s in slices for i in range(*s[0].indices(global_shape[0]))}), np.int64)


def _identity(tree):
    return tree


def gather(tree, mesh):
    """Every leaf of `tree` whole, as numpy, on every process: one jitted copy to a replicated sharding (a
    single compilation for the whole tree, unlike a per-leaf process_allgather), then the local replica."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    full = jax.jit(_identity, out_shardings=NamedSharding(mesh, PartitionSpec()))(tree)
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), full)


def param_digest(params, mesh) -> dict[str, list[float]]:
    """Per leaf (by tree path): [sum, sum of squares, sum weighted by sin(flat index)] in float64 of the whole
    gathered array. The weighted sum changes when values move between positions."""
    import jax

    out = {}
    for path, x in jax.tree_util.tree_flatten_with_path(gather(params, mesh))[0]:
        x = x.astype(np.float64)
        w = np.sin(np.arange(x.size, dtype=np.float64)).reshape(x.shape)
        out[jax.tree_util.keystr(path)] = [float(x.sum()), float((x * x).sum()), float((x * w).sum())]
    return out


def decoder_train_steps(config, workdir):
    import jax
    from jax.sharding import Mesh

    from jaxsuite.core import sharding as shd
    from jaxsuite.core import train as tr
    from jaxsuite.models.factory import arch_from_config, init_model

    c = config
    n = int(c.mesh.data) * int(c.mesh.fsdp) * int(c.mesh.tensor)
    devices = jax.devices()[:n]
    assert len(devices) == n, f"need {n} devices, have {jax.device_count()}"
    # [data, fsdp, tensor] with fsdp as the OUTER (process) dimension of the device list: with 2 processes of 2
    # devices, fsdp spans the processes and data stays within one.
    grid = np.asarray(devices, dtype=object).reshape(int(c.mesh.fsdp), int(c.mesh.data), int(c.mesh.tensor))
    mesh = Mesh(grid.transpose(1, 0, 2), ("data", "fsdp", "tensor"))
    rules = shd.DEFAULT_RULES

    model = init_model(arch_from_config(c.arch), seed=int(c.seed), mesh=mesh, rules=rules)
    optimizer = tr.make_optimizer(c.train, int(c.train.steps))
    graphdef, state, shardings = tr.create_train_state(model, optimizer, mesh, rules)
    del model
    init_digest = param_digest(state.params, mesh)
    train_step = tr.make_train_step(graphdef, optimizer, mesh=mesh, rules=rules, state_shardings=shardings)

    batch_sh = tr.batch_sharding(mesh, rules)
    shape = (int(c.batch_size), int(c.seq_len))
    full = make_global_batch(int(c.data_seed), *shape, int(c.arch.vocab_size))
    rows = process_rows(batch_sh, shape)
    batch = {k: jax.make_array_from_process_local_data(batch_sh, v[rows], shape) for k, v in full.items()}
    batch_ok = all(np.array_equal(v, full[k]) for k, v in gather(batch, mesh).items())

    losses, grad_norms = [], []
    for _ in range(int(c.train.steps)):
        state, metrics = train_step(state, batch)
        losses.append(float(np.asarray(metrics["loss"].addressable_data(0))))       # replicated
        grad_norms.append(float(np.asarray(metrics["grad_norm"].addressable_data(0))))

    param_sh = {jax.tree_util.keystr(p): str(s.spec) for p, s in
                jax.tree_util.tree_flatten_with_path(shardings.params)[0]}
    result = {"process_index": jax.process_index(), "process_count": jax.process_count(),
              "device_count": jax.device_count(), "mesh": {k: int(v) for k, v in mesh.shape.items()},
              "rows": rows.tolist(), "batch_ok": bool(batch_ok), "losses": losses, "grad_norms": grad_norms,
              "step": int(np.asarray(state.step.addressable_data(0))), "param_specs": param_sh,
              "init_digest": init_digest, "final_digest": param_digest(state.params, mesh)}
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, f"result_{jax.process_index()}.json"), "w") as f:
        json.dump(result, f)
    return result
