"""Small jobs for the launcher tests: importable as `launch_fixture_jobs` with this folder on the path.

`record_job` writes down what the launcher passed it. `sharded_linreg` is a miniature training run that
exercises everything multi-host code needs - a mesh over the devices of all processes, data arriving per
process, jitted steps with explicit shardings, a process_allgather, a checkpoint saved by every process and
restored onto a different sharding, metrics written by process 0 only - and writes its numbers to
result_<process>.json so a test can compare a 2-process run with a 1-process run.
"""
from __future__ import annotations

import json
import os


def record_job(config, workdir):
    """Writes workdir/job_called.json with the config it received and the workdir; returns 'ok'."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "job_called.json"), "w") as f:
        json.dump({"config": json.loads(config.to_json_best_effort()), "workdir": workdir,
                   "config_type": type(config).__name__}, f)
    return "ok"


def _local_rows(sharding, global_shape):
    """The [lo, hi) rows of the global batch that this process's devices hold (a data loader's slice)."""
    idx = sharding.addressable_devices_indices_map(global_shape).values()
    lo = min(s[0].start or 0 for s in idx)
    hi = max(global_shape[0] if s[0].stop is None else s[0].stop for s in idx)
    return lo, hi


def sharded_linreg(config, workdir):
    import grain
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from jaxsuite.core.checkpoint import Checkpointer
    from jaxsuite.core.metrics import MetricsWriter, write_results

    c = config
    devices = jax.devices()[:c.num_devices]
    assert len(devices) == c.num_devices, f"need {c.num_devices} devices, have {jax.device_count()}"
    # data over processes (outer), tensor within a process: the layout of a real multi-host mesh.
    mesh = Mesh(np.asarray(devices).reshape(c.num_devices // 2, 2), ("data", "tensor"))
    w_sh = NamedSharding(mesh, P(None, "tensor"))        # W [D, O] split over tensor
    b_sh = NamedSharding(mesh, P("tensor"))              # b [O]
    x_sh = NamedSharding(mesh, P("data", None))          # batches split over data
    rep = NamedSharding(mesh, P())

    opt = optax.adam(c.lr)
    params0 = {"w": jax.device_put(np.zeros((c.dim, c.out), np.float32), w_sh),
               "b": jax.device_put(np.zeros((c.out,), np.float32), b_sh)}
    param_sh = {"w": w_sh, "b": b_sh}
    state = {"params": params0, "opt": opt.init(params0)}
    # Adam's moments follow their parameter's sharding (told apart by shape here); the step count is replicated.
    by_ndim = {2: w_sh, 1: b_sh, 0: rep}
    state_sh = jax.tree.map(lambda a: by_ndim[a.ndim], state)
    state = jax.device_put(state, state_sh)

    true_w = np.random.default_rng(0).normal(size=(c.dim, c.out)).astype(np.float32)

    def global_batch(seed):   # every process can compute any batch; each keeps only its rows
        r = np.random.default_rng(1000 + int(seed))
        x = r.normal(size=(c.batch, c.dim)).astype(np.float32)
        return x, x @ true_w + 0.1 * r.normal(size=(c.batch, c.out)).astype(np.float32)

    def to_global(a):
        lo, hi = _local_rows(x_sh, a.shape)
        return jax.make_array_from_process_local_data(x_sh, a[lo:hi], a.shape)

    def loss_fn(params, x, y):
        pred = jnp.einsum("bd,do->bo", x, params["w"]) + params["b"]   # [B, O]
        return jnp.mean((pred - y) ** 2)

    @jax.jit
    def step_fn(state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], x, y)
        updates, opt_state = opt.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        params = jax.lax.with_sharding_constraint(params, param_sh)
        return {"params": params, "opt": opt_state}, loss

    data_it = iter(grain.MapDataset.range(10_000).to_iter_dataset())   # yields the batch seed of each step
    ckpt = Checkpointer(workdir, max_to_keep=2, config=config)
    writer = MetricsWriter(workdir, resume_step=0)
    rng = jax.random.key(c.seed)
    losses = []

    def run(state, first, last, writer):
        out = []
        for step in range(first, last + 1):
            x, y = global_batch(next(data_it))
            state, loss = step_fn(state, to_global(x), to_global(y))
            out.append(float(loss.addressable_data(0)))
            writer.write(step, {"train/loss": out[-1]})
            if step == c.checkpoint_at:
                ckpt.save(step, state, data_iterator=data_it, rng=jax.random.fold_in(rng, step),
                          metadata={"loss": out[-1]})
        return state, out

    state, losses = run(state, 1, c.steps, writer)
    writer.close()
    ckpt.wait_until_finished()
    final = jax.tree.map(lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True)),
                         state["params"])

    # Restore onto a different sharding (everything replicated) and redo the steps after the checkpoint.
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), state)
    fresh_it = iter(grain.MapDataset.range(10_000).to_iter_dataset())
    data_it = fresh_it
    step0, restored, extra = ckpt.restore_latest(abstract, data_iterator=fresh_it)
    assert all(a.sharding == rep for a in jax.tree.leaves(restored))
    restored = jax.device_put(restored, state_sh)
    writer = MetricsWriter(workdir, resume_step=step0)   # a resumed run: drop the rows after step0
    state2, losses2 = run(restored, step0 + 1, c.steps, writer)
    final2 = jax.tree.map(lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True)),
                          state2["params"])
    ckpt.close()
    writer.close()

    result = {"process_index": jax.process_index(), "process_count": jax.process_count(),
              "device_count": jax.device_count(), "mesh_devices": mesh.devices.size, "losses": losses, "resumed_losses": losses2,
              "resumed_from": step0, "w": final["w"].tolist(), "b": final["b"].tolist(),
              "w_after_resume": final2["w"].tolist(),
              "rng_ok": bool(np.array_equal(jax.random.key_data(extra["rng"]),
                                            jax.random.key_data(jax.random.fold_in(rng, step0)))),
              "metadata_loss": extra["metadata"]["loss"]}
    with open(os.path.join(workdir, f"result_{jax.process_index()}.json"), "w") as f:
        json.dump(result, f)
    write_results(workdir, {"final_loss": losses[-1]})
    return result


def fail_on_one_process(config, workdir):
    """Process `config.fail_process` raises; the others wait for it in a collective (a hung peer)."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    if jax.process_index() == config.fail_process:
        raise RuntimeError(f"deliberate failure on process {jax.process_index()}")
    multihost_utils.process_allgather(np.ones(3))
    return "unreachable when a peer failed"
