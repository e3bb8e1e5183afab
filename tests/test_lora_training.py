"""LoRA in training: the frozen base gets no update and no Adam moments, dropout exists only inside a train step,
the pre-training job trains adapters from a Hugging Face checkpoint and exports them as a PEFT folder that peft
loads onto the untouched base, an RL policy's reference is its own base with no second copy of the weights, and
generation decodes through the adapters."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.core import sharding as shd
from jaxsuite.core import train as tr
from jaxsuite.models import lora
from jaxsuite.models.config import DecoderConfig
from jaxsuite.models.factory import init_model

CFG = DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=8, model_type="qwen3")
OPTIM = dict(lr=1e-2, warmup_steps=0, steps=10, weight_decay=0.0, grad_clip=0.0)


def _batch(rows: int = 8, length: int = 16, seed: int = 0) -> dict:
    ids = np.random.default_rng(seed).integers(0, CFG.vocab_size, (rows, length + 1)).astype(np.int32)
    return {"inputs": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": np.ones((rows, length), np.float32)}


def _flat(tree) -> dict:
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.parametrize("accum_steps", [1, 2])
def test_only_the_adapters_train_and_only_they_have_adam_moments(accum_steps):
    model = init_model(CFG)
    lora.apply_lora(model, lora.LoraConfig(rank=2, alpha=4.0, dropout=0.1))
    mesh = shd.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    optimizer = tr.make_optimizer(OPTIM, trainable=lora.is_lora_path)
    graphdef, state, shardings = tr.create_train_state(model, optimizer, mesh)
    before = _flat(state.params)
    step = tr.make_train_step(graphdef, optimizer, mesh=mesh, state_shardings=shardings, accum_steps=accum_steps,
                              trainable=lora.is_lora_path)
    if accum_steps == 1:
        # told what trains, the step computes no weight gradient for the frozen base: a full backward is ~2/3 of
        # the 6 P N FLOPs of a step, its weight-gradient half ~1/3, so the step drops to ~2/3 of the FLOPs
        told = step.lower(state, _batch(16)).compile().cost_analysis()["flops"]
        untold = tr.make_train_step(graphdef, optimizer, mesh=mesh, state_shardings=shardings).lower(
            state, _batch(16)).compile().cost_analysis()["flops"]
        assert told < 0.8 * untold, (told, untold)
    for i in range(3):
        state, metrics = step(state, _batch(16, seed=i))
    after = _flat(state.params)
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    adapter_leaves = {k for k in before if "'lora'" in k}
    assert changed == adapter_leaves and len(adapter_leaves) == 2 * 7 * CFG.num_hidden_layers
    # Adam's moments exist for the adapters only: 2 moments x the adapters' sizes, nothing for the base
    moments = sum(x.size for x in jax.tree.leaves(state.opt_state) if x.ndim >= 1)
    assert moments == 2 * sum(before[k].size for k in adapter_leaves)


def test_dropout_acts_only_inside_a_train_step_and_replays_with_the_step():
    """With the training key of a step, the adapter's dropout changes its output, deterministically for that key;
    without one (evaluation, generation) it is off. The masks depend on the key only, not on the device count."""
    from jaxsuite.core import stochastic
    model = init_model(CFG)
    lora.apply_lora(model, lora.LoraConfig(rank=2, alpha=4.0, dropout=0.5, targets=("q_proj",)))
    for adapter in lora.adapters(model).values():
        adapter.b[...] = jnp.ones_like(adapter.b[...])
    ids = jnp.asarray(_batch(2)["inputs"])
    plain = model(ids)
    with stochastic.training_key(stochastic.step_key(0, jnp.int32(3))):
        first, again = model(ids), model(ids)
    with stochastic.training_key(stochastic.step_key(0, jnp.int32(4))):
        other = model(ids)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    assert np.abs(np.asarray(first) - np.asarray(plain)).max() > 1e-3
    assert np.abs(np.asarray(first) - np.asarray(other)).max() > 1e-3
    # by hand for one adapter: the kept inputs scaled by 1 / (1 - p), then A, B and the scale
    adapter = lora.adapters(model)["layers.0.self_attn.q_proj"]
    x = jax.random.normal(jax.random.key(0), (2, 5, CFG.hidden_size))
    key = stochastic.step_key(0, jnp.int32(3))
    keep = jax.random.bernoulli(jax.random.fold_in(key, adapter.salt), 0.5, x.shape)
    expected = jnp.einsum("btd,dr,rnh->btnh", jnp.where(keep, 2 * x, 0), adapter.a[...], adapter.b[...]) * 2.0
    with stochastic.training_key(key):
        np.testing.assert_allclose(np.asarray(adapter(x)), np.asarray(expected), atol=1e-5)


def test_pretrain_job_trains_adapters_on_a_hf_checkpoint_and_exports_peft(hf_checkpoints, tmp_path):
    """configs/qwen3_pretrain.py:tiny from a transformers checkpoint with model.lora.rank=4: workdir/adapter is a
    PEFT folder that peft puts on the original checkpoint, and workdir/hf (the merged model) gives the same
    logits, so the base was not touched and the merge is the adapter. A rerun resumes and trains nothing."""
    peft = pytest.importorskip("peft")
    import torch
    import transformers
    from jaxsuite import launch
    folder, base = hf_checkpoints("qwen3_notebook")
    work = tmp_path / "run"
    args = ["--config", "configs/qwen3_pretrain.py:tiny", "--workdir", str(work), f"--config.model.init_from={folder}",
            "--config.model.lora.rank=4", "--config.model.lora.targets=q_proj,v_proj,down_proj",
            "--config.model.lora.dropout=0.05", "--config.train.steps=6", "--config.train.checkpoint_every=3",
            "--config.sample.num_samples=0", "--config.train.lr=1e-2"]
    results = launch.main(args)
    # per layer, rank 4: q_proj 64x4 + 4x(4x16), v_proj 64x4 + 4x(2x16), down_proj 128x4 + 4x64; 2 layers
    assert results["lora_params"] == 2 * ((256 + 256) + (256 + 128) + (512 + 256))
    config = json.loads((work / "adapter" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["target_modules"]) == (4, 16.0, ["down_proj", "q_proj", "v_proj"])
    assert config["base_model_name_or_path"] == folder
    ids = torch.as_tensor(np.random.default_rng(0).integers(0, 300, (2, 10)))
    with torch.no_grad():
        plain = base(ids).logits.numpy()
        adapted = peft.PeftModel.from_pretrained(base, str(work / "adapter")).eval()
        try:
            with_adapter = adapted(ids).logits.numpy()
        finally:
            adapted.unload()
        merged = transformers.AutoModelForCausalLM.from_pretrained(str(work / "hf")).eval()(ids).logits.numpy()
    assert np.abs(with_adapter - plain).max() > 1e-3          # training moved the adapters
    np.testing.assert_allclose(merged, with_adapter, atol=2e-4)
    assert sorted(p.name for p in (work / "checkpoints").iterdir() if p.name.isdigit()) == ["3", "6"]
    again = launch.main(args)
    assert again["resumed_from_step"] == 6 and again["lora_params"] == results["lora_params"]


def test_a_lora_policy_uses_its_base_as_the_reference():
    """kl_coef > 0 with adapters: no reference copy is held; at the start (B = 0) the policy is its base, so the
    KL is 0; after updates the KL to the base is positive and equals the k3 KL computed by hand from the base's
    log-probs (the same model under lora_disabled)."""
    from jaxsuite.rl import objectives as obj
    from jaxsuite.rl.policy import Policy, PolicyLossConfig
    model = init_model(CFG)
    lora.apply_lora(model, lora.LoraConfig(rank=2, alpha=4.0, targets=("q_proj", "up_proj")))
    mesh = shd.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    policy = Policy(model, optim=OPTIM, loss=PolicyLossConfig(kl_coef=0.5), mesh=mesh)
    assert policy.reference is None and policy.reference_is_base
    batch = _batch(8, 12)
    batch["positions"] = np.broadcast_to(np.arange(12, dtype=np.int32), (8, 12)).copy()
    batch["advantages"] = np.where(np.arange(8)[:, None] % 2 == 0, 1.0, -1.0) * np.ones((8, 12), np.float32)
    first = policy.update(batch)
    assert first["kl"] == pytest.approx(0.0, abs=1e-7)
    for _ in range(3):
        metrics = policy.update(batch)
    assert metrics["kl"] > 1e-5
    module = policy.module()
    logp, _ = policy.score(batch)
    with lora.lora_disabled():
        base_logits = module(jnp.asarray(batch["inputs"]), positions=jnp.asarray(batch["positions"]))
    base_logp = np.asarray(tr.token_log_probs(base_logits, jnp.asarray(batch["targets"])))
    kl = float(np.mean(np.asarray(obj.k3_kl(jnp.asarray(logp), jnp.asarray(base_logp)))))
    # the base weights are what they were
    init = dict(lora.projections(init_model(CFG)))
    for path, layer in lora.projections(module):
        np.testing.assert_array_equal(np.asarray(layer.kernel[...]), np.asarray(init[path].kernel[...]), err_msg=path)
    # the next update's reported KL is that of the policy before it, on this batch (one mini-batch, one epoch)
    assert policy.update(batch)["kl"] == pytest.approx(kl, rel=1e-3)


def test_generation_decodes_through_the_adapters():
    """The one decode loop sees the adapters (prefill and cached decode alike): greedy tokens and their log-probs
    equal those of the merged model, and differ from the base's."""
    from jaxsuite.generate import generate
    model = init_model(CFG)
    base_out = generate(model, [[1, 5, 9, 3], [1, 7]], 6, stop_tokens=(), return_logprobs=True)
    lora.apply_lora(model, lora.LoraConfig(rank=4, alpha=8.0, targets=("q_proj", "v_proj", "up_proj")))
    for i, adapter in enumerate(lora.adapters(model).values()):
        adapter.b[...] = 0.5 * jax.random.normal(jax.random.key(i), adapter.b.shape)
    adapted = generate(model, [[1, 5, 9, 3], [1, 7]], 6, stop_tokens=(), return_logprobs=True)
    lora.merge_and_unload(model)
    merged = generate(model, [[1, 5, 9, 3], [1, 7]], 6, stop_tokens=(), return_logprobs=True)
    np.testing.assert_array_equal(np.asarray(adapted.tokens), np.asarray(merged.tokens))
    np.testing.assert_allclose(np.asarray(adapted.logprobs), np.asarray(merged.logprobs), atol=1e-4)
    assert not np.array_equal(np.asarray(adapted.tokens), np.asarray(base_out.tokens))
