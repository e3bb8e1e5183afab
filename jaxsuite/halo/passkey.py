"""Passkey retrieval (needle in a haystack): a teacher-forced evaluation of the synthetic passkey documents.

The task (Mohtashami & Jaggi, 2023, the form HALO's long-context evaluation uses): a random number is hidden
at some depth in a long run of filler sentences, and the model must repeat it after the question at the end.
A model that only summarises recent context (an RNN whose state has forgotten the needle) fails; softmax
attention can look the key up at any distance. Accuracy against context length is the long-context curve.

Tokenisation: every document here is a sequence of *units* joined by single spaces, and every unit after the
first starts with that space (" The grass is green.", " The pass key is 12345. ...", " What is the pass key?
The pass key is", " 12345"). Evaluation rows are built by encoding the units separately and concatenating the
id lists, so that (a) the answer's token ids are exactly `encode(" " + key)`, found at a known offset, and
(b) they equal what `encode(passkey_document(...))` produces for the same text, provided the tokenizer does not
merge tokens across a space boundary (true for the byte tokenizer, the stdlib SentencePiece model -- it splits
on whitespace and splits digits -- and byte-level BPE tokenizers such as Qwen's). `make_eval_batch` checks
this on a sample document and raises ValueError for a tokenizer that violates it, rather than score a task
whose answer tokens differ from the ones the model was trained on. The training documents and their
sentences live in jaxsuite.core.corpus (`passkey_document`), where the data pipeline's "passkey:N" source
reads them.
"""
from __future__ import annotations

import dataclasses
import functools
import random
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsuite.core.corpus import PASSKEY_FILLER_SENTENCES, PASSKEY_QUESTION, passkey_sentence, random_passkey


@dataclasses.dataclass
class PasskeyBatch:
    """Evaluation rows: the answer's tokens sit at inputs[i, answer_start[i] : answer_start[i] + answer_len[i]]."""
    inputs: np.ndarray         # [N, L] int32 token ids, the answer at the very end
    answer_start: np.ndarray   # [N] int, first answer token
    answer_len: np.ndarray     # [N] int
    keys: list[str]            # [N] the passkeys as text
    depths: np.ndarray         # [N] float, filler tokens before the key sentence / all filler tokens


def _encode_units(tokenizer, units: Sequence[str]) -> list[int]:
    out: list[int] = []
    for u in units:
        out += tokenizer.encode(u)
    return out


def _check_boundaries(tokenizer, key: str) -> None:
    """Unit-wise encoding must equal whole-text encoding (see the module docstring)."""
    units = [PASSKEY_FILLER_SENTENCES[0], " " + passkey_sentence(key), " " + PASSKEY_FILLER_SENTENCES[1],
             " " + PASSKEY_QUESTION, " " + key, "."]
    if _encode_units(tokenizer, units) != list(tokenizer.encode("".join(units))):
        raise ValueError(f"tokenizer {tokenizer!r} merges tokens across the space between sentences, so the "
                         "passkey rows (built by concatenating separately encoded sentences) would not match "
                         "the tokenisation of passkey_document; this evaluation does not support it")


def _filler_tail(units: list[list[int]], n: int) -> list[int]:
    """The last n tokens of the filler stream ..., S[-2], S[-1] (it ends on a sentence boundary)."""
    parts, total, j = [], 0, -1
    while total < n:
        ids = units[j % len(units)]
        parts.append(ids)
        total += len(ids)
        j -= 1
    flat = [t for ids in reversed(parts) for t in ids]
    return flat[len(flat) - n:] if n else []


def _filler_head(units: list[list[int]], target: int, limit: int) -> list[int]:
    """Whole sentences S[0], S[1], ... (so the question follows a full stop): the count whose token total is
    nearest to `target` without exceeding `limit`."""
    out, j = [], 0
    while len(out) + len(units[j % len(units)]) <= limit:
        nxt = len(out) + len(units[j % len(units)])
        if abs(nxt - target) > abs(len(out) - target):
            break
        out += units[j % len(units)]
        j += 1
    return out


