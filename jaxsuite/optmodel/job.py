"""EvoOpt-LLM's three modules on a jaxsuite LM: model construction, constraint injection, variable pruning.

    python -m jaxsuite.launch --config configs/evoopt_tiny.py --workdir runs/evoopt_tiny

1. Data (deterministic from `data.seed`): generated problems of every family (jaxsuite.optmodel.families) with
   solved optima: a training pool, a test set, and a disjoint pool whose statements, programs and LP files,
   each on its own, pre-train the base (what a pretrained LM knows of both languages, without the mapping);
   injection tasks (a binding rule per model); pruning instances. Written to <workdir>/data/*.jsonl.
2. A model: a tiny Qwen3 with a SentencePiece tokenizer trained on those texts, pre-trained on the disjoint
   pool (`base`), or a released checkpoint (`model.init_from`, its tokenizer, no pre-training).
3. Model construction: LoRA SFT (`model.lora`; rank 0 trains every weight) from the base on statement ->
   formulation + cvxpy program, once per `construct.train_sizes` entry: the data-efficiency curve. Each model
   samples `eval.k` answers per test problem; every answer is run by the execution check (sandboxed, ORLM's
   rule) as written and after rule-based repair (jaxsuite.optmodel.repair): generation rate (an answer with
   code), executability (the program exits cleanly), accuracy (mean@k), pass@k and majority vote, per family.
4. Constraint injection: SFT from the base on (LP model + rule in words -> modified LP model); each test task
   answered greedily and verified by solving (jaxsuite.optmodel.injection): the share of each check and of all.
5. Variable pruning: the predict-and-search GNN trained on SCIP's solution pools of `pruning.gnn_size`
   instances; on held-out ones, fix-and-solve (or the trust region) against the plain solve at the same time
   limit: primal gap and seconds. The LLM variant: SFT from the base on (LP model -> ["v=0", ...]) on small
   instances; pooled precision/recall/F1 of its lists against the optimal solutions' zeros, and the GNN's
   (p < 0.5) on the same instances.

Writes results.json (per module; the curve per train size), data_efficiency.png and pruning.png. Each stage and
each evaluation is resumable, and a finished one is read back instead of run again.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from typing import Any

import ml_collections
import numpy as np

from jaxsuite.agents.sandbox import SandboxPool
from jaxsuite.core import files
from jaxsuite.core.build import encode_prompt, fitting_pairs, job_tokenizer, mesh_and_rules
from jaxsuite.core.metrics import phase, pyplot
from jaxsuite.core.workdir import Workdir
from jaxsuite.models.config import DecoderConfig, count_params
from jaxsuite.models.factory import init_model
from jaxsuite.optmodel import checker as C
from jaxsuite.optmodel import families as F
from jaxsuite.optmodel import injection as I
from jaxsuite.optmodel import pruning as PR
from jaxsuite.optmodel.gnn import bipartite_graph, pad_graphs
from jaxsuite.optmodel.model import solve, to_lp
from jaxsuite.optmodel.programs import answer_text, construction_prompt
from jaxsuite.optmodel.repair import repair_answer
from jaxsuite.rl import stages
from jaxsuite.rl.rollout import sample_responses

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Data:
    pretrain: list[str]
    train: list[F.Problem]
    test: list[F.Problem]
    inject_train: list[I.InjectionTask]
    inject_test: list[I.InjectionTask]
    prune_train: list            # LinearModel, small: the LLM variant's training instances
    prune_test: list             # LinearModel, small: both variants scored on them
    gnn_train: list              # LinearModel at pruning.gnn_size
    gnn_test: list


def _problems(n: int, seed: int, families: list[str], size: str = "toy") -> list[F.Problem]:
    return F.dataset(n, seed=seed, families=families, size=size)


def _injections(problems: list[F.Problem], seed: int) -> list[I.InjectionTask]:
    rng = np.random.default_rng(seed)
    out = []
    for p in problems:
        try:
            out.append(I.make_injection(p.model, rng))
        except ValueError:          # no binding rule keeps this instance feasible: skip it
            continue
    return out


def make_data(config) -> Data:
    d, p = config.data, config.pruning
    families = list(d.families) or sorted(F.FAMILIES)
    seed = int(d.seed)
    train = _problems(max(int(n) for n in config.construct.train_sizes), seed, families)
    test = _problems(int(d.test_problems), seed + 1, families)
    pool = _problems(int(d.pretrain_problems), seed + 2, families)
    pretrain = [t for q in pool for t in (q.statement, answer_text(q.model), to_lp(q.model))]
    inject_train = _injections(_problems(int(d.injection_train), seed + 3, families), seed + 3)
    inject_test = _injections(_problems(int(d.injection_test), seed + 4, families), seed + 4)
    rng = np.random.default_rng(seed + 5)
    small = [F.generate(str(p.family), rng=rng, size="small", solve_it=False).model
             for _ in range(int(p.llm_train) + int(p.test))]
    rng = np.random.default_rng(seed + 6)
    big = [F.generate(str(p.family), rng=rng, size=str(p.gnn_size), solve_it=False).model
           for _ in range(int(p.gnn_train) + int(p.gnn_test))]
    return Data(pretrain, train, test, inject_train, inject_test, small[:int(p.llm_train)], small[int(p.llm_train):],
                big[:int(p.gnn_train)], big[int(p.gnn_train):])


def save_data(data: Data, wd: Workdir) -> None:
    def rows(problems):
        return "".join(json.dumps({"family": q.family, "statement": q.statement, "optimum": q.optimum,
                                   "answer": answer_text(q.model)}) + "\n" for q in problems)
    if not wd.primary:
        return
    files.atomic_write_text(wd.path("data/train.jsonl"), rows(data.train))
    files.atomic_write_text(wd.path("data/test.jsonl"), rows(data.test))
    files.atomic_write_text(wd.path("data/injection_test.jsonl"), "".join(
        json.dumps({"model": to_lp(t.original), "rule": t.rule, "optimum_after": t.optimum_after}) + "\n"
        for t in data.inject_test))


def make_tokenizer(config, wd: Workdir, data: Data):
    """The configured tokenizer, or a SentencePiece model trained on the data's texts."""
    def texts():
        out = list(data.pretrain) + [construction_prompt(q.statement) + answer_text(q.model) for q in data.train]
        out += [I.injection_prompt(t) + I.injection_answer(t) for t in data.inject_train]
        return out + [PR.pruning_prompt(m) for m in data.prune_train]
    return job_tokenizer(config, wd, texts)



