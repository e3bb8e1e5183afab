"""The one decode loop: batched, jit-compiled, over the model's decode cache.

Every system that samples from an LM (evaluation, RL rollouts, latent reasoning, data editing, agents, HALO's
decode benchmark) calls `generate`. Systems extend it through two hooks, typed below as Protocols, instead of
writing their own loops:
  * a `LogitsProcessor` rewrites each step's logits before sampling (RL's repetition penalty);
  * a `PrefillHook` replaces the plain prompt prefill (latent reasoning thinks there; molecule soft tokens).

Where decoding starts
  * By default, from a fresh cache (`model.init_cache`) sized for the prompt and the new tokens.
  * From an existing cache (`cache=`): the prompt is written from `cache.index` on and its positions continue
    from `positions` (default: each row's number of valid cache slots). A conversation continues without
    prefilling its history again, and a decode benchmark starts from a cache filled to any context length.
    The cache is donated: its buffers become `GenerateOutput.cache`, which holds the prompt and every new token
    except the last one sampled (feed that token first to continue again).

How it stays fast
  * Prompts are normalised to LEFT padding on the host (the real tokens of a right-padded row are moved to its
    end), so every row's next token sits in the same cache slot and one `decode` call serves the whole batch.
  * With a fresh cache, the prompt length is padded up to a bucket (powers of two from 16), so prompts of 20
    and 27 tokens share one compilation. (A given cache already fixes the shapes, and its free slots are the
    caller's to spend: its prompt is padded only to the longest row.)
  * The whole prefill + decode loop is one `jax.jit` program: a `lax.while_loop` that stops as soon as every
    row has emitted a stop token.
  * Settings that change the program's structure (greedy or not, top-k, the stop-token set, the hooks, the
    number of new tokens, whether log-probs or the cache are returned) are static; temperature, top-p and the
    seed are traced, so changing them does not recompile.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsuite.models.protocol import LanguageModel


# --- hook contracts ---------------------------------------------------------------------------------------------
# Hooks are traced into generate's jitted loop and are part of its compilation key: they must be hashable, and
# the SAME object across calls (a module-level function, or a functools.partial built once, e.g. by a
# functools.lru_cache factory); a fresh partial per call compiles the whole loop again.
class LogitsProcessor(Protocol):
    """Rewrites the logits of one step before sampling (and after the policy log-prob is taken)."""

    def __call__(self, logits: jax.Array, generated: jax.Array, step: jax.Array, /) -> jax.Array:
        """logits [B, V] float32; generated [B, N] int32, the new tokens so far (columns >= step hold the pad
        id); step: int32 scalar, the column this step's token goes to. Returns logits [B, V]."""
        ...


class Prefilled(NamedTuple):
    """What a prefill hook hands to the decode loop."""
    logits: jax.Array               # [B, V] float32: the logits that pick the first new token
    cache: Any                      # the decode cache after the prompt (and whatever the hook added)
    next_positions: jax.Array       # [B] int32: the position of each row's first new token
    extras: dict[str, jax.Array]    # per-row results for GenerateOutput.extras, e.g. {"latent_steps": [B]}


class PrefillHook(Protocol):
    """Replaces the plain prompt prefill, `model.decode(ids, positions, cache, token_mask=mask)`: e.g. to place
    soft tokens, or to think in latent space before the first sampled token. It may write up to
    `extra_cache_slots` cache slots beyond the prompt."""

    def __call__(self, model: LanguageModel, ids: jax.Array, positions: jax.Array, mask: jax.Array,
                 cache: Any, hook_inputs: Any, /) -> Prefilled:
        """model: the LM (merged inside the jit); ids [B, P] int32, the left-padded prompt; positions [B, P]
        int32 (a row's left pads share its first token's position); mask [B, P] bool, True on real tokens;
        cache: the model's decode cache, the prompt to be written from cache.index on; hook_inputs: generate's
        `hook_inputs` pytree (traced) or None."""
        ...


