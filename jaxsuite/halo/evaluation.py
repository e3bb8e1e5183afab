"""Evaluation of HALO students against their teacher: perplexity by position, next-token accuracy, decode cost,
plots.

What the HypeNet paper's long-context claims rest on, measured the same way for any jaxsuite LM:
  * perplexity by position: does next-token loss keep falling (or at least not rise) deep into the context,
    i.e. does the model use far context without its Lightning states or NoPE attention breaking down?
  * decode cost: the time of one generated token and the bytes of the cache at a context length. A softmax
    layer reads its whole KV cache every step (O(context) bytes and time); a Lightning layer reads a
    constant [H, K, V] state, so a hybrid's cost grows only through its few attention layers.
Decode timing never prefills: a 128K-token prefill is infeasible on a CPU, and the cost of a decode step
does not depend on the cache's values, so the cache is filled with random numbers (`synthetic_cache`) and
`jaxsuite.generate` continues from it.
Every jitted function here is built once at module level, with the model's graphdef as a static argument, so
repeated calls on models of one structure compile once.
"""
from __future__ import annotations

import functools
import math
import statistics
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsuite.core.metrics import pyplot, save_figure
from jaxsuite.generate import generate

# --- perplexity by position -------------------------------------------------------------------------------------
_LOGIT_CHUNK = 1024     # positions projected to the vocabulary at once: bounds logits memory to B x 1024 x V


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _token_nll(graphdef, state, ids):
    """[B, L-1] float32 NLL of ids[:, p + 1] given ids[:, :p + 1], the vocabulary projection done in chunks."""
    model = nnx.merge(graphdef, state)
    b, length = ids.shape
    hidden = model.hidden_states(ids)[:, :-1]                  # [B, L-1, D]
    targets = ids[:, 1:]                                       # [B, L-1]
    n = length - 1
    c = min(_LOGIT_CHUNK, n)
    nc = -(-n // c)
    pad = nc * c - n
    hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0))).reshape(b, nc, c, -1).swapaxes(0, 1)  # [nc, B, c, D]
    targets = jnp.pad(targets, ((0, 0), (0, pad))).reshape(b, nc, c).swapaxes(0, 1)          # [nc, B, c]

    def one(args):
        h, t = args
        logits = model.logits(h)                               # [B, c, V] float32
        lse = jax.nn.logsumexp(logits, axis=-1)
        return lse - jnp.take_along_axis(logits, t[..., None], axis=-1)[..., 0]

    nll = jax.lax.map(one, (hidden, targets))                  # [nc, B, c]
    return nll.swapaxes(0, 1).reshape(b, nc * c)[:, :n]


def _rows_nll(model, ids: np.ndarray) -> np.ndarray:
    if isinstance(model, nnx.Module) and hasattr(model, "hidden_states") and hasattr(model, "logits"):
        graphdef, state = nnx.split(model)
        return np.asarray(_token_nll(graphdef, state, jnp.asarray(ids, jnp.int32)), np.float64)
    logits = np.asarray(model(jnp.asarray(ids, jnp.int32)), np.float64)[:, :-1]    # [B, L-1, V]
    m = logits.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[..., 0]
    return lse - np.take_along_axis(logits, ids[:, 1:, None], -1)[..., 0]


def perplexity_by_position(model, token_rows: np.ndarray, num_buckets: int = 8, batch_size: int = 2
                           ) -> list[dict]:
    """Mean next-token NLL per position bucket: [{"start", "end", "nll", "ppl"}], prediction positions
    [start, end) (position p predicts token p + 1), averaged over all rows and positions in the bucket."""
    rows = np.asarray(token_rows)
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] < 2:
        raise ValueError(f"token_rows must be [N >= 1, L >= 2], got shape {rows.shape}")
    n_pred = rows.shape[1] - 1
    if not 1 <= num_buckets <= n_pred:
        raise ValueError(f"num_buckets must be in [1, {n_pred}] for rows of {rows.shape[1]} tokens, "
                         f"got {num_buckets}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    nll = []
    for lo in range(0, len(rows), batch_size):
        chunk = rows[lo:lo + batch_size]
        real = len(chunk)
        if real < batch_size:                                  # one shape, one compilation
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - real, 0)])
        nll.append(_rows_nll(model, chunk)[:real])
    nll = np.concatenate(nll)                                  # [N, L-1]
    edges = np.linspace(0, n_pred, num_buckets + 1).round().astype(int)
    out = []
    for s, e in zip(edges[:-1], edges[1:]):
        mean = float(nll[:, s:e].mean())
        out.append({"start": int(s), "end": int(e), "nll": mean, "ppl": float(math.exp(mean))})
    return out


