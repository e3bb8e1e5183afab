"""The CPMobius job: `run(config, workdir)` for configs/cpmobius_*.py.

  1. Base model: loaded from `model.init_from` (an HF folder or hub id, e.g. Qwen2.5-Math-7B-Instruct), or,
     for the tiny config, a small decoder trained here by a short SFT on generated problems (both tasks: the
     coach's "prompt -> problem" and the player's "problem -> \\boxed{answer}"), so that its rewards are
     informative. The SFT never sees a probe or test problem (they are removed from its documents).
  2. Probe set (V_t) and held-out test set: generated with their own seeds, or read from jsonl/parquet files.
     Probe labels are the ground truth or majority-vote pseudo-labels of the base player.
  3. For each method in `methods` (cpmobius, r_zero, rent) and each seed: a self-play run from the same base,
     in workdir/runs/<method>_seed<k>/ (resumable; each run folder is a Workdir of its own, with metrics.jsonl,
     checkpoints/, results.json and a finished-marker).
  4. results.json: per method and seed, validation and test accuracy per step; a summary per method; plots
     accuracy.png (test and validation accuracy over steps) and coach_reward.png.
Started again with the same command, finished runs (their finished-marker matches the config) are read back
without rebuilding their trainer, an interrupted one resumes from its checkpoints.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from jaxsuite.core.build import build_tokenizer, mesh_and_rules
from jaxsuite.core.config_utils import loop_config
from jaxsuite.core.loop import train_loop
from jaxsuite.core.metrics import pyplot, read_metrics
from jaxsuite.core.workdir import Workdir
from jaxsuite.hf import build_model
from jaxsuite.rl import math_env
from jaxsuite.rl.cpmobius.baselines import RENTTrainer, RZeroTrainer
from jaxsuite.rl.cpmobius.coach_player import CPMobiusTrainer
from jaxsuite.rl.cpmobius.selfplay import ProblemSet
from jaxsuite.rl.rewards import majority_answer
from jaxsuite.rl.rollout import sample_responses

log = logging.getLogger(__name__)

TRAINERS = {"cpmobius": CPMobiusTrainer, "r_zero": RZeroTrainer, "rent": RENTTrainer}


# --- problem sets ------------------------------------------------------------------------------------------------
def _generator(config) -> math_env.ProblemGenerator:
    return math_env.ProblemGenerator(kinds=list(config.env.kinds), max_operand=int(config.env.max_operand))


def load_problems(block, generator: math_env.ProblemGenerator, name: str) -> list[math_env.MathProblem]:
    """`block.path` (jsonl / parquet with `problem_field` / `answer_field`), else `block.size` generated
    problems from `block.seed`."""
    if block.path:
        return math_env.read_problems(block.path, problem_field=block.problem_field,
                                      answer_field=block.answer_field, limit=int(block.size) or None)
    if int(block.size) < 1:
        raise ValueError(f"{name}: set {name}.path or a positive {name}.size")
    return generator.batch(int(block.size), seed=int(block.seed))


def pseudo_labels(model, tokenizer, config, problems: list[math_env.MathProblem], *, mesh=None,
                  rules=None) -> ProblemSet:
    """The probe set with majority-vote labels of the base player's samples; problems without a unique
    majority are dropped (they could not be scored)."""
    v, p = config.validation, config.player
    prompts = [math_env.format_player_prompt(q.problem, config.prompts.player_template) for q in problems]
    roll = sample_responses(model, tokenizer, prompts, n=int(v.pseudo_label_samples),
                            max_new_tokens=int(p.max_new_tokens), temperature=float(p.temperature),
                            top_p=float(p.top_p), seed=int(v.seed), mesh=mesh, rules=rules)
    return majority_labels([q.problem for q in problems], roll.texts, int(v.pseudo_label_samples))


def majority_labels(problems: list[str], texts: list[str], n: int) -> ProblemSet:
    """Problems labelled with the unique majority of their n responses' boxed answers (texts problem-major);
    a problem without one is dropped. Raises ValueError naming the cause when none is left."""
    if len(texts) != len(problems) * n:
        raise ValueError(f"{len(texts)} responses for {len(problems)} problems x n={n}")
    kept, labels = [], []
    for i, q in enumerate(problems):
        winner, _ = majority_answer([math_env.extract_boxed(t) for t in texts[i * n:(i + 1) * n]], "exact")
        if winner is not None:
            kept.append(q)
            labels.append(winner)
    if not kept:
        raise ValueError(f"majority-vote validation: none of the {len(problems)} probe problems has a unique "
                         "majority answer among the base player's samples; use validation.labels=ground_truth "
                         "or a more competent base model")
    return ProblemSet(kept, labels, "probe (majority-vote labels)")


# --- the base model ----------------------------------------------------------------------------------------------
def sft_documents(config, exclude: set[str]) -> list[str]:
    """Coach and player demonstrations on generated problems, none of them in `exclude`."""
    gen = _generator(config)
    rng = np.random.default_rng(int(config.sft.data_seed))
    docs = []
    for q in gen.batch(int(config.sft.num_problems), seed=int(config.sft.data_seed)):
        if q.problem in exclude:
            continue
        # the coach's task is only the format (its digits are random), so a fraction of the problems is enough
        if rng.random() < float(config.sft.coach_fraction):
            docs.append(config.prompts.coach + q.problem)
        docs.append(math_env.format_player_prompt(q.problem, config.prompts.player_template)
                    + math_env.format_player_target(q.answer))
    if not docs:
        raise ValueError("sft: every generated problem is a probe or test problem; raise env.max_operand")
    return docs


def build_base_model(config, wd: Workdir, tokenizer, mesh, rules, exclude: set[str]):
    """`model.init_from` as is, or a fresh model after `sft.train.steps` steps of SFT (resumable, in
    workdir/sft)."""
    from jaxsuite.core import data

    model = build_model(config, tokenizer, mesh, rules)
    if int(config.sft.train.steps) <= 0:
        return model
    docs = sft_documents(config, exclude)
    sft_cfg = loop_config(config.seed, config.sft.train, config.sft.seq_len, config.sft.batch_size)
    train_ds = data.make_lm_dataset(data.InMemorySource(docs), tokenizer, int(config.sft.seq_len),
                                    int(config.sft.batch_size), seed=int(config.seed), prepend_bos=True,
                                    shuffle_window=256)
    sft_wd = Workdir.start(wd.path("sft"), primary=wd.primary)
    out = train_loop(sft_cfg, sft_wd, model, mesh=mesh, rules=rules, train_ds=train_ds,
                     curve_title="CPMobius base: SFT loss")
    sft_wd.finish(sft_cfg, out.summary())
    return out.model


# --- results -----------------------------------------------------------------------------------------------------
def _series(rows: list[dict], key: str) -> list[list[float]]:
    return [[r["step"], r[key]] for r in rows if key in r]


def summarize(config, runs: dict[str, dict[int, Workdir]]) -> dict[str, Any]:
    """results.json's figures from every run's metrics.jsonl (the config is results.json's own key)."""
    out: dict[str, Any] = {"methods": {}}
    for method, by_seed in runs.items():
        per_seed, first, last, best_val, tps, upd = {}, [], [], [], [], []
        for seed, run_wd in by_seed.items():
            rows = read_metrics(run_wd.path("metrics.jsonl"))
            test = _series(rows, "test_acc")
            val = _series(rows, "val_acc")
            per_seed[str(seed)] = {"val_acc": val, "test_acc": test,
                                   "coach_reward": _series(rows, "coach_reward_mean")
                                   or _series(rows, "challenger_reward_mean")}
            first.append(test[0][1])
            last.append(test[-1][1])
            best_val.append(max(v for _, v in val))
            tps += [r["rollout_tokens_per_s"] for r in rows if "rollout_tokens_per_s" in r]
            upd += [r["player_update_seconds"] for r in rows if "player_update_seconds" in r]
        out["methods"][method] = {
            "per_seed": per_seed,
            "test_acc_initial_mean": float(np.mean(first)),
            "test_acc_final_mean": float(np.mean(last)), "test_acc_final_std": float(np.std(last)),
            "test_acc_change_mean": float(np.mean(np.asarray(last) - np.asarray(first))),
            "seeds_improved": int(np.sum(np.asarray(last) > np.asarray(first))),
            "best_val_acc_mean": float(np.mean(best_val)),
            "rollout_tokens_per_s_mean": float(np.mean(tps)) if tps else None,
            "player_update_seconds_mean": float(np.mean(upd)) if upd else None,
        }
    return out


def plot_results(results: dict[str, Any], wd: Workdir) -> list[str]:
    """accuracy.png (test and probe accuracy per method, mean over seeds with min-max band) and
    coach_reward.png (mean coach / challenger reward per step)."""
    plt = pyplot()
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for method, res in results["methods"].items():
        for ax, key in zip(axes, ("test_acc", "val_acc")):
            curves = [np.asarray(s[key], np.float64) for s in res["per_seed"].values()]
            steps = curves[0][:, 0]
            ys = np.stack([c[:, 1] for c in curves if len(c) == len(steps)])
            line, = ax.plot(steps, ys.mean(0), marker="o" if len(steps) < 30 else None, markersize=3, label=method)
            ax.fill_between(steps, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.15)
    for ax, title in zip(axes, ("held-out test accuracy (greedy)", "probe accuracy V_t")):
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    written.append(wd.save_figure(fig, "accuracy.png"))

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    drawn = False
    for method, res in results["methods"].items():
        for seed, s in res["per_seed"].items():
            pts = np.asarray(s["coach_reward"], np.float64)
            if len(pts):
                ax.plot(pts[:, 0], pts[:, 1], marker=".", linewidth=1, label=f"{method} seed {seed}")
                drawn = True
    if drawn:
        ax.set_xlabel("step")
        ax.set_title("coach (CPMobius) / challenger (R-Zero) reward, mean per step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(wd.save_figure(fig, "coach_reward.png"))
    else:
        plt.close(fig)
    return written


# --- compile only ------------------------------------------------------------------------------------------------
def programs(config, mesh, rules) -> list:
    """Every program a CPMobius run compiles, abstract, for `--compile_only` (jaxsuite.core.aot): the base model's
    SFT step (when it trains one), and for the coach and the player each its policy update and scoring pass and its
    sampling loop, plus the player's greedy validation. The coach and the player train at once, so each program
    is reported with the other role's train state and reference resident beside it. Prompt lengths are bounded by
    their UTF-8 bytes (no tokenizer is loaded); a player prompt may hold a coach problem of coach.max_new_tokens.
    The shapes are the cpmobius method's (R-Zero and RENT batch differently)."""
    from jaxsuite.core import aot
    from jaxsuite.core.loop import training_programs
    from jaxsuite.generate import generate_program
    from jaxsuite.hf import abstract_model
    from jaxsuite.rl.policy import policy_programs
    from jaxsuite.rl.rollout import repetition_processor
    from jaxsuite.rl.cpmobius.selfplay import policy_loss_config

    out: list[aot.Program] = []
    if not config.model.init_from and int(config.sft.train.steps) > 0:
        sft_cfg = loop_config(config.seed, config.sft.train, config.sft.seq_len, config.sft.batch_size)
        out += training_programs(sft_cfg, abstract_model(config), mesh=mesh, rules=rules, prefix="sft/")
    rl, steps = config.rl, max(1, int(config.rl.steps))
    per_step = int(rl.problems_per_step)
    rows = {"coach": per_step, "player": per_step * int(rl.n)}
    player_prompt = len(math_env.format_player_prompt("", config.prompts.player_template).encode()) + 1 + int(
        config.coach.max_new_tokens)
    prompts = {"coach": len(config.prompts.coach.encode()) + 1, "player": player_prompt}
    roles, live, taken = {}, {}, {}
    for role in ("coach", "player"):
        block = config[role]
        model = abstract_model(config)           # the coach's own checkpoint has the same architecture
        stop = model.config.eos_token_id
        progs, state = policy_programs(
            model, optim={**dict(block.optim), "steps": steps}, loss=policy_loss_config(block), mesh=mesh,
            rules=rules, rows=rows[role], seq_len=int(rl.seq_len), accum_steps=int(block.get("accum_steps", 1)),
            compute_dtype=block.get("compute_dtype", "float32"), remat=str(block.get("remat", "none")),
            prefix=role + "/")
        penalty = float(block.repetition_penalty)
        processor = repetition_processor(penalty) if penalty != 1.0 else None
        sample = dict(mesh=mesh, rules=rules, stop_tokens=() if stop is None else (int(stop),), top_k=0,
                      logits_processor=processor)
        progs.append(generate_program(model, rows[role], prompts[role], int(block.max_new_tokens), with_logprobs=True,
                                      name=role + "/rollout", **sample))
        if role == "player":
            progs.append(generate_program(model, int(config.validation.batch_size), prompts[role],
                                          int(block.max_new_tokens), greedy=True, name="player/validation", **sample))
        roles[role] = progs
        live[role] = aot.per_device_bytes(state["state"]) + aot.per_device_bytes(state["reference"])
        # what this role's own programs take as arguments out of its live state: the update the whole train state
        # and reference, the others the parameters only
        taken[role] = {"update": live[role], "other": aot.per_device_bytes(state["state"].params)}
    total_live = sum(live.values())
    for role, progs in roles.items():
        for p in progs:     # resident: both roles' states, less the part this program holds as its arguments
            p.resident_bytes = total_live - taken[role]["update" if p.name.endswith("update") else "other"]
            out.append(p)
    return out


# --- the job -----------------------------------------------------------------------------------------------------
def run_selfplay(config, run_wd: Workdir, method: str, seed: int, **trainer_kwargs) -> None:
    """One method x seed in its own folder: skipped when it finished with this config, else run or resumed."""
    if run_wd.is_finished(config):
        log.info("%s seed %d: finished earlier in %s", method, seed, run_wd)
        return
    run_wd = Workdir.start(run_wd, primary=run_wd.primary)
    trainer = TRAINERS[method](config, run_wd.root, seed=seed, **trainer_kwargs)
    summary = trainer.run()
    run_wd.finish(config, summary)


def run(config, workdir: str) -> dict[str, Any]:
    wd = Workdir.start(workdir)
    unknown = [m for m in config.methods if m not in TRAINERS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown} in config.methods; expected some of {sorted(TRAINERS)}")
    gen = _generator(config)   # the problem files first: a wrong path fails before any model is loaded
    probe_problems = load_problems(config.validation, gen, "validation")
    test_problems = load_problems(config.test, gen, "test")
    mesh, rules = mesh_and_rules(config)
    tokenizer = build_tokenizer(config)
    exclude = {q.problem for q in probe_problems + test_problems}
    base = build_base_model(config, wd, tokenizer, mesh, rules, exclude)
    coach_base = base
    if config.coach.init_from:
        from jaxsuite.hf import load_pretrained
        coach_base = load_pretrained(config.coach.init_from, mesh=mesh, rules=rules)
    if config.validation.labels == "ground_truth":
        probe = ProblemSet([q.problem for q in probe_problems], [q.answer for q in probe_problems], "probe")
    elif config.validation.labels == "majority_vote":
        probe = pseudo_labels(base, tokenizer, config, probe_problems, mesh=mesh, rules=rules)
    else:
        raise ValueError(f"validation.labels must be 'ground_truth' or 'majority_vote', "
                         f"got {config.validation.labels!r}")
    test = ProblemSet([q.problem for q in test_problems], [q.answer for q in test_problems], "test")
    log.info("probe set %d problems (%s labels), test set %d problems", len(probe.problems),
             config.validation.labels, len(test.problems))

    runs: dict[str, dict[int, Workdir]] = {}
    for method in config.methods:
        for seed in config.seeds:
            run_wd = wd.sub("runs", f"{method}_seed{seed}")
            run_selfplay(config, run_wd, method, int(seed), player_model=base, coach_model=coach_base,
                         tokenizer=tokenizer, mesh=mesh, rules=rules, probe=probe, test=test)
            runs.setdefault(method, {})[int(seed)] = run_wd
    figures = summarize(config, runs)
    figures["probe_size"], figures["test_size"] = len(probe.problems), len(test.problems)
    figures["plots"] = plot_results(figures, wd) if wd.primary else []
    results = wd.finish(config, figures)
    for method, res in results["methods"].items():
        log.info("%s: test accuracy %.3f -> %.3f (mean over %d seeds), %d improved", method,
                 res["test_acc_initial_mean"], res["test_acc_final_mean"], len(config.seeds), res["seeds_improved"])
    return results


run.programs = programs      # what `--compile_only` compiles for this job
