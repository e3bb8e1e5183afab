"""Chat-level episodes through the in-process model and through the server give the same trace; traces write,
read, render and replay."""
import json

import pytest

from jaxsuite.agents.chat_model import LocalChatModel, OpenAIChatModel
from jaxsuite.agents.environment import Budget, Environment, Task
from jaxsuite.agents.retrieval import BM25Index, Document
from jaxsuite.agents.server import ServerThread, make_app
from jaxsuite.agents.tools import Toolbox, search_tool
from jaxsuite.agents.traces import read_trace, render_trace, replay_trace, run_chat_episodes, write_trace

DOCS = [Document("d1", "The Eiffel tower is 330 metres tall.", "Eiffel tower"),
        Document("d2", "Big Ben is in London.", "Big Ben")]
CALL = '<tool_call>\n{"name": "search", "arguments": {"query": "Eiffel tower"}}\n</tool_call>'




@pytest.fixture(scope="module")
def scripted_model(chat_model_folder, scripted):
    model = LocalChatModel.from_folder(chat_model_folder)
    script = tuple(model.fmt.encode_text(CALL) + [model.fmt.end_of_turn_id])
    model.logits_processor = scripted(script)
    return model, len(script)


def environment(max_new_tokens):
    return Environment(Toolbox([search_tool(BM25Index(DOCS), k=1)]),
                       budget=Budget(max_turns=2, max_new_tokens=max_new_tokens))


def without_ids(record):
    record = json.loads(json.dumps(record))
    record["stats"].pop("seconds")
    for m in record["messages"]:
        m.pop("tool_call_id", None)
        for c in m.get("tool_calls") or []:
            c.pop("id", None)
    return record


def test_the_same_episodes_in_process_and_through_the_server(scripted_model, tmp_path):
    from jaxsuite.agents.traces import trace_record
    model, n = scripted_model
    env = environment(n + 2)
    tasks = [Task("t1", "How tall is the Eiffel tower?", "330 metres"), Task("t2", "Where is Big Ben?", "London")]
    local = run_chat_episodes(model, env, tasks)
    with ServerThread(make_app(model)) as url:
        remote = run_chat_episodes(OpenAIChatModel(url, model=model.name), env, tasks)
    for a, b in zip(local, remote):
        assert a.stop_reason == b.stop_reason == "max_turns" and a.stats.tool_calls == 1
        assert without_ids(trace_record(a)) == without_ids(trace_record(b))
    write_trace(tmp_path / "trace.jsonl", local)
    write_trace(tmp_path / "trace.jsonl", remote[:1], append=True)
    records = read_trace(tmp_path / "trace.jsonl")
    assert len(records) == 3 and records[0]["task"]["id"] == "t1"
    tool = [m for m in records[0]["messages"] if m["role"] == "tool"][0]
    assert tool["name"] == "search" and tool["arguments"] == {"query": "Eiffel tower"}
    assert "330 metres" in tool["content"]
    text = render_trace(records[0])
    assert "[call] search(" in text and "[search] 1. [Eiffel tower](d1)" in text
    assert "=> max_turns; answer None; reward 0.0; 2 model calls, 1 tool calls" in text
    assert replay_trace(records[0], env) == []
    tool["content"] = "tampered"
    [diff] = replay_trace(records[0], env)
    assert diff["recorded"] == "tampered" and "330 metres" in diff["replayed"]
    (tmp_path / "bad.jsonl").write_text("{}\nnot json\n")
    with pytest.raises(ValueError, match="bad.jsonl:2: malformed JSON"):
        read_trace(tmp_path / "bad.jsonl")
