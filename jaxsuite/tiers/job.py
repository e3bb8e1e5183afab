"""Tiered data management L0 -> L4 with jaxsuite models in the loop, then tier-aware training and decay verification.

    python -m jaxsuite.launch --config configs/tiers_tiny.py --workdir runs/tiers_tiny

1. L0: the embedded corpus (jaxsuite.tiers.corpus; or `data.l0`, a folder of JSON-lines pages) in `data.shards`
   files under <workdir>/L0.
2. L0 -> L1 on datatrove (jaxsuite.tiers.pipeline): extraction with fallbacks, the UltraData L1 rules, language
   identification, exact and MinHash dedup; per-rule counts from the stages' stats; dropped documents kept
   under excluded/<rule>/ for inspection.
3. The models: a tokenizer trained on L1 (or the configured one), a tiny Qwen3 pre-trained on L1 (`base`), from
   which the judge learns the annotation guideline (rubric-scored pages of a disjoint corpus) and the refiner the
   refinement formats; with `model.init_from` a released instruct model does both zero-shot.
4. L1 -> L2: the judge labels a seed sample (log-probabilities of the six scores); a hashed n-gram classifier
   distils the labels; the threshold is chosen on held-out labels (P/R/F1 against the judge); a datatrove stage
   scores every L1 document with it and keeps those at or above the threshold.
5. L2 -> L3: the refiner writes Q&A at four levels, two rewrite styles, fact lists and repairs (batched, seeded);
   every output is fact-checked; L3/refined.jsonl holds the kept ones with provenance, L3/rejected.jsonl the rest.
6. L3 -> L4: Q&A and facts verified against one source sentence, deduplicated, exported with a BM25 index.
7. Tier-aware training against a same-token mixture, and the decay verification (jaxsuite.tiers.training).

Writes results.json (counts per tier and rule, judge and classifier quality, refinement and verification rates,
held-out metrics per arm and per decay candidate), tiers.png and training.png. Every step is resumable: datatrove
skips completed tasks, training stages resume from checkpoints, and finished steps are read back.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Any

import ml_collections
import numpy as np

from jaxsuite.core import files
from jaxsuite.core.build import encode_prompt, fitting_pairs, job_tokenizer, mesh_and_rules
from jaxsuite.core.metrics import phase, pyplot
from jaxsuite.core.workdir import Workdir
from jaxsuite.models.config import DecoderConfig, count_params
from jaxsuite.models.factory import init_model
from jaxsuite.rl import stages
from jaxsuite.rl.rollout import sample_responses
from jaxsuite.tiers import corpus as corpus_mod
from jaxsuite.tiers import knowledge as K
from jaxsuite.tiers import pipeline as P
from jaxsuite.tiers import quality as Q
from jaxsuite.tiers import refine as R
from jaxsuite.tiers import training as T
from jaxsuite.tiers.cleaning import L1Rules, clean_text, extract_with_fallbacks

log = logging.getLogger(__name__)
TIERS = ("L1", "L2", "L3", "L4")


def _fraction(key: str, salt: str) -> float:
    return int(hashlib.sha256(f"{salt}|{key}".encode()).hexdigest()[:8], 16) / 0x1_0000_0000


def folders(wd: Workdir) -> dict[str, str]:
    return {"L0": wd.path("L0"), "L1": wd.path("L1"), "L2": wd.path("L2"), "work": wd.path("work"),
            "excluded": wd.path("excluded"), "logs": wd.path("datatrove")}


def l1_rules(config) -> L1Rules:
    c = config.pipeline.l1
    return L1Rules.released() if c.length_unit == "chars" else L1Rules(
        short_chars=int(c.short_chars), length_unit=str(c.length_unit), min_length=int(c.min_length),
        max_length=int(c.max_length))


# ------------------------------------------------------------------------------------------------------------
# L0 and L1
# ------------------------------------------------------------------------------------------------------------
def make_l0(config, wd: Workdir) -> dict:
    f = folders(wd)
    d = config.data
    if str(d.l0) != "embedded":
        if not files.exists(str(d.l0)):
            raise FileNotFoundError(f"data.l0: no such folder {d.l0!r} (JSON-lines pages, or 'embedded')")
        return {"source": str(d.l0), "pages": None}
    if not wd.exists("L0/done.json"):
        pages = corpus_mod.embedded_corpus(int(d.seed), float(d.scale))
        if wd.primary:
            corpus_mod.write_l0(pages, f["L0"], shards=int(d.shards))
            wd.write_json("L0/done.json", {"pages": len(pages), "kinds": _kinds(p.kind for p in pages)})
    return wd.read_json("L0/done.json")


def _kinds(kinds) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in kinds:
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))


def run_l1(config, wd: Workdir) -> dict:
    f = folders(wd)
    p = config.pipeline
    l0 = f["L0"] if str(config.data.l0) == "embedded" else str(config.data.l0)
    stage_list = P.l1_stages({**f, "L0": l0}, tasks=int(p.tasks), rules=l1_rules(config),
                             languages=list(p.languages), min_language_score=float(p.min_language_score),
                             extract_timeout=float(p.extract_timeout))
    previous = None
    for name, steps, tasks in stage_list:
        with phase(f"datatrove: {name} ({tasks} tasks)", 0):
            previous = P.run_stage(name, steps, tasks=tasks, logging_dir=files.join_path(f["logs"], name),
                                   executor=p.executor, depends=previous)
    last, last_tasks = stage_list[-1][0], stage_list[-1][2]
    if P.incomplete_ranks(files.join_path(f["logs"], last), last_tasks):       # submitted to Slurm or Ray
        raise P.StageIncomplete(f"the L0 -> L1 stages were submitted to {p.executor.kind}; rerun this command when "
                                f"they finish (logs under {f['logs']}): finished stages are skipped")
    return l1_counts(wd)


def l1_counts(wd: Workdir) -> dict:
    """Documents in and out of each L1 stage and the drops per rule, from the stages' merged stats."""
    f = folders(wd)
    stats = {name: P.stage_stats(files.join_path(f["logs"], name)) for name in ("l1_filter", "exact_filter",
                                                                               "minhash_filter")}

    def step(stage, fragment):
        # datatrove names a step's stats by its display name; a renamed step must fail here, not report zeros
        for key, value in stats[stage].items():
            if fragment in key:
                return value
        raise RuntimeError(f"datatrove's stats for stage {stage} (under {f['logs']}) have no step named like "
                           f"{fragment!r} (steps: {sorted(stats[stage]) or 'none'}); was a step renamed?")

    extract = step("l1_filter", "extractor")
    cleaner = step("l1_filter", "L1 cleaner")
    lang = step("l1_filter", "language id")
    exact = step("exact_filter", "exact-deduplication stage 3")
    near = step("minhash_filter", "MinHash stage 4")
    drops = {"extraction_failed": int(extract.get("total", 0) - extract.get("forwarded", 0))}
    drops.update({k[len("dropped_"):]: int(v) for k, v in cleaner.items() if k.startswith("dropped_")})
    drops["language"] = int(lang.get("dropped", 0))
    drops["exact_duplicate"] = int(exact.get("dropped", 0))
    drops["near_duplicate"] = int(near.get("dropped", 0))
    return {"L0": int(extract.get("total", 0)), "L1": P.count_documents(f["L1"]), "dropped": drops,
            "extractors": {k[len("extractor_"):]: int(v) for k, v in extract.items() if k.startswith("extractor_")},
            "edits": {k: int(v) for k, v in cleaner.items() if k.startswith(("chars_", "lines_"))},
            "languages": {k[len("language_"):]: int(v) for k, v in lang.items() if k.startswith("language_")}}


