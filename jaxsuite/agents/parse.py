"""Assistant output -> content, reasoning and tool calls, as AgentCPM's RL reads it.

The rules (../shared/reference/agents-runtime.md): reasoning is what precedes the last `</think>` (a leading
`<think>` optional: Thinking-2507 models omit it); tool calls are the `<tool_call>...</tool_call>` blocks after
it, each a JSON object `{"name": ..., "arguments": {...}}`, parsed strictly, then with json5 (single quotes,
trailing commas, comments), then after brace repair (cut at the first balanced object, close what is left
open); a `<code>...</code>` block inside a call becomes `arguments["code"]`. A call that still does not parse is
a FormatError in `ParsedTurn.errors`: the episode shows it to the model as an observation and RL can give that
turn no credit. The final answer is the last `<answer>...</answer>` block.
"""
from __future__ import annotations

import dataclasses
import json
import re
import uuid
from typing import Any

from jaxsuite.core.extras import require
from jaxsuite.agents.chat import THINK_CLOSE, THINK_OPEN, TOOL_CALL_CLOSE, TOOL_CALL_OPEN

_TOOL_CALL = re.compile(re.escape(TOOL_CALL_OPEN) + r"\s*(.*?)\s*" + re.escape(TOOL_CALL_CLOSE), re.S)
_UNCLOSED_CALL = re.compile(re.escape(TOOL_CALL_OPEN) + r"\s*(.*)$", re.S)
_CODE = re.compile(r"<code>(.*?)</code>", re.S)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)


@dataclasses.dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = ""

    def to_openai(self) -> dict:
        """The OpenAI message form: arguments as a JSON string."""
        return {"id": self.id or new_call_id(), "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)}}


@dataclasses.dataclass(frozen=True)
class FormatError:
    """A tool call the model wrote that could not be read: the raw text and why."""
    raw: str
    reason: str

    def observation(self) -> str:
        return (f"Format error: could not parse the tool call ({self.reason}). Write each call as "
                f'<tool_call>\n{{"name": "<tool name>", "arguments": {{...}}}}\n</tool_call>')


@dataclasses.dataclass(frozen=True)
class ParsedTurn:
    content: str                      # the text after the reasoning, tool-call blocks removed
    reasoning: str | None             # the text inside <think>...</think>, None without a think block
    tool_calls: tuple[ToolCall, ...]
    errors: tuple[FormatError, ...]
    answer: str | None                # the last <answer>...</answer>, stripped

    @property
    def has_format_error(self) -> bool:
        return bool(self.errors)

    def to_message(self) -> dict:
        """The assistant message an OpenAI-style history stores for this turn."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.reasoning is not None:
            message["reasoning_content"] = self.reasoning
        if self.tool_calls:
            message["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        return message


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def _scan_object(text: str) -> tuple[int, int | None, str]:
    """One pass over `text` from its first `{`, outside strings: (that start or -1, the index of the brace that
    closes it or None, the quote and closers a cut-off object still needs)."""
    start = text.find("{")
    if start < 0:
        return -1, None, ""
    stack, in_string, escaped, end = [], None, False, None
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == in_string:
                in_string = None
        elif ch in "\"'":
            in_string = ch
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
            if not stack:
                end = i
                break
    return start, end, (in_string or "") + "".join(reversed(stack))


def _loads_lenient(text: str) -> tuple[Any, str | None]:
    """(value, None) from strict JSON, then json5, then brace repair; (None, reason) when all fail."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as e:
        reason = f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}"
    require("json5", extra="agents", for_="jaxsuite.agents (tool-call parsing)")
    import json5
    start, end, missing = _scan_object(text)
    candidates = [text]
    if end is not None and text[start:end + 1] != text:
        candidates.append(text[start:end + 1])                   # the first whole object, trailing junk cut
    elif start >= 0:
        candidates.append(text[start:] + missing)                # an object cut off: close what is open
    for candidate in candidates:
        try:
            return json5.loads(candidate), None
        except ValueError:
            continue
    return None, reason


def parse_tool_call(raw: str) -> ToolCall | FormatError:
    """One `<tool_call>` body -> ToolCall, or FormatError saying what is wrong."""
    code = _CODE.search(raw)
    body = _CODE.sub('""', raw) if code else raw       # code may hold braces and quotes that break the JSON
    value, reason = _loads_lenient(body)
    if reason is not None:
        return FormatError(raw, reason)
    if not isinstance(value, dict):
        return FormatError(raw, f"expected a JSON object, got {type(value).__name__}")
    name = value.get("name")
    if not isinstance(name, str) or not name:
        return FormatError(raw, 'no "name" string')
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):              # some models double-encode the arguments
        arguments, reason = _loads_lenient(arguments) if arguments.strip() else ({}, None)
        if reason is not None:
            return FormatError(raw, f"arguments: {reason}")
    if not isinstance(arguments, dict):
        return FormatError(raw, f'"arguments" must be an object, got {type(arguments).__name__}')
    if code:
        arguments = {**arguments, "code": code.group(1).strip("\n")}
    return ToolCall(name, arguments, id=new_call_id())


def split_reasoning(text: str) -> tuple[str | None, str]:
    """(reasoning, rest): reasoning is what precedes the last `</think>`, its `<think>` optional."""
    if THINK_CLOSE not in text:
        return None, text
    head, _, rest = text.rpartition(THINK_CLOSE)
    reasoning = head.split(THINK_OPEN, 1)[1] if THINK_OPEN in head else head
    return reasoning.strip("\n"), rest.lstrip("\n")


def parse_assistant(text: str) -> ParsedTurn:
    """Reads one assistant turn's text (the tokens the model wrote, decoded, end-of-turn marker removed)."""
    reasoning, rest = split_reasoning(text)
    calls: list[ToolCall] = []
    errors: list[FormatError] = []
    bodies = _TOOL_CALL.findall(rest)
    content = _TOOL_CALL.sub("", rest)
    if (unclosed := _UNCLOSED_CALL.search(content)) is not None:     # cut off before </tool_call>
        bodies.append(unclosed.group(1))
        content = content[:unclosed.start()]
    for body in bodies:
        parsed = parse_tool_call(body)
        (calls if isinstance(parsed, ToolCall) else errors).append(parsed)
    answers = _ANSWER.findall(rest)
    return ParsedTurn(content=content.strip(), reasoning=reasoning, tool_calls=tuple(calls),
                      errors=tuple(errors), answer=answers[-1].strip() if answers else None)
