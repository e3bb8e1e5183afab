"""The HALO pipeline job (`jaxsuite.halo.pipeline:run`): Qwen3 teacher -> HypeNet, end to end, then a report.

  teacher      config.teacher.init_from (HF folder / hub id), or pre-trained here with config.teacher.pretrain
               (the pre-training job; cached across runs under $JAXSUITE_CACHE/halo_teacher/<config hash>;
               with config.seed = S > 0 its seed is teacher.pretrain.seed + S, so a run over seeds
               (python -m jaxsuite.core.seeds) varies the teacher as well as the stages)
  stage 1      per-layer alignment of a Lightning student for every layer          -> workdir/stage1/hf
  selection    if config.student.attention_layers is empty: replace each layer alone by its student, score
               recall (passkey retrieval) against language modelling (next-token accuracy) and keep the
               `num_attention_layers` most important layers as attention (HALO's importance score)
  stage 2      logit distillation into the hybrid                                  -> workdir/stage2/hf
  stage 3      long-context next-token fine-tuning                                 -> workdir/stage3/hf
  evaluation   teacher vs HypeNet (and HypeNet with HyPE scaling switched on): perplexity, passkey accuracy
               by context length, perplexity by position, decode ms per token and cache memory by context;
               results.json's `retrieval` says whether retrieval is testable (the teacher retrieves at some
               length) and, if so, the share of the teacher's passkey accuracy each student keeps there

Every step is resumable: a stage (or teacher) whose folder holds the finished-marker of the config it would
run with (jaxsuite.core.workdir) is skipped, an interrupted one resumes from its checkpoints, and a finished
layer selection is read back from layer_selection.json, so re-running the same command finishes the pipeline.
Outputs in workdir: results.json, results.md, passkey.png, ppl_by_position.png, decode.png,
layer_importance.png (when selecting), layer_selection.json, stage{1,2,3}/ (each a full training job's folder).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import ml_collections
from flax import nnx

from jaxsuite.core import files
from jaxsuite.core.build import build_tokenizer, mesh_and_rules
from jaxsuite.core.metrics import phase
from jaxsuite.core.config_utils import config_hash, import_job
from jaxsuite.core.workdir import Workdir
from jaxsuite.halo import evaluation as ev
from jaxsuite.halo import passkey as pk
from jaxsuite.halo.layer_selection import plot_importance, select_layers
from jaxsuite.halo.recipes import stage_config
from jaxsuite.halo.stages import STAGE_JOBS, assemble_hybrid
from jaxsuite.halo.transfer import hypenet_config_from_teacher
from jaxsuite.models.lm import CausalLM

log = logging.getLogger(__name__)


# --- resumable steps ---------------------------------------------------------------------------------------------
def prepare_teacher(config, workdir: str | Workdir) -> str:
    """The teacher's HF folder / hub id: config.teacher.init_from, else pre-trained by the job that
    config.teacher.pretrain names (or found finished in the cache, keyed by a hash of that config)."""
    wd = Workdir(workdir)
    if config.teacher.init_from:
        return config.teacher.init_from
    pre = config.teacher.pretrain
    if int(config.seed):    # a run over seeds (jaxsuite.core.seeds) varies the teacher too: its seed + ours
        pre = ml_collections.ConfigDict(pre.to_dict())
        pre.seed = int(pre.get("seed", 0)) + int(config.seed)
    if "job" not in pre:
        raise ValueError("set teacher.init_from (an HF folder or hub id) or teacher.pretrain (a pre-training "
                         "config, as configs/qwen3_pretrain.py builds)")
    where = (Workdir(files.join_path(files.cache_dir(), "halo_teacher", config_hash(pre)), primary=wd.primary)
             if config.teacher.cache else wd.sub("teacher"))
    if where.is_finished(pre):
        log.info("teacher: reusing the one pre-trained in %s", where)
    else:
        log.info("teacher: pre-training into %s (%d steps)", where, int(pre.train.steps))
        import_job(pre.job)(pre, where.root)
    return where.path("hf")


def _stage_config(config, n: int, teacher: str, student_init: str, attention_layers) -> ml_collections.ConfigDict:
    block = getattr(config, f"stage{n}")
    mesh = block.mesh if "mesh" in block else config.mesh      # a stage may have its own (recipes.py)
    c = stage_config(n, teacher=teacher, tokenizer=config.tokenizer, data=block.data, train=block.train,
                     attention_layers=attention_layers, student_init=student_init, mesh=mesh.to_dict(),
                     seed=int(config.seed))
    c.sharding_rules = [list(r) for r in config.sharding_rules]
    return c


def run_stage(config, n: int, workdir: str | Workdir, teacher: str, student_init: str = "",
              attention_layers=()) -> str:
    """Runs (or resumes, or skips if finished with this config) stage n in workdir/stage{n}; returns its hf
    folder."""
    wd = Workdir(workdir)
    c = _stage_config(config, n, teacher, student_init, attention_layers)
    where = wd.sub(f"stage{n}")
    if where.is_finished(c):
        log.info("stage %d: finished earlier in %s", n, where)
    else:
        log.info("stage %d: %d steps into %s", n, int(c.train.steps), where)
        STAGE_JOBS[n](c, where.root)
    return where.path("hf")


# --- evaluation tasks --------------------------------------------------------------------------------------------
def with_logits_scaling(model: CausalLM, scaling: str | float | None) -> CausalLM:
    """The same weights with another attention-logit scaling (e.g. "hype 500" switched on for inference)."""
    cfg = model.config.replace(attn_logits_scaling=scaling)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0))))
    return nnx.merge(graphdef, nnx.state(model))


def layer_selection(config, workdir: str | Workdir, teacher_dir: str, students_dir: str, tokenizer) -> list[int]:
    """HALO's sweep: each layer alone replaced by its stage-1 student, then importance = recall drop over
    language-modelling drop. Writes layer_selection.json and layer_importance.png; returns the kept layers."""
    from jaxsuite.hf import load_pretrained
    wd = Workdir(workdir)
    done = wd.read_json("layer_selection.json", default=None)
    if done is not None:
        log.info("layer selection: reusing %s -> %s", wd.path("layer_selection.json"), done["keep"])
        return done["keep"]
    ls = config.layer_selection
    teacher, students = load_pretrained(teacher_dir), load_pretrained(students_dir)
    n_layers = teacher.config.num_hidden_layers
    batches = {int(n): pk.make_eval_batch(tokenizer, int(n), int(ls.num_samples), seed=1)
               for n in ls.recall_lengths}
    rows = ev.eval_windows(tokenizer, config.stage1.data.eval_source or "stdlib:eval", length=int(ls.lm_length),
                           num_rows=int(ls.lm_rows))
    recall_tasks = [f"passkey@{n}" for n in batches]

    def evaluate(i: int) -> dict[str, float]:
        # layer i alone becomes its student; every other layer is exactly the teacher's attention (with RoPE)
        cfg = hypenet_config_from_teacher(teacher.config, [j for j in range(n_layers) if j != i],
                                          attn_use_rope=True, attn_use_output_gate=False)
        variant = assemble_hybrid(teacher, students, cfg)
        scores = {f"passkey@{n}": pk.passkey_accuracy(variant, b) for n, b in batches.items()}
        scores["lm_accuracy"] = ev.next_token_accuracy(variant, rows)
        return scores

    sel = select_layers(evaluate, range(n_layers), recall_tasks=recall_tasks, commonsense_tasks=["lm_accuracy"],
                        keep=int(config.student.num_attention_layers), log=log.info)
    if wd.primary:
        plot_importance(sel, wd.path("layer_importance.png"))
    wd.write_text("layer_selection.json", sel.to_json())   # last: its presence means the sweep is done
    return sel.keep


def compare(config, workdir: str | Workdir, teacher_dir: str, hypenet_dir: str, tokenizer,
            train_length: int) -> dict:
    """Teacher vs HypeNet (and HypeNet with HyPE on): the results table and the three plots."""
    wd = Workdir(workdir)
    from jaxsuite.hf import load_pretrained
    e = config.eval
    teacher, hypenet = load_pretrained(teacher_dir), load_pretrained(hypenet_dir)
    models = {"teacher (Qwen3)": teacher, "HypeNet": hypenet}
    if float(config.student.hype_base) > 0:
        models[f"HypeNet + HyPE a={config.student.hype_base:g}"] = with_logits_scaling(
            hypenet, f"hype {config.student.hype_base:g}")
    source = config.stage1.data.eval_source or "stdlib:eval"
    short = ev.eval_windows(tokenizer, source, length=train_length, num_rows=int(e.ppl_rows))
    long_rows = ev.eval_windows(tokenizer, source, length=int(e.ppl_length), num_rows=int(e.ppl_rows))
    passkey, by_pos, ms, mem, table = {}, {}, {}, {}, {}
    for name, model in models.items():
        t0 = time.perf_counter()
        ppl = ev.perplexity_by_position(model, short, num_buckets=1, batch_size=int(e.batch_size))[0]["ppl"]
        by_pos[name] = ev.perplexity_by_position(model, long_rows, num_buckets=int(e.ppl_buckets),
                                                 batch_size=int(e.batch_size))
        passkey[name] = {int(n): pk.passkey_accuracy(model, pk.make_eval_batch(tokenizer, int(n),
                                                                               int(e.passkey_samples), seed=2),
                                                     batch_size=int(e.batch_size))
                         for n in e.passkey_lengths}
        if name.startswith("HypeNet +"):   # the same weights and cache as HypeNet: decode cost is identical
            ms[name], mem[name] = ms["HypeNet"], mem["HypeNet"]
        else:
            ms[name] = ev.decode_ms_per_token(model, [int(n) for n in e.decode_lengths],
                                              steps=int(e.decode_steps))
            mem[name] = {int(n): ev.cache_bytes(model, 1, int(n)) for n in e.decode_lengths}
        row = {f"ppl@{train_length}": round(ppl, 3)}
        row.update({f"passkey@{n}": round(a, 3) for n, a in passkey[name].items()})
        row.update({f"ms/token@{n}": round(v, 3) for n, v in ms[name].items()})
        row.update({f"cache MiB@{n}": round(v / 2**20, 2) for n, v in mem[name].items()})
        table[name] = row
        log.info("evaluated %s in %.1f s: %s", name, time.perf_counter() - t0, row)
    retrieval = ev.retrieval_verdict(passkey, "teacher (Qwen3)")
    log.info("%s", retrieval["note"])
    md = ev.results_table(table) + f"\n\n{retrieval['note'][0].upper()}{retrieval['note'][1:]}."
    if wd.primary:
        ev.plot_passkey(passkey, wd.path("passkey.png"), train_length=train_length,
                        untestable="" if retrieval["testable"] else retrieval["note"])
        ev.plot_ppl_by_position(by_pos, wd.path("ppl_by_position.png"))
        ev.plot_decode({k: v for k, v in ms.items() if not k.startswith("HypeNet +")},
                       {k: v for k, v in mem.items() if not k.startswith("HypeNet +")},
                       wd.path("decode.png"))
    wd.write_text("results.md", md + "\n")
    return {"table": table, "passkey": {k: {str(n): a for n, a in v.items()} for k, v in passkey.items()},
            "retrieval": retrieval,
            "ppl_by_position": by_pos, "markdown": md}


# --- the job -----------------------------------------------------------------------------------------------------
def run(config, workdir: str) -> dict[str, Any]:
    wd = Workdir.start(workdir)
    steps = {n: int(getattr(config, f"stage{n}").train.steps) for n in (1, 2, 3)}
    # progress lines name the phase and give an overall ETA (the later phases' steps at the current rate)
    with phase("teacher", later_steps=sum(steps.values())):
        teacher_dir = prepare_teacher(config, wd)
    tokenizer = build_tokenizer(config)
    with phase("stage 1/3", later_steps=steps[2] + steps[3]):
        students_dir = run_stage(config, 1, wd, teacher_dir)
    layers = [int(i) for i in config.student.attention_layers]
    selected = not layers
    if selected:
        layers = layer_selection(config, wd, teacher_dir, students_dir, tokenizer)
    log.info("attention layers: %s%s", layers, " (selected)" if selected else "")
    with phase("stage 2/3", later_steps=steps[3]):
        hybrid_dir = run_stage(config, 2, wd, teacher_dir, students_dir, layers)
    with phase("stage 3/3"):
        final_dir = run_stage(config, 3, wd, teacher_dir, hybrid_dir, layers)
    report = compare(config, wd, teacher_dir, final_dir, tokenizer, train_length=int(config.stage1.data.seq_len))
    stage_results = {}
    for n in (1, 2, 3):   # each stage's headline figures; its config is in this results.json's already
        stage = wd.sub(f"stage{n}").read_results() or {}
        stage_results[f"stage{n}"] = {k: v for k, v in stage.items() if k != "config"}
    results = wd.finish(config, {"teacher": teacher_dir, "hypenet": final_dir, "attention_layers": layers,
                                 "attention_layers_selected": selected, **report, "stages": stage_results})
    log.info("HALO done in %.0f s\n%s", wd.elapsed(), report["markdown"])
    return results


def programs(config, mesh, rules) -> list:
    """Every training program of the pipeline, abstract, for `--compile_only`: the teacher's pre-training (when
    the config pre-trains it) and stages 1-3, from the teacher's architecture alone. With layer selection
    (no student.attention_layers) the first num_attention_layers layers stand in for the selected ones: the
    memory does not depend on which layers they are."""
    from jaxsuite.core.config_utils import import_programs
    from jaxsuite.halo.stages import stage_programs
    from jaxsuite.hf import architecture_of
    from jaxsuite.models.factory import arch_from_config

    out = []
    if config.teacher.init_from:
        arch = architecture_of(config.teacher.init_from, "teacher.init_from")
    else:
        pre = config.teacher.pretrain
        arch = arch_from_config(pre.model.arch)
        out += [dataclasses.replace(p, name="teacher/" + p.name) for p in import_programs(pre.job)(pre, mesh, rules)]
    layers = [int(i) for i in config.student.attention_layers] or list(range(int(config.student.num_attention_layers)))
    for n in (1, 2, 3):
        c = _stage_config(config, n, "", "", layers)
        stage_mesh = mesh_and_rules(c, list(mesh.devices.flat))[0] if "mesh" in config[f"stage{n}"] else mesh
        out += stage_programs(c, n, arch, stage_mesh, rules, prefix=f"stage{n}/")
    return out


run.programs = programs      # what `--compile_only` compiles for this job
