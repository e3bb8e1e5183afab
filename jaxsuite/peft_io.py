"""LoRA adapters as Hugging Face PEFT folders, both ways: `adapter_config.json` + `adapter_model.safetensors`.

    save_peft(model, "runs/sft/adapter", base_model_name_or_path="Qwen/Qwen3-0.6B")
    config = load_peft(model, "path/to/peft_adapter")      # adds the adapters to `model` and fills them

PEFT names a tensor after the Hugging Face module it adapts, "base_model.model.<module>.lora_A.weight" [r, in]
and "...lora_B.weight" [out, r] (torch's [out, in] Linear layout, heads flattened). The modules and our paths
come from `jaxsuite.hf`'s name tables, the same rows that convert the base weights, so every projection the
tables know can carry an adapter. Our A [in..., r] and B [r, out...] keep the kernel's head axes; the conversion
flattens them in the order the tables flatten the kernels (heads major).

Only what PEFT's plain LoRA does is read: adapters with DoRA, bias training, `modules_to_save`, per-module
rank or alpha patterns or embedding adapters are refused with a message naming the option, rather than loaded
into a model that would compute something else.
"""
from __future__ import annotations

import json
import os
import uuid
from typing import Any

import numpy as np
from flax import nnx

from jaxsuite import hf
from jaxsuite.core import files
from jaxsuite.models import lora

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PREFIX = "base_model.model."
LINEAR_KINDS = ("linear", "proj_heads", "out_heads")   # the table rows whose tensor is a projection's kernel


def module_map(model: nnx.Module) -> dict[str, str]:
    """{our projection path ("layers.0.self_attn.q_proj"): its Hugging Face module ("model.layers.0.self_attn.
    q_proj")} for every projection the model's name table converts."""
    out = {}
    for hf_name, path, _, kind in hf.name_map(model.config):
        if kind in LINEAR_KINDS and path[-1] == "kernel" and hf_name.endswith(".weight"):
            out[".".join(str(p) for p in path[:-1])] = hf_name[:-len(".weight")]
    return out


def _short_targets(adapted: list[str], every_module: list[str]) -> list[str]:
    """PEFT's target_modules for the adapted HF modules: their short names when the adapted set is exactly
    every module of those names (the usual case: ["q_proj", "v_proj"]), else the full module names."""
    names = sorted({m.rsplit(".", 1)[-1] for m in adapted})
    covered = sorted(m for m in every_module if m.rsplit(".", 1)[-1] in names)
    return names if covered == sorted(adapted) else sorted(adapted)


def peft_tensors(model: nnx.Module, dtype=None) -> dict[str, np.ndarray]:
    """The model's adapters as PEFT's tensors {name: array} (torch layout), in projection order."""
    modules = module_map(model)
    found = lora.adapters(model)
    if not found:
        raise ValueError("the model has no LoRA adapters to save (apply_lora or load_peft first)")
    unknown = sorted(set(found) - set(modules))
    if unknown:
        raise ValueError(f"adapters on {unknown[:3]} have no Hugging Face module in the {model.config.model_type} "
                         "name table, so PEFT could not place them")
    tensors = {}
    for path, adapter in found.items():
        if adapter.merged:
            raise ValueError(f"the adapter on {path} is merged into its kernel: unmerge_lora before saving it")
        a = np.asarray(hf._host_value(adapter.a[...]), np.float32)      # [in..., r]
        b = np.asarray(hf._host_value(adapter.b[...]), np.float32)      # [r, out...]
        r = adapter.rank
        name = PREFIX + modules[path]
        out_dtype = np.dtype(dtype) if dtype is not None else np.dtype(adapter.a.dtype)
        tensors[f"{name}.lora_A.weight"] = np.ascontiguousarray(a.reshape(-1, r).T).astype(out_dtype)   # [r, in]
        tensors[f"{name}.lora_B.weight"] = np.ascontiguousarray(b.reshape(r, -1).T).astype(out_dtype)   # [out, r]
    return tensors


def save_peft(model: nnx.Module, path: str | os.PathLike, *, base_model_name_or_path: str | None = None,
              dtype=None) -> str:
    """Writes the model's adapters as a PEFT folder that `peft.PeftModel.from_pretrained` loads. The folder is
    written beside the target and renamed into place (a crash leaves the old one or none, never half of one).
    All adapters must share one rank, alpha, dropout and scaling (PEFT's config holds one of each). In a
    multi-process run every process must call this (sharded adapters are gathered); only the primary writes."""
    found = lora.adapters(model)
    tensors = peft_tensors(model, dtype)
    settings = {(a.rank, a.alpha, a.dropout, a.rslora) for a in found.values()}
    if len(settings) != 1:
        raise ValueError(f"adapters with different (rank, alpha, dropout, rslora) {sorted(settings)}: PEFT's "
                         "config holds one setting")
    (rank, alpha, dropout, rslora), = settings
    modules = module_map(model)
    adapted = [modules[p] for p in found]
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model_name_or_path,
        "r": rank, "lora_alpha": alpha, "lora_dropout": dropout, "use_rslora": rslora,
        "target_modules": _short_targets(adapted, list(modules.values())), "bias": "none",
        "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True, "modules_to_save": None,
        "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {},
        "use_dora": False, "revision": None,
    }
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not files.is_primary():
        return path
    target = files.as_path(path)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"save_peft target {path!r} exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    work.mkdir()
    try:
        hf.write_safetensors(work / WEIGHTS_FILE, tensors)
        files.atomic_write_text(work / CONFIG_FILE, json.dumps(config, indent=2))
        files.replace_folder(work, target, keep=lambda name: True)    # a README beside the adapter stays
    except BaseException:
        work.rmtree(missing_ok=True)
        raise
    return path


