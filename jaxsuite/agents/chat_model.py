"""One chat interface for an in-process jaxsuite model and for any OpenAI-compatible endpoint.

    model = LocalChatModel.from_folder("runs/sft/hf")                 # or LocalChatModel(lm, fmt, name=...)
    model = OpenAIChatModel("http://host:8000/v1", model="qwen3-8b")  # a served model, ours or another server
    [result] = model.complete([ChatRequest(messages, tools=tools, temperature=0.0)])
    result.choices[0].message   # {"role": "assistant", "content": ..., "tool_calls": [...]}

`LocalChatModel.complete` batches requests with the same sampling settings into one `jaxsuite.generate` call
(the OpenAI server below runs concurrent clients' requests through it), renders with the model's chat format,
and parses the output into content, reasoning and tool calls. Log-probs are the sampled tokens' under the
sampling temperature (as RL reads them); `top_logprobs` come from one extra forward pass at temperature 1.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from jaxsuite.agents.chat import TOOL_CALL_OPEN, ChatFormat, ChatTemplateError, validate_messages
from jaxsuite.agents.parse import parse_assistant


class RequestError(ValueError):
    """A request the model cannot serve; `kind` and `param` become the OpenAI error's type/code and param."""

    def __init__(self, message: str, *, code: str = "invalid_request", param: str | None = None,
                 status: int = 400):
        super().__init__(message)
        self.code, self.param, self.status = code, param, status


@dataclasses.dataclass(frozen=True)
class ChatRequest:
    messages: Sequence[dict]
    tools: Sequence[dict] | None = None
    tool_choice: Any = "auto"            # "auto" | "none" | "required" | {"type": "function", "function": {"name"}}
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: Sequence[str] = ()
    n: int = 1
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    enable_thinking: bool = True


@dataclasses.dataclass
class Choice:
    message: dict
    finish_reason: str                   # stop | length | tool_calls
    token_ids: list[int]
    logprobs: list[float] | None = None
    top_logprobs: list[list[tuple[int, float]]] | None = None


@dataclasses.dataclass
class ChatResult:
    choices: list[Choice]
    prompt_tokens: int
    completion_tokens: int


class ChatModel(Protocol):
    name: str

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResult]: ...


def check_request(request: ChatRequest) -> None:
    """Raises RequestError naming the first bad field."""
    try:
        validate_messages(request.messages)
    except ChatTemplateError as e:
        raise RequestError(str(e), param="messages") from None
    if not 0.0 <= request.temperature <= 2.0:
        raise RequestError(f"temperature must be in [0, 2], got {request.temperature}", param="temperature")
    if not 0.0 < request.top_p <= 1.0:
        raise RequestError(f"top_p must be in (0, 1], got {request.top_p}", param="top_p")
    if request.max_tokens < 1:
        raise RequestError(f"max_tokens must be >= 1, got {request.max_tokens}", param="max_tokens")
    if not 1 <= request.n <= 64:
        raise RequestError(f"n must be in [1, 64], got {request.n}", param="n")
    if not 0 <= request.top_logprobs <= 20:
        raise RequestError(f"top_logprobs must be in [0, 20], got {request.top_logprobs}", param="top_logprobs")
    choice = request.tool_choice
    names = {t.get("function", {}).get("name") for t in request.tools or []}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name not in names:
            raise RequestError(f"tool_choice names {name!r}, which is not among the tools", param="tool_choice")
    elif choice not in ("auto", "none", "required"):
        raise RequestError(f"tool_choice must be auto, none, required or a named function, got {choice!r}",
                           param="tool_choice")
    elif choice == "required" and not names:
        raise RequestError("tool_choice is 'required' but no tools were given", param="tool_choice")


def power_of_two_at_least(n: int) -> int:
    """The batch size a batch of n rows is padded to: a few shapes, so a few compilations."""
    return 1 << max(n - 1, 0).bit_length()