# ------------------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------------------
def guideline_pages(config, exclude_ids: set[str]) -> list[tuple[str, int]]:
    """The annotation guideline for the toy judge: (cleaned text, rubric score) of pages of a disjoint embedded
    corpus (another seed; ids that also occur in L0 left out)."""
    pages = corpus_mod.embedded_corpus(int(config.data.seed) + 1000, float(config.judge.guideline_scale))
    rules, out = l1_rules(config), []
    for page in pages:
        if page.quality is None or page.id in exclude_ids:
            continue
        text, reason, _ = clean_text(extract_with_fallbacks(page.html)[1], rules)
        if reason is None:
            out.append((text, int(page.quality)))
    return out


def base_model(config, tokenizer, l1_texts: list[str], wd: Workdir, *, mesh, rules):
    """A released model (model.init_from), or the tiny model pre-trained on L1 (a finished stage read back)."""
    seed = int(config.seed)
    if config.model.get("init_from"):
        from jaxsuite.hf import load_pretrained
        return load_pretrained(config.model.init_from, mesh=mesh, rules=rules)
    model = init_model(DecoderConfig(**{**dict(config.model.arch), "vocab_size": tokenizer.vocab_size}), seed=seed)
    if int(config.base.train.steps) <= 0:
        return model
    bos = [tokenizer.bos_id if getattr(tokenizer, "bos_id", -1) >= 0 else tokenizer.eos_id]
    targets = [tokenizer.encode(t)[:int(config.seq_len) - 2] + [tokenizer.eos_id] for t in l1_texts]
    return stages.sft_stage("base", wd, model, [bos] * len(targets), targets, config.base, seq_len=int(config.seq_len),
                            seed=seed, mesh=mesh, rules=rules, title="tiers base (L1)")[0]


