"""`python -m jaxsuite.launch --compile_only --topology T`: every program of a job compiled for a target,
compile_report.json, the exit status. The CPU target (8 forced host devices) needs nothing extra; the TPU
targets compile deviceless with libtpu (the `aot` extra)."""
import json
import re

import pytest

from jaxsuite import launch
from jaxsuite.core import aot
from jaxsuite.models import count_params
from jaxsuite.models.factory import arch_from_config

TINY = "configs/qwen3_pretrain.py:tiny"


def _report(workdir) -> dict:
    return json.loads((workdir / "compile_report.json").read_text())


def test_pretrain_programs_compile_for_eight_cpu_devices(tmp_path, capsys, monkeypatch):
    saved = []      # what compile_report.json held after each write: rows so far, and whether complete
    write = aot.write_report
    monkeypatch.setattr(aot, "write_report", lambda r, wd: saved.append(
        ([p["program"] for p in r["programs"]], r["complete"])) or write(r, wd))
    report = launch.main(["--config", TINY, "--compile_only", "--topology", "cpu:8", "--workdir", str(tmp_path)])
    assert report == _report(tmp_path)
    assert (report["target"], report["devices"], report["all_fit"]) == ("cpu:8", 8, True)
    rows = {r["program"]: r for r in report["programs"]}
    assert sorted(rows) == ["eval_step", "sample", "train_step"]
    # the report is on disk after every program (a long compile stopped part-way keeps what it finished)
    names = [r["program"] for r in report["programs"]]
    assert saved[:3] == [(names[:1], False), (names[:2], False), (names, True)] and saved[-1] == (names, True)
    # The tiny mesh is data-parallel over 8 devices, so every device holds the whole float32 train state,
    # parameters + Adam's two moments = 3 x 4 bytes per parameter (plus a few scalar counters), and an eighth
    # of the batch: 5 int32/float32 arrays of 8 x 32.
    from jaxsuite.core.config_utils import load_config
    config = load_config(TINY)
    params = count_params(arch_from_config(config.model.arch))
    batch_share = 5 * config.data.batch_size * config.data.seq_len * 4 // 8
    train = rows["train_step"]
    expected = 3 * 4 * params + batch_share
    assert expected <= train["argument_bytes"] <= expected + 64, (train, expected)
    assert train["gflops"] > 0 and train["peak_bytes"] >= train["argument_bytes"]
    assert "| train_step |" in capsys.readouterr().out


def test_compile_only_arguments_are_checked(tmp_path, capsys):
    cases = [(["--compile_only"], "needs --topology"),
             (["--topology", "cpu:8"], "add --compile_only"),
             (["--compile_only", "--topology", "v9x:2x2"], "not a known target"),
             (["--compile_only", "--topology", "cpu:99"], "force_host_platform_device_count=99"),
             (["--compile_only", "--topology", "cpu:8", "--config.job=jaxsuite.launch:main"],
              "does not support --compile_only"),
             (["--programs", "train_step"], "add --compile_only"),
             (["--compile_only", "--topology", "cpu:8", "--programs", "stage9/*"], "matches none of the job's")]
    for extra, message in cases:
        argv = ["--config", TINY, "--workdir", str(tmp_path), *extra]
        with pytest.raises(SystemExit) as exit_info:
            launch.main(argv)
        assert exit_info.value.code == 2, extra
        assert message in capsys.readouterr().err, extra


def test_compile_only_downloads_nothing(tmp_path, capsys):
    """Released Qwen3 ids resolve to their architectures offline; any other hub id is refused, not fetched."""
    from jaxsuite.hf import architecture_of
    from jaxsuite.models.presets import QWEN3_PRESETS
    assert architecture_of("Qwen/Qwen3-1.7B") == QWEN3_PRESETS["1.7b"]
    with pytest.raises(SystemExit):
        launch.main(["--config", TINY, "--compile_only", "--topology", "cpu:8", "--workdir", str(tmp_path),
                     "--config.model.init_from=someone/a-model"])
    assert "downloads nothing" in capsys.readouterr().err


@pytest.mark.parametrize("topology, chips, hbm", [("v5e:2x2", 4, 16.0), ("v5p:2x2x1", 4, 95.0), ("v4:2x2x1", 4, 32.0),
                                                  ("v6e:2x4", 8, 32.0)])
def test_tpu_targets(topology, chips, hbm):
    pytest.importorskip("libtpu", reason="TPU targets need libtpu: pip install 'jaxsuite[aot]'")
    target = aot.resolve_target(topology)
    assert (target.platform, len(target.devices), target.memory_per_device / aot.GiB) == ("tpu", chips, hbm)


