"""Hugging Face checkpoints <-> jaxsuite's CausalLM: Qwen3, Qwen2/Qwen2.5, Llama and HypeNet folders.

The whole mapping is data: one table per architecture below, each row
    (HF tensor name, jaxsuite state path, HF shape in config dimensions, layout transform, present-when)
`{i}` stands for the layer index. Dimensions: V vocab, D hidden, I intermediate, N query heads, K kv heads,
H head_dim. Transforms (HF layout -> ours; the inverse is applied on save):
    copy        unchanged
    linear      torch Linear [out, in] -> [in, out]                        (MLP, lm_head)
    proj_heads  [heads*H, D] -> [D, heads, H]                               (q/k/v projections)
    out_heads   [D, N*H] -> [N, H, D]                                       (o projection)
    bias_heads  [heads*H] -> [heads, H]                                     (q/k/v biases)
Present-when: None (always), "untied" (lm_head only without tied embeddings), "attention_bias" (the config flag).

HypeNet's table depends on each layer's kind (`mixer_types`), so `hypenet_table(cfg)` builds it per layer; its extra
dimensions are NL, KL, HL (lightning_nh, lightning_nkv, lightning_head_dim) and R (GLA's gate rank). The learned-decay
linear mixers (simple-gla, gla, gated-delta) are jaxsuite's extension of the HypeNet format; their gate tensors are
named as flash-linear-attention's layers name them. `CONFIG_REGISTRY` maps config.json's model_type to the config
class that load_hf_config builds; every config builds the one model class, CausalLM.

Safetensors are read and written by parsing the format directly (an 8-byte header length, a JSON header, raw
little-endian data), because numpy has no bfloat16: bf16 tensors become `ml_dtypes.bfloat16` arrays. Files are
memory-mapped, so loading touches each tensor once; the model skeleton is built with `nnx.eval_shape`, so no
random initialisation is ever allocated.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from typing import Any, Iterable, Mapping

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from jaxsuite.core.build import check_vocab
from jaxsuite.models.config import ARCHITECTURES, DecoderConfig
from jaxsuite.models.factory import arch_from_config, init_model
from jaxsuite.models.lm import CausalLM
from jaxsuite.models.hypenet_config import (MIXER_ATTN, MIXER_GATED_DELTA, MIXER_GLA, MIXER_LIGHTNING,
                                            MIXER_SIMPLE_GLA, HypeNetConfig)
from jaxsuite.models.mixers_linear import GLA_GATE_RANK

# --- the name tables (HF name, jaxsuite path, HF shape, transform, present-when) --------------------------------
# Rows every architecture here shares: embeddings, final norm, untied lm_head, each layer's two norms
# and its SwiGLU MLP. Each architecture's table below is these rows plus its attention rows.
_BACKBONE_TABLE = (
    ("model.embed_tokens.weight", "embed_tokens.embedding", ("V", "D"), "copy", None),
    ("model.norm.weight", "norm.scale", ("D",), "copy", None),
    ("lm_head.weight", "lm_head.kernel", ("V", "D"), "linear", "untied"),
    ("model.layers.{i}.input_layernorm.weight", "layers.{i}.input_layernorm.scale", ("D",), "copy", None),
    ("model.layers.{i}.post_attention_layernorm.weight", "layers.{i}.post_attention_layernorm.scale", ("D",),
     "copy", None),
    ("model.layers.{i}.mlp.gate_proj.weight", "layers.{i}.mlp.gate_proj.kernel", ("I", "D"), "linear", None),
    ("model.layers.{i}.mlp.up_proj.weight", "layers.{i}.mlp.up_proj.kernel", ("I", "D"), "linear", None),
    ("model.layers.{i}.mlp.down_proj.weight", "layers.{i}.mlp.down_proj.kernel", ("D", "I"), "linear", None),
)

QWEN3_TABLE = _BACKBONE_TABLE + (
    ("model.layers.{i}.self_attn.q_proj.weight", "layers.{i}.self_attn.q_proj.kernel", ("N*H", "D"),
     "proj_heads", None),
    ("model.layers.{i}.self_attn.k_proj.weight", "layers.{i}.self_attn.k_proj.kernel", ("K*H", "D"),
     "proj_heads", None),
    ("model.layers.{i}.self_attn.v_proj.weight", "layers.{i}.self_attn.v_proj.kernel", ("K*H", "D"),
     "proj_heads", None),
    ("model.layers.{i}.self_attn.o_proj.weight", "layers.{i}.self_attn.o_proj.kernel", ("D", "N*H"),
     "out_heads", None),
    ("model.layers.{i}.self_attn.q_proj.bias", "layers.{i}.self_attn.q_proj.bias", ("N*H",), "bias_heads",
     "attention_bias"),
    ("model.layers.{i}.self_attn.k_proj.bias", "layers.{i}.self_attn.k_proj.bias", ("K*H",), "bias_heads",
     "attention_bias"),
    ("model.layers.{i}.self_attn.v_proj.bias", "layers.{i}.self_attn.v_proj.bias", ("K*H",), "bias_heads",
     "attention_bias"),
    ("model.layers.{i}.self_attn.o_proj.bias", "layers.{i}.self_attn.o_proj.bias", ("D",), "copy",
     "attention_bias"),
    ("model.layers.{i}.self_attn.q_norm.weight", "layers.{i}.self_attn.q_norm.scale", ("H",), "copy", None),
    ("model.layers.{i}.self_attn.k_norm.weight", "layers.{i}.self_attn.k_norm.scale", ("H",), "copy", None),
)

# Qwen2/Qwen2.5: q/k/v always biased, o_proj never; no q/k norm.
QWEN2_TABLE = _BACKBONE_TABLE + (
    ("model.layers.{i}.self_attn.q_proj.weight", "layers.{i}.self_attn.q_proj.kernel", ("N*H", "D"),
     "proj_heads", None),
    ("model.layers.{i}.self_attn.k_proj.weight", "layers.{i}.self_attn.k_proj.kernel", ("K*H", "D"),
     "proj_heads", None),
    ("model.layers.{i}.self_attn.v_proj.weight", "layers.{i}.self_attn.v_proj.kernel", ("K*H", "D"),
     "proj_heads", None),
    ("model.layers.{i}.self_attn.o_proj.weight", "layers.{i}.self_attn.o_proj.kernel", ("D", "N*H"),
     "out_heads", None),
    ("model.layers.{i}.self_attn.q_proj.bias", "layers.{i}.self_attn.q_proj.bias", ("N*H",), "bias_heads", None),
    ("model.layers.{i}.self_attn.k_proj.bias", "layers.{i}.self_attn.k_proj.bias", ("K*H",), "bias_heads", None),
    ("model.layers.{i}.self_attn.v_proj.bias", "layers.{i}.self_attn.v_proj.bias", ("K*H",), "bias_heads", None),
)

# Llama: no q/k norm; attention_bias (rare) biases q, k, v and o.
LLAMA_TABLE = _BACKBONE_TABLE + (
    ("model.layers.{i}.self_attn.q_proj.weight", "layers.{i}.self_attn.q_proj.kernel", ("N*H", "D"),
     "proj_heads", None),
    ("model.layers.{i}.self_attn.k_proj.weight", "layers.{i}.self_attn.k_proj.kernel", ("K*H", "D"),
     "proj_heads", None),
    ("model.layers.{i}.self_attn.v_proj.weight", "layers.{i}.self_attn.v_proj.kernel", ("K*H", "D"),
     "proj_heads", None),
    ("model.layers.{i}.self_attn.o_proj.weight", "layers.{i}.self_attn.o_proj.kernel", ("D", "N*H"),
     "out_heads", None),
    ("model.layers.{i}.self_attn.q_proj.bias", "layers.{i}.self_attn.q_proj.bias", ("N*H",), "bias_heads",
     "attention_bias"),
    ("model.layers.{i}.self_attn.k_proj.bias", "layers.{i}.self_attn.k_proj.bias", ("K*H",), "bias_heads",
     "attention_bias"),
    ("model.layers.{i}.self_attn.v_proj.bias", "layers.{i}.self_attn.v_proj.bias", ("K*H",), "bias_heads",
     "attention_bias"),
    ("model.layers.{i}.self_attn.o_proj.bias", "layers.{i}.self_attn.o_proj.bias", ("D",), "copy",
     "attention_bias"),
)

HF_TABLES = {"qwen3": QWEN3_TABLE, "qwen2": QWEN2_TABLE, "llama": LLAMA_TABLE}
assert set(HF_TABLES) == set(ARCHITECTURES), "every architecture in config.py needs a name table"


# HypeNet (model_type "hypenet"): the backbone rows for every layer ("{i}"), plus rows for one layer kind only.
_HYPENET_ATTN = (   # softmax-attention layers
    ("q_proj.weight", "q_proj.kernel", ("N*H", "D"), "proj_heads", None),
    ("k_proj.weight", "k_proj.kernel", ("K*H", "D"), "proj_heads", None),
    ("v_proj.weight", "v_proj.kernel", ("K*H", "D"), "proj_heads", None),
    ("o_proj.weight", "o_proj.kernel", ("D", "N*H"), "out_heads", None),
    ("q_norm.weight", "q_norm.scale", ("H",), "copy", None),
    ("k_norm.weight", "k_norm.scale", ("H",), "copy", None),
    ("o_gate.weight", "o_gate.kernel", ("N*H", "D"), "proj_heads", "attn_use_output_gate"),
)
_HYPENET_LIGHTNING = (   # Lightning-attention layers
    ("q_proj.weight", "q_proj.kernel", ("NL*HL", "D"), "proj_heads", None),
    ("k_proj.weight", "k_proj.kernel", ("KL*HL", "D"), "proj_heads", None),
    ("v_proj.weight", "v_proj.kernel", ("KL*HL", "D"), "proj_heads", None),
    ("o_proj.weight", "o_proj.kernel", ("D", "NL*HL"), "out_heads", None),
    ("z_proj.weight", "z_proj.kernel", ("NL*HL", "D"), "proj_heads", "lightning_use_output_gate"),
    ("o_norm.weight", "o_norm.scale", ("NL*HL",), "copy", "lightning_use_output_norm"),
    ("q_norm.weight", "q_norm.scale", ("HL",), "copy", "lightning_use_qk_norm"),
    ("k_norm.weight", "k_norm.scale", ("HL",), "copy", "lightning_use_qk_norm"),
)


# The decay parameters the learned-decay linear mixers add to the Lightning rows.
_LINEAR_GATES = {
    MIXER_LIGHTNING: (),
    MIXER_SIMPLE_GLA: (("gk_proj.weight", "g_proj.kernel", ("NL", "D"), "linear", None),
                       ("gk_proj.bias", "g_proj.bias", ("NL",), "copy", None)),
    MIXER_GLA: (("gk_proj.0.weight", "gk_down.kernel", ("R", "D"), "linear", None),
                ("gk_proj.1.weight", "gk_up.kernel", ("NL*HL", "R"), "proj_heads", None),
                ("gk_proj.1.bias", "gk_up.bias", ("NL*HL",), "bias_heads", None)),
    MIXER_GATED_DELTA: (("a_proj.weight", "a_proj.kernel", ("NL", "D"), "linear", None),
                        ("b_proj.weight", "b_proj.kernel", ("NL", "D"), "linear", None),
                        ("A_log", "A_log", ("NL",), "copy", None),
                        ("dt_bias", "dt_bias", ("NL",), "copy", None)),
}


def hypenet_table(cfg: HypeNetConfig) -> list[tuple[str, str, tuple[str, ...], str, str | None]]:
    """HypeNet's name table for cfg's mixer_types: the common rows, then each layer's mixer rows."""
    rows = list(_BACKBONE_TABLE)
    for i, kind in enumerate(cfg.mixer_types):
        mixer_rows = _HYPENET_ATTN if kind == MIXER_ATTN else _HYPENET_LIGHTNING + _LINEAR_GATES[kind]
        for hf_name, path, shape, transform, when in mixer_rows:
            rows.append((f"model.layers.{i}.self_attn.{hf_name}", f"layers.{i}.self_attn.{path}", shape, transform,
                         when))
    return rows


