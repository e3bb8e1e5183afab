"""Environments: a task, tools, a system prompt, budgets and a reward; the episode record they produce.

An `Environment` is what a multi-turn rollout (jaxsuite.agents.rollout) plays against: it gives the opening
messages for a task, executes tool calls through its Toolbox, and scores the finished episode. `Budget` caps
an episode on every axis the collaboration-gain metric accounts for (turns, tokens in and out, model calls,
tool calls, wall time); `EpisodeStats` counts them, and the episode stops with `stop_reason` naming the cap.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

from jaxsuite.agents.parse import ParsedTurn
from jaxsuite.agents.tools import Toolbox

STOP_REASONS = ("answered", "length", "max_turns", "max_tokens", "max_tool_calls", "max_seconds", "context",
                "repetition")


@dataclasses.dataclass(frozen=True)
class Task:
    id: str
    question: str
    answer: Any = None                              # the reference the reward checks against
    metadata: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Budget:
    max_turns: int = 8                  # assistant turns (model calls) per episode
    max_new_tokens: int = 256           # per turn
    max_tokens_out: int = 4096          # model tokens over the episode
    max_tokens_in: int = 32768          # tokens fed to the model: the prompt and every observation
    max_tool_calls: int = 32
    max_seconds: float = 600.0
    max_repeats: int = 4                # identical assistant turns in a row that end the episode (AgentCPM: 4)

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if getattr(self, field.name) <= 0:
                raise ValueError(f"Budget.{field.name} must be > 0, got {getattr(self, field.name)}")


@dataclasses.dataclass
class EpisodeStats:
    tokens_in: int = 0
    tokens_out: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    format_errors: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)
    seconds: float = 0.0

    def over(self, budget: Budget) -> str | None:
        """The first budget this episode has spent, or None."""
        self.seconds = time.monotonic() - self.started
        if self.model_calls >= budget.max_turns:
            return "max_turns"
        if self.tokens_out >= budget.max_tokens_out or self.tokens_in >= budget.max_tokens_in:
            return "max_tokens"
        if self.tool_calls >= budget.max_tool_calls:
            return "max_tool_calls"
        if self.seconds >= budget.max_seconds:
            return "max_seconds"
        return None

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "started"}


def exact_match_reward(task: Task, answer: str | None, episode: Any = None) -> float:
    """1.0 when the final answer equals the task's answer after case and whitespace folding, else 0.0."""
    if answer is None or task.answer is None:
        return 0.0
    fold = lambda s: " ".join(str(s).lower().split()).strip(" .")
    return float(fold(answer) == fold(task.answer))


DEFAULT_SYSTEM_PROMPT = ("You are a research assistant. Use the tools to find facts you do not know. When you "
                         "have the answer, reply with it inside <answer></answer>.")


@dataclasses.dataclass
class Environment:
    toolbox: Toolbox
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    reward_fn: Callable[[Task, str | None, Any], float] = exact_match_reward
    budget: Budget = dataclasses.field(default_factory=Budget)
    enable_thinking: bool = False

    def initial_messages(self, task: Task) -> list[dict]:
        return [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": task.question}]

    @property
    def tools(self) -> list[dict]:
        return self.toolbox.schemas

    def observations(self, turn: ParsedTurn) -> list[dict]:
        """The tool messages answering one assistant turn: each call's result, and each unreadable call as a
        format-error observation (the model sees it; RL can give the turn no credit)."""
        messages = []
        results = self.toolbox.call_all(list(turn.tool_calls))
        for call, result in zip(turn.tool_calls, results):
            messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": result.text,
                             "error": result.error})
        for error in turn.errors:
            messages.append({"role": "tool", "name": "format_error", "content": error.observation(),
                             "error": "format_error"})
        return messages

    def reward(self, task: Task, answer: str | None, episode: Any = None) -> float:
        return float(self.reward_fn(task, answer, episode))


def tool_messages_for_template(messages: Sequence[dict]) -> list[dict]:
    """Tool messages without the runtime's bookkeeping keys (chat templates read role and content only)."""
    return [{k: v for k, v in m.items() if k != "error"} for m in messages]