def judge_model(config, tokenizer, base, guideline, wd: Workdir, *, mesh, rules):
    """The base taught the rubric on the guideline (skipped for a released instruct model)."""
    if config.model.get("init_from") or int(config.judge.sft.train.steps) <= 0:
        return base()
    j = config.judge
    prompts = [Q.judge_prompt(tokenizer, t, int(j.max_doc_tokens)) for t, _ in guideline]
    p_ids, t_ids = fitting_pairs(tokenizer, prompts, [Q.judge_target(s) for _, s in guideline], int(config.seq_len),
                                 what="judge", hint="shorten the guideline pages (judge.max_doc_tokens)")
    return stages.sft_stage("judge", wd, base(), p_ids, t_ids, j.sft, seq_len=int(config.seq_len), seed=int(config.seed),
                            mesh=mesh, rules=rules, title="judge: annotation guideline")[0]


def refiner_model(config, tokenizer, base, demos: list[R.RefineTask], wd: Workdir, *, mesh, rules):
    if config.model.get("init_from") or int(config.refine.sft.train.steps) <= 0:
        return base()
    p_ids, t_ids = fitting_pairs(tokenizer, [t.prompt for t in demos], [R.demonstration(t) for t in demos],
                                 int(config.seq_len), what="refiner", hint="shorten the sources (refine.source_words)")
    return stages.sft_stage("refiner", wd, base(), p_ids, t_ids, config.refine.sft, seq_len=int(config.seq_len),
                            seed=int(config.seed), mesh=mesh, rules=rules, title="refiner: formats")[0]


