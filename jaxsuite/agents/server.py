"""An OpenAI-compatible chat server over a ChatModel: `/v1/chat/completions` and `/v1/models`.

    python -m jaxsuite.serve --model runs/sft/hf --port 8000
    client = openai.OpenAI(base_url="http://localhost:8000/v1", api_key="none")
    client.chat.completions.create(model="hf", messages=[...], tools=[...], stream=True)

Concurrent requests are batched: handlers put requests on a queue; one batcher thread takes what has arrived
within `batch_window_ms` (up to `max_batch_rows` sampled rows) and serves it with one `ChatModel.complete`
call, so concurrent clients share the decode loop. Streaming follows the OpenAI wire format (server-sent
events, `data: {...}` chunks, `data: [DONE]`); the chunks are sent when the row's decode finishes, since the
decode loop is one compiled program (the first chunk arrives with the last). Bad requests get OpenAI-style
errors (`{"error": {"message", "type", "param", "code"}}`, HTTP 4xx), never a crash.
"""
# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at definition time,
# and they name classes imported inside make_app.
import asyncio
import concurrent.futures
import contextlib
import json
import queue
import re
import sys
import threading
import time
import uuid
from typing import Any

from jaxsuite.agents.chat_model import ChatModel, ChatRequest, ChatResult, RequestError, logprob_or_floor


def error_body(message: str, *, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class Batcher:
    """Collects requests from many threads into `ChatModel.complete` calls on one worker thread."""

    def __init__(self, model: ChatModel, *, max_batch_rows: int = 16, batch_window_ms: float = 5.0):
        self.model, self.max_rows, self.window = model, max_batch_rows, batch_window_ms / 1000.0
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="chat-batcher", daemon=True)
        self._stopped = False
        self.batches: list[int] = []           # requests per complete() call (served statistics)
        self._thread.start()

    def submit(self, request: ChatRequest) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((request, future))
        return future

    def _loop(self) -> None:
        while not self._stopped:
            first = self._queue.get()
            if first is None:
                return
            batch, rows = [first], first[0].n
            deadline = time.monotonic() + self.window
            while rows < self.max_rows:
                try:
                    item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
                except queue.Empty:
                    break
                if item is None:
                    self._stopped = True
                    break
                batch.append(item)
                rows += item[0].n
            self._serve(batch)

    def _serve(self, batch) -> None:
        self.batches.append(len(batch))
        try:
            results = self.model.complete([r for r, _ in batch])
        except RequestError:
            if len(batch) > 1:              # one bad request fails alone, not its batch: serve them one by one
                for item in batch:
                    self._serve([item])
                return
            results = None
            error = sys.exc_info()[1]
        except Exception as e:              # noqa: BLE001 - handed to the waiting requests
            results, error = None, e
        for i, (_, future) in enumerate(batch):
            if results is None:
                future.set_exception(error)
            else:
                future.set_result(results[i])

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)


