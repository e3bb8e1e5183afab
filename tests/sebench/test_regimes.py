"""The regimes' pieces without training: prompts (closed = open minus the docs), pass@k by hand, the closed-book
RL splice, the bench prepared once and read back, and bad regime names. The whole job runs in the notebook test
(tests/test_notebooks.py::test_sebench_notebook_runs), which also checks its report and a resumed rerun."""
import json

import numpy as np
import pytest

from jaxsuite.core.config_utils import load_config
from jaxsuite.core.workdir import Workdir
from jaxsuite.rl.rollout import Rollout
from jaxsuite.sebench import docs as sedocs
from jaxsuite.sebench import job
from jaxsuite.sebench import prompts as P

TASK = {"id": "t", "query": "Given a list of numbers `x`, return the average of `x`.",
        "example": {"input": "x=[1, 2]", "output": "1.5"}, "function_name": "def solve(x):",
        "selected_functions": ["mean", "linalg.inv"], "test_cases": [], "solution": "import zwc\ndef solve(x):\n    return zwc.kocito(x)\n"}


@pytest.fixture(scope="module")
def api(mapping):
    return {d.original_name: d for d in sedocs.rewrite_docs(mapping, names=["mean", "linalg.inv"])}


def test_the_closed_prompt_is_the_open_one_minus_the_docs(api):
    open_prompt = P.task_prompt(TASK, api, with_docs=True)
    closed = P.task_prompt(TASK, api, with_docs=False)
    section = ("Library zwc documentation:\nzwc.kocito: Compute the arithmetic mean along the specified axis.\n"
               "zwc.rfx.quvohe: Compute the inverse of a matrix.\n\n")
    assert open_prompt == section + closed
    assert closed == ("Task: Given a list of numbers `x`, return the average of `x`.\n"
                      "Example: solve(x=[1, 2]) returns 1.5\nWrite `solve(x)` with zwc in one python block.\n")
    full = P.task_prompt(TASK, api, with_docs=True, doc_form="full")
    assert api["mean"].rewritten_doc.strip() in full and "numpy" not in full.lower()
    wrapped = P.task_prompt(TASK, api, with_docs=False, wrapper="<user>{prompt}</user>")
    assert wrapped == f"<user>{closed}</user>"
    assert P.solution_response(TASK) == "```python\nimport zwc\ndef solve(x):\n    return zwc.kocito(x)\n```"
    spelt = dict(TASK, selected_functions=["numpy.mean", "np.linalg.inv"])      # as other files may spell them
    assert P.task_prompt(spelt, api, with_docs=True) == open_prompt
    with pytest.raises(KeyError, match=r"task t: no documentation for \['linalg.inv'\]"):
        P.task_prompt(TASK, {"mean": api["mean"]}, with_docs=True)
    with pytest.raises(ValueError, match="doc_form must be"):
        P.task_prompt(TASK, api, with_docs=True, doc_form="long")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    config = load_config("configs/sebench_tiny.py:test")
    wd = Workdir.start(str(tmp_path_factory.mktemp("bench")))
    bench = job.prepare(config, wd)
    return config, wd, bench, job.make_tokenizer(config, wd, bench)


def test_the_bench_is_prepared_once_and_read_back(prepared):
    config, wd, bench, tokenizer = prepared
    assert {s: len(v) for s, v in bench.splits.items()} == {"train": 8, "test_single": 4, "test_multi": 4}
    assert {f for t in bench.splits["train"] for f in t["selected_functions"]} == set(config.data.functions)
    again = job.prepare(config, wd)                    # from the saved tasks, the same tasks
    assert again.splits == bench.splits and again.mapping == bench.mapping
    assert job.make_tokenizer(config, wd, again).encode("zwc.kocito") == tokenizer.encode("zwc.kocito")
    assert (wd.path("api_doc.jsonl") and sedocs.load_api_docs(wd.path("api_doc.jsonl"))[0].curr_name)


