"""CausalLM: layers against naive numpy, HyPE, cache decode, generate, packing, HF format, config parsing.

The oracles are independent numpy implementations of the documented order (reference note hypenet-halo.md),
built from the module's own (randomised) weights. No transformers oracle exists: HypeNet ships custom code.
"""
from __future__ import annotations

import json
import math
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsuite.generate import generate
from jaxsuite.hf import SafetensorsFile, load_hf_config, load_pretrained, save_pretrained, write_safetensors
from jaxsuite.models import CausalLM, HypeNetConfig, KVCache
from jaxsuite.models.attention import hype_scale

ATOL = 1e-4
HYPE_A = 4.0  # small a, so that the scaling is far from 1 at these short lengths
CFG = HypeNetConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                    mixer_types=("attn", "lightning-attn", "lightning-attn", "attn"),
                    attn_logits_scaling=f"hype {HYPE_A:g}", lightning_nh=4, lightning_nkv=2,
                    lightning_use_qk_norm=True, lightning_use_output_norm=True, lightning_use_output_gate=True,
                    expand_kv_proj=False, tie_word_embeddings=True, max_position_embeddings=1024)


def randomise(model, seed=0):
    """Every parameter random (norms around 1), so no tensor hides behind an identity initialisation."""
    rng = np.random.default_rng(seed)
    state = nnx.state(model, nnx.Param)
    for path, var in nnx.to_flat_state(state):
        v = var.get_value()
        scale = path[-1] == "scale"
        new = (1.0 + 0.2 * rng.standard_normal(v.shape)) if scale else 0.08 * rng.standard_normal(v.shape)
        var.set_value(jnp.asarray(new, v.dtype))
    nnx.update(model, state)
    return model


@pytest.fixture(scope="module")
def model():
    return randomise(CausalLM(CFG, rngs=nnx.Rngs(0)))


@pytest.fixture(scope="module")
def ids():
    return np.random.default_rng(1).integers(0, 128, size=(2, 12)).astype(np.int32)


# --- numpy oracles ----------------------------------------------------------------------------------------------
def np_rms(x, w, eps=1e-6):
    return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def np_rope(x, pos, theta):  # x [T, H, d], non-interleaved halves
    d = x.shape[-1]
    inv = theta ** (-np.arange(0, d, 2) / d)
    ang = pos[:, None] * inv[None]
    cos, sin = np.cos(np.concatenate([ang, ang], -1))[:, None], np.sin(np.concatenate([ang, ang], -1))[:, None]
    rot = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * cos + rot * sin, (cos[:, 0], sin[:, 0])


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def w(p):
    return np.asarray(p[...], np.float64)


