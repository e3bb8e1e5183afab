"""The linear-attention ops' contract: ALiBi slopes, independent checks of the references, numerics under
strong decay, validation errors, the Pallas kernels in the interpreters, and head sharding with shard_map
on 8 CPU devices. Platform and implementation choice, and lowering for TPU / GPU: test_platform_dispatch.py."""
import os
import sys

if "jax" not in sys.modules and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import kernels_pallas as kp
from kernels_pallas.gla.reference import gla_attention_matrix_reference


def _inputs(t, b=1, h=2, dk=16, dv=32, seed=0):
    rng = np.random.default_rng(seed)
    q, k = (rng.standard_normal((b, t, h, dk)).astype(np.float32) for _ in range(2))
    v = rng.standard_normal((b, t, h, dv)).astype(np.float32)
    return jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), rng


# --- ALiBi / Lightning decays ------------------------------------------------------------------------

def test_alibi_slopes_powers_of_two_and_fallback():
    np.testing.assert_allclose(kp.alibi_slopes(8), [2.0 ** -(i + 1) for i in range(8)])
    np.testing.assert_allclose(kp.alibi_slopes(4), [2.0 ** -(2 * (i + 1)) for i in range(4)])
    np.testing.assert_allclose(kp.alibi_slopes(1), [2.0 ** -8])
    # H = 12: the 8 slopes of H = 8, then every other slope of H = 16: 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5.
    want12 = [2.0 ** -(i + 1) for i in range(8)] + [2.0 ** -(i + 0.5) for i in range(4)]
    np.testing.assert_allclose(kp.alibi_slopes(12), want12, rtol=1e-6)
    np.testing.assert_allclose(kp.lightning_g_gamma(12), -np.asarray(want12), rtol=1e-6)
    with pytest.raises(ValueError, match="num_heads"):
        kp.alibi_slopes(0)


def test_g_gamma_equals_broadcast_g_and_gets_the_summed_gradient():
    q, k, v, _ = _inputs(20, b=2)
    gamma = jnp.asarray(kp.lightning_g_gamma(2))
    g_full = jnp.broadcast_to(gamma, (2, 20, 2))

    def loss_gamma(gamma):
        return jnp.sum(kp.simple_gla(q, k, v, g_gamma=gamma, chunk_size=16)[0] ** 2)

    def loss_g(g):
        return jnp.sum(kp.simple_gla(q, k, v, g=g, chunk_size=16)[0] ** 2)

    np.testing.assert_allclose(jax.jit(loss_gamma)(gamma), jax.jit(loss_g)(g_full), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.grad(loss_gamma))(gamma), jax.jit(jax.grad(loss_g))(g_full).sum((0, 1)),
                               rtol=1e-5)


# --- the references against independent formulas ------------------------------------------------------

@pytest.mark.parametrize("per_channel", [False, True])
def test_gla_references_equal_the_quadratic_attention_form(per_channel):
    """GLA's oracle (per-channel gate) and simple GLA's (a scalar gate, also through GLA's with width 1)."""
    q, k, v, rng = _inputs(24)
    g = jnp.asarray(np.log(rng.uniform(0.4, 1.0, (1, 24, 2, 16 if per_channel else 1))).astype(np.float32))
    want = gla_attention_matrix_reference(q, k, v, g, scale=0.25)
    np.testing.assert_allclose(kp.gla_reference(q, k, v, g, scale=0.25)[0], want, rtol=1e-5, atol=1e-5)
    if not per_channel:
        np.testing.assert_allclose(kp.simple_gla_reference(q, k, v, g[..., 0], scale=0.25)[0], want,
                                   rtol=1e-5, atol=1e-5)


def test_gated_delta_rule_reference_equals_a_float64_numpy_loop():
    q, k, v, rng = _inputs(15, dk=8, dv=4)
    k = k / jnp.linalg.norm(k, axis=-1, keepdims=True)
    g = np.log(rng.uniform(0.5, 1.0, (1, 15, 2))).astype(np.float32)
    beta = rng.uniform(0.1, 0.9, (1, 15, 2)).astype(np.float32)
    s0 = rng.standard_normal((1, 2, 8, 4)).astype(np.float32)
    o, s = kp.gated_delta_rule_reference(q, k, v, jnp.asarray(g), jnp.asarray(beta), scale=0.5,
                                         initial_state=jnp.asarray(s0))
    qn, kn, vn = (np.asarray(x, np.float64) for x in (q, k, v))
    for h in range(2):
        st = s0[0, h].astype(np.float64).T                                   # the papers' [V, K] layout
        for t in range(15):
            kt = kn[0, t, h]
            st = np.exp(g[0, t, h]) * (st - beta[0, t, h] * np.outer(st @ kt, kt)) + beta[0, t, h] * np.outer(vn[0, t, h], kt)
            np.testing.assert_allclose(o[0, t, h], 0.5 * st @ qn[0, t, h], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(s[0, h], st.T, rtol=1e-5, atol=1e-5)


# --- numerics --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", ["xla", "pallas_tpu"])
def test_strong_decay_stays_finite_and_exact(impl):
    """log-decays of -40 per step would overflow exp(-G_j) (e^{640} over a 16-token chunk); the chunked
    forms only ever exponentiate differences <= 0."""
    q, k, v, rng = _inputs(32)
    g = np.log(rng.uniform(0.3, 1.0, (1, 32, 2, 16))).astype(np.float32)
    g[:, 3::4] = -40.0
    g = jnp.asarray(g)

    def f(q, k, v, g, implementation):
        o, s = kp.gla(q, k, v, g, output_final_state=True, chunk_size=16, implementation=implementation,
                      interpret=True)
        return jnp.sum(o ** 2) + jnp.sum(s ** 2)

    want = jax.value_and_grad(f, argnums=(0, 1, 2, 3))(q, k, v, g, "reference")
    got = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3)), static_argnums=4)(q, k, v, g, impl)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


