"""The L0 -> L1 datatrove stages on hand-made pages: several tasks and workers, every rule and both dedups, and a
rerun after a task killed with SIGKILL that runs only what is missing and ends with the same L1."""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import ml_collections
import pytest

from jaxsuite.tiers import pipeline as P
from jaxsuite.tiers.cleaning import L1Rules

LOCAL = ml_collections.ConfigDict({"kind": "local", "workers": 2, "start_method": "forkserver"})
TOPICS = ["json", "csv", "heapq", "argparse", "pdb", "unittest", "doctest", "configparser"]


def _article(topic: str, extra: str = "") -> str:
    """A page around the first 150 words of a stdlib module's docstring: real, distinct prose per topic."""
    import html
    import importlib
    words = " ".join(importlib.import_module(topic).__doc__.split()[:150])
    return (f"<html><body><nav><a href='/'>Home</a></nav><article><h1>About {topic}</h1><p>"
            f"{html.escape(words)}</p>{extra}</article><div>Share on Facebook</div></body></html>")


def pages() -> list[dict]:
    rows = [{"id": f"doc-{t}", "text": _article(t)} for t in TOPICS]
    rows.append({"id": "exact-copy", "text": _article("json")})
    rows.append({"id": "invisible-copy", "text": _article("csv").replace(" ", " \u200b", 3)})
    near = _article("heapq").replace(" the ", " one ", 2)
    rows.append({"id": "near-copy", "text": near.replace("</article>", "<p>Updated on Monday, with thanks.</p></article>")})
    rows.append({"id": "foreign", "text": "<html><body><article><p>" + " ".join(
        ["Die Stadt liegt an einem breiten Fluss, und im Sommer sitzen die Menschen gern am Ufer."] * 3)
        + "</p></article></body></html>"})
    rows.append({"id": "stub", "text": "<html><body><p>click here to continue</p></body></html>"})
    rows.append({"id": "tiny", "text": "<html><body><p>Too short, sorry.</p></body></html>"})
    return rows