def eval_windows(tokenizer, source: str = "stdlib:eval", *, length: int, num_rows: int) -> np.ndarray:
    """[num_rows, length] int32: consecutive windows of the source's documents, in order, encoded and joined
    with eos between documents (no eos when the tokenizer has none). Windows cross document boundaries, so
    late positions see earlier documents as well as their own; use long documents for pure long-range tests."""
    from jaxsuite.core.data import open_source
    from jaxsuite.core.tokenizer import load_tokenizer

    if length < 2 or num_rows < 1:
        raise ValueError(f"need length >= 2 and num_rows >= 1, got length={length}, num_rows={num_rows}")
    tok = load_tokenizer(tokenizer)
    docs = open_source(source)
    need = length * num_rows
    ids: list[int] = []
    for i in range(len(docs)):
        ids += tok.encode(docs[i])
        if tok.eos_id is not None:
            ids.append(tok.eos_id)
        if len(ids) >= need:
            break
    if len(ids) < need:
        raise ValueError(f"source {source!r} holds only {len(ids)} tokens in {len(docs)} documents; "
                         f"{num_rows} rows of {length} need {need}")
    return np.asarray(ids[:need], np.int32).reshape(num_rows, length)


# --- decode cost ------------------------------------------------------------------------------------------------
def cache_bytes(model, batch_size: int, context_length: int) -> int:
    """Bytes `model.init_cache(batch_size, context_length)` allocates (traced abstractly, nothing allocated)."""
    shapes = jax.eval_shape(lambda: model.init_cache(batch_size, context_length))
    return int(sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(shapes)))


def synthetic_cache(model, batch_size: int, context_length: int, extra: int, seed: int = 0):
    """A decode cache of max_length context_length + extra that looks filled to context_length: every floating
    entry (attention keys and values in the model dtype, linear mixers' states in float32), whatever its layout,
    is random normal; index = context_length, valid[:, :context_length] = True. Slots past the context hold
    random values too; decode overwrites a slot before it is marked valid, so they are never read."""
    if batch_size < 1 or context_length < 0 or extra < 1:
        raise ValueError(f"need batch_size >= 1, context_length >= 0, extra >= 1; got {batch_size}, "
                         f"{context_length}, {extra}")
    total = context_length + extra
    shapes = jax.eval_shape(lambda: model.init_cache(batch_size, total))
    leaves, treedef = jax.tree.flatten(shapes)
    key = jax.random.key(seed)
    filled = [jax.random.normal(jax.random.fold_in(key, i), leaf.shape, leaf.dtype)
              if jnp.issubdtype(leaf.dtype, jnp.floating) else jnp.zeros(leaf.shape, leaf.dtype)
              for i, leaf in enumerate(leaves)]
    valid = np.broadcast_to(np.arange(total) < context_length, (batch_size, total))
    return jax.tree.unflatten(treedef, filled).replace(index=jnp.asarray(context_length, jnp.int32),
                                                       valid=jnp.asarray(valid, jnp.bool_))


def decode_ms_per_token(model, context_lengths: Sequence[int], *, batch_size: int = 1, steps: int = 8,
                        repeats: int = 3, seed: int = 0) -> dict[int, float]:
    """{context length: ms per decode step}: median over `repeats` of (wall time of one `jaxsuite.generate`
    call of `steps` greedy tokens, continuing a synthetic cache filled to the context length) / steps, after
    a warm-up call that compiles (one compilation per cache shape). Each call runs `steps` single-token decode
    calls in one jitted loop, the cache donated and updated in place. Each repeat starts again from index =
    context length (the k/v written by the previous repeat sit in slots marked invalid again, so they are not
    attended to; linear mixers' states carry on, which costs the same)."""
    if steps < 1 or repeats < 1:
        raise ValueError(f"steps and repeats must be >= 1, got {steps}, {repeats}")
    split = nnx.split(model)          # once, outside the timed calls
    out = {}
    for length in context_lengths:
        length = int(length)
        cache = synthetic_cache(model, batch_size, length, steps, seed)
        valid0 = np.asarray(cache.valid)
        tokens = np.zeros((batch_size, 1), np.int32)
        times = []
        for r in range(repeats + 1):
            cache = cache.replace(index=jnp.asarray(length, jnp.int32), valid=jnp.asarray(valid0))
            t0 = time.perf_counter()
            # the one prompt token is the first of the `steps` decode calls; positions continue at `length`
            cache = generate(model, tokens, steps, cache=cache, stop_tokens=(), pad_token_id=0, split=split).cache
            jax.block_until_ready(cache)
            if r:                                              # r == 0 compiled
                times.append((time.perf_counter() - t0) / steps * 1e3)
        out[length] = float(statistics.median(times))
        del cache
    return out


# --- next-token accuracy ----------------------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnames=("graphdef",))
def _argmax_predictions(graphdef, state, ids):
    """[B, L] argmax of the logits at every position: one module-level jit, so every model of one structure
    (e.g. the same variant scored again, or checkpoints of one architecture) shares one compilation."""
    return jnp.argmax(nnx.merge(graphdef, state)(ids), axis=-1)