def _parse_request(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    if "messages" not in body:
        raise RequestError("'messages' is required", param="messages")
    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else tuple(stop)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens")) or 256
    temperature = body.get("temperature")
    try:
        return ChatRequest(messages=body["messages"], tools=body.get("tools"),
                           tool_choice=body.get("tool_choice") or "auto",
                           temperature=1.0 if temperature is None else float(temperature),
                           top_p=float(body.get("top_p") or 1.0), max_tokens=int(max_tokens), stop=stop,
                           n=int(body.get("n") or 1), seed=body.get("seed"), logprobs=bool(body.get("logprobs")),
                           top_logprobs=int(body.get("top_logprobs") or 0),
                           enable_thinking=bool((body.get("chat_template_kwargs") or {}).get("enable_thinking",
                                                                                             True)))
    except (TypeError, ValueError) as e:
        raise RequestError(f"malformed request: {e}") from None


def _logprobs_block(tokenizer, choice) -> dict | None:
    if choice.logprobs is None:
        return None
    content = []
    for k, (token, lp) in enumerate(zip(choice.token_ids, choice.logprobs)):
        text = tokenizer.decode([token])
        tops = (choice.top_logprobs or [[]] * len(choice.token_ids))[k]
        content.append({"token": text, "logprob": logprob_or_floor(lp), "bytes": list(text.encode()),
                        "top_logprobs": [{"token": tokenizer.decode([t]), "logprob": logprob_or_floor(v),
                                          "bytes": list(tokenizer.decode([t]).encode())} for t, v in tops]})
    return {"content": content}


def completion_body(model_name: str, result: ChatResult, tokenizer) -> dict:
    return {"id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion", "created": int(time.time()),
            "model": model_name,
            "choices": [{"index": i, "message": c.message, "finish_reason": c.finish_reason,
                         "logprobs": _logprobs_block(tokenizer, c)} for i, c in enumerate(result.choices)],
            "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                      "total_tokens": result.prompt_tokens + result.completion_tokens}}


def stream_chunks(model_name: str, result: ChatResult, tokenizer, include_usage: bool):
    """The chunks of a streamed completion: a role delta, the content word by word, the tool calls, the finish
    reason, and the usage when asked for."""
    ident, created = "chatcmpl-" + uuid.uuid4().hex, int(time.time())

    def chunk(choices, usage=None):
        body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model_name,
                "choices": choices}
        if usage is not None:
            body["usage"] = usage
        return "data: " + json.dumps(body, ensure_ascii=False) + "\n\n"

    for i, c in enumerate(result.choices):
        yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for piece in re.findall(r"\S+\s*|\s+", c.message.get("content") or ""):     # word by word
            yield chunk([{"index": i, "delta": {"content": piece}, "finish_reason": None}])
        for j, call in enumerate(c.message.get("tool_calls") or []):
            yield chunk([{"index": i, "delta": {"tool_calls": [{"index": j, **call}]}, "finish_reason": None}])
        yield chunk([{"index": i, "delta": {}, "finish_reason": c.finish_reason}])
    if include_usage:
        yield chunk([], {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                         "total_tokens": result.prompt_tokens + result.completion_tokens})
    yield "data: [DONE]\n\n"


def make_app(model: ChatModel, *, max_batch_rows: int = 16, batch_window_ms: float = 5.0):
    """The FastAPI application serving `model` (its `name` is the model id clients ask for)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    batcher = Batcher(model, max_batch_rows=max_batch_rows, batch_window_ms=batch_window_ms)

    @contextlib.asynccontextmanager
    async def lifespan(_):
        yield
        batcher.close()

    app = FastAPI(title="jaxsuite OpenAI-compatible server", lifespan=lifespan)
    app.state.batcher = batcher
    tokenizer = model.fmt.tokenizer if hasattr(model, "fmt") else None

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": model.name, "object": "model", "created": 0,
                                            "owned_by": "jaxsuite"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return JSONResponse(error_body("the request body is not valid JSON"), status_code=400)
        try:
            if not isinstance(body, dict) or body.get("model") != model.name:
                name = body.get("model") if isinstance(body, dict) else None
                return JSONResponse(error_body(f"The model {name!r} does not exist; this server serves "
                                               f"{model.name!r}", param="model", code="model_not_found"),
                                    status_code=404)
            chat_request = _parse_request(body)
            result = await asyncio.wrap_future(batcher.submit(chat_request))
        except RequestError as e:
            return JSONResponse(error_body(str(e), param=e.param, code=e.code), status_code=e.status)
        except Exception as e:                  # noqa: BLE001 - a server error, reported, the server lives on
            return JSONResponse(error_body(f"{type(e).__name__}: {e}", kind="server_error", code="internal_error"),
                                status_code=500)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(stream_chunks(model.name, result, tokenizer, include_usage),
                                     media_type="text/event-stream")
        return JSONResponse(completion_body(model.name, result, tokenizer))

    return app


class ServerThread:
    """Runs the app with uvicorn in a background thread (tests, notebooks, benchmarks): `with
    ServerThread(app) as url: ...` gives the base URL (`http://127.0.0.1:<port>/v1`)."""

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0):
        import socket

        import uvicorn
        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.url = f"http://{host}:{port}/v1"
        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
