"""CausalLM against transformers: logit parity, HF round trips, dtypes, shards, packing, KV-cache decode, errors.

The oracle is transformers itself (eager attention, float32) on tiny random checkpoints from conftest.py.
"""
from __future__ import annotations

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.hf import SafetensorsFile, load_hf_config, load_pretrained, save_pretrained, write_safetensors
from jaxsuite.models import DecoderConfig, CausalLM, KVCache, count_params

ATOL = 1e-4


def hf_logits(model, ids: np.ndarray) -> np.ndarray:
    import torch
    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(ids), dtype=torch.long)).logits.float().numpy()


@pytest.fixture(scope="module")
def qwen3(hf_checkpoints):
    folder, hf = hf_checkpoints("qwen3_untied")
    return folder, hf, load_pretrained(folder)


@pytest.mark.parametrize("name", ["qwen3_tied", "qwen3_untied", "qwen2_bias", "llama", "llama_rope3",
                                  "llama_dynamic"])
def test_logits_match_transformers_and_round_trip(name, hf_checkpoints, token_ids, tmp_path):
    import transformers

    folder, hf = hf_checkpoints(name)
    ref = hf_logits(hf, token_ids)
    model = load_pretrained(folder)
    cfg = model.config
    assert (model.lm_head is None) == cfg.tie_word_embeddings
    assert count_params(cfg) == sum(p.numel() for p in hf.parameters())
    ours = np.asarray(model(token_ids))
    assert ours.dtype == np.float32 and ours.shape == (2, 12, 256)
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)

    # jaxsuite -> save_pretrained -> transformers gives the original logits back.
    out = save_pretrained(model, tmp_path / "saved")
    assert sorted(os.listdir(out)) == ["config.json", "generation_config.json", "model.safetensors"]
    back = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    assert type(back) is type(hf)
    np.testing.assert_allclose(hf_logits(back, token_ids), ref, atol=1e-6, rtol=0)


def test_rope_scaling_changes_logits(hf_checkpoints, token_ids):
    """The llama3 / dynamic cases above would be vacuous if their scaling did nothing at these positions."""
    ref = hf_logits(hf_checkpoints("llama")[1], token_ids)  # same seed and shapes, default RoPE
    assert load_hf_config(hf_checkpoints("llama_rope3")[0]).rope_scaling_dict["rope_type"] == "llama3"
    assert np.abs(hf_logits(hf_checkpoints("llama_rope3")[1], token_ids) - ref).max() > 1e-3
    assert load_hf_config(hf_checkpoints("llama_dynamic")[0]).rope_scaling_dict["rope_type"] == "dynamic"


def test_bfloat16_checkpoint(hf_checkpoints, token_ids):
    import torch
    import transformers

    folder, _ = hf_checkpoints("qwen2_bias", dtype=torch.bfloat16)
    assert SafetensorsFile(os.path.join(folder, "model.safetensors")).header[
        "model.embed_tokens.weight"]["dtype"] == "BF16"
    hf32 = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                             attn_implementation="eager").eval()
    ref = hf_logits(hf32, token_ids)
    # bf16 weights upcast to f32 are exact, so f32 compute matches tightly ...
    np.testing.assert_allclose(np.asarray(load_pretrained(folder)(token_ids)), ref, atol=ATOL, rtol=0)
    # ... and bf16 compute matches loosely (bf16 has ~3 significant digits).
    model16 = load_pretrained(folder, dtype=jnp.bfloat16)
    assert model16.layers[0].self_attn.q_proj.kernel[...].dtype == jnp.bfloat16
    out16 = np.asarray(model16(token_ids))
    assert out16.dtype == np.float32
    assert np.abs(out16 - ref).max() < 0.05 * np.abs(ref).max()
    assert (out16.argmax(-1) == ref.argmax(-1)).mean() > 0.9


def test_sharded_checkpoints_both_ways(hf_checkpoints, token_ids, qwen3, tmp_path):
    import transformers

    folder, hf = hf_checkpoints("qwen3_untied", max_shard_size="40KB")
    assert os.path.isfile(os.path.join(folder, "model.safetensors.index.json"))
    ref = hf_logits(hf, token_ids)
    np.testing.assert_allclose(np.asarray(load_pretrained(folder)(token_ids)), ref, atol=ATOL, rtol=0)

    out = save_pretrained(qwen3[2], tmp_path / "sharded", max_shard_size=40_000)
    shards = sorted(f for f in os.listdir(out) if f.endswith(".safetensors"))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    for f in shards:
        assert os.path.getsize(os.path.join(out, f)) < 80_000
    back = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    np.testing.assert_allclose(hf_logits(back, token_ids), ref, atol=1e-6, rtol=0)
    # save over an existing folder: atomic replace, foreign files (tokenizer) carried over, no temp dirs left
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        f.write("{}")
    save_pretrained(qwen3[2], out, dtype=jnp.bfloat16)
    assert sorted(os.listdir(out)) == ["config.json", "generation_config.json", "model.safetensors",
                                       "tokenizer.json"]
    assert sorted(os.listdir(tmp_path)) == ["sharded"]
    assert json.load(open(os.path.join(out, "config.json")))["dtype"] == "bfloat16"


