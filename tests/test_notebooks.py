"""Executes the notebooks top to bottom on CPU, offline; the quickstart against a tiny random checkpoint from
tests/conftest.py. Each notebook runs a whole job, so the module is `slow`."""
from __future__ import annotations

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fresh_kernel(tmp_path_factory):
    """A Jupyter kernel in a fresh virtualenv where jaxsuite is not importable, and the wheel built from this tree:
    what Colab gives. The first notebook's install cell installs the wheel (JAXSUITE_SOURCE); the later ones find
    it installed, as a second notebook in the same Colab runtime would. Returns (jupyter path, site-packages)."""
    import json
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
    check_png(tmp_path / "run" / "decode.png")


def test_ldl_forecasting_notebook_runs(tmp_path, monkeypatch, check_png, fresh_kernel):
    """notebooks/03_ldl_forecasting.ipynb on the smoke-test forecasting config."""
    text = run_notebook("03_ldl_forecasting.ipynb", monkeypatch, tmp_path, fresh_kernel,
                        {"LDL_VARIANT": "test", "LDL_WORKDIR": str(tmp_path / "run")})
    assert "series over the 12 levels" in text and "lowest WSPL:" in text
    assert (tmp_path / "run" / "results.json").is_file()
    check_png(tmp_path / "run" / "components.png")


def test_cpmobius_notebook_runs(tmp_path, monkeypatch, check_png, fresh_kernel):
    """notebooks/04_cpmobius.ipynb on the smoke-test CPMobius config (every method, one seed, 3 RL steps)."""
    text = run_notebook("04_cpmobius.ipynb", monkeypatch, tmp_path, fresh_kernel,
                        {"JAXSUITE_NOTEBOOK_VARIANT": "test", "JAXSUITE_NOTEBOOK_WORKDIR": str(tmp_path / "run")})
    assert "tie              ['81', '81', '80', '80']     -> [-1. -1. -1. -1.]" in text
    for method in ("cpmobius", "r_zero", "rent"):
        assert f"{method:8s} test accuracy " in text
    assert "step   3: val_acc=" in text
    assert (tmp_path / "run" / "results.json").is_file()
    check_png(tmp_path / "run" / "accuracy.png")


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
    import json
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
    import json
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
                config.sft.steps if regime.endswith("_sft") else config.rl.steps)
            lines = (tmp_path / "run" / "seed_0" / regime / "metrics.jsonl").read_text().splitlines()
            assert [json.loads(x)["step"] for x in lines] == list(range(1, steps + 1)), regime
    again = job.run(config, str(tmp_path / "run"))
    assert again["summary"] == results["summary"]
