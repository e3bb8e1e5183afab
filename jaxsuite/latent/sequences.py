"""Token sequences for the three training forms and the Coconut curriculum, and the batches that carry them.

Row layouts ([bos] and the molecule block are part of every prompt; `M` = `<mol_start> <mol_pad> x Q <mol_end>`
when the adapter is on):

  no CoT   [bos] M question\\n | <answer>a</answer> eos
  CoT      [bos] M question\\n | step1\\n step2\\n ... <answer>a</answer> eos
  stage k  [bos] M question\\n <start_latent> | <latent> x (min(k, n) * c) <end_latent> steps k+1.. <answer>.. eos

Loss (targets after the bar): the text after the prompt. In latent rows the latent slots carry no text, but
the model is taught when to stop: the target at every latent slot but the last is `<latent>` ("keep
thinking") and at the last it is `<end_latent>`, so the argmax rule that ends the loop at inference is the
rule that was trained. (LatentChem trains the stop token too; the "keep thinking" targets are our choice.)

Batches are deterministic functions of (seed, step), so the iterator's state is {"step": k} and a resumed
run sees the batches the uninterrupted one would have.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from jaxsuite.core.pairs import StepIterator
from jaxsuite.latent.chem_tasks import ChemExample, format_answer, format_cot, format_prompt
from jaxsuite.latent.head import LatentTokens


@dataclasses.dataclass(frozen=True)
class SequenceFormat:
    tokens: LatentTokens
    bos_id: int
    eos_id: int
    pad_id: int
    num_queries: int = 0        # molecule soft tokens per prompt (0: no molecule block)
    latents_per_step: int = 1   # Coconut's c


def prompt_ids(example: ChemExample, tokenizer, fmt: SequenceFormat, *, latent: bool) -> list[int]:
    ids = [fmt.bos_id]
    if fmt.num_queries:
        t = fmt.tokens
        ids += [t.mol_start] + [t.mol_pad] * fmt.num_queries + [t.mol_end]
    ids += tokenizer.encode(format_prompt(example))
    return ids + ([fmt.tokens.start_latent] if latent else [])


def target_ids(example: ChemExample, tokenizer, fmt: SequenceFormat, *, form: str,
               stage: int = 0) -> tuple[list[int], int]:
    """(the ids after the prompt, how many of them are latent slots). form: "answer", "cot" or "latent"."""
    answer = tokenizer.encode(format_answer(example.answer)) + [fmt.eos_id]
    if form == "answer":
        return answer, 0
    if form == "cot":
        return tokenizer.encode(format_cot(example)) + answer, 0
    if form != "latent":
        raise ValueError(f"unknown sequence form {form!r}; expected answer, cot or latent")
    hidden = min(stage, len(example.steps))
    n_latent = hidden * fmt.latents_per_step
    rest = dataclasses.replace(example, steps=list(example.steps[hidden:]))
    text = tokenizer.encode(format_cot(rest)) if rest.steps else []
    return [fmt.tokens.latent] * n_latent + [fmt.tokens.end_latent] + text + answer, n_latent


def build_row(example: ChemExample, tokenizer, fmt: SequenceFormat, *, form: str, stage: int = 0) -> dict[str, Any]:
    prompt = prompt_ids(example, tokenizer, fmt, latent=form == "latent")
    target, n_latent = target_ids(example, tokenizer, fmt, form=form, stage=stage)
    return {"ids": prompt + target, "prompt_len": len(prompt), "n_latent": n_latent}


def pack_rows(rows: Sequence[dict[str, Any]], seq_len: int, max_latents: int, pad_id: int) -> dict[str, np.ndarray]:
    """Right-padded arrays: inputs/targets/positions/segment_ids/loss_mask [B, seq_len - 1] and latent_slots
    [B, max(max_latents, 1)] (input index of each latent slot, -1 where none)."""
    width = seq_len - 1
    b = len(rows)
    out = {"inputs": np.full((b, width), pad_id, np.int32), "targets": np.full((b, width), pad_id, np.int32),
           "positions": np.tile(np.arange(width, dtype=np.int32), (b, 1)),
           "segment_ids": np.zeros((b, width), np.int32), "loss_mask": np.zeros((b, width), np.float32),
           "latent_slots": np.full((b, max(max_latents, 1)), -1, np.int32)}
    for i, row in enumerate(rows):
        ids, p, n = row["ids"], row["prompt_len"], row["n_latent"]
        if len(ids) > seq_len:
            raise ValueError(f"a row of {len(ids)} tokens does not fit seq_len={seq_len}; raise data.seq_len")
        if n > max_latents:
            raise ValueError(f"a row has {n} latent slots, more than max_latents={max_latents}")
        ids = np.asarray(ids, np.int32)
        out["inputs"][i, :len(ids) - 1] = ids[:-1]
        out["targets"][i, :len(ids) - 1] = ids[1:]
        out["segment_ids"][i, :len(ids) - 1] = 1
        # predictions from the last prompt token on: the first target is the first target id
        out["loss_mask"][i, p - 1:len(ids) - 1] = 1.0
        out["latent_slots"][i, :n] = np.arange(p, p + n)
    return out


class ExampleBatches:
    """An infinite, resumable stream of packed batches over `examples` in one training form.

    `features` (optional): a callable smiles list -> (features [B, L, Df], mask [B, L]) numpy, added to every
    batch as "mol_features" / "mol_mask" (the frozen molecule encoder's output).
    """

    def __init__(self, examples: Sequence[ChemExample], tokenizer, fmt: SequenceFormat, *, form: str, stage: int,
                 batch_size: int, seq_len: int, max_latents: int, seed: int, features=None):
        if not examples:
            raise ValueError("no training examples")
        self.rows = [build_row(e, tokenizer, fmt, form=form, stage=stage) for e in examples]
        self.sources = [e.source for e in examples]
        self.batch_size, self.seq_len, self.max_latents = batch_size, seq_len, max_latents
        self.seed, self.pad_id, self.features = seed, fmt.pad_id, features
        longest = max(len(r["ids"]) for r in self.rows)
        if longest > seq_len:
            raise ValueError(f"the longest {form} row has {longest} tokens; seq_len is {seq_len}")

    def __iter__(self) -> StepIterator:
        return StepIterator(self.batch)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, step])
        pick = rng.choice(len(self.rows), size=self.batch_size, replace=len(self.rows) < self.batch_size)
        out = pack_rows([self.rows[i] for i in pick], self.seq_len, self.max_latents, self.pad_id)
        if self.features is not None:
            out["mol_features"], out["mol_mask"] = self.features([self.sources[i] for i in pick])
        return out