def test_a_step_over_the_chip_memory_is_reported_and_exits_1(tmp_path, capsys):
    """A 2-layer model whose float32 embedding alone is 2 x 4.9 GiB (x 3 with Adam's moments), replicated over a
    v5e's 16 GiB chips, cannot fit: the report says so with the compiler's numbers and the command fails."""
    pytest.importorskip("libtpu", reason="TPU targets need libtpu: pip install 'jaxsuite[aot]'")
    with pytest.raises(SystemExit) as exit_info:
        launch.main(["--config", TINY, "--compile_only", "--topology", "v5e:2x2", "--workdir", str(tmp_path),
                     "--config.model.arch.vocab_size=640000", "--config.model.arch.hidden_size=2048",
                     "--config.model.arch.tie_word_embeddings=False", "--config.sample.num_samples=0"])
    assert exit_info.value.code == 1
    assert "train_step" in capsys.readouterr().err
    train = {r["program"]: r for r in _report(tmp_path)["programs"]}["train_step"]
    assert train["fits"] is False
    assert ("RESOURCE_EXHAUSTED" in train.get("error", "")) or train["peak_bytes"] > 16 * aot.GiB


def test_cpmobius_programs_count_the_other_role_as_resident(tmp_path):
    """CPMobius at its test size on 8 devices: the coach's and the player's update, scoring pass and sampling loop
    and the player's validation all compile; while one role runs, the other's train state and frozen reference
    stay alive, counted as resident: float32 parameters + Adam's two moments + the float32 reference, 16 bytes
    per parameter on every device (the tiny config replicates parameters), plus Adam's step counters."""
    from jaxsuite.core.config_utils import load_config
    config = "configs/cpmobius_tiny.py:test"
    report = launch.main(["--config", config, "--compile_only", "--topology", "cpu:8", "--workdir", str(tmp_path)])
    rows = {r["program"]: r for r in report["programs"]}
    assert {f"{role}/{p}" for role in ("coach", "player") for p in ("update", "score", "rollout")} | {
        "player/validation"} <= set(rows) and report["all_fit"]
    n = count_params(arch_from_config(load_config(config).model.arch))
    for name in ("player/update", "coach/update"):
        assert 16 * n <= rows[name]["resident_bytes"] <= 16 * n + 64, (name, rows[name]["resident_bytes"], n)
    # a sampling loop takes only its role's parameters: the rest of both roles' states is resident
    assert rows["player/rollout"]["resident_bytes"] >= 16 * n + 12 * n


@pytest.mark.parametrize("config, compiled", [("configs/latentchem_tiny.py:test", "latent/answer,grpo/update"),
                                              ("configs/ldl_m5.py", "*")])
def test_latentchem_and_ldl_programs_compile_for_eight_devices(config, compiled, tmp_path):
    """LatentChem (SFT and latent steps, the latent answering loop, GRPO) and LDL (each variant's step and
    forecast, on one device of the eight) build every program from their configs alone: no data, features or
    tokenizer. LatentChem compiles two of its six here (the answering loop with the latent hook and the GRPO
    update; its job test runs all six on eight devices), LDL all of them."""
    from jaxsuite.core.build import mesh_and_rules
    from jaxsuite.core.config_utils import import_programs, load_config
    loaded = load_config(config)
    target = aot.resolve_target("cpu:8")
    mesh, rules = mesh_and_rules(loaded, target.devices)
    names = [p.name for p in import_programs(loaded.job)(loaded, mesh, rules)]
    expected = ({"sft/train_step", "latent/train_step", "latent/answer", "grpo/update", "grpo/score",
                 "grpo/rollout"} if "latentchem" in config else
                {f"ldl_{v}/{p}" for v in ("continuous", "discrete", "pattern") for p in ("train_step", "forecast")})
    assert set(names) == expected, names
    report = launch.main(["--config", config, "--compile_only", "--topology", "cpu:8", "--workdir", str(tmp_path),
                          "--programs", compiled])
    done = {r["program"] for r in report["programs"]}
    assert done == (expected if compiled == "*" else set(compiled.split(","))) and report["all_fit"], done


def test_the_main_job_compiles_every_stage_for_eight_devices(tmp_path):
    """The HALO pipeline (the default config): the teacher's pre-training and stages 1-3, built from the
    architecture alone; stage 3's global batch of 4 is padded to 8 rows as the loop pads it on 8 devices."""
    report = launch.main(["--compile_only", "--topology", "cpu:8", "--workdir", str(tmp_path)])
    rows = {r["program"]: r for r in report["programs"]}
    stages = [f"stage{n}/{step}" for n in (1, 2, 3) for step in ("train_step", "eval_step")]
    assert set(stages) | {"teacher/train_step"} <= set(rows) and report["all_fit"]
    assert "global batch 8 x 512" in rows["stage3/train_step"]["note"]
    # stage 2 holds a frozen teacher beside the trained student: more arguments than stage 3's student alone
    assert rows["stage2/train_step"]["argument_bytes"] > rows["stage3/train_step"]["argument_bytes"]


