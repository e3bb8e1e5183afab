"""SE-Bench's training regimes on a jaxsuite LM: what ends up in the weights when a model learns a new library.

    python -m jaxsuite.launch --config configs/sebench_tiny.py --workdir runs/sebench_tiny

1. The bench (once per workdir): NumPy renamed into `zwc` (jaxsuite.sebench.package) with its rewritten docs,
   and tasks over the config's functions (generated with ground truth, or read from the official files:
   `data.tasks_dir` with train.jsonl / test_single.jsonl / test_multi.jsonl and `data.api_docs`).
2. A model: a fresh tiny Qwen3 with a SentencePiece tokenizer trained on the bench's texts, or a released
   checkpoint (`model.init_from`, its tokenizer); optionally LoRA (`model.lora.rank` > 0) on every regime.
3. The regimes, each from its starting point, each a stage in <workdir>/seed_<s>/<regime>/:
     base           no training
     open_sft       SFT on (prompt WITH docs -> reference solution), through the core training loop
     closed_sft     SFT on the same solutions after the prompt WITHOUT docs
     open_rl        GRPO from base: rollouts and update on the with-docs prompt
     closed_rl      GRPO from base: rollouts on the with-docs prompt, the update on the no-docs prompt with the
                    same response tokens spliced on (the released code's closed-book RL)
     closed_sft_rl  closed_rl from the closed_sft model (the paper's SFT -> RL)
     self_play_sft  the model writes tasks about the training functions, execution keeps the sound ones, and it
                    learns from its own kept proposals and solutions by SFT (jaxsuite.sebench.selfplay)
     self_play_rl   the same tasks, learnt by GRPO: proposals rewarded for being kept, two closed-book
                    solutions per kept task rewarded for passing (the paper's self-play, n=2)
   The SFT targets are the tasks' reference solutions: the paper keeps a strong model's passing rollouts (5 per
   question at T 0.6), which at toy scale no model here could produce; the reference stands in for them.
   The RL reward is the evaluator's verdict (1 for `acc`, else 0) under `rl.rules` ("paper": last block,
   tolerance 1e-2; "released": the released reward's first block, 1e-5, stderr fails).
4. Every regime is evaluated on test_single and test_multi, without docs (what was internalised) and with docs:
   `eval.k` samples per task at `eval.temperature`, reported as mean@k, pass@k and the six outcome shares.

Writes, per seed, each regime's metrics (metrics.jsonl), checkpoints and evaluation (eval.json: every response
with its outcome), and at the top results.json (per regime and setting: the mean over seeds and each seed's
value) and regimes.png (a bar per regime, with and without docs). Each stage and each evaluation is resumable
and a finished one is not run again.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import random
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from jaxsuite.agents.sandbox import SandboxPool
from jaxsuite.core import files
from jaxsuite.core.build import encode_prompt, job_tokenizer, mesh_and_rules
from jaxsuite.core.config_utils import config_hash, loop_config
from jaxsuite.core.loop import pad_batch
from jaxsuite.core.metrics import phase, pyplot
from jaxsuite.core.workdir import Workdir
from jaxsuite.models.config import DecoderConfig, count_params
from jaxsuite.models.factory import init_model
from jaxsuite.rl.estimators import mean_at_k, pass_at_k
from jaxsuite.rl.objectives import group_advantages
from jaxsuite.rl.rollout import pack_rl_batch, sample_responses
from jaxsuite.rl import stages
from jaxsuite.rl.stages import train_stage
from jaxsuite.sebench import docs as sedocs
from jaxsuite.sebench import evaluate as E
from jaxsuite.sebench import prompts as P
from jaxsuite.sebench import selfplay as S
from jaxsuite.sebench import tasks as T
from jaxsuite.sebench.names import NameMapping, numpy_mapping
from jaxsuite.sebench.package import build_package

log = logging.getLogger(__name__)
REGIMES = ("base", "open_sft", "closed_sft", "open_rl", "closed_rl", "closed_sft_rl", "self_play_sft",
           "self_play_rl")
STARTS = {"base": None, "open_sft": "base", "closed_sft": "base", "open_rl": "base", "closed_rl": "base",
          "closed_sft_rl": "closed_sft", "self_play_sft": "base", "self_play_rl": "base"}
SPLITS = ("train", "test_single", "test_multi")
TEST_SPLITS = ("test_single", "test_multi")
SETTINGS = {"no_docs": False, "docs": True}


@dataclasses.dataclass
class Bench:
    mapping: NameMapping
    package_dir: Path
    docs: dict[str, sedocs.ApiDoc]          # by the library's name ("mean", "linalg.inv")
    splits: dict[str, list[dict]]


def prepare(config, wd: Workdir) -> Bench:
    """The package, docs and tasks: built once into the workdir, read back on a rerun."""
    mapping = numpy_mapping()
    # the sandbox imports the package from a local folder: under the workdir, or the local cache for a bucket
    local = (files.cache_dir() / "sebench" / config_hash(config.data)) if files.is_remote(wd.root) else Path(wd.path("package"))
    package_dir = local / mapping.package
    official = str(config.data.get("tasks_dir", "") or "")
    if official:
        splits = {s: T.load_tasks(Path(official) / f"{s}.jsonl") for s in SPLITS}
        api = sedocs.load_api_docs(config.data.api_docs) if config.data.get("api_docs") else sedocs.rewrite_docs(mapping)
    else:
        api = sedocs.rewrite_docs(mapping)
    docs = {sedocs.doc_key(d.original_name): d for d in api}
    if not (package_dir / "_package.json").exists():
        local.mkdir(parents=True, exist_ok=True)
        build_package(local, mapping, docs=sedocs.package_docs(api, mapping))
    if not official:
        if all(wd.exists(f"tasks/{s}.jsonl") for s in SPLITS):
            splits = {s: T.load_tasks(wd.path(f"tasks/{s}.jsonl")) for s in SPLITS}
        else:
            functions = list(config.data.functions) or None
            splits = T.generate_tasks(mapping, package_dir, seed=int(config.data.seed), functions=functions,
                                      per_function=int(config.data.per_function), multi_tasks=int(config.data.multi_tasks))
            if wd.primary:
                for s in SPLITS:
                    T.save_tasks(wd.path(f"tasks/{s}.jsonl"), splits[s])
                sedocs.save_api_docs(wd.path("api_doc.jsonl"), api)
                mapping.save(wd.path("mapping.json"))
    limit = int(config.data.get("max_test_tasks", 0))
    if limit:
        splits = {s: (v[:limit] if s in TEST_SPLITS else v) for s, v in splits.items()}
    return Bench(mapping, package_dir, docs, splits)


def prompt(bench: Bench, task: dict, config, *, with_docs: bool) -> str:
    return P.task_prompt(task, bench.docs, with_docs=with_docs, package=bench.mapping.package,
                         doc_form=str(config.prompts.doc_form), wrapper=str(config.prompts.wrapper))


def make_tokenizer(config, wd: Workdir, bench: Bench):
    """The configured tokenizer, or a SentencePiece model trained on the bench's prompts and solutions."""
    return job_tokenizer(config, wd, lambda: [prompt(bench, t, config, with_docs=True) + P.solution_response(t)
                                              for s in SPLITS for t in bench.splits[s]])