class LocalChatModel:
    """A jaxsuite LM behind the chat interface."""

    def __init__(self, model, fmt: ChatFormat, *, name: str = "jaxsuite", max_context: int | None = None,
                 logits_processor=None):
        """logits_processor: a `jaxsuite.generate.LogitsProcessor` applied to every request (constrained
        decoding, e.g. a grammar); reported log-probs stay the model's own."""
        self.model, self.fmt, self.name, self.logits_processor = model, fmt, name, logits_processor
        self.max_context = int(max_context or getattr(model.config, "max_position_embeddings", 4096))
        self.stop_id = fmt.end_of_turn_id
        eos = getattr(model.config, "eos_token_id", None)
        self.stop_ids = tuple(sorted({i for i in (self.stop_id, eos, getattr(fmt.tokenizer, "eos_id", None))
                                      if isinstance(i, int)}))

    @classmethod
    def from_folder(cls, folder: str | Path, *, name: str | None = None, dtype=None) -> "LocalChatModel":
        """A Hugging Face folder (config.json + safetensors + tokenizer), or a job's workdir holding one in hf/."""
        import jax.numpy as jnp

        from jaxsuite.core.tokenizer import load_tokenizer
        from jaxsuite.hf import load_pretrained
        folder = Path(folder)
        if not (folder / "config.json").is_file() and (folder / "hf" / "config.json").is_file():
            folder = folder / "hf"
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: not a model folder (no config.json, nor hf/config.json)")
        model = load_pretrained(str(folder), dtype=dtype or jnp.float32)
        tokenizer = load_tokenizer(str(folder))
        return cls(model, ChatFormat.for_folder(folder, tokenizer), name=name or folder.resolve().name)

    # -- prompts
    def _prompt(self, request: ChatRequest) -> tuple[list[int], str]:
        """(prompt ids, the text pre-filled into the answer for tool_choice required / named)."""
        tools = None if request.tool_choice == "none" else (list(request.tools) if request.tools else None)
        ids = self.fmt.encode(request.messages, tools, add_generation_prompt=True,
                              enable_thinking=request.enable_thinking)
        prefill = ""
        if isinstance(request.tool_choice, dict):
            prefill = f'{TOOL_CALL_OPEN}\n{{"name": "{request.tool_choice["function"]["name"]}", "arguments": '
        elif request.tool_choice == "required":
            prefill = TOOL_CALL_OPEN + "\n"
        if prefill:
            ids = ids + self.fmt.encode_text(prefill)
        if len(ids) + request.max_tokens > self.max_context:
            raise RequestError(f"this model's maximum context length is {self.max_context} tokens; the messages "
                               f"take {len(ids)} and max_tokens asks for {request.max_tokens} more",
                               code="context_length_exceeded", param="messages")
        return ids, prefill

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """Serves requests; those with equal sampling settings share one generate call."""
        prepared = []
        for r in requests:
            check_request(r)
            prepared.append(self._prompt(r))
        results: list[ChatResult | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for k, r in enumerate(requests):
            groups.setdefault((r.temperature, r.top_p, r.max_tokens, r.seed), []).append(k)
        for (temperature, top_p, max_tokens, seed), members in groups.items():
            rows = [prepared[k][0] for k in members for _ in range(requests[k].n)]
            outputs = self._generate(rows, temperature, top_p, max_tokens, seed or 0)
            start = 0
            for k in members:
                r, (ids, prefill) = requests[k], prepared[k]
                choices = [self._choice(r, prefill, *outputs[start + j]) for j in range(r.n)]
                if r.top_logprobs:
                    self._add_top_logprobs(ids, choices, r.top_logprobs)
                start += r.n
                results[k] = ChatResult(choices, len(ids), sum(len(c.token_ids) for c in choices))
        return results

    def _generate(self, rows, temperature, top_p, max_tokens, seed):
        from jaxsuite.generate import generate
        real = len(rows)
        rows = rows + [rows[0]] * (power_of_two_at_least(real) - real)        # a few batch shapes: a few compilations
        out = generate(self.model, rows, max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                       stop_tokens=self.stop_ids, return_logprobs=True, logits_processor=self.logits_processor,
                       pad_token_id=getattr(self.fmt.tokenizer, "pad_id", None))
        return [(out.tokens[i, :out.lengths[i]].tolist(), bool(out.finished[i]),
                 out.logprobs[i, :out.lengths[i]].tolist()) for i in range(real)]

    def _choice(self, request: ChatRequest, prefill: str, tokens: list[int], finished: bool,
                logprobs: list[float]) -> Choice:
        content_ids = [t for t in tokens if t not in self.stop_ids]
        text = prefill + self.fmt.tokenizer.decode(content_ids)
        finish = "stop" if finished else "length"
        for s in request.stop:                               # stop strings: cut at the first one
            at = text.find(s, len(prefill))
            if at >= 0:
                text, finish = text[:at], "stop"
        parsed = parse_assistant(text)
        message: dict[str, Any] = {"role": "assistant", "content": parsed.content or None}
        if parsed.reasoning is not None:
            message["reasoning_content"] = parsed.reasoning
        if parsed.tool_calls and request.tool_choice != "none":
            message["tool_calls"] = [c.to_openai() for c in parsed.tool_calls]
            finish = "tool_calls" if finish == "stop" else finish
        elif message["content"] is None:
            message["content"] = ""
        return Choice(message, finish, tokens, logprobs if request.logprobs else None)

    def _add_top_logprobs(self, prompt: list[int], choices: list[Choice], k: int) -> None:
        """The k most likely tokens at each sampled position, from a forward pass (temperature 1)."""
        import jax
        import jax.numpy as jnp
        for choice in choices:
            seq = prompt + choice.token_ids
            logits = self.model(jnp.asarray([seq[:-1]], jnp.int32),
                                positions=jnp.arange(len(seq) - 1, dtype=jnp.int32)[None])      # [1, T, V]
            logp = jax.nn.log_softmax(logits[0, len(prompt) - 1:].astype(jnp.float32), axis=-1)  # [N, V]
            values, ids = jax.lax.top_k(logp, k)
            choice.top_logprobs = [list(zip(map(int, i), map(float, v)))
                                   for i, v in zip(np.asarray(ids), np.asarray(values))]


class OpenAIChatModel:
    """An OpenAI-compatible endpoint (`base_url` ending in /v1) behind the same interface, over httpx."""

    def __init__(self, base_url: str, *, model: str, api_key: str = "none", timeout: float = 600.0):
        import httpx
        self.name = model
        self._client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                    headers={"Authorization": f"Bearer {api_key}"})

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        return [self._one(r) for r in requests]

    def _one(self, r: ChatRequest) -> ChatResult:
        body = {"model": self.name, "messages": list(r.messages), "temperature": r.temperature, "top_p": r.top_p,
                "max_tokens": r.max_tokens, "n": r.n, "logprobs": r.logprobs}
        if r.tools:
            body["tools"], body["tool_choice"] = list(r.tools), r.tool_choice
        if r.stop:
            body["stop"] = list(r.stop)
        if r.seed is not None:
            body["seed"] = r.seed
        if r.top_logprobs:
            body["top_logprobs"] = r.top_logprobs
        if not r.enable_thinking:       # vLLM's (and our server's) way to pass template options
            body["chat_template_kwargs"] = {"enable_thinking": False}
        response = self._client.post("/chat/completions", json=body)
        data = response.json()
        if response.status_code != 200:
            err = data.get("error", {}) if isinstance(data, dict) else {}
            raise RequestError(err.get("message", response.text), code=err.get("code") or "server_error",
                               param=err.get("param"), status=response.status_code)
        choices = []
        for c in data["choices"]:
            message = {k: v for k, v in c["message"].items() if v is not None or k == "content"}
            content = (c.get("logprobs") or {}).get("content") or []
            choices.append(Choice(message, c["finish_reason"], [],
                                  [t["logprob"] for t in content] if r.logprobs else None))
        usage = data.get("usage") or {}
        return ChatResult(choices, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))

    def close(self) -> None:
        self._client.close()


def logprob_or_floor(x: float) -> float:
    """JSON has no -inf: a log-prob of an impossible token is reported as the float32 floor."""
    return x if math.isfinite(x) else -3.4e38
