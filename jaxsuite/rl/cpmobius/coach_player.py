"""CPMobius (arXiv 2602.02979): a Coach proposes problems, a Player solves them, no external training data.

One step t (the reference note's nine points, and thunlp/CPMobius's `fit` where the note is silent):
  1. The coach samples `problems_per_step` instructions from one prompt ("Generate a valid math problem.").
  2. The player samples n solutions per instruction.
  3. Player rewards by majority vote over the last \\boxed{} answers (`rewards.majority_vote_rewards`).
  4. Keep instructions whose fraction of non-negative rewards lies in [filter_low, filter_high] (inclusive);
     resample (new coach and player samples) until `problems_per_step` are kept or `max_rounds` ran out.
  5. Player update: GRPO over the kept groups (k3 KL to the reference, entropy term, clipped surrogate).
  6. Validate: greedy decoding on the probe set -> V_t.
  7. Coach reward per kept instruction: R_i = 100 * (V_t - V_{t-1}) * m_i, with m_i the token-weighted mean
     of the instruction's non-zero player advantages ("advantage", the 7B script's flag) or its mean player
     reward ("reward"); R_i = -1 when the instruction has no non-zero advantage. Instructions the filter
     dropped get no coach reward (as in the released code).
  8. Coach update, skipped when V_t == V_{t-1}: every instruction is its own group of one, so the advantage is
     R_i itself (REINFORCE with PPO clip and KL); optionally minus an EMA baseline of the coach rewards.
  9. Rollback: the player is snapshotted whenever V_t beats the best so far; from step `rollback.start_step`
     on, `rollback.patience` validations in a row without improvement restore that snapshot (parameters,
     optimizer state and step). Only the player rolls back; the coach and V's history go on.

Deviations, deliberate: the resampled batch is cut at whole groups (the released code may cut the last group
short); validation against majority-vote pseudo-labels (the FAQ's protocol, absent from the code) is
available through the probe set the job builds.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from jaxsuite.rl.cpmobius.selfplay import SelfPlayTrainer
from jaxsuite.rl.objectives import EMABaseline, group_advantages
from jaxsuite.rl.rewards import majority_vote_rewards
from jaxsuite.rl.rollout import Rollout

COACH_SCALES = ("advantage", "reward")


def keep_group(rewards: np.ndarray, low: float, high: float) -> bool:
    """The [low, high] filter on the share of non-negative rewards (inclusive, as in the released code)."""
    share = float(np.mean(np.asarray(rewards) >= 0))
    return low <= share <= high


def coach_scale(advantages: np.ndarray, lengths: np.ndarray, rewards: np.ndarray, mode: str) -> float | None:
    """m_i of one instruction. "advantage": the mean of its non-zero token-level advantages, i.e. the
    response advantages weighted by response length over the responses whose advantage is non-zero (None
    when there is none: the coach then gets -1); "reward": the mean player reward."""
    if mode == "reward":
        return float(np.mean(rewards))
    if mode != "advantage":
        raise ValueError(f"unknown coach reward scale {mode!r}; expected one of {COACH_SCALES}")
    nonzero = np.abs(advantages) > 0
    if not nonzero.any():
        return None
    w = lengths[nonzero].astype(np.float64)
    return float(np.sum(w * advantages[nonzero]) / np.sum(w))


def coach_rewards(delta_v: float, scales: list[float | None]) -> np.ndarray:
    """R_i = 100 * delta_v * m_i, or -1 where m_i is undefined. -> [k] float32."""
    return np.asarray([-1.0 if m is None else 100.0 * delta_v * m for m in scales], np.float32)


class RollbackTracker:
    """Step 9's bookkeeping, apart from the arrays: `observe(t, v)` says "improved" (snapshot the player),
    "rollback" (restore the snapshot) or None. Counting starts at `start_step`; the counter resets on an
    improvement and after a rollback. Plain data, so it is checkpointed as JSON."""

    def __init__(self, start_step: int, patience: int, best: float | None = None, misses: int = 0):
        if patience < 1:
            raise ValueError(f"rollback.patience must be >= 1, got {patience}")
        self.start_step, self.patience, self.best, self.misses = int(start_step), int(patience), best, int(misses)

    def observe(self, t: int, v: float) -> str | None:
        if self.best is None or v > self.best:
            self.best, self.misses = v, 0
            return "improved"
        if t >= self.start_step:
            self.misses += 1
            if self.misses >= self.patience:
                self.misses = 0
                return "rollback"
        return None


class CPMobiusTrainer(SelfPlayTrainer):
    method = "cpmobius"
    trains_coach = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        c = self.config.coach
        self.coach_ema = EMABaseline(float(c.ema_decay)) if c.advantage == "ema_baseline" else None
        if c.advantage not in ("raw", "ema_baseline"):
            raise ValueError(f"coach.advantage must be 'raw' or 'ema_baseline', got {c.advantage!r}")
        if self.config.cpmobius.coach_scale not in COACH_SCALES:
            raise ValueError(f"cpmobius.coach_scale must be one of {COACH_SCALES}, "
                             f"got {self.config.cpmobius.coach_scale!r}")
        self.best_state = self.player.snapshot()
        self.rollback = RollbackTracker(int(self.config.rollback.start_step), int(self.config.rollback.patience))

    # -- one step ------------------------------------------------------------------------------------------
    def collect(self, t: int) -> tuple[list[dict], dict[str, Any]]:
        """Steps 1-4: rounds of coach proposals and player solutions until enough groups pass the filter.
        Each kept group: the coach row (rollout, index) and the player rows (rollout, rows, rewards)."""
        rl, cfg = self.rl, self.config.cpmobius
        want, n = int(rl.problems_per_step), int(rl.n)
        kept: list[dict] = []
        proposals, valid, tokens, seconds, rounds = 0, 0.0, 0, 0.0, 0
        for round_ in range(int(cfg.max_rounds)):
            rounds += 1
            coach_roll, problems = self.propose(t, round_)
            player_roll = self.solve(problems, t, round_)
            proposals += len(problems)
            valid += self.valid_problem_fraction(problems) * len(problems)
            tokens += coach_roll.num_tokens + player_roll.num_tokens
            seconds += coach_roll.seconds + player_roll.seconds
            answers = self.answers(player_roll)
            for i in range(len(problems)):
                rows = list(range(i * n, (i + 1) * n))
                rewards = majority_vote_rewards([answers[r] for r in rows], str(self.config.env.answer_matching))
                if keep_group(rewards, float(cfg.filter_low), float(cfg.filter_high)):
                    kept.append({"coach": (coach_roll, i), "player": (player_roll, rows), "rewards": rewards})
            if len(kept) >= want:
                break
        kept = kept[:want]
        stats = {"rounds": rounds, "kept_groups": len(kept), "proposals": proposals,
                 "valid_problem_frac": valid / max(proposals, 1), "rollout_tokens": tokens,
                 "rollout_tokens_per_s": tokens / max(seconds, 1e-9)}
        return kept, stats

    def train_step(self, t: int) -> dict[str, Any]:
        rl, n = self.rl, int(self.rl.n)
        kept, metrics = self.collect(t)
        scales: list[float | None] = []
        if kept:
            rewards = np.concatenate([g["rewards"] for g in kept])
            groups = np.repeat(np.arange(len(kept)), n)
            advantages = group_advantages(rewards, groups)
            player_rows = Rollout.concat([g["player"][0].select(g["player"][1]) for g in kept])
            lengths = np.asarray([len(r) for r in player_rows.response_ids])
            for k, g in enumerate(kept):
                sl = slice(k * n, (k + 1) * n)
                scales.append(coach_scale(advantages[sl], lengths[sl], g["rewards"],
                                          str(self.config.cpmobius.coach_scale)))
            t0 = time.perf_counter()
            update = self.player.update(self.pack(player_rows, advantages,
                                                  rows=int(rl.problems_per_step) * n))
            metrics["player_update_seconds"] = time.perf_counter() - t0
            metrics.update({f"player/{k}": v for k, v in update.items()})
            metrics["player_reward_mean"] = float(rewards.mean())
        v_t = self.validate()
        delta = v_t - self.val_history[-1]
        self.val_history.append(v_t)
        metrics["delta_v"] = delta
        if kept and delta != 0.0:
            r = coach_rewards(delta, scales)
            adv = r if self.coach_ema is None else self.coach_ema.advantages(r)
            coach_rows = Rollout.concat([g["coach"][0].select([g["coach"][1]]) for g in kept])
            t0 = time.perf_counter()
            update = self.coach.update(self.pack(coach_rows, adv, rows=int(rl.problems_per_step)))
            metrics["coach_update_seconds"] = time.perf_counter() - t0
            metrics.update({f"coach/{k}": v for k, v in update.items()})
            metrics["coach_reward_mean"] = float(r.mean())
        else:
            metrics["coach_skipped"] = 1.0
        metrics.update(self._rollback(t, v_t))
        return metrics

    # -- step 9 --------------------------------------------------------------------------------------------
    def _rollback(self, t: int, v_t: float) -> dict[str, Any]:
        if self.rollback.best is None:              # V_0, measured before the first step
            self.rollback.observe(0, self.val_history[0])
        event = self.rollback.observe(t, v_t)
        if event == "improved":
            self.best_state = self.player.snapshot()
        elif event == "rollback":
            self.player.restore(self.best_state)
        return {"best_val": self.rollback.best, **({"rolled_back": 1.0} if event == "rollback" else {})}

    # -- persistence: the best snapshot and the rollback counters travel with the checkpoint ----------------
    def state_tree(self) -> dict[str, Any]:
        return {**super().state_tree(), "best_player": self.best_state}

    def abstract_tree(self) -> dict[str, Any]:
        return {**super().abstract_tree(), "best_player": self.player.abstract_state()}

    def load_state_tree(self, tree: dict[str, Any]) -> None:
        super().load_state_tree(tree)
        self.best_state = tree["best_player"]

    def bookkeeping(self) -> dict[str, Any]:
        return {**super().bookkeeping(), "best_val": self.rollback.best, "no_improvement": self.rollback.misses,
                "coach_ema": None if self.coach_ema is None else self.coach_ema.value}

    def load_bookkeeping(self, meta: dict[str, Any]) -> None:
        super().load_bookkeeping(meta)
        self.rollback.best, self.rollback.misses = meta["best_val"], int(meta["no_improvement"])
        if self.coach_ema is not None:
            self.coach_ema.value = meta["coach_ema"]
