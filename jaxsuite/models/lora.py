"""LoRA: low-rank adapters on the `Einsum` projections of any jaxsuite LM (Hu et al., 2021; rsLoRA, Kalajdzievski,
2023), with PEFT's arithmetic so that adapters move to and from Hugging Face `peft` unchanged (`jaxsuite.peft`).

An adapted projection computes kernel(x) + scale * B(A(dropout(x))) with scale = alpha / r (alpha / sqrt(r) with
rsLoRA). Our kernels keep their head axes ([in..., out...], e.g. q_proj [D, N, Hd]), so the adapter does too:
A is [in..., r] and B is [r, out...], each applied as an einsum derived from the projection's own spec, and each
sharded like the kernel it adapts (A takes the kernel's input axes, B its output axes; the rank axis is never
split). A starts uniform in +-1/sqrt(fan_in) (PEFT's kaiming_uniform with a = sqrt(5)) and B at zero, so a fresh
adapter leaves the model unchanged.

    targets = apply_lora(model, LoraConfig(rank=8, alpha=16, targets=("q_proj", "v_proj")))
    optimizer = make_optimizer(cfg.train, trainable=is_lora_path)    # the base is frozen: no Adam moments
    step = make_train_step(graphdef, optimizer, ..., trainable=is_lora_path)   # and no weight gradients
    with lora_disabled(): logits = model(ids)                        # the base model, same arrays
    merge_lora(model); unmerge_lora(model); merge_and_unload(model)

Targets follow PEFT's `target_modules`: a list of module names matches a projection whose dotted path
(e.g. "layers.3.self_attn.q_proj") equals the name or ends with "." + name; a single string is a regular
expression that must match the whole path. Dropout draws its mask from the train step's key
(`jaxsuite.core.stochastic`), so it is active only inside a train step; evaluation, scoring and generation are
deterministic.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import re
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsuite.core import stochastic
from jaxsuite.models.layers import Einsum

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA = "lora"          # the attribute an adapter hangs from: paths of adapter parameters contain it

_DISABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("jaxsuite_lora_disabled", default=False)


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    rslora: bool = False                      # scale alpha / sqrt(rank) instead of alpha / rank
    targets: str | Sequence[str] = DEFAULT_TARGETS

    def __post_init__(self):
        if int(self.rank) < 1:
            raise ValueError(f"lora.rank must be >= 1, got {self.rank}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not isinstance(self.targets, str):
            object.__setattr__(self, "targets", tuple(self.targets))
            if not self.targets:
                raise ValueError("lora.targets is empty: name the projections to adapt (e.g. ('q_proj', 'v_proj'))")

    @property
    def scale(self) -> float:
        return float(self.alpha) / (math.sqrt(self.rank) if self.rslora else float(self.rank))

    @classmethod
    def from_config(cls, cfg: Any) -> "LoraConfig":
        """From a ConfigDict / dict with rank, alpha and optionally dropout, rslora, targets. A string of targets
        is comma-separated module names ("q_proj,v_proj"), or a regular expression after "re:"."""
        fields = {f.name for f in dataclasses.fields(cls)}
        given = dict(cfg.items() if hasattr(cfg, "items") else vars(cfg))
        unknown = sorted(set(given) - fields)
        if unknown:
            raise ValueError(f"unknown lora option(s) {unknown}; expected some of {sorted(fields)}")
        targets = given.get("targets")
        if isinstance(targets, str):
            given["targets"] = (targets[3:] if targets.startswith("re:")
                                else tuple(t.strip() for t in targets.split(",") if t.strip()))
        return cls(**given)


def _rank_letter(spec: str) -> str:
    return next(c for c in "rzyxwqpo" if c not in spec)


def split_spec(spec: str) -> tuple[str, str, str]:
    """An Einsum spec "x,k->y" as (input letters, kernel input letters, kernel output letters): the kernel must
    list its contracted (input) axes before its output axes, as every jaxsuite projection does."""
    lhs, out = spec.replace(" ", "").split("->")
    x, k = lhs.split(",")
    k_in = "".join(c for c in k if c in x)
    k_out = "".join(c for c in k if c not in x)
    if k != k_in + k_out or any(c not in out for c in k_out):
        raise ValueError(f"cannot adapt einsum {spec!r}: the kernel's axes must be its input axes, then its output axes")
    return x, k_in, k_out


class LoraAdapter(nnx.Module):
    """The low-rank update of one `Einsum`: A [in..., r], B [r, out...], scale, dropout (see the module doc)."""

    def __init__(self, layer: Einsum, config: LoraConfig, *, salt: int, rngs: nnx.Rngs):
        x, k_in, k_out = split_spec(layer.spec)
        r = _rank_letter(layer.spec)
        kernel = layer.kernel
        shape, axes = tuple(kernel.shape), tuple(kernel.get_metadata().get("logical_axes") or (None,) * kernel.ndim)
        n_in = len(k_in)
        fan_in = math.prod(shape[:n_in])
        bound = 1.0 / math.sqrt(fan_in)
        dtype = kernel.dtype
        a = jax.random.uniform(rngs.params(), shape[:n_in] + (config.rank,), jnp.float32, -bound, bound)
        self.a = nnx.Param(a.astype(dtype), logical_axes=axes[:n_in] + (None,))
        self.b = nnx.Param(jnp.zeros((config.rank,) + shape[n_in:], dtype), logical_axes=(None,) + axes[n_in:])
        out = layer.spec.replace(" ", "").split("->")[1]
        batch = "".join(c for c in x if c not in k_in)
        self.down_spec = f"{x},{k_in}{r}->{batch}{r}"            # x [batch..., in...] -> [batch..., r]
        self.up_spec = f"{batch}{r},{r}{k_out}->{out}"            # -> the projection's output layout
        self.delta_spec = f"{k_in}{r},{r}{k_out}->{k_in}{k_out}"  # A B: the kernel-shaped update
        self.rank, self.alpha, self.rslora = int(config.rank), float(config.alpha), bool(config.rslora)
        self.scale = config.scale
        self.dropout = float(config.dropout)
        self.salt = int(salt)
        self.merged = False        # static: merge_lora folded A B into the kernel, so the call skips the adapter

    def active(self) -> bool:
        return not self.merged and not _DISABLED.get()

    def __call__(self, x: jax.Array) -> jax.Array:
        """scale * B(A(dropout(x))) in the projection's output layout, in x's dtype."""
        key = stochastic.layer_key(self.salt) if self.dropout > 0 else None
        if key is not None:
            keep = jax.random.bernoulli(key, 1.0 - self.dropout, x.shape)
            x = jnp.where(keep, x / (1.0 - self.dropout), 0).astype(x.dtype)
        h = jnp.einsum(self.down_spec, x, self.a[...].astype(x.dtype))      # [batch..., r]
        y = jnp.einsum(self.up_spec, h, self.b[...].astype(x.dtype))        # [batch..., out...]
        return y * jnp.asarray(self.scale, x.dtype)

    def delta(self) -> jax.Array:
        """scale * A B, kernel-shaped, in float32."""
        return self.scale * jnp.einsum(self.delta_spec, self.a[...].astype(jnp.float32),
                                       self.b[...].astype(jnp.float32))


def _matches(path: str, targets: str | Sequence[str]) -> bool:
    if isinstance(targets, str):
        return re.fullmatch(targets, path) is not None
    return any(path == t or path.endswith("." + t) for t in targets)


def projections(model: nnx.Module) -> Iterator[tuple[str, Einsum]]:
    """Every `Einsum` in the model with its dotted path ("layers.0.self_attn.q_proj"), in graph order."""
    for path, node in nnx.iter_graph(model):
        if isinstance(node, Einsum):
            yield ".".join(str(p) for p in path), node


def adapters(model: nnx.Module) -> dict[str, LoraAdapter]:
    """{projection path: its adapter} for every adapted projection."""
    return {path: layer.lora for path, layer in projections(model) if getattr(layer, LORA, None) is not None}


def apply_lora(model: nnx.Module, config: LoraConfig, *, seed: int = 0) -> list[str]:
    """Adds an adapter to every projection `config.targets` selects (in place); returns their paths.

    Raises when nothing matches (a typo in a target name must not silently train nothing) or when the model
    already has adapters. The model may be abstract (inside nnx.eval_shape)."""
    if adapters(model):
        raise ValueError("the model already has LoRA adapters (merge_and_unload them first)")
    chosen = [(path, layer) for path, layer in projections(model) if _matches(path, config.targets)]
    if not chosen:
        names = sorted({path.rsplit(".", 1)[-1] for path, _ in projections(model)})
        raise ValueError(f"lora.targets={config.targets!r} matches no projection; the model's are named {names}")
    rngs = nnx.Rngs(params=seed)
    for salt, (_, layer) in enumerate(chosen):
        setattr(layer, LORA, nnx.data(LoraAdapter(layer, config, salt=salt, rngs=rngs)))
    return [path for path, _ in chosen]


def is_lora_path(names: Sequence[str]) -> bool:
    """The `trainable=` predicate of LoRA training: only adapter parameters train; the base stays frozen."""
    return LORA in tuple(str(n) for n in names)


@contextlib.contextmanager
def lora_disabled():
    """Within this context (around tracing) every adapter is skipped: the model is its base. The RL reference
    policy of a LoRA policy is computed this way, from the same arrays, with no second copy of the weights."""
    token = _DISABLED.set(True)
    try:
        yield
    finally:
        _DISABLED.reset(token)


def _fold(model: nnx.Module, sign: float, merged: bool) -> None:
    for path, layer in projections(model):
        adapter = getattr(layer, LORA, None)
        if adapter is None or adapter.merged == merged:
            continue
        kernel = layer.kernel[...]
        layer.kernel[...] = (kernel.astype(jnp.float32) + sign * adapter.delta()).astype(kernel.dtype)
        adapter.merged = merged


def merge_lora(model: nnx.Module) -> None:
    """Folds every adapter into its kernel (kernel += scale * A B); the adapters stay, marked merged, and the
    forward skips them, so outputs are unchanged up to float error."""
    _fold(model, 1.0, True)


def unmerge_lora(model: nnx.Module) -> None:
    """Undoes `merge_lora` (kernel -= scale * A B): the kernels return to the base up to float error."""
    _fold(model, -1.0, False)


def merge_and_unload(model: nnx.Module) -> None:
    """Folds the adapters into the kernels and removes them: a plain model again (what save_pretrained writes)."""
    merge_lora(model)
    for _, layer in projections(model):
        if getattr(layer, LORA, None) is not None:
            setattr(layer, LORA, nnx.data(None))


def adapter_deltas(model: nnx.Module) -> dict[str, jax.Array]:
    """{projection path: scale * A B} (float32, kernel-shaped): each adapter as a task vector of its kernel,
    for `jaxsuite.core.merging` (merge several adapters' deltas, then `add_deltas`)."""
    return {path: adapter.delta() for path, adapter in adapters(model).items()}


def add_deltas(model: nnx.Module, deltas: dict[str, jax.Array], scale: float = 1.0) -> None:
    """kernel += scale * delta for each {projection path: kernel-shaped delta} (a merged set of adapters)."""
    layers = dict(projections(model))
    missing = sorted(set(deltas) - set(layers))
    if missing:
        raise ValueError(f"deltas for projections the model does not have: {missing[:5]}")
    for path, delta in deltas.items():
        kernel = layers[path].kernel[...]
        if tuple(delta.shape) != tuple(kernel.shape):
            raise ValueError(f"{path}: delta of shape {tuple(delta.shape)} for a kernel of shape {kernel.shape}")
        layers[path].kernel[...] = (kernel.astype(jnp.float32) + scale * delta).astype(kernel.dtype)
