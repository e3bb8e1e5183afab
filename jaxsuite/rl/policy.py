"""A trainable policy on the device mesh: its sharded train state, its frozen reference, and the jitted
scoring pass and update that every RL loop in jaxsuite uses.

    policy = Policy(model, optim=cfg.player.optim, loss=PolicyLossConfig(kl_coef=1e-3), mesh=mesh, rules=rules)
    rollout = sample_responses(policy.module(), tokenizer, prompts, n=8, ...)      # jaxsuite.rl.rollout
    batch = rollout.to_batch(advantages=group_advantages(rewards, rollout.group_ids), ...)
    metrics = policy.update(batch)     # old log-probs, then one jitted update per mini-batch

The update is `jaxsuite.core.train.make_train_step` with the policy loss below: one jit-compiled function
that runs the policy forward, the reference forward (its parameters passed as frozen, sharded like the
policy's), the clipped surrogate, k3 KL, entropy and aggregation, the backward pass and the AdamW step, with
the state donated. The "old" log-probs are recomputed by `score` under the policy as it stands before the
update (veRL's `compute_log_prob`), not taken from the sampler: the sampler may filter (top-p) or reshape
(repetition penalty) its distribution, and the importance ratio must compare like with like.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding

from jaxsuite.core import sharding as shd
from jaxsuite.core import stochastic
from jaxsuite.core import train as tr
from jaxsuite.core.loop import apply_model_options, pad_batch, padded_rows
from jaxsuite.models import lora
from jaxsuite.rl import objectives as obj

RL_BATCH_KEYS = ("inputs", "targets", "positions", "loss_mask", "advantages")


@dataclasses.dataclass(frozen=True)
class PolicyLossConfig:
    clip_low: float = 0.2          # ratio clipped to [1 - clip_low, 1 + clip_high]
    clip_high: float = 0.2
    kl_coef: float = 0.0           # k3 KL to the frozen reference; 0 skips the reference forward entirely
    entropy_coef: float = 0.0      # loss -= entropy_coef * entropy (veRL sign)
    aggregation: str = "token-mean"
    temperature: float = 1.0       # the sampling temperature: log-probs are of softmax(logits / T)

    def __post_init__(self):
        if self.aggregation not in obj.AGGREGATIONS:
            raise ValueError(f"unknown loss aggregation {self.aggregation!r}; expected one of {obj.AGGREGATIONS}")
        if self.clip_low < 0 or self.clip_high < 0 or self.clip_low >= 1:
            raise ValueError(f"clip ratios must satisfy 0 <= clip_low < 1 and clip_high >= 0, got "
                             f"{self.clip_low}, {self.clip_high}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 for log-probs, got {self.temperature}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")


def _forward_logprobs(model: nnx.Module, batch: dict, temperature: float) -> tuple[jax.Array, jax.Array]:
    """(logits / T [B, T, V], log p(target) [B, T]) of `model` on an RL batch.

    A model with a `policy_logits(batch)` method computes its own logits from the batch (a latent reasoner
    re-runs its latent steps from batch["latent_slots"]); any other LM is called on the tokens."""
    if hasattr(model, "policy_logits"):
        logits = model.policy_logits(batch).astype(jnp.float32) / temperature
    else:
        logits = model(batch["inputs"], positions=batch["positions"]).astype(jnp.float32) / temperature
    return logits, tr.token_log_probs(logits, batch["targets"])


def make_policy_loss(cfg: PolicyLossConfig, ref_graphdef: nnx.GraphDef | None = None, *,
                     reference_is_base: bool = False):
    """loss_fn(model, batch[, reference]) -> (loss_sum, count, aux_sums) for `make_train_step`.

    batch: inputs/targets/positions [B, T] int, loss_mask [B, T] (response tokens), advantages [B, T],
    old_logprobs [B, T]. `reference` = (params, rest) of the frozen reference, merged with `ref_graphdef`;
    `reference_is_base`: the reference is the policy itself with its LoRA adapters disabled (no argument).
    aux (reported as means by the step): pg_loss, entropy, kl, clip_frac, ratio.
    """
    def loss_fn(model, batch, reference=None):
        mask = batch["loss_mask"]
        logits, logp = _forward_logprobs(model, batch, cfg.temperature)           # [B, T, V], [B, T]
        entropy = obj.entropy_from_logits(logits)                                 # [B, T]
        pg, clipped, ratio = obj.clipped_surrogate(logp, batch["old_logprobs"], batch["advantages"],
                                                   clip_low=cfg.clip_low, clip_high=cfg.clip_high)
        per_token = pg - cfg.entropy_coef * entropy
        terms = {"pg_loss": pg, "entropy": entropy, "clip_frac": clipped, "ratio": ratio}
        if cfg.kl_coef > 0:
            if reference_is_base:
                with lora.lora_disabled(), stochastic.training_key(None):   # the base: no adapters, no dropout
                    _, ref_logp = _forward_logprobs(model, batch, cfg.temperature)
            elif reference is None:
                raise ValueError("kl_coef > 0 needs the reference parameters (Policy passes them)")
            else:
                ref_model = nnx.merge(ref_graphdef, *reference)
                _, ref_logp = _forward_logprobs(ref_model, batch, cfg.temperature)
            kl = obj.k3_kl(logp, jax.lax.stop_gradient(ref_logp))
            per_token = per_token + cfg.kl_coef * kl
            terms["kl"] = kl
        loss_sum, count = obj.aggregate(per_token, mask, cfg.aggregation)
        aux = {k: obj.aggregate(v, mask, cfg.aggregation)[0] for k, v in terms.items()}
        return loss_sum, count, aux
    return loss_fn


def _global(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A host array that every process holds whole -> a global array with `sharding` (works multi-host)."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def score_rows(rows: int, batch_shards: int, accum_steps: int) -> int:
    """Rows per scoring call: one accumulation micro-batch of the update on `rows` (a multiple of the shards)."""
    return padded_rows(rows, batch_shards * accum_steps) // accum_steps


def _split_reference(model: nnx.Module, loss: PolicyLossConfig, mesh, rules):
    """(graphdef, (params, rest), their shardings) of the frozen reference when the loss has a KL term (kl_coef >
    0), else (None, None, None). `model` may be abstract; the arrays are the module's own (not yet copied)."""
    if loss.kl_coef <= 0:
        return None, None, None
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, (params, rest), (tr._leaf_shardings(params, mesh, rules), tr._leaf_shardings(rest, mesh, rules))


