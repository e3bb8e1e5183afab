"""Rollouts: sample n responses per prompt through `jaxsuite.generate`, and lay them out as an RL batch.

A rollout keeps token ids, not just text: the update must score exactly the tokens that were sampled
(re-tokenising decoded text can split differently). Rows are prompt-major: row i * n + j is the j-th
response to prompt i, and `group_ids[row] = i`, which is what GRPO's group normalisation reads.

Batch layout (what `Policy.update` consumes), one row per response, right-padded to a fixed width so that
every update compiles once:

    sequence   [p0 p1 p2 r0 r1 r2 eos pad pad]        positions 0 1 2 ...
    inputs     sequence[:-1]       targets  sequence[1:]
    loss_mask  1 where the target is a response token (eos included)
A right-padded layout is safe for a causal LM: a token never attends to the padding after it.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.generate import LogitsProcessor, generate


def apply_repetition_penalty(logits: jax.Array, generated: jax.Array, step: jax.Array, *,
                             penalty: float) -> jax.Array:
    """A `jaxsuite.generate.LogitsProcessor` once `penalty` is bound (`repetition_processor`).

    The CTRL / Hugging Face repetition penalty over the tokens generated so far: a seen token's positive
    logit is divided by `penalty`, a negative one multiplied. logits [B, V], generated [B, N] -> [B, V].

    Only the response is seen here (the generate hook does not receive the prompt), whereas vLLM and
    transformers also count prompt tokens; for penalties near 1 (CPMobius uses 1.05) the difference is small.
    """
    batch, vocab = logits.shape
    valid = jnp.arange(generated.shape[1])[None, :] < step                          # [B, N] filled so far
    seen = jnp.zeros((batch, vocab), bool).at[jnp.arange(batch)[:, None], generated].max(valid)
    penalised = jnp.where(logits > 0, logits / penalty, logits * penalty)
    return jnp.where(seen, penalised, logits)


@functools.lru_cache(maxsize=None)
def repetition_processor(penalty: float) -> LogitsProcessor:
    """One hook object per penalty value: generate's jit keys on the hook, and a fresh functools.partial per
    call would compile the decode loop again every time."""
    return functools.partial(apply_repetition_penalty, penalty=penalty)


@dataclasses.dataclass
class Rollout:
    prompt_ids: list[list[int]]        # one per row (prompts repeated n times)
    response_ids: list[list[int]]      # sampled tokens, the stop token included when the row finished
    finished: np.ndarray               # [R] bool: the row emitted a stop token within max_new_tokens
    logprobs: list[np.ndarray]         # sampler log-probs per response token (diagnostics)
    texts: list[str]                   # decoded responses (without the stop token)
    group_ids: np.ndarray              # [R] index of the prompt each row answers
    seconds: float                     # wall time of the sampling
    n: int

    @property
    def num_tokens(self) -> int:
        return int(sum(len(r) for r in self.response_ids))

    def select(self, rows: Sequence[int]) -> "Rollout":
        rows = list(rows)
        return Rollout([self.prompt_ids[r] for r in rows], [self.response_ids[r] for r in rows],
                       self.finished[rows], [self.logprobs[r] for r in rows], [self.texts[r] for r in rows],
                       self.group_ids[rows], self.seconds, self.n)

    @staticmethod
    def concat(parts: Sequence["Rollout"]) -> "Rollout":
        """The rows of several rollouts, in order (group ids renumbered so groups stay distinct)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        groups, offset = [], 0
        for p in parts:
            groups.append(p.group_ids - p.group_ids.min() + offset if len(p.group_ids) else p.group_ids)
            offset = int(groups[-1].max()) + 1 if len(p.group_ids) else offset
        return Rollout(sum((p.prompt_ids for p in parts), []), sum((p.response_ids for p in parts), []),
                       np.concatenate([p.finished for p in parts]), sum((p.logprobs for p in parts), []),
                       sum((p.texts for p in parts), []), np.concatenate(groups),
                       sum(p.seconds for p in parts), parts[0].n)

    def to_batch(self, advantages: Sequence[float], *, seq_len: int, pad_id: int,
                 rows: int | None = None) -> dict[str, np.ndarray]:
        """The RL batch for `Policy.update`: arrays [rows, seq_len - 1]; `advantages` is per response (one per
        row) and is broadcast over its tokens. `rows` pads the batch with empty rows (no loss tokens) to a
        fixed size, so a filtered rollout does not trigger a recompilation."""
        return pack_rl_batch(self.prompt_ids, self.response_ids, advantages, seq_len=seq_len, pad_id=pad_id,
                             rows=rows)


