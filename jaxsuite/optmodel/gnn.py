"""Learned variable prediction: the predict-and-search GNN (Han et al., ICLR 2023) in JAX.

    graph = bipartite_graph(model)                     # variables x constraints (+ the objective node)
    batch = pad_graphs([graph, ...])                   # one fixed shape: one compile for the whole dataset
    gnn = PredictAndSearchGNN(width=64, rngs=nnx.Rngs(0))
    logits = gnn(batch)                                # [G, V] per-variable logit of "x = 1"
    loss = solution_weighted_bce(logits, batch, solutions, objectives, mask, temperature)

The graph is the model's coefficient matrix as a bipartite graph, one edge per nonzero, the coefficient its
feature; an objective node joins the constraint side with an edge to every variable in the objective.
Node features (min-max normalised per feature within each graph):
    variable (6)    objective coefficient, mean coefficient, degree, max coefficient, min coefficient,
                    is-binary
    constraint (4)  mean coefficient, number of nonzeros, right-hand side, sense (+1 <=, -1 >=, 0 ==; the
                    objective node 0)
The network embeds both sides to `width`, then four half-convolutions v->c, c->v, v->c, c->v: each message
is relu(W h_src + U e) summed over the edges into the destination (`jax.ops.segment_sum`), and the
destination is updated by an MLP of [h_dst, LayerNorm(sum)]. A last MLP gives one logit per variable.

Loss: binary cross-entropy on the binary variables against up to S pool solutions of the instance, each
weighted by softmax(-objective / T) for a minimisation (softmax(+objective / T) for a maximisation; the
paper's negative T per dataset says the same), so better solutions count more. Averaged over the binary
variables of the graph, summed over the pool weights, then averaged over the graphs of the batch.
"""
from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsuite.optmodel.model import LinearModel

VAR_FEATURES = 6
CON_FEATURES = 4


@dataclasses.dataclass
class Graph:
    var_features: np.ndarray      # [V, 6]
    con_features: np.ndarray      # [C + 1, 4]; the last row is the objective node
    edge_var: np.ndarray          # [E] variable index of each edge
    edge_con: np.ndarray          # [E] constraint index of each edge
    edge_value: np.ndarray        # [E] the coefficient
    binary: np.ndarray            # [V] bool
    names: list[str]


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(0, keepdims=True), x.max(0, keepdims=True)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    return np.where(hi - lo > 0, (x - lo) / span, 0.0).astype(np.float32)


def bipartite_graph(model: LinearModel) -> Graph:
    a, lower, upper = model.matrix()                                   # [C, V]
    names = model.names
    objective = np.array([model.objective.get(n, 0.0) for n in names])
    full = np.vstack([a, objective[None, :]])                          # [C + 1, V]: the objective node last
    con, var = np.nonzero(full)
    values = full[con, var]
    nnz_var = (a != 0).sum(0)
    mean_var = a.sum(0) / np.maximum(nnz_var, 1)
    masked = np.where(a != 0, a, np.nan)
    with warnings.catch_warnings():          # a variable in no constraint: all-NaN column, feature 0
        warnings.simplefilter("ignore", RuntimeWarning)
        max_var = np.nan_to_num(np.nanmax(masked, axis=0), nan=0.0) if len(a) else np.zeros(len(names))
        min_var = np.nan_to_num(np.nanmin(masked, axis=0), nan=0.0) if len(a) else np.zeros(len(names))
    binary = np.array([model.variables[n].kind == "binary" for n in names])
    var_features = np.stack([objective, mean_var, nnz_var, max_var, min_var, binary.astype(float)], axis=1)
    nnz_con = (full != 0).sum(1)
    mean_con = full.sum(1) / np.maximum(nnz_con, 1)
    rhs = np.array([c.rhs for c in model.constraints] + [0.0])
    sense = np.array([{"<=": 1.0, ">=": -1.0, "==": 0.0}[c.sense] for c in model.constraints] + [0.0])
    con_features = np.stack([mean_con, nnz_con, rhs, sense], axis=1)
    return Graph(_minmax(var_features), _minmax(con_features), var.astype(np.int32), con.astype(np.int32),
                 values.astype(np.float32), binary, names)


@dataclasses.dataclass
class GraphBatch:
    """G graphs padded to the same (V, C, E); masks mark the real nodes and edges."""
    var_features: jax.Array       # [G, V, 6]
    con_features: jax.Array       # [G, C, 4]
    edge_var: jax.Array           # [G, E]
    edge_con: jax.Array           # [G, E]
    edge_value: jax.Array         # [G, E]
    edge_mask: jax.Array          # [G, E]
    var_mask: jax.Array           # [G, V]
    binary: jax.Array             # [G, V]


jax.tree_util.register_dataclass(GraphBatch, data_fields=[f.name for f in dataclasses.fields(GraphBatch)],
                                 meta_fields=[])