def _policy_steps(graphdef, shardings, optimizer, loss: PolicyLossConfig, mesh, rules, *, accum_steps: int,
                  compute_dtype, ref_graphdef, ref_shardings, reference_is_base: bool = False, seed: int = 0,
                  trainable=None):
    """(update, score): the jitted optimizer step of the policy loss (the reference, when kl_coef > 0, a frozen
    argument sharded like the policy, or the policy's own base) and the jitted scoring pass (log-probs and
    entropy per position)."""
    update = tr.make_train_step(graphdef, optimizer, mesh=mesh, rules=rules, state_shardings=shardings,
                                accum_steps=accum_steps, compute_dtype=compute_dtype,
                                loss_fn=make_policy_loss(loss, ref_graphdef, reference_is_base=reference_is_base),
                                frozen_shardings=ref_shardings, seed=seed, trainable=trainable)
    batch_sharding = tr.batch_sharding(mesh, rules)

    def score(params, model_state, batch):
        with shd.use_sharding(mesh, rules):
            model = nnx.merge(graphdef, params, model_state)
            logits, logp = _forward_logprobs(model, batch, loss.temperature)
            return logp, obj.entropy_from_logits(logits)

    score = jax.jit(score, in_shardings=(shardings.params, shardings.model_state, batch_sharding),
                    out_shardings=(batch_sharding, batch_sharding))
    return update, score


