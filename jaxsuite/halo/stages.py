"""HALO stages 1-3 (arXiv 2601.22156): the models, losses and the three resumable training jobs.

  stage 1  hidden-state alignment. EVERY teacher layer gets a Lightning-attention student fed the teacher's
           detached post-input_layernorm hidden state (and the teacher's RoPE); the loss is the MSE between
           student and teacher mixer outputs (after o_proj, before the residual), averaged over all elements
           and layers; the forward continues with the teacher's outputs; only the students train. Output: an
           all-Lightning HypeNet folder holding every layer's student (`students_hypenet`), which both layer
           selection (replace one layer) and stage 2 (replace all but the kept layers) draw from.
  stage 2  end-to-end distillation. Attention layers take the teacher's weights (NoPE now) plus a new o_gate,
           Lightning layers take their stage-1 students (`assemble_hybrid`); all parameters train; loss =
           forward KL(teacher || student) over the whole vocabulary at temperature 1, averaged over positions.
  stage 3  long-context fine-tuning: plain next-token cross-entropy at a longer sequence length, no teacher.

Each stage is `run_stageN(config, workdir)`, a job of `python -m jaxsuite.launch` on the shared training loop
(sharded, checkpointed, resumable); each exports its model as a Hugging Face folder `workdir/hf` (with the
tokenizer), which the next stage reads, then writes results.json and its finished-marker
(jaxsuite.core.workdir). Config fields: see configs/halo_stage.py.
"""
from __future__ import annotations

import logging
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsuite.core import train as tr
from jaxsuite.core.build import build_datasets, build_tokenizer, check_vocab, export_tokenizer, mesh_and_rules
from jaxsuite.core.loop import train_loop
from jaxsuite.core.workdir import Workdir
from jaxsuite.halo.transfer import hypenet_config_from_teacher, stage0_transfer
from jaxsuite.models.hypenet_config import HypeNetConfig
from jaxsuite.models.lm import CausalLM
from jaxsuite.models.mixer_specs import ATTENTION
from jaxsuite.models.mixers_linear import LinearMixer

log = logging.getLogger(__name__)


# --- stage 1: per-layer alignment --------------------------------------------------------------------------------
class AlignmentModel(nnx.Module):
    """A frozen teacher and one Lightning student per teacher layer (`students[i]` imitates layer i's mixer)."""

    def __init__(self, teacher: CausalLM, students: list[LinearMixer]):
        if len(students) != teacher.config.num_hidden_layers:
            raise ValueError(f"{len(students)} students for a {teacher.config.num_hidden_layers}-layer teacher")
        self.teacher = teacher
        self.students = nnx.List(students)


def alignment_loss(model: AlignmentModel, batch: dict) -> tuple[jax.Array, jax.Array]:
    """Stage-1 loss sums: (sum over real tokens of the per-token MSE averaged over D and layers, tokens).

    One teacher forward whose mixer tap feeds each layer's detached mixer input to that layer's student (with the
    teacher's RoPE tables and masks) and continues with the teacher's own output."""
    weight = batch["loss_mask"].astype(jnp.float32)                               # [B, T]
    se_sums = []

    def tap(i, layer, h, out, ctx):
        h, target = jax.lax.stop_gradient(h), jax.lax.stop_gradient(out)          # [B, T, D] each
        student_out = model.students[i](h, ctx)                                   # [B, T, D]
        err = jnp.mean(jnp.square(student_out.astype(jnp.float32) - target.astype(jnp.float32)), axis=-1)
        se_sums.append(jnp.sum(err * weight))
        return target                                                             # continue with the teacher

    model.teacher.hidden_states(batch["inputs"], positions=batch.get("positions"),
                                segment_ids=batch.get("segment_ids"), mixer_tap=tap)
    return sum(se_sums) / len(model.students), jnp.sum(weight)


def _all_lightning_config(teacher_cfg, **overrides) -> HypeNetConfig:
    return hypenet_config_from_teacher(teacher_cfg, attention_layers=(), **overrides)


def build_alignment_model(teacher: CausalLM, *, seed: int = 0, mesh=None, rules=None) -> AlignmentModel:
    """Stage 1's model: students initialised by stage 0 (the teacher's projections, K/V expanded)."""
    hybrid = stage0_transfer(teacher, _all_lightning_config(teacher.config), seed=seed, mesh=mesh, rules=rules)
    return AlignmentModel(teacher, [layer.self_attn for layer in hybrid.layers])


def students_hypenet(teacher: CausalLM, students, *, mesh=None, rules=None) -> CausalLM:
    """The all-Lightning HypeNet made of the teacher's embeddings / MLPs / norms and every layer's student."""
    lm = stage0_transfer(teacher, _all_lightning_config(teacher.config), mesh=mesh, rules=rules)
    for layer, student in zip(lm.layers, students):
        nnx.update(layer.self_attn, nnx.state(student, nnx.Param))
    return lm