def pack_rl_batch(prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]],
                  advantages: Sequence[float], *, seq_len: int, pad_id: int,
                  rows: int | None = None) -> dict[str, np.ndarray]:
    """Right-padded [rows, seq_len - 1] arrays: inputs, targets, positions, loss_mask, advantages."""
    n = len(prompt_ids)
    advantages = np.asarray(advantages, np.float32).reshape(-1)
    if len(response_ids) != n or advantages.shape[0] != n:
        raise ValueError(f"{n} prompts, {len(response_ids)} responses and {advantages.shape[0]} advantages: "
                         "one of each per row")
    rows = n if rows is None else int(rows)
    if rows < n:
        raise ValueError(f"rows={rows} is smaller than the {n} rollout rows")
    width = seq_len - 1
    out = {"inputs": np.full((rows, width), pad_id, np.int32), "targets": np.full((rows, width), pad_id, np.int32),
           "positions": np.tile(np.arange(width, dtype=np.int32), (rows, 1)),
           "loss_mask": np.zeros((rows, width), np.float32), "advantages": np.zeros((rows, width), np.float32)}
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        seq = list(p) + list(r)
        if len(seq) > seq_len:
            raise ValueError(f"row {i}: prompt ({len(p)}) + response ({len(r)}) tokens exceed seq_len={seq_len}; "
                             "raise the rollout's seq_len or shorten max_new_tokens / the prompts")
        if not p:
            raise ValueError(f"row {i}: empty prompt")
        seq = np.asarray(seq, np.int32)
        out["inputs"][i, :len(seq) - 1] = seq[:-1]
        out["targets"][i, :len(seq) - 1] = seq[1:]
        # target t is response token k when t = len(p) - 1 + k
        out["loss_mask"][i, len(p) - 1:len(seq) - 1] = 1.0
        out["advantages"][i, len(p) - 1:len(seq) - 1] = advantages[i]
    return out


def sample_responses(model, tokenizer, prompts: Sequence[str], *, n: int, max_new_tokens: int,
                     temperature: float, top_p: float = 1.0, top_k: int = 0, repetition_penalty: float = 1.0,
                     seed: int = 0, batch_size: int | None = None, prompt_ids: Sequence[Sequence[int]] | None = None,
                     mesh=None, rules=None) -> Rollout:
    """Samples `n` responses to each prompt (rows prompt-major) with per-token sampler log-probs.

    `tokenizer` needs encode/decode and eos_id (bos_id is prepended when it has one); `prompt_ids` overrides
    the encoding (e.g. a chat template applied by the caller). `batch_size` caps the rows per generate call
    (default: all at once); keep it fixed across calls so the decode loop compiles once. `mesh` and `rules` are
    the job's, which split the rows over the devices (see `jaxsuite.generate`; a `Policy` holds both).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if prompt_ids is None:
        bos = getattr(tokenizer, "bos_id", None)
        prompt_ids = [([bos] if bos is not None else []) + tokenizer.encode(p) for p in prompts]
    if len(prompt_ids) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(prompt_ids)} prompt_ids")
    rows = [list(p) for p in prompt_ids for _ in range(n)]
    eos = tokenizer.eos_id
    pad = getattr(tokenizer, "pad_id", None)
    processor = repetition_processor(float(repetition_penalty)) if repetition_penalty != 1.0 else None
    chunk = int(batch_size or len(rows))
    t0 = time.perf_counter()
    tokens, lengths, finished, logprobs = [], [], [], []
    for i, start in enumerate(range(0, len(rows), chunk)):
        part = rows[start:start + chunk]
        real = len(part)
        part = part + [part[-1]] * (chunk - real)   # a fixed batch shape: pad with copies, drop them after
        out = generate(model, part, max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                       stop_tokens=eos, seed=seed * 100003 + i, pad_token_id=pad if pad is not None else eos,
                       logits_processor=processor, return_logprobs=True, mesh=mesh, rules=rules)
        tokens += [out.tokens[j, :out.lengths[j]].tolist() for j in range(real)]
        lengths += out.lengths[:real].tolist()
        finished += out.finished[:real].tolist()
        logprobs += [out.logprobs[j, :out.lengths[j]] for j in range(real)]
    seconds = time.perf_counter() - t0
    texts = [tokenizer.decode([t for t in toks if t != eos]) for toks in tokens]
    groups = np.repeat(np.arange(len(prompt_ids)), n)
    return Rollout([list(r) for r in rows], tokens, np.asarray(finished, bool), logprobs, texts, groups, seconds, n)


def greedy_answers(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int, batch_size: int,
                   repetition_penalty: float = 1.0, mesh=None, rules=None) -> list[str]:
    """Greedy responses (texts) to prompts, in fixed-size generate calls (validation and evaluation)."""
    rollout = sample_responses(model, tokenizer, prompts, n=1, max_new_tokens=max_new_tokens, temperature=0.0,
                               repetition_penalty=repetition_penalty, batch_size=batch_size, mesh=mesh, rules=rules)
    return rollout.texts