@pytest.mark.slow
def test_qwen3_0p6b_layers_fit_a_v5e_at_full_width(tmp_path):
    """The 0.6B pre-training step at its real width and sequence length (1 of its 28 layers, to keep the compile
    under a minute: the memory that matters here is one layer's attention), FSDP over a v5e's 4 chips, global batch 8 x 4096, full remat, 512-token loss chunks,
    splash attention. Arguments: float32 parameters + Adam's moments, 12 bytes per parameter over 4 chips.
    Temporaries: XLA attention would hold one layer's float32 scores, [2 rows, 16 heads, 4096, 4096] = 2 GiB
    per chip, plus their bfloat16 probabilities (1 GiB); measured 4.6 GiB that way (train.attention=xla) and 1.7 GiB
    with splash, so 3 GiB fails if the [T, T] scores come back."""
    pytest.importorskip("libtpu", reason="TPU targets need libtpu: pip install 'jaxsuite[aot]'")
    report = launch.main(["--config", "configs/qwen3_pretrain.py:0.6b", "--compile_only", "--topology", "v5e:2x2",
                          "--workdir", str(tmp_path), "--config.model.arch.num_hidden_layers=1",
                          "--config.data.batch_size=8", "--config.train.accum_steps=1",
                          "--config.sample.num_samples=0"])
    (train,) = report["programs"]
    from jaxsuite.core.config_utils import load_config
    arch = load_config("configs/qwen3_pretrain.py:0.6b").model.arch
    arch.num_hidden_layers = 1
    state = 12 * count_params(arch_from_config(arch)) // 4
    assert train["fits"] and state <= train["argument_bytes"] <= state + 2 ** 20, (train, state)
    assert train["temp_bytes"] < 3 * aot.GiB, train


NEEDS_CUDA_PLUGIN = "GPU targets need the CUDA compile plugin: pip install 'jaxsuite[aot]'"


def test_gpu_targets():
    """h100:N / h200:HxN are NVIDIA nodes from the CUDA plugin's deviceless topology; the memory a program may use
    is what JAX's allocator takes by default, 75% of the card (XLA_PYTHON_CLIENT_MEM_FRACTION)."""
    pytest.importorskip("jax_plugins.xla_cuda12", reason=NEEDS_CUDA_PLUGIN)
    node = aot.resolve_target("h100:8")
    assert node.platform == "gpu" and len(node.devices) == 8
    assert node.devices[0].device_kind == "NVIDIA H100 80GB HBM3"
    assert node.memory_per_device == int(84_942_979_072 * 0.75)
    pod = aot.resolve_target("h200:2x8")
    assert len(pod.devices) == 16 and sorted({d.process_index for d in pod.devices}) == [0, 1]
    with pytest.raises(ValueError, match="h100:8, h200:8"):
        aot.resolve_target("h100")


@pytest.mark.parametrize("topology", ["v5e:2x2", "h100:8"])
def test_halo_stage_compiles_with_the_targets_linear_kernel(topology, tmp_path):
    """HALO stage 3 of the main job, with train.linear_kernel='auto': the Lightning layers lower to the target's
    Pallas kernel (Mosaic on the TPU, Triton on the GPU; forward and backward), each shard running its own rows
    and heads (Mosaic refuses to be partitioned by XLA), and the step compiles and fits; with the default ('':
    the model's own, XLA) no kernel is in the program."""
    pytest.importorskip("libtpu" if topology.startswith("v") else "jax_plugins.xla_cuda12",
                        reason="needs jaxsuite[aot]")
    from jaxsuite.core.build import mesh_and_rules
    from jaxsuite.core.config_utils import import_programs, load_config
    target = aot.resolve_target(topology)
    kernels = {}
    for choice in ("auto", ""):
        config = load_config("configs/halo_tiny.py")
        config.stage3.train.linear_kernel = choice
        mesh, rules = mesh_and_rules(config, target.devices)
        (step,) = [p for p in import_programs(config.job)(config, mesh, rules) if p.name == "stage3/train_step"]
        with target.tracing():
            text = step.fn.lower(*step.args, **step.kwargs).as_text()
        kernels[choice] = set(re.findall(r"\bsimple_gla_(?:fwd|bwd)\b", text))
        if choice == "auto":
            row = aot.compile_program(step, target)
    assert kernels == {"auto": {"simple_gla_fwd", "simple_gla_bwd"}, "": set()}
    assert row["fits"], row


def test_qwen3_0p6b_layers_fit_an_h100_node_with_cudnn_attention(tmp_path):
    """The 0.6B step at full width and 4096 tokens (2 of its layers), FSDP over 8 H100s, bfloat16 compute: with
    train.attention 'auto' the GPU target gets cuDNN's flash attention. Its temporaries measured 1.33 GiB per GPU,
    against 3.14 GiB with XLA's attention, whose float32 [1 row, 16 heads, 4096, 4096] scores alone are 1 GiB."""
    pytest.importorskip("jax_plugins.xla_cuda12", reason=NEEDS_CUDA_PLUGIN)
    temps = {}
    for attention in ("auto", "xla"):
        report = launch.main(["--config", "configs/qwen3_pretrain.py:0.6b", "--compile_only", "--topology", "h100:8",
                              "--workdir", str(tmp_path / attention), "--config.model.arch.num_hidden_layers=2",
                              "--config.data.batch_size=8", "--config.train.accum_steps=1",
                              "--config.sample.num_samples=0", f"--config.train.attention={attention}",
                              "--programs", "train_*"])
        (train,) = report["programs"]
        assert train["fits"] and report["platform"] == "gpu", train
        temps[attention] = train["temp_bytes"]
    assert temps["auto"] < 2 * aot.GiB < temps["xla"], temps
