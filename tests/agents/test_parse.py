"""Assistant output parsing: hand-written model outputs, good and broken, and a round trip through the renderer."""
import pytest

from jaxsuite.agents.chat import render_qwen3
from jaxsuite.agents.parse import FormatError, ToolCall, parse_assistant, parse_tool_call


def test_reasoning_content_calls_and_answer_are_split():
    text = ('<think>\nNeed the height.\n</think>\n\nLet me look.\n<tool_call>\n{"name": "search", "arguments": '
            '{"query": "Eiffel tower"}}\n</tool_call>\n<tool_call>\n{"name": "calculator", "arguments": '
            '{"expression": "1+1"}}\n</tool_call>')
    turn = parse_assistant(text)
    assert turn.reasoning == "Need the height."
    assert turn.content == "Let me look."
    assert [(c.name, c.arguments) for c in turn.tool_calls] == [("search", {"query": "Eiffel tower"}),
                                                                  ("calculator", {"expression": "1+1"})]
    assert not turn.errors and turn.answer is None


def test_thinking_2507_output_without_the_opening_tag():
    turn = parse_assistant("thoughts here\n</think>\n\nThe answer is <answer> 42 </answer>.")
    assert turn.reasoning == "thoughts here" and turn.answer == "42" and not turn.tool_calls


def test_only_calls_after_the_last_think_close_count():
    turn = parse_assistant('<think>maybe <tool_call>{"name": "x", "arguments": {}}</tool_call></think>no call')
    assert turn.tool_calls == () and turn.content == "no call"


def test_the_last_answer_block_wins():
    assert parse_assistant("<answer>1</answer> then <answer>2</answer>").answer == "2"


@pytest.mark.parametrize("body, name, arguments", [
    ("{'name': 'search', 'arguments': {'query': 'a',},}", "search", {"query": "a"}),           # json5
    ('{"name": "search", "arguments": {"query": "a"}}}', "search", {"query": "a"}),           # one brace too many
    ('{"name": "search", "arguments": {"query": "a"', "search", {"query": "a"}),              # cut off
    ('{"name": "search", "arguments": "{\\"query\\": \\"a\\"}"}', "search", {"query": "a"}),   # double-encoded
    ('{"name": "python", "arguments": {}}\n<code>\nprint({"a": 1}["a"])\n</code>', "python",
     {"code": 'print({"a": 1}["a"])'}),
])
def test_lenient_parsing_and_repair(body, name, arguments):
    call = parse_tool_call(body)
    assert isinstance(call, ToolCall), call
    assert (call.name, call.arguments) == (name, arguments)


@pytest.mark.parametrize("body, reason", [
    ("search for the tower", "invalid JSON"),
    ('["search"]', "expected a JSON object, got list"),
    ('{"arguments": {}}', 'no "name" string'),
    ('{"name": "search", "arguments": [1, 2]}', '"arguments" must be an object, got list'),
])
def test_unreadable_calls_become_format_errors(body, reason):
    err = parse_tool_call(body)
    assert isinstance(err, FormatError) and reason in err.reason
    turn = parse_assistant(f"<tool_call>\n{body}\n</tool_call>")
    assert turn.has_format_error and not turn.tool_calls
    assert "Format error" in turn.errors[0].observation()


def test_an_unclosed_call_at_the_end_of_a_turn_is_still_read():
    turn = parse_assistant('Searching.\n<tool_call>\n{"name": "search", "arguments": {"query": "x"}}')
    assert [c.name for c in turn.tool_calls] == ["search"] and turn.content == "Searching."


def test_a_parsed_turn_renders_back_to_the_same_text():
    """What the model wrote -> message -> the Qwen3 format gives the model's text back (after the header)."""
    written = ('<think>\nplan\n</think>\n\nOK.\n<tool_call>\n{"name": "search", "arguments": {"query": "x y"}}\n'
               '</tool_call>')
    message = parse_assistant(written).to_message()
    assert message["tool_calls"][0]["function"]["arguments"] == '{"query": "x y"}'
    rendered = render_qwen3([{"role": "user", "content": "q"}, message])
    assert rendered.endswith("<|im_start|>assistant\n" + written + "<|im_end|>\n")