def starting_model(config, tokenizer, seed: int, mesh, rules):
    if config.model.get("init_from"):
        from jaxsuite.hf import load_pretrained
        return load_pretrained(config.model.init_from, mesh=mesh, rules=rules)
    return init_model(DecoderConfig(**{**dict(config.model.arch), "vocab_size": tokenizer.vocab_size}), seed=seed)


def sft_pairs(bench: Bench, tokenizer, config, wd: Workdir, start, *, seed: int, pool, mesh=None,
              rules=None) -> list[tuple[dict, str]]:
    """(task, response) pairs the SFT regimes train on, per `sft.source`:
      "reference"  each training task's reference solution (generated tasks carry one);
      "rollouts"   the paper's data: `sft.rollouts_per_task` responses of `start()` (the starting model) to each
                   training task WITH the docs, at `sft.temperature`, the passing ones kept; collected once per
                   seed into <seed workdir>/sft_data.jsonl and read back on a rerun."""
    sft, train = config.sft, bench.splits["train"]
    source = str(sft.get("source", "reference"))
    if source == "reference":
        unsolved = [t["id"] for t in train if not t.get("solution")]
        if unsolved:
            raise ValueError(f"sft.source='reference': {len(unsolved)} training tasks have no 'solution' (first: "
                             f"{unsolved[0]}); the official files carry none: use sft.source='rollouts' (a model's "
                             "passing responses, as the paper) or run the RL and evaluation regimes only")
        return [(t, P.solution_response(t)) for t in train]
    if source != "rollouts":
        raise ValueError(f"sft.source must be 'reference' or 'rollouts', got {source!r}")
    by_id = {t["id"]: t for t in train}
    if wd.exists("sft_data.jsonl"):
        return [(by_id[r["task"]], r["response"]) for r in wd.read_jsonl("sft_data.jsonl")]
    n = int(sft.rollouts_per_task)
    ids = [encode_prompt(tokenizer, prompt(bench, t, config, with_docs=True)) for t in train]
    rollout = sample_responses(start(), tokenizer, [""] * len(train), prompt_ids=ids, n=n,
                               max_new_tokens=int(config.rl.max_new_tokens), temperature=float(sft.temperature),
                               seed=seed * 15485863, batch_size=int(config.eval.batch_size), mesh=mesh, rules=rules)
    outcomes = E.evaluate_many([(train[g], text) for g, text in zip(rollout.group_ids, rollout.texts)],
                               package_dir=bench.package_dir, mapping=bench.mapping, pool=pool)
    kept = [(train[g], text) for g, text, o in zip(rollout.group_ids, rollout.texts, outcomes) if o.correct]
    log.info("SFT data: %d of %d responses pass (%d tasks x %d)", len(kept), len(outcomes), len(train), n)
    if not kept:
        raise ValueError("sft.source='rollouts': no response of the starting model passed; nothing to train on")
    if wd.primary:
        files.atomic_write_text(wd.path("sft_data.jsonl"), "".join(
            json.dumps({"task": t["id"], "response": text}) + "\n" for t, text in kept))
    return kept