def wrapped(config, prompts: list[str]) -> list[str]:
    """The prompts inside `prompt_wrapper` (a chat template's user turn for an instruct model)."""
    wrapper = str(config.get("prompt_wrapper", "{prompt}"))
    return [wrapper.format(prompt=p) for p in prompts]


def _fitting(config, tokenizer, prompts: list[str], targets: list[str], what: str):
    """Token pairs that fit seq_len, the prompts wrapped (the rest dropped and counted: a long medium-size model
    is no toy target)."""
    return fitting_pairs(tokenizer, wrapped(config, prompts), targets, int(config.seq_len), what=what,
                         hint="shrink the problems")


def base_model(config, tokenizer, data: Data, wd: Workdir, *, mesh, rules):
    """The pre-trained base: a released checkpoint, or the tiny model pre-trained on the disjoint pool (a
    finished stage is read back)."""
    seed = int(config.seed)
    if config.model.get("init_from"):
        from jaxsuite.hf import load_pretrained
        return load_pretrained(config.model.init_from, mesh=mesh, rules=rules)
    model = init_model(DecoderConfig(**{**dict(config.model.arch), "vocab_size": tokenizer.vocab_size}), seed=seed)
    if int(config.pretrain.train.steps) <= 0:
        return model
    bos = [tokenizer.bos_id if getattr(tokenizer, "bos_id", -1) >= 0 else tokenizer.eos_id]
    targets = [tokenizer.encode(t)[:int(config.seq_len) - 2] + [tokenizer.eos_id] for t in data.pretrain]
    return stages.sft_stage("base", wd, model, [bos] * len(targets), targets, config.pretrain,
                            seq_len=int(config.seq_len), seed=seed, mesh=mesh, rules=rules, title="EvoOpt base")[0]


