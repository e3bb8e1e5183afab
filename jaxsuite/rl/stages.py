"""A training stage of a policy: `steps` calls of a step function, checkpointed, resumable, skipped when done.

    model, summary = train_stage("sft", wd, model, config.sft, sft_step, mesh=mesh, rules=rules, seed=0)

`block` is a config block with steps, log_every, checkpoint_every, clip, optim (make_optimizer's fields) and
optionally temperature and kl_coef. `step_fn(policy, step, rng) -> metrics` does one step's work (an SFT batch,
a rollout and its update); the stage writes each step's metrics to <wd>/<name>/metrics.jsonl, checkpoints the
policy every `checkpoint_every` steps and at the step boundary when asked to stop (Ctrl-C, SIGTERM), and on a
rerun resumes from the last checkpoint, or, when the stage finished earlier with the same block, restores its
final state without running a step. The agent runtime's lookup demonstration and SE-Bench's regimes train
this way.

    model, summary = sft_stage("sft", wd, with_adapters(model, config.model.lora, seed), prompts, targets,
                               config.sft, seq_len=1024, seed=0, mesh=mesh, rules=rules, lora=True)

`sft_stage` is supervised fine-tuning on (prompt -> response) token pairs through the core training loop
(remat, chunked loss, accumulation, resumable), the loss on the response tokens only; `with_adapters` adds LoRA
adapters for it when the block's rank is > 0 (an earlier stage's adapters merged first). SE-Bench's SFT
regimes and EvoOpt-LLM's model-construction, injection and pruning stages train this way.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Sequence

import numpy as np

from jaxsuite.core import interrupt
from jaxsuite.core.checkpoint import Checkpointer
from jaxsuite.core.config_utils import loop_config
from jaxsuite.core.loop import train_loop
from jaxsuite.core.metrics import Progress
from jaxsuite.core.pairs import PairBatches
from jaxsuite.core.workdir import METRICS, Workdir
from jaxsuite.models.lora import LoraConfig, apply_lora, is_lora_path, merge_and_unload
from jaxsuite.rl.policy import Policy, PolicyLossConfig

log = logging.getLogger(__name__)
PROGRESS_KEYS = ("nll", "loss", "reward_mean", "kept_share")


def make_policy(model, block, *, mesh, rules, steps: int) -> Policy:
    """A Policy for `block`: its optimizer over `steps` updates, symmetric clipping, no KL unless asked; the
    block may also set mini_batch_size (rows per optimizer update), accum_steps, remat and compute_dtype, the
    memory options a large model on a pod needs."""
    optim = {**dict(block.optim), "steps": max(steps, 1)}
    mini_batch = int(block.get("mini_batch_size", 0) or 0)
    return Policy(model, optim=optim, mesh=mesh, rules=rules,
                  loss=PolicyLossConfig(clip_low=float(block.clip), clip_high=float(block.clip),
                                        kl_coef=float(block.get("kl_coef", 0.0)),
                                        temperature=float(block.get("temperature", 1.0))),
                  mini_batch_size=mini_batch or None, accum_steps=int(block.get("accum_steps", 1)),
                  remat=str(block.get("remat", "none")), compute_dtype=block.get("compute_dtype", "float32"))


def train_stage(name: str, wd: Workdir, model, block, step_fn: Callable[[Policy, int, np.random.Generator], dict],
                *, mesh, rules, seed: int) -> tuple[Any, dict]:
    """Runs `block.steps` calls of step_fn(policy, step, rng) -> metrics in wd/<name> (see the module docstring);
    returns the trained module and the stage's summary (steps, resumed_from_step, first and last metrics)."""
    steps = int(block.steps)
    stage = Workdir(wd.path(name), primary=wd.primary)
    finished = stage.is_finished(block)          # read before start() clears the marker
    if not finished:
        stage = Workdir.start(stage.root, primary=wd.primary)
    policy = make_policy(model, block, mesh=mesh, rules=rules, steps=steps)
    del model              # the policy holds its own copy; a caller that passed the module inline frees it here
    ckpt = Checkpointer(stage.root, max_to_keep=1)
    restored = ckpt.restore_latest(policy.abstract_state())
    start = 0
    if restored is not None:
        start, policy.state, _ = restored
    if finished and start >= steps:
        ckpt.close()
        log.info("%s: finished earlier in %s", name, stage)
        return policy.module(), stage.read_results()["summary"]
    writer = stage.metrics_writer(resume_step=start)
    progress = Progress(steps, start_step=start, every=int(block.log_every), name=name)
    with interrupt.step_loop(ckpt, writer):     # Ctrl-C / SIGTERM: a checkpoint at the step boundary, then Stopped
        for step in range(start + 1, steps + 1):
            metrics = step_fn(policy, step, np.random.default_rng([int(seed), step]))
            writer.write(step, metrics)
            progress.update(step, **{k: v for k, v in metrics.items() if k in PROGRESS_KEYS})
            if step % int(block.checkpoint_every) == 0 or step == steps:
                ckpt.save(step, policy.state)
            interrupt.stop_if_requested(step, stage.root, lambda: ckpt.save(step, policy.state), ckpt, writer)
    ckpt.close()
    writer.close()
    # first and last from metrics.jsonl, so a resumed stage's summary covers the steps before the interruption
    logged = [{k: v for k, v in row.items() if k not in ("step", "time")} for row in stage.read_jsonl(METRICS)]
    summary = {"steps": steps, "resumed_from_step": start,
               "first": logged[0] if logged else None, "last": logged[-1] if logged else None}
    stage.finish(block, {"summary": summary})
    return policy.module(), summary


def with_adapters(model, lora_block, seed: int):
    """LoRA adapters on `model` when `lora_block.rank` > 0 (an earlier stage's adapters are merged first);
    the model unchanged otherwise."""
    if lora_block is None or int(lora_block.rank) <= 0:
        return model
    merge_and_unload(model)
    apply_lora(model, LoraConfig.from_config(lora_block), seed=seed)
    return model


def sft_stage(name: str, wd: Workdir, model, prompts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
              block, *, seq_len: int, seed: int, mesh, rules, lora: bool = False, title: str = "") -> tuple[Any, dict]:
    """SFT on (prompt -> target) token pairs in wd/<name> through `core.loop.train_loop`; `block` holds
    batch_size, a `train` block and optionally epochs (> 0: the steps are that many passes over the pairs) and
    warmup_fraction. With `lora`, only the adapter weights train. A finished stage runs zero steps: its weights
    come back from its last checkpoint. Returns the model and the loop's summary."""
    batch_size = int(block.batch_size)
    batches = PairBatches(prompts, targets, batch_size=batch_size, seq_len=seq_len, seed=seed)
    train_cfg = dict(block.train)
    if float(block.get("epochs", 0) or 0) > 0:
        train_cfg["steps"] = max(1, math.ceil(float(block.epochs) * len(prompts) / batch_size))
        train_cfg["warmup_steps"] = int(float(block.get("warmup_fraction", 0.0)) * train_cfg["steps"])
    loop_cfg = loop_config(seed, train_cfg, seq_len, batch_size)
    stage = Workdir.start(wd.path(name), primary=wd.primary)
    out = train_loop(loop_cfg, stage, model, mesh=mesh, rules=rules, train_ds=batches,
                     trainable=is_lora_path if lora else None, curve_title=title or name)
    summary = {**out.summary(), "pairs": len(prompts)}
    stage.finish(loop_cfg, summary)
    return out.model, summary