def sft_stage(name, wd, start, bench, tokenizer, config, pairs: list[tuple[dict, str]], *, with_docs: bool,
              seed: int, mesh, rules):
    """SFT (jaxsuite.rl.stages.sft_stage) on (prompt -> response) pairs, the prompt with the docs (Open-SFT) or
    without them (Closed-SFT), from `start()`; returns the model and the loop's summary. `sft.epochs` > 0 sets
    the steps to that many passes over the pairs."""
    sft = config.sft
    seq_len = int(sft.get("seq_len", 0) or config.seq_len)     # the paper's SFT rows are longer than its RL rows
    prompts = [encode_prompt(tokenizer, prompt(bench, t, config, with_docs=with_docs)) for t, _ in pairs]
    targets = [tokenizer.encode(text) + [tokenizer.eos_id] for _, text in pairs]
    # the starting model is made inside the call: once the loop holds its train state, nothing else holds it
    return stages.sft_stage(name, wd, stages.with_adapters(start(), config.model.get("lora"), seed), prompts, targets,
                            sft, seq_len=seq_len, seed=seed, mesh=mesh, rules=rules,
                            lora=int(config.model.lora.rank) > 0, title=f"SE-Bench {name}")


def update_batch(rollout, tasks: list[dict], advantages, bench: Bench, tokenizer, config, *, with_docs: bool) -> dict:
    """The RL batch of a rollout sampled on the with-docs prompts: those prompts (open RL), or each task's
    no-docs prompt with the same response tokens spliced on (closed RL, as the released code does), so the
    update's log-probs and the policy ratio are the closed-book model's."""
    prompt_ids = rollout.prompt_ids if with_docs else [
        encode_prompt(tokenizer, prompt(bench, tasks[g], config, with_docs=False)) for g in rollout.group_ids]
    return pack_rl_batch(prompt_ids, rollout.response_ids, advantages, seq_len=int(config.seq_len), pad_id=0)


