"""LatentChem's last stage: GRPO on the latent model with the paper's rewards, on the shared RL core.

Each step samples `num_generations` answers per question through `jaxsuite.generate` with the latent prefill
hook (the thoughts are deterministic given the prompt; the answer text is sampled at temperature 0.7, top-p
0.9), rewards every answer with format (1.0 for a non-empty <answer>), type validity (0.5) and correctness
(1.0, RDKit-checked), normalises the rewards within each question's group and takes one clipped-surrogate
update without KL (the paper's settings). The update scores the answers with `LatentReasoner.policy_logits`,
which re-runs the latent steps each row took, so the gradient reaches the projector and the adapter through
the thoughts.

Resumable: the policy's train state is checkpointed in workdir/checkpoints with the step, and at the step
boundary when the run is asked to stop (Ctrl-C, SIGTERM); batches and sampling seeds are functions of
(seed, step), so a resumed run repeats the uninterrupted one. The folder follows the job contract
(jaxsuite.core.workdir): metrics.jsonl, checkpoints/, results.json (the summary) and a finished-marker.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np

from jaxsuite.core import interrupt
from jaxsuite.core.checkpoint import Checkpointer
from jaxsuite.core.metrics import Progress
from jaxsuite.core.sharding import use_sharding
from jaxsuite.core.workdir import METRICS, Workdir
from jaxsuite.generate import generate
from jaxsuite.latent.chem_tasks import ChemExample, correctness_reward, extract_answer, format_reward, type_reward
from jaxsuite.latent.head import LatentReasoner, latent_hook
from jaxsuite.latent.sequences import SequenceFormat, prompt_ids
from jaxsuite.rl.objectives import group_advantages, informative_group_share
from jaxsuite.rl.policy import Policy, PolicyLossConfig
from jaxsuite.rl.rollout import pack_rl_batch


def chem_reward(example: ChemExample, text: str) -> float:
    """format + type + correctness, as LatentChem sums them (0 to 2.5)."""
    answer = extract_answer(text)
    return format_reward(text) + type_reward(example, answer) + correctness_reward(example, answer)


def rollout_batch(tokens, prompts: Sequence[list[int]], out, advantages: np.ndarray, *, seq_len: int, pad_id: int,
                  max_latents: int) -> dict[str, np.ndarray]:
    """The RL batch of latent rollouts: each row's "prompt" is its prompt, the latent slots it used and
    `<end_latent>`; the loss covers the sampled answer. Adds latent_slots [B, max_latents]."""
    steps = out.extras["latent_steps"]
    full = [list(p) + [tokens.latent] * int(n) + [tokens.end_latent] for p, n in zip(prompts, steps)]
    batch = pack_rl_batch(full, out.sequences(), advantages, seq_len=seq_len, pad_id=pad_id)
    slots = np.full((len(full), max(max_latents, 1)), -1, np.int32)
    for i, (p, n) in enumerate(zip(prompts, steps)):
        slots[i, :int(n)] = np.arange(len(p), len(p) + int(n))
    batch["latent_slots"] = slots
    return batch


def run_grpo(cfg, workdir: str, model: LatentReasoner, examples: Sequence[ChemExample], tokenizer,
             fmt: SequenceFormat, *, max_latents: int, seq_len: int, features: Callable | None, mesh, rules,
             seed: int) -> tuple[LatentReasoner, dict[str, Any]]:
    """`cfg.steps` GRPO steps from `model`; returns (the trained model, a summary)."""
    n, q = int(cfg.num_generations), int(cfg.questions_per_step)
    if q > len(examples) or n < 2:
        raise ValueError(f"grpo needs questions_per_step <= the {len(examples)} training examples (got {q}) and "
                         f"num_generations >= 2 for a group to compare (got {n})")
    wd = Workdir.start(workdir)
    optim = {**dict(cfg.optim), "steps": max(int(cfg.steps), 1)}
    policy = Policy(model, optim=optim, loss=PolicyLossConfig(clip_low=float(cfg.clip), clip_high=float(cfg.clip),
                                                              kl_coef=0.0, temperature=float(cfg.temperature)),
                    mesh=mesh, rules=rules, accum_steps=int(cfg.get("accum_steps", 1)),
                    compute_dtype=str(cfg.get("compute_dtype", "float32")), remat=str(cfg.get("remat", "none")))
    ckpt = Checkpointer(wd.root, max_to_keep=1)
    restored = ckpt.restore_latest(policy.abstract_state())
    start = 0
    if restored is not None:
        start, policy.state, _ = restored
    writer = wd.metrics_writer(resume_step=start)
    progress = Progress(int(cfg.steps), start_step=start, every=int(cfg.log_every), name="grpo")
    hook = latent_hook(max_latents, model.updater is not None)
    with interrupt.step_loop(ckpt, writer):     # Ctrl-C / SIGTERM: a checkpoint at the step boundary, then Stopped
        for step in range(start + 1, int(cfg.steps) + 1):
            rng = np.random.default_rng([seed, step])
            chosen = [examples[i] for i in rng.choice(len(examples), size=q, replace=False)]
            rows = [e for e in chosen for _ in range(n)]
            prompts = [prompt_ids(e, tokenizer, fmt, latent=True) for e in rows]
            inputs = {}
            if features is not None:
                inputs["mol_features"], inputs["mol_mask"] = features([e.source for e in rows])
            with use_sharding(mesh, rules):          # the job's mesh and rules, not generate's default-rules fallback
                out = generate(policy.module(), prompts, int(cfg.max_new_tokens), temperature=float(cfg.temperature),
                               top_p=float(cfg.top_p), stop_tokens=fmt.eos_id, pad_token_id=fmt.pad_id,
                               seed=seed * 7 + step, prefill_hook=hook, hook_inputs=inputs,
                               extra_cache_slots=max_latents + 1)
            texts = [tokenizer.decode([t for t in s if t != fmt.eos_id]) for s in out.sequences()]
            rewards = np.asarray([chem_reward(e, t) for e, t in zip(rows, texts)], np.float32)
            groups = np.repeat(np.arange(q), n)
            advantages = group_advantages(rewards, groups)
            batch = rollout_batch(fmt.tokens, prompts, out, advantages, seq_len=seq_len, pad_id=fmt.pad_id,
                                  max_latents=max_latents)
            if features is not None:
                batch["mol_features"], batch["mol_mask"] = inputs["mol_features"], inputs["mol_mask"]
            metrics = policy.update(batch)
            metrics.update(reward_mean=float(rewards.mean()), latent_steps=float(out.extras["latent_steps"].mean()),
                           informative_groups=informative_group_share(rewards, groups))
            writer.write(step, metrics)
            progress.update(step, reward=metrics["reward_mean"], loss=metrics["loss"])
            if step % int(cfg.checkpoint_every) == 0 or step == int(cfg.steps):
                ckpt.save(step, policy.state)
            interrupt.stop_if_requested(step, wd.root, lambda: ckpt.save(step, policy.state), ckpt, writer)
    ckpt.close()
    writer.close()
    # from metrics.jsonl, so a resumed run's summary covers the steps run before the interruption too
    logged = [r for r in wd.read_jsonl(METRICS) if "reward_mean" in r]
    rewards = [r["reward_mean"] for r in logged]
    summary = {"steps": int(cfg.steps), "resumed_from_step": start,
               "reward_mean_first": rewards[0] if rewards else None,
               "reward_mean_last": rewards[-1] if rewards else None,
               "reward_mean_all": float(np.mean(rewards)) if rewards else None,
               "informative_groups_mean": float(np.mean([r["informative_groups"] for r in logged]))
               if logged and all("informative_groups" in r for r in logged) else None}
    logging.getLogger(__name__).info("GRPO: %s", summary)
    wd.finish(cfg, summary)
    return policy.module(), summary