@dataclasses.dataclass
class GenerateOutput:
    tokens: np.ndarray     # [B, N] new tokens; positions after a row stopped hold pad_token_id
    lengths: np.ndarray    # [B] number of new tokens per row (the stop token included)
    finished: np.ndarray   # [B] whether the row emitted a stop token
    # [B, N] float32 log-prob of each new token under the policy, log_softmax(raw logits / temperature)
    # (temperature 1 when greedy), before the hook and top-k / top-p filtering: the quantity an RL update
    # recomputes from a forward pass (`jaxsuite.rl.scoring`). 0 after a row stopped. None unless asked for.
    logprobs: np.ndarray | None = None
    # what a prefill hook reported (e.g. latent reasoning's steps per row), as numpy arrays
    extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    # the decode cache after the call (device arrays), when a cache was given or return_cache=True: the prompt
    # and the new tokens but the last one of each row (a row's stop token and the pads after it are written as
    # invalid slots: a continuation feeds that last token first and attends to no padding)
    cache: Any = None

    def sequences(self) -> list[list[int]]:
        """The new tokens of each row, without the padding after a stop."""
        return [row[:n].tolist() for row, n in zip(self.tokens, self.lengths)]


def _bucket(n: int, minimum: int = 16) -> int:
    return max(minimum, 1 << (max(n, 1) - 1).bit_length())


def left_pad(input_ids: Any, attention_mask: Any | None, pad_token_id: int, bucket: bool = True):
    """Normalises a batch of prompts to left padding: returns (ids [B, P], mask [B, P]) numpy int32.

    `input_ids` is a [B, P] array (with `attention_mask` 1 for real tokens, any padding side) or a list of
    token lists of different lengths.
    """
    if isinstance(input_ids, (list, tuple)) and input_ids and not np.isscalar(input_ids[0]):
        rows = [np.asarray(r, np.int32).reshape(-1) for r in input_ids]
        if attention_mask is not None:
            raise ValueError("attention_mask must be None when input_ids is a list of token lists")
    else:
        ids = np.asarray(input_ids)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2:
            raise ValueError(f"input_ids must be [batch, length], got shape {ids.shape}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"input_ids must be integers, got dtype {ids.dtype}")
        mask = np.ones_like(ids, bool) if attention_mask is None else np.asarray(attention_mask).astype(bool)
        if mask.shape != ids.shape:
            raise ValueError(f"attention_mask shape {mask.shape} does not match input_ids shape {ids.shape}")
        rows = [row[m] for row, m in zip(ids.astype(np.int32), mask)]
    if any(len(r) == 0 for r in rows):
        raise ValueError("every prompt needs at least one token")
    length = max(len(r) for r in rows)
    width = _bucket(length) if bucket else length
    out_ids = np.full((len(rows), width), pad_token_id, np.int32)
    out_mask = np.zeros((len(rows), width), np.int32)
    for i, r in enumerate(rows):
        out_ids[i, width - len(r):] = r
        out_mask[i, width - len(r):] = 1
    return out_ids, out_mask


def sample_logits(logits: jax.Array, rng: jax.Array, *, greedy: bool, temperature: jax.Array,
                  top_k: int, top_p: jax.Array) -> jax.Array:
    """Picks one token per row from logits [B, V]: argmax, or temperature / top-k / top-p sampling."""
    if greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / jnp.maximum(temperature, 1e-6)
    if top_k > 0:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]                       # [B, 1]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    # nucleus: keep the smallest set of tokens whose probability mass reaches top_p (at least one)
    sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]                      # [B, V] descending
    cum = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
    keep = cum - jax.nn.softmax(sorted_logits, axis=-1) < top_p             # mass before this token < p
    cutoff = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


def _policy_logprob(logits: jax.Array, token: jax.Array, temperature: jax.Array) -> jax.Array:
    """log_softmax(logits / T)[token] per row: logits [B, V], token [B] -> [B] float32."""
    scaled = logits.astype(jnp.float32) / jnp.maximum(temperature, 1e-6)
    return jnp.take_along_axis(jax.nn.log_softmax(scaled, axis=-1), token[:, None], axis=-1)[:, 0]


