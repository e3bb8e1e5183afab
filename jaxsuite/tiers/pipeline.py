"""L0 -> L1 -> L2 as datatrove pipelines: each stage is a datatrove executor over sharded files.

    stages = l1_stages(folders, config.pipeline)          # [(name, steps, tasks), ...]
    for name, steps, tasks in stages:
        run_stage(name, steps, tasks=tasks, logging_dir=..., executor=config.pipeline)
    counts = stage_stats(logging_dir)                     # {step name: {stat: total}} merged over ranks

The stages (stages hand off through files under the job's workdir; a stage's tasks each take every
tasks-th input file):

    l1_filter       JsonlReader(L0) -> FallbackHtmlExtractor -> UltraDataL1Cleaner -> LanguageIdFilter
                    -> JsonlWriter(l1_filtered) -> ExactDedupSignature                       (tasks)
    exact_find      ExactFindDedups                                                          (1 task)
    exact_filter    JsonlReader(l1_filtered) -> ExactDedupFilter -> JsonlWriter(l1_exact)
                    -> MinhashDedupSignature                                                 (tasks)
    minhash_buckets MinhashDedupBuckets                                                      (num_buckets tasks)
    minhash_cluster MinhashDedupCluster                                                      (1 task)
    minhash_filter  JsonlReader(l1_exact) -> MinhashDedupFilter -> JsonlWriter(L1)           (tasks)

MinHash uses datatrove's defaults, which are the note's settings: 5-grams, 14 buckets x 8 hashes, 64-bit
hashes. Exact dedup hashes the cleaned text, so two pages that differ only in invisible characters or
boilerplate lines are exact duplicates after L1.

Executors (`pipeline.executor`): "local" (a process pool of `workers`; a JAX step runs with workers=1, in this
process, on its accelerator), "slurm" (sbatch arrays; `pipeline.slurm`), "ray" (`pipeline.ray`). Every executor
skips the tasks whose completion file exists, so a rerun after a killed task runs only what is missing. The
local executor runs a stage and returns; Slurm and Ray submit each stage with the previous one as its
dependency, and the job stops after submitting (rerun it once they finish: completed stages are skipped).
"""
from __future__ import annotations

import json
import logging
from typing import Any, Sequence

from jaxsuite.core import files

log = logging.getLogger(__name__)


class StageIncomplete(RuntimeError):
    """A datatrove stage ended with tasks that did not complete."""


def minhash_config(hash_bits: int = 64):
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.utils.hashing import HashConfig
    return MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, hash_config=HashConfig(precision=hash_bits))


def document_text(doc) -> str:
    """What exact dedup hashes: the cleaned text (module level, so datatrove can pickle it into workers)."""
    return doc.text


def _exact_config():
    from datatrove.pipeline.dedup.exact_dedup import ExactDedupConfig
    return ExactDedupConfig(content_getter=document_text)


def l1_stages(folders: dict[str, str], *, tasks: int, rules, languages: Sequence[str], min_language_score: float,
              extract_timeout: float = 10.0) -> list[tuple[str, list, int]]:
    """The six stages from folders["L0"] to folders["L1"] (see the module docstring); `folders` also names
    "work" (intermediate files) and "excluded" (dropped documents, per rule, for inspection)."""
    from datatrove.pipeline.dedup.exact_dedup import ExactDedupFilter, ExactDedupSignature, ExactFindDedups
    from datatrove.pipeline.dedup.minhash import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                                  MinhashDedupSignature)
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    from jaxsuite.tiers.cleaning import (FallbackHtmlExtractor, LanguageIdFilter, RegexWordTokenizer,
                                         UltraDataL1Cleaner)

    work, excluded = folders["work"], folders["excluded"]
    mh, ex = minhash_config(), _exact_config()

    def reader(folder):
        return JsonlReader(folder, glob_pattern="*.jsonl*", add_file_path=False)

    def dropped(name):
        return JsonlWriter(files.join_path(excluded, name), output_filename="${rank}.jsonl", compression=None)

    return [
        ("l1_filter", [reader(folders["L0"]), FallbackHtmlExtractor(timeout=extract_timeout),
                       UltraDataL1Cleaner(rules, exclusion_writer=dropped("l1_rules")),
                       LanguageIdFilter(languages, min_language_score, exclusion_writer=dropped("language")),
                       JsonlWriter(files.join_path(work, "l1_filtered"), output_filename="${rank}.jsonl",
                                   compression=None),
                       ExactDedupSignature(files.join_path(work, "exact_sigs"), config=ex)], tasks),
        ("exact_find", [ExactFindDedups(files.join_path(work, "exact_sigs"), files.join_path(work, "exact_dups"),
                                        config=ex)], 1),
        ("exact_filter", [reader(files.join_path(work, "l1_filtered")),
                          ExactDedupFilter(files.join_path(work, "exact_dups"), config=ex,
                                           exclusion_writer=dropped("exact_dup")),
                          JsonlWriter(files.join_path(work, "l1_exact"), output_filename="${rank}.jsonl",
                                      compression=None),
                          MinhashDedupSignature(files.join_path(work, "minhash_sigs"), config=mh,
                                                language=RegexWordTokenizer())], tasks),
        ("minhash_buckets", [MinhashDedupBuckets(files.join_path(work, "minhash_sigs"),
                                                 files.join_path(work, "minhash_buckets"), config=mh)],
         mh.num_buckets),
        ("minhash_cluster", [MinhashDedupCluster(files.join_path(work, "minhash_buckets"),
                                                 files.join_path(work, "minhash_clusters"), config=mh)], 1),
        ("minhash_filter", [reader(files.join_path(work, "l1_exact")),
                            MinhashDedupFilter(files.join_path(work, "minhash_clusters"),
                                               exclusion_writer=dropped("near_dup")),
                            JsonlWriter(folders["L1"], output_filename="${rank}.jsonl", compression=None)], tasks),
    ]


