"""Tests for the BLEU distance / clustering repetition penalty used by the R-Zero Challenger reward.

Expected BLEU values are derived by hand from n-gram counts written out in each test (not by calling
another BLEU implementation), so a wrong clipping, smoothing or brevity rule shows up as a mismatch.
"""
import math

import numpy as np
import pytest

from jaxsuite.rl.text_similarity import (bleu_distance_matrix, cluster_by_bleu, repetition_penalty,
                                         sentence_bleu, tokenize_for_bleu)

NEAR_DUPLICATES_AND_OUTLIER = ["23+58=?", "23+58=? ", "23+59=?", "solve 3x+5=20"]


# --- tokenisation ---------------------------------------------------------------------------------------

def test_tokenize_splits_digits_letters_and_operators():
    assert tokenize_for_bleu("23+58=?") == ["2", "3", "+", "5", "8", "=", "?"]
    assert tokenize_for_bleu("solve 3x+5=20") == ["solve", "3", "x", "+", "5", "=", "2", "0"]
    assert tokenize_for_bleu("  What is 2.5*y? ") == ["What", "is", "2", ".", "5", "*", "y", "?"]
    assert tokenize_for_bleu("") == []
    assert tokenize_for_bleu("   \n\t") == []


# --- sentence_bleu ---------------------------------------------------------------------------------------

def test_sentence_bleu_hand_computed_example():
    candidate = "the cat sat on the mat".split()
    reference = "the cat is on the mat".split()
    # Clipped matches / candidate n-gram totals, counted by hand:
    #   1-grams: the x2 (ref has 2), cat, on, mat match; sat does not        -> 5 / 6
    #   2-grams: "the cat", "on the", "the mat" match; "cat sat", "sat on" not -> 3 / 5
    #   3-grams: only "on the mat" matches                                     -> 1 / 4
    #   4-grams: none of the 3 match                                           -> 0 / 3
    # c = r = 6, so the brevity penalty is exp(0) = 1.
    expected_add1 = math.exp((math.log(5 / 6) + math.log(4 / 6) + math.log(2 / 5) + math.log(1 / 4)) / 4)
    assert sentence_bleu(candidate, [reference]) == pytest.approx(expected_add1, rel=1e-12)
    assert sentence_bleu(candidate, [reference], smoothing="none") == 0.0  # p_4 = 0
    expected_trigram_plain = math.exp((math.log(5 / 6) + math.log(3 / 5) + math.log(1 / 4)) / 3)
    assert sentence_bleu(candidate, [reference], max_n=3, smoothing="none") == pytest.approx(
        expected_trigram_plain, rel=1e-12)


def test_sentence_bleu_identical_is_one():
    tokens = tokenize_for_bleu("If 3x + 5 = 20, what is x?")
    assert sentence_bleu(tokens, [tokens]) == pytest.approx(1.0)
    assert sentence_bleu(tokens, [tokens], smoothing="none") == pytest.approx(1.0)


def test_sentence_bleu_no_overlap_and_unigram_only_overlap():
    # No shared token: p_1 = 0 is never smoothed, so both modes give exactly 0.
    assert sentence_bleu(list("abcd"), [list("efgh")]) == 0.0
    assert sentence_bleu(list("abcd"), [list("efgh")], smoothing="none") == 0.0
    # Same tokens, reversed order: p_1 = 4/4, higher orders 0/3, 0/2, 0/1.
    # add1 -> (1 * 1/4 * 1/3 * 1/2) ** (1/4); none -> 0.
    assert sentence_bleu(list("abcd"), [list("dcba")]) == pytest.approx((1 / 24) ** 0.25, rel=1e-12)
    assert sentence_bleu(list("abcd"), [list("dcba")], smoothing="none") == 0.0


def test_sentence_bleu_brevity_penalty():
    candidate = "the cat".split()
    reference = "the cat sat on the mat".split()
    # p_1 = 2/2, p_2 = 1/1; c = 2 <= r = 6 -> BP = exp(1 - 6/2).
    assert sentence_bleu(candidate, [reference], max_n=2, smoothing="none") == pytest.approx(math.exp(-2.0))


def test_sentence_bleu_closest_reference_length_ties_to_shorter():
    # c = 3; references of length 2 and 4 are equally close -> r = 2, c > r, BP = 1.
    # "c" only appears in the longer reference, so p_1 = 3/3 also needs the max over references.
    # (Picking the longer reference would give exp(1 - 4/3) instead.)
    assert sentence_bleu(list("abc"), [list("ab"), list("abcd")], max_n=1) == pytest.approx(1.0)


def test_sentence_bleu_clipping():
    candidate = "the the the the".split()
    reference = "the cat".split()
    # "the" occurs once in the reference, so only 1 of 4 candidate unigrams counts; c = 4 > r = 2 -> BP = 1.
    assert sentence_bleu(candidate, [reference], max_n=1) == pytest.approx(0.25)
    # Bigrams: "the the" x3, none in the reference -> add1 gives (0 + 1) / (3 + 1).
    assert sentence_bleu(candidate, [reference], max_n=2) == pytest.approx(math.sqrt(0.25 * 0.25))


