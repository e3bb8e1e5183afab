"""The predict-and-search GNN: features and loss against hand-computed values, message passing against a dense
reference, padding that changes nothing, training that fits the pools; the search and the pooled metrics."""
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsuite.optmodel import families as F
from jaxsuite.optmodel import gnn as G
from jaxsuite.optmodel import pruning as P
from jaxsuite.optmodel.model import LinearModel, solve


def _small() -> LinearModel:
    # max 5a + 4b + 3c (binaries), 2a + 3b + c <= 4, a + b >= 1: optimum a = c = 1 -> 8 (b would break the cap)
    m = LinearModel("s", "maximize")
    for n in "abc":
        m.variable(n, kind="binary")
    m.constrain("cap", {"a": 2, "b": 3, "c": 1}, "<=", 4)
    m.constrain("cover", {"a": 1, "b": 1}, ">=", 1)
    m.objective = {"a": 5, "b": 4, "c": 3}
    return m


def test_features_by_hand():
    g = G.bipartite_graph(_small())
    # raw variable features: [obj, mean, degree, max, min, binary]
    raw = np.array([[5, 1.5, 2, 2, 1, 1], [4, 2, 2, 3, 1, 1], [3, 1, 1, 1, 1, 1]], float)
    lo, hi = raw.min(0), raw.max(0)
    expected = np.where(hi > lo, (raw - lo) / np.where(hi > lo, hi - lo, 1), 0)
    np.testing.assert_allclose(g.var_features, expected, atol=1e-6)
    # constraints: cap (mean 2, nnz 3, rhs 4, <= +1), cover (1, 2, 1, >= -1), objective (4, 3, 0, 0)
    raw_c = np.array([[2, 3, 4, 1], [1, 2, 1, -1], [4, 3, 0, 0]], float)
    lo, hi = raw_c.min(0), raw_c.max(0)
    np.testing.assert_allclose(g.con_features, np.where(hi > lo, (raw_c - lo) / np.where(hi > lo, hi - lo, 1), 0),
                               atol=1e-6)
    assert sorted(zip(g.edge_con.tolist(), g.edge_var.tolist(), g.edge_value.tolist())) == [
        (0, 0, 2.0), (0, 1, 3.0), (0, 2, 1.0), (1, 0, 1.0), (1, 1, 1.0), (2, 0, 5.0), (2, 1, 4.0), (2, 2, 3.0)]


def test_half_convolution_matches_a_dense_sum():
    conv = G.HalfConvolution(8, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    h_src, h_dst = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(3, 8)).astype(np.float32)
    src, dst = np.array([0, 1, 4, 4, 2]), np.array([0, 0, 2, 1, 2])
    value, mask = rng.normal(size=5).astype(np.float32), np.array([1, 1, 1, 0, 1], np.float32)
    got = conv(jnp.asarray(h_src), jnp.asarray(h_dst), src, dst, jnp.asarray(value), jnp.asarray(mask))
    w, b = np.asarray(conv.source.kernel.value), np.asarray(conv.source.bias.value)
    we, be = np.asarray(conv.edge.kernel.value), np.asarray(conv.edge.bias.value)
    summed = np.zeros((3, 8), np.float32)
    for k in range(5):                         # the naive loop over edges
        if mask[k]:
            summed[dst[k]] += np.maximum(h_src[src[k]] @ w + b + value[k] * we[0] + be, 0)
    want = conv.update(jnp.concatenate([jnp.asarray(h_dst), conv.norm(jnp.asarray(summed))], -1))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_padding_changes_nothing():
    gnn = G.PredictAndSearchGNN(16, rngs=nnx.Rngs(1))
    graph = G.bipartite_graph(_small())
    tight = gnn(G.pad_graphs([graph]))
    loose = gnn(G.pad_graphs([graph], n_var=9, n_con=7, n_edge=20))
    np.testing.assert_allclose(np.asarray(loose)[0, :3], np.asarray(tight)[0], rtol=1e-5, atol=1e-5)