def adapted(name, wd, base, prompts, targets, block, config, *, mesh, rules):
    """SFT from `base()` on the pairs, through LoRA when model.lora.rank > 0."""
    seed = int(config.seed)
    lora = config.model.get("lora")
    return stages.sft_stage(name, wd, stages.with_adapters(base(), lora, seed), prompts, targets, block,
                            seq_len=int(config.seq_len), seed=seed, mesh=mesh, rules=rules,
                            lora=lora is not None and int(lora.rank) > 0, title=f"EvoOpt {name}")


def evaluate_construction(model, tokenizer, problems: list[F.Problem], config, wd: Workdir, name: str, *,
                          pool: SandboxPool, mesh=None, rules=None) -> dict:
    """Samples eval.k answers per problem, checks each as written and repaired; cached in <name>/eval.json."""
    if wd.exists(f"{name}/eval.json"):
        return wd.read_json(f"{name}/eval.json")["summary"]
    ev, k = config.eval, int(config.eval.k)
    ids = [encode_prompt(tokenizer, p) for p in wrapped(config, [construction_prompt(q.statement) for q in problems])]
    rollout = sample_responses(model, tokenizer, [""] * len(problems), prompt_ids=ids, n=k,
                               max_new_tokens=int(ev.max_new_tokens), temperature=float(ev.temperature),
                               seed=int(config.seed) * 7919, batch_size=int(ev.batch_size), mesh=mesh, rules=rules)
    refs = [problems[g].optimum for g in rollout.group_ids]
    raw = _check_all(rollout.texts, refs, config, pool)
    repaired_texts, rules_applied = zip(*[repair_answer(t) for t in rollout.texts])
    changed = [i for i, rs in enumerate(rules_applied) if rs]        # an unrepaired answer keeps its result
    rechecked = _check_all([repaired_texts[i] for i in changed], [refs[i] for i in changed], config, pool)
    repaired = list(raw)
    for i, result in zip(changed, rechecked):
        repaired[i] = result
    stats = functools.partial(C.summarise, k=k, references=[q.optimum for q in problems], rule=str(ev.rule),
                              groups=[q.family for q in problems])
    summary = {"raw": stats(raw), "repaired": stats(repaired),
               "repair_rules": {r: sum(r in a for a in rules_applied) for r in
                                ("operators", "imports", "names", "solver_api", "unclosed")}}
    records = [{"family": problems[g].family, "response": t, "outcome": a.outcome, "correct": a.correct,
                "repaired_outcome": b.outcome, "repaired_correct": b.correct, "repairs": list(rs)}
               for g, t, a, b, rs in zip(rollout.group_ids, rollout.texts, raw, repaired, rules_applied)]
    if wd.primary:
        wd.write_json(f"{name}/eval.json", {"summary": summary, "responses": records})
    return summary


def _check_all(texts, references, config, pool: SandboxPool) -> list[C.CheckResult]:
    return C.check_many(texts, references, rule=str(config.eval.rule), timeout=float(config.eval.timeout),
                        workers=int(config.eval.workers), pool=pool)


def _greedy(model, tokenizer, prompts: list[str], config, max_new_tokens: int, *, mesh=None,
            rules=None) -> list[str]:
    ids = [encode_prompt(tokenizer, p) for p in wrapped(config, prompts)]
    rollout = sample_responses(model, tokenizer, [""] * len(prompts), prompt_ids=ids, n=1,
                               max_new_tokens=max_new_tokens, temperature=0.0, seed=int(config.seed),
                               batch_size=int(config.eval.batch_size), mesh=mesh, rules=rules)
    return rollout.texts