def assemble_hybrid(teacher: CausalLM, students_lm: CausalLM, config: HypeNetConfig, *, seed: int = 0,
                    mesh=None, rules=None) -> CausalLM:
    """Stage 2's starting point: stage 0 for `config` (attention layers from the teacher, new o_gate), then the
    stage-1 student of every Lightning layer. `students_lm` is stage 1's all-Lightning output."""
    if students_lm.config.num_hidden_layers != config.num_hidden_layers:
        raise ValueError(f"the stage-1 students have {students_lm.config.num_hidden_layers} layers, the hybrid "
                         f"{config.num_hidden_layers}")
    hybrid = stage0_transfer(teacher, config, seed=seed, mesh=mesh, rules=rules)
    for i, (layer, source) in enumerate(zip(hybrid.layers, students_lm.layers)):
        if layer.kind == ATTENTION:
            continue
        if source.kind == ATTENTION:
            raise ValueError(f"layer {i} is Lightning in the hybrid but attention in the students' model")
        want = jax.tree.map(jnp.shape, nnx.state(layer.self_attn, nnx.Param))
        have = jax.tree.map(jnp.shape, nnx.state(source.self_attn, nnx.Param))
        if want != have:
            raise ValueError(f"layer {i}: the stage-1 student's shapes {have} do not match the hybrid's {want}")
        nnx.update(layer.self_attn, nnx.state(source.self_attn, nnx.Param))
    return hybrid


# --- stage 2: logit distillation ---------------------------------------------------------------------------------
class DistillationModel(nnx.Module):
    """A frozen teacher and the trainable HypeNet student."""

    def __init__(self, teacher: CausalLM, student: CausalLM):
        self.teacher = teacher
        self.student = student


def kl_divergence(teacher_logits: jax.Array, student_logits: jax.Array) -> jax.Array:
    """Forward KL(p_teacher || p_student) per position over the full vocabulary, float32: [..., V] -> [...]."""
    t = jax.nn.log_softmax(teacher_logits.astype(jnp.float32), axis=-1)
    s = jax.nn.log_softmax(student_logits.astype(jnp.float32), axis=-1)
    return jnp.sum(jnp.exp(t) * (t - s), axis=-1)


def distillation_loss(model: DistillationModel, batch: dict) -> tuple[jax.Array, jax.Array]:
    """Stage-2 loss sums: (KL summed over real tokens, tokens)."""
    kw = dict(positions=batch.get("positions"), segment_ids=batch.get("segment_ids"))
    teacher_logits = jax.lax.stop_gradient(model.teacher(batch["inputs"], **kw))    # [B, T, V]
    student_logits = model.student(batch["inputs"], **kw)                           # [B, T, V]
    weight = batch["loss_mask"].astype(jnp.float32)
    return jnp.sum(kl_divergence(teacher_logits, student_logits) * weight), jnp.sum(weight)


# --- the jobs ----------------------------------------------------------------------------------------------------
def _setup(config):
    mesh, rules = mesh_and_rules(config)
    tokenizer = build_tokenizer(config)
    train_ds, eval_ds = build_datasets(config, tokenizer)
    return mesh, rules, tokenizer, train_ds, eval_ds


def _load(source: str, what: str, kind: type, mesh, rules):
    from jaxsuite.hf import load_pretrained
    if not source:
        raise ValueError(f"{what} is not set: give the Hugging Face folder or hub id to start from")
    model = load_pretrained(source, mesh=mesh, rules=rules)
    if not isinstance(model, kind):
        raise ValueError(f"{what}={source!r} holds a {type(model).__name__}, expected a {kind.__name__}")
    return model


def _check_vocab(tokenizer, model) -> None:
    check_vocab(tokenizer, model.config.vocab_size, hint="use the teacher's tokenizer (config.tokenizer)")


def _load_teacher(config, tokenizer, mesh, rules) -> CausalLM:
    teacher = _load(config.teacher.init_from, "teacher.init_from", CausalLM, mesh, rules)
    _check_vocab(tokenizer, teacher)
    return teacher


def _finish(config, wd: Workdir, stage: int, model, tokenizer, out, **extra) -> dict[str, Any]:
    """Exports `model` to workdir/hf (+ tokenizer), then results.json and the finished-marker."""
    params = sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    hf_dir = wd.path("hf")
    from jaxsuite.hf import save_pretrained
    save_pretrained(model, hf_dir)      # every process gathers (collectives), the primary writes
    if wd.primary:
        export_tokenizer(tokenizer, hf_dir)
    results = wd.finish(config, {"stage": stage, "params": params, **out.summary(), **extra, "hf_export": hf_dir})
    log.info("stage %d results: %s", stage, {k: v for k, v in results.items() if k != "config"})
    return results


def run_stage1(config, workdir: str) -> dict[str, Any]:
    """Stage 1: trains one Lightning student per teacher layer; exports the all-Lightning students model."""
    wd = Workdir.start(workdir)
    mesh, rules, tokenizer, train_ds, eval_ds = _setup(config)
    teacher = _load_teacher(config, tokenizer, mesh, rules)
    model = build_alignment_model(teacher, seed=int(config.seed), mesh=mesh, rules=rules)
    out = train_loop(config, wd, model, mesh=mesh, rules=rules, train_ds=train_ds, eval_ds=eval_ds,
                     loss_fn=alignment_loss, trainable=lambda names: names[0] == "students",
                     curve_title="HALO stage 1: per-layer hidden-state MSE")
    final = out.model
    students = students_hypenet(final.teacher, list(final.students))
    return _finish(config, wd, 1, students, tokenizer, out, loss="per-layer MSE")


