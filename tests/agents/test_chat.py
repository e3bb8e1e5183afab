"""The chat format against transformers' rendering of the real Qwen3 chat template, token for token."""
import json

import pytest

from jaxsuite.agents.chat import ChatFormat, ChatTemplateError, JinjaTemplate, render_qwen3
from jaxsuite.core.tokenizer import load_tokenizer

TOOLS = [
    {"type": "function", "function": {
        "name": "search", "description": "Search the local corpus.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string", "description": "keywords"}},
                       "required": ["query"]}}},
    {"type": "function", "function": {
        "name": "calculator", "description": "Evaluate arithmetic.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}},
]

CONVERSATIONS = {
    "one user turn": [{"role": "user", "content": "Hi there"}],
    "system and history": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "Ünïcödé 中文?"},
    ],
    "tool calls, merged tool responses, thinking kept after the last query": [
        {"role": "system", "content": "Answer in <answer></answer>."},
        {"role": "user", "content": "Old question"},
        {"role": "assistant", "content": "<think>\nold thoughts\n</think>\n\nold answer"},
        {"role": "user", "content": "How tall is the Eiffel tower, in feet?"},
        {"role": "assistant", "content": "", "reasoning_content": "I should search.",
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "search", "arguments": {"query": "Eiffel tower height"}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "330 metres"},
        {"role": "assistant", "content": "Converting.",
         "tool_calls": [{"id": "c2", "type": "function",
                         "function": {"name": "calculator", "arguments": '{"expression": "330 * 3.28084"}'}},
                        {"id": "c3", "type": "function",
                         "function": {"name": "search", "arguments": {"query": "feet per metre"}}}]},
        {"role": "tool", "tool_call_id": "c2", "content": "1082.6772"},
        {"role": "tool", "tool_call_id": "c3", "content": "3.28084 feet"},
    ],
    "tool output pasted as a user turn does not count as a query": [
        {"role": "user", "content": "Find it."},
        {"role": "assistant", "content": "", "reasoning_content": "search first",
         "tool_calls": [{"function": {"name": "search", "arguments": {"query": "it"}}}]},
        {"role": "user", "content": "<tool_response>\nfound\n</tool_response>"},
        {"role": "assistant", "content": "<think>done</think>It is found."},
    ],
}


def transformers_ids(folder, messages, tools, **kwargs):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(folder))
    text = tok.apply_chat_template(messages, tools=tools, tokenize=False, **kwargs)
    ids = tok.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=False, **kwargs)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    return text, list(ids)


@pytest.mark.parametrize("name", list(CONVERSATIONS))
@pytest.mark.parametrize("with_tools", [False, True], ids=["no tools", "tools"])
@pytest.mark.parametrize("prompt", [dict(add_generation_prompt=False), dict(add_generation_prompt=True),
                                    dict(add_generation_prompt=True, enable_thinking=False)],
                         ids=["no prompt", "prompt", "thinking off"])
def test_both_renderers_match_transformers_on_the_real_qwen3_template(qwen3_tokenizer_folder, name, with_tools,
                                                                       prompt):
    messages, tools = CONVERSATIONS[name], TOOLS if with_tools else None
    want_text, want_ids = transformers_ids(qwen3_tokenizer_folder, messages, tools, **prompt)
    ours = load_tokenizer(str(qwen3_tokenizer_folder))
    own_template = ChatFormat.for_folder(qwen3_tokenizer_folder, ours)
    builtin = ChatFormat(ours)                                       # the Python Qwen3 format, no template
    assert isinstance(own_template.renderer, JinjaTemplate)
    for fmt in (own_template, builtin):
        assert fmt.render(messages, tools, **prompt) == want_text
        assert fmt.encode(messages, tools, **prompt) == want_ids
    assert builtin.end_of_turn_id == ours.token_to_id("<|im_end|>")


def test_the_format_holds_what_agents_rely_on():
    """Hand-checked pieces of the format (../shared/reference/agents-runtime.md)."""
    text = render_qwen3(CONVERSATIONS["tool calls, merged tool responses, thinking kept after the last query"],
                        TOOLS, add_generation_prompt=True)
    system = text.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\nAnswer in <answer></answer>.\n\n# Tools\n")
    assert "\n" + json.dumps(TOOLS[0], ensure_ascii=False) + "\n" in system
    assert "old thoughts" not in text                                 # before the last query: dropped
    assert "<think>\nI should search.\n</think>\n\n<tool_call>\n" in text
    assert ('<tool_call>\n{"name": "calculator", "arguments": {"expression": "330 * 3.28084"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "search"') in text
    assert ("<|im_start|>user\n<tool_response>\n1082.6772\n</tool_response>\n<tool_response>\n3.28084 feet\n"
            "</tool_response><|im_end|>\n<|im_start|>assistant\n") in text
    assert text.endswith("<|im_start|>assistant\n")
    off = render_qwen3([{"role": "user", "content": "x"}], add_generation_prompt=True, enable_thinking=False)
    assert off == "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


@pytest.mark.parametrize("messages, match", [
    ([], "non-empty list"),
    ([{"role": "robot", "content": "x"}], r"messages\[0\]: role must be one of"),
    ([{"role": "user", "content": None}], r"messages\[0\]: a user message needs content"),
    ([{"role": "user", "content": ["a"]}], r"messages\[0\]: content must be a string"),
    ([{"role": "assistant", "content": "", "tool_calls": [{"function": {}}]}], r"tool_calls\[0\]: needs"),
])
def test_malformed_messages_are_named(messages, match):
    with pytest.raises(ChatTemplateError, match=match):
        render_qwen3(messages)


def test_a_template_that_raises_is_reported_in_one_line(tmp_path):
    bad = JinjaTemplate("{{ raise_exception('only user turns') }}")
    with pytest.raises(ChatTemplateError, match="chat template failed: only user turns"):
        bad([{"role": "user", "content": "x"}])
    with pytest.raises(ChatTemplateError, match="does not compile"):
        JinjaTemplate("{% if %}")
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ChatTemplateError, match="tokenizer_config.json: invalid JSON"):
        JinjaTemplate.from_folder(tmp_path)


def test_a_folder_without_a_template_uses_the_builtin_format(tmp_path):
    from jaxsuite.core.tokenizer import ByteTokenizer
    fmt = ChatFormat.for_folder(tmp_path, ByteTokenizer())
    assert fmt.renderer is render_qwen3 and fmt.marker_ids == {}
    messages = [{"role": "user", "content": "hi"}]
    assert ByteTokenizer().decode(fmt.encode(messages)) == "<|im_start|>user\nhi<|im_end|>\n"
    assert fmt.end_of_turn_id == ByteTokenizer.eos_id