def evaluate_injection(model, tokenizer, tasks: list[I.InjectionTask], config, wd: Workdir, *, mesh=None,
                       rules=None) -> dict:
    if wd.exists("inject/eval.json"):
        return wd.read_json("inject/eval.json")["summary"]
    answers = _greedy(model, tokenizer, [I.injection_prompt(t) for t in tasks], config,
                      int(config.injection.max_new_tokens), mesh=mesh, rules=rules)
    reports = [I.verify_injection(t, a) for t, a in zip(tasks, answers)]
    checks = ("parsed", "objective_kept", "variables_kept", "constraints_kept", "rule_holds", "optimum_matches")
    summary = {c: float(np.mean([getattr(r, c) for r in reports])) for c in checks}
    summary["success"] = float(np.mean([r.ok for r in reports]))
    summary["tasks"] = len(tasks)
    if wd.primary:
        wd.write_json("inject/eval.json", {"summary": summary, "answers": [
            {"rule": t.rule, "answer": a, **r.to_dict()} for t, a, r in zip(tasks, answers, reports)]})
    return summary


def gnn_pruning(data: Data, config, wd: Workdir) -> dict:
    """The GNN trained on solution pools, then scored on the small test instances (pooled P/R/F1 at p < 0.5)
    and searched on the held-out `gnn_size` instances against the plain solve. Cached in pruning/gnn.json."""
    if wd.exists("pruning/gnn.json"):
        return wd.read_json("pruning/gnn.json")
    p = config.pruning
    with phase("pruning: SCIP solution pools", 0):
        train = PR.pool_labels(data.gnn_train, pool=int(p.pool), time_limit=float(p.label_time_limit))
    with phase("pruning: GNN training", 0):
        gnn, losses = PR.train_gnn(train, steps=int(p.steps), learning_rate=float(p.lr), width=int(p.width),
                                   temperature=float(p.temperature), seed=int(config.seed), log_every=int(p.log_every))
    probs = PR.predict(gnn, pad_graphs([bipartite_graph(m) for m in data.prune_test]))    # no solve needed
    predicted = [[n for j, n in enumerate(m.names) if m.variables[n].kind == "binary" and probs[i, j] < 0.5]
                 for i, m in enumerate(data.prune_test)]
    gold = [PR.gold_zeros(m, solve(m).values) for m in data.prune_test]
    held = PR.pool_labels(data.gnn_test, pool=1, time_limit=float(p.label_time_limit))
    held_probs = PR.predict(gnn, held.batch)
    searches = []
    with phase("pruning: predict-and-search against the plain solve", 0):
        for i, m in enumerate(data.gnn_test):
            searches.append(PR.compare_search(m, held_probs[i], held.best[i], k0=int(p.k0), k1=int(p.k1),
                                              delta=float(p.delta), time_limit=float(p.time_limit)))
    out = {"loss_first": float(np.mean(losses[:10])), "loss_last": float(np.mean(losses[-10:])),
           "small_prf": PR.pooled_prf(predicted, gold), "searches": searches,
           "plain_gap": float(np.mean([s["plain"]["gap"] for s in searches])),
           "pruned_gap": float(np.mean([s["pruned"]["gap"] for s in searches])),
           "plain_seconds": float(np.mean([s["plain"]["seconds"] for s in searches])),
           "pruned_seconds": float(np.mean([s["pruned"]["seconds"] for s in searches])),
           "instances": {"train": len(data.gnn_train), "test": len(data.gnn_test), "size": str(p.gnn_size)}}
    out["speedup"] = out["plain_seconds"] / max(out["pruned_seconds"], 1e-9)
    if wd.primary:
        wd.write_json("pruning/gnn.json", out)
    return out


def llm_pruning(model, tokenizer, data: Data, config, wd: Workdir, *, mesh=None, rules=None) -> dict:
    if wd.exists("prune_llm/eval.json"):
        return wd.read_json("prune_llm/eval.json")["summary"]
    answers = _greedy(model, tokenizer, [PR.pruning_prompt(m) for m in data.prune_test], config,
                      int(config.pruning.max_new_tokens), mesh=mesh, rules=rules)
    predicted = [PR.parse_fix_list(a, m) for a, m in zip(answers, data.prune_test)]
    gold = [PR.gold_zeros(m, solve(m).values) for m in data.prune_test]
    summary = PR.pooled_prf(predicted, gold)
    if wd.primary:
        wd.write_json("prune_llm/eval.json", {"summary": summary, "answers": answers})
    return summary