def make_executor(steps: list, *, tasks: int, logging_dir: str, executor: Any, name: str, workers: int | None = None,
                  depends=None):
    """The datatrove executor `executor.kind` ("local", "slurm" or "ray") for one stage."""
    kind = str(executor.get("kind", "local"))
    workers = int(executor.get("workers", 1)) if workers is None else int(workers)
    if kind == "local":
        from datatrove.executor import LocalPipelineExecutor
        return LocalPipelineExecutor(steps, tasks=tasks, workers=min(workers, tasks), logging_dir=logging_dir,
                                     skip_completed=True, start_method=str(executor.get("start_method", "forkserver")))
    if kind == "slurm":
        from datatrove.executor import SlurmPipelineExecutor
        s = executor.slurm
        return SlurmPipelineExecutor(steps, tasks=tasks, time=str(s.time), partition=str(s.partition),
                                     cpus_per_task=int(s.cpus_per_task), mem_per_cpu_gb=int(s.mem_per_cpu_gb),
                                     workers=workers, job_name=f"tiers_{name}", logging_dir=logging_dir,
                                     venv_path=s.get("venv_path") or None, depends=depends)
    if kind == "ray":
        try:
            from datatrove.executor.ray import RayPipelineExecutor
            import ray  # noqa: F401 - the executor needs it at run time; say so now
        except ImportError as e:
            raise ImportError(f"pipeline.executor.kind='ray' needs ray: pip install ray ({e})") from None
        r = executor.ray
        return RayPipelineExecutor(steps, tasks=tasks, workers=workers, logging_dir=logging_dir, depends=depends,
                                   cpus_per_task=int(r.cpus_per_task), mem_per_cpu_gb=float(r.mem_per_cpu_gb))
    raise ValueError(f"pipeline.executor.kind must be 'local', 'slurm' or 'ray', got {kind!r}")


def incomplete_ranks(logging_dir: str, tasks: int) -> list[int]:
    folder = files.as_path(logging_dir) / "completions"
    done = {p.name for p in folder.glob("*")} if folder.exists() else set()
    return [r for r in range(tasks) if f"{r:05d}" not in done]


def run_stage(name: str, steps: list, *, tasks: int, logging_dir: str, executor: Any, workers: int | None = None,
              depends=None):
    """Runs (local) or submits (slurm, ray) one stage; a finished stage is skipped. Raises StageIncomplete
    naming the ranks and the log folder when a local run leaves tasks incomplete. Returns the executor."""
    ex = make_executor(steps, tasks=tasks, logging_dir=logging_dir, executor=executor, name=name, workers=workers,
                       depends=depends)
    if str(executor.get("kind", "local")) != "local":
        ex.run()
        return ex
    if not incomplete_ranks(logging_dir, tasks):
        log.info("%s: all %d tasks completed earlier", name, tasks)
        return ex
    try:
        ex.run()
    except Exception as e:        # noqa: BLE001 - datatrove re-raises the task's error; name the stage and its logs
        missing = incomplete_ranks(logging_dir, tasks)
        raise StageIncomplete(f"datatrove stage {name!r}: tasks {missing} failed ({type(e).__name__}: {e}); "
                              f"logs in {logging_dir}/logs; rerun to resume") from e
    missing = incomplete_ranks(logging_dir, tasks)
    if missing:
        raise StageIncomplete(f"datatrove stage {name!r}: tasks {missing} did not complete; logs in "
                              f"{logging_dir}/logs; rerun to resume")
    return ex


def stage_stats(logging_dir: str) -> dict[str, dict[str, float]]:
    """{step name: {stat: total}} summed over every rank's stats file (the executor's own stats.json covers only
    the ranks of its last run, so a resumed stage would under-count)."""
    out: dict[str, dict[str, float]] = {}
    for path in _sorted_glob(files.join_path(logging_dir, "stats"), "*.json"):
        steps = json.loads(path.read_text())
        for step in steps:
            name = step.get("name", "?")
            bucket = out.setdefault(name, {})
            for key, value in (step.get("stats") or {}).items():
                total = value.get("total") if isinstance(value, dict) else value
                if isinstance(total, (int, float)):
                    bucket[key] = bucket.get(key, 0) + total
    return out


def _sorted_glob(folder: str, pattern: str) -> list:
    """The folder's files matching `pattern`, by name, through etils.epath (a local folder or a bucket)."""
    path = files.as_path(folder)
    return sorted(path.glob(pattern), key=lambda p: p.name) if path.exists() else []


def count_documents(folder: str) -> int:
    n = 0
    for path in _sorted_glob(folder, "*.jsonl"):
        n += sum(1 for line in path.read_text().splitlines() if line.strip())
    return n


def read_documents(folder: str) -> list[dict]:
    """Every document of a folder of datatrove JSON-lines shards, in file then line order."""
    out = []
    for path in _sorted_glob(folder, "*.jsonl"):
        out.extend(row for _, row in files.iter_jsonl_objects(path))
    return out
