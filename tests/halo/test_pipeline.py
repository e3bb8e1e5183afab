"""The single-stage and paper-recipe HALO configs. The pipeline end to end on the smoke-test config (every
artefact, its passkey figures recomputed from the saved models, a re-run that rewrites nothing finished) is
checked on the run notebooks/02_hypenet_halo.ipynb makes (tests/test_notebooks.py), so the suite runs it once."""

import pytest

from jaxsuite.core.config_utils import load_config
from jaxsuite.halo.transfer import PAPER_ATTENTION_LAYERS


def test_stage_and_paper_configs():
    for size, name in (("2b", "hypenet-2b"), ("5b", "hypenet-5b"), ("9b", "hypenet-9b")):
        pipe = load_config("configs/halo_qwen3.py", size)
        assert list(pipe.student.attention_layers) == list(PAPER_ATTENTION_LAYERS[name])
        assert pipe.stage1.data.seq_len == 512 and pipe.stage1.train.lr == 1e-3
        assert pipe.stage2.train.lr == {"2b": 1e-4, "5b": 5e-5, "9b": 3e-5}[size]
        assert pipe.stage3.data.seq_len == 16384 and pipe.stage3.train.steps == 500
        # the 9b's stage 3 splits each layer over 2 chips: half the batch shards, twice the micro-batches, so
        # still one 16K row per device per micro-batch
        tensor = 2 if size == "9b" else 1
        assert ("mesh" in pipe.stage3) == (size == "9b") and "mesh" not in pipe.stage2
        assert pipe.stage3.get("mesh", pipe.mesh).tensor == tensor
        assert pipe.stage3.train.accum_steps == 16 * tensor
        # 8 devices: 20k*512*(32+96) + 500*16384*128 tokens ~ the paper's 2.3B
        tokens = sum(getattr(pipe, f"stage{n}").train.steps * getattr(pipe, f"stage{n}").data.seq_len
                     * getattr(pipe, f"stage{n}").data.batch_size for n in (1, 2, 3))
        assert 2.2e9 < tokens < 2.45e9
    one = load_config("configs/halo_stage.py", "5b,2")
    assert one.job == "jaxsuite.halo.stages:run_stage2" and one.teacher.init_from == "Qwen/Qwen3-4B"
    assert one.train.lr == 5e-5 and one.data.batch_size == 96
    with pytest.raises(ValueError, match="'<size>,<stage>'"):
        load_config("configs/halo_stage.py", "2b")
    with pytest.raises(ValueError, match="unknown size"):
        load_config("configs/halo_stage.py", "3b,1")


def test_a_stage_with_its_own_mesh_runs_and_compiles_on_it():
    """A stage block's `mesh` (the 9b recipe's stage 3) is the mesh its job runs on and its programs are built on;
    the other stages keep the pipeline's."""
    import jax
    import ml_collections
    from jaxsuite.core.build import mesh_and_rules
    from jaxsuite.halo import pipeline
    config = load_config("configs/halo_tiny.py")
    config.stage3.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=2))
    assert pipeline._stage_config(config, 3, "", "", [1]).mesh.tensor == 2
    assert pipeline._stage_config(config, 2, "", "", [1]).mesh.to_dict() == config.mesh.to_dict()
    mesh, rules = mesh_and_rules(config, jax.devices()[:8])
    step = {p.name: p for p in pipeline.programs(config, mesh, rules)}
    def mesh_shape(name):
        return dict(jax.tree.leaves(step[name].args[0])[0].sharding.mesh.shape)
    assert mesh_shape("stage3/train_step") == {"data": 4, "fsdp": 1, "tensor": 2}
    assert "mesh data 4 x tensor 2" in step["stage3/train_step"].note     # what the report's table shows
    assert mesh_shape("stage2/train_step") == dict(mesh.shape)


def test_stage_job_names_a_missing_teacher(tmp_path):
    from jaxsuite.halo.stages import run_stage1
    config = load_config("configs/halo_stage.py", "tiny,1")
    config.tokenizer = "byte"
    with pytest.raises(ValueError, match="teacher.init_from is not set"):
        run_stage1(config, str(tmp_path / "s1"))
    config.teacher.init_from = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        run_stage1(config, str(tmp_path / "s1"))
