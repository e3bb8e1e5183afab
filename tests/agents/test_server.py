"""The OpenAI-compatible server, driven by the official `openai` client against a tiny model; log-probs against
transformers' forward pass on the same folder."""
import threading

import numpy as np
import pytest

from jaxsuite.agents.chat_model import ChatRequest, LocalChatModel, OpenAIChatModel
from jaxsuite.agents.server import ServerThread, make_app

openai = pytest.importorskip("openai")
torch = pytest.importorskip("torch")

TOOLS = [{"type": "function", "function": {
    "name": "search", "description": "Search the corpus.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]
HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]




@pytest.fixture(scope="module")
def served(chat_model_folder):
    model = LocalChatModel.from_folder(chat_model_folder)
    app = make_app(model, batch_window_ms=300)
    with ServerThread(app) as url:
        yield model, app, url, openai.OpenAI(base_url=url, api_key="none", max_retries=0)


def test_models_and_plain_chat_match_the_model_in_process(served):
    model, _, _, client = served
    assert [m.id for m in client.models.list().data] == ["tiny-qwen3-chat"]
    response = client.chat.completions.create(model="tiny-qwen3-chat", messages=HELLO, temperature=0,
                                              max_tokens=12)
    [direct] = model.complete([ChatRequest(HELLO, temperature=0.0, max_tokens=12)])
    choice = response.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == direct.choices[0].message["content"]
    assert choice.finish_reason in ("stop", "length")
    assert response.usage.prompt_tokens == len(model.fmt.encode(HELLO, add_generation_prompt=True))
    assert response.usage.completion_tokens == len(direct.choices[0].token_ids)
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_logprobs_match_transformers(served, chat_model_folder):
    import transformers
    model, _, _, client = served
    response = client.chat.completions.create(model="tiny-qwen3-chat", messages=HELLO, temperature=0,
                                              max_tokens=8, logprobs=True, top_logprobs=3)
    [direct] = model.complete([ChatRequest(HELLO, temperature=0.0, max_tokens=8)])
    tokens, prompt = direct.choices[0].token_ids, model.fmt.encode(HELLO, add_generation_prompt=True)
    tmodel = transformers.AutoModelForCausalLM.from_pretrained(str(chat_model_folder), dtype=torch.float32)
    with torch.no_grad():
        logits = tmodel(torch.tensor([prompt + tokens[:-1]])).logits[0, len(prompt) - 1:]
    want = torch.log_softmax(logits, -1).numpy()                                    # [N, V]
    content = response.choices[0].logprobs.content
    assert len(content) == len(tokens)
    got = np.array([c.logprob for c in content])
    np.testing.assert_allclose(got, want[np.arange(len(tokens)), tokens], atol=1e-4)
    for k, c in enumerate(content):         # greedy: the sampled token is the most likely one
        assert len(c.top_logprobs) == 3 and c.top_logprobs[0].logprob == pytest.approx(got[k], abs=1e-4)
        np.testing.assert_allclose([t.logprob for t in c.top_logprobs], np.sort(want[k])[::-1][:3], atol=1e-4)


def test_tool_calls_round_trip(chat_model_folder, scripted):
    model = LocalChatModel.from_folder(chat_model_folder)
    call_text = '<tool_call>\n{"name": "search", "arguments": {"query": "tower height"}}\n</tool_call>'
    script = tuple(model.fmt.encode_text(call_text) + [model.fmt.end_of_turn_id])
    model.logits_processor = scripted(script)
    with ServerThread(make_app(model)) as url:
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
        messages = [{"role": "user", "content": "How tall is the tower?"}]
        first = client.chat.completions.create(model="tiny-qwen3-chat", messages=messages, tools=TOOLS,
                                               temperature=0, max_tokens=len(script) + 2)
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        [call] = choice.message.tool_calls
        assert call.type == "function" and call.function.name == "search"
        assert call.function.arguments == '{"query": "tower height"}' and call.id.startswith("call_")
        # the client sends the call and its result back: the server renders them as transformers does
        history = messages + [choice.message.model_dump(exclude_none=True),
                              {"role": "tool", "tool_call_id": call.id, "content": "330 metres"}]
        second = client.chat.completions.create(model="tiny-qwen3-chat", messages=history, tools=TOOLS,
                                                temperature=0, max_tokens=4)
        import transformers
        tok = transformers.AutoTokenizer.from_pretrained(str(chat_model_folder))
        want = tok.apply_chat_template(history, tools=TOOLS, add_generation_prompt=True, tokenize=True,
                                       return_dict=False)
        assert second.usage.prompt_tokens == len(want)


def test_streaming_n_and_seeds(served):
    _, _, _, client = served
    plain = client.chat.completions.create(model="tiny-qwen3-chat", messages=HELLO, temperature=0, max_tokens=10)
    stream = client.chat.completions.create(model="tiny-qwen3-chat", messages=HELLO, temperature=0, max_tokens=10,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == plain.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    many = client.chat.completions.create(model="tiny-qwen3-chat", messages=HELLO, temperature=1.0, n=3,
                                          max_tokens=10, seed=7)
    again = client.chat.completions.create(model="tiny-qwen3-chat", messages=HELLO, temperature=1.0, n=3,
                                           max_tokens=10, seed=7)
    assert len(many.choices) == 3 and [c.index for c in many.choices] == [0, 1, 2]
    assert [c.message.content for c in many.choices] == [c.message.content for c in again.choices]
    assert len({c.message.content for c in many.choices}) > 1                   # sampled, not copies


def test_bad_requests_get_openai_errors_and_the_server_lives_on(served):
    model, _, url, client = served
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-9", messages=HELLO)
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-qwen3-chat", messages=[{"role": "robot", "content": "x"}])
    assert "role must be one of" in e.value.message and e.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-qwen3-chat", messages=[{"role": "user", "content": "x " * 3000}])
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-qwen3-chat", messages=HELLO, temperature=5)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-qwen3-chat", messages=HELLO, tools=TOOLS,
                                       tool_choice={"type": "function", "function": {"name": "nope"}})
    assert e.value.body["param"] == "tool_choice"
    import httpx
    raw = httpx.post(url + "/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"
    assert client.chat.completions.create(model="tiny-qwen3-chat", messages=HELLO, max_tokens=2).choices


def test_concurrent_requests_share_decode_batches_and_the_http_chat_model_agrees(served):
    model, app, url, client = served
    before = len(app.state.batcher.batches)
    results = [None] * 4

    def ask(k):
        results[k] = client.chat.completions.create(
            model="tiny-qwen3-chat", messages=[{"role": "user", "content": f"Count to {k}."}], temperature=0,
            max_tokens=6).choices[0].message.content
    threads = [threading.Thread(target=ask, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None for r in results)
    assert max(app.state.batcher.batches[before:]) > 1          # requests arriving together were batched
    remote = OpenAIChatModel(url, model="tiny-qwen3-chat")
    request = ChatRequest([{"role": "user", "content": "Count to 2."}], temperature=0.0, max_tokens=6)
    assert remote.complete([request])[0].choices[0].message["content"] == results[2] == \
        model.complete([request])[0].choices[0].message["content"]


def test_the_serve_command_names_a_bad_model_folder_in_one_line(tmp_path, capsys):
    from jaxsuite import serve
    assert serve.main(["--model", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'nowhere'}: not a model folder (no config.json, nor hf/config.json)"