def _mesh_of(state, mesh=None, rules=None) -> tuple[Any, Any] | None:
    """(mesh, rules) to shard generation's rows over: the caller's `mesh` (with its `rules`, default the default
    rules), else the sharding context in force, else the mesh the model's parameters live on (with the default
    rules), else None (one device: a one-device mesh has nothing to split)."""
    from jaxsuite.core import sharding as shd
    if mesh is not None:
        # rules_from_config validates the axis names and makes nested lists hashable (the jit's static argument)
        return (mesh, shd.rules_from_config(shd.DEFAULT_RULES if rules is None else rules)) if mesh.size > 1 else None
    if rules is not None:
        raise ValueError("rules without a mesh: pass mesh= with the rules it shards by")
    context = shd.current_sharding()
    if context is not None:
        return context
    for leaf in jax.tree.leaves(state):
        sharding = getattr(leaf, "sharding", None)
        if isinstance(sharding, jax.sharding.NamedSharding) and sharding.mesh.size > 1:
            return sharding.mesh, tuple(shd.DEFAULT_RULES)
    return None


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "greedy", "top_k", "stop_tokens",
                                             "pad_token_id", "logits_processor", "cache_dtype", "prefill_hook",
                                             "extra_cache_slots", "with_logprobs", "return_cache", "sharding"),
                   donate_argnames=("cache",))
def _generate_jit(graphdef, state, ids, mask, rng, temperature, top_p, hook_inputs, cache, start_positions, *,
                  max_new_tokens: int, greedy: bool, top_k: int, stop_tokens: tuple[int, ...], pad_token_id: int,
                  logits_processor: LogitsProcessor | None, cache_dtype, prefill_hook: PrefillHook | None,
                  extra_cache_slots: int, with_logprobs: bool, return_cache: bool, sharding=None):
    """Returns (tokens [B, N], lengths [B], finished [B], logprobs [B, N], extras, cache or None).

    cache is None (a fresh one is made) or the cache to continue, with start_positions [B] int32 the position of
    each row's first prompt token. `sharding` (mesh, rules) shards the rows (and so the cache) over the mesh's
    batch axes: traced under it, the model's own activation and cache constraints apply.
    """
    if sharding is None:
        return _generate_body(graphdef, state, ids, mask, rng, temperature, top_p, hook_inputs, cache,
                              start_positions, max_new_tokens, greedy, top_k, stop_tokens, pad_token_id,
                              logits_processor, cache_dtype, prefill_hook, extra_cache_slots, with_logprobs,
                              return_cache)
    from jaxsuite.core import sharding as shd
    with shd.use_sharding(*sharding):
        ids, mask = shd.constrain(ids, ("act_batch", None)), shd.constrain(mask, ("act_batch", None))
        return _generate_body(graphdef, state, ids, mask, rng, temperature, top_p, hook_inputs, cache,
                              start_positions, max_new_tokens, greedy, top_k, stop_tokens, pad_token_id,
                              logits_processor, cache_dtype, prefill_hook, extra_cache_slots, with_logprobs,
                              return_cache)


