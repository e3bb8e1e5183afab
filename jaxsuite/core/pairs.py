"""Supervised fine-tuning on (prompt -> response) pairs: rows with the loss on the response only, as a
resumable stream for `jaxsuite.core.loop.train_loop`.

    batches = PairBatches(prompt_ids, response_ids, batch_size=32, seq_len=4096, seed=0)
    train_loop(loop_config(seed, train_block, 4096, 32), wd, model, mesh=mesh, rules=rules, train_ds=batches)

A row is prompt + response, right-padded to seq_len: inputs = row[:-1], targets = row[1:], positions 0.., and
loss_mask 1 exactly where the target is a response token (the response's own stop token included, if the
caller appended it). Batch k draws `batch_size` pairs from `np.random.default_rng([seed, k])`, so the stream is
a pure function of its step: `get_state` / `set_state` hold only that step, and a resumed run sees the same
batches as an uninterrupted one.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def pack_pairs(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], seq_len: int,
               pad_id: int = 0) -> dict[str, np.ndarray]:
    """[B, seq_len - 1] arrays inputs, targets, positions, segment_ids, loss_mask for the pairs."""
    rows, width = len(prompts), seq_len - 1
    out = {"inputs": np.full((rows, width), pad_id, np.int32), "targets": np.full((rows, width), pad_id, np.int32),
           "positions": np.tile(np.arange(width, dtype=np.int32), (rows, 1)),
           "segment_ids": np.zeros((rows, width), np.int32), "loss_mask": np.zeros((rows, width), np.float32)}
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ids = np.asarray(list(p) + list(r), np.int32)
        n = len(ids) - 1
        out["inputs"][i, :n], out["targets"][i, :n] = ids[:-1], ids[1:]
        out["segment_ids"][i, :n] = 1
        out["loss_mask"][i, len(p) - 1:n] = 1.0      # target t is response token k when t = len(p) - 1 + k
    return out


class PairBatches:
    """An infinite, resumable stream of packed (prompt -> response) batches (see the module docstring)."""

    def __init__(self, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], *, batch_size: int,
                 seq_len: int, seed: int, pad_id: int = 0):
        if not prompts or len(prompts) != len(responses):
            raise ValueError(f"need one response per prompt and at least one pair, got {len(prompts)} prompts "
                             f"and {len(responses)} responses")
        empty = [i for i, (p, r) in enumerate(zip(prompts, responses)) if not p or not r]
        if empty:
            raise ValueError(f"pair {empty[0]} has an empty prompt or response")
        longest = max(len(p) + len(r) for p, r in zip(prompts, responses))
        if longest > seq_len:
            raise ValueError(f"the longest prompt + response has {longest} tokens; seq_len is {seq_len}")
        self.prompts, self.responses = [list(p) for p in prompts], [list(r) for r in responses]
        self.batch_size, self.seq_len, self.seed, self.pad_id = int(batch_size), int(seq_len), int(seed), pad_id

    def batch(self, step: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, step])
        pick = rng.choice(len(self.prompts), size=self.batch_size, replace=len(self.prompts) < self.batch_size)
        return pack_pairs([self.prompts[i] for i in pick], [self.responses[i] for i in pick], self.seq_len,
                          self.pad_id)

    def __iter__(self) -> "StepIterator":
        return StepIterator(self.batch)


class StepIterator:
    """Batches `batch(0)`, `batch(1)`, ... of a stream that is a pure function of its step: its checkpointed state
    is that step alone (`get_state` / `set_state`, what jaxsuite.core.checkpoint saves beside the train state)."""

    def __init__(self, batch: Callable[[int], dict[str, np.ndarray]]):
        self.batch, self.step = batch, 0

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        out = self.batch(self.step)
        self.step += 1
        return out

    def get_state(self) -> dict[str, int]:
        return {"step": self.step}

    def set_state(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])
