"""The resumable training loop every LM-training job shares (pre-training, the HALO stages, fine-tuning).

`train_loop(...)` owns everything between "here is a model and its data" and "here are the trained weights":
the sharded train state, the jit'd step (any `loss_fn`, optionally freezing parameters), periodic logging and
evaluation, metrics.jsonl, the progress line, atomic checkpoints of state + data-iterator position + RNG, and
exact resumption: started again on the same workdir it restores the newest checkpoint and continues with the
same batches, so an interrupted run reproduces the uninterrupted one's losses.

A job builds its model (from scratch, from a checkpoint, or assembled from a teacher), its datasets and its
loss, calls `train_loop`, and then does its own exporting from the returned final module.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsuite.core import sharding as shd
from jaxsuite.core import train as tr
from jaxsuite.core import files, interrupt
from jaxsuite.core.checkpoint import Checkpointer
from jaxsuite.core.metrics import Progress, plot_curves
from jaxsuite.core.workdir import METRICS, Workdir

log = logging.getLogger(__name__)

# train.remat: what each layer keeps for the backward pass (jaxsuite.models.lm.REMAT_POLICIES).
REMAT_NAMES = ("none", "minimal", "full")
# train.attention: the full forward's attention, checked here so a bad value fails before any compile; the model
# resolves it per call (jaxsuite.models.fused_attention.IMPLS / choose_attention: core may not import models).
ATTENTION_NAMES = ("auto", "xla", "splash", "cudnn")


def global_batch(local: dict[str, np.ndarray], sharding: jax.sharding.NamedSharding) -> dict[str, jax.Array]:
    """Per-process numpy batch -> global jax.Arrays sharded over the batch axes (all processes at once)."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}


