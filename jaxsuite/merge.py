"""Merges Hugging Face model folders tensor by tensor (jaxsuite.core.merging), writing a new HF folder.

    python -m jaxsuite.merge --method linear --models a/ b/ --weights 0.3 0.7 --out merged/
    python -m jaxsuite.merge --method task_arithmetic --base base/ --models sft1/ sft2/ --scale 0.5 --out m/
    python -m jaxsuite.merge --method ties --base base/ --models sft1/ sft2/ --density 0.2 --out m/
    python -m jaxsuite.merge --method dare --base base/ --models sft1/ --drop 0.9 --seed 0 --out m/

Tensors are read one at a time from every input (safetensors, sharded or not) and the merged tensor is written
before the next is read, so peak host memory is one tensor per input plus the output shard being written, not
whole models: a 7B merge fits a laptop. The output gets the first input's config.json, generation config and
tokenizer files; it is written beside the target and renamed into place.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from jaxsuite.core import files, merging

METHODS = ("linear", "task_arithmetic", "ties", "dare")
CARRIED = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
           "special_tokens_map.json", "vocab.json", "merges.txt", "chat_template.jinja")


class MergeError(ValueError):
    """Inputs that cannot be merged; the message names the folder or tensor."""


def _tensor_files(folder: Path) -> dict[str, Path]:
    """tensor name -> the safetensors file holding it."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: folder / file for name, file in weight_map.items()}
    single = folder / "model.safetensors"
    if not single.is_file():
        raise MergeError(f"{folder}: no model.safetensors or model.safetensors.index.json")
    from safetensors import safe_open
    with safe_open(str(single), "np") as f:
        return {name: single for name in f.keys()}


def _read(path: Path, name: str) -> np.ndarray:
    from safetensors import safe_open
    with safe_open(str(path), "np") as f:
        return f.get_tensor(name)


def merged_tensors(method: str, models: Sequence[Path], *, base: Path | None, weights: Sequence[float] | None,
                   scale: float, density: float, drop: float, seed: int) -> Iterator[tuple[str, np.ndarray]]:
    """(name, merged tensor) for every tensor, in the first model's order."""
    maps = [_tensor_files(m) for m in models]
    base_map = _tensor_files(base) if base is not None else None
    for k, m in enumerate(maps[1:] + ([base_map] if base_map else []), 1):
        if set(m) != set(maps[0]):
            missing = sorted(set(maps[0]) ^ set(m))[:3]
            raise MergeError(f"the inputs hold different tensors (e.g. {missing})")
    for t, name in enumerate(maps[0]):
        tensors = [_read(m[name], name) for m in maps]
        if method == "linear":
            out = merging.linear(tensors, weights)
        else:
            b = _read(base_map[name], name)
            if method == "task_arithmetic":
                out = merging.task_arithmetic(b, tensors, scale)
            elif method == "ties":
                out = merging.ties(b, tensors, density=density, scale=scale)
            else:      # a distinct seed per tensor, fixed by the tensor's position
                out = merging.dare(b, tensors, drop=drop, seed=seed * 1_000_003 + t, scale=scale)
        yield name, np.asarray(out).astype(tensors[0].dtype)


def merge_folders(method: str, models: Sequence[str], out: str, *, base: str | None = None,
                  weights: Sequence[float] | None = None, scale: float = 1.0, density: float = 0.2,
                  drop: float = 0.9, seed: int = 0, shard_bytes: int = 2 << 30) -> str:
    if method not in METHODS:
        raise MergeError(f"--method must be one of {METHODS}, got {method!r}")
    paths = [Path(m) for m in models]
    for p in paths + ([Path(base)] if base else []):
        if not (p / "config.json").is_file():
            raise MergeError(f"{p}: not a Hugging Face model folder (no config.json)")
    if method == "linear":
        weights = list(weights) if weights else [1.0 / len(paths)] * len(paths)
        if len(weights) != len(paths):
            raise MergeError(f"{len(paths)} models but {len(weights)} weights")
    elif base is None:
        raise MergeError(f"--method {method} needs --base (the model the task vectors are taken from)")
    from safetensors.numpy import save_file
    target = Path(out)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent if target.parent.exists() else None))
    shard, size, shards, weight_map = {}, 0, [], {}

    def flush():
        nonlocal shard, size
        if shard:
            name = f"model-{len(shards) + 1:05d}.safetensors"
            save_file(shard, str(tmp / name), metadata={"format": "pt"})
            shards.append(name)
            weight_map.update({k: name for k in shard})
            shard, size = {}, 0
    try:
        for name, tensor in merged_tensors(method, paths, base=Path(base) if base else None, weights=weights,
                                           scale=scale, density=density, drop=drop, seed=seed):
            if size and size + tensor.nbytes > shard_bytes:
                flush()
            shard[name] = tensor
            size += tensor.nbytes
        flush()
        if len(shards) == 1:
            (tmp / shards[0]).rename(tmp / "model.safetensors")
        else:
            (tmp / "model.safetensors.index.json").write_text(json.dumps(
                {"metadata": {}, "weight_map": weight_map}, indent=1))
        for name in CARRIED:
            if (paths[0] / name).is_file():
                shutil.copy2(paths[0] / name, tmp / name)
        files.replace_folder(tmp, target)     # the old folder is moved aside, never deleted first
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxsuite.merge", description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--models", nargs="+", required=True, help="the fine-tuned (or, for linear, all) folders")
    parser.add_argument("--base", default=None, help="the base folder (task_arithmetic, ties, dare)")
    parser.add_argument("--weights", nargs="+", type=float, default=None, help="linear: one per model")
    parser.add_argument("--scale", type=float, default=1.0, help="lambda on the merged task vector")
    parser.add_argument("--density", type=float, default=0.2, help="ties: fraction of each task vector kept")
    parser.add_argument("--drop", type=float, default=0.9, help="dare: probability of dropping an entry")
    parser.add_argument("--seed", type=int, default=0, help="dare's seed")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        out = merge_folders(args.method, args.models, args.out, base=args.base, weights=args.weights,
                            scale=args.scale, density=args.density, drop=args.drop, seed=args.seed)
    except (MergeError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
