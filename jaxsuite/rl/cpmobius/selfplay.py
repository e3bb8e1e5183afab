"""What every data-free self-play method shares: a coach that proposes problems, a player that solves them,
validation, held-out evaluation, and a resumable step loop.

CPMobius, R-Zero and RENT differ only in `train_step` (who is rewarded for what, and who is updated); the
sampling, the scoring of answers, the checkpoints and the metrics are here, so the comparison between them
is like for like: same base model, same prompts, same sampling settings, same probe and test sets.

One run lives in its own folder:
  metrics.jsonl     one line per step: val_acc (V_t), test_acc (every eval_every steps), rewards, kept
                    groups, update metrics, rollout tokens/s, update seconds
  checkpoints/      orbax: player (and coach, and CPMobius's best player) train states + the loop's
                    bookkeeping (validation history, rollback counter, EMA baseline) as metadata
A stop request (Ctrl-C, SIGTERM) saves a checkpoint at the step boundary. Started again, the run restores
the newest checkpoint and continues; sampling seeds are derived from (seed, step, round), so the continued
run draws the same samples the uninterrupted one would have.
"""
from __future__ import annotations

import abc
import dataclasses
import logging
import time
from typing import Any, Sequence

import numpy as np

from jaxsuite.core import interrupt
from jaxsuite.core.checkpoint import Checkpointer
from jaxsuite.core.metrics import MetricsWriter, Progress
from jaxsuite.rl import math_env
from jaxsuite.rl.policy import Policy, PolicyLossConfig
from jaxsuite.rl.rollout import Rollout, greedy_answers, sample_responses

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ProblemSet:
    """Problems with the labels answers are scored against (ground truth, or majority-vote pseudo-labels)."""
    problems: list[str]
    labels: list[str]
    name: str = ""

    def __post_init__(self):
        if len(self.problems) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.problems)} problems but {len(self.labels)} labels")
        if not self.problems:
            raise ValueError(f"{self.name}: the problem set is empty")


def policy_loss_config(role_cfg) -> PolicyLossConfig:
    return PolicyLossConfig(clip_low=float(role_cfg.clip_low), clip_high=float(role_cfg.clip_high),
                            kl_coef=float(role_cfg.kl_coef), entropy_coef=float(role_cfg.entropy_coef),
                            aggregation=str(role_cfg.aggregation), temperature=float(role_cfg.temperature))


def make_policy(model, role_cfg, *, total_steps: int, mesh, rules) -> Policy:
    """A Policy for the coach or the player from its config block (optimizer, loss, mini-batching)."""
    optim = dict(role_cfg.optim)
    optim["steps"] = max(1, int(total_steps))
    return Policy(model, optim=optim, loss=policy_loss_config(role_cfg), mesh=mesh, rules=rules,
                  mini_batch_size=int(role_cfg.mini_batch_size) or None, epochs=int(role_cfg.epochs),
                  accum_steps=int(role_cfg.get("accum_steps", 1)),
                  compute_dtype=str(role_cfg.get("compute_dtype", "float32")), remat=str(role_cfg.get("remat", "none")))


def step_seed(seed: int, step: int, round_: int, role: int) -> int:
    """A distinct, reproducible sampling seed per (run seed, step, resampling round, role)."""
    return ((seed * 1_000_003 + step) * 1_009 + round_) * 4 + role


