"""BLEU-based text similarity and repetition penalty for self-play problem generation (R-Zero).

Why this exists: in R-Zero (arXiv 2508.05004) a Challenger model proposes problems for a Solver. Left
alone, the Challenger can farm reward by proposing many near-identical problems, so each batch of proposed
problems is clustered by BLEU distance (d = 1 - BLEU) with agglomerative clustering at distance threshold
0.5, and every problem is penalised by the relative size of its cluster, |C_k| / B. The Challenger reward
min(p, 1 - p) - penalty is assembled elsewhere; this module only measures repetition.

Everything here is plain Python / NumPy / SciPy on the host: it operates on decoded strings, runs once per
batch of a few hundred texts at most, and has nothing to gain from JAX. BLEU is implemented here (no nltk)
so that the tokenisation and smoothing choices are explicit:

* Tokenisation splits every digit and every punctuation/operator character into its own token and keeps
  runs of letters as words. Math problems such as "23+58=?" contain no spaces, so whitespace tokenisation
  would make them a single token and BLEU would be all-or-nothing. Splitting numbers digit by digit makes
  "23+58=?" and "23+59=?" near-duplicates (BLEU ~0.59), which is what a repetition penalty should see.
* Smoothing "add1" adds one to the numerator and denominator of the n-gram precisions for n >= 2 only
  (Lin & Och 2004, as in nltk's ``method2``), so short problems with no matching 4-gram still get a graded
  score instead of 0. Unigram precision stays unsmoothed: texts sharing no token at all score exactly 0.
* Two empty texts are defined to be identical (distance 0); an empty text and a non-empty one are at
  distance 1.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage as scipy_linkage
from scipy.spatial.distance import squareform

__all__ = ["tokenize_for_bleu", "sentence_bleu", "bleu_distance_matrix", "cluster_by_bleu",
           "repetition_penalty"]

# One digit, a run of letters, or any other single non-space character (operators, punctuation, symbols).
_TOKEN_PATTERN = re.compile(r"\d|[^\W\d_]+|[^\w\s]|_")

_SMOOTHING_METHODS = ("add1", "none")
# Methods whose merge rule is valid for an arbitrary (non-Euclidean) precomputed distance matrix;
# "centroid", "median" and "ward" assume Euclidean observations and would give meaningless merges.
_LINKAGE_METHODS = ("single", "complete", "average", "weighted")


def tokenize_for_bleu(text: str) -> list[str]:
    """Split ``text`` into BLEU tokens: each digit, each run of letters, each other non-space character.

    Example: ``"solve 3x+5=20"`` -> ``["solve", "3", "x", "+", "5", "=", "2", "0"]``.
    """
    return _TOKEN_PATTERN.findall(text)


def _ngram_counts(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _closest_reference_length(candidate_length: int, reference_lengths: Sequence[int]) -> int:
    # Papineni et al.'s "best match length"; ties go to the shorter reference (as in nltk / sacrebleu),
    # which is the more lenient choice for the brevity penalty.
    return min(reference_lengths, key=lambda length: (abs(length - candidate_length), length))


def sentence_bleu(candidate: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4,
                  smoothing: str = "add1") -> float:
    """Sentence-level BLEU of a tokenised ``candidate`` against one or more tokenised ``references``.

    Modified n-gram precision p_n for n = 1..max_n clips each candidate n-gram count by its maximum count
    in any single reference. BLEU = BP * exp(mean_n log p_n) with uniform weights, where the brevity
    penalty BP = exp(1 - r / c) if c <= r else 1, with c the candidate length and r the reference length
    closest to c (ties -> shorter).

    smoothing: "add1" -> p_n = (matches + 1) / (total + 1) for n >= 2 (p_1 unsmoothed); "none" -> plain
    precisions, so the score is 0 whenever some p_n is 0 (including a candidate shorter than max_n).
    An empty candidate scores 0.0.
    """
    if smoothing not in _SMOOTHING_METHODS:
        raise ValueError(f"smoothing must be one of {_SMOOTHING_METHODS}, got {smoothing!r}")
    if max_n < 1:
        raise ValueError(f"max_n must be >= 1, got {max_n}")
    if len(references) == 0:
        raise ValueError("sentence_bleu needs at least one reference")
    if len(candidate) == 0:
        return 0.0

    log_precision_sum = 0.0
    for n in range(1, max_n + 1):
        candidate_counts = _ngram_counts(candidate, n)
        # Clipping: a candidate n-gram earns credit at most as often as it occurs in one reference.
        max_reference_counts: Counter[tuple[str, ...]] = Counter()
        for reference in references:
            max_reference_counts |= _ngram_counts(reference, n)  # Counter union = element-wise max
        matches = sum(min(count, max_reference_counts[ngram]) for ngram, count in candidate_counts.items())
        total = sum(candidate_counts.values())
        if smoothing == "add1" and n >= 2:
            matches, total = matches + 1, total + 1
        if matches == 0:
            # log(0) = -inf: the geometric mean is 0 (also covers total == 0 without smoothing).
            return 0.0
        log_precision_sum += math.log(matches / total)

    candidate_length = len(candidate)
    reference_length = _closest_reference_length(candidate_length, [len(ref) for ref in references])
    if candidate_length > reference_length:
        brevity_penalty = 1.0
    else:
        brevity_penalty = math.exp(1.0 - reference_length / candidate_length)
    return brevity_penalty * math.exp(log_precision_sum / max_n)


def bleu_distance_matrix(texts: Sequence[str]) -> np.ndarray:
    """Symmetric [N, N] float64 matrix d_ij = 1 - (BLEU(i | j) + BLEU(j | i)) / 2 with a zero diagonal.

    BLEU is asymmetric (precision of the candidate, brevity penalty against the reference), so both
    directions are averaged to get a proper dissimilarity for clustering. Default BLEU settings are used
    (max_n=4, "add1" smoothing). Two empty texts are at distance 0 (identical), by definition.
    """
    token_lists = [tokenize_for_bleu(text) for text in texts]
    num_texts = len(token_lists)
    distances = np.zeros((num_texts, num_texts), dtype=np.float64)
    for i in range(num_texts):
        for j in range(i + 1, num_texts):
            if not token_lists[i] and not token_lists[j]:
                continue  # both empty: identical, distance stays 0
            similarity = 0.5 * (sentence_bleu(token_lists[i], [token_lists[j]])
                                + sentence_bleu(token_lists[j], [token_lists[i]]))
            distances[i, j] = distances[j, i] = 1.0 - similarity
    # Guard against float round-off pushing values a hair outside [0, 1].
    return np.clip(distances, 0.0, 1.0)


def _renumber_by_first_appearance(labels: np.ndarray) -> np.ndarray:
    new_label_of: dict[int, int] = {}
    for label in labels.tolist():
        new_label_of.setdefault(label, len(new_label_of))
    return np.array([new_label_of[label] for label in labels.tolist()], dtype=np.int64)


def cluster_by_bleu(texts: Sequence[str], threshold: float = 0.5, linkage: str = "average") -> np.ndarray:
    """Agglomerative clustering of ``texts`` on BLEU distance; returns int64 labels [N].

    Clusters are cut where the linkage distance exceeds ``threshold`` (scipy ``fcluster`` with
    criterion "distance": members of a cluster are merged at distance <= threshold). Labels are
    0..K-1 in order of first appearance, so they are deterministic and comparable across runs.
    """
    if linkage not in _LINKAGE_METHODS:
        raise ValueError(f"linkage must be one of {_LINKAGE_METHODS} (valid for non-Euclidean "
                         f"distances), got {linkage!r}")
    num_texts = len(texts)
    if num_texts == 0:
        return np.zeros((0,), dtype=np.int64)
    if num_texts == 1:
        return np.zeros((1,), dtype=np.int64)  # scipy's linkage needs at least two observations
    condensed = squareform(bleu_distance_matrix(texts), checks=False)
    merge_tree = scipy_linkage(condensed, method=linkage)
    labels = fcluster(merge_tree, t=threshold, criterion="distance")
    return _renumber_by_first_appearance(labels)


def repetition_penalty(texts: Sequence[str], threshold: float = 0.5, linkage: str = "average") -> np.ndarray:
    """R-Zero repetition penalty: for each text, |cluster containing it| / N, as float64 [N].

    A unique text gets 1/N; a batch of N copies of the same text gets 1.0 each.
    """
    labels = cluster_by_bleu(texts, threshold=threshold, linkage=linkage)
    if labels.size == 0:
        return np.zeros((0,), dtype=np.float64)
    cluster_sizes = np.bincount(labels)
    return cluster_sizes[labels].astype(np.float64) / labels.size