def make_eval_batch(tokenizer, length: int, num_samples: int, seed: int = 0, digits: int = 5) -> PasskeyBatch:
    """`num_samples` rows of exactly `length` tokens, needle depths spread evenly over [0, 1).

    Row i: [filler tail] [" The pass key is K. Remember it. K is the pass key."] [whole filler sentences]
    [" What is the pass key? The pass key is"] [" K"]. The filler before the key is cut at its start (the row
    begins mid-sentence, like a window into a long document) so that the total is exactly `length`; the filler
    after the key is whole sentences, about (1 - depth) of the filler budget. Keys depend on (seed, i) only,
    so every length asks for the same keys.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    units = [tokenizer.encode(" " + s) for s in PASSKEY_FILLER_SENTENCES]
    question = tokenizer.encode(" " + PASSKEY_QUESTION)
    rows, starts, lens, keys, depths = [], [], [], [], []
    for i in range(num_samples):
        key = random_passkey(random.Random(f"passkey-eval:{int(seed)}:{i}"), digits)
        if i == 0:
            _check_boundaries(tokenizer, key)
        needle = tokenizer.encode(" " + passkey_sentence(key))
        answer = tokenizer.encode(" " + key)
        budget = length - len(needle) - len(question) - len(answer)
        if budget < 0:
            raise ValueError(f"length={length} is too short for a passkey row: the key sentence, question and "
                             f"answer alone take {length - budget} tokens with this tokenizer")
        depth = i / num_samples
        after = _filler_head(units, int(round((1.0 - depth) * budget)), budget)
        before = _filler_tail(units, budget - len(after))
        row = before + needle + after + question + answer
        assert len(row) == length, (len(row), length)
        rows.append(row)
        starts.append(length - len(answer))
        lens.append(len(answer))
        keys.append(key)
        depths.append(len(before) / budget if budget else 0.0)
    return PasskeyBatch(inputs=np.asarray(rows, np.int32), answer_start=np.asarray(starts, np.int64),
                        answer_len=np.asarray(lens, np.int64), keys=keys, depths=np.asarray(depths, np.float64))


@functools.partial(jax.jit, static_argnames=("graphdef", "num"))
def _tail_argmax(graphdef, state, ids, num):
    """argmax of the logits predicting the last `num` tokens: [B, num] int32, logits only where needed."""
    model = nnx.merge(graphdef, state)
    hidden = model.hidden_states(ids)                          # [B, L, D]
    logits = model.logits(hidden[:, ids.shape[1] - num - 1:-1])  # [B, num, V]
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def _predict_tail(model, ids: np.ndarray, num: int) -> np.ndarray:
    """[B, num] greedy predictions for positions L-num .. L-1 (each from the position before it).

    jaxsuite LMs (nnx modules with hidden_states/logits) run jitted and project only the tail to the
    vocabulary: full logits at 128K x 150K vocab would be ~80 GB per row. Any other callable returning
    [B, L, V] logits (test oracles) is called as is.
    """
    if isinstance(model, nnx.Module) and hasattr(model, "hidden_states") and hasattr(model, "logits"):
        graphdef, state = nnx.split(model)
        return np.asarray(_tail_argmax(graphdef, state, jnp.asarray(ids, jnp.int32), num))
    logits = np.asarray(model(jnp.asarray(ids, jnp.int32)))   # [B, L, V]
    return logits[:, ids.shape[1] - num - 1:-1].argmax(-1)


def passkey_accuracy(model, batch: PasskeyBatch, batch_size: int = 4) -> float:
    """Fraction of rows whose every answer token is the argmax of the logits at the position before it.

    Teacher-forced exact match, one full forward per chunk of `batch_size` rows (softmax attention makes that
    O(L^2) memory, so keep batch_size small at long lengths). The last chunk is padded with copies of its
    last row so that every chunk has one shape (one compilation).
    """
    ids = np.asarray(batch.inputs)
    if ids.ndim != 2 or len(ids) == 0:
        raise ValueError(f"batch.inputs must be a non-empty [N, L] array, got shape {ids.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n, length = ids.shape
    start, alen = np.asarray(batch.answer_start), np.asarray(batch.answer_len)
    if (start < 1).any() or (alen < 1).any() or (start + alen > length).any():
        raise ValueError("answers must lie inside the rows, start at position >= 1 and be non-empty")
    first = int(start.min())
    num = length - first                                    # predictions for positions first .. L-1
    correct = []
    for lo in range(0, n, batch_size):
        chunk = ids[lo:lo + batch_size]
        real = len(chunk)
        if real < batch_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - real, 0)])
        preds = _predict_tail(model, chunk, num)[:real]     # [b, num]
        for r in range(real):
            s, a = int(start[lo + r]), int(alen[lo + r])
            got = preds[r, s - first:s - first + a]
            correct.append(bool(np.array_equal(got, ids[lo + r, s:s + a])))
    return float(np.mean(correct))


def passkey_by_length(model, tokenizer, lengths: Sequence[int], num_samples: int, seed: int = 0,
                      batch_size: int = 4, digits: int = 5) -> dict[int, float]:
    """{length: passkey accuracy} over `num_samples` depths per length."""
    return {int(length): passkey_accuracy(model, make_eval_batch(tokenizer, int(length), num_samples, seed,
                                                                 digits), batch_size)
            for length in lengths}
