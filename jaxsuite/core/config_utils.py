"""Config files, command-line overrides and the job contract, kept out of the launcher so they can be tested.

A config is a Python file with `get_config(arg=None) -> ml_collections.ConfigDict` (big_vision style): the
file's docstring shows its own launch command, and an optional argument after a colon picks a variant
(`configs/qwen3_pretrain.py:tiny`). Overrides use the ml_collections flag syntax
(`--config.train.steps=10`) but are parsed here rather than by absl's global FLAGS, so the same code can be
called in-process from tests and from notebooks. An override is parsed by the *type of the field it
replaces*, so `--config.tokenizer=123` stays the string "123", and a key that does not exist or a value
that does not fit fails at start with a message that names the key, instead of after an hour on a pod.

The blocks every training config shares are built here too: `train_block(**overrides)` (what the training
loop reads, with TRAIN_DEFAULTS) and `data_block(**overrides)` (a language-model job's data); a config names
its tokenizer once, as the string `config.tokenizer`.

Nothing here touches jax devices: configs are loaded and validated before `jax.distributed` is initialised.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import ml_collections

log = logging.getLogger("jaxsuite.config")

# The repository root: the parent of the `jaxsuite` package (jaxsuite/core/config_utils.py -> parents[2]).
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = "configs/halo_tiny.py"   # the main job: the HALO quickstart

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class ConfigError(ValueError):
    """A config file, override or job spec that cannot be used; the message names the culprit."""


# --- loading ----------------------------------------------------------------------------------------------
def split_config_spec(spec: str) -> tuple[str, str | None]:
    """'configs/x.py:tiny' -> ('configs/x.py', 'tiny'); 'configs/x.py' -> ('configs/x.py', None); a bare name
    'x:tiny' -> ('x', 'tiny').

    Splits at the first '.py:' so an argument may itself contain colons ('x.py:tiny:steps=3').
    """
    idx = spec.find(".py:")
    if idx < 0:
        if ":" in spec and os.sep not in spec and "/" not in spec:    # a bare config name: 'qwen3_pretrain:tiny'
            name, arg = spec.split(":", 1)
            return name, (arg if arg != "" else None)
        return spec, None
    arg = spec[idx + 4:]
    return spec[:idx + 3], (arg if arg != "" else None)


def installed_configs() -> Path | None:
    """The configs folder that ships inside an installed jaxsuite (jaxsuite.configs), or None."""
    import importlib.util
    try:
        spec = importlib.util.find_spec("jaxsuite.configs")
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def resolve_config_path(path: str | os.PathLike) -> Path:
    """Finds a config file: as given (absolute, or relative to the CWD), then relative to the repo root, then in
    the configs that ship with an installed jaxsuite ("configs/x.py", "x.py" or "x" all name configs/x.py)."""
    p = Path(path).expanduser()
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, REPO_ROOT / p]
    if not p.is_absolute() and (len(p.parts) == 1 or (len(p.parts) == 2 and p.parts[0] == "configs")):
        name = p.name if p.suffix == ".py" else p.name + ".py"
        for folder in (REPO_ROOT / "configs", installed_configs()):
            if folder is not None and folder / name not in candidates:
                candidates.append(folder / name)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise ConfigError(f"config file {str(path)!r} not found (tried {tried})")


def load_config(spec: str | os.PathLike, arg: str | None = None) -> ml_collections.ConfigDict:
    """Loads `get_config([arg])` from a config file; `spec` may carry the argument as 'path.py:arg'.

    The file is imported as a fresh module each time (no caching across calls), so two loads never share
    mutable state.
    """
    path_str, spec_arg = split_config_spec(os.fspath(spec))
    if spec_arg is not None and arg is not None:
        raise ConfigError(f"config argument given twice: {spec!r} and arg={arg!r}")
    arg = spec_arg if arg is None else arg
    path = resolve_config_path(path_str)
    module = _import_config_file(path)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(f"config file {path} has no get_config() function")
    n_params = len(inspect.signature(get_config).parameters)
    if arg is not None and n_params == 0:
        raise ConfigError(f"config file {path} takes no argument, but {arg!r} was given")
    if arg is not None:
        config = get_config(arg)
    elif n_params == 0 or _has_default(get_config):
        config = get_config()
    else:
        config = get_config(None)
    if isinstance(config, ml_collections.FrozenConfigDict):
        config = ml_collections.ConfigDict(config)
    elif isinstance(config, dict):
        config = ml_collections.ConfigDict(config)
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"get_config() in {path} returned {type(config).__name__}, expected a ConfigDict")
    return config


def _import_config_file(path: Path):
    """Imports a config file as a fresh module (registered: dataclasses and pickling inside need that)."""
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    module_name = f"_jaxsuite_config_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(module_name, None)
        raise ConfigError(f"config file {path} failed to import: {type(e).__name__}: {e}") from e
    return module


def list_configs(folder: str | os.PathLike = "configs") -> list[dict[str, Any]]:
    """Every config file in `folder` (relative paths: the CWD's, then the repo's): [{"path", "summary" (its
    docstring's first sentence), "variants" ({name: one line}, the file's VARIANTS; the first is the default)}],
    sorted by file name. A file that fails to import is listed with its error as the summary."""
    where = Path(folder).expanduser()
    if not where.is_absolute():
        shipped = installed_configs() if str(folder) == "configs" else None
        options = [Path.cwd() / where, REPO_ROOT / where] + ([shipped] if shipped is not None else [])
        where = next((c for c in options if c.is_dir()), REPO_ROOT / where)
    if not where.is_dir():
        raise ConfigError(f"no config folder {str(folder)!r} (tried {Path.cwd() / folder}, {REPO_ROOT / folder})")
    out = []
    for path in sorted(where.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            module = _import_config_file(path.resolve())
        except ConfigError as e:
            out.append({"path": str(path), "summary": f"(does not import: {e})", "variants": {}})
            continue
        doc = (module.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        out.append({"path": f"{folder}/{path.name}" if not Path(folder).is_absolute() else str(path),
                    "summary": doc, "variants": dict(getattr(module, "VARIANTS", {}) or {})})
    return out


def format_config_list(entries: list[dict[str, Any]]) -> str:
    """The `--list` text: each config with its summary, then one line per variant (the default marked)."""
    lines = []
    for entry in entries:
        lines.append(f"{entry['path']}: {entry['summary']}")
        for i, (name, about) in enumerate(entry["variants"].items()):
            lines.append(f"    :{name:<10} {about}{'  (default)' if i == 0 else ''}")
    return "\n".join(lines)


def _has_default(fn: Callable) -> bool:
    params = list(inspect.signature(fn).parameters.values())
    return bool(params) and params[0].default is not inspect.Parameter.empty


# --- overrides --------------------------------------------------------------------------------------------
def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> ml_collections.ConfigDict:
    """Sets dotted keys in place (`{"train.steps": "10"}`) and returns the config.

    String values are parsed by the type of the field they replace (bool: true/false/1/0, int, float, str
    as-is, tuple/list/dict as Python literals, None-valued fields: a literal or else the raw string).
    Non-string values are assigned as they are, under ConfigDict's own type checks. Unknown keys and values
    of the wrong type raise ConfigError naming `config.<key>`.
    """
    items = overrides.items() if isinstance(overrides, Mapping) else overrides
    for key, raw in items:
        parent, leaf = _walk_to_parent(config, key)
        if isinstance(parent, ml_collections.ConfigDict):
            field_type = parent.get_type(leaf)
        else:
            field_type = type(parent[leaf])
        current = parent[leaf]
        value = _parse_value(key, raw, current, field_type) if isinstance(raw, str) or raw is None else raw
        try:
            parent[leaf] = value
        except (TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"--config.{key}={raw!r}: cannot set a value of type {type(value).__name__} on "
                              f"a field of type {_type_name(field_type)}: {e}") from None
    return config


def _walk_to_parent(config: ml_collections.ConfigDict, key: str) -> tuple[Any, str]:
    parts = key.split(".")
    if not key or any(p == "" for p in parts):
        raise ConfigError(f"malformed override key 'config.{key}'")
    node: Any = config
    for depth, part in enumerate(parts):
        if not isinstance(node, (ml_collections.ConfigDict, dict)):
            where = ".".join(parts[:depth])
            raise ConfigError(f"unknown config key 'config.{key}': config.{where} is of type "
                              f"{type(node).__name__}, not a nested config")
        keys = list(node.keys())
        if part not in keys:
            where = "config" + ("." + ".".join(parts[:depth]) if depth else "")
            close = difflib.get_close_matches(part, [str(k) for k in keys], n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"unknown config key 'config.{key}': {where} has no field {part!r} "
                              f"(fields: {', '.join(sorted(map(str, keys)))}){hint}")
        if depth == len(parts) - 1:
            return node, part
        node = node[part]
    raise AssertionError("unreachable")


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", str(t))


def _parse_value(key: str, raw: str | None, current: Any, field_type: Any) -> Any:
    """Parses one override string by the type of the field it replaces."""
    where = f"--config.{key}"
    if raw is None:  # a bare `--config.flag`
        if field_type is bool:
            return True
        raise ConfigError(f"{where} needs a value (field type {_type_name(field_type)})")
    try:
        if field_type is bool:
            low = raw.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError("expected true/false")
        if field_type is int:
            try:
                return int(raw)
            except ValueError:
                pass
            try:
                f = float(raw)   # allow 1e4 for an int field, but never silently truncate 2.5
            except ValueError:
                f = float("nan")
            if not f.is_integer():
                raise ValueError("expected an integer")
            return int(f)
        if field_type is float:
            return float(raw)
        if field_type is str:
            return raw
        if isinstance(field_type, type) and issubclass(field_type, (tuple, list)):
            return _parse_sequence(raw, current, field_type)
        if isinstance(field_type, type) and issubclass(field_type, (dict, ml_collections.ConfigDict)):
            value = ast.literal_eval(raw)
            if not isinstance(value, dict):
                raise ValueError("expected a dict literal")
            return value
        if field_type is type(None) or field_type is object or field_type is None:
            return _literal_or_string(raw)
        value = _literal_or_string(raw)   # enums and other types: accept only an instance of the field's type
        if not isinstance(value, field_type):
            raise ValueError(f"a {type(value).__name__} literal is not a {_type_name(field_type)}")
        return value
    except (ValueError, SyntaxError) as e:
        raise ConfigError(f"{where}={raw!r}: cannot parse as {_type_name(field_type)} "
                          f"(the field's current value is {current!r}): {e}") from None


def _literal_or_string(raw: str) -> Any:
    low = raw.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def _parse_sequence(raw: str, current: Any, field_type: type) -> Any:
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = tuple(s.strip() for s in raw.split(",") if s.strip())   # a,b,c of bare words
    if not isinstance(value, (tuple, list)):
        value = (value,)
    elem_types = {type(v) for v in current} if current else set()
    if len(elem_types) == 1:   # coerce elements to the element type of a homogeneous default
        (et,) = elem_types
        if et in (int, float, str, bool):
            value = [_parse_value("<element>", str(v), v, et) if not isinstance(v, et) else v for v in value]
    return field_type(value)


# --- the blocks every training config shares ---------------------------------------------------------------
# config.train: what jaxsuite.core.loop.train_loop (and jaxsuite.core.train.make_optimizer) read. AdamW with
# linear warm-up then cosine decay to lr * min_lr_ratio; grad_clip <= 0 disables clipping; eval_every 0 turns
# evaluation off; compute_dtype "bfloat16" computes in bf16 with float32 master weights.
TRAIN_DEFAULTS: dict[str, Any] = dict(
    steps=100, lr=1e-3, warmup_steps=0, min_lr_ratio=0.1, weight_decay=0.0, b1=0.9, b2=0.95, eps=1e-8,
    grad_clip=1.0, accum_steps=1, compute_dtype="float32", log_every=10, eval_every=100, eval_batches=4,
    checkpoint_every=100, keep_checkpoints=2,
    # memory: per-layer rematerialisation ("none" / "minimal" / "full") and the cross-entropy's chunk along the
    # sequence (0: the whole batch's logits at once; e.g. 1024: one [B, 1024, V] float32 block alive at a time)
    remat="none", loss_chunk=0,
    # the full forward's attention: "auto" (the splash kernel when the mesh is TPUs, cuDNN's when it is GPUs and
    # compute_dtype is half precision, else XLA), "xla", "splash", "cudnn"
    attention="auto",
    # the linear-attention mixers' kernels_pallas implementation: "" keeps the model's own (HypeNet: "xla");
    # "auto" is the compile target's Pallas kernel (Mosaic on TPU, Triton on GPU) where it applies, else XLA
    linear_kernel="",
)
# config.data of a language-model job: what jaxsuite.core.build.build_datasets reads. `source` / `eval_source`
# are jaxsuite.core.data.open_source specs ("stdlib", "stdlib:eval", a file glob, "tfds:name:split",
# "passkey:N", "a+b"); "" as eval_source means no evaluation. batch_size is the global batch.
DATA_DEFAULTS: dict[str, Any] = dict(
    source="stdlib", eval_source="stdlib:eval", text_key="text", seq_len=128, batch_size=16, shuffle_seed=0,
    shuffle_window=1024,
    on_bad_record="error",     # a malformed record: "error" stops naming file and line, "skip" leaves it out
)


def _block(name: str, defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown {name} field(s) {unknown}; {name} fields are {sorted(defaults)}")
    return ml_collections.ConfigDict({**defaults, **overrides})


def train_block(**overrides: Any) -> ml_collections.ConfigDict:
    """A `config.train` block: TRAIN_DEFAULTS with `overrides` (an unknown field raises ConfigError)."""
    return _block("train", TRAIN_DEFAULTS, overrides)


# LoRA (jaxsuite.models.lora): rank 0 trains every weight; rank > 0 adds adapters to the projections `targets`
# names (comma-separated module names, as PEFT's target_modules, or "re:<regex>" over paths such as
# layers.3.self_attn.q_proj) and trains only them
LORA_DEFAULTS: dict[str, Any] = dict(rank=0, alpha=16.0, dropout=0.0, rslora=False,
                                     targets="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")


def lora_block(**overrides: Any) -> ml_collections.ConfigDict:
    """A `config.model.lora` block: LORA_DEFAULTS with `overrides` (rank 0: no adapters)."""
    return _block("lora", LORA_DEFAULTS, overrides)


def policy_stage_block(*, steps: int, lr: float, log_every: int, checkpoint_every: int, clip: float = 0.2,
                       **fields: Any) -> ml_collections.ConfigDict:
    """A block for a staged policy training (jaxsuite.rl.stages.train_stage): steps, the clip of the policy
    ratio, progress and checkpoint intervals, Adam at `lr` (constant, no decay), and the stage's own `fields`
    (batch sizes, sampling settings)."""
    return ml_collections.ConfigDict(dict(
        steps=steps, clip=clip, log_every=log_every, checkpoint_every=checkpoint_every,
        optim=dict(lr=lr, warmup_steps=0, min_lr_ratio=1.0, weight_decay=0.0, b1=0.9, b2=0.98, grad_clip=1.0),
        **fields))


def loop_config(seed: int, train: Mapping[str, Any], seq_len: int, batch_size: int) -> ml_collections.ConfigDict:
    """The view of a job config that `core.loop.train_loop` reads, for a training phase with its own train block
    and batch shape (an SFT warm-up, one stage of a curriculum): seed, train, data.seq_len, data.batch_size."""
    return ml_collections.ConfigDict({"seed": int(seed), "train": dict(train),
                                      "data": {"seq_len": int(seq_len), "batch_size": int(batch_size)}})


def data_block(**overrides: Any) -> ml_collections.ConfigDict:
    """A `config.data` block of a language-model job: DATA_DEFAULTS with `overrides`."""
    return _block("data", DATA_DEFAULTS, overrides)


# --- serialisation ----------------------------------------------------------------------------------------
def config_to_dict(config: ml_collections.ConfigDict | Mapping) -> dict:
    """A JSON-compatible plain dict of the config (tuples become lists, unknown objects their repr)."""
    if isinstance(config, ml_collections.ConfigDict):
        return json.loads(config.to_json_best_effort(sort_keys=True))
    return json.loads(json.dumps(dict(config), sort_keys=True, default=repr))


def config_hash(config: ml_collections.ConfigDict | Mapping) -> str:
    """A short stable hash of the resolved config (stored with checkpoints to notice config changes)."""
    text = json.dumps(config_to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def config_diff(old: Mapping, new: Mapping) -> list[str]:
    """Human-readable differences between two plain config dicts: 'train.steps: 10 -> 20'."""
    a, b = _flatten(dict(old)), _flatten(dict(new))
    lines = []
    for k in sorted(set(a) | set(b)):
        if a.get(k, "<absent>") != b.get(k, "<absent>"):
            lines.append(f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}")
    return lines


def dump_config(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                filename: str = "config.json") -> str:
    """Writes the resolved config to workdir/config.json (atomically) and warns loudly if it differs from
    the config a previous run left there; the previous one is kept as config.previous.json.

    Call it from process 0 only. Returns the path written.
    """
    from jaxsuite.core import files   # local-or-bucket atomic file writes

    path = files.join_path(workdir, filename)
    new = config_to_dict(config)
    try:
        old_text = files.read_text(path)
    except (FileNotFoundError, OSError):
        old_text = None
    if old_text is not None:
        try:
            old = json.loads(old_text)
        except json.JSONDecodeError:
            old = None
        diff = config_diff(old, new) if isinstance(old, dict) else ["<previous config.json unreadable>"]
        if diff:
            previous = files.join_path(workdir, Path(filename).stem + ".previous.json")
            files.atomic_write_text(previous, old_text)
            shown = "\n    ".join(diff[:30]) + (f"\n    ... and {len(diff) - 30} more" if len(diff) > 30 else "")
            log.warning("WORKDIR %s WAS USED BEFORE WITH A DIFFERENT CONFIG. This run may resume from that "
                        "run's checkpoints. Differences (previous -> now):\n    %s\n  previous config kept "
                        "as %s", workdir, shown, previous)
    return files.atomic_write_text(path, json.dumps(new, indent=2, sort_keys=True) + "\n")


# --- job --------------------------------------------------------------------------------------------------
def import_job(spec: str) -> Callable[[ml_collections.ConfigDict, str], Any]:
    """'package.module:function' -> the function, imported with importlib."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ConfigError(f"config.job must look like 'package.module:function', got {spec!r}")
    module_name, fn_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"config.job={spec!r}: cannot import module {module_name!r}: {e}") from e
    fn = module
    for part in fn_name.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise ConfigError(f"config.job={spec!r}: module {module_name!r} has no attribute {fn_name!r}")
    if not callable(fn):
        raise ConfigError(f"config.job={spec!r}: {fn_name!r} is not callable")
    return fn


