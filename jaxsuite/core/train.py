"""The functional training core: optimizer, train state, and jit-compiled train / eval steps.

The model is an NNX module used functionally: `nnx.split` once into a graphdef (static structure) and states
(pytrees of arrays); jitted pure steps `nnx.merge` the graphdef with the arrays they are given. Nothing inside
a step touches Python-side module objects, so each step compiles once and runs sharded on any mesh.

Precision: the master weights and the optimizer state are float32. With `compute_dtype=bfloat16` the step
casts the params to bf16 *inside* the differentiated function, so the forward/backward run in bf16 while the
gradients arrive in float32 (the cast's transpose casts back) and the update is applied to the f32 weights.

Sharding: parameter shardings come from the params' `logical_axes` via the rules; every optimizer-state
leaf that mirrors a parameter (Adam's mu / nu, ...) takes that parameter's sharding (found by matching tree
paths, see `train_state_shardings`), and everything else (step counters, the learning rate) is replicated.
The batch is sharded on dim 0 by the `act_batch` rule.

Loss: token-level cross-entropy, averaged over the real (loss_mask) tokens of the whole global batch. With
gradient accumulation the step sums losses and token counts over micro-batches and divides once, so
`accum_steps=k` computes the same loss and gradients as one big batch (up to float summation order).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxsuite.core import sharding as shd
from jaxsuite.core import stochastic

BATCH_AXES = ("act_batch", "act_length")  # logical axes of every [B, T] batch array


# --- optimizer --------------------------------------------------------------------------------------------------
def _get(cfg: Any, name: str, default: Any = None) -> Any:
    """Reads a field from a ConfigDict, a dataclass / namespace or a plain dict."""
    if isinstance(cfg, dict) or hasattr(cfg, "keys"):
        return cfg[name] if name in cfg else default
    return getattr(cfg, name, default)


def make_schedule(train_cfg: Any, total_steps: int | None = None) -> optax.Schedule:
    """Linear warm-up from 0 to `lr` over `warmup_steps`, then cosine decay to `lr * min_lr_ratio` at
    `total_steps` (default `train_cfg.steps`), constant afterwards.

    lr(0) = 0, lr(warmup_steps) = lr, lr(total_steps) = lr * min_lr_ratio.
    """
    lr = float(_get(train_cfg, "lr"))
    total = int(total_steps if total_steps is not None else _get(train_cfg, "steps"))
    warmup = int(_get(train_cfg, "warmup_steps", 0))
    end = lr * float(_get(train_cfg, "min_lr_ratio", 0.0))
    if total <= 0:
        raise ValueError(f"total_steps must be positive, got {total}")
    if warmup < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup}")
    # optax counts decay_steps from step 0 (warm-up included); it needs decay_steps > warmup_steps.
    return optax.warmup_cosine_decay_schedule(init_value=0.0, peak_value=lr, warmup_steps=warmup,
                                              decay_steps=max(total, warmup + 1), end_value=end)


def _path_names(path) -> list[str]:
    return [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]


def decay_mask(params: Any) -> Any:
    """True for weights that get weight decay: matrices / embeddings, not norms, biases or 1-D params."""
    def one(path, x):
        names = _path_names(path)
        skip = jnp.ndim(x) < 2 or "bias" in names or any("norm" in n for n in names)
        return not skip

    return jax.tree_util.tree_map_with_path(one, params)


def trainable_labels(params: Any, trainable: Callable[[tuple[str, ...]], bool]) -> Any:
    """"train" / "frozen" per parameter leaf, from `trainable(path names)` (e.g. ("layers", "3", "student", ...))."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "train" if trainable(tuple(_path_names(path))) else "frozen", params)


