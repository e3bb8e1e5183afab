"""Executes the notebooks top to bottom on CPU, offline; the quickstart against a tiny random checkpoint from
tests/conftest.py. Each notebook runs a whole job, so the module is `slow`; where a job's own end-to-end checks
(its report, its resumption) need a finished run, they read the one its notebook made, so the suite runs each
job once."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fresh_kernel(tmp_path_factory):
    """A Jupyter kernel in a fresh virtualenv where jaxsuite is not importable, and the wheel built from this tree:
    what Colab gives. The first notebook's install cell installs the wheel (JAXSUITE_SOURCE); the later ones find
    it installed, as a second notebook in the same Colab runtime would. Returns (jupyter path, site-packages)."""
    from jaxsuite.testing import borrowing_virtualenv, build_wheel
    root = tmp_path_factory.mktemp("fresh")
    wheel = build_wheel(REPO, root / "wheel")
    python, site = borrowing_virtualenv(root / "venv")
    kernels = root / "jupyter" / "kernels" / "fresh"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fresh virtualenv", "language": "python"}))
    return {"JUPYTER_PATH": str(root / "jupyter"), "JAXSUITE_SOURCE": str(wheel), "site": site}


def run_notebook(name: str, monkeypatch, tmp_path, fresh_kernel, env: dict[str, str]) -> str:
    """Executes notebooks/<name> with `env` set in the fresh virtualenv's kernel, started in a folder with no
    checkout, so every cell runs on the installed wheel and its shipped configs; returns the outputs' text. The
    kernel sees the suite's 8 forced CPU devices, an 8-device host, and shares its compilation cache: the jobs'
    tests compile the same programs for the same configs."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for key, value in {**env, "JUPYTER_PATH": fresh_kernel["JUPYTER_PATH"], "PYTHONPATH": "",
                       "JAXSUITE_SOURCE": fresh_kernel["JAXSUITE_SOURCE"],
                       "PIP_NO_INDEX": "1"}.items():      # the dependencies are there already: nothing to fetch
        monkeypatch.setenv(key, value)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    nb = nbformat.read(os.path.join(REPO, "notebooks", name), as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="fresh",
                            resources={"metadata": {"path": str(elsewhere)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert f"jaxsuite from {fresh_kernel['site'] / 'jaxsuite'}" in text, text[:2000]   # the wheel's, not the tree's
    return text


def test_quickstart_notebook_runs(hf_checkpoints, monkeypatch, tmp_path, fresh_kernel):
    folder, _ = hf_checkpoints("qwen3_notebook")
    text = run_notebook("01_quickstart.ipynb", monkeypatch, tmp_path, fresh_kernel, {"JAXSUITE_NOTEBOOK_MODEL": folder})
    assert "step 5: loss" in text
    diff = float(text.split("max |logit diff| after the round trip:")[1].split()[0])
    assert diff < 1e-5
    hf_diff = float(text.split("max |jaxsuite - transformers|:")[1].split()[0])
    assert hf_diff < 1e-4


def test_hypenet_halo_notebook_runs(tmp_path, monkeypatch, check_png, fresh_kernel):
    """notebooks/02_hypenet_halo.ipynb on the smoke-test config, with a private teacher cache."""
    text = run_notebook("02_hypenet_halo.ipynb", monkeypatch, tmp_path, fresh_kernel, {
        "HALO_VARIANT": "test", "HALO_WORKDIR": str(tmp_path / "run"), "JAXSUITE_CACHE": str(tmp_path / "cache")})
    assert "mixer types: ('lightning-attn', 'attn')" in text
    assert "kept as attention:" in text and "CausalLM" in text
    assert (tmp_path / "run" / "stage3" / "hf" / "config.json").is_file()
    # the pipeline's own command on the notebook's run: it finds every step finished and writes the report
    from jaxsuite.core.config_utils import load_config
    from jaxsuite.halo import pipeline
    config = load_config("configs/halo_tiny.py", "test")
    check_pipeline_run(config, tmp_path / "run", pipeline.run(config, str(tmp_path / "run")), check_png)


def check_pipeline_run(config, workdir: Path, results: dict, check_png) -> None:
    """Every artefact of a finished `pipeline.run(config, workdir)` (its `results`), the passkey figures
    recomputed from the saved models, and a re-run that rewrites nothing finished."""
    import jaxsuite
    from jaxsuite.models import HypeNetConfig
    for name in ("results.json", "results.md", "layer_selection.json"):
        assert (workdir / name).is_file(), name
    # 6 x 4 inches at 120 dpi; decode.png has two panels. passkey.png draws no lines (only a sentence) when the
    # teacher retrieves at no length, as the smoke-test teacher usually does
    teacher_retrieves = any(v > 0 for v in results["passkey"]["teacher (Qwen3)"].values())
    for name, size in (("passkey.png", (720, 480)), ("ppl_by_position.png", (720, 480)),
                       ("decode.png", (1200, 480))):
        check_png(workdir / name, size=size, coloured=teacher_retrieves or name != "passkey.png")
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
    # the report says whether retrieval could be compared at all (the smoke-test teacher usually retrieves at
    # no length), from the teacher's own passkey figures
    assert teacher_retrieves == any(t[f"passkey@{n}"] > 0 for n in config.eval.passkey_lengths)
    assert results["retrieval"]["testable"] == teacher_retrieves
    assert ("Retrieval untestable" in (workdir / "results.md").read_text()) == (not teacher_retrieves)

    # the same command again rewrites nothing that a finished step produced (teacher, stages, selection) and
    # gives the same report
    from jaxsuite.halo import pipeline
    first = results
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


def passkey_by_full_forward(model, batch) -> float:
    """Passkey accuracy recomputed without the evaluation code: the model's full [N, L, V] logits, argmax, and
    an exact match of every answer token (the pipeline projects only the tail, in a jitted step)."""
    import jax.numpy as jnp
    ids = np.asarray(batch.inputs)                                         # [N, L]
    predicted = np.asarray(model(jnp.asarray(ids))).argmax(-1)             # [N, L]: position t predicts t + 1
    hits = [np.array_equal(predicted[i, s - 1:s + a - 1], ids[i, s:s + a])
            for i, (s, a) in enumerate(zip(batch.answer_start, batch.answer_len))]
    return float(np.mean(hits))


def file_mtimes(*roots: Path) -> dict[str, int]:
    """{path: mtime in ns} of every file under `roots` (files or folders)."""
    files = [p for root in roots for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file()]
    return {str(p): p.stat().st_mtime_ns for p in files}


def test_ldl_forecasting_notebook_runs(tmp_path, monkeypatch, check_png, fresh_kernel):
    """notebooks/03_ldl_forecasting.ipynb on the smoke-test forecasting config."""
    text = run_notebook("03_ldl_forecasting.ipynb", monkeypatch, tmp_path, fresh_kernel,
                        {"LDL_VARIANT": "test", "LDL_WORKDIR": str(tmp_path / "run")})
    assert "series over the 12 levels" in text and "lowest WSPL:" in text
    # the job's report, on the run the notebook made (the suite runs this job once)
    from jaxsuite.core.config_utils import load_config
    from jaxsuite.forecast import job
    from jaxsuite.forecast.m5_generate import generate_m5
    config, workdir = load_config("configs/ldl_tiny.py", "test"), tmp_path / "run"
    results = json.loads((workdir / "results.json").read_text())
    models = list(config.models.keys())
    assert set(results["summary"]) == set(models)
    for name in models:
        groups = results["summary"][name]
        assert {"all"} | {f"level_{lv}" for lv in range(1, 13)} == set(groups)
        for metric in ("wrmsse", "wspl", "scaled_crps", "mmd", "coverage_50", "coverage_80", "coverage_95"):
            assert np.isfinite(groups["all"][metric]["mean"]), (name, metric)
        assert 0.0 <= groups["all"]["coverage_95"]["mean"] <= 1.0
        check_png(workdir / f"fan_{name}.png")
    check_png(workdir / "components.png")
    table = (workdir / "results.md").read_text()
    assert all(f"| {name} |" in table for name in models) and "s/epoch" in table
    # the generator's known process is kept beside the data: the parameters of exactly the series modelled
    truth = json.loads((workdir / "data" / "truth.json").read_text())
    g = config.data.generate
    assert (truth["seed"], truth["n_days"], truth["stores"]) == (g.seed, g.days, list(g.stores)) == (
        0, results["days"], ["CA_1", "TX_1"])
    assert len(truth["items"]) == 7 * g.items_per_dept == len(truth["elasticity"]) == len(truth["base_log_rate"])
    regenerated = generate_m5(tmp_path / "again", n_items_per_dept=g.items_per_dept, stores=tuple(g.stores),
                              n_days=g.days, seed=g.seed)["truth"]
    assert truth == json.loads(json.dumps(regenerated))

    # Interrupted after some runs, the same command redoes only the missing one: the finished runs' records and
    # saved forecasts stay as they were, the lost run is made again with the same figures, and the same table
    # comes out. A third run then finds nothing to redo.
    run_log = workdir / "runs.jsonl"
    lines = run_log.read_text().splitlines()
    assert len(lines) == len(models) * len(config.seeds) * config.eval.origins
    kept, lost = [json.loads(line) for line in lines[:-1]], json.loads(lines[-1])
    fans = {name: (workdir / f"fan_{name}.npz").stat().st_mtime_ns for name in models}
    run_log.write_text("\n".join(lines[:-1]) + "\n{\"torn")                    # lose the last run mid-write
    again = job.run(config, str(workdir))
    records = []
    for line in run_log.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:                                          # the torn line
            continue
    assert records[:-1] == kept                                               # finished runs not redone
    redone = records[-1]
    assert (redone["origin"], redone["model"], redone["seed"]) == (lost["origin"], lost["model"], lost["seed"])
    assert redone["metrics"].keys() == lost["metrics"].keys()
    for group, figures in lost["metrics"].items():                            # {"all" / "level_<n>": {metric: x}}
        assert redone["metrics"][group] == pytest.approx(figures, rel=1e-5), group
    # the last origin's forecasts are saved per model; only the lost run's model wrote its file again
    rewritten = {name for name, mtime in fans.items() if (workdir / f"fan_{name}.npz").stat().st_mtime_ns != mtime}
    assert rewritten == {lost["model"]}
    for name in results["summary"]:
        assert again["summary"][name]["all"]["wrmsse"]["mean"] == pytest.approx(
            results["summary"][name]["all"]["wrmsse"]["mean"], rel=1e-5)
    before = run_log.read_text()
    job.run(config, str(workdir))
    assert run_log.read_text() == before


def test_cpmobius_notebook_runs(tmp_path, monkeypatch, check_png, fresh_kernel):
    """notebooks/04_cpmobius.ipynb on the smoke-test CPMobius config (every method, one seed, 3 RL steps)."""
    text = run_notebook("04_cpmobius.ipynb", monkeypatch, tmp_path, fresh_kernel,
                        {"JAXSUITE_NOTEBOOK_VARIANT": "test", "JAXSUITE_NOTEBOOK_WORKDIR": str(tmp_path / "run")})
    assert "tie              ['81', '81', '80', '80']     -> [-1. -1. -1. -1.]" in text
    for method in ("cpmobius", "r_zero", "rent"):
        assert f"{method:8s} test accuracy " in text
    assert "step   3: val_acc=" in text
    check_png(tmp_path / "run" / "accuracy.png")
    # the job's record, on the run the notebook made (the suite runs this job once)
    from jaxsuite.core.config_utils import load_config
    from jaxsuite.core.metrics import read_metrics
    from jaxsuite.rl.cpmobius.job import run
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(saved["methods"]) == {"cpmobius", "r_zero", "rent"}
    for method, res in saved["methods"].items():
        curve = res["per_seed"]["0"]["test_acc"]
        assert [s for s, _ in curve] == [0, 2, 3]                       # step 0, every eval_every, the last
        assert [s for s, _ in res["per_seed"]["0"]["val_acc"]] == [0, 1, 2, 3]
        assert 0.0 <= res["test_acc_final_mean"] <= 1.0
    check_png(tmp_path / "run" / "coach_reward.png")
    rows = read_metrics(tmp_path / "run" / "runs" / "cpmobius_seed0" / "metrics.jsonl")
    assert all("player/loss" in r and "rollout_tokens_per_s" in r for r in rows[1:])
    assert any("coach/loss" in r or r.get("coach_skipped") for r in rows[1:])

    # stopped by a SIGTERM during step 1 (a checkpoint is due every 2 steps), then continued: a checkpoint at the
    # step boundary, and the same samples, losses and accuracies as the full run
    import signal

    from jaxsuite.core import interrupt
    from jaxsuite.rl.cpmobius.coach_player import CPMobiusTrainer

    def split_run():
        config = load_config("configs/cpmobius_tiny.py", "test")
        config.methods = ["cpmobius"]
        with interrupt.handling_signals():
            return run(config, str(tmp_path / "split"))
    step = CPMobiusTrainer.train_step

    def step_then_stop(self, t):
        metrics = step(self, t)
        if t == 1:
            os.kill(os.getpid(), signal.SIGTERM)        # a preemption notice during step 1
        return metrics
    monkeypatch.setattr(CPMobiusTrainer, "train_step", step_then_stop)
    with pytest.raises(interrupt.Stopped, match="stopped by SIGTERM at step 1"):
        split_run()
    saved = tmp_path / "split" / "runs" / "cpmobius_seed0" / "checkpoints"
    assert sorted(int(p.name) for p in saved.iterdir() if p.name.isdigit()) == [0, 1]
    monkeypatch.setattr(CPMobiusTrainer, "train_step", step)
    split_run()
    again = read_metrics(tmp_path / "split" / "runs" / "cpmobius_seed0" / "metrics.jsonl")
    assert [r["step"] for r in again] == [0, 1, 2, 3]
    for a, b in zip(rows, again):
        for key in ("val_acc", "player/loss", "player/entropy", "kept_groups", "rollout_tokens"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5), (a["step"], key)


def test_latentchem_notebook_runs(tmp_path, monkeypatch, check_png, fresh_kernel):
    """notebooks/05_latentchem.ipynb on the smoke-test LatentChem config (2 curriculum stages, 2 GRPO steps)."""
    text = run_notebook("05_latentchem.ipynb", monkeypatch, tmp_path, fresh_kernel,
                        {"JAXSUITE_NOTEBOOK_VARIANT": "test", "JAXSUITE_NOTEBOOK_WORKDIR": str(tmp_path / "run")})
    assert "check_answer(reference): True" in text and "invalid SMILES 'C1CC(' -> False" in text
    assert "latent (stage 1):" in text and "<start_latent>" in text and "<end_latent>" in text
    assert "latent_steps: [" in text and "latent_steps, row 1 ending with <end_latent>: [4 0]" in text
    assert "CoT    accuracy " in text and "latent accuracy " in text and "mean reasoning passes" in text
    assert "win rate (latent vs CoT):" in text and "wall_clock_speedup:" in text
    assert "causal test (accuracy):" in text and "GRPO: {" in text
    assert (tmp_path / "run" / "results.json").is_file()
    check_png(tmp_path / "run" / "stages.png")


def test_agents_notebook_runs(tmp_path, monkeypatch, check_png, fresh_kernel):
    """notebooks/06_agents.ipynb on the smoke-test agent config (a few SFT and GRPO steps)."""
    text = run_notebook("06_agents.ipynb", monkeypatch, tmp_path, fresh_kernel,
                        {"JAXSUITE_NOTEBOOK_VARIANT": "test", "JAXSUITE_NOTEBOOK_WORKDIR": str(tmp_path / "run")})
    assert "reasoning: convert | calls: [('calculator', {'expression': '330 * 3.28084'})]" in text
    assert "observation: 1082.6772" in text and "a broken call: invalid JSON" in text
    for name, outcome in (("prints", "ok"), ("loops forever", "timeout"), ("allocates 16 GB", "memory"),
                          ("opens a socket", "error")):
        assert f"{name:16s} -> {outcome:8s}" in text
    assert "1. [" in text and "untrained success" in text and "grpo      success" in text
    assert "# task test-" in text and "-> " in text
    assert (tmp_path / "run" / "hf" / "tokenizer.model").is_file()
    check_png(tmp_path / "run" / "stages.png", coloured=False)
    # the job's report agrees with the traces and metrics it wrote; a rerun resumes (finished stages skipped)
    from jaxsuite.agents.lookup import facts, job
    from jaxsuite.core.config_utils import load_config
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["evaluations"]) == {"untrained", "sft", "grpo"}
    traces = [json.loads(line) for line in (tmp_path / "run" / "traces.jsonl").read_text().splitlines()]
    assert len(traces) == results["test_questions"] == 3 * 2            # 10 countries, 20% held out, 3 questions
    assert results["evaluations"]["grpo"]["success_rate"] == sum(t["reward"] > 0.5 for t in traces) / len(traces)
    assert {t["task"]["metadata"]["country"] for t in traces}.isdisjoint(
        {c.name for c in facts.split_countries(10, 0.2, 0)[0]})          # held-out countries only
    config = load_config("configs/agent_tiny.py:test")
    for stage in ("sft", "grpo"):
        lines = (tmp_path / "run" / stage / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in lines] == list(range(1, config[stage].steps + 1))
    again = job.run(config, str(tmp_path / "run"))
    assert again["sft"] == results["sft"] and again["grpo"] == results["grpo"]
    assert again["evaluations"] == results["evaluations"]


def test_sebench_notebook_runs(tmp_path, monkeypatch, check_png, fresh_kernel):
    """notebooks/07_sebench.ipynb on the smoke-test config (every regime a few steps), then the job's report
    checked against the responses it kept, and a rerun that resumes (nothing trained or evaluated again)."""
    text = run_notebook("07_sebench.ipynb", monkeypatch, tmp_path, fresh_kernel,
                        {"JAXSUITE_NOTEBOOK_VARIANT": "test", "JAXSUITE_NOTEBOOK_WORKDIR": str(tmp_path / "run")})
    assert "'array': 'yitaf', 'mean': 'kocito'" in text and "linalg.inv -> zwc.rfx.quvohe" in text
    assert "a.mean() -> 'ZWCArray' object has no attribute 'mean'" in text and "numpy" not in text.split("zwc.kocito(a")[1][:420].lower()
    for name, category in (("uses zwc", "acc"), ("plain Python", "without_zwc"), ("imports numpy", "numpy"),
                           ("sneaks numpy in", "exe_error"), ("loops forever", "timeout")):
        assert f"{name:16s} -> {category:12s}" in text, name
    assert "closed_sft_rl" in text and "self_play_rl" in text
    check_png(tmp_path / "run" / "regimes.png")
    from jaxsuite.core.config_utils import load_config
    from jaxsuite.sebench import job
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    config = load_config("configs/sebench_tiny.py:test")
    assert set(results["summary"]) == set(config.regimes)
    k = results["k"]
    for regime in config.regimes:
        saved = json.loads((tmp_path / "run" / "seed_0" / regime / "eval.json").read_text())
        for key, stats in saved["summary"].items():
            setting, split = key.split("/")
            rows = [r for r in saved["responses"] if r["setting"] == setting and r["split"] == split]
            assert len(rows) == stats["tasks"] * k
            assert stats[f"mean@{k}"] == sum(r["category"] == "acc" for r in rows) / len(rows)
            assert results["summary"][regime][key]["per_seed"] == [stats[f"mean@{k}"]]
        if regime != "base":
            steps = config.self_play.steps if regime.startswith("self_play") else (
                config.sft.train.steps if regime.endswith("_sft") else config.rl.steps)
            lines = (tmp_path / "run" / "seed_0" / regime / "metrics.jsonl").read_text().splitlines()
            assert [json.loads(x)["step"] for x in lines] == list(range(1, steps + 1)), regime
    again = job.run(config, str(tmp_path / "run"))
    assert again["summary"] == results["summary"]


def test_evoopt_notebook_runs(tmp_path, monkeypatch, check_png, fresh_kernel):
    """notebooks/08_evoopt.ipynb on the smoke-test config: every API's program correct, repair restoring a broken
    one, injection verified; then the job's report checked against the answers it kept, the stages' steps, and
    a rerun that resumes (nothing trained or evaluated again)."""
    text = run_notebook("08_evoopt.ipynb", monkeypatch, tmp_path, fresh_kernel,
                        {"JAXSUITE_NOTEBOOK_VARIANT": "test", "JAXSUITE_NOTEBOOK_WORKDIR": str(tmp_path / "run")})
    for api in ("cvxpy", "pulp", "pyscipopt", "highspy", "scipy"):
        assert f"{api:10s} -> optimum" in text and "correct True" in text.split(f"{api:10s} ->")[1].split("\n")[0], api
    assert "broken   -> failed" in text and "repaired -> optimum" in text
    assert "reference answer: {'parsed': True" in text and "'ok': True}" in text.split("reference answer:")[1].split("\n")[0]
    assert "'ok': False" in text.split("model unchanged:")[1].split("\n")[0]
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    for name in ("data_efficiency.png", "pruning.png"):
        check_png(run / name)
    from jaxsuite.core.config_utils import load_config
    from jaxsuite.optmodel import job
    config = load_config("configs/evoopt_tiny.py:test")
    k = results["k"]
    assert sorted(results["construction"], key=int) == [str(n) for n in config.construct.train_sizes]
    for n, stats in results["construction"].items():
        saved = json.loads((run / f"construct_{n}" / "eval.json").read_text())
        rows = saved["responses"]
        assert len(rows) == config.data.test_problems * k
        assert stats["raw"][f"mean@{k}"] == sum(r["correct"] for r in rows) / len(rows)
        assert stats["repaired"][f"mean@{k}"] == sum(r["repaired_correct"] for r in rows) / len(rows)
        assert stats["raw"]["generation_rate"] == sum(r["outcome"] != "no_code" for r in rows) / len(rows)
        lines = (run / f"construct_{n}" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in lines] == list(range(1, config.construct.train.steps + 1))
    injected = json.loads((run / "inject" / "eval.json").read_text())
    assert results["injection"]["success"] == sum(a["ok"] for a in injected["answers"]) / len(injected["answers"])
    gnn = results["pruning"]["gnn"]
    assert gnn["instances"]["test"] == config.pruning.gnn_test and 0 <= gnn["small_prf"]["f1"] <= 1
    again = job.run(config, str(run))
    assert again["construction"] == results["construction"] and again["pruning"] == results["pruning"]


def test_tiers_notebook_runs(tmp_path, monkeypatch, check_png, fresh_kernel):
    """notebooks/09_tiers.ipynb on the smoke-test config: the L1 rules, extraction and the fact check on examples;
    then the job's report checked against the files each tier wrote, the training stages' steps, and a rerun that
    resumes (no datatrove task, training step or generation run again)."""
    text = run_notebook("09_tiers.ipynb", monkeypatch, tmp_path, fresh_kernel,
                        {"JAXSUITE_NOTEBOOK_VARIANT": "test", "JAXSUITE_NOTEBOOK_WORKDIR": str(tmp_path / "run")})
    assert ("'The heapq module keeps the smallest item first.\\n\\nIt offers heappush and heappop, which run in "
            "logarithmic time.' | dropped: None") in text
    assert "released rule: short_no_punctuation | ours: None" in text
    assert "foreign" in text and text.split("foreign")[1].split()[1] != "en"
    checks = [line for line in text.splitlines() if line.startswith("{'ok'")]
    assert [c.startswith("{'ok': True") for c in checks] == [True, False, False]
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    for name in ("tiers.png", "training.png"):
        check_png(run / name)
    from jaxsuite.core.config_utils import load_config
    from jaxsuite.tiers import pipeline as P
    config = load_config("configs/tiers_tiny.py:test")
    l1 = results["L1"]
    assert l1["L0"] == results["L0"]["pages"] == sum(results["L0"]["kinds"].values())
    assert l1["L1"] == len(P.read_documents(str(run / "L1"))) == l1["L0"] - sum(l1["dropped"].values())
    assert results["L2"]["L2"] == len(P.read_documents(str(run / "L2")))
    refined = (run / "L3" / "refined.jsonl").read_text().splitlines()
    rejected = (run / "L3" / "rejected.jsonl").read_text().splitlines()
    assert results["L3"]["kept"] == len(refined) and results["L3"]["outputs"] == len(refined) + len(rejected)
    for line in refined + rejected:
        row = json.loads(line)
        assert {"source_id", "kind", "prompt", "model", "seed", "check"} <= set(row)
    t = results["training"]
    for arm in ("tiered", "mixed"):
        for i, (name, _) in enumerate(t["stages"]):
            lines = (run / arm / f"{i}_{name}" / "metrics.jsonl").read_text().splitlines()
            assert [json.loads(x)["step"] for x in lines] == list(range(1, t["steps"][i] + 1)), (arm, name)
    assert t["tokens_per_arm"] == sum(t["steps"]) * config.training.batch_size * config.training.seq_len
    from jaxsuite.tiers import job
    again = job.run(config, str(run))
    assert again["L1"] == results["L1"] and again["L2"] == results["L2"] and again["training"] == results["training"]
