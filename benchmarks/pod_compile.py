"""Per-chip memory of pod configs, compiled for their targets on this machine (deviceless), and MaxText's own
`train_compile` on the same model, batch and topology side by side.

  python benchmarks/pod_compile.py                                   # the table of every pod config below
  python benchmarks/pod_compile.py --only qwen3_1.7b_b8 qwen3_1.7b_b64 --maxtext-python /path/to/py312/bin/python

Each case runs `python -m jaxsuite.launch --config ... --compile_only --topology ...` in a subprocess and reads its
compile_report.json. With --maxtext-python (a Python >= 3.12 environment with `pip install "maxtext[tpu]==0.2.5"`),
cases that name a MaxText equivalent also run MaxText's own `train_compile` there (its defaults: full remat, splash
attention) and parse the memory analysis it prints. "total" is MaxText's measure, arguments + outputs +
temporaries - aliased bytes, computed the same way for both; "peak" is the TPU compiler's own peak for ours.

Floors (per chip, written down before measuring): a step's arguments are the float32 parameters and Adam's two
moments, 12 bytes per parameter over the FSDP shards (Qwen3-1.7B, 1.72B parameters with the tied
embedding counted once: 1.72e9 x 12 B / 4 chips = 4.81 GiB on a v5p-8); everything above is temporaries
(activations kept for the backward pass, the gradients, one layer's recomputation).
A compile of a 28-36-layer model takes 2-10 minutes on 2 cores and up to ~12 GB of host memory.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from jaxsuite.core import aot  # noqa: E402  (the report's own arithmetic)

GiB = aot.GiB

# name -> (config, extra launcher args, MaxText train_compile args or None)
CASES = {
    "qwen3_1.7b_b8": ("configs/qwen3_pretrain.py:1.7b",
                      ["--config.data.batch_size=8", "--config.train.accum_steps=1", "--config.sample.num_samples=0"],
                      ["model_name=qwen3-1.7b", "compile_topology=v5p-8", "per_device_batch_size=2",
                       "max_target_length=4096"]),
    "qwen3_1.7b_b64": ("configs/qwen3_pretrain.py:1.7b",
                       ["--config.data.batch_size=64", "--config.train.accum_steps=1",
                        "--config.sample.num_samples=0"],
                       ["model_name=qwen3-1.7b", "compile_topology=v5p-8", "per_device_batch_size=16",
                        "max_target_length=4096"]),
    "qwen3_1.7b_b8_v4": ("configs/qwen3_pretrain.py:1.7b",
                         ["--topology", "v4:2x2x1", "--config.data.batch_size=8", "--config.train.accum_steps=1",
                          "--config.sample.num_samples=0"],
                         ["model_name=qwen3-1.7b", "compile_topology=v4-8", "per_device_batch_size=2",
                          "max_target_length=4096"]),
    "qwen3_0.6b": ("configs/qwen3_pretrain.py:0.6b", [], None),
    "qwen3_1.7b": ("configs/qwen3_pretrain.py:1.7b", [], None),
    "qwen3_4b": ("configs/qwen3_pretrain.py:4b", [], None),
    "qwen3_8b": ("configs/qwen3_pretrain.py:8b", [], None),
    "qwen3_1.7b_b8_h100": ("configs/qwen3_pretrain.py:1.7b",
                           ["--topology", "h100:8", "--config.data.batch_size=8", "--config.train.accum_steps=1",
                            "--config.sample.num_samples=0"], None),
    "halo_2b": ("configs/halo_qwen3.py:2b", [], None),
    "halo_5b": ("configs/halo_qwen3.py:5b", [], None),
    "halo_9b": ("configs/halo_qwen3.py:9b", [], None),
    "cpmobius_7b": ("configs/cpmobius_qwen2p5_math_7b.py", [], None),
    "latentchem_8b": ("configs/latentchem_qwen3_8b.py", [], None),
    "ldl_m5": ("configs/ldl_m5.py", [], None),
}


def run_ours(config: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "jaxsuite.launch", "--config", config, "--compile_only", "--workdir", tmp, *extra]
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        path = os.path.join(tmp, "compile_report.json")
        if not os.path.exists(path):
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        report = json.load(open(path))
        report["wall_seconds"] = time.perf_counter() - t0
        return report


def run_maxtext(python: str, args: list[str]) -> dict:
    """MaxText's train_compile in its own environment: the compiled step's per-device memory (GiB) from the
    `Memory analysis: CompiledMemoryStats(...)` line it prints, and MaxText's own total (arguments + outputs +
    temporaries - aliased)."""
    base = subprocess.run([python, "-c", "import maxtext, os; print(os.path.dirname(maxtext.__file__))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    cmd = [python, "-m", "maxtext.trainers.pre_train.train_compile", os.path.join(base, "configs", "base.yml"),
           "dataset_type=synthetic", "compile_topology_num_slices=1", *args]
    proc = subprocess.run(cmd, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True)
    line = next((l for l in (proc.stdout + proc.stderr).splitlines() if "Memory analysis:" in l), None)
    if line is None:
        raise RuntimeError(f"{' '.join(cmd)} printed no memory analysis:\n{(proc.stdout + proc.stderr)[-3000:]}")
    sizes = {k: int(v) / GiB for k, v in re.findall(r"(\w+)_size_in_bytes=(\d+)", line)}
    sizes["total"] = sizes["argument"] + sizes["output"] + sizes["temp"] - sizes["alias"]
    return sizes


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=sorted(CASES), default=None)
    ap.add_argument("--maxtext-python", default=None, help="python of an environment with maxtext[tpu] installed")
    args = ap.parse_args()
    print("| case | config | topology | program | arguments GiB | temporaries GiB | peak GiB | resident GiB | "
          "total GiB | fits | compile s | MaxText arguments / temporaries / total GiB |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---|---:|---|")
    for name in args.only or list(CASES):
        config, extra, maxtext_args = CASES[name]
        report = run_ours(config, extra)
        mt = ""
        if args.maxtext_python and maxtext_args:
            m = run_maxtext(args.maxtext_python, maxtext_args)
            mt = f"{m['argument']:.2f} / {m['temp']:.2f} / {m['total']:.2f}"
        for row in report["programs"]:
            def g(key):
                value = row.get(key)
                return "-" if value is None else f"{value / GiB:.2f}"
            total = aot.total_bytes(row) / GiB if row.get("argument_bytes") is not None else None
            print(f"| {name} | `{config}` {' '.join(extra)} | {report['target']} | {row['program']} | "
                  f"{g('argument_bytes')} | {g('temp_bytes')} | {g('peak_bytes')} | {g('resident_bytes')} | "
                  f"{'-' if total is None else f'{total:.2f}'} | {aot.FITS[row['fits']]} "
                  f"| {row['compile_seconds']} | {mt} |", flush=True)


if __name__ == "__main__":
    main()
