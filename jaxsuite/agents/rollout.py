"""Multi-turn episodes, batched through `jaxsuite.generate`, with the token record RL trains on.

    episodes = run_episodes(model, fmt, env, tasks, n=4, temperature=1.0, seed=0)
    batch = pack_episodes(episodes, advantages, seq_len=1024, pad_id=...)      # whole trajectories
    batch = pack_turns(episodes, advantages, seq_len=1024, pad_id=...)         # one row per turn (AgentCPM)

How a rollout runs
  * Every live episode is a row of one decode cache (`model.init_cache(rows, context)`); each turn is ONE
    `generate` call over the live rows, continuing the cache: the prompt is prefilled once, and a turn feeds
    only what is new (the previous turn's end-of-turn token, the tool responses, the next assistant header).
  * Between turns the tools run for all episodes at once (the Toolbox's thread pool; code in the sandbox pool).
  * Finished episodes drop out: the cache rows of the live ones are gathered into a batch padded to a power of
    two (copies of a live row, discarded), so a rollout compiles the decode loop for a few batch sizes only.
  * The cache is shared by slot index, so it must hold the longest turn's width every turn: `context` caps the
    slots; an episode that would overflow stops with `stop_reason="context"`.

What an episode records (`Episode.segments`): the prompt, each turn's sampled tokens with the sampler's
log-probs, and each observation, in order; `trainable` is True on the model's own tokens only, so the loss
mask excludes prompts and tool outputs. The tokens are exactly what the model saw and sampled (never
re-tokenised text), so an update's recomputed log-probs match the sampler's.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.agents.chat import IM_END, ChatFormat, ChatTemplateError
from jaxsuite.agents.chat_model import power_of_two_at_least
from jaxsuite.agents.environment import Budget, Environment, EpisodeStats, Task, tool_messages_for_template
from jaxsuite.agents.parse import parse_assistant
from jaxsuite.generate import generate
from jaxsuite.rl.rollout import pack_rl_batch


@dataclasses.dataclass
class Segment:
    tokens: list[int]
    trainable: bool                          # the model's own tokens (an assistant turn)
    logprobs: list[float] | None = None      # the sampler's, for trainable segments


@dataclasses.dataclass
class Episode:
    task: Task
    messages: list[dict]                     # the conversation, OpenAI style (tool messages carry `error`)
    segments: list[Segment]
    stats: EpisodeStats
    answer: str | None = None
    reward: float | None = None
    stop_reason: str | None = None
    turn_texts: list[str] = dataclasses.field(default_factory=list)   # each assistant turn as decoded
    turn_format_error: list[bool] = dataclasses.field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    @property
    def tokens(self) -> list[int]:
        return [t for s in self.segments for t in s.tokens]

    @property
    def num_turns(self) -> int:
        return sum(s.trainable for s in self.segments)

    def loss_mask(self) -> np.ndarray:
        """[len(tokens)] 1.0 on the model's own tokens."""
        return np.concatenate([np.full(len(s.tokens), float(s.trainable), np.float32) for s in self.segments])

    def sampler_logprobs(self) -> np.ndarray:
        """[len(tokens)] the sampler's log-prob on the model's tokens, 0 elsewhere."""
        return np.concatenate([np.asarray(s.logprobs, np.float32) if s.trainable else
                               np.zeros(len(s.tokens), np.float32) for s in self.segments])


def _gather_rows(cache: Any, rows: Sequence[int]) -> Any:
    """The cache of the given rows only: every leaf with a batch dimension is indexed on it (the scalar slot
    index is shared)."""
    index = jnp.asarray(rows, jnp.int32)
    return jax.tree.map(lambda x: jnp.take(x, index, axis=0) if getattr(x, "ndim", 0) > 0 else x, cache)


def turn_delta(fmt: ChatFormat, history: list[dict], new_messages: list[dict], *, enable_thinking: bool,
               tools: list[dict] | None) -> str:
    """The text between the end-of-turn marker that closed the last assistant turn and the next assistant turn's
    first sampled token: the template's rendering of `new_messages` and the generation prompt.

    Read off the template's rendering of the whole conversation, after as many end-of-turn markers as the
    history's rendering has, so any template works (the tokenizer's own or the built-in one), including
    Qwen3's, which renders a final assistant turn differently (an empty think block) from the same turn
    followed by tool responses: only the text after the turn is taken from the rendering, never the turn."""
    closed = fmt.render(history, tools).count(IM_END)
    after = fmt.render(history + new_messages, tools, add_generation_prompt=True, enable_thinking=enable_thinking)
    cut = -len(IM_END)
    for _ in range(closed):
        cut = after.find(IM_END, cut + len(IM_END))
        if cut < 0:
            raise ChatTemplateError("the chat template drops turns when a conversation grows, so a multi-turn "
                                    "rollout cannot continue its cache; render with the built-in format")
    return after[cut + len(IM_END):]


