"""Every implementation of simple GLA, GLA and the gated delta rule against the token-by-token reference.

Checked for each op and implementation ("xla", and both Pallas kernels in interpret mode): outputs, final
states and gradients w.r.t. q, k, v, gates, beta and the initial state under a random cotangent --
float32 tightly; bfloat16 by its error relative to a float32 run, against the reference's own bfloat16
error. Lengths are not multiples of the chunk size; segment resets are compared with running the
segments separately; the decoding step chained over T is compared with the full op.
"""
import os
import sys

if "jax" not in sys.modules and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import kernels_pallas as kp

OPS = ("simple_gla", "gla", "gated_delta_rule")
FAST = ("xla", "pallas_tpu", "pallas_gpu")
CHUNK = 16
B, H, K, V = 2, 2, 16, 32          # K != V so a transposed state cannot pass


def make_inputs(op, t, seed=0, b=B, h=H):
    """Random inputs in the regime each op is used in; gate names follow the op's signature."""
    rng = np.random.default_rng(seed)
    normal = lambda *s: rng.standard_normal(s).astype(np.float32)
    q, k, v = normal(b, t, h, K), normal(b, t, h, K), normal(b, t, h, V)
    x = {"q": q, "k": k, "v": v, "initial_state": 0.5 * normal(b, h, K, V)}
    if op == "simple_gla":
        x["g"] = np.log(rng.uniform(0.6, 1.0, (b, t, h))).astype(np.float32)
    elif op == "gla":
        x["g"] = np.log(rng.uniform(0.3, 1.0, (b, t, h, K))).astype(np.float32)
    else:  # the delta rule is used with L2-normalised keys (and queries) and beta in (0, 1)
        x["q"] = q / np.linalg.norm(q, axis=-1, keepdims=True)
        x["k"] = k / np.linalg.norm(k, axis=-1, keepdims=True)
        x["g"] = np.log(rng.uniform(0.6, 1.0, (b, t, h))).astype(np.float32)
        x["beta"] = rng.uniform(0.1, 0.9, (b, t, h)).astype(np.float32)
    return {n: jnp.asarray(a) for n, a in x.items()}


def segments(b, t):
    """Row 0 resets mid-chunk (tokens 5 and 21); row 1 exactly at a chunk start (16) and at 33."""
    ids = np.zeros((b, t), np.int32)
    ids[0, 5:], ids[0, 21:] = 1, 2
    if b > 1:
        ids[1, 16:], ids[1, 33:] = 7, 3
    return jnp.asarray(ids)


def run_op(op, impl, x, *, segment_ids=None, with_state=True, dtype=None, chunk=CHUNK):
    """Calls the public op; returns (o float32, final state)."""
    q, k, v = (x[n] if dtype is None else x[n].astype(dtype) for n in ("q", "k", "v"))
    kw = dict(initial_state=x["initial_state"] if with_state else None, output_final_state=True,
              segment_ids=segment_ids, chunk_size=chunk, implementation=impl,
              interpret=impl.startswith("pallas"))
    if op == "simple_gla":
        o, s = kp.simple_gla(q, k, v, g=x["g"], **kw)
    elif op == "gla":
        o, s = kp.gla(q, k, v, x["g"], **kw)
    else:
        o, s = kp.gated_delta_rule(q, k, v, x["g"], x["beta"], **kw)
    return o.astype(jnp.float32), s


def diff_names(op, with_state):
    names = ["q", "k", "v", "g"] + (["beta"] if op == "gated_delta_rule" else [])
    return names + (["initial_state"] if with_state else [])


def outputs_and_grads(op, impl, x, *, segment_ids=None, with_state=True, dtype=None):
    """(o, final state, grads...) with a fixed random cotangent for o and the final state."""
    names = diff_names(op, with_state)
    rng = np.random.default_rng(123)
    do = jnp.asarray(rng.standard_normal(x["v"].shape[:3] + (V,)), jnp.float32)
    ds = jnp.asarray(rng.standard_normal(x["initial_state"].shape), jnp.float32)

    def loss(*diff):
        y = dict(x, **dict(zip(names, diff)))
        o, s = run_op(op, impl, y, segment_ids=segment_ids, with_state=with_state, dtype=dtype)
        return jnp.sum(o * do) + jnp.sum(s * ds), (o, s)

    (_, (o, s)), grads = jax.jit(jax.value_and_grad(loss, argnums=tuple(range(len(names))), has_aux=True))(
        *(x[n] for n in names))
    return {"o": o, "final_state": s, **{"d" + n: gr for n, gr in zip(names, grads)}}


@functools.lru_cache(maxsize=None)
def reference_results(op, case, dtype_name="float32"):
    x, kw = CASES[case](op)
    res = outputs_and_grads(op, "reference", x, dtype=jnp.dtype(dtype_name), **kw)
    return {n: np.asarray(a, np.float32) for n, a in res.items()}