def make_optimizer(train_cfg: Any, total_steps: int | None = None, *,
                   trainable: Callable[[tuple[str, ...]], bool] | None = None) -> optax.GradientTransformation:
    """AdamW with warm-up + cosine schedule, masked weight decay and global-norm clipping.

    `trainable(path_names) -> bool` freezes the parameters it rejects (HALO stage 1 trains only the RNN
    students): their updates are zero and they get no Adam moments; clipping sees only the trained gradients.

    Reads `lr, warmup_steps, min_lr_ratio, steps, weight_decay, b1, b2, grad_clip` (and optional `eps`) from
    `train_cfg`. `grad_clip <= 0` disables clipping. The learning rate is injected as a hyper-parameter, so the
    optimizer state carries the rate of the latest update (`learning_rate_of(opt_state)`), which the train
    step logs; `make_schedule(train_cfg, total_steps)` gives the same schedule as a function.
    """
    schedule = make_schedule(train_cfg, total_steps)
    clip = float(_get(train_cfg, "grad_clip", 0.0) or 0.0)
    chain = [optax.clip_by_global_norm(clip)] if clip > 0 else []
    chain += [
        optax.scale_by_adam(b1=float(_get(train_cfg, "b1", 0.9)), b2=float(_get(train_cfg, "b2", 0.95)),
                            eps=float(_get(train_cfg, "eps", 1e-8))),
        optax.add_decayed_weights(float(_get(train_cfg, "weight_decay", 0.0)), mask=decay_mask),
        # Decoupled weight decay as in optax.adamw: update = -lr * (adam + wd * param).
        optax.inject_hyperparams(optax.scale_by_learning_rate)(learning_rate=schedule),
    ]
    if trainable is None:
        return optax.chain(*chain)
    return optax.multi_transform({"train": optax.chain(*chain), "frozen": optax.set_to_zero()},
                                 lambda params: trainable_labels(params, trainable))


def learning_rate_of(opt_state: Any) -> jax.Array:
    """The learning rate recorded in an optimizer state built by `make_optimizer` (NaN when there is none)."""
    # inject_hyperparams keeps both the value and the schedule's state under "learning_rate": take the array.
    lr = optax.tree_utils.tree_get(opt_state, "learning_rate", filtering=lambda _, v: hasattr(v, "dtype"))
    return jnp.asarray(jnp.nan if lr is None else lr, jnp.float32)


# --- train state ------------------------------------------------------------------------------------------------
@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes. `model_state` holds the module's non-Param variables (empty for
    CausalLM); it is passed to the forward pass unchanged and never trained."""
    step: jax.Array          # int32 scalar: number of optimizer updates applied
    params: nnx.State        # nnx.Param variables, float32 master weights
    opt_state: Any
    model_state: nnx.State = flax.struct.field(default_factory=lambda: nnx.State({}))


def _to_float32(tree: Any) -> Any:
    """Floating leaves -> float32 (ShapeDtypeStructs too); integer / key leaves are left alone."""
    def one(x):
        if jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != jnp.float32:
            return x.astype(jnp.float32)
        return x
    return jax.tree.map(one, tree)


def _cast(tree: Any, dtype) -> Any:
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _leaf_shardings(state: Any, mesh: Mesh, rules: shd.Rules) -> Any:
    """`sharding.state_shardings`, expanded to one NamedSharding per array leaf (same structure as `state`)."""
    per_variable = jax.tree.leaves(shd.state_shardings(state, mesh, rules),
                                   is_leaf=lambda x: isinstance(x, NamedSharding))
    return jax.tree.unflatten(jax.tree.structure(state), per_variable)


def _mirror_shardings(opt_state: Any, params: Any, param_shardings: Any, mesh: Mesh) -> Any:
    """Shardings for an optimizer state: a leaf whose tree path ends with a parameter's path (e.g.
    `[1].mu['layers'][0]['mlp']['down_proj']['kernel'].value` ends with the kernel's path) and has its shape
    takes the parameter's sharding; every other leaf (counters, hyper-parameters) is replicated."""
    by_path = {}
    for (path, leaf), sharding in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                                      jax.tree.leaves(param_shardings)):
        by_path[tuple(path)] = (tuple(jnp.shape(leaf)), sharding)
    replicated = NamedSharding(mesh, PartitionSpec())

    def one(path, leaf):
        path = tuple(path)
        for start in range(len(path)):  # the longest matching suffix wins
            hit = by_path.get(path[start:])
            if hit is not None and hit[0] == tuple(jnp.shape(leaf)):
                return hit[1]
        return replicated

    return jax.tree_util.tree_map_with_path(one, opt_state)


def _init_state(params: Any, model_state: Any, optimizer: optax.GradientTransformation) -> TrainState:
    params = _to_float32(params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                      model_state=model_state)


