"""LatentChem's training stages on the shared resumable loop: SFT without CoT, SFT with CoT, the Coconut
curriculum, and the counterfactual hinge loss.

Each stage is one `jaxsuite.core.loop.train_loop` run in its own folder (so each resumes on its own), starting
from the previous stage's weights with a fresh optimizer (Coconut resets the optimizer at every stage). A stage
folder follows the job contract (jaxsuite.core.workdir): metrics.jsonl, checkpoints/, loss.png, results.json and
its finished-marker.

Losses (`loss_fn(model, batch)` for the train step):
  plain_loss   next-token CE over the target text, with molecule soft tokens placed in the prompt
  latent_loss  the same through `latent_forward` (latent slots filled from the hidden state before them);
               with hinge_weight > 0 it adds LatentChem's counterfactual hinge
                   L = L_pos + lambda * relu(margin - (L_cf - L_pos)),
               where L_cf is the loss with the latents destroyed (zeros): the answer must get worse without
               the thoughts, by at least `margin` nats, or the model is penalised for ignoring them.
"""
from __future__ import annotations

import functools
import logging
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from jaxsuite.core import train as tr
from jaxsuite.core.config_utils import loop_config
from jaxsuite.core.loop import LoopResult, train_loop
from jaxsuite.core.workdir import Workdir
from jaxsuite.latent.head import LatentReasoner, latent_forward

log = logging.getLogger(__name__)


def plain_loss(model: LatentReasoner, batch: dict) -> tuple:
    embeds, _ = model.prompt_embeds(batch["inputs"], batch.get("mol_features"), batch.get("mol_mask"))
    logits = model.logits(model.hidden_states(inputs_embeds=embeds, positions=batch["positions"],
                                              segment_ids=batch["segment_ids"]))          # [B, T, V]
    return tr.cross_entropy(logits, batch["targets"], batch["loss_mask"])


def latent_loss(model: LatentReasoner, batch: dict, *, hinge_weight: float = 0.0, margin: float = 0.5) -> tuple:
    common = dict(segment_ids=batch["segment_ids"], mol_features=batch.get("mol_features"),
                  mol_mask=batch.get("mol_mask"))
    logits, _ = latent_forward(model, batch["inputs"], batch["positions"], batch["latent_slots"], **common)
    loss_sum, tokens = tr.cross_entropy(logits, batch["targets"], batch["loss_mask"])
    if hinge_weight <= 0:
        return loss_sum, tokens
    cf_logits, _ = latent_forward(model, batch["inputs"], batch["positions"], batch["latent_slots"],
                                  corrupt="zeros", **common)
    cf_sum, _ = tr.cross_entropy(cf_logits, batch["targets"], batch["loss_mask"])
    n = jnp.maximum(tokens, 1.0)
    hinge = jax.nn.relu(margin - (cf_sum - loss_sum) / n)
    # the step divides by `tokens`: scale the per-batch hinge back up so the reported loss is L_pos + l * hinge
    return loss_sum + hinge_weight * hinge * n, tokens, {"lm_loss": loss_sum, "hinge": hinge * n}


def stage_config(config, train_block, seq_len: int) -> ml_collections.ConfigDict:
    """The view of the job config that train_loop reads, for one stage."""
    return loop_config(config.seed, train_block, seq_len, config.data.batch_size)


def run_stage(config, workdir: str | Workdir, name: str, model: LatentReasoner, batches, train_block, *,
              latent: bool, mesh, rules, hinge_weight: float = 0.0, margin: float = 0.5) -> LoopResult:
    """One training stage in workdir/<name> (resumable); returns the loop's result (its `.model` is next).

    A finished stage is not skipped: its final weights come back from its last checkpoint (zero steps run)."""
    loss = (functools.partial(latent_loss, hinge_weight=float(hinge_weight), margin=float(margin)) if latent
            else plain_loss)
    log.info("stage %s: %d steps", name, int(train_block.steps))
    cfg = stage_config(config, train_block, int(config.data.seq_len))
    wd = Workdir.start(Workdir(workdir).path(name))
    out = train_loop(cfg, wd, model, mesh=mesh, rules=rules, train_ds=batches, loss_fn=loss,
                     curve_title=f"LatentChem {name}")
    wd.finish(cfg, describe(out))
    return out


def curriculum_stages(max_steps: int) -> list[int]:
    """Stage k hides the first k reasoning steps (k = 1 .. max_steps)."""
    if max_steps < 1:
        raise ValueError(f"the curriculum needs at least one stage, got {max_steps}")
    return list(range(1, int(max_steps) + 1))


def describe(result: LoopResult) -> dict[str, Any]:
    return {"steps": result.steps, "final_train_loss": result.final_train_loss,
            "resumed_from_step": result.start_step, "train_seconds": result.train_seconds}