def policy_programs(model: nnx.Module, *, optim: Any, loss: PolicyLossConfig, mesh: jax.sharding.Mesh,
                    rules: shd.Rules, rows: int, seq_len: int, accum_steps: int = 1, compute_dtype: Any = jnp.float32,
                    remat: str = "none", extra_batch: dict | None = None, prefix: str = "") -> tuple[list, dict]:
    """The programs a `Policy` of this model compiles, with abstract arguments, for `--compile_only`: the update on
    a rollout batch of `rows` x `seq_len` (accumulated over `accum_steps` micro-batches) and the scoring pass that
    recomputes the old log-probs. `model` may be abstract (nnx.eval_shape); the reference (kl_coef > 0) is the
    model itself, as a Policy's default. `extra_batch`: model inputs beyond the tokens (name -> ShapeDtypeStruct
    with the batch dimension first). Returns (programs, {"state": the abstract train state, "reference": the
    abstract reference or None}) so a caller can count what stays resident."""
    from jaxsuite.core.aot import Program, abstract

    base = bool(lora.adapters(model))    # a LoRA policy: only the adapters train; the reference is its base
    optimizer = tr.make_optimizer(optim, trainable=lora.is_lora_path if base else None)
    apply_model_options(model, remat=remat)
    ref_graphdef, reference, ref_shardings = _split_reference(model, loss, mesh, rules) if not base else (None,) * 3
    if reference is not None:
        reference = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                 reference, ref_shardings)
    graphdef, state, shardings = tr.abstract_train_state(model, optimizer, mesh, rules)
    update, score = _policy_steps(graphdef, shardings, optimizer, loss, mesh, rules, accum_steps=accum_steps,
                                  compute_dtype=compute_dtype, ref_graphdef=ref_graphdef, ref_shardings=ref_shardings,
                                  reference_is_base=base, trainable=lora.is_lora_path if base else None)
    sharding = tr.batch_sharding(mesh, rules)
    rows = padded_rows(rows, accum_steps * tr.batch_shards(sharding))
    batch = {k: jax.ShapeDtypeStruct((rows, seq_len), jnp.int32) for k in ("inputs", "targets", "positions")}
    batch.update({k: jax.ShapeDtypeStruct((rows, seq_len), jnp.float32)
                  for k in ("loss_mask", "advantages", "old_logprobs")})
    batch.update(extra_batch or {})
    batch = abstract(batch, jax.tree.map(lambda _: sharding, batch))
    what = (f"rollout batch {rows} x {seq_len}, accum_steps {accum_steps}, {jnp.dtype(compute_dtype).name} "
            f"compute, remat {remat}")
    args = (state, batch) if reference is None else (state, batch, reference)
    per_call = score_rows(rows, tr.batch_shards(sharding), accum_steps)
    scored = {k: jax.ShapeDtypeStruct((per_call,) + v.shape[1:], v.dtype, sharding=v.sharding)
              for k, v in batch.items() if k not in ("loss_mask", "advantages", "old_logprobs")}
    programs = [Program(prefix + "update", update, args, "one policy-gradient update" +
                        (" with the frozen reference" if reference is not None else "") + "; " + what),
                Program(prefix + "score", score, (state.params, state.model_state, scored),
                        f"old log-probs and entropy, {per_call} rows per call; " + what)]
    return programs, {"state": state, "reference": reference}


