"""Toy results over seeds and device counts: run a config once per (device count, seed), aggregate results.json.

    python -m jaxsuite.core.seeds --config configs/tiers_tiny.py --seeds 0,1,2,3,4 --devices 1,8 \\
        --workdir runs/tiers_seeds --metric L2.heldout.f1 --metric training.tiered.heldout.L2_nll

Each run is `python -m jaxsuite.launch --config <config> --config.seed=<seed> --workdir <root>/d<D>_s<S>` in its own
process (a job that loops over a `seeds` list itself also gets `--config.seeds=[<seed>]`: one seed per run), with
D forced host devices on the CPU (`--xla_force_host_platform_device_count`, set before JAX starts; on an accelerator
the count is what the host has, so pass only that), and its own cache folder per device count
($JAXSUITE_CACHE/devices_<D>), so that a cached artefact such as HALO's teacher is built on each device count rather
than reused. A run whose results.json exists is not run again, so the command resumes (`--no-run` runs nothing and
reports on the runs finished so far, naming the others). Then every numeric leaf of the runs' results.json (dotted
keys) is aggregated per device count and over all runs: mean, sample standard deviation, and the 95% interval of
the mean (Student's t with n-1 degrees of freedom; a single run has no interval). Writes <root>/seeds.json and, for
the `--metric` keys, <root>/seeds.png (each run a dot, mean and interval a bar, per device count). `--record DIR`
copies each finished run's small JSON files to DIR/d<D>_s<S>/ (no checkpoints), for a repository to keep.

A headline is reproducible at toy scale when the intervals of the two device counts overlap and the interval
over all runs excludes the comparison's null (e.g. a difference of 0): `seeds.json` holds what is needed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from typing import Any, Iterable, Sequence

from jaxsuite.core import files


def flatten(tree: Any, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a JSON tree as {dotted.key: float} (booleans and strings are left out; list items
    are keyed by index)."""
    out: dict[str, float] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out.update(flatten(v, f"{prefix}{i}."))
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool) and math.isfinite(float(tree)):
        out[prefix[:-1]] = float(tree)
    return out