def test_packed_segments_equal_separate_runs(qwen3, token_ids):
    _, hf, model = qwen3
    a, b = token_ids[0, :5], token_ids[1, :7]
    packed = np.concatenate([a, b])[None]                                  # [1, 12]
    segment_ids = np.array([[1] * 5 + [2] * 7], np.int32)
    positions = np.array([list(range(5)) + list(range(7))], np.int32)
    out = np.asarray(model(packed, positions=positions, segment_ids=segment_ids))[0]
    np.testing.assert_allclose(out[:5], hf_logits(hf, a[None])[0], atol=ATOL, rtol=0)
    np.testing.assert_allclose(out[5:], hf_logits(hf, b[None])[0], atol=ATOL, rtol=0)
    # without segment ids the second sequence would see the first: the mask is doing the work
    mixed = np.asarray(model(packed, positions=positions))[0]
    assert np.abs(mixed[5:] - out[5:]).max() > 1e-3


def test_hidden_states_and_inputs_embeds(qwen3, token_ids):
    _, _, model = qwen3
    logits = model(token_ids)
    embeds = model.embed(jnp.asarray(token_ids))
    np.testing.assert_allclose(np.asarray(model(inputs_embeds=embeds)), np.asarray(logits), atol=1e-6)
    hidden = model.hidden_states(token_ids)
    assert hidden.shape == (2, 12, 64)
    np.testing.assert_allclose(np.asarray(model.logits(hidden)), np.asarray(logits), atol=1e-6)


def test_decode_with_cache_matches_full_forward(qwen3, token_ids):
    _, hf, model = qwen3
    ref = hf_logits(hf, token_ids[:, :9])                                 # [2, 9, V]
    decode = jax.jit(lambda ids, pos, cache, mask: model.decode(ids, pos, cache, token_mask=mask))

    # prefill 6 tokens, then 3 single-token steps
    cache = model.init_cache(2, 16)
    assert isinstance(cache, KVCache) and cache.layers[0]["k"].shape == (2, 2, 16, 32)   # [B, Kv, S, Hd]
    pos = np.broadcast_to(np.arange(6, dtype=np.int32), (2, 6))
    logits, cache = decode(token_ids[:, :6], pos, cache, np.ones((2, 6), bool))
    steps = [np.asarray(logits)]
    for t in range(6, 9):
        logits, cache = decode(token_ids[:, t:t + 1], np.full((2, 1), t, np.int32), cache, np.ones((2, 1), bool))
        steps.append(np.asarray(logits))
    assert int(cache.index) == 9 and bool(cache.valid[:, :9].all()) and not bool(cache.valid[:, 9:].any())
    np.testing.assert_allclose(np.concatenate(steps, axis=1), ref, atol=ATOL, rtol=0)

    # left-padded batch: row 1's prompt is 4 tokens behind 2 pads; its logits equal running it alone.
    prompt = token_ids[:, :6].copy()
    mask = np.ones((2, 6), bool)
    mask[1, :2] = False
    prompt[1, :2] = 0
    pos = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)
    cache = model.init_cache(2, 16)
    logits, cache = decode(prompt, pos, cache, mask)
    got = [np.asarray(logits)[1, 2:]]
    nxt = token_ids[:, 6:9]
    for s in range(3):
        step_pos = (pos[:, -1:] + 1 + s).astype(np.int32)
        logits, cache = decode(nxt[:, s:s + 1], step_pos, cache, np.ones((2, 1), bool))
        got.append(np.asarray(logits)[1])
    alone = hf_logits(hf, np.concatenate([token_ids[1:, 2:6], nxt[1:]], axis=1))[0]  # [7, V]
    np.testing.assert_allclose(np.concatenate(got, axis=0), alone, atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.asarray(logits)[0, 0], ref[0, 8], atol=ATOL, rtol=0)
    assert np.isfinite(np.asarray(cache.layers[0]["k"])).all()