def train_state_shardings(params: Any, model_state: Any, optimizer: optax.GradientTransformation,
                          mesh: Mesh, rules: shd.Rules = shd.DEFAULT_RULES) -> TrainState:
    """A TrainState-shaped pytree of NamedShardings (one per array leaf) for the given params."""
    param_sh = _leaf_shardings(params, mesh, rules)
    abstract_opt = jax.eval_shape(lambda p: optimizer.init(_to_float32(p)), params)
    return TrainState(step=NamedSharding(mesh, PartitionSpec()), params=param_sh,
                      opt_state=_mirror_shardings(abstract_opt, params, param_sh, mesh),
                      model_state=_leaf_shardings(model_state, mesh, rules))


def abstract_train_state(model: nnx.Module, optimizer: optax.GradientTransformation, mesh: Mesh,
                         rules: shd.Rules = shd.DEFAULT_RULES) -> tuple[nnx.GraphDef, TrainState, TrainState]:
    """(graphdef, TrainState of ShapeDtypeStructs carrying their shardings, shardings) for checkpoint restore.

    `model` may be abstract (`nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0)))`): nothing is allocated.
    """
    graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
    shardings = train_state_shardings(params, model_state, optimizer, mesh, rules)
    abstract = jax.eval_shape(lambda p, r: _init_state(p, r, optimizer), params, model_state)
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)
    return graphdef, abstract, shardings


def _unshare(tree: Any) -> Any:
    """Copies every array leaf that is the same object as an earlier leaf (a module assembled from another
    may hold one array in two places): a donated step would otherwise donate one buffer twice."""
    seen: set[int] = set()

    def one(x):
        if id(x) in seen:
            return jnp.array(x, copy=True)
        seen.add(id(x))
        return x
    return jax.tree.map(one, tree)


def create_train_state(model: nnx.Module, optimizer: optax.GradientTransformation, mesh: Mesh,
                       rules: shd.Rules = shd.DEFAULT_RULES) -> tuple[nnx.GraphDef, TrainState, TrainState]:
    """Splits the model once and places a fresh TrainState on the mesh.

    Returns (graphdef, state, state_shardings). Params are cast to float32 master weights; the optimizer
    state is created directly with its shardings (jit with out_shardings), so no device holds it whole.
    """
    graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
    params, model_state = _unshare((params, model_state))
    shardings = train_state_shardings(params, model_state, optimizer, mesh, rules)
    # Fresh buffers via jit (device_put(may_alias=False) still aliased a single-device array's shard when
    # replicating it): the step donates its state, which must not delete the caller's model arrays.
    params = jax.jit(_to_float32, out_shardings=shardings.params)(params)
    model_state = jax.jit(lambda s: s, out_shardings=shardings.model_state)(model_state)
    opt_state = jax.jit(optimizer.init, out_shardings=shardings.opt_state)(params)
    step = jax.device_put(jnp.zeros((), jnp.int32), shardings.step)
    return graphdef, TrainState(step=step, params=params, opt_state=opt_state, model_state=model_state), shardings


