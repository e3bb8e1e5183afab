"""Forgetting under supervised fine-tuning, full against LoRA, and what merging back toward the base does.

The demonstration of issue 16 (configs/lora_forgetting.py). One run:
  1. a base: `model.init_from`, or a decoder pre-trained here on `data.source` (workdir/pretrain);
  2. a new task: the math environment's generated problems ("Q:23+58=?\\nA:" -> "\\boxed{81}"), SFT from the base
     twice, every weight (workdir/full) and LoRA adapters only (workdir/lora), same data, steps and schedule;
  3. the merges: each fine-tune interpolated back toward the base, theta_base + w * tau for w in `merge.weights`
     (w = 1 is the fine-tune, 0 the base; for LoRA tau is scale * A B on each adapted kernel), and TIES with the
     base (tau trimmed to its top `density` fraction by magnitude) for each of `merge.densities`;
  4. every point scored twice: task accuracy (greedy answers to held-out problems, checked by
     `math_env.score_response`) and forgetting, the rise of the next-token loss on the pre-training held-out
     text (`data.eval_source`) over the base's.
Writes results.json (the table of points), points.jsonl (one line per evaluated point: a rerun skips them),
tradeoff.png (accuracy against forgetting), and each training run's own workdir. Started again with the
same command it resumes: finished training runs are restored, evaluated points are read back.
"""
from __future__ import annotations

import functools
import logging
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsuite.core import data, merging
from jaxsuite.core import train as tr
from jaxsuite.core.build import build_datasets, build_tokenizer, mesh_and_rules
from jaxsuite.core.config_utils import loop_config
from jaxsuite.core.loop import train_loop
from jaxsuite.core.workdir import Workdir
from jaxsuite.hf import build_model
from jaxsuite.models import lora
from jaxsuite.rl import math_env
from jaxsuite.rl.rollout import greedy_answers

log = logging.getLogger(__name__)
POINTS = "points.jsonl"


@functools.partial(jax.jit, static_argnums=0)
def _loss_sums(graphdef, params, rest, batch) -> tuple[jax.Array, jax.Array]:
    """(summed next-token loss, tokens) of one batch; compiled once per model structure and batch shape."""
    model = nnx.merge(graphdef, params, rest)
    logits = model(batch["inputs"], positions=batch.get("positions"), segment_ids=batch.get("segment_ids"))
    return tr.cross_entropy(logits, batch["targets"], batch["loss_mask"])


def heldout_loss(model, eval_ds, batches: int) -> float:
    """Mean next-token loss over the first `batches` batches of the held-out text."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    loss, tokens = 0.0, 0.0
    for i, batch in enumerate(iter(eval_ds)):
        if i >= batches:
            break
        s, n = jax.device_get(_loss_sums(graphdef, params, rest, {k: jnp.asarray(v) for k, v in batch.items()}))
        loss, tokens = loss + float(s), tokens + float(n)
    if tokens == 0:
        raise ValueError("data.eval_source gave no full batch: use a larger held-out set or smaller batches")
    return loss / tokens


def task_accuracy(model, tokenizer, problems, cfg, *, mesh=None, rules=None) -> float:
    prompts = [math_env.format_player_prompt(p.problem) for p in problems]
    texts = greedy_answers(model, tokenizer, prompts, max_new_tokens=int(cfg.max_new_tokens),
                           batch_size=int(cfg.batch_size), mesh=mesh, rules=rules)
    return float(np.mean([math_env.score_response(t, p.answer) for t, p in zip(texts, problems)]))


def task_documents(config) -> tuple[list[str], list]:
    """(SFT documents, held-out test problems): disjoint by problem text."""
    t = config.task
    gen = math_env.ProblemGenerator(kinds=tuple(t.kinds), max_operand=int(t.max_operand))
    test = gen.batch(int(t.test_problems), seed=int(t.test_seed))
    held = {p.problem for p in test}
    docs = [math_env.format_player_prompt(p.problem) + math_env.format_player_target(p.answer)
            for p in gen.batch(int(t.train_problems), seed=int(t.train_seed)) if p.problem not in held]
    return docs, test


def _merged_full(base, finetuned, how: str, value: float):
    """The base with the full fine-tune's task vector scaled by `value` (interpolate) or TIES-trimmed to
    density `value`."""
    out = nnx.clone(base)
    base_p, ft_p = nnx.state(base, nnx.Param), nnx.state(finetuned, nnx.Param)
    if how == "interpolate":
        merged = merging.task_arithmetic(base_p, [ft_p], scale=value)
    else:
        merged = merging.ties(base_p, [ft_p], density=value)
    nnx.update(out, merged)
    return out


def _merged_lora(base, adapted, how: str, value: float):
    """The base with the adapters' deltas (scale * A B) scaled by `value` or TIES-trimmed to density `value`."""
    out = nnx.clone(base)
    deltas = lora.adapter_deltas(adapted)
    if how == "ties":
        kernels = {p: layer.kernel[...] for p, layer in lora.projections(base) if p in deltas}
        trimmed = merging.ties(kernels, [{p: kernels[p] + d for p, d in deltas.items()}], density=value)
        deltas, value = {p: jnp.asarray(trimmed[p], jnp.float32) - kernels[p] for p in deltas}, 1.0
    lora.add_deltas(out, deltas, scale=value)
    return out


