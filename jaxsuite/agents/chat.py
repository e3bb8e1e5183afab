"""Conversations as OpenAI-style message lists, rendered to the model's prompt text and tokens.

A message is a dict, as the OpenAI chat API and transformers' `apply_chat_template` take it:

    {"role": "system" | "user", "content": str}
    {"role": "assistant", "content": str, "reasoning_content": str (optional),
     "tool_calls": [{"id": str, "type": "function", "function": {"name": str, "arguments": dict | JSON str}}]}
    {"role": "tool", "content": str, "tool_call_id": str (optional), "name": str (optional)}

Two renderers give the same text for Qwen3-family models:
- `JinjaTemplate`: the tokenizer's own chat template (`chat_template` in tokenizer_config.json, or a
  `chat_template.jinja` file), rendered in the sandboxed Jinja environment transformers uses, with the same
  `tojson`, `raise_exception` and `strftime_now`, so any HF model's template works without transformers.
- `render_qwen3`: the Qwen3 template written out in Python, for tokenizers without a template (our
  SentencePiece models) and as a readable statement of the format: tools inside `<tools>` in the system turn,
  `<tool_call>` JSON blocks, consecutive tool messages merged into one user turn of `<tool_response>` blocks,
  `<think>` kept only for assistant turns after the last real user query, and `enable_thinking=False`
  pre-filling an empty think block.
tests/agents/test_chat.py checks both against transformers' rendering of the real Qwen3 template, token for token.
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

Message = dict[str, Any]

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE = "<tool_response>", "</tool_response>"
# The markers a tokenizer should hold as single tokens for this format (Qwen's vocabulary does).
SPECIAL_MARKERS = (IM_START, IM_END, THINK_OPEN, THINK_CLOSE, TOOL_CALL_OPEN, TOOL_CALL_CLOSE,
                   TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE)

ROLES = ("system", "user", "assistant", "tool")


class ChatTemplateError(ValueError):
    """A message list the format cannot render, or a template that fails; the message says which."""


def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    """JSON as chat templates print it (transformers' override of Jinja's HTML-escaping `tojson`)."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def validate_messages(messages: Sequence[Message]) -> list[Message]:
    """Checks the shape of a message list; raises ChatTemplateError naming the first bad message."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ChatTemplateError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ChatTemplateError(f"messages[{i}]: role must be one of {ROLES}, got {m!r:.120}")
        content = m.get("content")
        if content is not None and not isinstance(content, str):
            raise ChatTemplateError(f"messages[{i}]: content must be a string or null, got {type(content).__name__}")
        if m["role"] != "assistant" and content is None:
            raise ChatTemplateError(f"messages[{i}]: a {m['role']} message needs content")
        for j, call in enumerate(m.get("tool_calls") or []):
            fn = call.get("function", call) if isinstance(call, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise ChatTemplateError(f"messages[{i}].tool_calls[{j}]: needs function.name, got {call!r:.120}")
    return list(messages)


# ----------------------------------------------------------------------------------------------------------
# The Qwen3 format in Python
# ----------------------------------------------------------------------------------------------------------
_TOOLS_HEADER = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                 "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
_TOOLS_FOOTER = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments "
                 "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
                 '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' + IM_END + "\n")


def _is_tool_response_text(text: str) -> bool:
    return text.startswith(TOOL_RESPONSE_OPEN) and text.endswith(TOOL_RESPONSE_CLOSE)


def _last_query_index(messages: Sequence[Message]) -> int:
    """The last user message that is a real query (not tool output pasted as a user turn); thinking is kept
    only for the assistant turns after it."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m["role"] == "user" and isinstance(m.get("content"), str) and not _is_tool_response_text(m["content"]):
            return i
    return len(messages) - 1


def _split_think(content: str, reasoning: Any) -> tuple[str, str]:
    """(reasoning, answer): from `reasoning_content` when given, else from a `<think>...</think>` in content."""
    if isinstance(reasoning, str):
        return reasoning, content
    if THINK_CLOSE in content:
        before, after = content.split(THINK_CLOSE)[0], content.split(THINK_CLOSE)[-1]
        return before.rstrip("\n").split(THINK_OPEN)[-1].lstrip("\n"), after.lstrip("\n")
    return "", content


