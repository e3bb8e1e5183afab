"""The pre-training job: `run(config, workdir)` trains a decoder LM with next-token cross-entropy.

This is the main job of `python -m jaxsuite.launch` (configs/qwen3_pretrain.py). It follows the job contract:
  workdir/results.json     headline figures (final train / eval loss, perplexity, tokens/s, samples)
  workdir/metrics.jsonl    one line per logged step (loss, lr, grad_norm, eval_loss, ...)
  workdir/checkpoints/     orbax checkpoints: train state + data-iterator position + RNG, atomic
  workdir/loss.png         the loss curves
  workdir/samples.txt      text sampled from the final model
  workdir/hf/              the final model as a Hugging Face folder (+ tokenizer), loadable by transformers
Started again with the same command it resumes from the newest checkpoint and reproduces the uninterrupted
run's losses exactly (same batches, same parameters, same optimizer state).
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsuite.core import sharding as shd
from jaxsuite.core import train as tr
from jaxsuite.core.checkpoint import Checkpointer
from jaxsuite.core.metrics import MetricsWriter, Progress, is_primary, join_path, plot_curves, write_results
from jaxsuite.models.config import count_params
from jaxsuite.models.decoder import DecoderLM
from jaxsuite.models.factory import arch_from_config, init_model

log = logging.getLogger(__name__)


# --- pieces a job is made of (reused by other LM-training jobs) ---------------------------------------------
def mesh_and_rules(config) -> tuple[jax.sharding.Mesh, shd.Rules]:
    mesh = shd.make_mesh(dict(config.mesh))
    rules = shd.rules_from_config(config.sharding_rules)
    return mesh, rules


def build_tokenizer(data_cfg):
    """The config's tokenizer: "stdlib" trains (once, cached) a sentencepiece model on the embedded corpus."""
    from jaxsuite.core.tokenizer import load_tokenizer
    return load_tokenizer(data_cfg.tokenizer, vocab_size=int(data_cfg.vocab_size))


def build_model(config, tokenizer, mesh, rules) -> DecoderLM:
    """From `model.init_from` (HF folder / hub id) or freshly initialised from `model.arch`, on the mesh."""
    if config.model.init_from:
        from jaxsuite.hf import load_pretrained
        model = load_pretrained(config.model.init_from, mesh=mesh, rules=rules)
    else:
        cfg = arch_from_config(config.model.arch)
        cfg = cfg.replace(bos_token_id=tokenizer.bos_id if cfg.bos_token_id is None else cfg.bos_token_id,
                          eos_token_id=tokenizer.eos_id if cfg.eos_token_id is None else cfg.eos_token_id,
                          pad_token_id=tokenizer.pad_id if cfg.pad_token_id is None else cfg.pad_token_id)
        model = init_model(cfg, seed=int(config.seed), mesh=mesh, rules=rules)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                         f"{model.config.vocab_size}; set model.arch.vocab_size >= {tokenizer.vocab_size}")
    return model


def build_datasets(config, tokenizer):
    """(train dataset, eval dataset or None) yielding per-process batches of the training-batch contract.

    The eval set is read once, unshuffled, so every evaluation sees the same batches."""
    from jaxsuite.core import data
    d = config.data
    common = dict(tokenizer=tokenizer, seq_len=int(d.seq_len), batch_size=int(d.batch_size), text_key=d.text_key)
    train = data.make_lm_dataset(d.source, seed=int(d.shuffle_seed), shuffle=True,
                                 shuffle_window=int(d.shuffle_window), **common)
    evals = None
    if d.eval_source:
        evals = data.make_lm_dataset(d.eval_source, seed=0, shuffle=False, num_epochs=1, **common)
    return train, evals