def test_solution_weighted_bce_by_hand():
    batch = G.pad_graphs([G.bipartite_graph(_small())])
    logits = jnp.array([[0.5, -1.0, 2.0]])
    solutions = jnp.array([[[1, 0, 1], [0, 1, 0]]], jnp.float32)     # objectives 8 and 4 (maximise)
    objectives, valid = jnp.array([[8.0, 4.0]]), jnp.ones((1, 2))
    got = G.solution_weighted_bce(logits, batch, solutions, objectives, valid, jnp.array([True]), temperature=2.0)
    w = np.exp([8 / 2, 4 / 2])
    w /= w.sum()
    p = 1 / (1 + np.exp(-np.array([0.5, -1.0, 2.0])))
    bce = lambda x: -np.mean(x * np.log(p) + (1 - x) * np.log(1 - p))
    assert float(got) == pytest.approx(w[0] * bce(np.array([1, 0, 1])) + w[1] * bce(np.array([0, 1, 0])), rel=1e-5)
    # minimisation flips the weights; an invalid pool slot gets none
    flipped = G.solution_weights(objectives, valid, 2.0, jnp.array([False]))
    np.testing.assert_allclose(np.asarray(flipped)[0], w[::-1], rtol=1e-5)
    assert np.asarray(G.solution_weights(objectives, jnp.array([[1.0, 0.0]]), 2.0, jnp.array([True])))[0, 1] == 0


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    models = [F.generate("knapsack", rng=rng, size="small", solve_it=False).model for _ in range(6)]
    data = P.pool_labels(models, pool=10)
    gnn, losses = P.train_gnn(data, steps=120, width=32, seed=0)
    return data, gnn, losses


def test_training_fits_the_pools(trained):
    data, gnn, losses = trained
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10]), (losses[:3], losses[-3:])
    probs = P.predict(gnn, data.batch)
    predicted, gold = [], []
    for i, model in enumerate(data.models):
        best = solve(model)
        zeros = P.gold_zeros(model, best.values)
        _, fixed_zero = P.fix_sets(model, probs[i], k0=2, k1=0)
        predicted.append(fixed_zero)
        gold.append(zeros)
    assert P.pooled_prf(predicted, gold)["precision"] >= 0.75     # on its own training instances


def test_search_with_the_right_fixings_keeps_the_optimum():
    model = _small()
    best = solve(model)
    probs = np.array([best.values[n] for n in model.names])            # a perfect predictor
    fixed = P.predict_and_search(model, probs, k0=1, k1=2)
    assert fixed.objective == pytest.approx(8.0) and sorted(fixed.fixed_one) == ["a", "c"] and fixed.fixed_zero == ["b"]
    wrong = 1 - probs                                                  # the worst predictor: fixes b = 1
    assert P.predict_and_search(model, wrong, k0=0, k1=1).objective == pytest.approx(4.0 + 3.0)
    # the trust region lets the solver undo one wrong fixing
    assert P.predict_and_search(model, wrong, k0=2, k1=1, delta=3).objective == pytest.approx(8.0)
    comparison = P.compare_search(model, probs, 8.0, k0=1, k1=2, delta=0, time_limit=5)
    assert comparison["pruned"]["gap"] == 0 and comparison["plain"]["gap"] == 0


def test_pooled_metrics_and_answers_by_hand():
    # instance 1: predicted {a, b, b} -> {a, b}, gold {a, c}; instance 2: predicted {}, gold {d}
    m = P.pooled_prf([["a", "b", "b"], []], [["a", "c"], ["d"]])
    assert (m["hits"], m["predicted"], m["gold"]) == (1, 2, 3)
    assert m["precision"] == 0.5 and m["recall"] == pytest.approx(1 / 3) and m["f1"] == pytest.approx(0.4)
    model = _small()
    assert P.parse_fix_list('I think ["a=0", "b = 0", "c=1", "zz=0", "a=0"] works', model) == ["a", "b"]
    assert P.parse_fix_list("no list here") == []
    assert P.parse_fix_list(P.pruning_answer(["c"])) == ["c"]
    assert "Binary" in P.pruning_prompt(model)
    assert P.primal_gap(None, 5.0) == 1.0 and P.primal_gap(4.0, 5.0) == pytest.approx(0.2)