def next_token_accuracy(model, rows: np.ndarray, batch_size: int = 4) -> float:
    """Fraction of positions whose argmax prediction is the next token (a bounded language-modelling score)."""
    graphdef, state = nnx.split(model)
    hits = total = 0
    for i in range(0, len(rows), batch_size):
        ids = jnp.asarray(rows[i:i + batch_size], jnp.int32)
        pred = np.asarray(_argmax_predictions(graphdef, state, ids))[:, :-1]
        hits += int((pred == np.asarray(ids)[:, 1:]).sum())
        total += pred.size
    return hits / max(total, 1)


# --- plots and tables -------------------------------------------------------------------------------------------
def _log2_axis(ax, xs):
    ax.set_xscale("log", base=2)
    xs = sorted(xs)
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x // 1024}K" if x >= 1024 and x % 1024 == 0 else str(x) for x in xs], fontsize=8)


def _save(plt, fig, ax, out_png: str) -> str:
    """Grid, legend, tight layout, write the PNG, free the figure."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=120)   # through etils.epath: a gs:// workdir works


def retrieval_verdict(passkey: dict[str, dict[int, float]], teacher: str) -> dict[str, Any]:
    """Whether the passkey comparison says anything, and what. HALO's claim is that the student keeps the
    teacher's retrieval, so it is measurable only at lengths where the teacher retrieves: with the teacher at 0
    everywhere the comparison is untestable (every model's 0 is the teacher's failure, not the student's).
    Otherwise `retained` is each other model's accuracy over the teacher's at those lengths, and
    `retained_mean` its mean (1 = kept, 0 = lost)."""
    ref = passkey[teacher]
    lengths = sorted(n for n, a in ref.items() if a > 0)
    if not lengths:
        every = ", ".join(map(str, sorted(ref)))
        return {"testable": False, "lengths": [],
                "note": f"retrieval untestable: the teacher scores 0 at every length ({every}), so the students' "
                        "zeros say nothing (configs/halo_tiny.py:passkey has a teacher that retrieves)"}
    retained = {name: {str(n): res[n] / ref[n] for n in lengths} for name, res in passkey.items() if name != teacher}
    means = {name: float(np.mean(list(r.values()))) for name, r in retained.items()}
    note = (f"retrieval testable at {', '.join(map(str, lengths))} tokens (teacher > 0); share of the teacher's "
            "accuracy kept: " + ", ".join(f"{name} {m:.2f}" for name, m in means.items()))
    return {"testable": True, "lengths": lengths, "retained": retained, "retained_mean": means, "note": note}


def plot_passkey(results: dict[str, dict[int, float]], out_png: str, train_length: int | None = None,
                 untestable: str = "") -> str:
    """Passkey accuracy against context length, one line per model; a dashed line at the training length.
    With `untestable` (the teacher retrieves at no length) no lines are drawn, only that sentence."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = set()
    for name, res in results.items():
        ls = sorted(res)
        xs |= set(ls)
        if not untestable:
            ax.plot(ls, [res[x] for x in ls], marker="o", label=name)
    if untestable:
        import textwrap
        ax.text(0.5, 0.5, textwrap.fill(untestable, 48), ha="center", va="center", transform=ax.transAxes,
                fontsize=10, bbox=dict(boxstyle="round", facecolor="0.95", edgecolor="0.6"))
        ax.plot([], [], " ", label="no model plotted")
    if xs:
        _log2_axis(ax, xs)
    if train_length:
        ax.axvline(train_length, color="gray", ls="--", lw=1, label=f"train length {train_length}")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("passkey accuracy")
    return _save(plt, fig, ax, out_png)


def plot_ppl_by_position(results: dict[str, list[dict]], out_png: str) -> str:
    """Perplexity against position (bucket midpoints), one line per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, buckets in results.items():
        mids = [(b["start"] + b["end"]) / 2 for b in buckets]
        ax.plot(mids, [b["ppl"] for b in buckets], marker="o", label=name)
    ax.set_xlabel("position in the window (bucket midpoint)")
    ax.set_ylabel("perplexity")
    return _save(plt, fig, ax, out_png)


def plot_decode(ms: dict[str, dict[int, float]], mem: dict[str, dict[int, int]], out_png: str) -> str:
    """Two panels (the paper's Figure 1, right): ms per decoded token and cache MiB against context length."""
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, data, ylabel, scale in ((a1, ms, "ms per token (decode)", 1.0),
                                    (a2, mem, "decode cache (MiB)", 1 / 2 ** 20)):
        xs = set()
        for name, res in data.items():
            ls = sorted(res)
            xs |= set(ls)
            ax.plot(ls, [res[x] * scale for x in ls], marker="o", label=name)
        if xs:
            _log2_axis(ax, xs)
        ax.set_yscale("log")
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=120)   # through etils.epath: a gs:// workdir works


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def results_table(rows: dict[str, dict[str, float | str]]) -> str:
    """Markdown table: one row per key of `rows`, columns the union of their keys in first-seen order."""
    cols: list[str] = []
    for r in rows.values():
        cols += [c for c in r if c not in cols]
    lines = ["| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(r.get(c)) for c in cols) + " |")
    return "\n".join(lines)
