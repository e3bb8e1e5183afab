"""Variable pruning: train the GNN on solved instances, fix the variables it is sure of, solve faster.

    data = pool_labels(models, pool=50)                       # SCIP's solution pools: the training labels
    gnn, losses = train_gnn(data, steps=200)
    probs = predict(gnn, data)                                # [G, V] P(x = 1)
    result = predict_and_search(model, probs[i], k0=40, k1=5, delta=0, time_limit=2.0)
    metrics = pooled_prf(predicted_zero_sets, gold_zero_sets)

Search (Han et al.): the k1 binaries most likely to be 1 are set to 1 and the k0 least likely to 0; with
`delta` > 0 they are not fixed but kept within a trust region, sum over the fixed set of |x - x_hat| <= delta,
so the solver may still flip up to delta of them. Compared with the unpruned solve at the same time limit:
the primal gap |f - f*| / max(|f|, |f*|) against the best known objective f* (1 when no solution), and the
wall time.

The paper's LLM variant asks the model for the variables to fix at 0 as a JSON list of "v=0" strings
(`pruning_prompt`, `parse_fix_list`); its precision and recall are POOLED over instances as the paper defines
them: predictions de-duplicated per instance, P = hits / |predicted|, R = hits / |gold| summed over all
instances, where gold is the set of binaries at 0 in the instance's optimal solution.
"""
from __future__ import annotations

import dataclasses
import json
import re
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxsuite.optmodel.gnn import (PredictAndSearchGNN, bipartite_graph, pad_graphs, solution_weighted_bce)
from jaxsuite.optmodel.model import Constraint, LinearModel, solve, solve_scip, to_lp


@dataclasses.dataclass
class PoolData:
    models: list[LinearModel]
    batch: object                     # GraphBatch of all instances
    solutions: np.ndarray             # [G, S, V] 0/1
    objectives: np.ndarray            # [G, S]
    valid: np.ndarray                 # [G, S]
    maximize: np.ndarray              # [G]
    best: list[float]                 # best objective found per instance


def pool_labels(models: Sequence[LinearModel], *, pool: int = 50, time_limit: float = 20.0) -> PoolData:
    """Solves each instance with SCIP and keeps up to `pool` of the solutions it found as labels."""
    graphs = [bipartite_graph(m) for m in models]
    batch = pad_graphs(graphs)
    n_var = batch.var_mask.shape[1]
    sols = np.zeros((len(models), pool, n_var), np.float32)
    objs = np.zeros((len(models), pool), np.float32)
    valid = np.zeros((len(models), pool), np.float32)
    best = []
    for g, model in enumerate(models):
        solution = solve_scip(model, time_limit=time_limit, pool=pool)
        if solution.objective is None:
            raise ValueError(f"instance {model.name} has no solution within {time_limit}s; cannot label it")
        best.append(solution.objective)
        for s, (objective, values) in enumerate(solution.pool[:pool] or [(solution.objective, solution.values)]):
            sols[g, s, :len(model.names)] = [round(values[n]) if model.variables[n].kind == "binary" else 0.0
                                             for n in model.names]
            objs[g, s], valid[g, s] = objective, 1.0
    maximize = np.array([m.sense == "maximize" for m in models])
    return PoolData(list(models), batch, sols, objs, valid, maximize, best)


def _normalised_objectives(data: PoolData) -> np.ndarray:
    """Objectives scaled by each instance's best |f*| so that one temperature fits instances of any size."""
    scale = np.maximum(np.abs(np.array(data.best)), 1.0)[:, None]
    return data.objectives / scale


def train_gnn(data: PoolData, *, steps: int = 200, learning_rate: float = 1e-3, width: int = 64,
              batch_size: int = 4, temperature: float = 0.01, seed: int = 0,
              log_every: int = 0) -> tuple[PredictAndSearchGNN, list[float]]:
    """Adam on the solution-weighted BCE, `batch_size` instances per step (the paper's 4). The temperature
    applies to objectives divided by the instance's best |objective|, so 0.01 weighs a solution 1% worse
    by e^-1 relative to the best."""
    gnn = PredictAndSearchGNN(width, rngs=nnx.Rngs(seed))
    graphdef, params = nnx.split(gnn)
    optimizer = optax.adam(learning_rate)
    opt_state = optimizer.init(params)
    objectives = jnp.asarray(_normalised_objectives(data))
    solutions, valid, maximize = map(jnp.asarray, (data.solutions, data.valid, data.maximize))

    @jax.jit
    def step(params, opt_state, everything, idx):     # the graphs are an argument, not constants baked in
        def loss_fn(p):
            batch = jax.tree.map(lambda x: x[idx], everything)
            logits = nnx.merge(graphdef, p)(batch)
            return solution_weighted_bce(logits, batch, solutions[idx], objectives[idx], valid[idx],
                                         maximize[idx], temperature)
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    losses = []
    n = len(data.models)
    for i in range(steps):
        idx = jnp.asarray(rng.choice(n, size=min(batch_size, n), replace=False))
        params, opt_state, loss = step(params, opt_state, data.batch, idx)
        losses.append(float(loss))
        if log_every and (i + 1) % log_every == 0:
            print(f"[gnn] step {i + 1}/{steps} loss {losses[-1]:.4f}", flush=True)
    return nnx.merge(graphdef, params), losses