# ------------------------------------------------------------------------------------------------------------
# L2
# ------------------------------------------------------------------------------------------------------------
def run_l2(config, wd: Workdir, tokenizer, judge, l1_docs: list[dict]) -> dict:
    """Labels, classifier, threshold, then the datatrove scoring stage; cached in L2/quality.json."""
    if wd.exists("L2/quality.json") and P.incomplete_ranks(files.join_path(folders(wd)["logs"], "l2_select"),
                                                           int(config.pipeline.tasks)) == []:
        return wd.read_json("L2/quality.json")
    j, c = config.judge, config.classifier
    rng = np.random.default_rng(int(config.seed))
    order = rng.permutation(len(l1_docs))
    seed_idx = order[:max(4, int(round(float(j.sample_fraction) * len(l1_docs))))]
    sample = [l1_docs[i] for i in seed_idx]
    with phase(f"L2: the judge labels {len(sample)} seed documents", 0):
        prompts = [Q.judge_prompt(tokenizer, d["text"], int(j.max_doc_tokens)) for d in sample]
        lp = Q.judge_log_probs(judge(), tokenizer, prompts, batch_size=int(j.batch_size))
        labels, expected = Q.labels_from_log_probs(lp)
    held = np.asarray([_fraction(str(d["id"]), "heldout") < float(c.heldout_fraction) for d in sample])
    if held.all() or not held.any():
        held = np.arange(len(sample)) % 4 == 0
    rows = [Q.ngram_features(tokenizer, d["text"], buckets=int(c.buckets)) for d in sample]
    with phase("L2: distilling the labels into the hashed n-gram classifier", 0):
        params, losses = Q.train_classifier([r for r, h in zip(rows, held) if not h], labels[~held],
                                            buckets=int(c.buckets), dim=int(c.dim), steps=int(c.steps), lr=float(c.lr),
                                            batch_size=int(c.batch_size), seed=int(config.seed))
    keep_at = int(c.keep_at)
    held_scores = Q.predict_scores(params, [r for r, h in zip(rows, held) if h])
    if (labels[held] >= keep_at).any():
        threshold, stats = Q.choose_threshold(held_scores, labels[held] >= keep_at)
        threshold_from = "best F1 on held-out labels"
    else:       # nothing to tune against: keep what the classifier scores at the keep level itself
        threshold, threshold_from = float(keep_at), f"keep_at (no held-out label >= {keep_at})"
        stats = Q.prf(held_scores >= threshold, labels[held] >= keep_at)
        log.warning("L2: no held-out document has a judge label >= %d; the threshold is keep_at itself", keep_at)
    train_scores = Q.predict_scores(params, [r for r, h in zip(rows, held) if not h])
    f = folders(wd)
    clf_path = wd.path("L2/classifier.npz")
    tok_path = wd.path("tokenizer.model") if wd.exists("tokenizer.model") else str(config.tokenizer)
    if wd.primary:
        Q.save_classifier(clf_path, params, threshold=threshold, buckets=int(c.buckets))
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    steps = [JsonlReader(f["L1"], glob_pattern="*.jsonl", add_file_path=False),
             Q.ClassifierFilter(clf_path, tok_path, batch_size=int(c.score_batch),
                                exclusion_writer=JsonlWriter(files.join_path(f["excluded"], "low_quality"),
                                                             output_filename="${rank}.jsonl", compression=None)),
             JsonlWriter(f["L2"], output_filename="${rank}.jsonl", compression=None)]
    with phase("datatrove: l2_select (the classifier scores L1)", 0):
        # locally with one worker whatever pipeline.executor says: the classifier runs in this process, batched on
        # its accelerator, and the job reads L2 next (a Slurm or Ray run of this step: the same steps, any executor)
        P.run_stage("l2_select", steps, tasks=int(config.pipeline.tasks),
                    logging_dir=files.join_path(f["logs"], "l2_select"),
                    executor=ml_collections.ConfigDict({"kind": "local"}), workers=1)
    rubric = [d.get("metadata", {}).get("quality") for d in sample]
    known = [i for i, r in enumerate(rubric) if r is not None]
    out = {"seed_documents": len(sample), "heldout_documents": int(held.sum()), "keep_at": keep_at,
           "label_histogram": np.bincount(labels, minlength=6).tolist(),
           "threshold": threshold, "threshold_from": threshold_from, "heldout": stats,
           "train_fit": Q.prf(train_scores >= threshold, labels[~held] >= keep_at),
           "classifier_loss_first": float(np.mean(losses[:10])), "classifier_loss_last": float(np.mean(losses[-10:])),
           "L2": P.count_documents(f["L2"])}
    if known:     # the embedded corpus knows each page's rubric score: how well the judge itself labels
        r = np.asarray([rubric[i] for i in known])
        out["judge_vs_rubric"] = {"exact": float(np.mean(labels[known] == r)),
                                  "within_1": float(np.mean(np.abs(labels[known] - r) <= 1)),
                                  "keep_agreement": Q.prf(labels[known] >= keep_at, r >= keep_at)}
    if wd.primary:
        wd.write_json("L2/quality.json", out)
        wd.write_json("L2/seed_labels.json", [{"id": d["id"], "label": int(lab), "expected": float(e)}
                                              for d, lab, e in zip(sample, labels, expected)])
    return out


