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
import uuid
from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from jaxsuite.core import files
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

# The attention projections every architecture has; the tables differ only in biases and q/k norms.
_ATTENTION_PROJECTIONS = (
    ("model.layers.{i}.self_attn.q_proj.weight", "layers.{i}.self_attn.q_proj.kernel", ("N*H", "D"),
     "proj_heads", None),
    ("model.layers.{i}.self_attn.k_proj.weight", "layers.{i}.self_attn.k_proj.kernel", ("K*H", "D"),
     "proj_heads", None),
    ("model.layers.{i}.self_attn.v_proj.weight", "layers.{i}.self_attn.v_proj.kernel", ("K*H", "D"),
     "proj_heads", None),
    ("model.layers.{i}.self_attn.o_proj.weight", "layers.{i}.self_attn.o_proj.kernel", ("D", "N*H"),
     "out_heads", None),
)


def _attention_biases(flag: str | None, *, o_proj: bool) -> tuple:
    """q/k/v (and o) projection biases, present when the config field `flag` is true (None: always present)."""
    rows = tuple((f"model.layers.{{i}}.self_attn.{p}_proj.bias", f"layers.{{i}}.self_attn.{p}_proj.bias",
                  (width,), "bias_heads", flag) for p, width in (("q", "N*H"), ("k", "K*H"), ("v", "K*H")))
    if o_proj:
        rows += (("model.layers.{i}.self_attn.o_proj.bias", "layers.{i}.self_attn.o_proj.bias", ("D",), "copy",
                  flag),)
    return rows


# Qwen3: attention_bias (off in the released models) biases q, k, v and o; q/k RMS norms over head_dim.
QWEN3_TABLE = _BACKBONE_TABLE + _ATTENTION_PROJECTIONS + _attention_biases("attention_bias", o_proj=True) + (
    ("model.layers.{i}.self_attn.q_norm.weight", "layers.{i}.self_attn.q_norm.scale", ("H",), "copy", None),
    ("model.layers.{i}.self_attn.k_norm.weight", "layers.{i}.self_attn.k_norm.scale", ("H",), "copy", None),
)

# Qwen2/Qwen2.5: q/k/v always biased, o_proj never; no q/k norm.
QWEN2_TABLE = _BACKBONE_TABLE + _ATTENTION_PROJECTIONS + _attention_biases(None, o_proj=False)