def run_episodes(model, fmt: ChatFormat, env: Environment, tasks: Sequence[Task], *, n: int = 1,
                 temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, context: int = 2048,
                 budget: Budget | None = None, logits_processor=None, mesh=None, rules=None) -> list[Episode]:
    """Plays `n` episodes per task (rows task-major) to the end; returns them with rewards.

    context: cache slots per row (the prompt, every turn and observation, plus the padding that aligns rows).
    logits_processor: a `jaxsuite.generate.LogitsProcessor` (constrained decoding); the recorded log-probs are
    the policy's own, before it, as an update recomputes them.
    mesh, rules: the job's, which split the rows over the devices (see `jaxsuite.generate`)."""
    budget = budget or env.budget
    stop = fmt.end_of_turn_id
    if stop is None:
        raise ValueError("the tokenizer has no end-of-turn token (<|im_end|>) and no EOS: turns cannot end")
    pad = getattr(fmt.tokenizer, "pad_id", None)
    pad = stop if pad is None else pad
    tools = env.tools or None
    episodes: list[Episode] = []
    for task in tasks:
        for _ in range(n):
            messages = env.initial_messages(task)
            prompt = fmt.encode(messages, tools, add_generation_prompt=True, enable_thinking=env.enable_thinking)
            stats = EpisodeStats(tokens_in=len(prompt))
            episodes.append(Episode(task, messages, [Segment(prompt, False)], stats))
    pending = {i: ep.segments[0].tokens for i, ep in enumerate(episodes)}   # row -> tokens to feed next
    rows = list(range(len(episodes)))                                       # episode of each cache row
    cache = model.init_cache(power_of_two_at_least(len(rows)), context)
    turn = 0
    while pending:
        live = [i for i in rows if i in pending]
        if len(live) < len(rows):        # drop finished episodes' rows; pad to a bucket with copies of a live one
            keep = [rows.index(i) for i in live]
            keep += [keep[0]] * (power_of_two_at_least(len(keep)) - len(keep))
            cache = _gather_rows(cache, keep)
            rows = live
        feed = [pending[i] for i in rows] + [pending[rows[0]]] * (cache.valid.shape[0] - len(rows))
        width = max(map(len, feed))
        if int(cache.index) + width + budget.max_new_tokens - 1 > context:
            for i in rows:
                episodes[i].stop_reason = "context"
            break
        out = generate(model, feed, budget.max_new_tokens, temperature=temperature, top_p=top_p,
                       stop_tokens=(stop,), seed=seed * 1_000_003 + turn, pad_token_id=pad, return_logprobs=True,
                       cache=cache, logits_processor=logits_processor, mesh=mesh, rules=rules)
        cache, turn = out.cache, turn + 1
        pending = {}
        finished_turns = []
        for row, i in enumerate(rows):
            ep = episodes[i]
            tokens = out.tokens[row, :out.lengths[row]].tolist()
            ep.segments.append(Segment(tokens, True, out.logprobs[row, :out.lengths[row]].tolist()))
            ep.stats.model_calls += 1
            ep.stats.tokens_out += len(tokens)
            text = fmt.tokenizer.decode([t for t in tokens if t != stop])
            ep.turn_texts.append(text)
            parsed = parse_assistant(text)
            ep.turn_format_error.append(parsed.has_format_error)
            ep.stats.format_errors += len(parsed.errors)
            ep.messages.append(parsed.to_message())
            if not out.finished[row]:
                ep.stop_reason = "length"
            elif not parsed.tool_calls and not parsed.errors:
                ep.answer, ep.stop_reason = (parsed.answer if parsed.answer is not None else parsed.content,
                                             "answered")
            elif len(ep.turn_texts) >= budget.max_repeats and len(set(ep.turn_texts[-budget.max_repeats:])) == 1:
                ep.stop_reason = "repetition"
            elif (reason := ep.stats.over(budget)) is not None:     # no further turn: its tools need not run
                ep.stop_reason = reason
            else:
                finished_turns.append((i, parsed))
        # the tools of every continuing episode, run together
        for i, parsed in finished_turns:
            ep = episodes[i]
            observations = env.observations(parsed)
            ep.stats.tool_calls += len(parsed.tool_calls)
            ep.stats.tool_errors += sum(m.get("error") not in (None, "format_error") for m in observations)
            history = tool_messages_for_template(ep.messages)
            delta = turn_delta(fmt, history, tool_messages_for_template(observations),
                               enable_thinking=env.enable_thinking, tools=tools)
            ep.messages.extend(observations)
            delta_ids = fmt.encode_text(delta)
            ep.segments.append(Segment(delta_ids, False))
            ep.stats.tokens_in += len(delta_ids)
            reason = ep.stats.over(budget)
            if reason is not None:
                ep.stop_reason = reason
            else:
                pending[i] = [stop] + delta_ids     # the end-of-turn token was sampled but is not in the cache
    for ep in episodes:
        ep.stats.over(budget)                       # final wall time
        ep.reward = env.reward(ep.task, ep.answer, ep)
    return episodes


