"""The LatentChem job: `run(config, workdir)` for configs/latentchem_*.py.

  1. Tasks: RDKit-labelled chemistry examples (train, and a test set with no question in common), or
     ChemCoTBench-format files (`data.train_path` / `data.test_path`).
  2. Molecule encoder (if `mol.num_queries` > 0): the SMILES encoder pre-trained here with masked tokens on
     the training molecules (or precomputed features from an .npz, `mol.features_path`), frozen; its token
     features feed the adapter.
  3. SFT without CoT, then SFT with CoT. The CoT baseline continues CoT SFT for as many steps as the latent
     branch's curriculum takes, so both branches get the same training budget.
  4. The latent branch: the Coconut curriculum from the CoT model, stage k hiding the first k steps behind
     k * c latent slots (optional counterfactual hinge), evaluated after every stage; then, with
     `grpo.steps` > 0, GRPO with the paper's rewards (jaxsuite.latent.grpo).
  5. Evaluation on the test set: accuracy per task, the accuracy gain and non-tie win rate of latent vs CoT,
     reasoning steps, wall-clock answering time and speed-up (for the final model, which is the headline, and
     under `before_grpo` for the curriculum's), and the causal test (latents replaced by zeros or noise).
Writes results.json, correct.json (each test question right or wrong, per model), stages.png (accuracy and
steps per curriculum stage), and one folder per stage (each with its own metrics.jsonl, checkpoints/,
results.json and finished-marker: jaxsuite.core.workdir).
"""
from __future__ import annotations

import functools
import logging
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxsuite.core import files
from jaxsuite.core.build import build_tokenizer, mesh_and_rules
from jaxsuite.core.metrics import pyplot
from jaxsuite.core.workdir import Workdir
from jaxsuite.latent import evaluation as ev
from jaxsuite.latent.chem_tasks import TaskGenerator, read_chemcot
from jaxsuite.latent.head import LatentReasoner, LatentTokens
from jaxsuite.latent.sequences import ExampleBatches, SequenceFormat
from jaxsuite.latent.training import curriculum_stages, describe, run_stage
from jaxsuite.models.factory import arch_from_config, init_model

log = logging.getLogger(__name__)


def load_examples(config):
    """(train, test) examples; generated test questions that also occur in train are dropped."""
    d = config.data
    if d.train_path:
        train = read_chemcot(d.train_path)
        test = read_chemcot(d.test_path) if d.test_path else []
    else:
        gen = TaskGenerator(kinds=list(d.kinds), seed=int(d.seed), max_heavy_atoms=int(d.max_heavy_atoms))
        train = gen.batch(int(d.train_size), seed=int(d.seed))
        seen = {e.question for e in train}
        test = [e for e in gen.batch(3 * int(d.test_size), seed=int(d.seed) + 1) if e.question not in seen]
        test = test[:int(d.test_size)]
    if not train or not test:
        raise ValueError(f"need training and test examples; got {len(train)} and {len(test)}")
    return train, test


def molecule_features(config, wd: Workdir, train, mesh, rules):
    """A callable smiles list -> (features, mask) from the frozen encoder, or None without molecules."""
    m = config.mol
    if int(m.num_queries) <= 0:
        return None, 0
    from jaxsuite.latent import mol_encoder as me
    if m.features_path:
        source = me.PrecomputedFeatures(m.features_path)
    else:
        smiles = sorted({e.source for e in train})
        enc_cfg = me.MolEncoderConfig(d_model=int(m.d_model), num_layers=int(m.num_layers),
                                      num_heads=int(m.num_heads), mlp_dim=2 * int(m.d_model),
                                      max_len=int(m.max_len))
        model, tok, _ = me.pretrain_encoder(smiles, wd.path("mol_encoder"), config=enc_cfg,
                                            train_cfg=m.train, batch_size=int(m.batch_size),
                                            seed=int(config.seed), mesh=mesh, rules=rules)
        source = me.EncoderFeatures(model, tok, int(m.max_len))
    cache: dict[str, tuple] = {}

    def features(smiles_list):
        missing = [s for s in dict.fromkeys(smiles_list) if s not in cache]
        if missing:
            f, k = source.encode(missing)
            cache.update({s: (f[i], k[i]) for i, s in enumerate(missing)})
        return (np.stack([cache[s][0] for s in smiles_list]), np.stack([cache[s][1] for s in smiles_list]))
    return features, source.dim