def rl_stage(name, wd, start, bench, tokenizer, config, *, update_with_docs: bool, seed: int, mesh, rules, pool):
    """GRPO with the evaluator as reward: rollouts always see the docs; the update is on the with-docs prompt
    (open RL) or on the no-docs prompt with the same response tokens (closed RL)."""
    rl, train = config.rl, bench.splits["train"]
    if not update_with_docs and int(rl.get("closed_mini_batch_size", 0) or 0):
        # the released closed-book RL updates in larger mini-batches than its open-book RL (32 prompts, not 16)
        rl = ml_collections.ConfigDict({**rl.to_dict(), "mini_batch_size": int(rl.closed_mini_batch_size)})
    rules_eval = E.RELEASED_RL_RULES if str(rl.rules) == "released" else E.PAPER_RULES
    q, n = int(rl.prompts_per_step), int(rl.n)

    def step(policy, step, rng):
        chosen = [train[i] for i in rng.choice(len(train), size=q, replace=len(train) < q)]
        open_ids = [encode_prompt(tokenizer, prompt(bench, t, config, with_docs=True)) for t in chosen]
        rollout = sample_responses(policy.module(), tokenizer, [""] * q, prompt_ids=open_ids, n=n,
                                   max_new_tokens=int(rl.max_new_tokens), temperature=float(rl.temperature),
                                   seed=seed * 7919 + step, batch_size=int(rl.get("rollout_batch_size", 0) or q * n),
                                   mesh=mesh, rules=rules)
        outcomes = E.evaluate_many([(chosen[g], text) for g, text in zip(rollout.group_ids, rollout.texts)],
                                   package_dir=bench.package_dir, mapping=bench.mapping, rules=rules_eval, pool=pool)
        rewards = np.asarray([float(o.correct) for o in outcomes], np.float32)
        advantages = group_advantages(rewards, rollout.group_ids)
        batch = update_batch(rollout, chosen, advantages, bench, tokenizer, config, with_docs=update_with_docs)
        metrics = policy.update(pad_batch(batch, q * n))
        shares = E.shares(outcomes)
        metrics.update(reward_mean=float(rewards.mean()), **{f"share_{k}": v for k, v in shares.items()})
        return metrics

    return train_stage(name, wd, stages.with_adapters(start(), config.model.get("lora"), seed), rl, step, mesh=mesh, rules=rules, seed=seed)


def _sft_batch(prompts: list[list[int]], targets: list[list[int]], policy, seq_len: int, rows: int) -> dict:
    """Rows of (prompt -> target) scored at the current policy: an update on them is an SFT step (ratio 1)."""
    batch = pack_rl_batch(prompts, targets, [1.0] * len(prompts), seq_len=seq_len, pad_id=0, rows=rows)
    batch["old_logprobs"], _ = policy.score(batch)
    return batch