def _generate_body(graphdef, state, ids, mask, rng, temperature, top_p, hook_inputs, cache, start_positions,
                   max_new_tokens, greedy, top_k, stop_tokens, pad_token_id, logits_processor, cache_dtype,
                   prefill_hook, extra_cache_slots, with_logprobs, return_cache):
    model = nnx.merge(graphdef, state)
    batch, prompt_len = ids.shape
    fresh = cache is None
    if fresh:
        cache = model.init_cache(batch, prompt_len + extra_cache_slots + max_new_tokens, dtype=cache_dtype)
        start_positions = jnp.zeros((batch,), jnp.int32)
    positions = start_positions[:, None] + jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0).astype(jnp.int32)  # [B, P]
    if prefill_hook is None:
        # logits of the last prompt token only: the prompt's full [B, P, V] float32 logits would be the largest
        # buffer of a long-prompt, large-vocabulary prefill (the unused ones are dropped from the program)
        _, cache, hidden = model.decode(ids, positions, cache, token_mask=mask.astype(bool), fresh=fresh,
                                        return_hidden=True)
        logits, next_pos, extras = model.logits(hidden[:, -1:])[:, 0], positions[:, -1] + 1, {}
    else:
        logits, cache, next_pos, extras = prefill_hook(model, ids, positions, mask.astype(bool), cache,
                                                       hook_inputs)
    stops = jnp.asarray(stop_tokens if stop_tokens else (-1,), jnp.int32)

    def pick(logits_bv, generated, step, rng):
        if logits_processor is not None:
            logits_bv = logits_processor(logits_bv, generated, step)
        return sample_logits(logits_bv, rng, greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p)

    policy_t = jnp.where(greedy, 1.0, temperature)   # the log-probs of greedy decoding are at temperature 1

    def token_logprob(logits_bv, token):   # a log_softmax over the vocabulary per step, only when asked for
        return _policy_logprob(logits_bv, token, policy_t) if with_logprobs else jnp.zeros(token.shape, jnp.float32)
    generated = jnp.full((batch, max_new_tokens), pad_token_id, jnp.int32)    # [B, N]
    logprobs = jnp.zeros((batch, max_new_tokens), jnp.float32)                 # [B, N]
    rng, sub = jax.random.split(rng)
    token = pick(logits, generated, jnp.int32(0), sub)                          # [B]
    generated = generated.at[:, 0].set(token)
    logprobs = logprobs.at[:, 0].set(token_logprob(logits, token))
    done = jnp.isin(token, stops)

    def cond(carry):
        step, _, _, done, _, _, _, _ = carry
        return (step < max_new_tokens) & ~jnp.all(done)

    def body(carry):
        # A row's stop token and the pads after it are written as invalid slots (and leave a recurrent mixer's
        # state alone): every row's cache then holds its prompt and its new tokens but the last, whether it
        # stopped first or last, so a conversation resumes from it by feeding that last token first.
        step, token, cache, done, generated, logprobs, pos, rng = carry
        logits, cache = model.decode(token[:, None], pos[:, None], cache, token_mask=~done[:, None])  # [B, 1, V]
        rng, sub = jax.random.split(rng)
        new = pick(logits[:, 0], generated, step, sub)
        logp = jnp.where(done, 0.0, token_logprob(logits[:, 0], new))
        new = jnp.where(done, pad_token_id, new)
        generated = jax.lax.dynamic_update_slice(generated, new[:, None], (0, step))
        logprobs = jax.lax.dynamic_update_slice(logprobs, logp[:, None], (0, step))
        done = done | jnp.isin(new, stops)
        return step + 1, new, cache, done, generated, logprobs, pos + 1, rng

    carry = (jnp.int32(1), token, cache, done, generated, logprobs, next_pos, rng)
    _, _, cache, done, generated, logprobs, _, _ = jax.lax.while_loop(cond, body, carry)
    is_stop = jnp.isin(generated, stops)
    first_stop = jnp.argmax(is_stop, axis=1)
    lengths = jnp.where(done, first_stop + 1, max_new_tokens)
    return generated, lengths, done, logprobs, extras, (cache if return_cache else None)


def _check_hook(name: str, hook: Any) -> None:
    if hook is None:
        return
    if not callable(hook):
        raise TypeError(f"{name} must be callable, got {type(hook).__name__}")
    try:
        hash(hook)
    except TypeError as e:
        raise TypeError(f"{name} must be hashable (generate's jit keys on it): use a module-level function or "
                        f"a functools.partial built once") from e


def _continuation(cache: Any, positions: Any, batch: int, need: int) -> jax.Array:
    """Checks that `cache` fits `batch` rows and `need` more slots; returns the rows' start positions [B]."""
    rows, index, max_length = cache.valid.shape[0], int(cache.index), int(cache.max_length)
    if rows != batch:
        raise ValueError(f"the cache holds {rows} rows but the prompt batch has {batch}")
    if index + need > max_length:
        raise ValueError(f"the cache has {max_length - index} free slots (index {index} of {max_length}); this "
                         f"call writes {need} (prompt width + extra_cache_slots + max_new_tokens - 1)")
    if positions is None:       # a row's positions count its real tokens: its valid slots
        return jnp.sum(cache.valid, axis=1, dtype=jnp.int32)
    positions = jnp.asarray(positions, jnp.int32)
    if positions.shape != (batch,):
        raise ValueError(f"positions must be [batch] = ({batch},), got shape {positions.shape}")
    return positions


