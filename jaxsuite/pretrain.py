"""The pre-training job: `run(config, workdir)` trains a decoder LM with next-token cross-entropy.

The job of configs/qwen3_pretrain.py (and the HALO quickstart's teacher). It follows the job contract:
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
import os
import shutil
import time
from typing import Any

import jax

from jaxsuite.core import sharding as shd
from jaxsuite.core.loop import train_loop
from jaxsuite.core.metrics import is_primary, join_path, write_results
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
    os.makedirs(workdir, exist_ok=True)
    mesh, rules = mesh_and_rules(config)
    tokenizer = build_tokenizer(config.data)
    model = build_model(config, tokenizer, mesh, rules)
    n_params = count_params(model.config)
    log.info("model %s: %.2fM parameters; mesh %s", model.config.model_type, n_params / 1e6, dict(mesh.shape))
    train_ds, eval_ds = build_datasets(config, tokenizer)
    out = train_loop(config, workdir, model, mesh=mesh, rules=rules, train_ds=train_ds, eval_ds=eval_ds,
                     curve_title=f"{model_name(config)}: next-token loss")
    final = out.model
    samples = sample_text(final, tokenizer, config.sample, seed=int(config.seed))

    results: dict[str, Any] = {"params": n_params, **out.summary(),
                               "wall_seconds_this_run": time.time() - t_start, "samples": samples}
    if is_primary():
        with open(join_path(workdir, "samples.txt"), "w") as f:
            f.write("\n\n---\n\n".join(samples) + "\n")
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