def self_play_stage(name, wd, start, bench, tokenizer, config, *, mode: str, seed: int, mesh, rules, pool):
    """Self-play (see jaxsuite.sebench.selfplay): `proposer_sft_steps` SFT steps on proposals made from the
    training tasks, then steps that sample proposals, keep the sound ones and learn from them by SFT (mode
    "sft") or GRPO (mode "rl")."""
    sp, train = config.self_play, bench.splits["train"]
    functions = sorted({t["selected_functions"][0] for t in train})
    wrapper, seq_len, package = str(config.prompts.wrapper), int(config.seq_len), bench.mapping.package
    warm = int(sp.proposer_sft_steps)
    q, n = int(sp.functions_per_step), int(sp.proposals_per_function)
    rows = q * n * (1 + int(sp.solutions_per_task))
    examples = [(encode_prompt(tokenizer, S.proposal_prompt(bench.docs[t["selected_functions"][0]], package=package,
                                                     wrapper=wrapper)),
                 tokenizer.encode(S.proposal_response(t)) + [tokenizer.eos_id]) for t in train]

    def step(policy, step, rng):
        if step <= warm:         # learn what a proposal looks like
            chosen = rng.choice(len(examples), size=q * n, replace=len(examples) < q * n)
            batch = _sft_batch([examples[i][0] for i in chosen], [examples[i][1] for i in chosen], policy,
                               seq_len, rows)
            return {**policy.update(batch), "phase": 0.0}
        chosen = [functions[i] for i in rng.choice(len(functions), size=q, replace=len(functions) < q)]
        ids = [encode_prompt(tokenizer, S.proposal_prompt(bench.docs[f], package=package, wrapper=wrapper)) for f in chosen]
        proposals = sample_responses(policy.module(), tokenizer, [""] * q, prompt_ids=ids, n=n,
                                     max_new_tokens=int(sp.max_new_tokens), temperature=float(sp.temperature),
                                     seed=seed * 7919 + step, batch_size=q * n, mesh=mesh, rules=rules)
        kept = S.check_proposals(proposals.texts, [chosen[g] for g in proposals.group_ids], bench.mapping,
                                 bench.package_dir, pool, random.Random(seed * 1000003 + step))
        valid = np.asarray([k is not None for k in kept], np.float32)
        tasks = [k for k in kept if k is not None]
        metrics = {"phase": 1.0, "kept_share": float(valid.mean()), "kept_tasks": float(len(tasks))}
        if not tasks:
            return {**metrics, "reward_mean": 0.0, "updates": 0.0}
        closed = [encode_prompt(tokenizer, prompt(bench, t, config, with_docs=False)) for t in tasks]
        if mode == "sft":        # its own sound proposals, and each kept task's solution after the no-docs prompt
            keep = [i for i, k in enumerate(kept) if k is not None]
            batch = _sft_batch([proposals.prompt_ids[i] for i in keep] + closed,
                               [proposals.response_ids[i] for i in keep] +
                               [tokenizer.encode(P.solution_response(t)) + [tokenizer.eos_id] for t in tasks],
                               policy, seq_len, rows)
            return {**metrics, **policy.update(batch), "reward_mean": float(valid.mean())}
        m = int(sp.solutions_per_task)
        solutions = sample_responses(policy.module(), tokenizer, [""] * len(tasks), prompt_ids=closed, n=m,
                                     max_new_tokens=int(config.rl.max_new_tokens), temperature=float(sp.temperature),
                                     seed=seed * 7919 + step + 1, batch_size=q * n * m, mesh=mesh, rules=rules)
        outcomes = E.evaluate_many([(tasks[g], text) for g, text in zip(solutions.group_ids, solutions.texts)],
                                   package_dir=bench.package_dir, mapping=bench.mapping, pool=pool)
        solved = np.asarray([float(o.correct) for o in outcomes], np.float32)
        advantages = np.concatenate([group_advantages(valid, proposals.group_ids),
                                     group_advantages(solved, solutions.group_ids)])
        batch = pack_rl_batch(proposals.prompt_ids + solutions.prompt_ids,
                              proposals.response_ids + solutions.response_ids, advantages, seq_len=seq_len,
                              pad_id=0, rows=rows)
        return {**metrics, **policy.update(batch), "reward_mean": float(solved.mean())}

    return train_stage(name, wd, stages.with_adapters(start(), config.model.get("lora"), seed), sp, step, mesh=mesh, rules=rules, seed=seed)


def cached_evaluation(wd: Workdir, name: str) -> dict | None:
    """A finished evaluation's summary (<name>/eval.json), or None."""
    return wd.read_json(f"{name}/eval.json")["summary"] if wd.exists(f"{name}/eval.json") else None