# model_type -> config class; every config builds a CausalLM.
CONFIG_REGISTRY = {**{t: DecoderConfig for t in ARCHITECTURES}, "hypenet": HypeNetConfig}


def config_from_hf(hf: Mapping[str, Any]) -> DecoderConfig | HypeNetConfig:
    """The config object for a config.json dict; unknown model_types get DecoderConfig's error message."""
    config_cls = CONFIG_REGISTRY.get(hf.get("model_type"), DecoderConfig)
    return config_cls.from_hf_config(hf)


# Tensors some checkpoints carry that hold no parameters of ours (old rotary buffers).
IGNORED_TENSORS = re.compile(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")

HUB_PATTERNS = ["config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
                "tokenizer*", "special_tokens_map.json", "vocab.json", "merges.txt", "*.model", "chat_template*"]
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


# --- layout transforms ------------------------------------------------------------------------------------------
def _to_ours(kind: str, a: np.ndarray, ours_shape: tuple[int, ...]) -> np.ndarray:
    if kind == "copy":
        return a
    if kind == "linear":                                   # [out, in] -> [in, out]
        return a.T
    if kind == "proj_heads":                               # [heads*H, D] -> [D, heads, H]
        return a.T.reshape(ours_shape)
    if kind == "out_heads":                                # [D, N*H] -> [N, H, D]
        return a.T.reshape(ours_shape)
    if kind == "bias_heads":                               # [heads*H] -> [heads, H]
        return a.reshape(ours_shape)
    raise ValueError(f"unknown transform {kind!r}")


def _to_hf(kind: str, a: np.ndarray, hf_shape: tuple[int, ...]) -> np.ndarray:
    if kind == "copy":
        return a
    if kind == "linear":
        return a.T
    if kind == "proj_heads":                               # [D, heads, H] -> [heads*H, D]
        return a.reshape(a.shape[0], -1).T
    if kind == "out_heads":                                # [N, H, D] -> [D, N*H]
        return a.reshape(-1, a.shape[-1]).T
    if kind == "bias_heads":
        return a.reshape(hf_shape)
    raise ValueError(f"unknown transform {kind!r}")


def _dims(cfg: DecoderConfig | HypeNetConfig) -> dict[str, int]:
    dims = {"V": cfg.vocab_size, "D": cfg.hidden_size, "I": cfg.intermediate_size, "N": cfg.num_attention_heads,
            "K": cfg.num_key_value_heads, "H": cfg.head_dim}
    if isinstance(cfg, HypeNetConfig):
        dims.update(NL=cfg.lightning_nh, KL=cfg.lightning_nkv, HL=cfg.lightning_head_dim, R=GLA_GATE_RANK)
    return dims


def _shape(expr: tuple[str, ...], dims: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(int(np.prod([dims[p] for p in e.split("*")])) for e in expr)


def _path(dotted: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in dotted.split("."))


def name_map(cfg: DecoderConfig | HypeNetConfig) -> list[tuple[str, tuple[Any, ...], tuple[int, ...], str]]:
    """The table for cfg's architecture expanded over layers: [(HF name, state path, HF shape, transform)]."""
    if isinstance(cfg, HypeNetConfig):
        table = hypenet_table(cfg)
        flags = {None: True, "untied": not cfg.tie_word_embeddings}
        flags.update({f: getattr(cfg, f) for f in ("attn_use_output_gate", "lightning_use_output_gate",
                                                   "lightning_use_output_norm", "lightning_use_qk_norm")})
    elif cfg.model_type not in HF_TABLES:
        raise ValueError(f"unknown architecture model_type={cfg.model_type!r}; supported: {sorted(HF_TABLES)}")
    else:
        table = HF_TABLES[cfg.model_type]
        flags = {None: True, "untied": not cfg.tie_word_embeddings, "attention_bias": cfg.attention_bias}
    dims = _dims(cfg)
    rows = []
    for hf_name, path, shape, kind, when in table:
        if not flags[when]:
            continue
        layers = range(cfg.num_hidden_layers) if "{i}" in hf_name else [None]
        for i in layers:
            fmt = (lambda s: s.format(i=i)) if i is not None else (lambda s: s)
            rows.append((fmt(hf_name), _path(fmt(path)), _shape(shape, dims), kind))
    return rows


# --- safetensors (read/write without torch; bf16 via ml_dtypes) -------------------------------------------------
_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
              "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_ST_NAMES = {np.dtype(v): k for k, v in _ST_DTYPES.items()}


class SafetensorsFile:
    """A memory-mapped safetensors file: `keys()`, `shape(name)`, `get(name) -> np.ndarray`."""

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        self.metadata = header.pop("__metadata__", None) or {}
        self.header = header
        self._start = 8 + n
        self._mm = np.memmap(path, dtype=np.uint8, mode="r") if os.path.getsize(path) > self._start else None

    def keys(self) -> list[str]:
        return list(self.header)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.header[name]["shape"])

    def get(self, name: str) -> np.ndarray:
        info = self.header[name]
        if info["dtype"] not in _ST_DTYPES:
            raise ValueError(f"{self.path}: tensor {name!r} has unsupported dtype {info['dtype']}")
        dtype = np.dtype(_ST_DTYPES[info["dtype"]])
        begin, end = info["data_offsets"]
        raw = self._mm[self._start + begin:self._start + end] if end > begin else np.zeros(0, np.uint8)
        return raw.view(dtype).reshape(info["shape"])


def write_safetensors(path: str, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None):
    """Writes tensors in the order given. The header is padded to 8 bytes as the reference writer does."""
    header: dict[str, Any] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    arrays = []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        if a.dtype not in _ST_NAMES:
            raise ValueError(f"tensor {name!r}: dtype {a.dtype} cannot be written to safetensors")
        header[name] = {"dtype": _ST_NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for a in arrays:
            f.write(a.tobytes())


# --- resolving a source -----------------------------------------------------------------------------------------
def _looks_local(source: str) -> bool:
    """Paths, not hub ids: '/x', './x', '~/x', or more than one separator (hub ids are 'org/name')."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or (os.sep != "/" and os.sep in source)


def resolve_source(source: str | os.PathLike) -> str:
    """A local folder for `source`: the folder itself, or a hub snapshot (config, safetensors, tokenizer only)."""
    source = os.fspath(source)
    local = os.path.expanduser(source)
    if os.path.isdir(local):
        return local
    if os.path.exists(local):
        raise NotADirectoryError(f"checkpoint path {source!r} is a file; pass the folder holding config.json")
    if _looks_local(source):
        raise FileNotFoundError(f"checkpoint path not found: {source!r}")
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(repo_id=source, allow_patterns=HUB_PATTERNS)
    except Exception as e:  # offline, unknown repo, gated, ...
        raise FileNotFoundError(f"{source!r} is not a local folder and could not be fetched from the Hugging Face "
                                f"hub ({type(e).__name__}: {e})") from e


def load_hf_config(source: str | os.PathLike) -> DecoderConfig | HypeNetConfig:
    """DecoderConfig (or HypeNetConfig for model_type "hypenet") from a checkpoint folder's config.json."""
    folder = resolve_source(source)
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no config.json in checkpoint folder {folder!r}")
    with open(path) as f:
        return config_from_hf(json.load(f))


def _open_tensors(folder: str) -> dict[str, SafetensorsFile]:
    """tensor name -> the file holding it (single file or sharded with an index)."""
    index_path = os.path.join(folder, INDEX_FILE)
    if os.path.isfile(index_path):
        with open(index_path) as f:
            weight_map = json.load(f)["weight_map"]
        files: dict[str, SafetensorsFile] = {}
        out = {}
        for name, fname in weight_map.items():
            fpath = os.path.join(folder, fname)
            if fname not in files:
                if not os.path.isfile(fpath):
                    raise FileNotFoundError(f"{INDEX_FILE} in {folder!r} names shard {fname!r}, which is missing")
                files[fname] = SafetensorsFile(fpath)
            if name not in files[fname].header:
                raise ValueError(f"{INDEX_FILE} maps tensor {name!r} to {fname!r}, which does not contain it")
            out[name] = files[fname]
        return out
    single = os.path.join(folder, SINGLE_FILE)
    if os.path.isfile(single):
        st = SafetensorsFile(single)
        return {name: st for name in st.keys()}
    present = sorted(os.listdir(folder))
    raise FileNotFoundError(f"no {SINGLE_FILE} or {INDEX_FILE} in checkpoint folder {folder!r} "
                            f"(found: {present}); only safetensors checkpoints are supported")


# --- the model a job config names -------------------------------------------------------------------------------
def build_model(config, tokenizer, mesh=None, rules=None) -> CausalLM:
    """A job config's LM on the mesh: the HF checkpoint `model.init_from` (folder or hub id), or a fresh init of
    `model.arch` (HF config.json field names) whose unset bos / eos / pad ids come from the tokenizer.
    Checks that the tokenizer's ids fit the model's vocabulary.

    It lives here, beside `load_pretrained`, rather than in `models.factory`, because models sit below the HF map.
    """
    if config.model.init_from:
        model = load_pretrained(config.model.init_from, mesh=mesh, rules=rules)
    else:
        cfg = arch_from_config(config.model.arch)
        cfg = cfg.replace(bos_token_id=tokenizer.bos_id if cfg.bos_token_id is None else cfg.bos_token_id,
                          eos_token_id=tokenizer.eos_id if cfg.eos_token_id is None else cfg.eos_token_id,
                          pad_token_id=tokenizer.pad_id if cfg.pad_token_id is None else cfg.pad_token_id)
        model = init_model(cfg, seed=int(config.seed), mesh=mesh, rules=rules)
    check_vocab(tokenizer, model.config.vocab_size, hint=f"set model.arch.vocab_size >= {tokenizer.vocab_size}")
    return model


# --- load -------------------------------------------------------------------------------------------------------
def load_pretrained(source: str | os.PathLike, dtype=jnp.float32, *, mesh=None, rules=None
                    ) -> CausalLM:
    """Builds a CausalLM (Qwen3 / Qwen2 / Llama / HypeNet) from a Hugging Face checkpoint folder or hub id, in `dtype`.

    With `mesh` (and optionally `rules`, default `sharding.DEFAULT_RULES`) each tensor is placed straight onto
    its NamedSharding, so a large model never sits whole on one device.
    """
    folder = resolve_source(source)
    cfg = load_hf_config(folder)
    rows = name_map(cfg)
    tensors = _open_tensors(folder)

    expected = {r[0] for r in rows}
    missing = [r[0] for r in rows if r[0] not in tensors]
    unexpected = sorted(n for n in tensors if n not in expected and not IGNORED_TENSORS.fullmatch(n)
                        and not (n == "lm_head.weight" and cfg.tie_word_embeddings))
    if missing:
        raise ValueError(f"checkpoint {folder!r} ({cfg.model_type}) is missing {len(missing)} tensor(s): {missing}")
    if unexpected:
        raise ValueError(f"checkpoint {folder!r} ({cfg.model_type}) has {len(unexpected)} unexpected tensor(s): "
                         f"{unexpected}")
    for name, _, hf_shape, _ in rows:
        found = tensors[name].shape(name)
        if found != hf_shape:
            raise ValueError(f"shape mismatch for tensor {name!r}: expected {hf_shape} from config.json, "
                             f"found {found}")

    dtype = jnp.dtype(dtype)
    abstract = nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0), param_dtype=dtype))
    graphdef, state = nnx.split(abstract)
    flat = dict(nnx.to_flat_state(state))
    if mesh is not None:
        from jaxsuite.core import sharding as sh
        rules = sh.DEFAULT_RULES if rules is None else rules

        def place(value, var):  # a Variable alone is a leaf of state_shardings
            return jax.device_put(value, sh.state_shardings(var, mesh, rules))
    else:
        place = jnp.asarray
    filled = set()
    for name, path, _, kind in rows:
        var = flat.get(path)
        if var is None:
            raise KeyError(f"name table maps {name!r} to {'.'.join(map(str, path))}, which the model lacks")
        target = tuple(var.get_value().shape)
        value = np.asarray(_to_ours(kind, tensors[name].get(name), target)).astype(dtype)
        if value.shape != target:
            raise ValueError(f"tensor {name!r} converts to {value.shape}, but {'.'.join(map(str, path))} is "
                             f"{target}")
        var.set_value(place(value, var) if mesh is not None else place(value))
        filled.add(path)
    unfilled = [".".join(map(str, p)) for p in flat if p not in filled]
    if unfilled:
        raise KeyError(f"the {cfg.model_type} name table leaves parameters unset: {unfilled}")
    return nnx.merge(graphdef, nnx.from_flat_state(list(flat.items())))