def pack_episodes(episodes: Sequence[Episode], advantages: Sequence[float], *, seq_len: int, pad_id: int,
                  rows: int | None = None) -> dict[str, np.ndarray]:
    """Whole trajectories as RL rows [rows, seq_len - 1]: inputs, targets, positions, loss_mask (the model's own
    tokens only), advantages (each episode's, on its trainable tokens), old_logprobs (the sampler's)."""
    n = len(episodes)
    rows = n if rows is None else rows
    width = seq_len - 1
    out = {"inputs": np.full((rows, width), pad_id, np.int32), "targets": np.full((rows, width), pad_id, np.int32),
           "positions": np.tile(np.arange(width, dtype=np.int32), (rows, 1)),
           "loss_mask": np.zeros((rows, width), np.float32), "advantages": np.zeros((rows, width), np.float32),
           "old_logprobs": np.zeros((rows, width), np.float32)}
    for r, (ep, adv) in enumerate(zip(episodes, advantages)):
        tokens = np.asarray(ep.tokens, np.int32)
        if len(tokens) > seq_len:
            raise ValueError(f"episode {r} has {len(tokens)} tokens, more than seq_len={seq_len}")
        m = len(tokens) - 1
        out["inputs"][r, :m], out["targets"][r, :m] = tokens[:-1], tokens[1:]
        mask = ep.loss_mask()[1:]                       # target t is token t + 1
        out["loss_mask"][r, :m] = mask
        out["advantages"][r, :m] = mask * float(adv)
        out["old_logprobs"][r, :m] = ep.sampler_logprobs()[1:]
    return out


def pack_turns(episodes: Sequence[Episode], advantages: Sequence[float], *, seq_len: int, pad_id: int,
               skip_format_errors: bool = True) -> tuple[dict[str, np.ndarray], list[tuple[int, int]]]:
    """One RL row per assistant turn, its context as the prompt, carrying its episode's advantage (AgentCPM's
    layout). A turn with a format error gets advantage 0 when `skip_format_errors`. Returns the batch and the
    (episode, turn) of each row."""
    prompts, responses, advs, index = [], [], [], []
    for e, (ep, adv) in enumerate(zip(episodes, advantages)):
        context: list[int] = []
        t = 0
        for seg in ep.segments:
            if seg.trainable:
                bad = skip_format_errors and ep.turn_format_error[t]
                prompts.append(list(context))
                responses.append(list(seg.tokens))
                advs.append(0.0 if bad else float(adv))
                index.append((e, t))
                t += 1
            context += seg.tokens
    return pack_rl_batch(prompts, responses, advs, seq_len=seq_len, pad_id=pad_id), index


def summarize(episodes: Sequence[Episode]) -> dict[str, float]:
    """Success rate, format-error rate (per turn), turns, tool calls and tokens per episode, stop reasons."""
    n = max(len(episodes), 1)
    turns = sum(ep.num_turns for ep in episodes)
    reasons: dict[str, int] = {}
    for ep in episodes:
        reasons[ep.stop_reason] = reasons.get(ep.stop_reason, 0) + 1
    return {"episodes": len(episodes),
            "success_rate": sum((ep.reward or 0.0) > 0.5 for ep in episodes) / n,
            "mean_reward": sum(ep.reward or 0.0 for ep in episodes) / n,
            "format_error_rate": sum(sum(ep.turn_format_error) for ep in episodes) / max(turns, 1),
            "turns_per_episode": turns / n,
            "tool_calls_per_episode": sum(ep.stats.tool_calls for ep in episodes) / n,
            "tokens_out_per_episode": sum(ep.stats.tokens_out for ep in episodes) / n,
            "stop_reasons": reasons}