def global_batch(local: dict[str, np.ndarray], sharding: jax.sharding.NamedSharding) -> dict[str, jax.Array]:
    """Per-process numpy batch -> global jax.Arrays sharded over the batch axes (all processes at once)."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}


def evaluate(eval_step, params, eval_dataset, sharding, max_batches: int) -> dict[str, float]:
    """Mean loss and perplexity over (up to) `max_batches` batches of a fresh pass over the eval data."""
    if eval_dataset is None:
        return {}
    loss_sum, tokens, batches = 0.0, 0.0, 0
    for local in iter(eval_dataset):
        if batches >= max_batches:
            break
        out = jax.device_get(eval_step(params, global_batch(local, sharding)))
        loss_sum += float(out["loss_sum"])
        tokens += float(out["tokens"])
        batches += 1
    if tokens == 0:
        raise ValueError("the eval data (data.eval_source) produced no full batch: use a larger eval set or a "
                         "smaller data.batch_size / data.seq_len")
    loss = loss_sum / tokens
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50.0)), "eval_tokens": tokens}


def replicated(tree: Any, mesh: jax.sharding.Mesh) -> Any:
    """A copy of `tree` replicated on every device (so every process can read it whole, e.g. to export)."""
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.jit(lambda t: t, out_shardings=rep)(tree)


def sample_text(model: DecoderLM, tokenizer, sample_cfg, seed: int) -> list[str]:
    from jaxsuite.generate import generate
    if int(sample_cfg.num_samples) <= 0:
        return []
    prompt = tokenizer.encode(sample_cfg.prompt)
    prompts = [prompt] * int(sample_cfg.num_samples)
    out = generate(model, prompts, int(sample_cfg.max_new_tokens), temperature=float(sample_cfg.temperature),
                   top_p=float(sample_cfg.top_p), top_k=int(sample_cfg.top_k), seed=seed,
                   stop_tokens=(tokenizer.eos_id,) if tokenizer.eos_id is not None and tokenizer.eos_id >= 0
                   else (), pad_token_id=max(tokenizer.pad_id or 0, 0))
    return [sample_cfg.prompt + tokenizer.decode(seq) for seq in out.sequences()]


# --- the job ------------------------------------------------------------------------------------------------
def run(config, workdir: str) -> dict[str, Any]:
    t_start = time.time()
    tc = config.train
    os.makedirs(workdir, exist_ok=True)
    mesh, rules = mesh_and_rules(config)
    tokenizer = build_tokenizer(config.data)
    model = build_model(config, tokenizer, mesh, rules)
    n_params = count_params(model.config)
    log.info("model %s: %.2fM parameters; mesh %s", model.config.model_type, n_params / 1e6, dict(mesh.shape))

    total_steps = int(tc.steps)
    optimizer = tr.make_optimizer(tc, total_steps)
    graphdef, state, shardings = tr.create_train_state(model, optimizer, mesh, rules)
    del model  # the train state owns the parameters from here on (the step donates them)
    compute_dtype = jnp.dtype(tc.compute_dtype)
    train_step = tr.make_train_step(graphdef, optimizer, mesh=mesh, rules=rules, state_shardings=shardings,
                                    accum_steps=int(tc.accum_steps), compute_dtype=compute_dtype)
    eval_step = tr.make_eval_step(graphdef, mesh=mesh, rules=rules, state_shardings=shardings,
                                  compute_dtype=compute_dtype, model_state=state.model_state)
    batch_sh = tr.batch_sharding(mesh, rules)

    train_ds, eval_ds = build_datasets(config, tokenizer)
    train_iter = iter(train_ds)
    rng = jax.random.key(int(config.seed))

    ckpt = Checkpointer(workdir, max_to_keep=int(tc.keep_checkpoints), config=config)
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
    restored = ckpt.restore_latest(abstract, data_iterator=train_iter)
    start = 0
    if restored is not None:
        start, state, extra = restored
        rng = extra["rng"] if extra["rng"] is not None else rng
        log.info("resumed from step %d", start)

    writer = MetricsWriter(workdir, resume_step=start)
    tokens_per_step = int(config.data.batch_size) * int(config.data.seq_len)
    progress = Progress(total_steps, start_step=start, every=int(tc.log_every), tokens_per_step=tokens_per_step)
    window: list[dict] = []
    last_eval: dict[str, float] = {}
    train_seconds = 0.0
    for step in range(start + 1, total_steps + 1):
        t0 = time.perf_counter()
        try:
            local = next(train_iter)
        except StopIteration:
            raise ValueError(f"the training data ran out at step {step}; lower train.steps or add data") from None
        state, metrics = train_step(state, global_batch(local, batch_sh))
        if step % int(tc.log_every) == 0 or step == total_steps:
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            window.append(metrics)
            record = {f"train/{k}": v for k, v in metrics.items()}
            if eval_ds is not None and int(tc.eval_every) > 0 and (step % int(tc.eval_every) == 0
                                                                   or step == total_steps):
                last_eval = evaluate(eval_step, state.params, eval_ds, batch_sh, int(tc.eval_batches))
                record.update({f"eval/{k[5:]}": v for k, v in last_eval.items()})
            writer.write(step, record)
            progress.update(step, loss=metrics["loss"], lr=metrics["lr"],
                            **({"eval_loss": last_eval["eval_loss"]} if "eval/loss" in record else {}))
        else:
            progress.update(step)
        if step % int(tc.checkpoint_every) == 0 or step == total_steps:
            ckpt.save(step, state, data_iterator=train_iter, rng=rng)
        train_seconds += time.perf_counter() - t0
    ckpt.close()
    writer.close()

    if not last_eval:
        last_eval = evaluate(eval_step, state.params, eval_ds, batch_sh, int(tc.eval_batches))
    final = nnx.merge(graphdef, replicated(state.params, mesh), replicated(state.model_state, mesh))
    samples = sample_text(final, tokenizer, config.sample, seed=int(config.seed))

    results: dict[str, Any] = {
        "params": n_params, "steps": total_steps, "tokens_seen": total_steps * tokens_per_step,
        "final_train_loss": window[-1]["loss"] if window else None,
        **last_eval,
        "train_tokens_per_second_this_run": (total_steps - start) * tokens_per_step / max(train_seconds, 1e-9),
        "wall_seconds_this_run": time.time() - t_start,
        "resumed_from_step": start,
        "samples": samples,
    }
    if is_primary():
        with open(join_path(workdir, "samples.txt"), "w") as f:
            f.write("\n\n---\n\n".join(samples) + "\n")
        plot_curves(join_path(workdir, "metrics.jsonl"), ["train/loss", "eval/loss"],
                    join_path(workdir, "loss.png"), title=f"{model_name(config)}: next-token loss")
        if config.export_hf:
            from jaxsuite.hf import save_pretrained
            hf_dir = save_pretrained(final, join_path(workdir, "hf"))
            export_tokenizer(tokenizer, hf_dir)
            results["hf_export"] = hf_dir
    write_results(workdir, results)
    log.info("results: %s", {k: v for k, v in results.items() if k != "samples"})
    return results


def model_name(config) -> str:
    return config.model.init_from or f"{config.model.arch.model_type} {config.model.arch.hidden_size}d x " \
                                     f"{config.model.arch.num_hidden_layers}L"


def export_tokenizer(tokenizer, hf_dir: str) -> list[str]:
    """Puts the tokenizer's files beside the exported weights; returns the names written.

    A sentencepiece model becomes `tokenizer.model`; an HF tokenizer folder contributes its tokenizer files.
    The byte tokenizer has no file (it is fully described by its class)."""
    path = getattr(tokenizer, "path", None) or getattr(tokenizer, "model_file", None)
    if not path:
        return []
    path = os.fspath(path)
    written = []
    if os.path.isfile(path):
        name = "tokenizer.model" if path.endswith(".model") else os.path.basename(path)
        shutil.copyfile(path, os.path.join(hf_dir, name))
        written.append(name)
    elif os.path.isdir(path):
        for name in sorted(os.listdir(path)):
            if name.startswith("tokenizer") or name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
                shutil.copyfile(os.path.join(path, name), os.path.join(hf_dir, name))
                written.append(name)
    return written