def build_model(config, tokens: LatentTokens, feature_dim: int, mesh, rules) -> LatentReasoner:
    """The backbone from `model.init_from` (an HF folder or hub id, e.g. Qwen3-8B-Base) or from `model.arch`,
    with the latent head on top."""
    if config.model.get("init_from"):
        from jaxsuite.hf import load_pretrained
        backbone = load_pretrained(config.model.init_from, mesh=mesh, rules=rules)
    else:
        backbone = init_model(arch_from_config(config.model.arch), seed=int(config.seed), mesh=mesh, rules=rules)
    return LatentReasoner(backbone, tokens, mol_feature_dim=feature_dim, num_queries=int(config.mol.num_queries),
                          use_updater=bool(config.mol.use_updater), rngs=nnx.Rngs(int(config.seed) + 1))


def plot_stages(curve: list[dict], cot: dict, wd: Workdir, name: str = "stages.png") -> str | None:
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    ks = [c["stage"] for c in curve]
    a1.plot(ks, [c["accuracy"] for c in curve], marker="o", label="latent model")
    a1.axhline(cot["accuracy"], color="gray", linestyle="--", label="CoT baseline")
    a1.set_title("test accuracy after each curriculum stage")
    a2.plot(ks, [c["mean_latent_steps"] for c in curve], marker="o", label="latent steps")
    a2.plot(ks, [c["mean_text_steps"] for c in curve], marker="s", label="text steps")
    a2.axhline(cot["mean_text_steps"], color="gray", linestyle="--", label="CoT steps")
    a2.set_title("reasoning steps per answer")
    for ax in (a1, a2):
        ax.set_xlabel("stage k (first k steps latent)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return wd.save_figure(fig, name)


def against_cot(latent: dict, cot: dict) -> dict:
    """The latent model against the CoT baseline on the same questions: accuracy gain (latent - CoT, the paired
    difference a run over seeds gives an interval for), the non-tie win rate, the reduction in reasoning forward
    passes (CoT: tokens before <answer>; latent: latent steps + any such tokens) and the wall-clock speed-up."""
    return {"accuracy_gain": latent["accuracy"] - cot["accuracy"],
            "win_rate": ev.win_rate(latent["correct"], cot["correct"]),
            "reasoning_pass_reduction": cot["mean_reasoning_passes"] / max(latent["mean_reasoning_passes"], 1e-9),
            "wall_clock_speedup": cot["seconds"] / max(latent["seconds"], 1e-9)}


def _public(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "correct"}


def _feature_shape(config) -> tuple[int, int]:
    """(L, D) of the molecule features: the precomputed file's when it is there, else the encoder's max_len and
    d_model (for precomputed features, set them to the file's length and width)."""
    m = config.mol
    if m.features_path and files.exists(m.features_path):
        from jaxsuite.latent.mol_encoder import PrecomputedFeatures
        shape = PrecomputedFeatures(m.features_path).features.shape
        return int(shape[1]), int(shape[2])
    return int(m.max_len), int(m.d_model)


def programs(config, mesh, rules) -> list:
    """Every program a LatentChem run compiles, abstract, for `--compile_only` (jaxsuite.core.aot): the SFT step
    (answer-only, CoT and the CoT baseline share it), the curriculum's latent step (with the counterfactual hinge
    when it is on), the greedy answering loop with the latent prefill hook, and GRPO's update, scoring pass and
    sampling loop when grpo.steps > 0. The backbone comes from the architecture alone; the prompt length is
    bounded by data.seq_len. The SMILES encoder's pre-training (a small model, its vocabulary built from the
    data) is not compiled here."""
    from jaxsuite.core.loop import training_programs
    from jaxsuite.generate import generate_program
    from jaxsuite.hf import architecture_of
    from jaxsuite.latent.head import latent_hook
    from jaxsuite.latent.training import latent_loss, plain_loss, stage_config
    from jaxsuite.models import CausalLM
    from jaxsuite.rl.policy import PolicyLossConfig, policy_programs

    tokens = LatentTokens.after(int(config.latent.first_token_id))
    queries = int(config.mol.num_queries)
    mol_len, mol_dim = _feature_shape(config) if queries > 0 else (0, 0)
    arch = (architecture_of(config.model.init_from) if config.model.get("init_from")
            else arch_from_config(config.model.arch))

    def model():
        backbone = CausalLM(arch, rngs=nnx.Rngs(0))
        return LatentReasoner(backbone, tokens, mol_feature_dim=mol_dim, num_queries=queries,
                              use_updater=bool(config.mol.use_updater), rngs=nnx.Rngs(1))

    d, tc = config.data, config.train
    max_latents = int(config.latent.stages) * int(config.latent.per_step)

    def batch(rows: int, width: int, slots: int) -> dict:
        out = {k: jax.ShapeDtypeStruct((rows, width), jnp.int32)
               for k in ("inputs", "targets", "positions", "segment_ids")}
        out["loss_mask"] = jax.ShapeDtypeStruct((rows, width), jnp.float32)
        out["latent_slots"] = jax.ShapeDtypeStruct((rows, max(slots, 1)), jnp.int32)
        out.update(_mol_inputs(rows, mol_len, mol_dim) if queries > 0 else {})
        return out

    width, rows = int(d.seq_len) - 1, int(d.batch_size)
    sft_cfg = stage_config(config, tc.sft_cot, int(d.seq_len))
    out = training_programs(sft_cfg, nnx.eval_shape(model), mesh=mesh, rules=rules, loss_fn=plain_loss,
                            batch=batch(rows, width, 0), prefix="sft/")
    hinge = functools.partial(latent_loss, hinge_weight=float(config.latent.hinge_weight),
                              margin=float(config.latent.hinge_margin))
    out += training_programs(stage_config(config, tc.stage, int(d.seq_len)), nnx.eval_shape(model), mesh=mesh,
                             rules=rules, loss_fn=hinge, batch=batch(rows, width, max_latents), prefix="latent/")
    abstract_model = nnx.eval_shape(model)
    hook_batch = int(config.eval.batch_size)
    hook_in = _mol_inputs(hook_batch, mol_len, mol_dim) if queries > 0 else {}
    sample = dict(mesh=mesh, rules=rules, stop_tokens=(), pad_token_id=0, extra_cache_slots=max_latents + 1,
                  prefill_hook=latent_hook(max_latents, bool(config.mol.use_updater)))
    out.append(generate_program(abstract_model, hook_batch, int(d.seq_len), int(config.eval.max_new_tokens),
                                greedy=True, hook_inputs=_on(hook_in, mesh, rules), name="latent/answer", **sample))
    g = config.grpo
    if int(g.steps) > 0:
        n = int(g.questions_per_step) * int(g.num_generations)
        loss = PolicyLossConfig(clip_low=float(g.clip), clip_high=float(g.clip), kl_coef=0.0,
                                temperature=float(g.temperature))
        extra = {"latent_slots": jax.ShapeDtypeStruct((n, max(max_latents, 1)), jnp.int32),
                 **(_mol_inputs(n, mol_len, mol_dim) if queries > 0 else {})}
        progs, _ = policy_programs(nnx.eval_shape(model), optim={**dict(g.optim), "steps": max(int(g.steps), 1)},
                                   loss=loss, mesh=mesh, rules=rules, rows=n, seq_len=int(d.seq_len) - 1,
                                   accum_steps=int(g.get("accum_steps", 1)),
                                   compute_dtype=str(g.get("compute_dtype", "float32")),
                                   remat=str(g.get("remat", "none")), extra_batch=extra, prefix="grpo/")
        out += progs
        grpo_in = _mol_inputs(n, mol_len, mol_dim) if queries > 0 else {}
        out.append(generate_program(abstract_model, n, int(d.seq_len), int(g.max_new_tokens),
                                    hook_inputs=_on(grpo_in, mesh, rules), name="grpo/rollout", **sample))
    return out


def _mol_inputs(rows: int, length: int, dim: int) -> dict:
    return {"mol_features": jax.ShapeDtypeStruct((rows, length, dim), jnp.float32),
            "mol_mask": jax.ShapeDtypeStruct((rows, length), jnp.bool_)}


def _on(tree: dict, mesh, rules) -> dict:
    """Hook inputs placed as a batch is: rows over the data axes."""
    from jaxsuite.core import train as tr
    sharding = tr.batch_sharding(mesh, rules)
    return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding) for k, v in tree.items()}


