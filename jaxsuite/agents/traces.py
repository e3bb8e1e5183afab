"""Episodes over a ChatModel (any endpoint), and traces: one JSON line per episode, readable and replayable.

`run_chat_episodes` plays the same environments as `rollout.run_episodes`, message by message through the
`ChatModel` interface, so an evaluation runs unchanged against the in-process model or a served one (ours, or
any OpenAI-compatible server). It keeps no token record (nothing to train on), only messages and counts.

A trace line holds the task, the messages (tool messages with the tool's name, its arguments and the error
kind, if any), the stop reason, the answer, the reward and the budget counts. `render_trace` prints it as a
transcript; `replay_trace` calls every recorded tool call again and lists where an observation differs, which
is how a test (or a person) checks that an environment is deterministic and that a trace is complete.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Iterable, Sequence

from etils import epath

from jaxsuite.agents.chat_model import ChatModel, ChatRequest
from jaxsuite.agents.environment import Budget, Environment, EpisodeStats, Task, tool_messages_for_template
from jaxsuite.agents.parse import ToolCall, parse_assistant
from jaxsuite.core.files import iter_jsonl_objects


@dataclasses.dataclass
class ChatEpisode:
    task: Task
    messages: list[dict]
    stats: EpisodeStats
    answer: str | None = None
    reward: float | None = None
    stop_reason: str | None = None
    format_errors_per_turn: list[bool] = dataclasses.field(default_factory=list)


def run_chat_episodes(model: ChatModel, env: Environment, tasks: Sequence[Task], *, n: int = 1,
                      temperature: float = 0.0, seed: int | None = None,
                      budget: Budget | None = None) -> list[ChatEpisode]:
    """Plays `n` episodes per task; each turn sends every live episode's request in one `complete` call."""
    budget = budget or env.budget
    episodes = [ChatEpisode(task, env.initial_messages(task), EpisodeStats()) for task in tasks for _ in range(n)]
    while live := [ep for ep in episodes if ep.stop_reason is None]:
        requests = [ChatRequest(tool_messages_for_template(ep.messages), tools=env.tools or None,
                                temperature=temperature, max_tokens=budget.max_new_tokens,
                                seed=None if seed is None else seed + k, enable_thinking=env.enable_thinking)
                    for k, ep in enumerate(live)]
        results = model.complete(requests)
        for ep, result in zip(live, results):
            choice = result.choices[0]
            ep.stats.model_calls += 1
            ep.stats.tokens_in += result.prompt_tokens
            ep.stats.tokens_out += result.completion_tokens
            message = {k: v for k, v in choice.message.items() if v is not None}
            text = message.get("content") or ""
            parsed = parse_assistant(text)            # calls the endpoint left unparsed in the content
            calls = [ToolCall(c["function"]["name"], _arguments(c), c.get("id", "")) for c in
                     message.get("tool_calls") or []] or list(parsed.tool_calls)
            errors = list(parsed.errors)
            ep.format_errors_per_turn.append(bool(errors))
            ep.stats.format_errors += len(errors)
            ep.messages.append(message)
            if choice.finish_reason == "length":
                ep.stop_reason = "length"
            elif not calls and not errors:
                ep.answer, ep.stop_reason = (parsed.answer if parsed.answer is not None else parsed.content,
                                             "answered")
            elif (reason := ep.stats.over(budget)) is not None:
                ep.stop_reason = reason
            else:
                observations = env.observations(dataclasses.replace(parsed, tool_calls=tuple(calls)))
                ep.stats.tool_calls += len(calls)
                ep.stats.tool_errors += sum(m.get("error") not in (None, "format_error") for m in observations)
                ep.messages.extend(observations)
                if (reason := ep.stats.over(budget)) is not None:
                    ep.stop_reason = reason
    for ep in episodes:
        ep.stats.over(budget)
        ep.reward = env.reward(ep.task, ep.answer, ep)
    return episodes


def _arguments(call: dict) -> dict:
    args = call["function"].get("arguments") or {}
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            args = {"__unparsed__": args}
    return args


def trace_record(episode) -> dict:
    """One JSON-able record of an episode (token-level `rollout.Episode` or `ChatEpisode`)."""
    calls_by_id = {}
    for m in episode.messages:
        for c in m.get("tool_calls") or []:
            calls_by_id[c.get("id")] = c
    messages = []
    for m in episode.messages:
        m = dict(m)
        if m["role"] == "tool" and m.get("tool_call_id") in calls_by_id:
            m["arguments"] = _arguments(calls_by_id[m["tool_call_id"]])
        messages.append(m)
    return {"task": dataclasses.asdict(episode.task), "stop_reason": episode.stop_reason, "answer": episode.answer,
            "reward": episode.reward, "stats": episode.stats.to_dict(), "messages": messages}


def write_trace(path: str | epath.PathLike, episodes: Iterable, *, append: bool = False) -> None:
    """Writes (or appends) one line per episode; a fresh file is written whole, then renamed into place."""
    path = epath.Path(path)
    lines = "".join(json.dumps(trace_record(ep), ensure_ascii=False, default=str) + "\n" for ep in episodes)
    path.parent.mkdir(parents=True, exist_ok=True)
    if append and path.exists():
        lines = path.read_text() + lines
    tmp = path.parent / (path.name + ".tmp")
    tmp.write_text(lines)
    tmp.replace(path)


def read_trace(path: str | epath.PathLike) -> list[dict]:
    return [record for _, record in iter_jsonl_objects(path)]


def render_trace(record: dict, *, max_chars: int = 600) -> str:
    """A transcript a person reads: each message, tool calls with their arguments, the outcome."""
    def cut(text: str) -> str:
        text = text or ""
        return text if len(text) <= max_chars else text[:max_chars] + f" [... {len(text) - max_chars} chars]"
    lines = [f"# task {record['task']['id']}: {record['task']['question']}"]
    for m in record["messages"]:
        if m["role"] == "assistant":
            if m.get("reasoning_content"):
                lines.append(f"[assistant thinks] {cut(m['reasoning_content'])}")
            if m.get("content"):
                lines.append(f"[assistant] {cut(m['content'])}")
            for c in m.get("tool_calls") or []:
                lines.append(f"[call] {c['function']['name']}({c['function']['arguments']})")
        elif m["role"] == "tool":
            flag = f" ({m['error']})" if m.get("error") else ""
            lines.append(f"[{m.get('name', 'tool')}{flag}] {cut(m['content'])}")
        else:
            lines.append(f"[{m['role']}] {cut(m['content'])}")
    stats = record["stats"]
    lines.append(f"=> {record['stop_reason']}; answer {record['answer']!r}; reward {record['reward']}; "
                 f"{stats['model_calls']} model calls, {stats['tool_calls']} tool calls, "
                 f"{stats['tokens_in']} tokens in, {stats['tokens_out']} out, {stats['seconds']:.2f} s")
    return "\n".join(lines)


def replay_trace(record: dict, env: Environment) -> list[dict]:
    """Calls every recorded tool call again; returns the observations that differ (empty: it replays)."""
    differences = []
    for k, m in enumerate(record["messages"]):
        if m["role"] != "tool" or m.get("error") == "format_error" or "arguments" not in m:
            continue
        result = env.toolbox.call(ToolCall(m["name"], m["arguments"]))
        if result.text != m["content"]:
            differences.append({"message": k, "tool": m["name"], "recorded": m["content"], "replayed": result.text})
    return differences