def test_cached_attention_equals_attention_over_the_written_cache():
    """The decode read (old cache + new keys, two masks) against plain attention over the cache after the write."""
    from jaxsuite.models.attention import cached_attention, decode_masks, dot_product_attention
    rng = np.random.default_rng(0)
    b, t, n, kv, hd, slots, index = 2, 3, 4, 2, 8, 12, 5
    q, k, v = (jnp.asarray(rng.standard_normal((b, t, heads, hd)), jnp.float32) for heads in (n, kv, kv))
    k_cache, v_cache = (jnp.asarray(rng.standard_normal((b, kv, slots, hd)), jnp.float32) for _ in range(2))
    valid = np.zeros((b, slots), bool)
    valid[:, :index] = True
    valid[1, :2] = False                                   # row 1 was left-padded
    valid[:, index:index + t] = [[True, True, True], [False, True, True]]   # row 1's first new token is a pad
    cached_mask, new_mask = decode_masks(jnp.int32(index), t, jnp.asarray(valid))
    got = cached_attention(q, k_cache, v_cache, k, v, cached_mask, new_mask, hd ** -0.5)

    k_all = np.asarray(k_cache).copy()
    v_all = np.asarray(v_cache).copy()
    k_all[:, :, index:index + t] = np.swapaxes(np.asarray(k), 1, 2)
    v_all[:, :, index:index + t] = np.swapaxes(np.asarray(v), 1, 2)
    causal = (index + np.arange(t))[:, None] >= np.arange(slots)[None, :]          # [T, S]
    mask = causal[None] & valid[:, None, :]
    want = dot_product_attention(q, jnp.swapaxes(k_all, 1, 2), jnp.swapaxes(v_all, 1, 2), jnp.asarray(mask),
                                 hd ** -0.5)
    real = np.asarray(valid[:, index:index + t])          # a pad query's output is never used
    np.testing.assert_allclose(np.asarray(got)[real], np.asarray(want)[real], atol=1e-6, rtol=0)


@pytest.mark.parametrize("batch", [1, 2])
def test_donated_decode_step_updates_the_cache_in_place(qwen3, batch):
    """The compiled single-token step must not copy a cache buffer: a copy reads and writes the whole cache every
    token (at batch 1 XLA made four per buffer before the write was ordered after the read; benchmarks/RESULTS.md)."""
    _, _, model = qwen3
    from flax import nnx
    graph, state = nnx.split(model)
    slots = 777                                            # a length no other array in the step has

    def step(state, ids, pos, cache):
        return nnx.merge(graph, state).decode(ids, pos, cache)

    cache = jax.eval_shape(lambda: model.init_cache(batch, slots))
    ids = jax.ShapeDtypeStruct((batch, 1), jnp.int32)
    hlo = jax.jit(step, donate_argnums=3).lower(state, ids, ids, cache).compile().as_text()
    buffer = "[" + ",".join(map(str, cache.layers[0]["k"].shape)) + "]"      # f32[B,Kv,S,Hd]
    cache_copies = [line for line in hlo.splitlines() if " copy(" in line and buffer + "{" in line]
    assert "dynamic-update-slice" in hlo and cache_copies == []


# --- errors name the problem ------------------------------------------------------------------------------------
def _copy(folder, tmp_path) -> str:
    dst = str(tmp_path / "ckpt")
    shutil.copytree(folder, dst)
    return dst


def test_missing_and_unexpected_tensor(hf_checkpoints, tmp_path):
    dst = _copy(hf_checkpoints("qwen3_tied")[0], tmp_path)
    path = os.path.join(dst, "model.safetensors")
    st = SafetensorsFile(path)
    tensors = {k: np.array(st.get(k)) for k in st.keys()}
    k_norm = tensors.pop("model.layers.1.self_attn.k_norm.weight")
    write_safetensors(path, tensors)
    with pytest.raises(ValueError, match=r"missing 1 tensor.*model\.layers\.1\.self_attn\.k_norm\.weight"):
        load_pretrained(dst)
    tensors["model.layers.1.self_attn.k_norm.weight"] = k_norm
    tensors["model.layers.1.mlp.extra.weight"] = k_norm
    write_safetensors(path, tensors)
    with pytest.raises(ValueError, match=r"unexpected.*model\.layers\.1\.mlp\.extra\.weight"):
        load_pretrained(dst)


def test_shape_mismatch_and_unknown_architecture(hf_checkpoints, tmp_path):
    dst = _copy(hf_checkpoints("llama")[0], tmp_path)
    cfg_path = os.path.join(dst, "config.json")
    hf_cfg = json.load(open(cfg_path))
    json.dump({**hf_cfg, "intermediate_size": 96}, open(cfg_path, "w"))
    with pytest.raises(ValueError, match=r"shape mismatch.*mlp\.(gate|up|down)_proj\.weight.*\(96, 64\).*\(128, 64\)"
                       r"|shape mismatch.*mlp\.down_proj\.weight.*\(64, 96\).*\(64, 128\)"):
        load_pretrained(dst)
    json.dump({**hf_cfg, "model_type": "gpt2"}, open(cfg_path, "w"))
    with pytest.raises(ValueError, match="unknown architecture.*gpt2"):
        load_pretrained(dst)