CASES = {
    # T = 40: not a multiple of the chunk (16); initial state and segment resets.
    "ragged+state+segments": lambda op: (make_inputs(op, 40), dict(segment_ids=segments(B, 40))),
    # T = 32: whole chunks, no initial state, no segments.
    "whole+plain": lambda op: (make_inputs(op, 32, seed=1), dict(with_state=False)),
}


# Every implementation on the hard case; the plain path (no state, no segments) of the Pallas kernels
# is covered by the bfloat16 test, which keeps the interpret-mode suite fast.
@pytest.mark.parametrize("impl,case", [(i, "ragged+state+segments") for i in FAST] + [("xla", "whole+plain")])
@pytest.mark.parametrize("op", OPS)
def test_float32_matches_reference(op, impl, case):
    x, kw = CASES[case](op)
    got = outputs_and_grads(op, impl, x, **kw)
    want = reference_results(op, case)
    assert set(got) == set(want)
    for name in want:
        scale = np.abs(want[name]).max()
        np.testing.assert_allclose(np.asarray(got[name]), want[name], rtol=2e-4, atol=2e-5 * scale,
                                   err_msg=f"{op}/{impl}/{case}: {name}")


def _rel_rms(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sqrt(np.mean((a - b) ** 2) / np.mean(b ** 2))


@pytest.mark.parametrize("impl", ("xla", "pallas_tpu"))
@pytest.mark.parametrize("op", OPS)
def test_bfloat16_error_is_a_small_multiple_of_the_references(op, impl):
    """bf16 inputs: error vs the float32 reference <= 3x the reference's own error on the same bf16 inputs."""
    x, kw = CASES["whole+plain"](op)
    exact = reference_results(op, "whole+plain")
    ref_bf16 = reference_results(op, "whole+plain", "bfloat16")
    got = outputs_and_grads(op, impl, x, dtype=jnp.bfloat16, **kw)
    for name in exact:
        base = _rel_rms(ref_bf16[name], exact[name])
        err = _rel_rms(got[name], exact[name])
        assert base > 1e-4, f"{name}: the bf16 reference should differ from float32 ({base})"
        assert err <= 3.0 * base, f"{op}/{impl}: {name} bf16 error {err:.2e} vs reference's {base:.2e}"


@pytest.mark.parametrize("impl", ("reference", "pallas_tpu"))
@pytest.mark.parametrize("op", OPS)
def test_segment_resets_equal_separate_runs(op, impl):
    """Three packed 12-token segments (T = 36, resets mid-chunk) == the three run as separate rows,
    the first from initial_state and the others from zero. (The oracle's semantics, and one chunked
    implementation's; the others match the oracle with segments in the float32 test.)"""
    t, n_seg = 12, 3
    sep = make_inputs(op, t, seed=3, b=n_seg, h=H)
    sep["initial_state"] = sep["initial_state"].at[1:].set(0.0)
    packed = {n: a.reshape(1, n_seg * t, *a.shape[2:]) for n, a in sep.items() if n != "initial_state"}
    packed["initial_state"] = sep["initial_state"][:1]
    ids = jnp.repeat(jnp.array([4, 9, 4], jnp.int32), t)[None]     # id values are arbitrary, even repeated
    o_sep, s_sep = jax.jit(functools.partial(run_op, op, impl))(sep)
    o_pack, s_pack = jax.jit(functools.partial(run_op, op, impl, segment_ids=ids))(packed)
    np.testing.assert_allclose(o_pack[0], o_sep.reshape(n_seg * t, H, V), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s_pack[0], s_sep[-1], rtol=1e-4, atol=1e-5)


def _chain_steps(op, x):
    """Runs the public *_step function over the sequence with lax.scan."""
    step = {"simple_gla": lambda q, k, v, g, s: kp.simple_gla_step(q, k, v, g=g, state=s),
            "gla": lambda q, k, v, g, s: kp.gla_step(q, k, v, g, state=s),
            "gated_delta_rule": lambda q, k, v, g, s, beta: kp.gated_delta_rule_step(q, k, v, g, beta, state=s)}[op]
    names = ["q", "k", "v", "g"] + (["beta"] if op == "gated_delta_rule" else [])

    def body(s, xs):
        args = dict(zip(names, xs))
        extra = (args["beta"],) if op == "gated_delta_rule" else ()
        o, s = step(args["q"], args["k"], args["v"], args["g"], s, *extra)
        return s, o

    s, o = lax.scan(body, x["initial_state"], tuple(jnp.moveaxis(x[n], 1, 0) for n in names))
    return jnp.moveaxis(o, 0, 1), s


@pytest.mark.parametrize("op", OPS)
def test_step_chained_over_time_equals_full_op(op):
    """Decoding token by token with *_step == the chunked op (xla; every implementation is tied to the
    reference above) on a 21-token sequence from an initial state."""
    x = make_inputs(op, 21, seed=5)
    o_steps, s_steps = jax.jit(functools.partial(_chain_steps, op))(x)
    o_full, s_full = jax.jit(functools.partial(run_op, op, "xla"))(x)
    np.testing.assert_allclose(o_steps, o_full, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s_steps, s_full, rtol=1e-4, atol=1e-5)
