"""The baselines CPMobius is compared with, on the same RL core, prompts, sampling and evaluation.

R-Zero (arXiv 2508.05004): a Challenger (our coach) and a Solver (our player), both trained, challenger first.
  * Solver self-consistency p per problem: the share of its n answers that agree with the most frequent one.
  * Challenger reward: min(p, 1 - p) - repetition penalty (the problem's share of the batch in its BLEU
    cluster, agglomerative average linkage at distance 0.5), or -1 when the proposal is unusable (it did not
    end within the token budget, is empty, or no solver sample produced a boxed answer). GRPO over the batch:
    all proposals answer the same prompt, so they form one group.
  * Solver: trained on the problems with |p - 1/2| <= delta (0.25 in R-Zero), reward 1 for matching the
    majority pseudo-label and 0 otherwise, GRPO.
  R-Zero alternates whole phases (a challenger phase, a dataset built from it, then a solver phase); here
  both update every step on the same proposals, which keeps the per-step comparison with CPMobius direct.

RENT ("Maximizing Confidence Alone Improves Reasoning"): the player alone, rewarded by its own confidence,
the negative mean token entropy of each response (`rewards.entropy_rewards`), GRPO. It needs problems but
no answers; to stay data-free it answers the proposals of the frozen initial coach.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from jaxsuite.rl.cpmobius.selfplay import SelfPlayTrainer
from jaxsuite.rl.objectives import group_advantages
from jaxsuite.rl.rewards import entropy_rewards, pseudo_label_rewards, rzero_challenger_rewards, self_consistency


class RZeroTrainer(SelfPlayTrainer):
    method = "r_zero"
    trains_coach = True

    def train_step(self, t: int) -> dict[str, Any]:
        rl, cfg, n = self.rl, self.config.r_zero, int(self.rl.n)
        matching = str(self.config.env.answer_matching)
        coach_roll, problems = self.propose(t, 0)
        player_roll = self.solve(problems, t, 0)
        answers = self.answers(player_roll)
        per_problem = [answers[i * n:(i + 1) * n] for i in range(len(problems))]
        p = np.asarray([self_consistency(a, "equivalent") for a in per_problem])
        parsed = [bool(coach_roll.finished[i]) and bool(problems[i]) and any(x is not None for x in a)
                  for i, a in enumerate(per_problem)]
        rewards, penalty = rzero_challenger_rewards(problems, p, parsed,
                                                    cluster_threshold=float(cfg.cluster_threshold))
        tokens = coach_roll.num_tokens + player_roll.num_tokens
        metrics: dict[str, Any] = {
            "challenger_reward_mean": float(rewards.mean()), "repetition_penalty_mean": float(penalty.mean()),
            "self_consistency_mean": float(p.mean()), "valid_problem_frac": self.valid_problem_fraction(problems),
            "rollout_tokens": tokens,
            "rollout_tokens_per_s": tokens / max(coach_roll.seconds + player_roll.seconds, 1e-9)}
        # the challenger first: all proposals share the prompt, so they are one GRPO group
        t0 = time.perf_counter()
        update = self.coach.update(self.pack(coach_roll, group_advantages(rewards, np.zeros(len(rewards))),
                                             rows=int(rl.problems_per_step)))
        metrics["coach_update_seconds"] = time.perf_counter() - t0
        metrics.update({f"coach/{k}": v for k, v in update.items()})
        # then the solver, on the problems of intermediate difficulty
        keep = [i for i in range(len(problems)) if abs(p[i] - 0.5) <= float(cfg.solver_band)]
        metrics["kept_groups"] = len(keep)
        if keep:
            rows = [i * n + j for i in keep for j in range(n)]
            solver_rewards = np.concatenate([pseudo_label_rewards(per_problem[i], matching) for i in keep])
            advantages = group_advantages(solver_rewards, np.repeat(np.arange(len(keep)), n))
            t0 = time.perf_counter()
            update = self.player.update(self.pack(player_roll.select(rows), advantages,
                                                  rows=int(rl.problems_per_step) * n))
            metrics["player_update_seconds"] = time.perf_counter() - t0
            metrics.update({f"player/{k}": v for k, v in update.items()})
            metrics["player_reward_mean"] = float(solver_rewards.mean())
        self.val_history.append(self.validate())
        return metrics


class RENTTrainer(SelfPlayTrainer):
    method = "rent"
    trains_coach = False

    def train_step(self, t: int) -> dict[str, Any]:
        rl, n = self.rl, int(self.rl.n)
        coach_roll, problems = self.propose(t, 0)
        player_roll = self.solve(problems, t, 0)
        rows = int(rl.problems_per_step) * n
        batch = self.pack(player_roll, np.zeros(len(player_roll.texts)), rows=rows)
        # one scoring pass gives both the rewards' entropies and the update's old log-probs
        logp, entropy = self.player.score(batch)
        mask = batch["loss_mask"][:len(player_roll.texts)] > 0
        per_response = [entropy[i][mask[i]] for i in range(len(player_roll.texts))]
        rewards = entropy_rewards(per_response, str(self.config.rent.span))
        advantages = group_advantages(rewards, player_roll.group_ids)
        batch["advantages"][:len(advantages)] = advantages[:, None] * batch["loss_mask"][:len(advantages)]
        batch["old_logprobs"] = logp
        t0 = time.perf_counter()
        update = self.player.update(batch)
        tokens = coach_roll.num_tokens + player_roll.num_tokens
        metrics: dict[str, Any] = {
            "player_update_seconds": time.perf_counter() - t0, "player_reward_mean": float(rewards.mean()),
            "valid_problem_frac": self.valid_problem_fraction(problems), "rollout_tokens": tokens,
            "rollout_tokens_per_s": tokens / max(coach_roll.seconds + player_roll.seconds, 1e-9),
            **{f"player/{k}": v for k, v in update.items()}}
        self.val_history.append(self.validate())
        return metrics

