"""The splash-attention path (jax's TPU Pallas kernel, run in interpret mode on CPU) against the XLA reference
`dot_product_attention`: values and gradients, GQA, packed segments, on one device and sharded over a mesh;
the cuDNN path the same way on a GPU (an `accelerator` test; on CPU only its choice and its compile for an H100
target are checked); and how train.attention resolves for a target."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxsuite.core import sharding as shd
from jaxsuite.models.attention import dot_product_attention, make_attention_mask
from jaxsuite.models.fused_attention import choose_attention, cudnn_attention, splash_attention

B, T, N, KV, HD = 2, 256, 4, 2, 64


@pytest.fixture(scope="module")
def qkv():
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((B, T, h, HD)), jnp.float32) for h in (N, KV, KV))
    segments = np.ones((B, T), np.int32)
    segments[1, 100:] = 2                      # row 1 packs two documents
    segments[1, 200:] = 0                      # and ends in padding
    return q, k, v, jnp.asarray(segments)


def _reference(q, k, v, segments):
    return dot_product_attention(q, k, v, make_attention_mask(segments, B, T), HD ** -0.5)


@pytest.mark.parametrize("packed", [False, True])
def test_splash_equals_the_reference(qkv, packed):
    q, k, v, segments = qkv
    segments = segments if packed else None
    want = _reference(q, k, v, segments)
    got = splash_attention(q, k, v, segments, HD ** -0.5)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-5, rtol=0)


def test_splash_gradients_and_sharded_run_equal_the_reference(qkv):
    q, k, v, segments = qkv
    weights = jnp.asarray(np.random.default_rng(1).standard_normal((B, T, N, HD)), jnp.float32)

    def loss(attend, q, k, v):
        return jnp.sum(attend(q, k, v) * weights)

    want = jax.grad(lambda *a: loss(lambda q, k, v: _reference(q, k, v, segments), *a), argnums=(0, 1, 2))(q, k, v)
    mesh = shd.make_mesh({"data": 2, "fsdp": 1, "tensor": 2}, jax.devices()[:4])   # rows over data, heads over tensor

    @jax.jit
    def sharded_grads(q, k, v):
        with shd.use_sharding(mesh, shd.DEFAULT_RULES):
            return jax.grad(lambda *a: loss(lambda q, k, v: splash_attention(q, k, v, segments, HD ** -0.5), *a),
                            argnums=(0, 1, 2))(q, k, v)

    place = NamedSharding(mesh, P("data", None, "tensor", None))
    got = sharded_grads(*(jax.device_put(x, place) for x in (q, k, v)))
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-4, rtol=0)


def test_attention_choice_follows_the_mesh_not_the_host():
    from jaxsuite.core.aot import resolve_target
    assert choose_attention("auto", 4096) == "xla"                    # this CPU host, no mesh
    assert choose_attention("splash", 4096) == "splash"
    with pytest.raises(ValueError, match="divisible by 128"):
        choose_attention("splash", 100)
    with pytest.raises(ValueError, match="attention_impl='flash'"):
        choose_attention("flash", 4096)
    pytest.importorskip("libtpu", reason="a TPU mesh needs libtpu: pip install 'jaxsuite[aot]'")
    tpu = shd.make_mesh({"data": -1}, resolve_target("v5e:2x2").devices)
    with shd.use_sharding(tpu, shd.DEFAULT_RULES):
        assert choose_attention("auto", 4096) == "splash"
        assert choose_attention("auto", 100) == "xla"                 # not a multiple of the kernel's block


def test_cudnn_is_chosen_for_half_precision_on_a_gpu_mesh():
    from jaxsuite.core.aot import resolve_target
    with pytest.raises(ValueError, match="needs a GPU mesh"):
        choose_attention("cudnn", 4096, jnp.bfloat16)                  # this CPU host
    pytest.importorskip("jax_plugins.xla_cuda12", reason="a GPU mesh needs the CUDA plugin: pip install 'jaxsuite[aot]'")
    gpu = shd.make_mesh({"data": -1}, resolve_target("h100:8").devices)
    with shd.use_sharding(gpu, shd.DEFAULT_RULES):
        assert choose_attention("auto", 4096, jnp.bfloat16) == "cudnn"
        assert choose_attention("auto", 100, jnp.float16) == "cudnn"    # no block constraint
        assert choose_attention("auto", 4096, jnp.float32) == "xla"     # cuDNN's flash kernel is half precision only
        with pytest.raises(ValueError, match="bfloat16/float16"):
            choose_attention("cudnn", 4096, jnp.float32)


def test_cudnn_attention_compiles_for_an_h100_node_sharded_over_batch():
    """Lowered under a mesh of 8 H100s (deviceless), the forward and gradient are cuDNN's fused attention calls
    (forward and backward), not [T, T] scores."""
    from jaxsuite.core.aot import resolve_target
    pytest.importorskip("jax_plugins.xla_cuda12", reason="a GPU target needs the CUDA plugin: pip install 'jaxsuite[aot]'")
    target = resolve_target("h100:8")
    mesh = shd.make_mesh({"data": -1}, target.devices)
    rows = NamedSharding(mesh, P("data"))
    q = jax.ShapeDtypeStruct((8, T, N, HD), jnp.bfloat16, sharding=rows)
    kv = jax.ShapeDtypeStruct((8, T, KV, HD), jnp.bfloat16, sharding=rows)
    seg = jax.ShapeDtypeStruct((8, T), jnp.int32, sharding=rows)

    def loss(q, k, v, s):
        return jnp.sum(cudnn_attention(q, k, v, s, HD ** -0.5).astype(jnp.float32) ** 2)
    with target.tracing():
        compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, kv, kv, seg).compile()
    calls = set(re.findall(r"__cudnn\$fmha\w*", compiled.as_text()))
    # with segment ids cuDNN takes the same-segment mask as a bias: fmhaScaleBiasSoftmax (+ Backward)
    assert {c for c in calls if c.endswith("Softmax")} and {c for c in calls if c.endswith("Backward")}, calls
    scores = 8 // 8 * N * T * T * 4                                     # one device's float32 [N, T, T] scores
    assert compiled.memory_analysis().temp_size_in_bytes < scores


@pytest.mark.accelerator
def test_cudnn_attention_equals_the_reference_on_a_gpu(qkv):
    """On an NVIDIA GPU: values and gradients against the XLA reference, bfloat16, packed rows included."""
    if jax.default_backend() != "gpu":
        pytest.skip("cuDNN attention runs on NVIDIA GPUs only")
    q, k, v, segments = (x.astype(jnp.bfloat16) if x.dtype == jnp.float32 else x for x in qkv)
    for seg in (None, segments):
        mask = make_attention_mask(seg, B, T)
        got = cudnn_attention(q, k, v, seg, HD ** -0.5).astype(jnp.float32)
        want = dot_product_attention(q, k, v, mask, HD ** -0.5).astype(jnp.float32)
        np.testing.assert_allclose(got, want, atol=2e-2, rtol=2e-2)
        g_got = jax.grad(lambda q: jnp.sum(cudnn_attention(q, k, v, seg, HD ** -0.5).astype(jnp.float32) ** 2))(q)
        g_want = jax.grad(lambda q: jnp.sum(dot_product_attention(q, k, v, mask, HD ** -0.5)
                                            .astype(jnp.float32) ** 2))(q)
        np.testing.assert_allclose(g_got.astype(jnp.float32), g_want.astype(jnp.float32), atol=5e-2, rtol=5e-2)