def default_workdir(config_path: str | os.PathLike, arg: str | None) -> str:
    """runs/<config name>[-<arg>] relative to the CWD; characters unsafe in a folder name become '_'."""
    name = Path(config_path).stem + (f"-{arg}" if arg else "")
    return os.path.join("runs", re.sub(r"[^0-9A-Za-z._=,+-]", "_", name))


# --- command line -----------------------------------------------------------------------------------------
@dataclasses.dataclass
class LaunchArgs:
    """Everything the launcher needs, parsed and validated."""
    config: ml_collections.ConfigDict
    config_path: Path
    config_arg: str | None
    workdir: str          # a str, not a Path: it may be a bucket URL (gs://...) on pods
    overrides: dict[str, str | None]
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    compile_only: bool = False
    topology: str | None = None
    programs: tuple[str, ...] = ()
    debug: bool = False


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # raise instead of sys.exit so tests and notebooks can call parse_launch_args
        raise ConfigError(message)


def _arg_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m jaxsuite.launch", allow_abbrev=False, add_help=False,
                description="Run the job a config names: config.job(config, workdir).")
    p.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    p.add_argument("--list", action="store_true", help="list every config in configs/ with its variants and exit")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of a configuration or input error (by default: one line)")
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help=f"config file[:arg] (default {DEFAULT_CONFIG}); found relative to the CWD, then the "
                        "repository root. Override fields with --config.key=value.")
    p.add_argument("--workdir", default=None, help="output folder (default ./runs/<config name>[-<arg>])")
    p.add_argument("--coordinator_address", default=None,
                   help="host:port of process 0 for multi-process runs (or $JAXSUITE_COORDINATOR)")
    p.add_argument("--num_processes", type=int, default=None, help="number of processes (or $JAXSUITE_NUM_PROCESSES)")
    p.add_argument("--process_id", type=int, default=None, help="this process's index (or $JAXSUITE_PROCESS_ID)")
    p.add_argument("--compile_only", action="store_true",
                   help="compile every program of the job for --topology without running it; writes "
                        "workdir/compile_report.json and exits non-zero if a program does not fit")
    p.add_argument("--topology", default=None,
                   help="the --compile_only target: a TPU topology (v5e:2x2, v5e:16x16, v6e:2x4, v5p:2x2x1, "
                        "v4:2x2x1), a GPU node (h100:8, h200:8, h100:4x8; both need jaxsuite[aot]) or cpu:N "
                        "(default: the config's `topology`)")
    p.add_argument("--programs", default="",
                   help="with --compile_only: compile only the programs whose names match these comma-separated "
                        "shell patterns (e.g. 'stage3/*,sample')")
    return p


