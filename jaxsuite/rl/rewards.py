"""Label-free rewards shared by the self-play systems: majority vote, self-consistency, repetition and entropy.

Each takes what a rollout produced (extracted answers, texts, per-token entropies) and returns one reward per
response; none needs a ground-truth label, which is the point of data-free RL.

Majority vote (CPMobius's player reward, thunlp/CPMobius `MajorityVoteRewardManager`): among the n answers to
one problem, the unique most frequent answer wins; its holders get +1, everyone else -1. "No box" takes part
in the vote like an answer: when it is the most frequent (or nobody boxed anything), or when the top is a
tie, all n get -1: the group teaches nothing and, with every reward equal, its GRPO advantages are zero. Answers are grouped either by exact
string ("exact", as the released code does) or by mathematical equivalence ("equivalent", via
`math_env.answer_key`, so that 0.5 and 1/2 vote together).
"""
from __future__ import annotations

import collections
from typing import Sequence

import numpy as np

from jaxsuite.rl import math_env
from jaxsuite.rl.text_similarity import repetition_penalty

ANSWER_MATCHING = ("exact", "equivalent")


def _vote_key(answer: str | None, matching: str) -> str | None:
    if answer is None or not answer.strip():
        return None
    if matching == "exact":
        return answer
    if matching == "equivalent":
        return math_env.answer_key(answer)
    raise ValueError(f"unknown answer matching {matching!r}; expected one of {ANSWER_MATCHING}")


def majority_answer(answers: Sequence[str | None], matching: str = "exact") -> tuple[str | None, int]:
    """(the unique plurality answer's key, its count), or (None, top count) when the top is a tie or is
    "no box" (missing answers vote together, as in the released code)."""
    keys = [_vote_key(a, matching) for a in answers]
    if not keys:
        return None, 0
    ranked = collections.Counter(keys).most_common()
    top_key, top = ranked[0]
    if len(ranked) > 1 and ranked[1][1] == top:
        return None, top
    return top_key, top


def majority_vote_rewards(answers: Sequence[str | None], matching: str = "exact") -> np.ndarray:
    """+1 for the responses holding the unique plurality answer, -1 for the rest; all -1 on a tie or when
    no response has an answer. answers: one group's extracted answers (None = no box). -> [n] float32."""
    winner, _ = majority_answer(answers, matching)
    if winner is None:
        return np.full(len(answers), -1.0, np.float32)
    return np.asarray([1.0 if _vote_key(a, matching) == winner else -1.0 for a in answers], np.float32)


def self_consistency(answers: Sequence[str | None], matching: str = "equivalent") -> float:
    """R-Zero's p: the share of the n responses that hold the most frequent answer (ties: that count; missing
    answers count in the denominator, never as an answer)."""
    keys = [_vote_key(a, matching) for a in answers]
    counts = collections.Counter(k for k in keys if k is not None)
    return max(counts.values()) / len(answers) if counts and answers else 0.0


def pseudo_label_rewards(answers: Sequence[str | None], matching: str = "equivalent") -> np.ndarray:
    """R-Zero's solver reward: 1 for a response that matches the majority pseudo-label, else 0 (0 for all when
    there is no unique majority). -> [n] float32."""
    winner, _ = majority_answer(answers, matching)
    return np.asarray([1.0 if winner is not None and _vote_key(a, matching) == winner else 0.0 for a in answers],
                      np.float32)


def rzero_challenger_rewards(problems: Sequence[str], consistency: Sequence[float], parsed: Sequence[bool], *,
                             cluster_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """R-Zero's challenger reward per proposed problem: min(p, 1 - p) minus its repetition penalty (the share
    of the batch in its BLEU cluster), or -1 when the proposal could not be used (`parsed` False).
    Returns (rewards [N], penalties [N])."""
    p = np.asarray(consistency, np.float64)
    penalty = repetition_penalty(list(problems), threshold=cluster_threshold)
    rewards = np.minimum(p, 1.0 - p) - penalty
    rewards = np.where(np.asarray(parsed, bool), rewards, -1.0)
    return rewards.astype(np.float32), penalty.astype(np.float32)


def entropy_rewards(entropies: Sequence[np.ndarray], span: str = "all") -> np.ndarray:
    """RENT: the negative mean token entropy of each response (its own confidence) as the reward.

    entropies: per response, the policy's entropy at each response token. span "all" averages over the whole
    response; "last_third" over its final third (RENT reports the answer end matters most). -> [n] float32.
    """
    out = []
    for e in entropies:
        e = np.asarray(e, np.float64).reshape(-1)
        if span == "last_third":
            e = e[len(e) - max(1, len(e) // 3):] if len(e) else e
        elif span != "all":
            raise ValueError(f"unknown RENT span {span!r}; expected 'all' or 'last_third'")
        out.append(-float(e.mean()) if e.size else 0.0)
    return np.asarray(out, np.float32)
