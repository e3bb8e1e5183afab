"""Evaluating latent reasoning against chain of thought: accuracy per task, the paper's non-tie win rate,
reasoning steps and the wall-clock time to answer, plus the causal test (corrupted latents).

Both models answer greedily through `jaxsuite.generate` in fixed-size batches (one compilation each); the
latent model thinks in its prefill hook. Times exclude compilation: the first batch is answered once before
the clock starts. Steps: a CoT answer's reasoning steps are its lines before `<answer>`; a latent answer's
are its latent steps (plus any text lines it still writes, which the last curriculum stage removes).
"""
from __future__ import annotations

import collections
import contextlib
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from jaxsuite.core.sharding import DEFAULT_RULES, use_sharding
from jaxsuite.generate import generate
from jaxsuite.latent.chem_tasks import ChemExample, check_answer, extract_answer
from jaxsuite.latent.head import latent_hook, molecule_prefill
from jaxsuite.latent.sequences import SequenceFormat, prompt_ids


def text_steps(text: str) -> int:
    """Reasoning lines written before the answer tag."""
    head = text.split("<answer>")[0]
    return sum(1 for line in head.split("\n") if line.strip())


def answer_all(model, examples: Sequence[ChemExample], tokenizer, fmt: SequenceFormat, *, latent: bool,
               max_new_tokens: int, max_latent_steps: int, batch_size: int,
               features: Callable | None = None, corrupt: str = "none", seed: int = 0, mesh=None,
               rules=DEFAULT_RULES) -> dict[str, Any]:
    """Greedy answers to every example. Returns texts, latent_steps [N], text_steps [N], generated tokens [N]
    and seconds (wall time after a warm-up batch). `mesh`/`rules` (the job's) shard the rows; without a mesh
    generate uses the sharding context in force, else the mesh the weights live on with the default rules."""
    prompts = [prompt_ids(e, tokenizer, fmt, latent=latent) for e in examples]
    if latent:
        hook = latent_hook(max_latent_steps, model.updater is not None, corrupt)
    else:
        hook = molecule_prefill if features is not None else None
    extra = max_latent_steps + 1 if latent else 0

    def run_batch(start: int, call: int):
        part = prompts[start:start + batch_size]
        real = len(part)
        part = part + [part[-1]] * (batch_size - real)          # one compiled shape
        inputs = None
        if hook is not None:
            inputs = {}
            if features is not None:
                srcs = [e.source for e in examples[start:start + real]]
                srcs = srcs + [srcs[-1]] * (batch_size - real)
                feats, mask = features(srcs)
                inputs.update(mol_features=feats, mol_mask=mask)
            if corrupt == "noise":
                inputs["rng"] = jax.random.key(seed * 7919 + call)
        with use_sharding(mesh, rules) if mesh is not None else contextlib.nullcontext():
            out = generate(model, part, max_new_tokens, stop_tokens=fmt.eos_id, pad_token_id=fmt.pad_id,
                           prefill_hook=hook, hook_inputs=inputs, extra_cache_slots=extra)
        steps = out.extras.get("latent_steps", np.zeros(batch_size, np.int32))
        return out.sequences()[:real], steps[:real], out.lengths[:real]

    run_batch(0, 0)                                               # compile outside the clock
    texts, latent_steps, lengths = [], [], []
    t0 = time.perf_counter()
    for call, start in enumerate(range(0, len(prompts), batch_size)):
        seqs, steps, lens = run_batch(start, call + 1)
        texts += [tokenizer.decode([t for t in s if t != fmt.eos_id]) for s in seqs]
        latent_steps += steps.tolist()
        lengths += lens.tolist()
    seconds = time.perf_counter() - t0
    return {"texts": texts, "latent_steps": np.asarray(latent_steps), "generated_tokens": np.asarray(lengths),
            "text_steps": np.asarray([text_steps(t) for t in texts]), "seconds": seconds,
            # forward passes spent before the answer: reasoning text tokens plus latent steps
            "reasoning_passes": np.asarray([len(tokenizer.encode(t.split("<answer>")[0])) for t in texts])
            + np.asarray(latent_steps)}


def correctness(examples: Sequence[ChemExample], texts: Sequence[str]) -> np.ndarray:
    return np.asarray([check_answer(e, extract_answer(t)) for e, t in zip(examples, texts)], bool)


def accuracy_by_task(examples: Sequence[ChemExample], correct: np.ndarray) -> dict[str, float]:
    by = collections.defaultdict(list)
    for e, c in zip(examples, correct):
        by[e.task].append(bool(c))
    return {task: float(np.mean(v)) for task, v in sorted(by.items())}


def win_rate(latent_correct: np.ndarray, cot_correct: np.ndarray) -> dict[str, float]:
    """The paper's non-tie win rate: among questions where exactly one model is right, the share where it
    is the latent model (NaN when every question is a tie)."""
    wins = int(np.sum(latent_correct & ~cot_correct))
    losses = int(np.sum(~latent_correct & cot_correct))
    return {"wins": wins, "losses": losses, "ties": int(len(latent_correct) - wins - losses),
            "non_tie_win_rate": wins / (wins + losses) if wins + losses else float("nan")}


def summary(examples: Sequence[ChemExample], run: dict[str, Any]) -> dict[str, Any]:
    correct = correctness(examples, run["texts"])
    steps = run["latent_steps"] + run["text_steps"]
    return {"accuracy": float(correct.mean()), "accuracy_by_task": accuracy_by_task(examples, correct),
            "mean_reasoning_steps": float(np.mean(steps)), "mean_latent_steps": float(np.mean(run["latent_steps"])),
            "mean_text_steps": float(np.mean(run["text_steps"])),
            "mean_generated_tokens": float(np.mean(run["generated_tokens"])), "seconds": run["seconds"],
            "mean_reasoning_passes": float(np.mean(run["reasoning_passes"])),
            "correct": correct}