def format_tool_call(call: dict) -> str:
    """One `<tool_call>` block; arguments as given when already a JSON string, else serialised."""
    fn = call.get("function") or call
    args = fn.get("arguments", {})
    args_text = args if isinstance(args, str) else tojson(args)
    return f'{TOOL_CALL_OPEN}\n{{"name": "{fn["name"]}", "arguments": {args_text}}}\n{TOOL_CALL_CLOSE}'


def render_qwen3(messages: Sequence[Message], tools: Sequence[dict] | None = None, *,
                 add_generation_prompt: bool = False, enable_thinking: bool = True) -> str:
    """The Qwen3 chat format of `messages` (and `tools`, OpenAI function schemas) as prompt text."""
    messages = validate_messages(messages)
    out: list[str] = []
    has_system = messages[0]["role"] == "system"
    if tools:
        out.append(IM_START + "system\n")
        if has_system:
            out.append(messages[0]["content"] + "\n\n")
        out.append(_TOOLS_HEADER + "".join("\n" + tojson(t) for t in tools) + _TOOLS_FOOTER)
    elif has_system:
        out.append(f"{IM_START}system\n{messages[0]['content']}{IM_END}\n")
    last_query = _last_query_index(messages)
    for i, m in enumerate(messages):
        role, content = m["role"], m.get("content") if isinstance(m.get("content"), str) else ""
        if role == "user" or (role == "system" and i > 0):
            out.append(f"{IM_START}{role}\n{content}{IM_END}\n")
        elif role == "assistant":
            reasoning, content = _split_think(content, m.get("reasoning_content"))
            keeps_thinking = i > last_query and (i == len(messages) - 1 or reasoning)
            if keeps_thinking:
                out.append(f"{IM_START}assistant\n{THINK_OPEN}\n{reasoning.strip(chr(10))}\n{THINK_CLOSE}\n\n"
                           + content.lstrip("\n"))
            else:
                out.append(f"{IM_START}assistant\n{content}")
            for j, call in enumerate(m.get("tool_calls") or []):
                if j > 0 or content:
                    out.append("\n")
                out.append(format_tool_call(call))
            out.append(IM_END + "\n")
        elif role == "tool":
            if i == 0 or messages[i - 1]["role"] != "tool":
                out.append(IM_START + "user")
            out.append(f"\n{TOOL_RESPONSE_OPEN}\n{content}\n{TOOL_RESPONSE_CLOSE}")
            if i == len(messages) - 1 or messages[i + 1]["role"] != "tool":
                out.append(IM_END + "\n")
    if add_generation_prompt:
        out.append(IM_START + "assistant\n")
        if not enable_thinking:
            out.append(f"{THINK_OPEN}\n\n{THINK_CLOSE}\n\n")
    return "".join(out)


# ----------------------------------------------------------------------------------------------------------
# A tokenizer's own template
# ----------------------------------------------------------------------------------------------------------
class JinjaTemplate:
    """A Hugging Face chat template, rendered as transformers renders it (sandboxed Jinja, trim_blocks,
    lstrip_blocks, its `tojson`, `raise_exception` and `strftime_now`)."""

    def __init__(self, source: str, *, special_tokens: dict[str, str] | None = None):
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=["jinja2.ext.loopcontrols"])
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateError as e:
            raise ChatTemplateError(f"chat template does not compile: {e}") from None
        self.source = source
        self.special_tokens = dict(special_tokens or {})     # bos_token, eos_token, ... as templates read them

    def __call__(self, messages: Sequence[Message], tools: Sequence[dict] | None = None, *,
                 add_generation_prompt: bool = False, **kwargs) -> str:
        import jinja2
        messages = validate_messages(messages)
        try:
            return self._template.render(messages=messages, tools=list(tools) if tools else None,
                                         add_generation_prompt=add_generation_prompt,
                                         **self.special_tokens, **kwargs)
        except jinja2.TemplateError as e:
            raise ChatTemplateError(f"chat template failed: {e}") from None

    @classmethod
    def from_folder(cls, folder: str | Path) -> "JinjaTemplate | None":
        """The template a HF tokenizer folder carries (chat_template.jinja, else tokenizer_config.json's
        `chat_template`), or None when it has none."""
        folder = Path(folder)
        config = {}
        if (folder / "tokenizer_config.json").is_file():
            try:
                config = json.loads((folder / "tokenizer_config.json").read_text())
            except json.JSONDecodeError as e:
                raise ChatTemplateError(f"{folder / 'tokenizer_config.json'}: invalid JSON ({e})") from None
        specials = {k: v.get("content") if isinstance(v, dict) else v for k, v in config.items()
                    if k.endswith("_token") and isinstance(v, (str, dict))}
        if (folder / "chat_template.jinja").is_file():
            return cls((folder / "chat_template.jinja").read_text(), special_tokens=specials)
        source = config.get("chat_template")
        if isinstance(source, list):       # named templates: [{"name": "default", "template": ...}, ...]
            source = next((t["template"] for t in source if t.get("name") == "default"), None)
        return cls(source, special_tokens=specials) if isinstance(source, str) else None