# --- save -------------------------------------------------------------------------------------------------------
def _parse_size(size: int | str | None) -> int | None:
    """Bytes from 123, '500KB', '5GB' (decimal) or '5GiB' (binary), as transformers reads max_shard_size."""
    if size is None or isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*", str(size).upper().replace("IB", "iB"))
    if not m:
        raise ValueError(f"cannot read max_shard_size={size!r}; use bytes or e.g. '500MB', '5GB', '2GiB'")
    base = 1024 if m.group(3) else 1000
    return int(float(m.group(1)) * base ** " KMGT".index(m.group(2) or " "))


def _hf_tensors(model: CausalLM, dtype) -> dict[str, np.ndarray]:
    cfg = model.config
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    out = {}
    for name, path, hf_shape, kind in name_map(cfg):
        a = np.asarray(jax.device_get(flat[path].get_value()))
        a = np.ascontiguousarray(_to_hf(kind, a, hf_shape))
        out[name] = a.astype(dtype) if dtype is not None else a
        assert out[name].shape == hf_shape, (name, out[name].shape, hf_shape)
    return out


def _shards(tensors: Mapping[str, np.ndarray], max_bytes: int | None) -> list[dict[str, np.ndarray]]:
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, a in tensors.items():
        if max_bytes is not None and shards[-1] and size + a.nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = a
        size += a.nbytes
    return shards


