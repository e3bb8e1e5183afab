"""The HALO pipeline end to end on the smoke-test config (configs/halo_tiny.py:test): teacher pre-training, stages
1-3, layer selection and the teacher-vs-HypeNet report, then a re-run that finds every step finished; and
the single-stage / paper-recipe configs."""
import json

import pytest

from jaxsuite.core.config_utils import load_config
from jaxsuite.halo.transfer import PAPER_ATTENTION_LAYERS


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    from jaxsuite.halo import pipeline
    root = tmp_path_factory.mktemp("halo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXSUITE_CACHE", str(root / "cache"))   # the teacher cache, private to this test
        config = load_config("configs/halo_tiny.py", "test")
        results = pipeline.run(config, str(root / "run"))
        yield config, root / "run", results


def test_pipeline_writes_every_artefact_and_a_loadable_hypenet(pipeline_run):
    import jaxsuite
    from jaxsuite.models import HypeNetLM
    config, workdir, results = pipeline_run
    for name in ("results.json", "results.md", "passkey.png", "ppl_by_position.png", "decode.png",
                 "layer_importance.png", "layer_selection.json"):
        assert (workdir / name).is_file(), name
    for n in (1, 2, 3):
        stage = json.loads((workdir / f"stage{n}" / "results.json").read_text())
        assert stage["steps"] == int(getattr(config, f"stage{n}").train.steps) and stage["stage"] == n
        assert (workdir / f"stage{n}" / "loss.png").is_file()
    selection = json.loads((workdir / "layer_selection.json").read_text())
    assert results["attention_layers"] == selection["keep"] and len(selection["keep"]) == 1
    assert sorted(selection["importance"]) == ["0", "1"]      # both layers of the 2-layer teacher swept
    model = jaxsuite.load_pretrained(str(workdir / "stage3" / "hf"))
    assert isinstance(model, HypeNetLM)
    kinds = ["attn" if i in results["attention_layers"] else "lightning-attn" for i in range(2)]
    assert list(model.config.mixer_types) == kinds
    table = results["table"]
    assert set(table) == {"teacher (Qwen3)", "HypeNet", "HypeNet + HyPE a=500"}
    for row in table.values():
        assert {"passkey@128", "passkey@256", "ms/token@64", "ms/token@256"} <= set(row)
        assert all(0.0 <= row[f"passkey@{n}"] <= 1.0 for n in (128, 256))
    # the teacher's KV cache grows with context; HypeNet's only in its one attention layer of two
    t, h = table["teacher (Qwen3)"], table["HypeNet"]
    grow_t = t["cache MiB@256"] - t["cache MiB@64"]
    grow_h = h["cache MiB@256"] - h["cache MiB@64"]
    assert grow_t > 0 and abs(grow_h - grow_t / 2) <= 0.02 * grow_t + 0.01
    assert "| teacher (Qwen3) |" in (workdir / "results.md").read_text()


def test_rerun_skips_finished_steps(pipeline_run, caplog):
    import logging

    from jaxsuite.halo import pipeline
    config, workdir, first = pipeline_run
    caplog.set_level(logging.INFO, logger="jaxsuite")
    again = pipeline.run(config, str(workdir))
    text = caplog.text
    assert "teacher: reusing" in text and "layer selection: reusing" in text
    for n in (1, 2, 3):
        assert f"stage {n}: finished earlier" in text
    assert again["attention_layers"] == first["attention_layers"]


def test_stage_and_paper_configs():
    for size, name in (("2b", "hypenet-2b"), ("5b", "hypenet-5b"), ("9b", "hypenet-9b")):
        pipe = load_config("configs/halo_qwen3.py", size)
        assert list(pipe.student.attention_layers) == list(PAPER_ATTENTION_LAYERS[name])
        assert pipe.stage1.data.seq_len == 512 and pipe.stage1.train.lr == 1e-3
        assert pipe.stage2.train.lr == {"2b": 1e-4, "5b": 5e-5, "9b": 3e-5}[size]
        assert pipe.stage3.data.seq_len == 16384 and pipe.stage3.train.steps == 500
        assert pipe.stage3.train.accum_steps == 16
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


def test_stage_job_names_a_missing_teacher(tmp_path):
    from jaxsuite.halo.stages import run_stage1
    config = load_config("configs/halo_stage.py", "tiny,1")
    config.data.tokenizer, config.data.vocab_size = "byte", 259
    with pytest.raises(ValueError, match="teacher.init_from is not set"):
        run_stage1(config, str(tmp_path / "s1"))
    config.teacher.init_from = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        run_stage1(config, str(tmp_path / "s1"))