def plot_tradeoff(points: list[dict], base: dict, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    colours = {"full": "tab:blue", "lora": "tab:orange"}
    for method, colour in colours.items():
        line = sorted((p for p in points if p["method"] == method and p["merge"] == "interpolate"),
                      key=lambda p: p["value"])
        ax.plot([p["forgetting"] for p in line], [p["accuracy"] for p in line], "-o", color=colour,
                label=f"{method}: base + w * tau")
        for p in line:
            ax.annotate(f"w={p['value']:g}", (p["forgetting"], p["accuracy"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ties = [p for p in points if p["method"] == method and p["merge"] == "ties"]
        ax.scatter([p["forgetting"] for p in ties], [p["accuracy"] for p in ties], marker="^", s=50,
                   color=colour, label=f"{method}: TIES with the base")
        for p in ties:
            ax.annotate(f"d={p['value']:g}", (p["forgetting"], p["accuracy"]), fontsize=7,
                        xytext=(3, -9), textcoords="offset points")
    ax.scatter([0.0], [base["accuracy"]], marker="s", color="black", label="base", zorder=3)
    ax.set_xlabel("forgetting: held-out loss - the base's (nats/token)")
    ax.set_ylabel("new-task accuracy (greedy)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(config, workdir: str) -> dict[str, Any]:
    wd = Workdir.start(workdir)
    mesh, rules = mesh_and_rules(config)
    tokenizer = build_tokenizer(config)
    base = build_model(config, tokenizer, mesh, rules)
    train_ds, eval_ds = build_datasets(config, tokenizer)
    if eval_ds is None:
        raise ValueError("data.eval_source is empty: forgetting is measured on held-out text")
    if int(config.pretrain.steps) > 0:          # the base: pre-trained here (resumable, in workdir/pretrain)
        pre_cfg = loop_config(config.seed, config.pretrain, config.data.seq_len, config.data.batch_size)
        out = train_loop(pre_cfg, Workdir.start(wd.path("pretrain"), primary=wd.primary), base, mesh=mesh, rules=rules, train_ds=train_ds,
                         curve_title="base: pre-training loss")
        base = out.model

    docs, test = task_documents(config)
    sft_cfg = loop_config(config.seed, config.sft, config.task.seq_len, config.task.batch_size)
    finetuned = {}
    for method in ("full", "lora"):
        model = nnx.clone(base)
        trainable = None
        if method == "lora":
            lora.apply_lora(model, lora.LoraConfig.from_config(config.lora), seed=int(config.seed))
            trainable = lora.is_lora_path
        sft_ds = data.make_lm_dataset(data.InMemorySource(docs), tokenizer, int(config.task.seq_len),
                                      int(config.task.batch_size), seed=int(config.seed), prepend_bos=True,
                                      shuffle_window=256)
        out = train_loop(sft_cfg, Workdir.start(wd.path(method), primary=wd.primary), model, mesh=mesh, rules=rules, train_ds=sft_ds,
                         trainable=trainable, curve_title=f"SFT on the math task: {method}")
        finetuned[method] = out.model

    done = {(p["method"], p["merge"], p["value"]): p for p in (wd.read_jsonl(POINTS) if wd.exists(POINTS) else [])}

    def score(key, model) -> dict:
        if key in done:
            return done[key]
        point = {"method": key[0], "merge": key[1], "value": key[2],
                 "accuracy": task_accuracy(model, tokenizer, test, config.eval, mesh=mesh, rules=rules),
                 "heldout_loss": heldout_loss(model, eval_ds, int(config.eval.heldout_batches))}
        wd.append_jsonl(POINTS, point)
        done[key] = point
        log.info("%s %s %g: accuracy %.3f, held-out loss %.4f", *key, point["accuracy"], point["heldout_loss"])
        return point

    base_point = score(("base", "none", 0.0), base)
    points = []
    for method, merged in (("full", _merged_full), ("lora", _merged_lora)):
        for w in config.merge.weights:
            points.append(score((method, "interpolate", float(w)), merged(base, finetuned[method], "interpolate",
                                                                          float(w))))
        for d in config.merge.densities:
            points.append(score((method, "ties", float(d)), merged(base, finetuned[method], "ties", float(d))))
    for p in points:
        p["forgetting"] = p["heldout_loss"] - base_point["heldout_loss"]
    if wd.primary:
        plot_tradeoff(points, base_point, wd.path("tradeoff.png"),
                      f"SFT on math: accuracy vs forgetting ({len(test)} test problems)")
    fine = {m: next(p for p in points if p["method"] == m and p["merge"] == "interpolate" and p["value"] == 1.0)
            for m in ("full", "lora") if 1.0 in [float(w) for w in config.merge.weights]}
    figures = {"base": base_point, "points": points, "test_problems": len(test), "sft_documents": len(docs),
               "lora_params": int(sum(a.a.size + a.b.size for a in lora.adapters(finetuned["lora"]).values())),
               "finetuned": fine}
    return wd.finish(config, figures)