def plot_data_efficiency(curve: dict, k: int, wd: Workdir) -> str | None:
    plt = pyplot()
    sizes = sorted(int(n) for n in curve)
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, style in (("raw", "-"), ("repaired", "--")):
        for metric, colour in (("executability", "tab:blue"), (f"mean@{k}", "tab:orange")):
            ax.plot(sizes, [curve[str(n)][key][metric] for n in sizes], style, marker="o", color=colour,
                    label=f"{'accuracy' if metric.startswith('mean') else metric} ({key})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_xlabel("training samples")
    ax.set_ylim(0, 1.05)
    ax.set_title("EvoOpt model construction: data efficiency")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return wd.save_figure(fig, "data_efficiency.png")


def plot_pruning(gnn: dict, wd: Workdir) -> str | None:
    plt = pyplot()
    searches = gnn["searches"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    x = np.arange(len(searches))
    for ax, key, label in ((axes[0], "seconds", "solve seconds"), (axes[1], "gap", "primal gap")):
        ax.bar(x - 0.2, [s["plain"][key] for s in searches], 0.4, label="plain solve")
        ax.bar(x + 0.2, [s["pruned"][key] for s in searches], 0.4, label="GNN predict-and-search")
        ax.set_xticks(x, [f"#{i}" for i in x])
        ax.set_xlabel("held-out instance")
        ax.set_title(label)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Variable pruning at a time limit ({gnn['instances']['size']} instances)")
    fig.tight_layout()
    return wd.save_figure(fig, "pruning.png")


def programs(config, mesh, rules) -> list:
    """For `--compile_only`: the SFT step (LoRA when model.lora.rank > 0) at seq_len, and the sampling loop of
    the evaluation (prompt up to eval.max_prompt_tokens, eval.max_new_tokens new)."""
    from jaxsuite.core.config_utils import loop_config
    from jaxsuite.core.loop import training_programs
    from jaxsuite.generate import generate_program
    from jaxsuite.hf import abstract_model
    from jaxsuite.models.lora import LoraConfig, apply_lora, is_lora_path

    c = config.construct
    model = abstract_model(config)
    lora = config.model.get("lora")
    trainable = None
    if lora is not None and int(lora.rank) > 0:
        apply_lora(model, LoraConfig.from_config(lora), seed=int(config.seed))
        trainable = is_lora_path
    train = dict(c.train)
    if float(c.get("epochs", 0) or 0) > 0:      # the steps of the largest train size (the schedule's length)
        train["steps"] = max(1, math.ceil(float(c.epochs) * max(int(n) for n in c.train_sizes) / int(c.batch_size)))
    loop_cfg = loop_config(int(config.seed), train, int(config.seq_len), int(c.batch_size))
    out = training_programs(loop_cfg, model, mesh=mesh, rules=rules, trainable=trainable, prefix="sft/")
    plain = abstract_model(config)
    stop = plain.config.eos_token_id
    out.append(generate_program(plain, int(config.eval.batch_size), int(config.eval.max_prompt_tokens),
                                int(config.eval.max_new_tokens), mesh=mesh, rules=rules,
                                stop_tokens=() if stop is None else (int(stop),), top_k=0, name="eval/sample"))
    return out


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    wd = Workdir.start(workdir)
    mesh, rules = mesh_and_rules(config)
    with phase("data: problems, injection tasks, pruning instances", 0):
        data = make_data(config)
        save_data(data, wd)
        tokenizer = make_tokenizer(config, wd, data)
    log.info("data: %d train / %d test problems, %d / %d injection tasks, %d + %d pruning instances",
             len(data.train), len(data.test), len(data.inject_train), len(data.inject_test),
             len(data.gnn_train), len(data.gnn_test))
    common = dict(mesh=mesh, rules=rules)

    def base():          # built (or read back) each time a stage starts from it: no model kept between stages
        return base_model(config, tokenizer, data, wd, **common)

    if not config.model.get("init_from") and int(config.pretrain.train.steps) > 0:
        with phase("the base: pre-training on the disjoint pool", 0):
            base()       # trained once here (a later stage reads it back), so the progress lines say which phase
    k = int(config.eval.k)
    curve: dict[str, dict] = {}
    with SandboxPool(workers=int(config.eval.workers)) as pool:
        sizes = [int(n) for n in config.construct.train_sizes]
        for i, n in enumerate(sizes):
            with phase(f"model construction {i + 1}/{len(sizes)}: {n} training samples", 0):
                name = f"construct_{n}"
                if not wd.exists(f"{name}/eval.json"):
                    chosen = data.train[:n]
                    prompts, targets = _fitting(config, tokenizer, [construction_prompt(q.statement) for q in chosen],
                                                [answer_text(q.model) for q in chosen], name)
                    model, _ = adapted(name, wd, base, prompts, targets, config.construct, config, **common)
                    evaluate_construction(model, tokenizer, data.test, config, wd, name, pool=pool, **common)
                    del model
                curve[str(n)] = evaluate_construction(None, tokenizer, data.test, config, wd, name, pool=pool)
                log.info("%s: %s", name, {key: round(curve[str(n)][key][f"mean@{k}"], 3) for key in ("raw", "repaired")})
    with phase("constraint injection", 0):
        if not wd.exists("inject/eval.json"):
            prompts, targets = _fitting(config, tokenizer, [I.injection_prompt(t) for t in data.inject_train],
                                        [I.injection_answer(t) for t in data.inject_train], "inject")
            model, _ = adapted("inject", wd, base, prompts, targets, config.injection, config, **common)
            evaluate_injection(model, tokenizer, data.inject_test, config, wd, **common)
            del model
        injection = evaluate_injection(None, tokenizer, data.inject_test, config, wd)
    with phase("variable pruning: the LLM variant", 0):
        if not wd.exists("prune_llm/eval.json"):
            gold = [PR.pruning_answer(PR.gold_zeros(m, solve(m).values)) for m in data.prune_train]
            prompts, targets = _fitting(config, tokenizer, [PR.pruning_prompt(m) for m in data.prune_train], gold,
                                        "prune_llm")
            model, _ = adapted("prune_llm", wd, base, prompts, targets, config.pruning.llm, config, **common)
            llm_pruning(model, tokenizer, data, config, wd, **common)
            del model
        llm = llm_pruning(None, tokenizer, data, config, wd)
    gnn = gnn_pruning(data, config, wd)
    arch = DecoderConfig(**{**dict(config.model.arch), "vocab_size": tokenizer.vocab_size}) \
        if not config.model.get("init_from") else None
    figures = {"construction": curve, "k": k, "rule": str(config.eval.rule), "injection": injection,
               "pruning": {"llm": llm, "gnn": {key: v for key, v in gnn.items() if key != "searches"}},
               "data": {"train": len(data.train), "test": len(data.test), "families": sorted({q.family for q in data.test}),
                        "injection": [len(data.inject_train), len(data.inject_test)]},
               "model_parameters": count_params(arch) if arch else None}
    figures["plots"] = [plot_data_efficiency(curve, k, wd), plot_pruning(gnn, wd)] if wd.primary else []
    results = wd.finish(config, figures)
    log.info("construction (mean@%d, raw -> repaired): %s", k,
             {n: (round(v["raw"][f"mean@{k}"], 3), round(v["repaired"][f"mean@{k}"], 3)) for n, v in curve.items()})
    log.info("injection success %.3f; pruning F1: LLM %.3f, GNN %.3f; GNN search gap %.4f vs %.4f, %.2fx faster",
             injection["success"], llm["f1"], gnn["small_prf"]["f1"], gnn["pruned_gap"], gnn["plain_gap"],
             gnn["speedup"])
    return results

run.programs = programs      # what `--compile_only` compiles for this job