def hybrid_config(config, teacher: CausalLM) -> HypeNetConfig:
    """The HypeNet architecture of config.student (attention_layers, attn_logits_scaling) for this teacher."""
    layers = [int(i) for i in config.student.attention_layers]
    scaling = config.student.get("attn_logits_scaling", None) or None
    return hypenet_config_from_teacher(teacher.config, layers, attn_logits_scaling=scaling)


def run_stage2(config, workdir: str) -> dict[str, Any]:
    """Stage 2: assembles the hybrid from teacher + stage-1 students and distils the teacher's logits into it."""
    wd = Workdir.start(workdir)
    mesh, rules, tokenizer, train_ds, eval_ds = _setup(config)
    teacher = _load_teacher(config, tokenizer, mesh, rules)
    students = _load(config.student.init_from, "student.init_from (stage 1's hf folder)", CausalLM, mesh, rules)
    student = assemble_hybrid(teacher, students, hybrid_config(config, teacher), seed=int(config.seed),
                              mesh=mesh, rules=rules)
    del students
    model = DistillationModel(teacher, student)
    out = train_loop(config, wd, model, mesh=mesh, rules=rules, train_ds=train_ds, eval_ds=eval_ds,
                     loss_fn=distillation_loss, trainable=lambda names: names[0] == "student",
                     curve_title="HALO stage 2: KL(teacher || student)")
    return _finish(config, wd, 2, out.model.student, tokenizer, out, loss="KL(teacher||student)",
                   attention_layers=[int(i) for i in config.student.attention_layers])


def run_stage3(config, workdir: str) -> dict[str, Any]:
    """Stage 3: next-token fine-tuning of the stage-2 HypeNet at a long sequence length."""
    wd = Workdir.start(workdir)
    mesh, rules, tokenizer, train_ds, eval_ds = _setup(config)
    student = _load(config.student.init_from, "student.init_from (stage 2's hf folder)", CausalLM, mesh, rules)
    _check_vocab(tokenizer, student)
    out = train_loop(config, wd, student, mesh=mesh, rules=rules, train_ds=train_ds, eval_ds=eval_ds,
                     loss_fn=tr.next_token_loss, curve_title="HALO stage 3: long-context next-token loss")
    return _finish(config, wd, 3, out.model, tokenizer, out, loss="next-token CE")


STAGE_JOBS = {1: run_stage1, 2: run_stage2, 3: run_stage3}


def stage_programs(config, stage: int, teacher_cfg, mesh, rules, prefix: str = "") -> list:
    """The programs stage `stage` compiles (train step, eval step when it evaluates), abstract, for
    `--compile_only`: its model is assembled inside nnx.eval_shape from the teacher's architecture alone."""
    from jaxsuite.core.loop import training_programs

    def teacher():
        return CausalLM(teacher_cfg, rngs=nnx.Rngs(0))

    if stage == 1:
        model = nnx.eval_shape(lambda: build_alignment_model(teacher()))
        kw = dict(loss_fn=alignment_loss, trainable=lambda names: names[0] == "students")
    else:
        def hybrid(t):        # as run_stage2 assembles it, with stage 1's students taken from stage 0
            return assemble_hybrid(t, stage0_transfer(t, _all_lightning_config(t.config)), hybrid_config(config, t))
        if stage == 2:
            model = nnx.eval_shape(lambda: (lambda t: DistillationModel(t, hybrid(t)))(teacher()))
            kw = dict(loss_fn=distillation_loss, trainable=lambda names: names[0] == "student")
        else:
            model = nnx.eval_shape(lambda: hybrid(teacher()))
            kw = dict(loss_fn=tr.next_token_loss)
    return training_programs(config, model, mesh=mesh, rules=rules, prefix=prefix, **kw)


def _stage_programs(stage: int):
    def programs(config, mesh, rules) -> list:
        from jaxsuite.core import files
        from jaxsuite.hf import architecture_of
        source, key = config.student.init_from, "student.init_from"
        if stage < 3 or not (source and files.exists(files.join_path(source, "config.json"))):
            # stage 3 before stage 2 has run (a pod check ahead of the run): the hybrid stage 2 will export,
            # assembled from the teacher's architecture
            source, key = config.teacher.init_from, "teacher.init_from"
        arch = architecture_of(source, key)
        if stage == 3 and isinstance(arch, HypeNetConfig):     # stage 2's output: compile it as it is
            from jaxsuite.core.loop import training_programs
            model = nnx.eval_shape(lambda: CausalLM(arch, rngs=nnx.Rngs(0)))
            return training_programs(config, model, mesh=mesh, rules=rules)
        return stage_programs(config, stage, arch, mesh, rules)
    return programs


# `--compile_only` of a single stage's config (configs/halo_stage.py) compiles that stage.
for _n, _job in STAGE_JOBS.items():
    _job.programs = _stage_programs(_n)
