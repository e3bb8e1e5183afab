"""Estimators over k sampled attempts per problem, shared by every system that samples several answers
(SE-Bench, EvoOpt-LLM's execution check): pass@k and mean@k.

    pass_at_k(samples=8, correct=3, k=1)      # 0.375: the chance one of k draws (of the n samples) is correct
    mean_at_k([3, 0, 8], samples=8)           # accuracy averaged over each problem's attempts, then problems
"""
from __future__ import annotations

import math
from typing import Sequence


def pass_at_k(samples: int, correct: int, k: int) -> float:
    """The unbiased pass@k estimator (Chen et al. 2021): 1 - C(n - c, k) / C(n, k)."""
    if not 1 <= k <= samples:
        raise ValueError(f"pass@k needs 1 <= k <= samples, got k={k}, samples={samples}")
    if samples - correct < k:
        return 1.0
    return 1.0 - math.comb(samples - correct, k) / math.comb(samples, k)


def mean_at_k(correct: Sequence[int], samples: int) -> float:
    """mean@k: the accuracy averaged over each task's `samples` attempts, then over tasks."""
    return float(sum(correct) / (samples * len(correct))) if correct else 0.0