# --- validation -----------------------------------------------------------------------------------------

def test_bad_arguments_are_named():
    q, k, v, _ = _inputs(8)
    g3, g4 = jnp.zeros((1, 8, 2)), jnp.zeros((1, 8, 2, 16))
    cases = [
        (lambda: kp.simple_gla(q[0], k, v), ValueError, "q must be a 4-D"),
        (lambda: kp.simple_gla(q, k[:, :4], v), ValueError, "k must have the shape of q"),
        (lambda: kp.simple_gla(q, k, v[:, :4]), ValueError, "v must be"),
        (lambda: kp.simple_gla(q, k, v.astype(jnp.int32)), TypeError, "v must be float32"),
        (lambda: kp.simple_gla(q, k.astype(jnp.bfloat16), v), TypeError, "share a dtype"),
        (lambda: kp.simple_gla(q, k, v, g=g4), ValueError, "g must have shape"),
        (lambda: kp.simple_gla(q, k, v, g=g3, g_gamma=jnp.zeros(2)), ValueError, "not both"),
        (lambda: kp.simple_gla(q, k, v, g_gamma=jnp.zeros(3)), ValueError, "g_gamma must have shape"),
        (lambda: kp.gla(q, k, v, g3), ValueError, "g must have shape"),
        (lambda: kp.gated_delta_rule(q, k, v, g3, g4), ValueError, "beta must have shape"),
        (lambda: kp.simple_gla(q, k, v, initial_state=jnp.zeros((1, 2, 32, 16))), ValueError, "initial_state"),
        (lambda: kp.simple_gla(q, k, v, segment_ids=jnp.zeros((1, 8))), TypeError, "segment_ids"),
        (lambda: kp.simple_gla(q, k, v, segment_ids=jnp.zeros((1, 9), jnp.int32)), ValueError, "segment_ids"),
        (lambda: kp.simple_gla(q, k, v, chunk_size=48), ValueError, "chunk_size"),
        (lambda: kp.simple_gla_step(q[:, 0], k[:, 0], v[:, 0], state=jnp.zeros((1, 2, 16, 16))), ValueError,
         "state must have shape"),
        (lambda: kp.gated_delta_rule_step(q[:, 0], k[:, 0], v[:, 0], g3[:, 0], g3[:, 0, :1],
                                          state=jnp.zeros((1, 2, 16, 32))), ValueError, "beta"),
    ]
    for fn, err, msg in cases:
        with pytest.raises(err, match=msg):
            fn()


# --- the Pallas kernels in the interpreters -------------------------------------------------------------

def test_pallas_implementation_really_runs_a_pallas_kernel():
    q, k, v, _ = _inputs(8)
    jaxpr = lambda impl: str(jax.make_jaxpr(
        lambda q, k, v: kp.simple_gla(q, k, v, implementation=impl, interpret=True, chunk_size=16))(q, k, v))
    assert "pallas_call" in jaxpr("pallas_gpu") and "pallas_call" in jaxpr("pallas_tpu")
    assert "pallas_call" not in jaxpr("xla")


