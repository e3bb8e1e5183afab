"""The HALO pipeline end to end on the smoke-test config (configs/halo_tiny.py:test, `slow`): teacher
pre-training, stages 1-3, layer selection and the teacher-vs-HypeNet report (its passkey figures recomputed from
the saved models), then a re-run that rewrites nothing finished; and the single-stage / paper-recipe configs."""
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.core.config_utils import load_config
from jaxsuite.halo.transfer import PAPER_ATTENTION_LAYERS
from jaxsuite.models import HypeNetConfig


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    from jaxsuite.halo import pipeline
    root = tmp_path_factory.mktemp("halo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXSUITE_CACHE", str(root / "cache"))   # the teacher cache, private to this test
        config = load_config("configs/halo_tiny.py", "test")
        results = pipeline.run(config, str(root / "run"))
        yield config, root / "run", results


def passkey_by_full_forward(model, batch) -> float:
    """Passkey accuracy recomputed without the evaluation code: the model's full [N, L, V] logits, argmax, and
    an exact match of every answer token (the pipeline projects only the tail, in a jitted step)."""
    ids = np.asarray(batch.inputs)                                         # [N, L]
    predicted = np.asarray(model(jnp.asarray(ids))).argmax(-1)             # [N, L]: position t predicts t + 1
    hits = [np.array_equal(predicted[i, s - 1:s + a - 1], ids[i, s:s + a])
            for i, (s, a) in enumerate(zip(batch.answer_start, batch.answer_len))]
    return float(np.mean(hits))


def file_mtimes(*roots: Path) -> dict[str, int]:
    """{path: mtime in ns} of every file under `roots` (files or folders)."""
    files = [p for root in roots for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file()]
    return {str(p): p.stat().st_mtime_ns for p in files}


@pytest.mark.slow
def test_pipeline_writes_every_artefact_and_a_loadable_hypenet(pipeline_run, check_png):
    import jaxsuite
    config, workdir, results = pipeline_run
    for name in ("results.json", "results.md", "layer_selection.json"):
        assert (workdir / name).is_file(), name
    # 6 x 4 inches at 120 dpi; decode.png has two panels
    for name, size in (("passkey.png", (720, 480)), ("ppl_by_position.png", (720, 480)),
                       ("decode.png", (1200, 480))):
        check_png(workdir / name, size=size)
    for n in (1, 2, 3):
        stage = json.loads((workdir / f"stage{n}" / "results.json").read_text())
        assert stage["steps"] == int(getattr(config, f"stage{n}").train.steps) and stage["stage"] == n
        # each stage's figures say what its loss is; only stage 3's next-token CE has a perplexity
        assert stage["loss"] == {1: "per-layer MSE", 2: "KL(teacher||student)", 3: "next-token CE"}[n]
        assert ("eval_perplexity" in stage) == (n == 3) and "eval_loss" in stage
        check_png(workdir / f"stage{n}" / "loss.png", size=(770, 462))
    selection = json.loads((workdir / "layer_selection.json").read_text())
    assert results["attention_layers"] == selection["keep"] and len(selection["keep"]) == 1
    assert sorted(selection["importance"]) == ["0", "1"]      # both layers of the 2-layer teacher swept
    # a bar per layer, 6 x 3.5 inches at 120 dpi; a smoke-test teacher may score every layer 0 (no bar drawn)
    check_png(workdir / "layer_importance.png", size=(720, 420),
              coloured=any(v > 0 for v in selection["importance"].values()))
    model = jaxsuite.load_pretrained(str(workdir / "stage3" / "hf"))
    assert isinstance(model.config, HypeNetConfig)
    kinds = ["attn" if i in results["attention_layers"] else "lightning-attn" for i in range(2)]
    assert list(model.config.mixer_types) == kinds
    table = results["table"]
    assert set(table) == {"teacher (Qwen3)", "HypeNet", "HypeNet + HyPE a=500"}
    for row in table.values():
        assert {"passkey@128", "passkey@256", "ms/token@64", "ms/token@256"} <= set(row)
    # every passkey figure, recomputed from the saved teacher and HypeNet on the same rows
    from jaxsuite.core.tokenizer import ByteTokenizer
    from jaxsuite.halo import passkey as pk
    from jaxsuite.halo.pipeline import with_logits_scaling
    assert config.tokenizer == "byte"
    hypenet = jaxsuite.load_pretrained(results["hypenet"])
    models = {"teacher (Qwen3)": jaxsuite.load_pretrained(results["teacher"]), "HypeNet": hypenet,
              "HypeNet + HyPE a=500": with_logits_scaling(hypenet, "hype 500")}
    for n in config.eval.passkey_lengths:
        batch = pk.make_eval_batch(ByteTokenizer(), int(n), int(config.eval.passkey_samples), seed=2)
        for name, m in models.items():
            assert table[name][f"passkey@{n}"] == round(passkey_by_full_forward(m, batch), 3), (name, n)
    # the teacher's KV cache grows with context; HypeNet's only in its one attention layer of two
    t, h = table["teacher (Qwen3)"], table["HypeNet"]
    grow_t = t["cache MiB@256"] - t["cache MiB@64"]
    grow_h = h["cache MiB@256"] - h["cache MiB@64"]
    assert grow_t > 0 and abs(grow_h - grow_t / 2) <= 0.02 * grow_t + 0.01
    assert "| teacher (Qwen3) |" in (workdir / "results.md").read_text()


@pytest.mark.slow
def test_rerun_skips_finished_steps(pipeline_run):
    """The same command again rewrites nothing that a finished step produced (teacher, stages, selection) and
    gives the same report."""
    from jaxsuite.halo import pipeline
    config, workdir, first = pipeline_run
    finished = (Path(first["teacher"]).parent, workdir / "stage1", workdir / "stage2", workdir / "stage3",
                workdir / "layer_selection.json", workdir / "layer_importance.png")
    before = file_mtimes(*finished)
    assert str(workdir / "stage3" / "metrics.jsonl") in before and len(before) > 20
    again = pipeline.run(config, str(workdir))
    assert file_mtimes(*finished) == before
    assert again["attention_layers"] == first["attention_layers"] and again["stages"] == first["stages"]
    for name, row in first["table"].items():
        assert {k: v for k, v in again["table"][name].items() if k.startswith(("passkey", "ppl"))} == {
            k: v for k, v in row.items() if k.startswith(("passkey", "ppl"))}


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
