"""jaxsuite.core.checkpoint: sharded round trip onto another mesh with the data iterator and rng, a grain
DataLoader iterator and a raw key, shape errors naming the parameter, crashed saves ignored, retention."""
import shutil

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxsuite.core import config_utils
from jaxsuite.core.checkpoint import Checkpointer, CheckpointMismatchError


def _train_state(mesh, spec_kernel):
    """A real train state: NNX Linear params (kernel sharded by `spec_kernel`) + adamw state + step."""
    model = nnx.Linear(8, 16, rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    opt_state = optax.adamw(1e-3).init(params)
    opt_state = jax.tree.map(lambda x: x + 0.25 if jnp.issubdtype(x.dtype, jnp.floating) else x, opt_state)
    state = {"params": params, "opt": opt_state, "step": jnp.int32(5)}

    def put(x):
        spec = spec_kernel if np.ndim(x) == 2 else P()
        return jax.device_put(x, NamedSharding(mesh, spec))
    return jax.tree.map(put, state)


def _abstract(state, mesh, spec_kernel):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(
        x.shape, x.dtype, sharding=NamedSharding(mesh, spec_kernel if x.ndim == 2 else P())), state)


@pytest.fixture
def meshes():
    if jax.device_count() < 8:
        pytest.skip("needs 8 (forced host) devices")
    devs = np.asarray(jax.devices()[:8])
    return Mesh(devs.reshape(4, 2), ("data", "tensor")), Mesh(devs[:4].reshape(2, 2), ("fsdp", "tensor"))


def test_checkpoint_round_trip_onto_another_mesh(tmp_path, meshes):
    mesh_a, mesh_b = meshes
    state = _train_state(mesh_a, P("data", "tensor"))
    it = iter(grain.MapDataset.range(100).shuffle(seed=3).batch(4).to_iter_dataset())
    for _ in range(3):
        next(it)
    rng = jax.random.fold_in(jax.random.key(7), 3)
    ckpt = Checkpointer(tmp_path, max_to_keep=3, config={"a": 1})
    assert ckpt.restore_latest(_abstract(state, mesh_b, P(None, "fsdp"))) is None       # fresh start
    assert ckpt.save(5, state, data_iterator=it, rng=rng, metadata={"loss": 1.5})
    assert not ckpt.save(5, state)                                                       # exists: skipped
    expected_next = np.asarray(next(it))                                                 # the 4th batch
    ckpt.close()

    fresh = iter(grain.MapDataset.range(100).shuffle(seed=3).batch(4).to_iter_dataset())
    target = _abstract(state, mesh_b, P(None, "fsdp"))                                  # other mesh + specs
    step, restored, extra = Checkpointer(tmp_path, config={"a": 1}).restore_latest(target, data_iterator=fresh)
    assert step == 5
    for got, want, tgt in zip(jax.tree.leaves(restored), jax.tree.leaves(state), jax.tree.leaves(target)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
        assert got.sharding == tgt.sharding
    assert isinstance(restored["params"], nnx.State)
    assert type(restored["opt"][0]).__name__ == "ScaleByAdamState"
    np.testing.assert_array_equal(np.asarray(next(fresh)), expected_next)
    np.testing.assert_array_equal(jax.random.key_data(extra["rng"]), jax.random.key_data(rng))
    assert extra["metadata"] == {"loss": 1.5} and extra["data_restored"]
    assert extra["config_hash"] == config_utils.config_hash({"a": 1})


def test_checkpoint_dataloader_iterator_and_raw_key(tmp_path):
    """A grain DataLoader iterator (bytes state) and a legacy uint32 PRNGKey survive a round trip."""
    def loader():
        return grain.DataLoader(
            data_source=grain.sources.RangeDataSource(0, 50, 1),
            sampler=grain.samplers.IndexSampler(50, shard_options=grain.sharding.NoSharding(), shuffle=True,
                                                seed=1, num_epochs=1),
            operations=[grain.transforms.Batch(5)], worker_count=0)
    it = iter(loader())
    next(it), next(it)
    state = {"w": jnp.arange(6.0).reshape(2, 3)}
    key = jax.random.PRNGKey(11)
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(2, state, data_iterator=it, rng=key)
    want = np.asarray(next(it))
    fresh = iter(loader())
    step, restored, extra = Checkpointer(tmp_path).restore_latest(state, data_iterator=fresh)
    np.testing.assert_array_equal(np.asarray(next(fresh)), want)
    np.testing.assert_array_equal(np.asarray(extra["rng"]), np.asarray(key))
    np.testing.assert_array_equal(np.asarray(restored["w"]), np.asarray(state["w"]))


def test_checkpoint_shape_mismatch_names_the_parameter(tmp_path, meshes):
    mesh_a, _ = meshes
    state = _train_state(mesh_a, P("data", "tensor"))
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state)
    wrong = _abstract(state, mesh_a, P())
    wrong["params"]["kernel"] = nnx.Param(jax.ShapeDtypeStruct((8, 12), jnp.float32))
    with pytest.raises(CheckpointMismatchError) as e:
        Checkpointer(tmp_path).restore_latest(wrong)
    msg = str(e.value)
    assert "params.kernel" in msg and "(8, 16)" in msg and "(8, 12)" in msg
    missing = _abstract(state, mesh_a, P())
    missing["extra_param"] = jax.ShapeDtypeStruct((3,), jnp.float32)
    with pytest.raises(CheckpointMismatchError, match="missing from the checkpoint.*extra_param"):
        Checkpointer(tmp_path).restore_latest(missing)


def test_checkpoint_ignores_a_crashed_save_and_keeps_max_to_keep(tmp_path):
    state = {"w": jnp.ones((4,)), "n": jnp.int32(0)}
    ckpt = Checkpointer(tmp_path, max_to_keep=2)
    for step in (1, 2, 3, 4):
        ckpt.save(step, {"w": state["w"] * step, "n": jnp.int32(step)})
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [3, 4]
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir() if p.name.isdigit()) == ["3", "4"]
    # A crash in the middle of writing step 6 (and an older-style tmp name for step 5): complete-looking
    # content, but never renamed into place.
    shutil.copytree(root / "4", root / "6.orbax-checkpoint-tmp")
    shutil.copytree(root / "4", root / "5.orbax-checkpoint-tmp-1700000000")
    step, restored, _ = ckpt.restore_latest(state)
    assert step == 4 and int(restored["n"]) == 4
    ckpt.close()
    step, restored, _ = Checkpointer(tmp_path, max_to_keep=2).restore_latest(state)   # a fresh process
    assert step == 4
    np.testing.assert_array_equal(np.asarray(restored["w"]), 4 * np.ones(4))