def pad_graphs(graphs: list[Graph], *, n_var: int | None = None, n_con: int | None = None,
               n_edge: int | None = None) -> GraphBatch:
    n_var = n_var or max(len(g.names) for g in graphs)
    n_con = n_con or max(len(g.con_features) for g in graphs)
    n_edge = n_edge or max(len(g.edge_var) for g in graphs)
    G = len(graphs)
    out = {"var_features": np.zeros((G, n_var, VAR_FEATURES), np.float32),
           "con_features": np.zeros((G, n_con, CON_FEATURES), np.float32),
           "edge_var": np.zeros((G, n_edge), np.int32), "edge_con": np.zeros((G, n_edge), np.int32),
           "edge_value": np.zeros((G, n_edge), np.float32), "edge_mask": np.zeros((G, n_edge), np.float32),
           "var_mask": np.zeros((G, n_var), np.float32), "binary": np.zeros((G, n_var), np.float32)}
    for i, g in enumerate(graphs):
        v, c, e = len(g.names), len(g.con_features), len(g.edge_var)
        if v > n_var or c > n_con or e > n_edge:
            raise ValueError(f"graph {i} ({v} vars, {c} cons, {e} edges) exceeds the padding ({n_var}, {n_con}, {n_edge})")
        out["var_features"][i, :v] = g.var_features
        out["con_features"][i, :c] = g.con_features
        out["edge_var"][i, :e], out["edge_con"][i, :e] = g.edge_var, g.edge_con
        out["edge_value"][i, :e], out["edge_mask"][i, :e] = g.edge_value, 1.0
        out["var_mask"][i, :v], out["binary"][i, :v] = 1.0, g.binary
    return GraphBatch(**{k: jnp.asarray(v) for k, v in out.items()})


class MLP(nnx.Module):
    def __init__(self, d_in: int, width: int, d_out: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(d_in, width, rngs=rngs)
        self.out = nnx.Linear(width, d_out, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


class HalfConvolution(nnx.Module):
    """Messages from one side of the bipartite graph to the other, summed per destination node, the sum
    layer-normalised before the update (as the bipartite GCN of Gasse et al. normalises its aggregate): a
    constraint over hundreds of variables sums hundreds of messages, and unnormalised sums blow the logits up."""

    def __init__(self, width: int, *, rngs: nnx.Rngs):
        self.source = nnx.Linear(width, width, rngs=rngs)
        self.edge = nnx.Linear(1, width, rngs=rngs)
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.update = MLP(2 * width, width, width, rngs=rngs)

    def __call__(self, h_src, h_dst, src, dst, value, mask):
        # h_src [N_src, W], h_dst [N_dst, W], src/dst/value/mask [E]
        message = jax.nn.relu(self.source(h_src)[src] + self.edge(value[:, None])) * mask[:, None]   # [E, W]
        summed = jax.ops.segment_sum(message, dst, num_segments=h_dst.shape[0])                     # [N_dst, W]
        return self.update(jnp.concatenate([h_dst, self.norm(summed)], axis=-1))


class PredictAndSearchGNN(nnx.Module):
    def __init__(self, width: int = 64, *, rngs: nnx.Rngs):
        self.var_embed = MLP(VAR_FEATURES, width, width, rngs=rngs)
        self.con_embed = MLP(CON_FEATURES, width, width, rngs=rngs)
        self.v_to_c = nnx.List([HalfConvolution(width, rngs=rngs) for _ in range(2)])
        self.c_to_v = nnx.List([HalfConvolution(width, rngs=rngs) for _ in range(2)])
        self.head = MLP(width, width, 1, rngs=rngs)

    def single(self, var_features, con_features, edge_var, edge_con, edge_value, edge_mask):
        hv, hc = self.var_embed(var_features), self.con_embed(con_features)     # [V, W], [C, W]
        for v_to_c, c_to_v in zip(self.v_to_c, self.c_to_v):
            hc = v_to_c(hv, hc, edge_var, edge_con, edge_value, edge_mask)
            hv = c_to_v(hc, hv, edge_con, edge_var, edge_value, edge_mask)
        return self.head(hv)[:, 0]                                              # [V]

    def __call__(self, batch: GraphBatch) -> jax.Array:
        return jax.vmap(self.single)(
            batch.var_features, batch.con_features, batch.edge_var, batch.edge_con,
            batch.edge_value, batch.edge_mask)                                  # [G, V]


def solution_weights(objectives: jax.Array, valid: jax.Array, temperature: float, maximize: jax.Array) -> jax.Array:
    """softmax over the pool of -objective/T (minimise) or +objective/T (maximise); invalid slots get 0.
    objectives/valid [G, S], maximize [G] bool."""
    sign = jnp.where(maximize, 1.0, -1.0)[:, None]
    scores = jnp.where(valid > 0, sign * objectives / temperature, -jnp.inf)
    return jax.nn.softmax(scores, axis=-1)                                      # [G, S]


def solution_weighted_bce(logits: jax.Array, batch: GraphBatch, solutions: jax.Array, objectives: jax.Array,
                          valid: jax.Array, maximize: jax.Array, temperature: float) -> jax.Array:
    """logits [G, V]; solutions [G, S, V] 0/1; objectives, valid [G, S]; maximize [G]."""
    weights = solution_weights(objectives, valid, temperature, maximize)        # [G, S]
    log_p = jax.nn.log_sigmoid(logits)[:, None, :]                              # [G, 1, V]
    log_q = jax.nn.log_sigmoid(-logits)[:, None, :]
    per_var = -(solutions * log_p + (1.0 - solutions) * log_q)                  # [G, S, V]
    mask = (batch.binary * batch.var_mask)[:, None, :]
    per_solution = (per_var * mask).sum(-1) / jnp.maximum(mask.sum(-1), 1.0)    # [G, S]
    return jnp.mean(jnp.sum(weights * per_solution, axis=-1))