def write_l0(folder: Path, shards: int = 3) -> None:
    folder.mkdir(parents=True)
    rows = pages()
    for s in range(shards):
        (folder / f"{s:05d}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[s::shards]))


def folders(root: Path) -> dict:
    return {k: str(root / k) for k in ("L0", "L1", "work", "excluded")}


def run_all(root: Path, tasks: int = 3) -> None:
    for name, steps, n in P.l1_stages(folders(root), tasks=tasks, rules=L1Rules(), languages=["en"],
                                      min_language_score=0.65):
        P.run_stage(name, steps, tasks=n, logging_dir=str(root / "logs" / name), executor=LOCAL)


def shingles(text: str, n: int = 5) -> set:
    words = text.lower().split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_l1_stages_apply_every_rule_and_both_dedups(tmp_path):
    write_l0(tmp_path / "L0")
    run_all(tmp_path)
    kept = {d["id"]: d["text"] for d in P.read_documents(str(tmp_path / "L1"))}
    # one of each duplicate pair survives (which one is datatrove's choice); nothing else is lost
    assert len(kept) == len(TOPICS)
    for topic in TOPICS:
        assert sum(f"About {topic}" in t for t in kept.values()) == 1, topic
    assert not {"foreign", "stub", "tiny"} & set(kept)
    assert all("Share on Facebook" not in t and "\u200b" not in t for t in kept.values())
    # the independent check of what MinHash decided: the near copy's 5-gram Jaccard with its original is high,
    # every kept pair's is low
    docs = {d["id"]: d["text"] for d in P.read_documents(str(tmp_path / "work" / "l1_exact"))}
    a, b = shingles(docs["doc-heapq"]), shingles(docs["near-copy"])
    assert len(a & b) / len(a | b) > 0.75
    texts = list(kept.values())
    assert max(len(shingles(x) & shingles(y)) / len(shingles(x) | shingles(y))
               for i, x in enumerate(texts) for y in texts[i + 1:]) < 0.5
    stats = {name: P.stage_stats(str(tmp_path / "logs" / name)) for name in ("l1_filter", "exact_filter",
                                                                            "minhash_filter")}
    cleaner = next(v for k, v in stats["l1_filter"].items() if "L1 cleaner" in k)
    lang = next(v for k, v in stats["l1_filter"].items() if "language" in k)
    assert cleaner["dropped_short_no_punctuation"] == 1 and cleaner["dropped_too_short"] == 1
    assert lang["dropped_language"] == 1 and lang["language_de"] == 1
    assert next(v for k, v in stats["exact_filter"].items() if "stage 3" in k)["dropped"] == 2
    assert next(v for k, v in stats["minhash_filter"].items() if "stage 4" in k)["dropped"] == 1
    excluded = {d["id"] for d in P.read_documents(str(tmp_path / "excluded" / "language"))}
    assert excluded == {"foreign"}
    # the job's report reads the same stats (its logs folder is "datatrove"), and a step it cannot find is an error
    from jaxsuite.core.workdir import Workdir
    from jaxsuite.tiers.job import l1_counts
    (tmp_path / "logs").rename(tmp_path / "datatrove")
    counts = l1_counts(Workdir(tmp_path, primary=True))
    assert counts["L1"] == len(TOPICS)
    assert {k: counts["dropped"][k] for k in ("short_no_punctuation", "too_short", "language", "exact_duplicate",
                                              "near_duplicate")} == {"short_no_punctuation": 1, "too_short": 1,
                                                                     "language": 1, "exact_duplicate": 2,
                                                                     "near_duplicate": 1}
    assert counts["languages"]["de"] == 1
    for path in (tmp_path / "datatrove" / "minhash_filter" / "stats").glob("*.json"):
        path.write_text(path.read_text().replace("stage 4", "stage four"))
    with pytest.raises(RuntimeError, match="stage minhash_filter .* no step named like 'MinHash stage 4'"):
        l1_counts(Workdir(tmp_path, primary=True))


KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import ml_collections
    from jaxsuite.tiers import pipeline as P
    from jaxsuite.tiers.cleaning import L1Rules

    class KillAtRank:
        '''Kills its own process (SIGKILL: no cleanup, no completion file) when it reaches `rank` and `marker`
        exists: a task killed mid-way.'''
        def __init__(self, rank, marker):
            self.rank, self.marker = rank, marker
        def __call__(self, data, rank=0, world_size=1):
            for doc in data:
                if rank == self.rank and os.path.exists(self.marker):
                    os.kill(os.getpid(), signal.SIGKILL)
                yield doc

    def main(root, marker, workers):
        root = Path(root)
        folders = {k: str(root / k) for k in ("L0", "L1", "work", "excluded")}
        ex = ml_collections.ConfigDict({"kind": "local", "workers": int(workers), "start_method": "forkserver"})
        name, steps, tasks = P.l1_stages(folders, tasks=3, rules=L1Rules(), languages=["en"],
                                         min_language_score=0.65)[0]
        steps.insert(1, KillAtRank(1, marker))
        P.run_stage(name, steps, tasks=tasks, logging_dir=str(root / "logs" / name), executor=ex)

    if __name__ == "__main__":
        main(*sys.argv[1:])
""")


def _run(script, root, marker, workers, env, log) -> int:
    """The script in its own session, output to a file: a SIGKILLed parent leaves children (datatrove's extraction
    sandbox, the pool's manager) holding inherited pipes, so the whole group is killed once the parent is gone."""
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(script), str(root), str(marker), str(workers)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=300)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_killed_task_is_rerun_alone(tmp_path):
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    root, marker = tmp_path / "run", tmp_path / "kill"
    write_l0(root / "L0")
    marker.write_text("")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    first = _run(script, root, marker, 1, env, tmp_path / "first.log")
    assert first == -9, (tmp_path / "first.log").read_text()[-2000:]     # SIGKILL in rank 1 (ranks in order)
    logs = root / "logs" / "l1_filter"
    assert P.incomplete_ranks(str(logs), 3) == [1, 2]
    done_before = (logs / "stats" / "00000.json").stat().st_mtime_ns
    marker.unlink()
    second = _run(script, root, marker, 2, env, tmp_path / "second.log")
    log = (tmp_path / "second.log").read_text()
    assert second == 0, log[-2000:]
    assert "Skipping 1 already completed tasks" in log
    assert (logs / "stats" / "00000.json").stat().st_mtime_ns == done_before      # rank 0 was not run again
    assert P.incomplete_ranks(str(logs), 3) == []
    clean = tmp_path / "clean"
    write_l0(clean / "L0")
    name, steps, tasks = P.l1_stages(folders(clean), tasks=3, rules=L1Rules(), languages=["en"],
                                     min_language_score=0.65)[0]
    P.run_stage(name, steps, tasks=tasks, logging_dir=str(clean / "logs" / name), executor=LOCAL)
    for rank in range(3):
        resumed = (root / "work" / "l1_filtered" / f"{rank:05d}.jsonl").read_text()
        assert resumed == (clean / "work" / "l1_filtered" / f"{rank:05d}.jsonl").read_text(), rank
    counts = [{k: v for k, v in step.items() if k in ("total", "forwarded", "dropped")}
              for step in (P.stage_stats(str(logs)), P.stage_stats(str(clean / "logs" / name)))[0].values()]
    again = [{k: v for k, v in step.items() if k in ("total", "forwarded", "dropped")}
             for step in P.stage_stats(str(clean / "logs" / name)).values()]
    assert counts == again            # the merged per-rank stats count every document once, as a clean run does


def test_stage_errors_name_the_stage_and_its_logs(tmp_path):
    bad = ml_collections.ConfigDict({"kind": "cluster"})
    with pytest.raises(ValueError, match="pipeline.executor.kind must be 'local', 'slurm' or 'ray'"):
        P.make_executor([], tasks=1, logging_dir=str(tmp_path), executor=bad, name="x")
    (tmp_path / "L0").mkdir()
    (tmp_path / "L0" / "00000.jsonl").write_text('{"id": "a", "text": "<p>x</p>"}\n{not json\n')
    name, steps, tasks = P.l1_stages(folders(tmp_path), tasks=1, rules=L1Rules(), languages=["en"],
                                     min_language_score=0.65)[0]
    one = ml_collections.ConfigDict({"kind": "local", "workers": 1})
    try:
        P.run_stage(name, steps, tasks=1, logging_dir=str(tmp_path / "logs"), executor=one)
    except P.StageIncomplete as e:
        assert "l1_filter" in str(e) and "logs" in str(e)
    else:     # datatrove's JSON reader skips a malformed line with a warning: then the stage completes
        assert P.incomplete_ranks(str(tmp_path / "logs"), 1) == []


def test_slurm_and_ray_executors_come_from_the_config(tmp_path):
    slurm = ml_collections.ConfigDict({"kind": "slurm", "workers": 4, "slurm": {
        "partition": "cpu", "time": "01:00:00", "cpus_per_task": 2, "mem_per_cpu_gb": 3, "venv_path": ""}})
    first = P.make_executor([], tasks=8, logging_dir=str(tmp_path / "a"), executor=slurm, name="l1_filter")
    second = P.make_executor([], tasks=1, logging_dir=str(tmp_path / "b"), executor=slurm, name="exact_find",
                             depends=first)
    assert type(first).__name__ == "SlurmPipelineExecutor"
    assert (first.tasks, first.workers, first.partition, first.cpus_per_task, first.mem_per_cpu_gb) == (8, 4, "cpu", 2, 3)
    assert first.job_name == "tiers_l1_filter" and second.depends is first
    try:
        import ray  # noqa: F401
    except ImportError:
        ray_cfg = ml_collections.ConfigDict({"kind": "ray", "workers": 2, "ray": {"cpus_per_task": 1,
                                                                                   "mem_per_cpu_gb": 1.0}})
        with pytest.raises(ImportError, match="needs ray: pip install ray"):
            P.make_executor([], tasks=2, logging_dir=str(tmp_path / "c"), executor=ray_cfg, name="x")
