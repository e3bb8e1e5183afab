"""The pre-training job: `run(config, workdir)` trains a decoder LM with next-token cross-entropy.

The job of configs/qwen3_pretrain.py (and the HALO quickstart's teacher). It follows the job contract
(jaxsuite.core.workdir):
  workdir/results.json     the config, wall time and headline figures (final train / eval loss, perplexity,
                           tokens/s, samples)
  workdir/metrics.jsonl    one line per logged step (loss, lr, grad_norm, eval_loss, ...)
  workdir/checkpoints/     orbax checkpoints: train state + data-iterator position + RNG, atomic
  workdir/loss.png         the loss curves
  workdir/samples.txt      text sampled from the final model
  workdir/hf/              the final model as a Hugging Face folder (+ tokenizer), loadable by transformers
                           (with LoRA, model.lora.rank > 0: the adapters merged into the base weights)
  workdir/adapter/         with LoRA: the adapters alone as a PEFT folder (peft.PeftModel.from_pretrained)
  workdir/finished.json    written last: the job completed (callers such as the HALO pipeline skip it then)
Started again with the same command it resumes from the newest checkpoint and reproduces the uninterrupted
run's losses exactly (same batches, same parameters, same optimizer state).
"""
from __future__ import annotations

import logging
from typing import Any

from jaxsuite.core.build import build_datasets, build_tokenizer, export_tokenizer, mesh_and_rules
from jaxsuite.core.loop import train_loop
from jaxsuite.core.workdir import Workdir
from jaxsuite.hf import build_model
from jaxsuite.models.config import count_params
from jaxsuite.models.lm import CausalLM
from jaxsuite.models.lora import LoraConfig, adapters, apply_lora, is_lora_path, merge_and_unload

log = logging.getLogger(__name__)


def sample_text(model: CausalLM, tokenizer, sample_cfg, seed: int, *, mesh=None, rules=None) -> list[str]:
    from jaxsuite.generate import generate
    if int(sample_cfg.num_samples) <= 0:
        return []
    prompt = tokenizer.encode(sample_cfg.prompt)
    prompts = [prompt] * int(sample_cfg.num_samples)
    out = generate(model, prompts, int(sample_cfg.max_new_tokens), temperature=float(sample_cfg.temperature),
                   top_p=float(sample_cfg.top_p), top_k=int(sample_cfg.top_k), seed=seed,
                   stop_tokens=(tokenizer.eos_id,) if tokenizer.eos_id is not None and tokenizer.eos_id >= 0
                   else (), pad_token_id=max(tokenizer.pad_id or 0, 0), mesh=mesh, rules=rules)
    return [sample_cfg.prompt + tokenizer.decode(seq) for seq in out.sequences()]


def model_name(config) -> str:
    return config.model.init_from or f"{config.model.arch.model_type} {config.model.arch.hidden_size}d x " \
                                     f"{config.model.arch.num_hidden_layers}L"


def add_adapters(model: CausalLM, config):
    """LoRA when config.model.lora.rank > 0: adds the adapters to `model` (in place) and returns the `trainable`
    predicate that freezes everything else; None (train every weight) otherwise."""
    block = config.model.get("lora")
    if block is None or int(block.rank) <= 0:
        return None
    paths = apply_lora(model, LoraConfig.from_config(block), seed=int(config.seed))
    log.info("LoRA rank %d on %d projections (%s, ...); the base weights are frozen", int(block.rank), len(paths),
             paths[0])
    return is_lora_path


def programs(config, mesh, rules) -> list:
    """Every program `run` compiles, abstract, for `--compile_only` (jaxsuite.core.aot): the train step, the eval
    step when the config evaluates, and the sampling loop. The prompt's length is bounded by its UTF-8 bytes
    (no tokenizer is loaded; generate rounds it up to a power of two anyway)."""
    from jaxsuite.core.loop import training_programs
    from jaxsuite.generate import generate_program
    from jaxsuite.hf import abstract_model

    model = abstract_model(config)
    out = training_programs(config, model, mesh=mesh, rules=rules, trainable=add_adapters(model, config))
    s = config.sample
    if int(s.num_samples) > 0:
        out.append(generate_program(model, int(s.num_samples), len(s.prompt.encode()),
                                    int(s.max_new_tokens), mesh=mesh, rules=rules, greedy=float(s.temperature) == 0,
                                    top_k=int(s.top_k), name="sample"))
    return out


def run(config, workdir: str) -> dict[str, Any]:
    wd = Workdir.start(workdir)
    mesh, rules = mesh_and_rules(config)
    tokenizer = build_tokenizer(config)
    model = build_model(config, tokenizer, mesh, rules)
    n_params = count_params(model.config)
    log.info("model %s: %.2fM parameters; mesh %s", model.config.model_type, n_params / 1e6, dict(mesh.shape))
    trainable = add_adapters(model, config)
    train_ds, eval_ds = build_datasets(config, tokenizer)
    out = train_loop(config, wd, model, mesh=mesh, rules=rules, train_ds=train_ds, eval_ds=eval_ds,
                     trainable=trainable, curve_title=f"{model_name(config)}: next-token loss")
    final = out.model
    samples = sample_text(final, tokenizer, config.sample, seed=int(config.seed), mesh=mesh, rules=rules)

    figures: dict[str, Any] = {"params": n_params, **out.summary(), "samples": samples}
    wd.write_text("samples.txt", "\n\n---\n\n".join(samples) + "\n")
    if trainable is not None:
        from jaxsuite.peft_io import save_peft
        figures["lora_params"] = sum(a.a.size + a.b.size for a in adapters(final).values())
        figures["adapter"] = save_peft(final, wd.path("adapter"),
                                       base_model_name_or_path=config.model.init_from or None)
        merge_and_unload(final)           # hf/ below: the adapted model as plain weights
    if config.export_hf:
        hf_dir = wd.path("hf")
        from jaxsuite.hf import save_pretrained
        save_pretrained(final, hf_dir)      # every process gathers (collectives), the primary writes
        if wd.primary:
            export_tokenizer(tokenizer, hf_dir)
        figures["hf_export"] = hf_dir
    results = wd.finish(config, figures)
    log.info("results: %s", {k: v for k, v in results.items() if k not in ("samples", "config")})
    return results


run.programs = programs      # what `--compile_only` compiles for this job