# ------------------------------------------------------------------------------------------------------------
# L3 and L4
# ------------------------------------------------------------------------------------------------------------
def split_for_demos(config, l2_docs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(demonstration documents, documents to refine): a hash split, so a rerun splits the same way."""
    f = float(config.refine.demo_fraction)
    demo = [d for d in l2_docs if _fraction(str(d["id"]), "demo") < f]
    rest = [d for d in l2_docs if _fraction(str(d["id"]), "demo") >= f]
    return demo, rest


def run_l3(config, wd: Workdir, tokenizer, refiner, tasks: list[R.RefineTask], *, mesh=None, rules=None) -> dict:
    if wd.exists("L3/summary.json"):
        return wd.read_json("L3/summary.json")
    r = config.refine
    model_name = str(config.model.get("init_from") or "tiny-qwen3 (refiner stage)")
    with phase(f"L3: the refiner writes {len(tasks)} outputs", 0):
        ids = [encode_prompt(tokenizer, t.prompt) for t in tasks]
        rollout = sample_responses(refiner(), tokenizer, [""] * len(tasks), prompt_ids=ids, n=1,
                                   max_new_tokens=int(r.max_new_tokens), temperature=float(r.temperature),
                                   seed=int(config.seed), batch_size=int(r.batch_size), mesh=mesh, rules=rules)
    kept, rejected, per_kind = [], [], {}
    for task, text in zip(tasks, rollout.texts):
        text = text.strip()
        check = R.fact_check(task.source, text, min_support=float(r.min_support), min_words=int(r.min_words))
        record = {"id": R.output_id(task.source_id, task.kind, int(config.seed)), "source_id": task.source_id,
                  "url": task.url, "kind": task.kind, "text": text, "prompt": task.prompt,
                  "model": model_name, "seed": int(config.seed), "temperature": float(r.temperature), "check": check}
        (kept if check["ok"] else rejected).append(record)
        k = per_kind.setdefault(task.kind, {"outputs": 0, "kept": 0})
        k["outputs"] += 1
        k["kept"] += int(check["ok"])
    reasons = {"new_numbers": sum(bool(x["check"]["new_numbers"]) for x in rejected),
               "new_names": sum(bool(x["check"]["new_names"]) for x in rejected),
               "low_support": sum(x["check"]["support"] < float(r.min_support) for x in rejected),
               "too_short": sum(not x["check"]["long_enough"] for x in rejected)}
    summary = {"outputs": len(tasks), "kept": len(kept), "per_kind": per_kind, "rejected_because": reasons}
    if wd.primary:
        import json
        for name, rows in (("refined", kept), ("rejected", rejected)):
            files.atomic_write_text(wd.path(f"L3/{name}.jsonl"), "".join(json.dumps(x) + "\n" for x in rows))
        wd.write_json("L3/summary.json", summary)
    return summary


def read_l3(wd: Workdir) -> list[dict]:
    return [row for _, row in files.iter_jsonl_objects(wd.path("L3/refined.jsonl"))]


def run_l4(config, wd: Workdir, l3: list[dict], sources: dict[str, str]) -> dict:
    if wd.exists("L4/summary.json"):
        return wd.read_json("L4/summary.json")
    items, counts = K.knowledge_items(l3, sources, min_overlap=float(config.knowledge.min_overlap))
    unique = K.deduplicate(items)
    paths = K.export(unique, wd.path("L4")) if wd.primary else {}
    summary = {**counts, "unique": len(unique), "qa": sum(i.kind == "qa" for i in unique),
               "facts": sum(i.kind == "fact" for i in unique), "paths": paths}
    if wd.primary:
        wd.write_json("L4/summary.json", summary)
    return summary


# ------------------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------------------
def tier_texts(wd: Workdir, l1_docs, l2_docs, l3, l4_items) -> dict[str, list[tuple[str, str]]]:
    """Each tier's (source document id, text): an L2 document is an L1 one, and L3/L4 texts name their source."""
    return {"L1": [(str(d["id"]), d["text"]) for d in l1_docs], "L2": [(str(d["id"]), d["text"]) for d in l2_docs],
            "L3": [(str(r["source_id"]), r["text"]) for r in l3], "L4": [(i.source_id, i.text()) for i in l4_items]}


def split_heldout(texts: dict[str, list[tuple[str, str]]], fraction: float) -> tuple[dict, dict]:
    """(train, held-out) texts per tier, split by source document: a source held out is held out of every tier
    (an L2 document is also in L1, and L3/L4 texts are made from L2 documents), so no arm trains on a held-out
    document through another tier."""
    def held(source: str) -> bool:
        return _fraction(source, "heldout-source") < fraction
    train = {tier: [t for s, t in rows if not held(s)] for tier, rows in texts.items()}
    heldout = {tier: [t for s, t in rows if held(s)] for tier, rows in texts.items()}
    return train, heldout


def compare_training(config, wd: Workdir, tokenizer, texts: dict[str, list[str]], l4_items, *, mesh, rules) -> dict:
    """Tiered vs mixed with the same tokens, then the decay verification; cached in training.json."""
    if wd.exists("training.json"):
        return wd.read_json("training.json")
    t = config.training
    train_texts, held_texts = split_heldout(texts, float(t.heldout_fraction))
    held_qa = [(i.question, i.answer) for i in l4_items if i.kind == "qa" and i.text() in set(held_texts["L4"])]
    if not held_texts["L1"]:
        raise ValueError(f"training.heldout_fraction={float(t.heldout_fraction)} holds out no L1 document; raise it")
    usable = {k for k, v in train_texts.items() if len(v) >= int(t.min_documents)}
    tiered = [(str(name), {str(tier): 1.0}) for name, tier in t.stages if str(tier) in usable]
    skipped = [str(tier) for _, tier in t.stages if str(tier) not in usable]
    if not tiered:
        raise ValueError(f"no tier has training.min_documents={int(t.min_documents)} documents; nothing to train")
    steps = [int(n) for (name, tier), n in zip(t.stages, t.steps) if str(tier) in usable]
    mixed = T.same_token_mixture(tiered, steps)
    common = dict(train=dict(t.train), seq_len=int(t.seq_len), batch_size=int(t.batch_size), seed=int(config.seed),
                  mesh=mesh, rules=rules)
    arch = DecoderConfig(**{**dict(config.model.arch), "vocab_size": tokenizer.vocab_size})

    def fresh():
        return init_model(arch, seed=int(config.seed) + 1)

    def metrics(model):
        return T.held_out_metrics(model, tokenizer, {k: v for k, v in held_texts.items() if v}, held_qa,
                                  seq_len=int(t.seq_len))

    out = {"stages": [[n, w] for n, w in tiered], "steps": steps, "mixture": mixed[0][1], "skipped_tiers": skipped,
           "tokens_per_arm": sum(steps) * int(t.batch_size) * int(t.seq_len),
           "train_documents": {k: len(v) for k, v in train_texts.items()},
           "heldout_documents": {k: len(v) for k, v in held_texts.items()}, "heldout_qa": len(held_qa)}
    for arm, schedule in (("tiered", tiered), ("mixed", mixed)):
        with phase(f"training: {arm} ({' -> '.join(n for n, _ in schedule)})", 0):
            model, summaries = T.run_schedule(arm, wd, fresh(), schedule, steps, train_texts, tokenizer, **common)
            out[arm] = {"heldout": metrics(model), "stages": summaries}
            del model
    d = config.decay
    general = str(d.general)
    out["decay"] = {"base": f"tiered stage 1 ({tiered[0][0]}: {list(tiered[0][1])[0]}, constant rate)",
                    "candidate_share": float(d.candidate_share), "steps": int(d.steps), "general": general}
    base_model_ = None
    for cand in d.candidates:
        cand = str(cand)
        if cand not in usable:
            out["decay"][cand] = {"skipped": f"fewer than {int(t.min_documents)} training documents"}
            continue
        with phase(f"decay verification: {cand} ({float(d.candidate_share):.0%}) + {general}", 0):
            base_model_, _ = T.run_schedule("tiered", wd, fresh(), tiered[:1], steps[:1], train_texts, tokenizer,
                                            decay_last=len(tiered) == 1, **common)   # as it was trained
            if "base_heldout" not in out["decay"]:
                out["decay"]["base_heldout"] = metrics(base_model_)
            weights = {general: 1.0} if cand == general else {cand: float(d.candidate_share),
                                                               general: 1.0 - float(d.candidate_share)}
            decay_common = {**common, "train": {**dict(t.train), "min_lr_ratio": 0.0, "lr": float(d.lr)}}
            model, _ = T.run_schedule(f"decay_{cand}", wd, base_model_, [("decay", weights)], [int(d.steps)],
                                      train_texts, tokenizer, **decay_common)
            out["decay"][cand] = {"weights": weights, "heldout": metrics(model)}
            del model
    if wd.primary:
        wd.write_json("training.json", out)
    return out


# ------------------------------------------------------------------------------------------------------------
# Plots
# ------------------------------------------------------------------------------------------------------------
def plot_tiers(l0: dict, l1: dict, l2: dict, l3: dict, l4: dict, wd: Workdir) -> str | None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    names = ["L0 pages", "L1 documents", "L2 documents", "L3 outputs kept", "L4 items"]
    values = [l1["L0"], l1["L1"], l2["L2"], l3["kept"], l4["unique"]]
    axes[0].bar(names, values, color=["#999", "#4c72b0", "#55a868", "#c44e52", "#8172b2"])
    for i, v in enumerate(values):
        axes[0].text(i, v, str(v), ha="center", va="bottom", fontsize=9)
    axes[0].set_title("What each tier holds")
    axes[0].tick_params(axis="x", labelrotation=20)
    drops = {**{f"L1: {k}": v for k, v in l1["dropped"].items()}, "L2: below threshold": l1["L1"] - l2["L2"],
             "L3: failed fact check": l3["outputs"] - l3["kept"]}
    axes[1].barh(list(drops), list(drops.values()), color="#c44e52")
    axes[1].invert_yaxis()
    axes[1].set_title("Removed, by rule")
    axes[1].set_xlabel("documents / outputs")
    fig.tight_layout()
    return wd.save_figure(fig, "tiers.png")


def plot_training(training: dict, wd: Workdir) -> str | None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    keys = [k for k in training["tiered"]["heldout"] if k.endswith("_nll")]
    x = np.arange(len(keys))
    for off, arm in ((-0.2, "tiered"), (0.2, "mixed")):
        axes[0].bar(x + off, [training[arm]["heldout"][k] for k in keys], 0.4, label=arm)
    axes[0].set_xticks(x, [k.replace("_nll", "") for k in keys])
    axes[0].set_ylabel("held-out NLL (nats/token)")
    axes[0].set_title(f"Tiered vs mixed, same tokens ({training['tokens_per_arm']:,} each)")
    axes[0].legend(title="arm")
    d = training["decay"]
    cands = [c for c in d if isinstance(d[c], dict) and "heldout" in d[c]]
    for off, k in zip(np.linspace(-0.3, 0.3, max(len(keys), 1)), keys):
        axes[1].bar(np.arange(len(cands)) + off, [d[c]["heldout"][k] for c in cands], 0.6 / max(len(keys), 1),
                    label=k.replace("_nll", ""))
    axes[1].set_xticks(np.arange(len(cands)), [f"{c}" for c in cands])
    axes[1].set_xlabel(f"candidate ({d['candidate_share']:.0%}) + {d['general']}")
    axes[1].set_ylabel("held-out NLL after the decay")
    axes[1].set_title("Decay verification")
    axes[1].legend(fontsize=8, title="held-out set", title_fontsize=8)
    fig.tight_layout()
    return wd.save_figure(fig, "training.png")


# ------------------------------------------------------------------------------------------------------------
# The job
# ------------------------------------------------------------------------------------------------------------
def programs(config, mesh, rules) -> list:
    """For `--compile_only`: the decay-verification training step of the trained model (model.arch,
    training.seq_len x training.batch_size) and the refiner's sampling loop (model.init_from when set: refine.batch_size
    rows, refine.max_prompt_tokens + refine.max_new_tokens)."""
    from jaxsuite.core.config_utils import loop_config
    from jaxsuite.core.loop import training_programs
    from jaxsuite.generate import generate_program
    from jaxsuite.hf import abstract_model

    from flax import nnx

    from jaxsuite.models.factory import arch_from_config
    from jaxsuite.models.lm import CausalLM

    t = config.training
    loop_cfg = loop_config(int(config.seed), {**dict(t.train), "steps": int(config.decay.steps)}, int(t.seq_len),
                           int(t.batch_size))
    # the trained model is model.arch at the tokenizer's vocabulary (config.vocab_size), not the judge's arch
    arch = arch_from_config({**dict(config.model.arch), "vocab_size": int(config.vocab_size)})
    trained = nnx.eval_shape(lambda: CausalLM(arch, rngs=nnx.Rngs(0)))
    out = training_programs(loop_cfg, trained, mesh=mesh, rules=rules, prefix="decay/")
    plain = abstract_model(config)
    stop = plain.config.eos_token_id
    out.append(generate_program(plain, int(config.refine.batch_size), int(config.refine.max_prompt_tokens),
                                int(config.refine.max_new_tokens), mesh=mesh, rules=rules,
                                stop_tokens=() if stop is None else (int(stop),), top_k=0, name="refine/sample"))
    return out


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    wd = Workdir.start(workdir)
    mesh, rules = mesh_and_rules(config)
    common = dict(mesh=mesh, rules=rules)
    with phase("L0: the raw pages", 0):
        l0 = make_l0(config, wd)
    l1 = run_l1(config, wd)
    f = folders(wd)
    l1_docs = P.read_documents(f["L1"])
    if not l1_docs:
        raise ValueError(f"L1 is empty: every page was dropped (see {f['excluded']} and results of the stages)")
    log.info("L1: %d of %d pages kept; dropped %s", l1["L1"], l1["L0"], l1["dropped"])
    guideline = guideline_pages(config, {str(d["id"]) for d in l1_docs}) if not config.model.get("init_from") else []
    tokenizer = job_tokenizer(config, wd, lambda: [d["text"] for d in l1_docs] + [t for t, _ in guideline])
    l1_texts = [d["text"] for d in l1_docs]

    def base():
        return base_model(config, tokenizer, l1_texts, wd, **common)

    if not config.model.get("init_from") and int(config.base.train.steps) > 0:
        with phase("the base: pre-training on L1", 0):
            base()
    l2 = run_l2(config, wd, tokenizer, lambda: judge_model(config, tokenizer, base, guideline, wd, **common), l1_docs)
    l2_docs = P.read_documents(f["L2"])
    log.info("L2: %d of %d kept at threshold %.3f; held-out F1 %.3f against the judge", l2["L2"], l1["L1"],
             l2["threshold"], l2["heldout"]["f1"])
    demo_docs, refine_docs = split_for_demos(config, l2_docs)
    r = config.refine
    words = int(r.source_words)
    demos = R.refinement_tasks(demo_docs, per_document=int(r.demos_per_document), seed=int(config.seed) + 1,
                               source_words=words)
    tasks = R.refinement_tasks(refine_docs, per_document=int(r.per_document), seed=int(config.seed),
                               source_words=words)
    l3 = run_l3(config, wd, tokenizer, lambda: refiner_model(config, tokenizer, base, demos, wd, **common), tasks,
                **common)
    l3_records = read_l3(wd)
    sources = {str(d["id"]): R.cut_words(d["text"], words) for d in l2_docs}
    l4 = run_l4(config, wd, l3_records, sources)
    l4_items = K.read_items(wd.path("L4")) if l4["unique"] else []
    log.info("L3: %d of %d outputs kept; L4: %d verified items", l3["kept"], l3["outputs"], l4["unique"])
    training = compare_training(config, wd, tokenizer, tier_texts(wd, l1_docs, l2_docs, l3_records, l4_items),
                                l4_items, **common)
    arch = DecoderConfig(**{**dict(config.model.arch), "vocab_size": tokenizer.vocab_size}) \
        if not config.model.get("init_from") else None
    figures = {"L0": l0, "L1": l1, "L2": l2, "L3": l3, "L4": {k: v for k, v in l4.items() if k != "paths"},
               "training": training, "guideline_pages": len(guideline), "demonstrations": len(demos),
               "model_parameters": count_params(arch) if arch else None}
    figures["plots"] = [plot_tiers(l0, l1, l2, l3, l4, wd), plot_training(training, wd)] if wd.primary else []
    results = wd.finish(config, figures)
    log.info("tiered vs mixed held-out: %s vs %s", training["tiered"]["heldout"], training["mixed"]["heldout"])
    return results


run.programs = programs      # what `--compile_only` compiles for this job
