"""Label-free rewards against hand-worked cases."""
import numpy as np
import pytest

from jaxsuite.rl import rewards as rw


@pytest.mark.parametrize("answers, expected", [
    (["3", "3", "4", None], [1, 1, -1, -1]),          # unique plurality
    (["3", "4", "3", "4"], [-1, -1, -1, -1]),         # tie at the top
    ([None, None, None, "3"], [-1, -1, -1, -1]),      # "no box" is the most frequent
    ([None, None], [-1, -1]),                         # nobody boxed anything
    ([None, "5", "5"], [-1, 1, 1]),
])
def test_majority_vote_rewards(answers, expected):
    np.testing.assert_array_equal(rw.majority_vote_rewards(answers), expected)


def test_majority_vote_exact_versus_equivalent_matching():
    answers = ["1/2", "0.5", "\\frac{1}{2}", "3"]
    # exact strings: four distinct answers, a four-way tie -> all -1
    np.testing.assert_array_equal(rw.majority_vote_rewards(answers, "exact"), [-1, -1, -1, -1])
    np.testing.assert_array_equal(rw.majority_vote_rewards(answers, "equivalent"), [1, 1, 1, -1])
    with pytest.raises(ValueError, match="unknown answer matching"):
        rw.majority_vote_rewards(answers, "fuzzy")


def test_self_consistency_and_pseudo_labels():
    # 5 samples, "7" thrice, one other, one missing: p = 3/5 (missing counts in the denominator only)
    answers = ["7", "7", "8", None, "7"]
    assert rw.self_consistency(answers) == pytest.approx(0.6)
    np.testing.assert_array_equal(rw.pseudo_label_rewards(answers), [1, 1, 0, 0, 1])
    assert rw.self_consistency([None, None]) == 0.0
    np.testing.assert_array_equal(rw.pseudo_label_rewards(["1", "2"]), [0, 0])   # no unique majority


def test_rzero_challenger_rewards_by_hand():
    problems = ["23+58=?", "23+58=?", "23+58=?", "7*8=?"]
    p = [0.5, 0.9, 0.2, 0.6]
    rewards, penalty = rw.rzero_challenger_rewards(problems, p, [True, True, True, False])
    # the three duplicates share a cluster of 3 of 4 -> penalty 0.75; the fourth is alone -> 0.25 but unparsed
    np.testing.assert_allclose(penalty, [0.75, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(rewards, [0.5 - 0.75, 0.1 - 0.75, 0.2 - 0.75, -1.0], rtol=1e-6)


def test_entropy_rewards_by_hand():
    ent = [np.asarray([0.3, 0.6, 0.9]), np.asarray([2.0]), np.asarray([])]
    np.testing.assert_allclose(rw.entropy_rewards(ent), [-0.6, -2.0, 0.0], rtol=1e-6)
    # the last third of [1, 1, 1, 1, 1, 4] is its final two tokens: mean 2.5
    np.testing.assert_allclose(rw.entropy_rewards([np.asarray([1, 1, 1, 1, 1, 4.0])], "last_third"), [-2.5])
    with pytest.raises(ValueError, match="unknown RENT span"):
        rw.entropy_rewards(ent, "middle")