# Llama: no q/k norm; attention_bias (rare) biases q, k, v and o.
LLAMA_TABLE = _BACKBONE_TABLE + _ATTENTION_PROJECTIONS + _attention_biases("attention_bias", o_proj=True)

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
    """A safetensors file: `keys()`, `shape(name)`, `get(name) -> np.ndarray`. Local files are memory-mapped;
    a file in a bucket is read one tensor at a time by byte range."""

    def __init__(self, path: files.PathLike):
        self.path = os.fspath(path)
        self._local = not files.is_remote(self.path)
        with files.as_path(self.path).open("rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            try:
                header = json.loads(f.read(n)) if 0 < n < 100_000_000 else None
            except ValueError:
                header = None
        if not isinstance(header, dict):
            raise ValueError(f"{self.path} is not a safetensors file (its header does not decode)")
        self.metadata = header.pop("__metadata__", None) or {}
        self.header = header
        self._start = 8 + n
        self._mm = (np.memmap(self.path, dtype=np.uint8, mode="r")
                    if self._local and os.path.getsize(self.path) > self._start else None)

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
        if end <= begin:
            raw = np.zeros(0, np.uint8)
        elif self._mm is not None:
            raw = self._mm[self._start + begin:self._start + end]
        else:
            with files.as_path(self.path).open("rb") as f:
                f.seek(self._start + begin)
                raw = np.frombuffer(f.read(end - begin), np.uint8)
        if raw.size != end - begin:
            raise ValueError(f"{self.path}: tensor {name!r} is truncated ({raw.size} of {end - begin} bytes)")
        return raw.view(dtype).reshape(info["shape"])


def _st_dtype_name(dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype not in _ST_NAMES:
        raise ValueError(f"dtype {dtype} cannot be written to safetensors")
    return _ST_NAMES[dtype]


def write_safetensors_stream(path: files.PathLike, specs: Mapping[str, tuple[tuple[int, ...], Any]],
                             fetch: Callable[[str], np.ndarray], metadata: Mapping[str, str] | None = None):
    """Writes a safetensors file whose tensors are named with their (shape, dtype) in `specs`, in that order,
    asking `fetch(name)` for each array only when it is written: one tensor in host memory at a time. The
    header is padded to 8 bytes as the reference writer does."""
    header: dict[str, Any] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, (shape, dtype) in specs.items():
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        header[name] = {"dtype": _st_dtype_name(dtype), "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with files.as_path(path).open("wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for name, (shape, dtype) in specs.items():
            a = np.ascontiguousarray(fetch(name))
            if a.shape != tuple(shape) or a.dtype != np.dtype(dtype):
                raise ValueError(f"tensor {name!r}: got {a.dtype}{list(a.shape)}, the header says "
                                 f"{np.dtype(dtype)}{list(shape)}")
            f.write(a.tobytes())


def write_safetensors(path: files.PathLike, tensors: Mapping[str, np.ndarray],
                      metadata: Mapping[str, str] | None = None):
    """Writes in-memory tensors in the order given."""
    tensors = {name: np.asarray(a) for name, a in tensors.items()}
    for name, a in tensors.items():
        if a.dtype not in _ST_NAMES:
            raise ValueError(f"tensor {name!r}: dtype {a.dtype} cannot be written to safetensors")
    write_safetensors_stream(path, {n: (a.shape, a.dtype) for n, a in tensors.items()}, tensors.__getitem__,
                             metadata)


# --- resolving a source -----------------------------------------------------------------------------------------
def _looks_local(source: str) -> bool:
    """Paths, not hub ids: '/x', './x', '~/x', or more than one separator (hub ids are 'org/name')."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or (os.sep != "/" and os.sep in source)


def resolve_source(source: str | os.PathLike) -> str:
    """A folder for `source`: a local folder, a bucket folder (gs://...), or a hub snapshot (config, safetensors,
    tokenizer only)."""
    source = os.fspath(source)
    if files.is_remote(source):
        if not files.as_path(source).is_dir():
            raise FileNotFoundError(f"checkpoint folder not found: {source!r}")
        return source
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
    path = files.as_path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no config.json in checkpoint folder {folder!r}")
    try:
        hf = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)} is not valid JSON ({e})") from e
    return config_from_hf(hf)


def _open_tensors(folder: str) -> dict[str, SafetensorsFile]:
    """tensor name -> the file holding it (single file or sharded with an index)."""
    root = files.as_path(folder)
    if (root / INDEX_FILE).is_file():
        try:
            weight_map = json.loads((root / INDEX_FILE).read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{INDEX_FILE} in {folder!r} is not a safetensors index ({type(e).__name__}: {e})") from e
        opened: dict[str, SafetensorsFile] = {}
        out = {}
        for name, fname in weight_map.items():
            if fname not in opened:
                if not (root / fname).is_file():
                    raise FileNotFoundError(f"{INDEX_FILE} in {folder!r} names shard {fname!r}, which is missing")
                opened[fname] = SafetensorsFile(root / fname)
            if name not in opened[fname].header:
                raise ValueError(f"{INDEX_FILE} maps tensor {name!r} to {fname!r}, which does not contain it")
            out[name] = opened[fname]
        return out
    if (root / SINGLE_FILE).is_file():
        st = SafetensorsFile(root / SINGLE_FILE)
        return {name: st for name in st.keys()}
    present = sorted(p.name for p in root.iterdir())
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


def architecture_of(source: str, key: str = "model.init_from"):
    """The architecture (DecoderConfig / HypeNetConfig) of a checkpoint without loading or downloading it: the
    config.json of a local or bucket folder, or a released hub id `models.presets` knows ("Qwen/Qwen3-1.7B",
    "Qwen/Qwen2.5-Math-7B-Instruct"). Anything else raises ValueError naming `key`: `--compile_only` downloads
    nothing."""
    source = str(source)
    if files.is_remote(source) or os.path.isdir(os.path.expanduser(source)):
        return load_hf_config(source)
    from jaxsuite.models.presets import preset_of_hub_id
    preset = preset_of_hub_id(source)
    if preset is not None:
        return preset
    raise ValueError(f"{key}={source!r} is neither a local or bucket folder nor a released id jaxsuite knows "
                     f"(Qwen3, Qwen2.5-Math): "
                     f"--compile_only reads only the architecture and downloads nothing; point {key} at a folder "
                     f"holding config.json")


def abstract_model(config) -> CausalLM:
    """The LM `build_model` would build, as ShapeDtypeStructs (nnx.eval_shape): nothing allocated, nothing
    downloaded. From `model.arch`, or the architecture of `model.init_from` (`architecture_of`)."""
    cfg = architecture_of(config.model.init_from) if config.model.init_from else arch_from_config(config.model.arch)
    return nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0)))


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


def _host_value(value: jax.Array) -> np.ndarray:
    """One parameter gathered whole onto the host. Every process calls this (a multi-host gather is a
    collective); one tensor at a time, so no device or host ever holds the whole model."""
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(value, tiled=True))
    return np.asarray(jax.device_get(value))


def _hf_specs(model: CausalLM, dtype) -> tuple[dict[str, tuple[tuple[int, ...], Any]], Callable[[str], np.ndarray]]:
    """The HF tensors' (shape, dtype) in name order, and a function giving one of them as a host array."""
    cfg = model.config
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    rows = {name: (path, hf_shape, kind) for name, path, hf_shape, kind in name_map(cfg)}
    specs = {name: (hf_shape, dtype or np.dtype(flat[path].get_value().dtype))
             for name, (path, hf_shape, kind) in rows.items()}

    def fetch(name: str) -> np.ndarray:
        path, hf_shape, kind = rows[name]
        a = _to_hf(kind, _host_value(flat[path].get_value()), hf_shape)
        return np.ascontiguousarray(a.astype(specs[name][1]))

    return specs, fetch


def _shards(specs: Mapping[str, tuple[tuple[int, ...], Any]], max_bytes: int | None) -> list[list[str]]:
    shards: list[list[str]] = [[]]
    size = 0
    for name, (shape, dtype) in specs.items():
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if max_bytes is not None and shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    return shards


_WRITTEN = re.compile(r"(config\.json|generation_config\.json|model\.safetensors\.index\.json|.*\.safetensors)")


def save_pretrained(model: CausalLM, path: str | os.PathLike, dtype=None,
                    max_shard_size: int | str | None = None) -> str:
    """Writes a folder transformers loads: config.json, generation_config.json, safetensors (+ index if sharded).
    `path` may be local or a bucket folder (gs://...).

    HypeNet folders hold the released config fields and tensor names, but (unlike the official checkpoints) no
    `auto_map`: transformers needs HypeNet's custom modeling code to load them.

    dtype: the tensors' dtype (default: the parameters'). Parameters are gathered and written one tensor at a
    time, so the export never holds the whole model on one device or in host memory. In a multi-process run
    every process must call this (the gathers are collectives); only the primary process writes.

    A local folder is written beside the target and renamed into place, so a crash never leaves a half-written
    checkpoint; files of an existing target that we do not write (tokenizer files, README) are carried over.
    A bucket has no folder rename: there the files are written in place (each object whole), config.json last.
    """
    remote = files.is_remote(path)
    path = os.fspath(path) if remote else os.path.abspath(os.path.expanduser(os.fspath(path)))
    target = files.as_path(path)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"save_pretrained target {path!r} exists and is not a folder")
    np_dtype = None if dtype is None else np.dtype(jnp.dtype(dtype))
    specs, fetch = _hf_specs(model, np_dtype)
    out_dtype = next(iter(specs.values()))[1]
    shards = _shards(specs, _parse_size(max_shard_size))
    primary = files.is_primary()
    if not primary:   # take part in every gather; write nothing
        for name in specs:
            fetch(name)
        return path

    target.parent.mkdir(parents=True, exist_ok=True)
    work = target if remote else target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        hf_config = dict(model.config.to_hf_config(), dtype=str(np.dtype(out_dtype).name))
        gen = {k: v for k, v in (("bos_token_id", hf_config["bos_token_id"]),
                                 ("eos_token_id", hf_config["eos_token_id"]),
                                 ("pad_token_id", hf_config["pad_token_id"])) if v is not None}
        files.atomic_write_text(work / "generation_config.json", json.dumps(gen, indent=2))
        names = []
        for k, shard in enumerate(shards, 1):
            fname = SINGLE_FILE if len(shards) == 1 else f"model-{k:05d}-of-{len(shards):05d}.safetensors"
            write_safetensors_stream(work / fname, {n: specs[n] for n in shard}, fetch)
            names.append(fname)
        if len(shards) > 1:
            weight_map = {n: fname for fname, shard in zip(names, shards) for n in shard}
            total = sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize for shape, dt in specs.values())
            files.atomic_write_text(work / INDEX_FILE, json.dumps(
                {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
        if remote:   # drop what an earlier export wrote and this one did not (a different shard count)
            for entry in target.iterdir():
                if _WRITTEN.fullmatch(entry.name) and entry.name not in names and entry.name not in (
                        "config.json", "generation_config.json", INDEX_FILE):
                    entry.unlink()
            if len(shards) == 1 and (target / INDEX_FILE).exists():
                (target / INDEX_FILE).unlink()
        files.atomic_write_text(work / "config.json", json.dumps(hf_config, indent=2))
        if not remote:
            files.replace_folder(work, target, keep=lambda name: not _WRITTEN.fullmatch(name))
    except BaseException:
        if not remote:
            work.rmtree(missing_ok=True)
        raise
    return path


def hf_tensor_names(cfg: DecoderConfig | HypeNetConfig) -> Iterable[str]:
    """The HF tensor names a checkpoint of this architecture holds (for tools and tests)."""
    return [r[0] for r in name_map(cfg)]