# --- loss -------------------------------------------------------------------------------------------------------
def token_log_probs(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """log p(target) per position, in float32: logits [..., V], targets [...] int -> [...].

    The target logit is picked with a one-hot contraction rather than a gather, so a vocab-sharded logits
    tensor stays sharded (each shard contributes its slice; XLA all-reduces the sum).
    """
    logits = logits.astype(jnp.float32)
    lse = jax.nn.logsumexp(logits, axis=-1)                                        # [B, T]
    onehot = jax.nn.one_hot(targets, logits.shape[-1], dtype=jnp.float32)          # [B, T, V]
    return jnp.sum(logits * onehot, axis=-1) - lse


def cross_entropy(logits: jax.Array, targets: jax.Array,
                  mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Summed token cross-entropy and the number of counted tokens: (loss_sum, tokens), float32 scalars.

    Returns sums, not a mean, so that callers can add them over micro-batches or hosts and divide once;
    the mean loss is `loss_sum / tokens`. `mask` (1.0 = counted) defaults to all tokens.
    """
    nll = -token_log_probs(logits, targets)                                       # [B, T]
    mask = jnp.ones(nll.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
    return jnp.sum(nll * mask), jnp.sum(mask)


def batch_shards(sharding: NamedSharding) -> int:
    """How many ways dim 0 of a batch is split under `sharding`."""
    spec = sharding.spec[0] if len(sharding.spec) else None
    axes = () if spec is None else (spec,) if isinstance(spec, str) else tuple(spec)
    return math.prod(sharding.mesh.shape[a] for a in axes)


def batch_sharding(mesh: Mesh, rules: shd.Rules = shd.DEFAULT_RULES) -> NamedSharding:
    """Sharding of [B, T] batch arrays: dim 0 by the `act_batch` rule (e.g. over ("data", "fsdp"))."""
    return NamedSharding(mesh, shd.logical_to_spec(BATCH_AXES, rules, mesh))


# loss_fn(model, batch) -> (loss_sum, tokens): a summed loss and what it is averaged over (float32 scalars),
# optionally with a third element, a dict of summed metrics the step reports divided by the same `tokens`
# (an RL loss reports its KL, entropy and clip fraction this way). With `frozen_shardings` the step passes a
# third argument, the frozen parameters (e.g. an RL reference policy): loss_fn(model, batch, frozen).
LossFn = Callable[..., tuple]


def next_token_loss(model: nnx.Module, batch: dict) -> tuple[jax.Array, jax.Array]:
    """The default loss: next-token cross-entropy over the batch's real (loss_mask) tokens."""
    logits = model(batch["inputs"], positions=batch.get("positions"),
                   segment_ids=batch.get("segment_ids"))                        # [B, T, V] float32
    return cross_entropy(logits, batch["targets"], batch["loss_mask"])


def chunked_next_token_loss(chunk: int) -> LossFn:
    """next_token_loss without full-vocabulary logits for the whole batch: the sequence is cut into chunks of
    `chunk` tokens and each chunk's float32 logits [B, chunk, V] are made, reduced to the summed NLL and
    dropped, then remade in the backward pass (jax.checkpoint), so at most one chunk's logits are alive.
    Same value and gradients as next_token_loss (up to summation order). chunk <= 0 or >= T: one chunk."""
    if chunk <= 0:
        return next_token_loss

    def loss(model: nnx.Module, batch: dict) -> tuple[jax.Array, jax.Array]:
        hidden = model.hidden_states(batch["inputs"], positions=batch.get("positions"),
                                     segment_ids=batch.get("segment_ids"))       # [B, T, D]
        b, t, d = hidden.shape
        if t <= chunk:
            return cross_entropy(model.logits(hidden), batch["targets"], batch["loss_mask"])
        if t % chunk:
            raise ValueError(f"train.loss_chunk={chunk} must divide data.seq_len={t}")
        n = t // chunk

        def chunks(x):                                                            # [B, T, ...] -> [N, B, C, ...]
            return jnp.moveaxis(x.reshape(b, n, chunk, *x.shape[2:]), 1, 0)

        @jax.checkpoint
        def one(h, targets, mask):                                                # [B, C, D], [B, C], [B, C]
            return cross_entropy(model.logits(h), targets, mask)

        def body(carry, xs):
            loss_sum, tokens = one(*xs)
            return (carry[0] + loss_sum, carry[1] + tokens), None

        zero = jnp.zeros((), jnp.float32)
        (loss_sum, tokens), _ = jax.lax.scan(
            body, (zero, zero), (chunks(hidden), chunks(batch["targets"]), chunks(batch["loss_mask"])))
        return loss_sum, tokens

    loss.__name__ = f"next_token_loss_chunked_{chunk}"
    return loss


def _loss_sums(params, model_state, graphdef, batch, compute_dtype, loss_fn: LossFn = next_token_loss,
               frozen: Any = None, key: jax.Array | None = None, train_mask: Any = None):
    """Forward pass on one (micro-)batch: (loss_sum, (tokens, aux_sums)). Differentiated w.r.t. the f32
    `params` only: `frozen` (if any) is cast to the compute dtype and never differentiated. `key`: the training
    key that stochastic layers (LoRA dropout) draw from; None (evaluation) makes every layer deterministic.
    `train_mask` (a bool per parameter leaf): the others are held by stop_gradient, so the backward pass computes
    no weight gradient for them (their gradient is a zero; a frozen 7B base under LoRA costs no weight-gradient
    matmuls)."""
    if train_mask is not None:
        params = jax.tree.map(lambda p, t: p if t else jax.lax.stop_gradient(p), params, train_mask)
    model = nnx.merge(graphdef, _cast(params, compute_dtype), model_state)
    with stochastic.training_key(key):
        if frozen is None:
            out = loss_fn(model, batch)
        else:
            out = loss_fn(model, batch, _cast(jax.lax.stop_gradient(frozen), compute_dtype))
    loss_sum, tokens, aux = out if len(out) == 3 else (*out, {})
    aux = {k: jnp.asarray(v, jnp.float32) for k, v in aux.items()}
    return loss_sum.astype(jnp.float32), (jnp.asarray(tokens, jnp.float32), aux)


def _required_keys(loss_fn) -> tuple[str, ...]:
    """The batch keys a loss needs: the default reads targets and loss_mask; custom losses name their own."""
    return ("inputs", "targets", "loss_mask") if loss_fn is next_token_loss else ("inputs",)


def _check_batch(batch: dict, mesh: Mesh, rules: shd.Rules, accum_steps: int,
                 required: tuple[str, ...] = ("inputs", "targets", "loss_mask")) -> None:
    """Trace-time shape checks with messages that name the offending input."""
    missing = [k for k in required if k not in batch]
    if missing:
        raise KeyError(f"batch is missing {missing}; it has {sorted(batch)}")
    size = batch["inputs"].shape[0]
    sharding = batch_sharding(mesh, rules)
    shards = batch_shards(sharding)
    axes = sharding.spec[0]
    if size % (accum_steps * shards):
        raise ValueError(f"global batch {size} must be divisible by accum_steps={accum_steps} x {shards} batch "
                         f"shards (mesh axes {axes}), so every micro-batch spreads evenly over the devices")


# --- steps ------------------------------------------------------------------------------------------------------
def make_train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, *, mesh: Mesh,
                    rules: shd.Rules = shd.DEFAULT_RULES, state_shardings: TrainState, accum_steps: int = 1,
                    compute_dtype: Any = jnp.float32, loss_fn: LossFn = next_token_loss,
                    frozen_shardings: Any = None, seed: int = 0,
                    trainable: Callable[[tuple[str, ...]], bool] | None = None) -> Callable[..., tuple[TrainState, dict]]:
    """A jit-compiled `step(state, batch) -> (new_state, metrics)`; `state` is donated.

    `loss_fn(model, batch) -> (loss_sum, tokens[, aux_sums])` (default `next_token_loss`) lets other
    objectives (HALO's per-layer MSE, logit distillation, RL losses) reuse the same sharded, accumulating step:
    the step divides the summed loss, the gradients and every aux sum by the summed `tokens` of the whole
    global batch, and reports the aux metrics under their own names.

    `frozen_shardings` (a pytree of NamedShardings, e.g. the params' shardings of a reference model) makes the
    step `step(state, batch, frozen) -> (new_state, metrics)`: `frozen` is placed with those shardings,
    given to every micro-batch's `loss_fn(model, batch, frozen)` and never trained or donated.

    batch: dict of [B, T] arrays "inputs", "targets", "loss_mask" and optionally "positions", "segment_ids"
    (B = global batch, divisible by accum_steps). metrics: loss (mean over real tokens of the global batch),
    tokens, grad_norm (before clipping), lr (of this update), param_norm (after the update).

    `seed`: the forward pass of micro-batch j of update s runs under the training key (seed, s, j)
    (`jaxsuite.core.stochastic`), so dropout is reproducible across restarts and device counts.

    `trainable`: the predicate given to `make_optimizer`; the step then differentiates only those parameters
    (the others' gradients are zeros that cost nothing, and grad_norm is the trained parameters' norm).
    """
    accum_steps = int(accum_steps)
    if accum_steps < 1:
        raise ValueError(f"accum_steps must be >= 1, got {accum_steps}")
    compute_dtype = jnp.dtype(compute_dtype)
    param_sh = state_shardings.params

    def step(state: TrainState, batch: dict, frozen: Any = None) -> tuple[TrainState, dict]:
        _check_batch(batch, mesh, rules, accum_steps, required=_required_keys(loss_fn))
        mask = None if trainable is None else jax.tree.map(lambda label: label == "train",
                                                           trainable_labels(state.params, trainable))
        grad_fn = jax.value_and_grad(functools.partial(_loss_sums, loss_fn=loss_fn, train_mask=mask), has_aux=True)
        with shd.use_sharding(mesh, rules):  # the model's constrain() calls see the mesh while tracing
            params = state.params
            if accum_steps == 1:
                key = stochastic.step_key(seed, state.step)
                (loss_sum, (total_tokens, aux_sum)), grad_sum = grad_fn(params, state.model_state, graphdef,
                                                                        batch, compute_dtype, frozen=frozen, key=key)
            else:
                size = batch["inputs"].shape[0]

                # Micro-batch j takes rows j, j + A, j + 2A, ...: each micro-batch is spread over all the
                # batch shards (a contiguous split would put each micro-batch on a subset of the devices).
                def split(x):  # [B, ...] -> [A, B / A, ...]
                    x = x.reshape(size // accum_steps, accum_steps, *x.shape[1:]).swapaxes(0, 1)
                    return shd.constrain(x, (None, "act_batch") + (None,) * (x.ndim - 2))

                micro = jax.tree.map(split, batch)
                zeros = jax.lax.with_sharding_constraint(jax.tree.map(jnp.zeros_like, params), param_sh)

                def body(carry, xs):
                    mb, j = xs
                    g_acc, l_acc, n_acc, a_acc = carry
                    (l, (n, a)), g = grad_fn(params, state.model_state, graphdef, mb, compute_dtype,
                                             frozen=frozen, key=stochastic.step_key(seed, state.step, j))
                    return (jax.tree.map(jnp.add, g_acc, g), l_acc + l, n_acc + n,
                            jax.tree.map(jnp.add, a_acc, a)), None

                zero = jnp.zeros((), jnp.float32)
                # the aux metrics' names and shapes, from an abstract evaluation of one micro-batch
                aux_shape = jax.eval_shape(lambda mb: _loss_sums(params, state.model_state, graphdef, mb,
                                                                 compute_dtype, loss_fn, frozen)[1][1],
                                           jax.tree.map(lambda x: x[0], micro))
                aux_zero = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), aux_shape)
                (grad_sum, loss_sum, total_tokens, aux_sum), _ = jax.lax.scan(
                    body, (zeros, zero, zero, aux_zero), (micro, jnp.arange(accum_steps)))

            denom = jnp.maximum(total_tokens, 1.0)
            grads = jax.tree.map(lambda g: g / denom, grad_sum)
            grads = jax.lax.with_sharding_constraint(grads, param_sh)
            updates, opt_state = optimizer.update(grads, state.opt_state, params)
            new_params = optax.apply_updates(params, updates)
            metrics = {
                "loss": loss_sum / denom,
                "tokens": total_tokens,
                "grad_norm": optax.global_norm(grads),
                "lr": learning_rate_of(opt_state),
                "param_norm": optax.global_norm(new_params),
                **{k: v / denom for k, v in aux_sum.items()},
            }
            new_state = state.replace(step=state.step + 1, params=new_params, opt_state=opt_state)
            return new_state, metrics

    replicated = NamedSharding(mesh, PartitionSpec())
    if frozen_shardings is None:
        return jax.jit(lambda state, batch: step(state, batch),
                       in_shardings=(state_shardings, batch_sharding(mesh, rules)),
                       out_shardings=(state_shardings, replicated), donate_argnums=0)
    return jax.jit(step, in_shardings=(state_shardings, batch_sharding(mesh, rules), frozen_shardings),
                   out_shardings=(state_shardings, replicated), donate_argnums=0)


def make_eval_step(graphdef: nnx.GraphDef, *, mesh: Mesh, rules: shd.Rules = shd.DEFAULT_RULES,
                   state_shardings: TrainState, compute_dtype: Any = jnp.float32,
                   model_state: nnx.State | None = None,
                   loss_fn: LossFn = next_token_loss) -> Callable[[nnx.State, dict], dict]:
    """A jit-compiled `eval_step(params, batch) -> {"loss_sum", "tokens"}` (sums, so that a job adds them over
    batches and divides once). `model_state`: the non-Param variables, if the model has any."""
    compute_dtype = jnp.dtype(compute_dtype)
    model_state = nnx.State({}) if model_state is None else model_state

    def eval_step(params: nnx.State, batch: dict) -> dict:
        _check_batch(batch, mesh, rules, 1, required=_required_keys(loss_fn))
        with shd.use_sharding(mesh, rules):
            loss_sum, (tokens, _) = _loss_sums(params, model_state, graphdef, batch, compute_dtype, loss_fn)
        return {"loss_sum": loss_sum, "tokens": tokens}

    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(eval_step, in_shardings=(state_shardings.params, batch_sharding(mesh, rules)),
                   out_shardings=replicated)