def import_programs(spec: str):
    """The `programs(config, mesh, rules)` function of the job `spec` ('package.module:function') names, which
    `--compile_only` compiles: the job function's `programs` attribute. Raises ConfigError when it has none."""
    job = import_job(spec)
    fn = getattr(job, "programs", None)
    if not callable(fn):
        raise ConfigError(f"job {spec!r} does not support --compile_only: it has no programs(config, mesh, rules)")
    return fn


def launch_help() -> str:
    return _arg_parser().format_help()


def split_overrides(argv: Sequence[str]) -> tuple[list[str], dict[str, str | None]]:
    """Separates `--config.key[=value]` / `--config.key value` tokens from the other arguments.

    A bare `--config.key` followed by another option (or nothing) has value None (a boolean switch).
    """
    rest: list[str] = []
    overrides: dict[str, str | None] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        m = re.match(r"^--?config\.([^=]+)(?:=(.*))?$", tok, flags=re.S)
        if m:
            key, value = m.group(1), m.group(2)
            if value is None and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value = argv[i + 1]
                i += 1
            overrides.pop(key, None)   # the last occurrence wins and keeps its place in the order
            overrides[key] = value
        else:
            rest.append(tok)
        i += 1
    return rest, overrides


def parse_launch_args(argv: Sequence[str]) -> LaunchArgs:
    """Parses the launcher's command line (without the program name), loads the config and applies
    overrides. Raises ConfigError (naming the key / file) on any problem."""
    rest, overrides = split_overrides(list(argv))
    ns, unknown = _arg_parser().parse_known_args(rest)
    if ns.help:
        raise ConfigError("--help given: see launch_help()")
    if unknown:
        raise ConfigError(f"unrecognised arguments: {' '.join(unknown)}")
    path_str, arg = split_config_spec(ns.config)
    config_path = resolve_config_path(path_str)
    config = load_config(str(config_path), arg)
    apply_overrides(config, overrides)
    if "job" not in config:
        raise ConfigError(f"config {config_path} has no 'job' field (e.g. config.job = 'jaxsuite.pretrain:run')")
    import_spec = config.job
    if not isinstance(import_spec, str) or ":" not in import_spec:
        raise ConfigError(f"config.job must look like 'package.module:function', got {import_spec!r}")
    workdir = ns.workdir if ns.workdir else default_workdir(config_path, arg)
    topology = ns.topology or (config.get("topology") if ns.compile_only else None) or None
    if ns.compile_only and not topology:
        raise ConfigError("--compile_only needs --topology (e.g. v5p:2x2x1, v5e:2x2 or cpu:8); pod configs name "
                          "theirs in config.topology")
    if ns.topology and not ns.compile_only:
        raise ConfigError("--topology is the target of --compile_only; add --compile_only")
    if ns.programs and not ns.compile_only:
        raise ConfigError("--programs selects what --compile_only compiles; add --compile_only")
    return LaunchArgs(config=config, config_path=config_path, config_arg=arg, workdir=workdir,
                      overrides=overrides, coordinator_address=ns.coordinator_address,
                      num_processes=ns.num_processes, process_id=ns.process_id,
                      compile_only=bool(ns.compile_only), topology=topology,
                      programs=tuple(p.strip() for p in ns.programs.split(",") if p.strip()),
                      debug=bool(ns.debug))
