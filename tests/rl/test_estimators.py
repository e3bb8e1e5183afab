"""pass@k and mean@k (jaxsuite.rl.estimators) against hand-computed values and a count over all subsets."""
import itertools

import pytest

from jaxsuite.rl.estimators import mean_at_k, pass_at_k


def test_pass_at_k_and_mean_at_k_by_hand():
    assert pass_at_k(4, 0, 1) == 0.0 and pass_at_k(4, 1, 1) == 0.25
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)          # 1 - C(3,2)/C(4,2)
    assert pass_at_k(4, 3, 2) == 1.0 and pass_at_k(5, 2, 5) == 1.0
    assert mean_at_k([1, 0, 4], 4) == pytest.approx(5 / 12)
    with pytest.raises(ValueError, match="1 <= k <= samples"):
        pass_at_k(2, 1, 3)


def test_pass_at_k_counts_subsets():
    # the chance that k draws without replacement from n samples (c of them correct) include a correct one
    for n, c, k in [(5, 2, 1), (5, 2, 3), (6, 1, 2), (4, 0, 2), (4, 4, 1)]:
        subsets = list(itertools.combinations([1] * c + [0] * (n - c), k))
        assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))