def generate(model: LanguageModel, input_ids: Any, max_new_tokens: int, *, attention_mask: Any | None = None,
             temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0,
             stop_tokens: int | Sequence[int] | None = None, seed: int = 0, pad_token_id: int | None = None,
             logits_processor: LogitsProcessor | None = None, cache_dtype: Any = None,
             return_logprobs: bool = False, prefill_hook: PrefillHook | None = None, hook_inputs: Any = None,
             extra_cache_slots: int = 0, cache: Any = None, positions: Any = None,
             return_cache: bool = False, split: tuple[Any, Any] | None = None, mesh: Any = None,
             rules: Any = None) -> GenerateOutput:
    """Generates up to `max_new_tokens` tokens for each prompt of a batch.

    Args:
      model: a jaxsuite LM (`jaxsuite.models.LanguageModel`: `init_cache`, `decode`, and a `config` whose
             eos / pad / vocab ids give defaults).
      input_ids: [B, P] prompt ids (left- or right-padded, with `attention_mask`), or a list of token lists.
      max_new_tokens: N, the most tokens sampled per row (>= 1).
      temperature: 0 means greedy decoding; otherwise softmax sampling at this temperature.
      top_p, top_k: nucleus and top-k filtering (1.0 / 0 disable them).
      stop_tokens: token id(s) that end a row (default: the model config's eos_token_id; () never stops). The
        stop token is included in the output; later positions hold `pad_token_id`.
      seed: sampling seed (ignored when greedy).
      pad_token_id: fills prompt padding and the positions after a stop (default: the config's pad_token_id,
        else the first stop token, else 0).
      logits_processor: optional `LogitsProcessor` hook, traced into the loop.
      cache_dtype: dtype of a fresh cache (default: the model's compute dtype).
      return_logprobs: also return each new token's log-prob under the policy (see GenerateOutput.logprobs),
        as RL rollouts need.
      prefill_hook: optional `PrefillHook` replacing the prompt prefill; `hook_inputs` (a pytree of arrays,
        traced) is passed to it, and `extra_cache_slots` cache slots are reserved for it. Latent reasoning
        (jaxsuite.latent) thinks here before the answer is sampled.
      cache: a decode cache to continue instead of a fresh one (e.g. GenerateOutput.cache of an earlier call,
        or one filled by `model.decode`). It needs P + extra_cache_slots + N - 1 free slots after cache.index,
        it is donated (do not use it after the call), and the continued cache is returned in
        GenerateOutput.cache. `cache_dtype` does not apply.
      positions: with `cache`, [B] the position of each row's first prompt token (default: the number of
        valid slots of the row, i.e. of real tokens it has seen).
      return_cache: also return the final cache of a fresh start (always returned when `cache` is given).
      split: `nnx.split(model)` when the caller holds it already and the model has not changed since: skips
        splitting again on every call (a host-side graph walk of a few ms, which loops of short calls such as
        a decode benchmark would otherwise time).
      mesh, rules: the job's device mesh and logical-axis rules to split the rows (and so the cache) by. A job
        passes its own, so that custom rules also govern sampling; without them, the sharding context in force
        (`jaxsuite.core.sharding.use_sharding`), else the mesh the weights live on with the default rules.
    Returns a GenerateOutput: tokens [B, N], lengths [B], finished [B], logprobs [B, N] or None, the prefill
    hook's extras, and the cache when asked for.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if positions is not None and cache is None:
        raise ValueError("positions continue a given cache: pass cache= as well")
    _check_hook("logits_processor", logits_processor)
    _check_hook("prefill_hook", prefill_hook)
    cfg = getattr(model, "config", None)
    if stop_tokens is None:
        eos = getattr(cfg, "eos_token_id", None)
        stop_tokens = () if eos is None else eos
    stop_tokens = (int(stop_tokens),) if np.isscalar(stop_tokens) else tuple(int(t) for t in stop_tokens)
    if pad_token_id is None:
        pad_token_id = getattr(cfg, "pad_token_id", None)
        pad_token_id = stop_tokens[0] if pad_token_id is None and stop_tokens else (pad_token_id or 0)
    vocab = getattr(cfg, "vocab_size", None)
    ids, mask = left_pad(input_ids, attention_mask, pad_token_id, bucket=cache is None)
    if vocab is not None and (ids.min() < 0 or ids.max() >= vocab):
        raise ValueError(f"input_ids contain ids outside [0, {vocab}) (min {ids.min()}, max {ids.max()})")
    start_positions = None
    if cache is not None:
        start_positions = _continuation(cache, positions, ids.shape[0],
                                        ids.shape[1] + int(extra_cache_slots) + int(max_new_tokens) - 1)
        return_cache = True          # the given cache is donated: its continuation is what the caller keeps
    graphdef, state = nnx.split(model) if split is None else split
    tokens, lengths, done, logprobs, extras, cache = _generate_jit(
        graphdef, state, jnp.asarray(ids), jnp.asarray(mask), jax.random.key(seed),
        jnp.float32(temperature), jnp.float32(top_p), hook_inputs, cache, start_positions,
        max_new_tokens=int(max_new_tokens), greedy=temperature == 0.0, top_k=int(top_k), stop_tokens=stop_tokens,
        pad_token_id=int(pad_token_id), logits_processor=logits_processor, cache_dtype=cache_dtype,
        prefill_hook=prefill_hook, extra_cache_slots=int(extra_cache_slots), with_logprobs=bool(return_logprobs),
        return_cache=bool(return_cache), sharding=_mesh_of(state, mesh, rules))
    return GenerateOutput(np.asarray(tokens), np.asarray(lengths), np.asarray(done),
                          np.asarray(logprobs) if return_logprobs else None,
                          {k: np.asarray(v) for k, v in extras.items()}, cache)


def generate_program(model: LanguageModel, batch: int, prompt_len: int, max_new_tokens: int, *, mesh=None,
                     rules=None, greedy: bool = False, top_k: int = 0, stop_tokens: Sequence[int] = (),
                     pad_token_id: int = 0, with_logprobs: bool = False, logits_processor=None,
                     prefill_hook=None, hook_inputs=None, extra_cache_slots: int = 0, name: str = "generate"):
    """The program `generate` compiles for a fresh start at this shape, with abstract arguments, for
    `--compile_only` (jaxsuite.core.aot). `model` may be abstract (nnx.eval_shape); with `mesh` its state
    carries the shardings of `rules`, as a model placed on that mesh would. The hooks are generate's own
    (`hook_inputs`: ShapeDtypeStructs with the batch dimension first)."""
    from jaxsuite.core import sharding as shd
    from jaxsuite.core.aot import Program, abstract

    graphdef, state = nnx.split(model)
    if mesh is not None:
        state = abstract(state, shd.state_shardings(state, mesh, shd.DEFAULT_RULES if rules is None else rules))
    prompt = _bucket(prompt_len)
    ids = jax.ShapeDtypeStruct((batch, prompt), jnp.int32)
    mask = jax.ShapeDtypeStruct((batch, prompt), jnp.int32)
    rng = jax.eval_shape(lambda: jax.random.key(0))
    scalar = jax.ShapeDtypeStruct((), jnp.float32)
    static = dict(max_new_tokens=int(max_new_tokens), greedy=bool(greedy), top_k=int(top_k),
                  stop_tokens=tuple(int(t) for t in stop_tokens), pad_token_id=int(pad_token_id),
                  logits_processor=logits_processor, cache_dtype=None, prefill_hook=prefill_hook,
                  extra_cache_slots=int(extra_cache_slots), with_logprobs=bool(with_logprobs), return_cache=False,
                  sharding=None if mesh is None else (mesh, tuple(shd.DEFAULT_RULES if rules is None else rules)))
    note = f"prefill {batch} x {prompt} + {max_new_tokens} decode steps (the loop body is counted once)"
    if prefill_hook is not None:
        note += f", up to {int(extra_cache_slots)} hook slots"
    return Program(name, _generate_jit, (graphdef, state, ids, mask, rng, scalar, scalar, hook_inputs, None, None),
                   note, static)