class Renderer(Protocol):
    def __call__(self, messages: Sequence[Message], tools: Sequence[dict] | None = None, *,
                 add_generation_prompt: bool = False, **kwargs) -> str: ...


class ChatFormat:
    """Messages -> prompt text -> token ids for one tokenizer, and the ids of the markers generation stops on.

    renderer: a JinjaTemplate (the tokenizer's own) or `render_qwen3` (the default). Marker strings such as
    `<|im_end|>` become their single token where the tokenizer has them (HF Qwen vocabularies, our
    SentencePiece models trained with them as user symbols); elsewhere they are encoded as plain text.
    """

    def __init__(self, tokenizer, renderer: Renderer | Callable[..., str] | None = None):
        self.tokenizer = tokenizer
        self.renderer = renderer or render_qwen3
        lookup = getattr(tokenizer, "token_to_id", None)
        self.marker_ids = {m: lookup(m) for m in SPECIAL_MARKERS} if lookup else {}
        self.marker_ids = {m: i for m, i in self.marker_ids.items() if i is not None}

    @classmethod
    def for_folder(cls, folder: str | Path, tokenizer) -> "ChatFormat":
        """The folder's own chat template when it has one, else the built-in Qwen3 format."""
        return cls(tokenizer, JinjaTemplate.from_folder(folder) if Path(folder).is_dir() else None)

    def render(self, messages: Sequence[Message], tools: Sequence[dict] | None = None, *,
               add_generation_prompt: bool = False, enable_thinking: bool = True) -> str:
        return self.renderer(messages, tools, add_generation_prompt=add_generation_prompt,
                             enable_thinking=enable_thinking)

    def encode_text(self, text: str) -> list[int]:
        """Token ids of rendered text: markers the tokenizer holds as single tokens map to them, the rest is
        encoded as text (what a tokenizer with those added tokens does)."""
        if not self.marker_ids:
            return list(self.tokenizer.encode(text))
        ids: list[int] = []
        pos = 0
        while pos < len(text):
            hits = [(text.find(m, pos), m) for m in self.marker_ids]
            hits = [(at, m) for at, m in hits if at >= 0]
            if not hits:
                ids += self.tokenizer.encode(text[pos:])
                break
            at, marker = min(hits, key=lambda h: (h[0], -len(h[1])))
            if at > pos:
                ids += self.tokenizer.encode(text[pos:at])
            ids.append(self.marker_ids[marker])
            pos = at + len(marker)
        return ids

    def encode(self, messages: Sequence[Message], tools: Sequence[dict] | None = None, *,
               add_generation_prompt: bool = False, enable_thinking: bool = True) -> list[int]:
        return self.encode_text(self.render(messages, tools, add_generation_prompt=add_generation_prompt,
                                            enable_thinking=enable_thinking))

    @property
    def end_of_turn_id(self) -> int | None:
        """The id that ends an assistant turn (`<|im_end|>`), or the tokenizer's EOS without one."""
        return self.marker_ids.get(IM_END, getattr(self.tokenizer, "eos_id", None))