def padded_rows(rows: int, multiple: int) -> int:
    return -(-rows // multiple) * multiple


def pad_batch(local: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """Appends all-zero rows up to `rows`. A zero row has loss_mask 0 (and segment id 0, the padding segment),
    so every loss, which sums over real tokens and divides by their count, is unchanged: the extra rows only
    let a small global batch split evenly over more devices than it has rows for. Index arrays named
    `*_slots` (latent_slots) are padded with -1, "no slot", so a padded row does no latent work either."""
    out = {}
    for k, v in local.items():
        v = np.asarray(v)
        extra = rows - v.shape[0]
        if extra <= 0:
            out[k] = v
            continue
        pad = np.zeros((extra, *v.shape[1:]), v.dtype)
        if k.endswith("_slots"):   # index arrays (e.g. latent_slots): -1 is "no slot", so a padded row has none
            pad[:] = -1
        elif k == "positions":   # ordinary positions, so position-dependent layers see nothing unusual
            pad[:] = np.arange(v.shape[1], dtype=v.dtype)
        out[k] = np.concatenate([v, pad])
    return out


def batch_placer(config, sharding: jax.sharding.NamedSharding, accum_steps: int) -> Callable[[dict], dict]:
    """`place(local numpy batch) -> global jax batch`, padding the rows with zero-weight rows when the global
    batch does not divide over accum_steps x the batch shards (e.g. a batch of 4 on an 8-device host). The
    waste is logged once with the value of data.batch_size that avoids it."""
    multiple = accum_steps * tr.batch_shards(sharding)
    procs = jax.process_count()
    rows = int(config.data.batch_size)
    target = padded_rows(rows, multiple)
    if target == rows:
        return lambda local: global_batch(local, sharding)
    if multiple % procs or rows % procs:
        raise ValueError(f"data.batch_size={rows} cannot be split over {procs} processes x {multiple // procs} "
                         f"rows each: set data.batch_size to a multiple of {multiple} (e.g. {target})")
    log.warning("data.batch_size=%d does not divide over accum_steps=%d x %d batch shards: each batch is padded "
                "with %d zero-weight rows (the losses are unchanged; that compute is wasted). Set "
                "data.batch_size to a multiple of %d to avoid it.", rows, accum_steps, multiple // accum_steps,
                target - rows, multiple)
    return lambda local: global_batch(pad_batch(local, target // procs), sharding)


def evaluate(eval_step, params, eval_dataset, place, max_batches: int, prefix: str = "eval_",
             perplexity: bool = True) -> dict:
    """Mean loss over up to `max_batches` batches of a fresh pass over the eval data, and with `perplexity`
    (a next-token cross-entropy; the exp of an MSE or a KL means nothing) its exp. Keys: {prefix}loss,
    [{prefix}perplexity,] {prefix}tokens."""
    if eval_dataset is None:
        return {}
    loss_sum, tokens, batches = 0.0, 0.0, 0
    for local in iter(eval_dataset):
        if batches >= max_batches:
            break
        out = jax.device_get(eval_step(params, place(local)))
        loss_sum += float(out["loss_sum"])
        tokens += float(out["tokens"])
        batches += 1
    if tokens == 0:
        raise ValueError("the eval data (data.eval_source) produced no full batch: use a larger eval set or a "
                         "smaller data.batch_size / data.seq_len")
    loss = loss_sum / tokens
    out = {f"{prefix}loss": loss, f"{prefix}tokens": tokens}
    if perplexity:
        out[f"{prefix}perplexity"] = math.exp(min(loss, 50.0))
    return out


@dataclasses.dataclass
class LoopResult:
    model: nnx.Module              # the trained module, sharded as the train state was (its final params)
    start_step: int                # 0, or the checkpoint step this run resumed from
    steps: int
    final_train_loss: float | None
    last_eval: dict[str, float]
    train_seconds: float           # wall time of this run's steps (excluding set-up)
    tokens_per_step: int

    def summary(self) -> dict[str, Any]:
        return {"steps": self.steps, "tokens_seen": self.steps * self.tokens_per_step,
                "final_train_loss": self.final_train_loss, **self.last_eval,
                "train_tokens_per_second_this_run":
                    (self.steps - self.start_step) * self.tokens_per_step / max(self.train_seconds, 1e-9),
                "resumed_from_step": self.start_step}


def apply_model_options(model: nnx.Module, *, remat: str = "none", attention: str | None = None,
                        linear_kernel: str = "") -> None:
    """Sets the static memory and kernel options on every LM and linear-attention mixer inside `model` (in place;
    a HALO stage holds a teacher and students, an RL policy one LM): per-layer rematerialisation, the full
    forward's attention (None keeps the model's own), and the linear-attention kernel ('' keeps the model's own).
    Set before `nnx.split`."""
    if remat not in REMAT_NAMES:
        raise ValueError(f"train.remat={remat!r}: use one of {REMAT_NAMES}")
    if attention is not None and attention not in ATTENTION_NAMES:
        raise ValueError(f"train.attention={attention!r}: use one of {ATTENTION_NAMES}")
    if linear_kernel:
        import kernels_pallas as kp     # only here: importing the core loads no kernel library
    if linear_kernel and linear_kernel not in kp.IMPLEMENTATIONS:
        raise ValueError(f"train.linear_kernel={linear_kernel!r}: use '' (the model's own) or one of "
                         f"{kp.IMPLEMENTATIONS}")
    for _, module in nnx.iter_modules(model):
        if hasattr(module, "remat"):
            module.remat = remat
        if attention is not None and hasattr(module, "attention_impl"):
            module.attention_impl = attention
        if linear_kernel and hasattr(module, "spec") and hasattr(module, "implementation"):
            module.implementation = linear_kernel      # a linear-attention mixer's kernels_pallas implementation


def _training_setup(config, model: nnx.Module, loss_fn: tr.LossFn, trainable) -> tuple[tr.LossFn, Any]:
    """Applies config.train's remat, attention and linear kernel to every LM inside `model` (in place) and returns
    (the loss, with train.loss_chunk applied to the default one; the optimizer)."""
    tc = config.train
    apply_model_options(model, remat=str(tc.get("remat", "none")), attention=str(tc.get("attention", "auto")),
                        linear_kernel=str(tc.get("linear_kernel", "") or ""))
    if loss_fn is tr.next_token_loss:
        loss_fn = tr.chunked_next_token_loss(int(tc.get("loss_chunk", 0)))
    return loss_fn, tr.make_optimizer(tc, int(tc.steps), trainable=trainable)


def _steps(config, graphdef, optimizer, shardings, model_state, mesh, rules, loss_fn, trainable=None):
    """(train_step, eval_step) as train_loop runs them."""
    tc = config.train
    compute_dtype = jnp.dtype(tc.compute_dtype)
    train_step = tr.make_train_step(graphdef, optimizer, mesh=mesh, rules=rules, state_shardings=shardings,
                                    accum_steps=int(tc.accum_steps), compute_dtype=compute_dtype, loss_fn=loss_fn,
                                    seed=int(config.get("seed", 0)), trainable=trainable)
    eval_step = tr.make_eval_step(graphdef, mesh=mesh, rules=rules, state_shardings=shardings,
                                  compute_dtype=compute_dtype, model_state=model_state, loss_fn=loss_fn)
    return train_step, eval_step


def training_programs(config, model: nnx.Module, *, mesh: jax.sharding.Mesh, rules: shd.Rules,
                      loss_fn: tr.LossFn = tr.next_token_loss,
                      trainable: Callable[[tuple[str, ...]], bool] | None = None, prefix: str = "",
                      batch: dict[str, jax.ShapeDtypeStruct] | None = None) -> list:
    """The programs `train_loop` would compile for this config, with abstract arguments, for `--compile_only`
    (jaxsuite.core.aot): the train step and, when the config evaluates, the eval step. `model` may be abstract
    (nnx.eval_shape). `batch`: the abstract global batch the loss reads (default: the language-modelling
    batch of config.data, padded as the loop pads it)."""
    from jaxsuite.core.aot import Program, abstract

    tc = config.train
    loss_fn, optimizer = _training_setup(config, model, loss_fn, trainable)
    graphdef, state, shardings = tr.abstract_train_state(model, optimizer, mesh, rules)
    train_step, eval_step = _steps(config, graphdef, optimizer, shardings, state.model_state, mesh, rules, loss_fn,
                                   trainable)
    accum = int(tc.accum_steps)
    sharding = tr.batch_sharding(mesh, rules)
    rows = padded_rows(int(config.data.batch_size), accum * tr.batch_shards(sharding))
    seq = int(config.data.seq_len)
    if batch is None:
        dtypes = dict(inputs="int32", targets="int32", segment_ids="int32", positions="int32", loss_mask="float32")
        batch = {k: jax.ShapeDtypeStruct((rows, seq), jnp.dtype(d)) for k, d in dtypes.items()}
    batch = abstract(batch, jax.tree.map(lambda _: sharding, batch))
    rows, seq = batch["inputs"].shape      # a caller's batch may be narrower than data.seq_len (LatentChem's)
    axes = " x ".join(f"{name} {size}" for name, size in mesh.shape.items() if size > 1) or "one device"
    what = (f"global batch {rows} x {seq}, accum_steps {accum}, {tc.compute_dtype} compute, "
            f"remat {tc.get('remat', 'none')}, loss_chunk {tc.get('loss_chunk', 0)}, mesh {axes}")
    programs = [Program(prefix + "train_step", train_step, (state, batch), "one optimizer step; " + what)]
    if config.data.get("eval_source") and int(tc.eval_every) > 0:
        programs.append(Program(prefix + "eval_step", eval_step, (state.params, batch), "one eval batch; " + what))
    return programs


def train_loop(config, workdir: str | os.PathLike | Workdir, model: nnx.Module, *, mesh: jax.sharding.Mesh,
               rules: shd.Rules,
               train_ds, eval_ds=None, loss_fn: tr.LossFn = tr.next_token_loss,
               trainable: Callable[[tuple[str, ...]], bool] | None = None,
               curve_title: str = "loss", loss_name: str | None = None) -> LoopResult:
    """Trains `model` for `config.train.steps` steps on `train_ds`, resuming from workdir/checkpoints.

    Reads config.train (the block config_utils.train_block builds: steps, lr, warmup_steps, min_lr_ratio,
    weight_decay, b1, b2, eps, grad_clip, accum_steps, compute_dtype, remat, loss_chunk, log_every,
    eval_every, eval_batches, checkpoint_every, keep_checkpoints),
    config.data (seq_len, batch_size: the global batch) and config.seed. `loss_fn(model, batch) -> (loss_sum,
    tokens)` is used for training and evaluation; `trainable(path names)` freezes the rest. Writes
    metrics.jsonl, checkpoints/ and loss.png into `workdir` (a path or the job's Workdir); results.json and
    the finished-marker are the job's to write, after its own exports. `loss_name`: "CE" when a custom loss is
    a next-token cross-entropy (then the eval reports a perplexity, as for the default loss).
    """
    tc = config.train
    # what the loss is, for the names of the figures: the default loss is a next-token cross-entropy (its eval
    # reports a perplexity); a custom one is named by the caller ("per-layer MSE", "KL"), with no perplexity
    is_ce = loss_fn is tr.next_token_loss if loss_name is None else loss_name == "CE"
    wd = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    if wd.primary:
        files.makedirs(wd.root)
    total_steps = int(tc.steps)
    loss_fn, optimizer = _training_setup(config, model, loss_fn, trainable)
    graphdef, state, shardings = tr.create_train_state(model, optimizer, mesh, rules)
    del model  # the train state owns the parameters from here on (the step donates them)
    train_step, eval_step = _steps(config, graphdef, optimizer, shardings, state.model_state, mesh, rules, loss_fn,
                                   trainable)
    place = batch_placer(config, tr.batch_sharding(mesh, rules), int(tc.accum_steps))

    train_iter = iter(train_ds)
    rng = jax.random.key(int(config.seed))
    ckpt = Checkpointer(wd.root, max_to_keep=int(tc.keep_checkpoints), config=config)
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
    restored = ckpt.restore_latest(abstract, data_iterator=train_iter)
    start = 0
    if restored is not None:
        start, state, extra = restored
        rng = extra["rng"] if extra["rng"] is not None else rng
        log.info("%s: resumed from step %d", wd, start)

    writer = wd.metrics_writer(resume_step=start)
    tokens_per_step = int(config.data.batch_size) * int(config.data.seq_len)
    progress = Progress(total_steps, start_step=start, every=int(tc.log_every), tokens_per_step=tokens_per_step)
    final_train_loss, last_eval, train_seconds = None, {}, 0.0
    # Ctrl-C / SIGTERM (a preemption) inside this block: a checkpoint at the step boundary, then Stopped
    with interrupt.step_loop(ckpt, writer):
        for step in range(start + 1, total_steps + 1):
            t0 = time.perf_counter()
            try:
                local = next(train_iter)
            except StopIteration:
                raise ValueError(f"the training data ran out at step {step}; lower train.steps or add data"
                                 ) from None
            state, metrics = train_step(state, place(local))
            if step % int(tc.log_every) == 0 or step == total_steps:
                metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                final_train_loss = metrics["loss"]
                record = {f"train/{k}": v for k, v in metrics.items()}
                if eval_ds is not None and int(tc.eval_every) > 0 and (step % int(tc.eval_every) == 0
                                                                       or step == total_steps):
                    last_eval = evaluate(eval_step, state.params, eval_ds, place, int(tc.eval_batches),
                                         perplexity=is_ce)
                    record.update({f"eval/{k[5:]}": v for k, v in last_eval.items()})
                writer.write(step, record)
                progress.update(step, loss=metrics["loss"], lr=metrics["lr"],
                                **({"eval_loss": last_eval["eval_loss"]} if "eval/loss" in record else {}))
            else:
                progress.update(step)
            if step % int(tc.checkpoint_every) == 0 or step == total_steps:
                ckpt.save(step, state, data_iterator=train_iter, rng=rng)
            train_seconds += time.perf_counter() - t0
            interrupt.stop_if_requested(step, wd.root, lambda: ckpt.save(step, state, data_iterator=train_iter,
                                                                         rng=rng), ckpt, writer,
                                        every=int(tc.log_every))
    ckpt.close()
    writer.close()

    if not last_eval and eval_ds is not None:
        last_eval = evaluate(eval_step, state.params, eval_ds, place, int(tc.eval_batches), perplexity=is_ce)
    # The trained module keeps the train state's sharding: an 8B model replicated on every chip would not fit.
    final = nnx.merge(graphdef, state.params, state.model_state)
    if wd.primary:
        plot_curves(wd.path(METRICS), ["train/loss", "eval/loss"], wd.path("loss.png"), title=curve_title)
    return LoopResult(final, start, total_steps, final_train_loss, last_eval, train_seconds, tokens_per_step)