class SelfPlayTrainer(abc.ABC):
    """The shared harness. Subclasses implement `train_step(t) -> metrics` and say which policies they train.

    Args:
      config: the job config (blocks rl, player, coach, prompts, env, validation, rollback, method blocks).
      player_model / coach_model: the initial modules (the same object for a shared base model is fine: each
        Policy copies it).
      probe: the validation set behind V_t; test: the held-out set (always ground truth).
    """
    method = "base"
    trains_coach = True

    def __init__(self, config, workdir: str, *, seed: int, player_model, coach_model, tokenizer, mesh, rules,
                 probe: ProblemSet, test: ProblemSet):
        self.config, self.workdir, self.seed = config, workdir, int(seed)
        self.rl, self.tokenizer = config.rl, tokenizer
        self.probe, self.test = probe, test
        self.mesh, self.rules = mesh, rules       # the job's: training and sampling split rows alike
        steps = int(self.rl.steps)
        self.player = make_policy(player_model, config.player, total_steps=steps, mesh=mesh, rules=rules)
        self.coach = (make_policy(coach_model, config.coach, total_steps=steps, mesh=mesh, rules=rules)
                      if self.trains_coach else None)
        self._frozen_coach = None if self.trains_coach else coach_model
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else tokenizer.eos_id
        self.val_history: list[float] = []
        self._check_lengths()

    def _check_lengths(self) -> None:
        """The longest rows a step can make must fit `rl.seq_len`: say so now, not after an hour of sampling."""
        coach_new, player_new = int(self.config.coach.max_new_tokens), int(self.config.player.max_new_tokens)
        coach_row = len(self._encode(self.config.prompts.coach)) + coach_new
        player_row = len(self._encode(self.player_prompt(""))) + coach_new + player_new
        if max(coach_row, player_row) > int(self.rl.seq_len):
            raise ValueError(
                f"rl.seq_len={int(self.rl.seq_len)} is too short: a coach row takes up to {coach_row} tokens "
                f"(prompt + coach.max_new_tokens) and a player row up to {player_row} (template + a coach problem "
                f"of coach.max_new_tokens + player.max_new_tokens)")

    # -- prompts and sampling ------------------------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        bos = getattr(self.tokenizer, "bos_id", None)
        return ([bos] if bos is not None else []) + self.tokenizer.encode(text)

    def player_prompt(self, problem: str) -> str:
        return math_env.format_player_prompt(problem, self.config.prompts.player_template)

    def coach_module(self):
        return self.coach.module() if self.coach is not None else self._frozen_coach

    def propose(self, t: int, round_: int) -> tuple[Rollout, list[str]]:
        """The coach's `problems_per_step` proposals (one prompt, sampled that many times) and their texts."""
        c = self.config.coach
        roll = sample_responses(self.coach_module(), self.tokenizer, [self.config.prompts.coach],
                                n=int(self.rl.problems_per_step),
                                max_new_tokens=int(c.max_new_tokens), temperature=float(c.temperature),
                                top_p=float(c.top_p), repetition_penalty=float(c.repetition_penalty),
                                seed=step_seed(self.seed, t, round_, 0), mesh=self.mesh, rules=self.rules)
        return roll, [text.strip() for text in roll.texts]

    def solve(self, problems: Sequence[str], t: int, round_: int) -> Rollout:
        """`n` player samples per problem (rows problem-major)."""
        p = self.config.player
        prompts = [self.player_prompt(q) for q in problems]
        return sample_responses(self.player.module(), self.tokenizer, prompts, n=int(self.rl.n),
                                max_new_tokens=int(p.max_new_tokens), temperature=float(p.temperature),
                                top_p=float(p.top_p), repetition_penalty=float(p.repetition_penalty),
                                seed=step_seed(self.seed, t, round_, 1), mesh=self.mesh, rules=self.rules)

    @staticmethod
    def answers(rollout: Rollout) -> list[str | None]:
        return [math_env.extract_boxed(text) for text in rollout.texts]

    def valid_problem_fraction(self, problems: Sequence[str]) -> float:
        """Share of proposals that parse as one of the generator's problem kinds (tiny runs' diagnostic)."""
        return float(np.mean([math_env.parse_problem_text(q) is not None for q in problems]))

    def pack(self, rollout: Rollout, advantages: Sequence[float], rows: int) -> dict[str, np.ndarray]:
        return rollout.to_batch(advantages, seq_len=int(self.rl.seq_len), pad_id=self.pad_id, rows=rows)

    # -- scoring -------------------------------------------------------------------------------------------
    def greedy_accuracy(self, problems: ProblemSet) -> float:
        """Greedy decoding (the validation protocol), in fixed-size batches, scored against the labels."""
        p = self.config.player
        texts = greedy_answers(self.player.module(), self.tokenizer,
                               [self.player_prompt(q) for q in problems.problems],
                               max_new_tokens=int(p.max_new_tokens), batch_size=int(self.config.validation.batch_size),
                               repetition_penalty=float(p.repetition_penalty), mesh=self.mesh, rules=self.rules)
        return float(np.mean([math_env.answers_equivalent(math_env.extract_boxed(t), label)
                              for t, label in zip(texts, problems.labels)]))

    def validate(self) -> float:
        return self.greedy_accuracy(self.probe)

    # -- persistence ---------------------------------------------------------------------------------------
    def state_tree(self) -> dict[str, Any]:
        tree = {"player": self.player.state}
        if self.coach is not None:
            tree["coach"] = self.coach.state
        return tree

    def abstract_tree(self) -> dict[str, Any]:
        tree = {"player": self.player.abstract_state()}
        if self.coach is not None:
            tree["coach"] = self.coach.abstract_state()
        return tree

    def load_state_tree(self, tree: dict[str, Any]) -> None:
        self.player.state = tree["player"]
        if self.coach is not None:
            self.coach.state = tree["coach"]

    def bookkeeping(self) -> dict[str, Any]:
        return {"val_history": self.val_history}

    def load_bookkeeping(self, meta: dict[str, Any]) -> None:
        self.val_history = [float(v) for v in meta["val_history"]]

    # -- the loop ------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def train_step(self, t: int) -> dict[str, Any]:
        """One iteration: sample, reward, update, validate (append V_t to val_history). Returns metrics."""

    def run(self) -> dict[str, Any]:
        """Runs (or resumes) `rl.steps` steps; returns the run's summary."""
        steps, eval_every = int(self.rl.steps), int(self.rl.eval_every)
        ckpt = Checkpointer(self.workdir, max_to_keep=2, config=self.config)
        restored = ckpt.restore_latest(self.abstract_tree())
        if restored is not None:
            start, tree, extra = restored
            self.load_state_tree(tree)
            self.load_bookkeeping(extra["metadata"])
            log.info("%s seed %d: resumed at step %d", self.method, self.seed, start)
        else:
            start = 0
        writer = MetricsWriter(self.workdir, resume_step=start)
        if start == 0:
            self.val_history = [self.validate()]
            writer.write(0, {"val_acc": self.val_history[0], "test_acc": self.greedy_accuracy(self.test)})
            ckpt.save(0, self.state_tree(), metadata=self.bookkeeping())
        progress = Progress(steps, start_step=start, every=int(self.rl.log_every), name=f"{self.method}/s{self.seed}")
        with interrupt.step_loop(ckpt, writer):     # Ctrl-C / SIGTERM: a checkpoint at the step boundary, then Stopped
            for t in range(start + 1, steps + 1):
                t0 = time.perf_counter()
                metrics = self.train_step(t)
                metrics["val_acc"] = self.val_history[-1]
                if t % eval_every == 0 or t == steps:
                    metrics["test_acc"] = self.greedy_accuracy(self.test)
                metrics["step_seconds"] = time.perf_counter() - t0
                writer.write(t, metrics)
                progress.update(t, val=metrics["val_acc"], **({"test": metrics["test_acc"]} if "test_acc" in metrics
                                                              else {}))
                if t % int(self.rl.checkpoint_every) == 0 or t == steps:
                    ckpt.save(t, self.state_tree(), metadata=self.bookkeeping())
                interrupt.stop_if_requested(t, self.workdir, lambda: ckpt.save(t, self.state_tree(),
                                                                               metadata=self.bookkeeping()),
                                            ckpt, writer)
        ckpt.close()
        writer.close()
        return {"method": self.method, "seed": self.seed, "steps": steps, "resumed_from_step": start}
