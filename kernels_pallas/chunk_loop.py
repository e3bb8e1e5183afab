"""One Pallas launcher for every "walk the chunks in order, carry a [K, V] state" kernel.

All six kernels of this library (forward and backward of simple GLA, GLA and the gated delta rule) have
the same skeleton: for each (batch, head) pair, visit the T / C chunks in order (backward: in reverse
order), read the chunk's [C, D] slices of q, k, v, gates..., update a float32 state carried from chunk to
chunk, and write per-chunk outputs. Only the per-chunk math differs, and it is written once per op as a
``body`` function on plain arrays (values, not refs), so the same math runs on every backend.

Two schedules, one per hardware family:

* ``platform="tpu"`` (Mosaic TPU): grid ``(B*H, num_chunks)`` with dimension semantics
  ``("parallel", "arbitrary")``; BlockSpecs bring one chunk per grid step into VMEM (Pallas pipelines
  the DMAs) and the carried state lives in a VMEM scratch buffer that survives across the sequential
  chunk axis. This is the idiomatic TPU shape: sequence-long blocks would not fit VMEM at 64K tokens.
* ``platform="gpu"`` (Triton): grid ``(B*H,)``; one program owns a whole (batch, head) sequence and runs a
  ``fori_loop`` over its chunks, loading ``[C, D]`` slices with ``pl.ds`` and carrying the state in
  registers. GPU grid programs run concurrently, so a sequential chunk axis cannot be a grid axis there.

Both run on CPU with ``interpret=True`` (or a ``pltpu.InterpretParams`` object for the TPU schedule).

Array layouts the launcher expects (the op wrappers in ``*/api.py`` build them):
  token inputs/outputs  [BH, T_pad, D]          one row per token, D on lanes
  row inputs            [BH, num_chunks, 1, C]  a per-token scalar laid out along lanes (a row vector)
  chunk inputs/outputs  [BH, num_chunks, R, S]  one small matrix per chunk (e.g. saved states)
  carry init / final    [BH, K, V] float32
Row inputs exist because kernels need per-token scalars both as a column ([C, 1]: scales rows) and as a
row ([1, C]: scales columns of a [C, C] matrix); providing both layouts avoids in-kernel transposes,
which Mosaic TPU handles poorly for such thin shapes.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

Body = Callable[..., tuple[dict, dict, jax.Array]]


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """Static (hashable) kernel parameters; the custom_vjp ops take it as a non-differentiable argument."""
    scale: float
    chunk: int
    platform: str          # "tpu" (Mosaic TPU schedule) or "gpu" (Triton schedule)
    interpret: Any         # False, True or a pltpu.InterpretParams


def chunk_loop_call(
    body: Body,
    *,
    platform: str,
    interpret,
    chunk: int,
    reverse: bool,
    token_in: Mapping[str, jax.Array],
    row_in: Mapping[str, jax.Array],
    chunk_in: Mapping[str, jax.Array],
    carry_init: jax.Array | None,
    token_out: Mapping[str, jax.ShapeDtypeStruct],
    chunk_out: Mapping[str, jax.ShapeDtypeStruct],
    carry_shape: tuple[int, int],
    name: str,
    cost_estimate: pl.CostEstimate | None = None,
    num_warps: int = 4,
):
    """Runs ``body`` over the chunks of every (batch*head) row; returns (token_out, chunk_out, carry).

    ``body(tok, rows, chunks, carry) -> (tok_out, chunk_out, new_carry)`` receives dicts of arrays:
    ``tok[name]`` is ``[C, D]``, ``rows[name]`` is ``[1, C]``, ``chunks[name]`` is ``[R, S]``; carry is
    ``[K, V]`` float32. It must return every declared output.
    """
    first = next(iter(token_in.values()))
    bh, t_pad, _ = first.shape
    if t_pad % chunk:
        raise ValueError(f"internal: padded length {t_pad} is not a multiple of chunk {chunk}")
    num_chunks = t_pad // chunk
    tok_names, row_names, chk_names = list(token_in), list(row_in), list(chunk_in)
    tout_names, cout_names = list(token_out), list(chunk_out)
    has_init = carry_init is not None
    inputs = [*token_in.values(), *row_in.values(), *chunk_in.values()]
    if has_init:
        inputs.append(carry_init)
    out_shape = [*token_out.values(), *chunk_out.values(),
                 jax.ShapeDtypeStruct((bh, *carry_shape), jnp.float32)]
    out_shape = [_varying_like(s, inputs) for s in out_shape]
    n_tok, n_row, n_chk = len(tok_names), len(row_names), len(chk_names)
    n_tout, n_cout = len(tout_names), len(cout_names)

    def split_refs(refs):
        refs = list(refs)
        tok = dict(zip(tok_names, refs[:n_tok])); refs = refs[n_tok:]
        rows = dict(zip(row_names, refs[:n_row])); refs = refs[n_row:]
        chks = dict(zip(chk_names, refs[:n_chk])); refs = refs[n_chk:]
        init = refs.pop(0) if has_init else None
        tout = dict(zip(tout_names, refs[:n_tout])); refs = refs[n_tout:]
        cout = dict(zip(cout_names, refs[:n_cout])); refs = refs[n_cout:]
        final = refs.pop(0)
        return tok, rows, chks, init, tout, cout, final, refs

    if platform == "tpu":
        from jax.experimental.pallas import tpu as pltpu

        def cidx(c):
            return num_chunks - 1 - c if reverse else c

        in_specs = (
            [pl.BlockSpec((pl.squeezed, chunk, x.shape[-1]), lambda b, c: (b, cidx(c), 0))
             for x in token_in.values()]
            + [pl.BlockSpec((pl.squeezed, pl.squeezed, 1, chunk), lambda b, c: (b, cidx(c), 0, 0))
               for _ in row_in.values()]
            + [pl.BlockSpec((pl.squeezed, pl.squeezed, *x.shape[2:]), lambda b, c: (b, cidx(c), 0, 0))
               for x in chunk_in.values()]
            + ([pl.BlockSpec((pl.squeezed, *carry_shape), lambda b, c: (b, 0, 0))] if has_init else [])
        )
        out_specs = (
            [pl.BlockSpec((pl.squeezed, chunk, s.shape[-1]), lambda b, c: (b, cidx(c), 0))
             for s in token_out.values()]
            + [pl.BlockSpec((pl.squeezed, pl.squeezed, *s.shape[2:]), lambda b, c: (b, cidx(c), 0, 0))
               for s in chunk_out.values()]
            + [pl.BlockSpec((pl.squeezed, *carry_shape), lambda b, c: (b, 0, 0))]
        )

        def kernel(*refs):
            tok, rows, chks, init, tout, cout, final, (carry_ref,) = split_refs(refs)
            c = pl.program_id(1)

            @pl.when(c == 0)
            def _init():
                if init is not None:
                    carry_ref[...] = init[...].astype(jnp.float32)
                else:
                    carry_ref[...] = jnp.zeros(carry_shape, jnp.float32)

            t_out, c_out, new = body({n: r[...] for n, r in tok.items()},
                                     {n: r[...] for n, r in rows.items()},
                                     {n: r[...] for n, r in chks.items()}, carry_ref[...])
            for n, r in tout.items():
                r[...] = t_out[n].astype(r.dtype)
            for n, r in cout.items():
                r[...] = c_out[n].astype(r.dtype)
            carry_ref[...] = new

            @pl.when(c == num_chunks - 1)
            def _final():
                final[...] = new

        return _unpack(pl.pallas_call(
            kernel,
            grid=(bh, num_chunks),
            in_specs=in_specs,
            out_specs=out_specs,
            out_shape=out_shape,
            scratch_shapes=[pltpu.VMEM(carry_shape, jnp.float32)],
            compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "arbitrary")),
            interpret=interpret,
            cost_estimate=cost_estimate,
            name=name,
        )(*inputs), tout_names, cout_names)

    if platform == "gpu":
        from jax.experimental.pallas import triton as pltriton

        def whole(x):
            nd = len(x.shape)
            return pl.BlockSpec((pl.squeezed, *x.shape[1:]), lambda b: (b,) + (0,) * (nd - 1))

        in_specs = [whole(x) for x in inputs]
        out_specs = [whole(s) for s in out_shape]

        def kernel(*refs):
            tok, rows, chks, init, tout, cout, final, _ = split_refs(refs)
            carry0 = (init[...].astype(jnp.float32) if init is not None
                      else jnp.zeros(carry_shape, jnp.float32))

            def step(i, carry):
                c = num_chunks - 1 - i if reverse else i
                rs = pl.ds(pl.multiple_of(c * chunk, chunk), chunk)
                t_out, c_out, new = body({n: r[rs, :] for n, r in tok.items()},
                                         {n: r[c] for n, r in rows.items()},
                                         {n: r[c] for n, r in chks.items()}, carry)
                for n, r in tout.items():
                    r[rs, :] = t_out[n].astype(r.dtype)
                for n, r in cout.items():
                    r[c] = c_out[n].astype(r.dtype)
                return new

            final[...] = lax.fori_loop(0, num_chunks, step, carry0)

        return _unpack(pl.pallas_call(
            kernel,
            grid=(bh,),
            in_specs=in_specs,
            out_specs=out_specs,
            out_shape=out_shape,
            compiler_params=pltriton.CompilerParams(num_warps=num_warps, num_stages=1),
            interpret=interpret,
            cost_estimate=cost_estimate,
            name=name,
        )(*inputs), tout_names, cout_names)

    raise ValueError(f"internal: unknown Pallas platform {platform!r}")


def match_varying(*arrays):
    """Inside ``jax.shard_map`` (check_vma=True), casts every array to vary over the union of the mesh axes
    any of them varies over. Call it on a custom_vjp op's inputs *before* the op: its backward kernels
    produce cotangents that vary like q, and for an input that did not vary (say reset counts from
    replicated segment ids, or a zero initial state) the transpose of this cast is the psum it needs.
    Outside shard_map it returns the arrays unchanged."""
    varying = frozenset().union(*(jax.typeof(x).manual_axis_type.varying for x in arrays))
    if not varying:
        return arrays
    out = []
    for x in arrays:
        missing = tuple(sorted(varying - jax.typeof(x).manual_axis_type.varying))
        out.append(lax.pcast(x, missing, to="varying") if missing else x)
    return tuple(out)


def _varying_like(shape: jax.ShapeDtypeStruct, inputs) -> jax.ShapeDtypeStruct:
    """Inside ``jax.shard_map`` (check_vma=True) Pallas outputs must declare the mesh axes they vary
    over: the union of the inputs' (e.g. "heads" when heads are sharded)."""
    varying = frozenset().union(*(jax.typeof(x).manual_axis_type.varying for x in inputs))
    return jax.ShapeDtypeStruct(shape.shape, shape.dtype,
                                manual_axis_type=jax.typeof(inputs[0]).manual_axis_type.update(varying=varying))