def test_lightning_layer_matches_naive_recurrence(model):
    layer = model.layers[1].self_attn
    t, nh, nkv, d = 10, CFG.lightning_nh, CFG.lightning_nkv, CFG.lightning_head_dim
    x = np.random.default_rng(2).standard_normal((t, CFG.hidden_size))
    pos = np.arange(t, dtype=np.float64)
    q = np_rms(np.einsum("td,dnh->tnh", x, w(layer.q_proj.kernel)), w(layer.q_norm.scale))
    k = np_rms(np.einsum("td,dnh->tnh", x, w(layer.k_proj.kernel)), w(layer.k_norm.scale))
    v = np.einsum("td,dnh->tnh", x, w(layer.v_proj.kernel))
    q, (cos, sin) = np_rope(q, pos, CFG.rope_theta)
    k, _ = np_rope(k, pos, CFG.rope_theta)
    k, v = np.repeat(k, nh // nkv, axis=1), np.repeat(v, nh // nkv, axis=1)   # head j uses kv head j // 2
    g = -(2.0 ** (-8.0 * (np.arange(nh) + 1) / nh))                           # -ALiBi slopes
    s, o = np.zeros((nh, d, d)), np.zeros((t, nh, d))
    for i in range(t):
        s = np.exp(g)[:, None, None] * s + k[i][:, :, None] * v[i][:, None, :]
        o[i] = d ** -0.5 * np.einsum("hk,hkv->hv", q[i], s)
    o = np_rms(o.reshape(t, nh * d), w(layer.o_norm.scale)).reshape(t, nh, d)   # ONE norm over all heads
    o = o * sigmoid(np.einsum("td,dnh->tnh", x, w(layer.z_proj.kernel)))
    ref = np.einsum("tnh,nhd->td", o, w(layer.o_proj.kernel))
    ctx = model.layer_context(jnp.arange(t)[None], jnp.float32)
    np.testing.assert_allclose(np.asarray(ctx.rope(d)[0])[0], cos, atol=1e-6)   # the LM's RoPE table is np_rope's
    got = layer(jnp.asarray(x[None], jnp.float32), ctx)
    np.testing.assert_allclose(np.asarray(got)[0], ref, atol=ATOL, rtol=0)


def test_hype_factor_and_attention_layer(model):
    assert float(hype_scale(jnp.array(0), 500.0)) == 1.0
    assert abs(float(hype_scale(jnp.array(7), 500.0)) - math.log(507) / math.log(500)) < 1e-6
    layer = model.layers[0].self_attn
    t, n, kv, d = 9, CFG.num_attention_heads, CFG.num_key_value_heads, CFG.head_dim
    x = np.random.default_rng(3).standard_normal((t, CFG.hidden_size))
    q = np_rms(np.einsum("td,dnh->tnh", x, w(layer.q_proj.kernel)), w(layer.q_norm.scale))
    k = np_rms(np.einsum("td,dnh->tnh", x, w(layer.k_proj.kernel)), w(layer.k_norm.scale))
    v = np.einsum("td,dnh->tnh", x, w(layer.v_proj.kernel))
    q = q * (np.log(np.arange(t) + HYPE_A) / np.log(HYPE_A))[:, None, None]     # HyPE, no RoPE
    k, v = np.repeat(k, n // kv, axis=1), np.repeat(v, n // kv, axis=1)
    scores = np.einsum("thd,shd->hts", q, k) / math.sqrt(d)
    scores = np.where(np.tril(np.ones((t, t), bool))[None], scores, -np.inf)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    o = np.einsum("hts,shd->thd", p / p.sum(-1, keepdims=True), v)
    o = o * sigmoid(np.einsum("td,dnh->tnh", x, w(layer.o_gate.kernel)))
    ref = np.einsum("tnh,nhd->td", o, w(layer.o_proj.kernel))
    got = layer(jnp.asarray(x[None], jnp.float32), model.layer_context(jnp.arange(t)[None], jnp.float32))
    np.testing.assert_allclose(np.asarray(got)[0], ref, atol=ATOL, rtol=0)


def test_decode_matches_full_forward_and_left_padding(model, ids):
    ref = np.asarray(model(ids[:, :9]))
    decode = jax.jit(lambda i, p, c, m: model.decode(i, p, c, token_mask=m))
    cache = model.init_cache(2, 16)
    logits, cache = decode(ids[:, :6], np.broadcast_to(np.arange(6, dtype=np.int32), (2, 6)), cache,
                           np.ones((2, 6), bool))
    steps = [np.asarray(logits)]
    for t in range(6, 9):
        logits, cache = decode(ids[:, t:t + 1], np.full((2, 1), t, np.int32), cache, np.ones((2, 1), bool))
        steps.append(np.asarray(logits))
    assert int(cache.index) == 9
    np.testing.assert_allclose(np.concatenate(steps, 1), ref, atol=ATOL, rtol=0)

    # row 1: 4 real tokens behind 2 pads; equals running it alone (pads leave the Lightning state untouched)
    prompt, mask = ids[:, :6].copy(), np.ones((2, 6), bool)
    mask[1, :2], prompt[1, :2] = False, 0
    pos = np.maximum(np.cumsum(mask, 1) - 1, 0).astype(np.int32)
    logits, cache = decode(prompt, pos, model.init_cache(2, 16), mask)
    got = [np.asarray(logits)[1, 2:]]
    for s in range(3):
        logits, cache = decode(ids[:, 6 + s:7 + s], pos[:, -1:] + 1 + s, cache, np.ones((2, 1), bool))
        got.append(np.asarray(logits)[1])
    alone = np.asarray(model(np.concatenate([ids[1:, 2:6], ids[1:, 6:9]], 1)))[0]
    np.testing.assert_allclose(np.concatenate(got, 0), alone, atol=ATOL, rtol=0)


def test_generate_greedy_equals_naive_argmax_loop(model, ids):
    prompts = [ids[0, :7].tolist(), ids[1, :4].tolist()]
    out = generate(model, prompts, max_new_tokens=4, stop_tokens=())
    fwd = jax.jit(lambda x: model(x))
    for row, prompt in zip(out.tokens, prompts):
        seq = list(prompt)
        for _ in range(4):
            seq.append(int(np.asarray(fwd(np.asarray([seq], np.int32)))[0, -1].argmax()))
        assert row.tolist() == seq[len(prompt):]


def test_packed_segments_equal_separate_runs(model, ids):
    a, b = ids[0, :5], ids[1, :7]
    packed = np.concatenate([a, b])[None]
    seg = np.array([[1] * 5 + [2] * 7], np.int32)
    pos = np.array([list(range(5)) + list(range(7))], np.int32)
    out = np.asarray(model(packed, positions=pos, segment_ids=seg))[0]
    np.testing.assert_allclose(out[:5], np.asarray(model(a[None]))[0], atol=ATOL, rtol=0)
    np.testing.assert_allclose(out[5:], np.asarray(model(b[None]))[0], atol=ATOL, rtol=0)
    assert np.abs(np.asarray(model(packed, positions=pos))[0, 5:] - out[5:]).max() > 1e-3


def test_cache_sizes_and_logical_axes(model):
    small, big = model.init_cache(2, 16), model.init_cache(2, 64, dtype=jnp.bfloat16)
    assert isinstance(small, KVCache)
    for c, s in ((small, 16), (big, 64)):
        assert c.layers[0]["k"].shape == c.layers[3]["v"].shape == (2, 2, s, 16)   # [B, Kv, S, Hd]
        assert c.layers[1]["state"].shape == (2, 4, 16, 16) and c.layers[1]["state"].dtype == jnp.float32
    assert big.layers[0]["k"].dtype == jnp.bfloat16
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        axes = var.get_metadata().get("logical_axes")
        assert axes is not None and len(axes) == var.get_value().ndim, path
    assert model.layers[1].self_attn.z_proj.kernel.get_metadata()["logical_axes"] == ("embed", "q_heads",
                                                                                      "head_dim")


def test_hf_round_trip_names_and_errors(model, ids, tmp_path):
    out = save_pretrained(model, tmp_path / "hn")
    hf = json.load(open(os.path.join(out, "config.json")))
    assert hf["model_type"] == "hypenet" and hf["architectures"] == ["HypeNetForCausalLM"]
    assert hf["mixer_types"] == ["attn", "lightning-attn", "lightning-attn", "attn"]
    assert hf["attn_logits_scaling"] == "hype 4" and hf["attn_use_rope"] is False
    assert (hf["lightning_nh"], hf["lightning_nkv"], hf["lightning_head_dim"]) == (4, 2, 16)
    assert hf["lightning_use_output_gate"] and hf["lightning_scale"] == "1/sqrt(d)"
    st = SafetensorsFile(os.path.join(out, "model.safetensors"))
    expected = {"model.embed_tokens.weight", "model.norm.weight"}
    for i, kind in enumerate(CFG.mixer_types):
        mixer = (["q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm", "o_gate"] if kind == "attn" else
                 ["q_proj", "k_proj", "v_proj", "o_proj", "z_proj", "o_norm", "q_norm", "k_norm"])
        expected |= {f"model.layers.{i}.self_attn.{m}.weight" for m in mixer}
        expected |= {f"model.layers.{i}.{m}.weight" for m in ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
                                                               "input_layernorm", "post_attention_layernorm")}
    assert set(st.keys()) == expected
    L = "model.layers.1.self_attn."
    assert st.shape(L + "q_proj.weight") == (64, 64) and st.shape(L + "k_proj.weight") == (32, 64)
    assert st.shape(L + "z_proj.weight") == (64, 64) and st.shape(L + "o_norm.weight") == (64,)
    assert st.shape(L + "o_proj.weight") == (64, 64) and st.shape(L + "q_norm.weight") == (16,)
    assert st.shape("model.layers.0.self_attn.o_gate.weight") == (64, 64)

    back = load_pretrained(out)
    assert isinstance(back.config, HypeNetConfig) and back.config == model.config
    np.testing.assert_array_equal(np.asarray(back(ids)), np.asarray(model(ids)))

    bad = str(tmp_path / "bad")
    shutil.copytree(out, bad)
    tensors = {k: np.array(st.get(k)) for k in st.keys()}
    tensors["model.layers.2.self_attn.z_proj.weight"] = tensors["model.layers.2.self_attn.z_proj.weight"][:32]
    write_safetensors(os.path.join(bad, "model.safetensors"), tensors)
    with pytest.raises(ValueError, match=r"shape mismatch.*model\.layers\.2\.self_attn\.z_proj\.weight"):
        load_pretrained(bad)
    json.dump({**hf, "mixer_types": ["attn", "lightning-attn", "mamba2", "attn"]},
              open(os.path.join(bad, "config.json"), "w"))
    with pytest.raises(ValueError, match=r"unknown mixer type 'mamba2' at layer 2"):
        load_pretrained(bad)


def test_config_parsing():
    assert HypeNetConfig.from_hf_config(CFG.to_hf_config()) == CFG
    hf = {**CFG.to_hf_config(), "mixer_types": ["attn", "lightning_attn", "lightning-attn", "attn"],
          "attn_logits_scaling": "hype", "lightning_nh": None, "lightning_nkv": None, "lightning_head_dim": None}
    cfg = HypeNetConfig.from_hf_config(hf)
    assert cfg.mixer_types == CFG.mixer_types and cfg.hype_base == 362.0
    assert (cfg.lightning_nh, cfg.lightning_nkv, cfg.lightning_head_dim) == (4, 2, 16)
    assert HypeNetConfig.from_hf_config({**hf, "mixer_types": []}).mixer_types == ("attn",) * 4
    assert HypeNetConfig.from_hf_config({**hf, "attn_logits_scaling": 1.5}).attn_constant_scaling == 1.5
    assert CFG.replace(lightning_scale="1/d").lightning_scale_value == 1 / 16
    assert CFG.replace(lightning_scale="none").lightning_scale_value == 1.0
    assert CFG.implementation == "xla"
    with pytest.raises(ValueError, match="lightning_use_short_conv"):
        HypeNetConfig.from_hf_config({**hf, "lightning_use_short_conv": True})
    with pytest.raises(ValueError, match="unknown mixer type 'gdn' at layer 3"):
        CFG.replace(mixer_types=("attn", "attn", "attn", "gdn"))


def test_load_hf_config_dispatch(model, tmp_path):
    out = save_pretrained(model, tmp_path / "cfg")
    assert isinstance(load_hf_config(out), HypeNetConfig)


# --- the learned-decay linear mixers (simple GLA, GLA, gated delta rule) -----------------------------------------
def softplus(x):
    return np.log1p(np.exp(x))


def log_sigmoid(x):
    return -softplus(-x)


def np_linear_mixer(layer, x, theta):
    """Naive per-token recurrence of one linear-mixer layer (x [T, D] float64 -> [T, D]); see mixers_linear."""
    spec = layer.spec
    t, nh, d = x.shape[0], spec.num_heads, spec.head_dim
    q = np.einsum("td,dnh->tnh", x, w(layer.q_proj.kernel))
    k = np.einsum("td,dnh->tnh", x, w(layer.k_proj.kernel))
    v = np.einsum("td,dnh->tnh", x, w(layer.v_proj.kernel))
    if spec.qk_norm:
        q, k = np_rms(q, w(layer.q_norm.scale)), np_rms(k, w(layer.k_norm.scale))
    q, _ = np_rope(q, np.arange(t, dtype=np.float64), theta)
    k, _ = np_rope(k, np.arange(t, dtype=np.float64), theta)
    k, v = np.repeat(k, nh // spec.num_kv_heads, 1), np.repeat(v, nh // spec.num_kv_heads, 1)
    beta = None
    if spec.kind == "simple_gla":
        g = log_sigmoid(x @ w(layer.g_proj.kernel) + w(layer.g_proj.bias)) / 16          # [T, H]
        decay = np.exp(g)[:, :, None, None]
    elif spec.kind == "gla":
        gk = np.einsum("tr,rnh->tnh", x @ w(layer.gk_down.kernel), w(layer.gk_up.kernel)) + w(layer.gk_up.bias)
        decay = np.exp(log_sigmoid(gk) / 16)[:, :, :, None]                              # [T, H, K, 1]
    else:  # gated delta rule: unit q/k, decay -exp(A_log) softplus(a + dt_bias), beta sigmoid(b)
        q = q / np.linalg.norm(q, axis=-1, keepdims=True)
        k = k / np.linalg.norm(k, axis=-1, keepdims=True)
        g = -np.exp(w(layer.A_log)) * softplus(x @ w(layer.a_proj.kernel) + w(layer.dt_bias))
        decay = np.exp(g)[:, :, None, None]
        beta = sigmoid(x @ w(layer.b_proj.kernel))                                        # [T, H]
    s, o = np.zeros((nh, d, d)), np.zeros((t, nh, d))
    for i in range(t):
        s = decay[i] * s
        if beta is None:
            s = s + k[i][:, :, None] * v[i][:, None, :]
        else:
            u = beta[i][:, None] * (v[i] - np.einsum("hk,hkv->hv", k[i], s))
            s = s + k[i][:, :, None] * u[:, None, :]
        o[i] = d ** -0.5 * np.einsum("hk,hkv->hv", q[i], s)
    o = np_rms(o.reshape(t, nh * d), w(layer.o_norm.scale)).reshape(t, nh, d)
    o = o * sigmoid(np.einsum("td,dnh->tnh", x, w(layer.z_proj.kernel)))
    return np.einsum("tnh,nhd->td", o, w(layer.o_proj.kernel))


@pytest.fixture(scope="module", params=["simple-gla", "gla", "gated-delta"])
def linear_model(request):
    cfg = CFG.replace(mixer_types=("attn", request.param, request.param, "attn"))
    return randomise(CausalLM(cfg, rngs=nnx.Rngs(0)), seed=4)


def test_linear_mixer_matches_naive_recurrence(linear_model):
    layer = linear_model.layers[1].self_attn
    t = 11
    x = np.random.default_rng(5).standard_normal((t, CFG.hidden_size))
    got = layer(jnp.asarray(x[None], jnp.float32), linear_model.layer_context(jnp.arange(t)[None], jnp.float32))
    np.testing.assert_allclose(np.asarray(got)[0], np_linear_mixer(layer, x, CFG.rope_theta), atol=ATOL, rtol=0)


def test_linear_mixer_decode_padding_packing_and_hf(linear_model, ids, tmp_path):
    """Chunked forward == token-by-token decode (the step kernels), pads leave the state alone, segments reset it,
    and the gate tensors survive an HF folder round trip."""
    model = linear_model
    ref = np.asarray(model(ids[:, :9]))
    decode = jax.jit(lambda i, p, c, m: model.decode(i, p, c, token_mask=m))
    prompt, mask = ids[:, :5].copy(), np.ones((2, 5), bool)
    mask[1, :2], prompt[1, :2] = False, 0                       # row 1: 3 real tokens behind 2 pads
    pos = np.maximum(np.cumsum(mask, 1) - 1, 0).astype(np.int32)
    logits, cache = decode(prompt, pos, model.init_cache(2, 16), mask)
    rows = [[np.asarray(logits)[0]], [np.asarray(logits)[1, 2:]]]
    for s in range(4):
        logits, cache = decode(ids[:, 5 + s:6 + s], pos[:, -1:] + 1 + s, cache, np.ones((2, 1), bool))
        rows[0].append(np.asarray(logits)[0])
        rows[1].append(np.asarray(logits)[1])
    np.testing.assert_allclose(np.concatenate(rows[0], 0), ref[0], atol=ATOL, rtol=0)
    alone = np.asarray(model(np.concatenate([ids[1:, 2:5], ids[1:, 5:9]], 1)))[0]
    np.testing.assert_allclose(np.concatenate(rows[1], 0), alone, atol=ATOL, rtol=0)

    a, b = ids[0, :5], ids[1, :7]
    seg = np.array([[1] * 5 + [2] * 7], np.int32)
    pos = np.array([list(range(5)) + list(range(7))], np.int32)
    out = np.asarray(model(np.concatenate([a, b])[None], positions=pos, segment_ids=seg))[0]
    np.testing.assert_allclose(out[5:], np.asarray(model(b[None]))[0], atol=ATOL, rtol=0)

    back = load_pretrained(save_pretrained(model, tmp_path / "hf"))
    assert back.config == model.config
    np.testing.assert_array_equal(np.asarray(back(ids)), np.asarray(model(ids)))


@pytest.mark.parametrize("kind", ["lightning-attn", "simple-gla", "gla", "gated-delta"])
def test_linear_mixers_sharded_over_rows_and_heads_equal_one_device(kind):
    """Under a mesh the recurrence runs per shard (shard_map over batch rows and heads, the layout a Pallas kernel
    needs): 2 rows over `data`, the 4 heads over `tensor`, packed segments, against the same model unsharded."""
    from jaxsuite.core import sharding as shd
    cfg = CFG.replace(mixer_types=("attn", kind, kind, "attn"))
    model = randomise(CausalLM(cfg, rngs=nnx.Rngs(0)), seed=6)
    rng = np.random.default_rng(7)
    ids = rng.integers(0, CFG.vocab_size, (2, 16)).astype(np.int32)
    seg = np.array([[1] * 16, [1] * 6 + [2] * 10], np.int32)
    pos = np.array([list(range(16)), list(range(6)) + list(range(10))], np.int32)
    want = np.asarray(model(ids, positions=pos, segment_ids=seg))
    mesh = shd.make_mesh({"data": 2, "fsdp": 1, "tensor": 4}, jax.devices()[:8])
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, ids, pos, seg):
        with shd.use_sharding(mesh, shd.DEFAULT_RULES):
            return nnx.merge(graphdef, state)(ids, positions=pos, segment_ids=seg)
    text = forward.lower(state, ids, pos, seg).as_text()
    assert "shard_map" in text or "manual" in text                    # the recurrence ran per shard
    np.testing.assert_allclose(np.asarray(forward(state, ids, pos, seg)), want, atol=ATOL, rtol=0)