# options of PEFT's LoraConfig that change the computation, with the value plain LoRA has
_PLAIN = {"use_dora": False, "fan_in_fan_out": False, "modules_to_save": None, "rank_pattern": {},
          "alpha_pattern": {}, "bias": "none", "layers_to_transform": None, "use_qalora": False,
          "target_parameters": None, "lora_bias": False}


def read_peft_config(path: str | os.PathLike) -> dict[str, Any]:
    """adapter_config.json of a PEFT folder, checked to be a plain LoRA we compute exactly."""
    config_path = files.as_path(os.fspath(path)) / CONFIG_FILE
    config = files.read_json_object(config_path, missing=f"{config_path}: no {CONFIG_FILE} (is {os.fspath(path)!r} "
                                                        "a PEFT adapter folder?)")
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{config_path}: peft_type {config.get('peft_type')!r}; only LORA adapters load")
    for key, plain in _PLAIN.items():
        value = config.get(key, plain)
        if value not in (plain, None, {}, [], False) or (plain == "none" and value != "none"):
            raise ValueError(f"{config_path}: {key}={value!r} is not supported (plain LoRA has {plain!r})")
    for key in ("r", "lora_alpha"):
        if key not in config:
            raise ValueError(f"{config_path}: missing {key!r}")
    return config


def load_peft(model: nnx.Module, path: str | os.PathLike, *, seed: int = 0) -> lora.LoraConfig:
    """Adds the PEFT folder's adapters to `model` (on the modules its tensors name) and loads their weights.
    Returns the LoraConfig they were given. Raises on a module the model lacks or a tensor of the wrong shape."""
    config = read_peft_config(path)
    weights_path = files.as_path(os.fspath(path)) / WEIGHTS_FILE
    if not weights_path.exists():
        raise FileNotFoundError(f"{weights_path}: missing (only {WEIGHTS_FILE} adapters load)")
    tensors = hf.SafetensorsFile(weights_path)
    names = tensors.keys()
    by_module: dict[str, dict[str, str]] = {}
    for name in names:
        if not name.startswith(PREFIX) or not name.endswith((".lora_A.weight", ".lora_B.weight")):
            raise ValueError(f"{weights_path}: tensor {name!r} is not a LoRA A/B weight of a Linear layer")
        module, which = name[len(PREFIX):].rsplit(".lora_", 1)
        by_module.setdefault(module, {})[which[0]] = name
    ours = {m: p for p, m in module_map(model).items()}
    unknown = sorted(set(by_module) - set(ours))
    if unknown:
        raise ValueError(f"{weights_path}: adapters for {unknown[:3]}, which this {model.config.model_type} "
                         "model does not have")
    half = sorted(m for m, ab in by_module.items() if set(ab) != {"A", "B"})
    if half:
        raise ValueError(f"{weights_path}: {half[:3]} have only one of lora_A / lora_B")
    cfg = lora.LoraConfig(rank=int(config["r"]), alpha=float(config["lora_alpha"]),
                          dropout=float(config.get("lora_dropout") or 0.0),
                          rslora=bool(config.get("use_rslora", False)),
                          targets=tuple(sorted(ours[m] for m in by_module)))
    lora.apply_lora(model, cfg, seed=seed)
    found = lora.adapters(model)
    for module, ab in by_module.items():
        adapter = found[ours[module]]
        a_t, b_t = tensors.get(ab["A"]), tensors.get(ab["B"])            # [r, in], [out, r]
        a_shape, b_shape = tuple(adapter.a.shape), tuple(adapter.b.shape)
        want_a = (cfg.rank, int(np.prod(a_shape[:-1])))
        want_b = (int(np.prod(b_shape[1:])), cfg.rank)
        if a_t.shape != want_a or b_t.shape != want_b:
            raise ValueError(f"{weights_path}: {module} has lora_A {list(a_t.shape)} and lora_B {list(b_t.shape)}; "
                             f"rank {cfg.rank} on this model needs {list(want_a)} and {list(want_b)}")
        adapter.a[...] = np.asarray(a_t, np.float32).T.reshape(a_shape).astype(adapter.a.dtype)
        adapter.b[...] = np.asarray(b_t, np.float32).T.reshape(b_shape).astype(adapter.b.dtype)
    return cfg