def test_sentence_bleu_edge_cases_and_validation():
    assert sentence_bleu([], [["a"]]) == 0.0
    assert sentence_bleu([], [[]]) == 0.0
    assert sentence_bleu(["a"], [[]]) == 0.0  # nothing can match an empty reference
    with pytest.raises(ValueError):
        sentence_bleu(["a"], [])
    with pytest.raises(ValueError):
        sentence_bleu(["a"], [["a"]], smoothing="add-k")
    with pytest.raises(ValueError):
        sentence_bleu(["a"], [["a"]], max_n=0)


# --- distance matrix ----------------------------------------------------------------------------------

def test_bleu_distance_matrix_properties():
    texts = NEAR_DUPLICATES_AND_OUTLIER + ["", "x"]
    distances = bleu_distance_matrix(texts)
    assert distances.shape == (6, 6)
    assert distances.dtype == np.float64
    np.testing.assert_array_equal(distances, distances.T)
    np.testing.assert_array_equal(np.diag(distances), np.zeros(6))
    assert np.all((distances >= 0.0) & (distances <= 1.0))
    assert distances[0, 1] == pytest.approx(0.0)  # trailing whitespace does not change the tokens
    assert distances[0, 2] < 0.5 < distances[0, 3]
    assert distances[4, 5] == 1.0  # empty vs non-empty: nothing in common


def test_bleu_distance_matrix_hand_computed_pair():
    # "a b c" | "a b": p = 2/3, (1+1)/(2+1), (0+1)/(1+1), (0+1)/(0+1); c = 3 > r = 2 -> BP = 1.
    forward = (2 / 3 * 2 / 3 * 1 / 2 * 1) ** 0.25
    # "a b" | "a b c": every smoothed precision is 1 (p_3, p_4 have no candidate n-grams -> 1/1);
    # c = 2 <= r = 3 -> BP = exp(1 - 3/2).
    backward = math.exp(-0.5)
    distances = bleu_distance_matrix(["a b c", "a b"])
    assert distances[0, 1] == pytest.approx(1.0 - (forward + backward) / 2, rel=1e-12)


def test_bleu_distance_matrix_empty_texts():
    assert bleu_distance_matrix([]).shape == (0, 0)
    np.testing.assert_array_equal(bleu_distance_matrix(["only one"]), np.zeros((1, 1)))
    # Two empty texts are defined to be identical.
    np.testing.assert_array_equal(bleu_distance_matrix(["", "  "]), np.zeros((2, 2)))


# --- clustering and penalty ---------------------------------------------------------------------------

def test_cluster_groups_near_duplicates_and_separates_outlier():
    labels = cluster_by_bleu(NEAR_DUPLICATES_AND_OUTLIER)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [0, 0, 0, 1])
    for linkage in ("single", "complete", "weighted"):
        np.testing.assert_array_equal(cluster_by_bleu(NEAR_DUPLICATES_AND_OUTLIER, linkage=linkage),
                                      [0, 0, 0, 1])


def test_cluster_threshold_controls_merging():
    # d("23+58=?", "23+59=?") is about 0.41: merged at 0.5, kept apart at 0.3.
    np.testing.assert_array_equal(cluster_by_bleu(NEAR_DUPLICATES_AND_OUTLIER, threshold=0.3), [0, 0, 1, 2])
    # A threshold of 1 merges everything (all distances are <= 1).
    np.testing.assert_array_equal(cluster_by_bleu(NEAR_DUPLICATES_AND_OUTLIER, threshold=1.0), [0, 0, 0, 0])


def test_cluster_labels_follow_first_appearance():
    texts = ["solve 3x+5=20", "23+58=?", "23+58=?", "solve 3x+5=20", "Find the area of a circle"]
    np.testing.assert_array_equal(cluster_by_bleu(texts), [0, 1, 1, 0, 2])


def test_cluster_edge_cases():
    assert cluster_by_bleu([]).shape == (0,)
    np.testing.assert_array_equal(cluster_by_bleu(["anything"]), [0])
    np.testing.assert_array_equal(cluster_by_bleu(["", ""]), [0, 0])
    np.testing.assert_array_equal(cluster_by_bleu(["", "1+1=?"]), [0, 1])
    with pytest.raises(ValueError):
        cluster_by_bleu(["a", "b"], linkage="ward")  # needs Euclidean observations


def test_repetition_penalty_values():
    np.testing.assert_allclose(repetition_penalty(NEAR_DUPLICATES_AND_OUTLIER), [0.75, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(repetition_penalty(["7*8=?"] * 5), [1.0] * 5)
    distinct = ["23+58=?", "solve 3x+5=20", "Find the area of a circle", "How many primes are below 30?"]
    np.testing.assert_allclose(repetition_penalty(distinct), [0.25] * 4)
    np.testing.assert_allclose(repetition_penalty(["", "", "2*3=?"]), [2 / 3, 2 / 3, 1 / 3])


def test_repetition_penalty_edge_cases():
    penalty = repetition_penalty([])
    assert penalty.shape == (0,) and penalty.dtype == np.float64
    np.testing.assert_array_equal(repetition_penalty(["one problem"]), [1.0])