def predict(gnn: PredictAndSearchGNN, batch) -> np.ndarray:
    return np.asarray(jax.nn.sigmoid(gnn(batch)))                              # [G, V]


@dataclasses.dataclass
class SearchResult:
    status: str
    objective: float | None
    seconds: float
    fixed_one: list[str]
    fixed_zero: list[str]


def fix_sets(model: LinearModel, probs: np.ndarray, k0: int, k1: int) -> tuple[list[str], list[str]]:
    """The k1 binaries most likely 1 and the k0 least likely (disjoint; ties by variable order)."""
    binaries = [i for i, n in enumerate(model.names) if model.variables[n].kind == "binary"]
    order = sorted(binaries, key=lambda i: -probs[i])
    ones = order[:min(k1, len(order))]
    rest = [i for i in order if i not in set(ones)]
    zeros = rest[::-1][:min(k0, len(rest))]
    return [model.names[i] for i in ones], [model.names[i] for i in zeros]


def predict_and_search(model: LinearModel, probs: np.ndarray, *, k0: int, k1: int, delta: float = 0.0,
                       time_limit: float | None = None) -> SearchResult:
    ones, zeros = fix_sets(model, probs, k0, k1)
    start = time.perf_counter()
    if delta <= 0:
        solution = solve(model, time_limit=time_limit, fixed={**{v: 1.0 for v in ones}, **{v: 0.0 for v in zeros}})
    else:   # sum_{ones} (1 - x) + sum_{zeros} x <= delta
        terms = {**{v: -1.0 for v in ones}, **{v: 1.0 for v in zeros}}
        region = Constraint("trust_region", terms, "<=", delta - len(ones))
        solution = solve(model, time_limit=time_limit, extra=[region] if terms else [])
    return SearchResult(solution.status, solution.objective, time.perf_counter() - start, ones, zeros)


def primal_gap(objective: float | None, best: float) -> float:
    if objective is None:
        return 1.0
    if objective == best:
        return 0.0
    return abs(objective - best) / max(abs(objective), abs(best))


def pooled_prf(predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> dict[str, float]:
    """Pooled precision, recall and F1 over instances (predictions de-duplicated per instance)."""
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predictions for {len(gold)} instances")
    hits = n_pred = n_gold = 0
    for p, g in zip(predicted, gold):
        p, g = set(p), set(g)
        hits += len(p & g)
        n_pred += len(p)
        n_gold += len(g)
    precision = hits / n_pred if n_pred else 0.0
    recall = hits / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "hits": hits, "predicted": n_pred, "gold": n_gold}


def gold_zeros(model: LinearModel, values: dict[str, float]) -> list[str]:
    return [n for n in model.names if model.variables[n].kind == "binary" and round(values.get(n, 0.0)) == 0]


PRUNING_TEMPLATE = ("Here is an optimisation model in LP format:\n```lp\n{lp}```\n"
                    "List the binary variables that can be fixed to 0 without losing the optimum, as a JSON "
                    'list of strings like ["x1=0", "x7=0"].\n')


def pruning_prompt(model: LinearModel) -> str:
    return PRUNING_TEMPLATE.format(lp=to_lp(model))


def pruning_answer(names: Sequence[str]) -> str:
    return json.dumps([f"{n}=0" for n in names])


def parse_fix_list(text: str, model: LinearModel | None = None) -> list[str]:
    """The variables a model's answer fixes at 0: the last JSON list of "v=0" strings in the text (entries
    fixing to another value, or naming no variable of `model`, are dropped); [] when none parses."""
    for candidate in reversed(re.findall(r"\[[^\[\]]*\]", text, re.S)):
        try:
            items = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(items, list):
            names = []
            for item in items:
                m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*0(?:\.0*)?\s*", str(item))
                if m and (model is None or m.group(1) in model.variables) and m.group(1) not in names:
                    names.append(m.group(1))
            return names
    return []


def compare_search(model: LinearModel, probs: np.ndarray, best: float, *, k0: int, k1: int, delta: float,
                   time_limit: float) -> dict:
    """The unpruned solve and predict-and-search at the same time limit: objective, gap, seconds."""
    plain = solve(model, time_limit=time_limit)
    pruned = predict_and_search(model, probs, k0=k0, k1=k1, delta=delta, time_limit=time_limit)
    return {"plain": {"status": plain.status, "objective": plain.objective, "seconds": plain.seconds,
                      "gap": primal_gap(plain.objective, best)},
            "pruned": {"status": pruned.status, "objective": pruned.objective, "seconds": pruned.seconds,
                       "gap": primal_gap(pruned.objective, best)},
            "speedup": plain.seconds / max(pruned.seconds, 1e-9)}