def _unpack(outs, tout_names, cout_names):
    outs = list(outs)
    tout = dict(zip(tout_names, outs[:len(tout_names)]))
    cout = dict(zip(cout_names, outs[len(tout_names):len(tout_names) + len(cout_names)]))
    return tout, cout, outs[-1]


# ----------------------------------------------------------------------------------------------------
# Small helpers shared by the kernel bodies. They use only ops that lower on Mosaic TPU, Triton and the
# interpreter: 2-D arrays, broadcasting, iota, where, reductions with keepdims, dot_general.
# ----------------------------------------------------------------------------------------------------

def dot(a, b, *, ta: bool = False, tb: bool = False, dtype=None):
    """a @ b with optional transposes, float32 accumulation. ``dtype`` casts both operands first.

    float32 operands use HIGHEST precision (IEEE on Triton, multi-pass on TPU): the chunked form
    subtracts nearly equal quantities in places (the delta rule's u = U - W S), and TF32 or a single
    bfloat16 pass would make the float32 path useless as a reference for the bfloat16 one.
    """
    if dtype is None and a.dtype != b.dtype:
        dtype = jnp.float32
    if dtype is not None:
        a, b = a.astype(dtype), b.astype(dtype)
    dims = (((0,) if ta else (1,), (1,) if tb else (0,)), ((), ()))
    precision = lax.Precision.HIGHEST if a.dtype == jnp.float32 and b.dtype == jnp.float32 else None
    return lax.dot_general(a, b, dims, precision=precision, preferred_element_type=jnp.float32)


