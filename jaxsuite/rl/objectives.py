"""The policy-gradient formulas every RL system in jaxsuite shares, one small function each.

Conventions (veRL's, so that the papers' hyper-parameters carry over unchanged):
  * Advantages are per sequence and broadcast over the response tokens.
  * GRPO normalises each reward within its group (the n responses to one prompt): A = (r - mean) / (std + eps),
    with the unbiased std; a group of one has mean 0 and std 1, so its advantage is the raw reward (this is how
    CPMobius's coach, one instruction per group, becomes REINFORCE).
  * The clipped surrogate is  max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high))  per token,
    ratio = exp(logp - old_logp); separate low / high clips are DAPO's "clip-higher".
  * The KL to the frozen reference is the low-variance "k3" estimator  exp(ref - logp) - (ref - logp) - 1 >= 0,
    unbiased for KL(pi || ref) under samples of pi; the log-ratio is clamped to [-20, 20] and the result to
    [-10, 10] as veRL does, so one wild token cannot blow the loss up.
  * The entropy term is subtracted: loss = pg + kl_coef * kl - entropy_coef * entropy. A negative entropy_coef
    (CPMobius's player, -0.01) therefore penalises entropy; a positive one (its coach, +0.01) rewards it.
  * Aggregation: "token-mean" (every response token of the batch weighs the same), "seq-mean-token-mean" (each
    sequence's mean, then the mean over sequences), "seq-mean-token-sum" (each sequence's sum, averaged over
    sequences). Each returns (sum, count) rather than a mean, so that the train step can add them over
    micro-batches and divide once (see jaxsuite.core.train).

Host-side functions (advantages, baselines) take and return numpy; the per-token functions are jnp and run
inside the jitted update.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")


# --- advantages (host side: groups are known there) ------------------------------------------------------------
def group_advantages(rewards: Sequence[float], group_ids: Sequence, *, norm_by_std: bool = True,
                     eps: float = 1e-6) -> np.ndarray:
    """GRPO: each reward minus its group's mean, divided by the group's unbiased std + eps (or not, with
    norm_by_std=False, Dr. GRPO's choice). A group of one gets mean 0 and std 1: its raw reward. -> [N] f32."""
    rewards = np.asarray(rewards, np.float64).reshape(-1)
    ids = np.asarray(group_ids).reshape(-1)
    if ids.shape != rewards.shape:
        raise ValueError(f"group_ids has {ids.shape[0]} entries for {rewards.shape[0]} rewards")
    out = np.zeros_like(rewards)
    for g in np.unique(ids):
        sel = ids == g
        r = rewards[sel]
        if r.size == 1:
            mean, std = 0.0, 1.0
        else:
            mean, std = r.mean(), r.std(ddof=1)
        out[sel] = (r - mean) / (std + eps) if norm_by_std else r - mean
    return out.astype(np.float32)


def informative_group_share(rewards: Sequence[float], group_ids: Sequence) -> float:
    """The share of groups whose members earn different rewards. A group of equal rewards has zero advantage
    everywhere (group_advantages) and teaches nothing, so this is how much of a GRPO batch carries signal."""
    rewards = np.asarray(rewards, np.float64).reshape(-1)
    ids = np.asarray(group_ids).reshape(-1)
    if ids.shape != rewards.shape:
        raise ValueError(f"group_ids has {ids.shape[0]} entries for {rewards.shape[0]} rewards")
    groups = np.unique(ids)
    return float(np.mean([np.ptp(rewards[ids == g]) > 0 for g in groups])) if groups.size else 0.0


def reinforce_advantages(rewards: Sequence[float], baseline: float = 0.0) -> np.ndarray:
    """Plain REINFORCE: A = r - b (b = 0 gives the raw reward). -> [N] f32."""
    return (np.asarray(rewards, np.float64).reshape(-1) - float(baseline)).astype(np.float32)


@dataclasses.dataclass
class EMABaseline:
    """An exponential moving average of the batch-mean reward, used as the REINFORCE baseline.

    `advantages(r)` subtracts the baseline as it stood *before* this batch (so a batch is never its own
    baseline), then folds the batch mean in: b <- decay * b + (1 - decay) * mean(r). The first batch
    initialises b to its own mean (its advantages use b = 0), instead of dragging b up from 0 for 1/(1-decay)
    steps. `value` is None until then; it is plain data, so it goes into a checkpoint as is.
    """
    decay: float = 0.99
    value: float | None = None

    def __post_init__(self):
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {self.decay}")

    def advantages(self, rewards: Sequence[float]) -> np.ndarray:
        rewards = np.asarray(rewards, np.float64).reshape(-1)
        adv = reinforce_advantages(rewards, 0.0 if self.value is None else self.value)
        if rewards.size:
            mean = float(rewards.mean())
            self.value = mean if self.value is None else self.decay * self.value + (1 - self.decay) * mean
        return adv


# --- per-token terms (inside the jitted update) ----------------------------------------------------------------
def clipped_surrogate(logp: jax.Array, old_logp: jax.Array, advantages: jax.Array, *, clip_low: float,
                      clip_high: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """PPO's clipped policy-gradient loss per token: (loss, clipped, ratio), all [B, T].

    loss = max(-A * r, -A * clip(r, 1 - clip_low, 1 + clip_high)) with r = exp(logp - old_logp); `clipped` is
    1.0 where the clipped branch is the larger (its gradient is zero there).
    """
    log_ratio = jnp.clip(logp - old_logp, -20.0, 20.0)
    ratio = jnp.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped_loss = -advantages * jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = jnp.maximum(unclipped, clipped_loss)
    return loss, (clipped_loss > unclipped).astype(jnp.float32), ratio


def k3_kl(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
    """The low-variance KL estimate per token: exp(ref - logp) - (ref - logp) - 1, clamped as veRL does."""
    d = jnp.clip(ref_logp - logp, -20.0, 20.0)
    return jnp.clip(jnp.exp(d) - d - 1.0, -10.0, 10.0)


def entropy_from_logits(logits: jax.Array) -> jax.Array:
    """Entropy of softmax(logits) per position: logits [..., V] -> [...] float32 (nats)."""
    logits = logits.astype(jnp.float32)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def aggregate(values: jax.Array, mask: jax.Array, mode: str) -> tuple[jax.Array, jax.Array]:
    """(sum, count) of per-token `values` [B, T] over the response tokens (`mask` 1.0), by `mode`:

      token-mean            (sum_bt m v,                    sum_bt m)
      seq-mean-token-mean   (sum_b (sum_t m v / sum_t m),   #sequences with a token)
      seq-mean-token-sum    (sum_b sum_t m v,               #sequences with a token)
    The mean is sum / count; rows without any response token (batch padding) count for nothing.
    """
    mask = mask.astype(jnp.float32)
    values = values.astype(jnp.float32) * mask
    if mode == "token-mean":
        return jnp.sum(values), jnp.sum(mask)
    per_seq_tokens = jnp.sum(mask, axis=-1)                                        # [B]
    has_tokens = (per_seq_tokens > 0).astype(jnp.float32)
    per_seq = jnp.sum(values, axis=-1)                                             # [B]
    if mode == "seq-mean-token-mean":
        per_seq = per_seq / jnp.maximum(per_seq_tokens, 1.0)
    elif mode != "seq-mean-token-sum":
        raise ValueError(f"unknown loss aggregation {mode!r}; expected one of {AGGREGATIONS}")
    return jnp.sum(per_seq * has_tokens), jnp.sum(has_tokens)