class Policy:
    """One trainable LM with its optimizer state on the mesh, and (if kl_coef > 0) its frozen reference.

    Args:
      model: the initial policy (a jaxsuite LM). Its arrays are copied into the train state.
      optim: the optimizer fields `make_optimizer` reads (lr, warmup_steps, min_lr_ratio, steps, weight_decay,
        b1, b2, grad_clip) as a ConfigDict or dict; `steps` is the schedule length in optimizer updates.
      loss: the PolicyLossConfig.
      reference: the frozen reference model (default: a copy of `model` as given, i.e. the initial policy).
      mini_batch_size: rows per optimizer update (default: the whole rollout batch in one update);
      epochs: passes over the rollout batch (PPO epochs); accum_steps: micro-batches per update.
      remat: per-layer rematerialisation of the update's forward ("none" / "minimal" / "full"), set on `model`.
      trainable: `trainable(path names) -> bool` freezes the parameters it rejects (no update, no Adam moments).
        A model with LoRA adapters defaults to training only them (`lora.is_lora_path`), and without an explicit
        `reference` its reference is its base (the adapters disabled): the KL term then costs one more forward
        pass and no memory for a second copy of the weights.
      seed: the training key of LoRA dropout (jaxsuite.core.stochastic).
    """

    def __init__(self, model: nnx.Module, *, optim: Any, loss: PolicyLossConfig, mesh: jax.sharding.Mesh,
                 rules: shd.Rules = shd.DEFAULT_RULES, reference: nnx.Module | None = None,
                 mini_batch_size: int | None = None, epochs: int = 1, accum_steps: int = 1,
                 compute_dtype: Any = jnp.float32, remat: str = "none", trainable=None, seed: int = 0):
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        self.loss_cfg, self.mesh, self.rules = loss, mesh, rules
        self.mini_batch_size, self.epochs, self.accum_steps = mini_batch_size, int(epochs), int(accum_steps)
        has_adapters = bool(lora.adapters(model))
        if trainable is None and has_adapters:
            trainable = lora.is_lora_path
        self.optimizer = tr.make_optimizer(optim, trainable=trainable)
        self.batch_sharding = tr.batch_sharding(mesh, rules)
        apply_model_options(model, remat=remat)
        self.reference_is_base = has_adapters and reference is None
        ref_graphdef, self.reference, ref_shardings = (None, None, None) if self.reference_is_base else \
            _split_reference(reference if reference is not None else model, loss, mesh, rules)
        if self.reference is not None:     # a copy on the mesh: the caller's module keeps its own arrays
            self.reference = jax.jit(lambda t: t, out_shardings=ref_shardings)(self.reference)
        self.graphdef, self.state, self.shardings = tr.create_train_state(model, self.optimizer, mesh, rules)
        self._update, self._score = _policy_steps(self.graphdef, self.shardings, self.optimizer, loss, mesh, rules,
                                                  accum_steps=accum_steps, compute_dtype=compute_dtype,
                                                  ref_graphdef=ref_graphdef, ref_shardings=ref_shardings,
                                                  reference_is_base=self.reference_is_base, seed=seed,
                                                  trainable=trainable)

    # -- reading the policy
    def module(self) -> nnx.Module:
        """The current policy as a module (sharing the train state's arrays: use it before the next update)."""
        return nnx.merge(self.graphdef, self.state.params, self.state.model_state)

    @property
    def step(self) -> int:
        return int(self.state.step)

    def _device_batch(self, batch: dict) -> dict:
        return {k: _global(v, self.batch_sharding) for k, v in batch.items()}

    @property
    def batch_shards(self) -> int:
        """How many ways the batch dimension is split over the mesh (rows must be a multiple of it)."""
        return tr.batch_shards(self.batch_sharding)

    def _pad_rows(self, batch: dict, multiple: int) -> dict:
        """Empty rows (no loss tokens) up to a multiple of `multiple` rows: a rollout of any size runs on any
        mesh. What the padded rows hold beyond their zero masks (e.g. latent slots) never matters."""
        return pad_batch(batch, padded_rows(next(iter(batch.values())).shape[0], multiple))

    def score(self, batch: dict) -> tuple[np.ndarray, np.ndarray]:
        """(log p(target), entropy) per position [B, T] under the current policy, at the loss temperature.

        Scored in calls of one accumulation micro-batch each (`score_rows`): the pass holds float32
        full-vocabulary logits for the rows it scores, which for a whole rollout batch would not fit a device."""
        rows = batch["inputs"].shape[0]
        keys = [k for k in batch if k not in ("loss_mask", "advantages", "old_logprobs")]
        per_call = score_rows(rows, self.batch_shards, self.accum_steps)
        part = self._pad_rows({k: np.asarray(batch[k]) for k in keys}, per_call)
        logp, ent = [], []
        for start in range(0, part["inputs"].shape[0], per_call):
            chunk = self._device_batch({k: v[start:start + per_call] for k, v in part.items()})
            out = self._score(self.state.params, self.state.model_state, chunk)
            logp.append(np.asarray(out[0]))
            ent.append(np.asarray(out[1]))
        return np.concatenate(logp)[:rows], np.concatenate(ent)[:rows]

    # -- training
    def update(self, batch: dict) -> dict[str, float]:
        """One RL update on a rollout batch: recomputes the old log-probs (unless given), then runs `epochs`
        passes of mini-batch updates. Returns the metrics averaged over the updates, plus `updates`."""
        missing = [k for k in RL_BATCH_KEYS if k not in batch]
        if missing:
            raise KeyError(f"RL batch is missing {missing}; it has {sorted(batch)}")
        batch = {k: np.asarray(v) for k, v in batch.items()}
        shapes = {k: batch[k].shape for k in RL_BATCH_KEYS}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"the token arrays of an RL batch must be [B, T] of one shape, got {shapes}")
        extra = {k: v.shape for k, v in batch.items() if v.shape[:1] != shapes["inputs"][:1]}
        if extra:
            raise ValueError(f"every RL batch array needs the batch dimension {shapes['inputs'][0]} first, got {extra}")
        if "old_logprobs" not in batch:
            batch["old_logprobs"], _ = self.score(batch)
        rows = batch["inputs"].shape[0]
        mb = int(self.mini_batch_size or rows)
        if rows % mb:
            raise ValueError(f"rollout batch of {rows} rows is not a multiple of mini_batch_size={mb}")
        keys = list(batch)              # model inputs beyond the tokens (latent slots, molecule features) too
        if self.mini_batch_size is None:    # one update on the whole batch, padded to fit the mesh
            batch = self._pad_rows({k: batch[k] for k in keys}, self.batch_shards * self.accum_steps)
            rows = mb = batch["inputs"].shape[0]
        elif mb % (self.batch_shards * self.accum_steps):
            raise ValueError(f"mini_batch_size={mb} must be a multiple of the {self.batch_shards} batch shards "
                             f"x accum_steps={self.accum_steps}")
        history: list[dict] = []
        for _ in range(self.epochs):
            for start in range(0, rows, mb):
                part = self._device_batch({k: batch[k][start:start + mb] for k in keys})
                if self.reference is None:
                    self.state, metrics = self._update(self.state, part)
                else:
                    self.state, metrics = self._update(self.state, part, self.reference)
                history.append(metrics)
        history = jax.device_get(history)
        out = {k: float(np.mean([h[k] for h in history])) for k in history[0]}
        out["updates"] = len(history)
        return out

    # -- rollback and checkpoints
    def snapshot(self) -> tr.TrainState:
        """A copy of the train state on the mesh (the update donates the live one)."""
        return jax.jit(lambda s: s, out_shardings=self.shardings)(self.state)

    def restore(self, snapshot: tr.TrainState) -> None:
        """Continues from `snapshot` (params, optimizer state and step); the snapshot itself stays intact."""
        self.state = jax.jit(lambda s: s, out_shardings=self.shardings)(snapshot)

    def abstract_state(self) -> tr.TrainState:
        """ShapeDtypeStructs with shardings of the train state, as a checkpoint-restore target."""
        return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), self.state,
                            self.shardings)
