"""LoRA adapters against Hugging Face peft (PyTorch CPU) on tiny random checkpoints: an adapter set in jaxsuite
gives peft's logits after save_peft -> PeftModel.from_pretrained, and one made by peft gives its logits in
jaxsuite after load_peft; merge / unmerge, the disabled base, and the refusals of what plain LoRA is not."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from jaxsuite import hf, peft_io
from jaxsuite.models import lora

peft = pytest.importorskip("peft")
torch = pytest.importorskip("torch")


def _randomise_b(model, seed: int = 0) -> None:
    """Fresh adapters add nothing (B = 0): give every B random values so the adapters matter."""
    for i, adapter in enumerate(lora.adapters(model).values()):
        adapter.b[...] = 0.2 * jax.random.normal(jax.random.key(seed + i), adapter.b.shape, adapter.b.dtype)


def _torch_logits(model, ids) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(ids), dtype=torch.long)).logits.float().numpy()


@pytest.mark.parametrize("name, targets, rslora", [
    ("qwen3_untied", ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), False),
    ("qwen2_bias", r"layers\.1\.(self_attn\.(q|v)_proj|mlp\.down_proj)", True),     # a regex over our paths
])
def test_an_adapter_set_in_jaxsuite_gives_the_same_logits_in_peft(name, targets, rslora, hf_checkpoints, tmp_path,
                                                                  token_ids):
    folder, torch_model = hf_checkpoints(name)
    model = hf.load_pretrained(folder)
    base = np.asarray(model(token_ids))
    paths = lora.apply_lora(model, lora.LoraConfig(rank=4, alpha=8.0, rslora=rslora, targets=targets))
    np.testing.assert_allclose(np.asarray(model(token_ids)), base, atol=1e-6)   # B = 0: nothing changes yet
    _randomise_b(model)
    ours = np.asarray(model(token_ids))
    assert np.abs(ours - base).max() > 1e-2
    peft_io.save_peft(model, tmp_path / "adapter", base_model_name_or_path=folder)
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    if isinstance(targets, tuple):
        assert config["target_modules"] == sorted(targets)        # every module of those names: PEFT's short form
    else:
        assert config["target_modules"] == sorted(f"model.{p}" for p in paths)
    adapted = peft.PeftModel.from_pretrained(torch_model, str(tmp_path / "adapter")).eval()
    try:
        np.testing.assert_allclose(_torch_logits(adapted, token_ids), ours, atol=2e-4, rtol=1e-4)
    finally:
        adapted.unload()          # the session's torch model gets its plain Linear layers back


def test_an_adapter_made_by_peft_gives_the_same_logits_in_jaxsuite(hf_checkpoints, tmp_path, token_ids):
    folder, torch_model = hf_checkpoints("llama")
    config = peft.LoraConfig(r=3, lora_alpha=5, lora_dropout=0.1, target_modules=["q_proj", "o_proj", "up_proj"],
                             use_rslora=True, task_type="CAUSAL_LM")
    adapted = peft.get_peft_model(torch_model, config).eval()
    try:
        torch.manual_seed(1)
        for name, p in adapted.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.2)
        expected = _torch_logits(adapted, token_ids)
        adapted.save_pretrained(str(tmp_path / "from_peft"))
    finally:
        adapted.unload()
    model = hf.load_pretrained(folder)
    loaded = peft_io.load_peft(model, tmp_path / "from_peft")
    assert (loaded.rank, loaded.alpha, loaded.dropout, loaded.rslora) == (3, 5.0, 0.1, True)
    assert sorted(lora.adapters(model)) == sorted(f"layers.{i}.{m}" for i in range(2)
                                                  for m in ("self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj"))
    np.testing.assert_allclose(np.asarray(model(token_ids)), expected, atol=2e-4, rtol=1e-4)
    # and back out: the same tensors, bit for bit
    peft_io.save_peft(model, tmp_path / "again")
    first = hf.SafetensorsFile(tmp_path / "from_peft" / "adapter_model.safetensors")
    second = hf.SafetensorsFile(tmp_path / "again" / "adapter_model.safetensors")
    assert sorted(first.keys()) == sorted(second.keys())
    for key in first.keys():
        np.testing.assert_array_equal(first.get(key), second.get(key), err_msg=key)


def test_merge_unmerge_and_the_disabled_base(hf_checkpoints, token_ids):
    folder, _ = hf_checkpoints("qwen3_tied")
    model = hf.load_pretrained(folder)
    base_logits = np.asarray(model(token_ids))
    kernels = {p: np.asarray(layer.kernel[...]) for p, layer in lora.projections(model)}
    lora.apply_lora(model, lora.LoraConfig(rank=2, alpha=4.0, targets=("v_proj", "down_proj")))
    _randomise_b(model, seed=7)
    adapted = np.asarray(model(token_ids))
    with lora.lora_disabled():
        np.testing.assert_allclose(np.asarray(model(token_ids)), base_logits, atol=1e-6)
    lora.merge_lora(model)
    np.testing.assert_allclose(np.asarray(model(token_ids)), adapted, atol=1e-5)
    # the merged kernel is the base plus scale * A B, by hand for one projection
    layer = dict(lora.projections(model))["layers.0.mlp.down_proj"]
    a, b = np.asarray(layer.lora.a[...]), np.asarray(layer.lora.b[...])
    np.testing.assert_allclose(np.asarray(layer.kernel[...]), kernels["layers.0.mlp.down_proj"] + 2.0 * a @ b,
                               atol=1e-6)
    lora.unmerge_lora(model)
    for p, layer in lora.projections(model):
        np.testing.assert_allclose(np.asarray(layer.kernel[...]), kernels[p], atol=1e-6, err_msg=p)
    np.testing.assert_allclose(np.asarray(model(token_ids)), adapted, atol=1e-6)
    lora.merge_and_unload(model)
    assert lora.adapters(model) == {}
    np.testing.assert_allclose(np.asarray(model(token_ids)), adapted, atol=1e-5)


def test_bad_targets_and_unsupported_peft_options_are_refused(hf_checkpoints, tmp_path):
    folder, _ = hf_checkpoints("qwen3_tied")
    model = hf.load_pretrained(folder)
    with pytest.raises(ValueError, match=r"matches no projection; the model's are named \['down_proj'"):
        lora.apply_lora(model, lora.LoraConfig(targets=("q_prj",)))
    with pytest.raises(ValueError, match="unknown lora option"):
        lora.LoraConfig.from_config({"rank": 4, "alpah": 8})
    with pytest.raises(ValueError, match="no LoRA adapters to save"):
        peft_io.save_peft(model, tmp_path / "none")
    lora.apply_lora(model, lora.LoraConfig(rank=2, targets=("q_proj",)))
    peft_io.save_peft(model, tmp_path / "ok")
    for key, value in (("use_dora", True), ("modules_to_save", ["lm_head"]), ("bias", "all"),
                       ("rank_pattern", {"q_proj": 8})):
        config = json.loads((tmp_path / "ok" / "adapter_config.json").read_text())
        config[key] = value
        (tmp_path / "ok" / "adapter_config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError, match=f"{key}=.* is not supported"):
            peft_io.load_peft(hf.load_pretrained(folder), tmp_path / "ok")
        config[key] = peft_io._PLAIN[key]
        (tmp_path / "ok" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        peft_io.load_peft(hf.load_pretrained(folder), tmp_path)
    other, _ = hf_checkpoints("qwen3_3layers")     # a model with another hidden size: the shapes cannot fit
    with pytest.raises(ValueError, match="rank 2 on this model needs"):
        peft_io.load_peft(hf.load_pretrained(other), tmp_path / "ok")


def test_adapters_merge_as_task_vectors(hf_checkpoints, token_ids):
    """Two adapters on one base, merged by jaxsuite.core.merging over their deltas (scale * A B): task arithmetic
    equals the kernel plus both deltas by hand, and TIES with density 1 keeps, per entry, the mean of the deltas
    that agree with the elected sign."""
    from jaxsuite.core import merging
    folder, _ = hf_checkpoints("qwen3_tied")
    deltas = []
    for seed in (0, 1):
        model = hf.load_pretrained(folder)
        lora.apply_lora(model, lora.LoraConfig(rank=2, alpha=2.0, targets=("q_proj",)), seed=seed)
        _randomise_b(model, seed=10 * seed)
        deltas.append({k: np.asarray(v) for k, v in lora.adapter_deltas(model).items()})
    base = hf.load_pretrained(folder)
    kernels = {p: np.asarray(layer.kernel[...]) for p, layer in lora.projections(base) if p in deltas[0]}
    summed = merging.task_arithmetic(kernels, [{p: kernels[p] + d[p] for p in kernels} for d in deltas])
    lora.add_deltas(base, {p: summed[p] - kernels[p] for p in kernels})
    for p, layer in lora.projections(base):
        if p in kernels:
            np.testing.assert_allclose(np.asarray(layer.kernel[...]), kernels[p] + deltas[0][p] + deltas[1][p],
                                       atol=1e-5, err_msg=p)
    ties = merging.ties(kernels, [{p: kernels[p] + d[p] for p in kernels} for d in deltas], density=1.0)
    p = "layers.0.self_attn.q_proj"
    d = np.stack([deltas[0][p], deltas[1][p]])
    sign = np.sign(d.sum(0))
    agree = np.sign(d) == sign
    expected = kernels[p] + np.where(agree, d, 0).sum(0) / np.maximum(agree.sum(0), 1)
    np.testing.assert_allclose(np.asarray(ties[p]), expected, atol=1e-5)
    with pytest.raises(ValueError, match="delta of shape"):
        lora.add_deltas(base, {p: np.zeros((3, 3), np.float32)})