def run(config, workdir: str) -> dict[str, Any]:
    wd = Workdir.start(workdir)
    train, test = load_examples(config)
    mesh, rules = mesh_and_rules(config)
    tokenizer = build_tokenizer(config)
    tokens = LatentTokens.after(int(config.latent.first_token_id))
    features, feature_dim = molecule_features(config, wd, train, mesh, rules)
    fmt = SequenceFormat(tokens, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id,
                         num_queries=int(config.mol.num_queries), latents_per_step=int(config.latent.per_step))
    max_k = int(config.latent.stages)
    max_latents = max_k * fmt.latents_per_step
    d, tc = config.data, config.train

    def batches(form: str, stage: int = 0, offset: int = 0) -> ExampleBatches:
        return ExampleBatches(train, tokenizer, fmt, form=form, stage=stage, batch_size=int(d.batch_size),
                              seq_len=int(d.seq_len), max_latents=max(max_latents if form == "latent" else 0, 1),
                              seed=int(config.seed) * 1000 + offset, features=features)

    model = build_model(config, tokens, feature_dim, mesh, rules)
    stages: dict[str, Any] = {}
    # Each stage's train state copies the model it starts from; drop every reference to a model no later step
    # needs, so that a pod holds one set of weights (plus the one being trained) rather than one per stage.
    out = run_stage(config, wd, "sft_answer", model, batches("answer", offset=1), tc.sft_answer, latent=False,
                    mesh=mesh, rules=rules)
    del model
    stages["sft_answer"] = describe(out)
    out = run_stage(config, wd, "sft_cot", out.model, batches("cot", offset=2), tc.sft_cot, latent=False,
                    mesh=mesh, rules=rules)
    stages["sft_cot"] = describe(out)
    cot_start = out.model
    del out
    extra = ml_collections.ConfigDict(dict(tc.sft_cot))
    extra.steps = int(tc.stage.steps) * max_k               # the same budget as the whole curriculum
    cot = run_stage(config, wd, "cot_baseline", cot_start, batches("cot", offset=3), extra, latent=False,
                    mesh=mesh, rules=rules)
    stages["cot_baseline"] = describe(cot)

    eval_kw = dict(max_new_tokens=int(config.eval.max_new_tokens), max_latent_steps=max_latents,
                   batch_size=int(config.eval.batch_size), features=features, mesh=mesh, rules=rules)
    cot_summary = ev.summary(test, ev.answer_all(cot.model, test, tokenizer, fmt, latent=False, **eval_kw))
    del cot
    log.info("CoT baseline: accuracy %.3f, %.2f steps", cot_summary["accuracy"], cot_summary["mean_text_steps"])

    curve, latent_model = [], cot_start
    del cot_start
    for k in curriculum_stages(max_k):
        res = run_stage(config, wd, f"latent_stage{k}", latent_model, batches("latent", k, offset=10 + k),
                        tc.stage, latent=True, mesh=mesh, rules=rules, hinge_weight=float(config.latent.hinge_weight),
                        margin=float(config.latent.hinge_margin))
        stages[f"latent_stage{k}"] = describe(res)
        latent_model = res.model
        s = ev.summary(test, ev.answer_all(latent_model, test, tokenizer, fmt, latent=True, **eval_kw))
        curve.append({"stage": k, **{key: s[key] for key in ("accuracy", "mean_latent_steps", "mean_text_steps",
                                                             "mean_reasoning_steps", "seconds")}})
        log.info("latent stage %d: accuracy %.3f, %.2f latent + %.2f text steps", k, s["accuracy"],
                 s["mean_latent_steps"], s["mean_text_steps"])
    grpo, curriculum_summary = None, s
    if int(config.grpo.steps) > 0:
        from jaxsuite.latent.grpo import run_grpo
        latent_model, grpo = run_grpo(config.grpo, wd.path("grpo"), latent_model, train, tokenizer, fmt,
                                      max_latents=max_latents, seq_len=int(d.seq_len), features=features,
                                      mesh=mesh, rules=rules, seed=int(config.seed))
        s = ev.summary(test, ev.answer_all(latent_model, test, tokenizer, fmt, latent=True, **eval_kw))
        grpo.update(accuracy_after=s["accuracy"], accuracy_before=curve[-1]["accuracy"])
        log.info("after GRPO: accuracy %.3f", s["accuracy"])
    latent_summary = s
    causal = {}
    for mode in ("zeros", "noise"):
        c = ev.summary(test, ev.answer_all(latent_model, test, tokenizer, fmt, latent=True, corrupt=mode, **eval_kw))
        causal[mode] = {"accuracy": c["accuracy"], "mean_latent_steps": c["mean_latent_steps"]}

    figures = {
        "train_examples": len(train), "test_examples": len(test), "stages": stages, "grpo": grpo,
        "cot": _public(cot_summary), "latent": _public(latent_summary), "curriculum": curve,
        # the headline compares the final latent model (after GRPO when it ran) with CoT; the curriculum's model
        # is compared too, so a run over seeds shows what GRPO adds
        "headline_model": "latent after GRPO" if grpo is not None else "latent after the curriculum",
        **against_cot(latent_summary, cot_summary),
        "before_grpo": against_cot(curriculum_summary, cot_summary),
        "causal_test": {"clean": latent_summary["accuracy"], **causal},
    }
    # per-question correctness, in test order, so paired comparisons can pool runs over seeds
    wd.write_json("correct.json", {
        "cot": cot_summary["correct"].astype(int).tolist(),
        "latent_before_grpo": curriculum_summary["correct"].astype(int).tolist(),
        "latent": latent_summary["correct"].astype(int).tolist()})
    figures["plot"] = plot_stages(curve, cot_summary, wd)
    results = wd.finish(config, figures)
    log.info("latent %.3f vs CoT %.3f; non-tie win rate %s; speed-up %.2fx", latent_summary["accuracy"],
             cot_summary["accuracy"], results["win_rate"]["non_tie_win_rate"], results["wall_clock_speedup"])
    return results


run.programs = programs      # what `--compile_only` compiles for this job