def evaluate_model(model, bench, tokenizer, config, wd: Workdir, name: str, *, seed: int, pool, mesh=None,
                   rules=None) -> dict:
    """mean@k, pass@k and the outcome shares of one model on each test split, with and without docs; every
    response is kept in <name>/eval.json, and a finished evaluation is read back."""
    cached = f"{name}/eval.json"
    if wd.exists(cached):
        return cached_evaluation(wd, name)
    k, ev = int(config.eval.k), config.eval
    summary, records = {}, []
    for setting, with_docs in SETTINGS.items():
        for split in TEST_SPLITS:
            tasks = bench.splits[split]
            ids = [encode_prompt(tokenizer, prompt(bench, t, config, with_docs=with_docs)) for t in tasks]
            rollout = sample_responses(model, tokenizer, [""] * len(tasks), prompt_ids=ids, n=k,
                                       max_new_tokens=int(ev.max_new_tokens), temperature=float(ev.temperature),
                                       seed=seed * 104729 + len(records), batch_size=int(ev.batch_size),
                                       mesh=mesh, rules=rules)
            pairs = [(tasks[g], text) for g, text in zip(rollout.group_ids, rollout.texts)]
            outcomes = E.evaluate_many(pairs, package_dir=bench.package_dir, mapping=bench.mapping, pool=pool)
            correct = np.asarray([o.correct for o in outcomes]).reshape(len(tasks), k).sum(1)
            summary[f"{setting}/{split}"] = {
                f"mean@{k}": mean_at_k(correct.tolist(), k), f"pass@{k}": float(np.mean(
                    [pass_at_k(k, int(c), k) for c in correct])), "shares": E.shares(outcomes), "tasks": len(tasks)}
            records += [{"setting": setting, "split": split, "task": t["id"], "response": text,
                         "category": o.category, "reason": o.reason} for (t, text), o in zip(pairs, outcomes)]
    if wd.primary:
        wd.write_json(cached, {"summary": summary, "responses": records})
    return summary


def run_seed(config, wd: Workdir, bench: Bench, tokenizer, seed: int, mesh, rules, pool) -> dict[str, dict]:
    """Every regime of one seed, in order, each evaluated once. No model is kept between regimes: a regime's
    start is built when it is needed (the base model loaded or initialised again, an earlier regime read back
    from its finished stage), so during a training step nothing else of this job holds device memory (what
    `--compile_only` reports is then the whole footprint)."""
    regimes = [r for r in REGIMES if r in set(config.regimes)]
    for regime in regimes:
        if STARTS[regime] is not None and STARTS[regime] not in regimes:
            raise ValueError(f"regime {regime} starts from {STARTS[regime]}; add it to config.regimes")
    common = dict(seed=seed, mesh=mesh, rules=rules)
    made: dict[str, Any] = {"pairs": None}       # the SFT data, made when the first SFT regime needs it

    def base():
        return starting_model(config, tokenizer, seed, mesh, rules)

    def trained(regime: str):
        """The model `regime` ends with: trained now, or read back from its finished stage (zero steps)."""
        if regime == "base":
            return base()
        start = functools.partial(trained, STARTS[regime])
        if regime.startswith("self_play"):
            return self_play_stage(regime, wd, start, bench, tokenizer, config, mode=regime.rsplit("_", 1)[1],
                                   pool=pool, **common)[0]
        if regime.endswith("_sft"):
            if made["pairs"] is None:
                made["pairs"] = sft_pairs(bench, tokenizer, config, wd, base, pool=pool, **common)
            return sft_stage(regime, wd, start, bench, tokenizer, config, made["pairs"],
                             with_docs=regime.startswith("open"), **common)[0]
        return rl_stage(regime, wd, start, bench, tokenizer, config, update_with_docs=regime == "open_rl", pool=pool,
                        **common)[0]

    evaluations: dict[str, dict] = {}
    for i, regime in enumerate(regimes):
        with phase(f"seed {seed}, regime {i + 1}/{len(regimes)}: {regime}", 0):
            evaluations[regime] = cached_evaluation(wd, regime)
            if evaluations[regime] is None:
                evaluations[regime] = evaluate_model(trained(regime), bench, tokenizer, config, wd, regime,
                                                     pool=pool, **common)
            log.info("%s: %s", regime, {key: round(v[f"mean@{int(config.eval.k)}"], 3)
                                        for key, v in evaluations[regime].items()})
    return evaluations