def interval(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Mean, sample standard deviation and the two-sided t interval of the mean; n=1 gives lo = hi = nan."""
    from scipy import stats
    n = len(values)
    if n == 0:
        raise ValueError("no values to aggregate")
    mean = sum(values) / n
    if n == 1:
        return {"n": 1, "mean": mean, "std": float("nan"), "lo": float("nan"), "hi": float("nan")}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "lo": mean - half, "hi": mean + half}


def aggregate(results: dict[tuple[int, int], dict]) -> dict:
    """{"by_devices": {D: {key: interval}}, "all": {key: interval}, "runs": [[D, S], ...]} over the keys every run
    has. `results` maps (devices, seed) -> results.json."""
    flat = {run: flatten(r) for run, r in results.items()}
    if not flat:
        raise ValueError("no finished runs to aggregate")
    keys = sorted(set.intersection(*(set(f) for f in flat.values())))
    by_devices: dict[str, dict] = {}
    for d in sorted({d for d, _ in flat}):
        runs = [f for (dd, _), f in sorted(flat.items()) if dd == d]
        by_devices[str(d)] = {k: interval([f[k] for f in runs]) for k in keys}
    return {"runs": [list(r) for r in sorted(flat)], "by_devices": by_devices,
            "all": {k: interval([f[k] for _, f in sorted(flat.items())]) for k in keys}}


def run_dir(root: str, devices: int, seed: int) -> str:
    return files.join_path(root, f"d{devices}_s{seed}")


def seed_flags(config: str, seed: int) -> list[str]:
    """How one run is given its seed: `config.seed`, and for a job that loops over seeds itself (a `seeds`
    list: CPMobius's RL runs, LDL-MoE, SE-Bench) `config.seeds=[seed]` too, so each run is one whole seed and
    the runs are independent."""
    from jaxsuite.core.config_utils import load_config
    c = load_config(config)
    flags = [f"--config.seed={seed}"] if "seed" in c else []
    if "seeds" in c:
        flags.append(f"--config.seeds=[{seed}]")
    if not flags:
        raise ValueError(f"{config} has neither a `seed` nor a `seeds` field: nothing to vary over seeds")
    return flags


def launch_command(config: str, seed: int, workdir: str, overrides: Iterable[str] = ()) -> list[str]:
    return [sys.executable, "-m", "jaxsuite.launch", "--config", config, *seed_flags(config, seed),
            "--workdir", workdir, *overrides]


def run_all(config: str, seeds: Sequence[int], devices: Sequence[int], root: str, *,
            overrides: Sequence[str] = (), log=print) -> dict[tuple[int, int], dict]:
    """Runs every (devices, seed) not finished yet, one process at a time; returns their results.json."""
    out = {}
    for d in devices:
        for s in seeds:
            wd = run_dir(root, d, s)
            done = files.join_path(wd, "results.json")
            if not files.exists(done):
                env = dict(os.environ)
                flags = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                                 if not f.startswith("--xla_force_host_platform_device_count"))
                env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={int(d)}".strip()
                # one cache per device count: what a run caches (HALO's pre-trained teacher) is built again on
                # this device count instead of being reused from a run on another
                env["JAXSUITE_CACHE"] = str(files.cache_dir() / f"devices_{int(d)}")
                command = launch_command(config, s, wd, overrides)
                log(f"[seeds] devices={d} seed={s}: {' '.join(command)}")
                proc = subprocess.run(command, env=env)
                if proc.returncode != 0:
                    raise RuntimeError(f"the run devices={d} seed={s} failed (exit {proc.returncode}); its workdir "
                                       f"is {wd}: rerun this command to resume")
            out[(int(d), int(s))] = files.read_json_object(done)
    return out


def read_finished(seeds: Sequence[int], devices: Sequence[int], root: str) -> tuple[dict, list[tuple[int, int]]]:
    """The results.json of the (devices, seed) runs that finished, and the (devices, seed) pairs that have not;
    runs nothing (for a report while runs are still going)."""
    out, missing = {}, []
    for d in devices:
        for s in seeds:
            done = files.join_path(run_dir(root, d, s), "results.json")
            if files.exists(done):
                out[(int(d), int(s))] = files.read_json_object(done)
            else:
                missing.append((int(d), int(s)))
    return out, missing


def record(runs: Iterable[tuple[int, int]], root: str, dest: str) -> list[str]:
    """Copies each run's top-level JSON files (results.json, config.json, and what else the job writes beside
    them, e.g. LatentChem's correct.json) from <root>/d<D>_s<S>/ to <dest>/d<D>_s<S>/, leaving checkpoints and
    plots behind: a few kilobytes per run that a repository can keep when the machine's scratch space is not
    kept (benchmarks/seed_runs/). `--no-run --workdir <dest>` aggregates what was recorded, over sessions.
    Returns the files written."""
    written = []
    for d, s in runs:
        src = files.as_path(run_dir(root, d, s))
        for path in sorted(src.glob("*.json")):
            if path.name == "finished.json":       # the resume marker: it names this machine's run, not a figure
                continue
            written.append(files.copy_file(path, files.join_path(run_dir(dest, d, s), path.name)))
    return written


def plot(summary: dict, results: dict[tuple[int, int], dict], metrics: Sequence[str], path: str) -> str:
    from jaxsuite.core.metrics import pyplot, save_figure
    plt = pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.6), squeeze=False)
    flat = {run: flatten(r) for run, r in results.items()}
    for ax, key in zip(axes[0], metrics):
        for i, d in enumerate(sorted(summary["by_devices"], key=int)):
            stats = summary["by_devices"][d].get(key)
            if stats is None:
                continue
            values = [f[key] for (dd, _), f in sorted(flat.items()) if str(dd) == d]
            ax.scatter([i] * len(values), values, color="0.5", s=14, zorder=3)
            if stats["n"] > 1:
                ax.errorbar([i], [stats["mean"]], yerr=[[stats["mean"] - stats["lo"]], [stats["hi"] - stats["mean"]]],
                            fmt="o", color="tab:red", capsize=6, zorder=4)
        ax.set_xticks(range(len(summary["by_devices"])), [f"{d} dev" for d in sorted(summary["by_devices"], key=int)])
        ax.set_title(key, fontsize=9)
    fig.suptitle("runs (dots), mean and 95% interval (red)")
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m jaxsuite.core.seeds", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="config file[:variant], as for jaxsuite.launch")
    p.add_argument("--seeds", default="0,1,2,3,4",
                   help="comma-separated seeds (config.seed of each run; config.seeds=[seed] where it has that list)")
    p.add_argument("--devices", default="1", help="comma-separated forced host device counts (CPU)")
    p.add_argument("--workdir", required=True, help="the root: one run folder per (devices, seed) under it")
    p.add_argument("--metric", action="append", default=[], help="a dotted results.json key to plot (repeatable)")
    p.add_argument("--override", action="append", default=[], help="a --config.key=value passed to every run")
    p.add_argument("--no-run", action="store_true",
                   help="run nothing: aggregate the runs that have finished and name those that have not")
    p.add_argument("--record", default="",
                   help="also copy each finished run's top-level JSON files (results.json, config.json, ...) to "
                        "<record>/d<D>_s<S>/, e.g. a folder under benchmarks/seed_runs/ to commit")
    args = p.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        devices = [int(d) for d in args.devices.split(",") if d.strip()]
    except ValueError:
        p.error(f"--seeds and --devices are comma-separated integers, got {args.seeds!r} and {args.devices!r}")
    if not seeds or not devices or min(devices) < 1:
        p.error("need at least one seed and device counts >= 1")
    if args.no_run:
        results, missing = read_finished(seeds, devices, args.workdir)
        if not results:
            p.error(f"--no-run: no finished run under {args.workdir} for seeds {args.seeds} on devices {args.devices}")
        if missing:
            print("not finished (left out): " + ", ".join(f"devices={d} seed={s}" for d, s in missing))
    else:
        results = run_all(args.config, seeds, devices, args.workdir, overrides=args.override)
    summary = aggregate(results)
    summary.update(config=args.config, seeds=seeds, devices=devices,
                   command=" ".join(["python -m jaxsuite.core.seeds", *(argv if argv is not None else sys.argv[1:])]))
    missing = [m for m in args.metric if m not in summary["all"]]
    if missing:
        p.error(f"--metric {missing} not in every run's results.json; e.g. {sorted(summary['all'])[:8]}")
    files.atomic_write_text(files.join_path(args.workdir, "seeds.json"), json.dumps(summary, indent=1))
    if args.record:
        written = record(sorted(results), args.workdir, args.record)
        print(f"recorded {len(written)} files of {len(results)} runs under {args.record}")
    if args.metric:
        plot(summary, results, args.metric, files.join_path(args.workdir, "seeds.png"))
    for m in args.metric:
        for d, stats in sorted(summary["by_devices"].items(), key=lambda x: int(x[0])):
            s = stats[m]
            print(f"{m} [{d} devices]: {s['mean']:.4f} (95% {s['lo']:.4f} .. {s['hi']:.4f}, n={s['n']})")
    return summary


if __name__ == "__main__":
    main()