def test_tpu_kernel_under_the_tpu_interpreter():
    """pltpu.InterpretParams simulates TPU memory semantics (out-of-bounds and race checks)."""
    from jax.experimental.pallas import tpu as pltpu
    q, k, v, rng = _inputs(20)
    g = jnp.asarray(np.log(rng.uniform(0.5, 1.0, (1, 20, 2))).astype(np.float32))
    beta = jnp.full((1, 20, 2), 0.5)
    k = k / jnp.linalg.norm(k, axis=-1, keepdims=True)
    got = kp.gated_delta_rule(q, k, v, g, beta, chunk_size=16, implementation="pallas_tpu",
                              interpret=pltpu.InterpretParams())[0]
    want = kp.gated_delta_rule(q, k, v, g, beta, implementation="reference")[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# --- sharding over heads ------------------------------------------------------------------------------------

@pytest.mark.parametrize("op,impl", [("simple_gla", "xla"), ("gla", "xla"), ("gated_delta_rule", "xla"),
                                     ("simple_gla", "pallas_tpu"), ("gated_delta_rule", "pallas_gpu")])
def test_shard_map_over_heads_matches_unsharded(op, impl):
    if jax.device_count() < 8:
        pytest.skip("needs --xla_force_host_platform_device_count=8 set before jax is imported")
    mesh = jax.make_mesh((8,), ("heads",), axis_types=(jax.sharding.AxisType.Auto,))
    b, t, h, dk, dv = 1, 20, 8, 16, 16
    q, k, v, rng = _inputs(t, b=b, h=h, dk=dk, dv=dv)
    k = k / jnp.linalg.norm(k, axis=-1, keepdims=True)
    g = jnp.asarray(np.log(rng.uniform(0.5, 1.0, (b, t, h, dk if op == "gla" else 1))).astype(np.float32))
    g = g if op == "gla" else g[..., 0]
    beta = jnp.asarray(rng.uniform(0.1, 0.9, (b, t, h)).astype(np.float32))
    s0 = jnp.asarray(rng.standard_normal((b, h, dk, dv)).astype(np.float32))
    seg = jnp.asarray(np.repeat([[0, 1]], [7, t - 7], axis=1).astype(np.int32))

    def f(q, k, v, g, beta, s0, seg):
        kw = dict(initial_state=s0, segment_ids=seg, output_final_state=True, chunk_size=16,
                  implementation=impl, interpret=impl != "xla")
        if op == "simple_gla":
            return kp.simple_gla(q, k, v, g=g, **kw)
        if op == "gla":
            return kp.gla(q, k, v, g, **kw)
        return kp.gated_delta_rule(q, k, v, g, beta, **kw)

    hd = P(None, None, "heads")
    # The Pallas *interpreter* evaluates kernel-internal constants (iota masks) next to head-varying
    # blocks, which shard_map's varying-axes check rejects; compiled kernels are unaffected.
    sharded = jax.shard_map(f, mesh=mesh, in_specs=(hd, hd, hd, hd, hd, P(None, "heads"), P()),
                            out_specs=(hd, P(None, "heads")), check_vma=impl == "xla")

    def loss(fn, *args):
        o, s = fn(*args)
        return jnp.sum(o * jnp.cos(o)) + jnp.sum(s ** 2)

    args = (q, k, v, g, beta, s0, seg)
    want = jax.jit(jax.value_and_grad(functools.partial(loss, f), argnums=(0, 1, 2, 3, 4, 5)))(*args)
    got = jax.jit(jax.value_and_grad(functools.partial(loss, sharded), argnums=(0, 1, 2, 3, 4, 5)))(*args)
    for a, b_ in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-5 * np.abs(b_).max())


# --- on real hardware (skipped on CPU): what a backend must pass before joining PALLAS_VERIFIED_BACKENDS ---------
@pytest.mark.accelerator
@pytest.mark.parametrize("op", ["simple_gla", "gla", "gated_delta_rule"])
def test_compiled_pallas_kernels_match_the_reference_on_this_accelerator(op):
    rng = np.random.default_rng(0)
    b, t, h, d = 2, 200, 4, 64                       # T not a multiple of the chunk
    q, k, v = (jnp.asarray(rng.standard_normal((b, t, h, d)), jnp.float32) for _ in range(3))
    k = k / jnp.linalg.norm(k, axis=-1, keepdims=True)
    extra = {}
    if op == "simple_gla":
        extra["g"] = jnp.asarray(-rng.uniform(0.01, 0.3, (b, t, h)), jnp.float32)
    elif op == "gla":
        extra["g"] = jnp.asarray(-rng.uniform(0.01, 0.3, (b, t, h, d)), jnp.float32)
    else:
        extra["g"] = jnp.asarray(-rng.uniform(0.01, 0.3, (b, t, h)), jnp.float32)
        extra["beta"] = jnp.asarray(rng.uniform(0.1, 0.9, (b, t, h)), jnp.float32)
    fn = getattr(kp, op)

    def loss(impl, q, k, v):
        o, _ = fn(q, k, v, **extra, implementation=impl, chunk_size=64)
        return jnp.sum(o * jnp.cos(o)), o

    (_, o_ref), g_ref = jax.value_and_grad(functools.partial(loss, "reference"), argnums=(0, 1, 2),
                                           has_aux=True)(q, k, v)
    (_, o_pl), g_pl = jax.jit(jax.value_and_grad(functools.partial(loss, "pallas"), argnums=(0, 1, 2),
                                                 has_aux=True))(q, k, v)
    np.testing.assert_allclose(o_pl, o_ref, rtol=2e-3, atol=2e-3)
    for a, r in zip(g_pl, g_ref):
        np.testing.assert_allclose(a, r, rtol=5e-3, atol=5e-3)