def iota(shape, axis):
    return lax.broadcasted_iota(jnp.int32, shape, axis)


def rowsum(x):
    """Sum over the last axis, kept as a column: [R, S] -> [R, 1]."""
    return jnp.sum(x, axis=1, keepdims=True)


def colsum(x):
    """Sum over the first axis, kept as a row: [R, S] -> [1, S]."""
    return jnp.sum(x, axis=0, keepdims=True)


def total(x):
    """Sum of all entries as a [1, 1] array (keeps every value 2-D for Mosaic TPU)."""
    return colsum(rowsum(x))


def masked_exp(mask, x):
    """exp(x) where mask, else 0 -- without ever evaluating exp on the masked-out (possibly large) x."""
    return jnp.exp(jnp.where(mask, x, -jnp.inf))


def saved_states(save, bh, n, dk, dv):
    """The forward writes the state entering every chunk only when a backward pass will read it."""
    return dict(h=jax.ShapeDtypeStruct((bh, n, dk, dv), jnp.float32)) if save else {}


def matmul_cost_estimate(q, v, chunk: int, *, backward: bool) -> pl.CostEstimate:
    """Rough cost of a (simple) GLA kernel for XLA's scheduler: ~4 (forward) or ~10 (backward)
    [C, K] x [K, C]-class matmuls per chunk. q [BH, T_pad, K]; v [BH, T_pad, V]."""
    bh, t_pad, dk = q.shape
    dv = v.shape[-1]
    per_token = 2 * (chunk * (dk + dv) + 2 * dk * dv)
    flops = bh * t_pad * per_token * (2.5 if backward else 1)
    bytes_accessed = (q.size * 2 + v.size) * q.dtype.itemsize * (2 if backward else 1) \
        + bh * (t_pad // chunk) * dk * dv * 4
    return pl.CostEstimate(flops=int(flops), transcendentals=int(bh * t_pad * chunk),
                           bytes_accessed=int(bytes_accessed))