_WRITTEN = re.compile(r"(config\.json|generation_config\.json|model\.safetensors\.index\.json|.*\.safetensors)")


def save_pretrained(model: CausalLM, path: str | os.PathLike, dtype=None,
                    max_shard_size: int | str | None = None) -> str:
    """Writes a folder transformers loads: config.json, generation_config.json, safetensors (+ index if sharded).

    HypeNet folders hold the released config fields and tensor names, but (unlike the official checkpoints) no
    `auto_map`: transformers needs HypeNet's custom modeling code to load them.

    dtype: the tensors' dtype (default: the parameters'). The folder is written beside the target and renamed
    into place, so a crash never leaves a half-written checkpoint; files of an existing target that we do not
    write (tokenizer files, README) are carried over.
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"save_pretrained target {path!r} exists and is not a folder")
    np_dtype = None if dtype is None else np.dtype(jnp.dtype(dtype))
    tensors = _hf_tensors(model, np_dtype)
    out_dtype = next(iter(tensors.values())).dtype
    shards = _shards(tensors, _parse_size(max_shard_size))

    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        hf_config = dict(model.config.to_hf_config(), dtype=str(np.dtype(out_dtype).name))
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(hf_config, f, indent=2)
        gen = {k: v for k, v in (("bos_token_id", hf_config["bos_token_id"]),
                                 ("eos_token_id", hf_config["eos_token_id"]),
                                 ("pad_token_id", hf_config["pad_token_id"])) if v is not None}
        with open(os.path.join(tmp, "generation_config.json"), "w") as f:
            json.dump(gen, f, indent=2)
        if len(shards) == 1:
            write_safetensors(os.path.join(tmp, SINGLE_FILE), shards[0])
        else:
            weight_map = {}
            for k, shard in enumerate(shards, 1):
                fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
                write_safetensors(os.path.join(tmp, fname), shard)
                weight_map.update({name: fname for name in shard})
            total = sum(a.nbytes for a in tensors.values())
            with open(os.path.join(tmp, INDEX_FILE), "w") as f:
                json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        old = None
        if os.path.isdir(path):
            for entry in os.listdir(path):
                src = os.path.join(path, entry)
                if not _WRITTEN.fullmatch(entry) and not os.path.exists(os.path.join(tmp, entry)):
                    (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(tmp, entry))
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
            os.rename(path, os.path.join(old, "x"))
        os.rename(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def hf_tensor_names(cfg: DecoderConfig | HypeNetConfig) -> Iterable[str]:
    """The HF tensor names a checkpoint of this architecture holds (for tools and tests)."""
    return [r[0] for r in name_map(cfg)]