def aggregate(per_seed: dict[int, dict[str, dict]], k: int) -> dict:
    """{regime: {setting/split: {"mean", "min", "max", "per_seed"}}} for mean@k over the seeds."""
    out: dict = {}
    seeds = sorted(per_seed)
    for regime in per_seed[seeds[0]]:
        out[regime] = {}
        for key in per_seed[seeds[0]][regime]:
            values = [per_seed[s][regime][key][f"mean@{k}"] for s in seeds]
            out[regime][key] = {"mean": float(np.mean(values)), "min": float(min(values)),
                                "max": float(max(values)), "per_seed": values}
    return out


def plot_regimes(summary: dict, k: int, wd: Workdir) -> str | None:
    plt = pyplot()
    regimes = [r for r in REGIMES if r in summary]      # the regimes in their order, whatever the dict's
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, split in zip(axes, TEST_SPLITS):
        x = np.arange(len(regimes))
        for offset, (setting, colour) in zip((-0.2, 0.2), (("no_docs", "#4c72b0"), ("docs", "#dd8452"))):
            stats = [summary[r][f"{setting}/{split}"] for r in regimes]
            means = [s["mean"] for s in stats]
            err = [[m - s["min"] for m, s in zip(means, stats)], [s["max"] - m for m, s in zip(means, stats)]]
            ax.bar(x + offset, means, 0.4, yerr=err, capsize=3, color=colour,
                   label="without docs" if setting == "no_docs" else "docs in the prompt")
            for xi, m in zip(x + offset, means):
                ax.text(xi, m + 0.01, f"{m:.2f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, regimes, rotation=25, ha="right")
        ax.set_title(f"{split} (mean@{k}; bars: min-max over seeds)")
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("accuracy")
    axes[1].legend(loc="upper right")      # the multi-function panel has the room
    fig.suptitle("SE-Bench regimes: accuracy on the obfuscated library")
    fig.tight_layout()
    return wd.save_figure(fig, "regimes.png")


def programs(config, mesh, rules) -> list:
    """Every program a run of these regimes compiles, abstract, for `--compile_only` (jaxsuite.core.aot): the
    SFT step (the core loop's, at sft.seq_len), the GRPO update on one mini-batch and its scoring pass (at
    seq_len: the longest prompt plus rl.max_new_tokens), the rollout sampling loop, and the evaluation's
    sampling loop. Prompt lengths are bounded by `prompts.max_prompt_tokens` (no tokenizer is loaded). The
    self-play stage's programs have these shapes or smaller (its proposer SFT rows go through the policy update).
    Nothing is resident beside them: `run_seed` keeps no model between regimes."""
    from jaxsuite.core import aot
    from jaxsuite.core.loop import training_programs
    from jaxsuite.generate import generate_program
    from jaxsuite.hf import abstract_model
    from jaxsuite.rl.policy import PolicyLossConfig, policy_programs

    out: list[aot.Program] = []
    regimes = set(config.regimes)
    prompt_len = int(config.prompts.max_prompt_tokens)
    if regimes & {"open_sft", "closed_sft", "closed_sft_rl"}:
        sft = config.sft
        loop_cfg = loop_config(config.seed, sft.train, int(sft.get("seq_len", 0) or config.seq_len), int(sft.batch_size))
        out += training_programs(loop_cfg, abstract_model(config), mesh=mesh, rules=rules, prefix="sft/")
    model = abstract_model(config)
    stop = model.config.eos_token_id
    sample = dict(mesh=mesh, rules=rules, stop_tokens=() if stop is None else (int(stop),), top_k=0)
    if regimes & {"open_rl", "closed_rl", "closed_sft_rl", "self_play_rl"}:
        rl = config.rl
        rows = int(rl.get("mini_batch_size", 0) or int(rl.prompts_per_step) * int(rl.n))
        loss = PolicyLossConfig(clip_low=float(rl.clip), clip_high=float(rl.clip), kl_coef=float(rl.get("kl_coef", 0.0)),
                                temperature=float(rl.temperature))
        progs, _ = policy_programs(model, optim={**dict(rl.optim), "steps": max(1, int(rl.steps))}, loss=loss,
                                   mesh=mesh, rules=rules, rows=rows, seq_len=int(config.seq_len),
                                   accum_steps=int(rl.get("accum_steps", 1)),
                                   compute_dtype=rl.get("compute_dtype", "float32"), remat=str(rl.get("remat", "none")),
                                   prefix="rl/")
        out += progs
        closed = int(rl.get("closed_mini_batch_size", 0) or 0)
        if closed and closed != rows and regimes & {"closed_rl", "closed_sft_rl"}:
            progs, _ = policy_programs(model, optim={**dict(rl.optim), "steps": max(1, int(rl.steps))}, loss=loss,
                                       mesh=mesh, rules=rules, rows=closed, seq_len=int(config.seq_len),
                                       accum_steps=int(rl.get("accum_steps", 1)) * closed // rows,
                                       compute_dtype=rl.get("compute_dtype", "float32"),
                                       remat=str(rl.get("remat", "none")), prefix="rl_closed/")
            out += [p for p in progs if p.name.endswith("update")]
        batch = int(rl.get("rollout_batch_size", 0) or int(rl.prompts_per_step) * int(rl.n))
        out.append(generate_program(model, batch, prompt_len, int(rl.max_new_tokens), with_logprobs=True,
                                    name="rl/rollout", **sample))
    out.append(generate_program(model, int(config.eval.batch_size), prompt_len, int(config.eval.max_new_tokens),
                                name="eval/sample", **sample))
    return out


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    unknown = sorted(set(config.regimes) - set(REGIMES))
    if unknown:
        raise ValueError(f"config.regimes: unknown {unknown}; known: {list(REGIMES)}")
    wd = Workdir.start(workdir)
    mesh, rules = mesh_and_rules(config)
    with phase("preparing the bench: package, docs, tasks", 0):
        bench = prepare(config, wd)
        tokenizer = make_tokenizer(config, wd, bench)
    log.info("bench: %s tasks; functions %s", {s: len(v) for s, v in bench.splits.items()},
             sorted({f for t in bench.splits["train"] for f in t["selected_functions"]}))
    per_seed = {}
    with SandboxPool(workers=int(config.eval.workers)) as pool:
        for seed in [int(s) for s in config.seeds]:
            per_seed[seed] = run_seed(config, wd.sub(f"seed_{seed}"), bench, tokenizer, seed, mesh, rules, pool)
    k = int(config.eval.k)
    summary = aggregate(per_seed, k)
    arch = DecoderConfig(**{**dict(config.model.arch), "vocab_size": tokenizer.vocab_size}) \
        if not config.model.get("init_from") else None
    figures = {"summary": summary, "per_seed": {str(s): v for s, v in per_seed.items()}, "k": k,
               "tasks": {s: len(v) for s, v in bench.splits.items()},
               "functions": sorted({f for t in bench.splits["train"] for f in t["selected_functions"]}),
               "model_parameters": count_params(arch) if arch else None}
    figures["plots"] = [plot_regimes(summary, k, wd)] if wd.primary else []
    results = wd.finish(config, figures)
    for regime, stats in summary.items():
        log.info("%-14s %s", regime, "  ".join(f"{key} {v['mean']:.2f}" for key, v in stats.items()))
    return results


run.programs = programs      # what `--compile_only` compiles for this job