def test_missing_path():
    with pytest.raises(FileNotFoundError, match="/no/such/checkpoint"):
        load_pretrained("/no/such/checkpoint")
    with pytest.raises(FileNotFoundError, match=r"\./nowhere"):
        load_hf_config("./nowhere")


def test_random_init_and_config_round_trip():
    from flax import nnx

    cfg = DecoderConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=32, tie_word_embeddings=False)
    assert DecoderConfig.from_hf_config(cfg.to_hf_config()) == cfg
    model = CausalLM(cfg, rngs=nnx.Rngs(0))
    q = model.layers[0].self_attn.q_proj.kernel
    assert q.get_metadata()["logical_axes"] == ("embed", "q_heads", "head_dim")
    assert abs(float(jnp.std(q[...])) - 0.02) < 0.002
    assert bool((model.layers[1].self_attn.k_norm.scale[...] == 1).all())
    n = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert n == count_params(cfg)


def test_sharded_forward_and_decode_on_mesh(qwen3, token_ids):
    """Under a data x fsdp x tensor mesh (8 CPU devices) the jitted forward and decode give the same logits."""
    from flax import nnx

    from jaxsuite.core import sharding as sh

    if jax.device_count() < 8:
        pytest.skip("needs 8 (forced CPU) devices")
    _, _, model = qwen3
    ids = np.concatenate([token_ids, token_ids[::-1]])                    # [4, 12]
    ref = np.asarray(model(ids))
    mesh = sh.make_mesh({"data": -1, "fsdp": 2, "tensor": 2})
    graphdef, state = nnx.split(model)
    state = jax.device_put(state, sh.state_shardings(state, mesh, sh.DEFAULT_RULES))
    assert state["layers"][0]["self_attn"]["q_proj"]["kernel"][...].sharding.spec == jax.P("fsdp", "tensor", None)

    @jax.jit
    def step(state, ids, positions, cache):
        m = nnx.merge(graphdef, state)
        return m(ids), m.decode(ids, positions, cache)

    with sh.use_sharding(mesh):
        logits, (dec, cache) = step(state, ids, np.broadcast_to(np.arange(12, dtype=np.int32), (4, 12)),
                                    model.init_cache(4, 16))
    assert logits.sharding.spec[0] == ("data", "fsdp")
    np.testing.assert_allclose(np.asarray(logits), ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(dec), ref, atol=1e-5, rtol=0)


def test_export_and_load_through_a_bucket_from_a_sharded_model(qwen3, token_ids, fake_bucket, tmp_path):
    """save_pretrained to gs://... and load_pretrained back, from parameters sharded over 8 devices: the export
    gathers one tensor at a time (no whole-model copy), writes only through epath, and transformers reads the
    bytes it wrote unchanged."""
    import transformers

    from jaxsuite.core import files, sharding as sh

    folder, hf, model = qwen3
    mesh = sh.make_mesh({"data": 1, "fsdp": -1, "tensor": 1}) if jax.device_count() >= 2 else None
    sharded = load_pretrained(folder, mesh=mesh)
    if mesh is not None:
        q = sharded.layers[0].self_attn.q_proj.kernel[...]
        assert not q.sharding.is_fully_replicated, "the model under test is not sharded"
    url = f"{fake_bucket}/export"
    assert save_pretrained(sharded, url, max_shard_size=40_000) == url
    names = sorted(p.name for p in files.as_path(url).iterdir())
    assert "model.safetensors.index.json" in names and "config.json" in names
    assert not os.path.exists(url) and not os.path.exists("gs:")       # nothing went to a local path
    np.testing.assert_allclose(np.asarray(load_pretrained(url)(token_ids)), hf_logits(hf, token_ids),
                               atol=ATOL, rtol=0)
    # the bucket's bytes, copied out, load in transformers as they are
    local = tmp_path / "copied"
    local.mkdir()
    for name in names:
        (local / name).write_bytes(files.read_bytes(f"{url}/{name}"))
    back = transformers.AutoModelForCausalLM.from_pretrained(local, attn_implementation="eager").eval()
    np.testing.assert_allclose(hf_logits(back, token_ids), hf_logits(hf, token_ids), atol=1e-6, rtol=0)
    # a second export in one file replaces the shards in place, leaving no stale shard or index behind
    save_pretrained(sharded, url)
    assert sorted(p.name for p in files.as_path(url).iterdir()) == ["config.json", "generation_config.json",
                                                                    "model.safetensors"]
    with pytest.raises(FileNotFoundError, match="checkpoint folder not found"):
        load_pretrained(f"{fake_bucket}/missing")


def test_truncated_or_foreign_safetensors_name_the_file(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="is not a safetensors file"):
        SafetensorsFile(bad)
    write_safetensors(bad, {"w": np.ones((4, 4), np.float32)})
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        SafetensorsFile(bad).get("w")