def test_closed_rl_scores_the_same_responses_after_the_no_docs_prompt(prepared):
    config, _, bench, tokenizer = prepared
    tasks = bench.splits["train"][:2]
    open_ids = [job.encode_prompt(tokenizer, job.prompt(bench, t, config, with_docs=True)) for t in tasks]
    responses = [tokenizer.encode(P.solution_response(t)) + [tokenizer.eos_id] for t in tasks for _ in range(2)]
    rollout = Rollout([p for p in open_ids for _ in range(2)], responses, np.ones(4, bool), [None] * 4,
                      [""] * 4, np.repeat(np.arange(2), 2), 0.0, 2)
    advantages = [1.0, -1.0, 0.5, -0.5]
    opened = job.update_batch(rollout, tasks, advantages, bench, tokenizer, config, with_docs=True)
    closed = job.update_batch(rollout, tasks, advantages, bench, tokenizer, config, with_docs=False)
    for row in range(4):
        task = tasks[row // 2]
        closed_ids = job.encode_prompt(tokenizer, job.prompt(bench, task, config, with_docs=False))
        assert len(closed_ids) < len(open_ids[row // 2])
        for batch, prompt_ids in ((opened, open_ids[row // 2]), (closed, closed_ids)):
            mask = batch["loss_mask"][row].astype(bool)
            assert batch["targets"][row][mask].tolist() == responses[row]        # the same response tokens
            assert batch["inputs"][row][:len(prompt_ids)].tolist() == prompt_ids  # after its own prompt
            assert np.all(batch["advantages"][row][mask] == advantages[row])


def test_unknown_regimes_and_missing_starts_are_named(tmp_path):
    config = load_config("configs/sebench_tiny.py:test")
    config.regimes = ["base", "open_ssft"]
    with pytest.raises(ValueError, match=r"config.regimes: unknown \['open_ssft'\]"):
        job.run(config, str(tmp_path / "a"))


def test_official_files_are_read_and_sft_without_solutions_is_refused(prepared, tmp_path):
    config, _, bench, tokenizer = prepared
    from jaxsuite.sebench.tasks import save_tasks
    for split, tasks in bench.splits.items():      # the official form: no reference solutions
        save_tasks(tmp_path / f"{split}.jsonl", [{k: v for k, v in t.items() if k != "solution"} for t in tasks])
    sedocs.save_api_docs(tmp_path / "api_doc.jsonl", list(bench.docs.values()))
    config = load_config("configs/sebench_tiny.py:test")
    config.data.update(tasks_dir=str(tmp_path), api_docs=str(tmp_path / "api_doc.jsonl"))
    official = job.prepare(config, Workdir.start(str(tmp_path / "run")))
    assert [t["query"] for t in official.splits["train"]] == [t["query"] for t in bench.splits["train"]]
    with pytest.raises(ValueError, match="sft.source='reference': 8 training tasks have no 'solution'"):
        job.sft_pairs(official, tokenizer, config, None, None, seed=0, pool=None)
    config.data.tasks_dir = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="missing/train.jsonl does not exist"):
        job.prepare(config, Workdir.start(str(tmp_path / "run2")))


def test_a_bucket_workdir_keeps_the_package_local(fake_bucket, tmp_path, monkeypatch):
    """The sandbox imports the package from a local folder: with a gs:// workdir it is built in the local cache,
    while the tasks, docs and mapping go to the bucket through epath."""
    monkeypatch.setenv("JAXSUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    config = load_config("configs/sebench_tiny.py:test")
    wd = Workdir.start(f"{fake_bucket}/run", primary=True)
    bench = job.prepare(config, wd)
    assert (tmp_path / "cache" / "sebench") in bench.package_dir.parents
    assert (bench.package_dir / "_package.json").is_file()
    assert wd.exists("tasks/train.jsonl") and wd.exists("api_doc.jsonl") and wd.exists("mapping.json")
    assert not (tmp_path / "gs:").exists()
    assert job.prepare(config, wd).splits == bench.splits


def test_rollout_sft_data_keeps_the_passing_responses_once(prepared, tmp_path, monkeypatch):
    """sft.source='rollouts': of the sampled with-docs responses only those the evaluator passes are kept, saved
    in the seed's workdir and read back instead of sampling again. The sampler is replaced by one that answers
    each task's first sample with its reference and the rest with plain Python (the sampler has its own tests)."""
    config, _, bench, tokenizer = prepared
    config = load_config("configs/sebench_tiny.py:test")
    config.sft.update(source="rollouts", rollouts_per_task=3)
    train = bench.splits["train"]
    calls = []

    def sampler(model, tok, prompts, *, prompt_ids, n, **kwargs):
        calls.append(prompt_ids)
        texts = [P.solution_response(train[g]) if j == 0 else "```python\ndef solve(x):\n    return x\n```"
                 for g in range(len(prompt_ids)) for j in range(n)]
        rows = len(prompt_ids) * n
        return Rollout([[1]] * rows, [[2]] * rows, np.ones(rows, bool), [None] * rows, texts,
                       np.repeat(np.arange(len(prompt_ids)), n), 0.0, n)

    monkeypatch.setattr(job, "sample_responses", sampler)
    wd = Workdir.start(str(tmp_path / "seed_0"))
    from jaxsuite.agents.sandbox import SandboxPool
    with SandboxPool(workers=2) as pool:
        pairs = job.sft_pairs(bench, tokenizer, config, wd, lambda: None, seed=0, pool=pool)
        assert [t["id"] for t, _ in pairs] == [t["id"] for t in train]
        assert all(text == P.solution_response(t) for t, text in pairs)
        assert calls[0] == [job.encode_prompt(tokenizer, job.prompt(bench, t, config, with_docs=True)) for t in train]
        assert job.sft_pairs(bench, tokenizer, config, wd, lambda: None, seed=0, pool=pool) == pairs
        assert len(calls) == 1
    config.sft.source = "teacher"
    with pytest.raises(ValueError, match="sft.source must be 'reference' or 'rollouts'"):
        job.sft_pairs(bench, tokenizer, config, wd, None, seed=0, pool=None)


def test_sft_epochs_set_the_steps_from_the_pairs(prepared, tmp_path):
    config, _, bench, tokenizer = prepared
    config = load_config("configs/sebench_tiny.py:test")
    config.sft.update(epochs=1.5, warmup_fraction=0.5)          # 8 pairs, batch 4: ceil(1.5 * 8 / 4) = 3 steps
    from jaxsuite.core.build import mesh_and_rules
    mesh, rules = mesh_and_rules(config)
    model = job.starting_model(config, tokenizer, 0, mesh, rules)
    pairs = [(t, P.solution_response(t)) for t in bench.splits["train"]]
    wd = Workdir.start(str(tmp_path / "seed_0"))
    trained, summary = job.sft_stage("closed_sft", wd, lambda: model, bench, tokenizer, config, pairs,
                                     with_docs=False, seed=0, mesh=mesh, rules=rules)
    assert summary["steps"] == 3 and summary["pairs"] == 8
    # a later regime that starts here reads the finished stage back (zero steps): the same weights
    again, _ = job.sft_stage("closed_sft", wd, lambda: job.starting_model(config, tokenizer, 0, mesh, rules), bench,
                             tokenizer, config, pairs, with_docs=False, seed=0, mesh=mesh, rules=rules)
    from flax import nnx
    import jax
    same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))),
                        nnx.state(trained, nnx.Param), nnx.state(again, nnx.Param))
    assert all(jax.tree.leaves(same))
    lines = (tmp_path / "seed_0" / "closed_sft" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]
    lrs = [json.loads(x)["train/lr"] for x in lines]
    assert lrs[0] < lrs[-1] == pytest.approx(config.sft.train.lr)        # warm-up over the first half (1 step)


def test_the_paper_config_loads_and_names_a_missing_task_file(tmp_path, monkeypatch):
    config = load_config("configs/sebench_qwen3_8b.py")
    assert (config.sft.train.lr, config.sft.batch_size, config.sft.seq_len, config.sft.epochs) == (1e-5, 32, 20480, 4.0)
    assert (config.rl.prompts_per_step, config.rl.n, config.rl.optim.lr, config.rl.max_new_tokens) == (32, 8, 1e-6, 8192)
    assert config.sft.source == "rollouts" and config.topology == "v5p:2x2x2"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="data/sebench/train.jsonl does not exist"):
        job.run(config, str(tmp_path / "run"))


def test_with_lora_a_regime_trains_only_the_adapters(prepared, tmp_path):
    config, _, bench, tokenizer = prepared
    config = load_config("configs/sebench_tiny.py:test")
    config.model.lora.rank = 4
    from flax import nnx
    from jaxsuite.core.build import mesh_and_rules
    from jaxsuite.models.lora import adapters, is_lora_path
    mesh, rules = mesh_and_rules(config)
    base = job.starting_model(config, tokenizer, 0, mesh, rules)
    before = {k: np.asarray(v) for k, v in nnx.to_flat_state(nnx.state(base, nnx.Param))}
    pairs = [(t, P.solution_response(t)) for t in bench.splits["train"]]
    trained, _ = job.sft_stage("closed_sft", Workdir.start(str(tmp_path / "seed_0")),
                               lambda: job.starting_model(config, tokenizer, 0, mesh, rules), bench, tokenizer,
                               config, pairs, with_docs=False, seed=0, mesh=mesh, rules=rules)
    assert adapters(trained)
    after = {k: np.asarray(v) for k, v in nnx.to_flat_state(nnx.state(trained, nnx.Param))}
    frozen = [k for k in after if not is_lora_path(tuple(str(p) for p in k))]
    assert frozen and all(np.array_equal(after[k], before[k]) for k in frozen)
    changed = [k for k in after if is_lora_path(tuple(str(p) for p in k)) and "b" in str(k[-1]).lower()]
    assert changed and any(np.abs(after[k]).max() > 0 for k in changed)       # B starts at zero, then learns
