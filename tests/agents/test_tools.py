"""Tools: schemas against transformers' get_json_schema, calls that fail as observations, the built-in tools."""
import math
import time
from typing import Literal, Optional

import pytest

from jaxsuite.agents.parse import ToolCall
from jaxsuite.agents.sandbox import Limits, SandboxPool
from jaxsuite.agents.tools import (Tool, ToolDefinitionError, Toolbox, calculator, evaluate_arithmetic,
                                   python_tool)


def lookup(query: str, k: int = 3, exact: bool = False) -> str:
    """Search the corpus for pages.

    Args:
        query: keywords to look for.
        k: how many results to return.
        exact: match the whole phrase only.
    """
    return f"{query}:{k}:{exact}"


def convert(value: float, unit: Literal["m", "ft"], tags: list[str], note: Optional[str] = None) -> str:
    """Convert a length.

    Args:
        value: the number to convert.
        unit: the unit to convert to.
        tags: labels for the result, which
            may continue on a second line.
        note: free text.
    """
    return f"{value}{unit}"


@pytest.mark.parametrize("function", [lookup, convert, calculator])
def test_schemas_match_transformers(function):
    from transformers.utils import get_json_schema
    assert Tool.from_function(function).schema == get_json_schema(function)


def test_functions_that_cannot_be_tools_are_refused():
    def untyped(x):
        """Does things."""
    def undocumented(x: int):
        pass
    with pytest.raises(ToolDefinitionError, match="parameter 'x' needs a type annotation"):
        Tool.from_function(untyped)
    with pytest.raises(ToolDefinitionError, match="needs a docstring"):
        Tool.from_function(undocumented)


def test_calls_and_every_failure_as_an_observation():
    def slow(seconds: float) -> str:
        """Sleep."""
        time.sleep(seconds)
        return "done"

    def broken(x: int) -> str:
        """Fail."""
        return str(1 // x)

    box = Toolbox([lookup, slow, broken], timeout_seconds=0.5)
    assert box.call(ToolCall("lookup", {"query": "tower", "k": 2})).text == "tower:2:False"
    cases = [
        (ToolCall("nope", {}), ("unknown_tool", "unknown tool 'nope'")),
        (ToolCall("lookup", {}), ("bad_arguments", "missing required argument 'query'")),
        (ToolCall("lookup", {"query": "x", "limit": 3}), ("bad_arguments", "unknown argument 'limit'")),
        (ToolCall("lookup", {"query": "x", "k": "3"}), ("bad_arguments", "argument 'k' should be integer")),
        (ToolCall("lookup", {"query": "x", "k": True}), ("bad_arguments", "argument 'k' should be integer")),
        (ToolCall("broken", {"x": 0}), ("tool_error", "ZeroDivisionError: integer division or modulo by zero")),
        (ToolCall("slow", {"seconds": 5}), ("timeout", "did not finish within 0.5 s")),
    ]
    for call, (error, text) in cases:
        result = box.call(call)
        assert result.error == error and text in result.text, (call, result)
    assert [r.text for r in box.call_all([ToolCall("lookup", {"query": q}) for q in "abc"])] == \
        ["a:3:False", "b:3:False", "c:3:False"]


def test_long_outputs_go_through_the_refinement_hook_then_the_cap():
    def page(n: int) -> str:
        """A long page."""
        return "word " * n
    seen = []
    box = Toolbox([page], refine=lambda call, text: seen.append(len(text)) or f"summary of {len(text)} chars",
                  refine_over_chars=100, max_chars=50)
    assert box.call(ToolCall("page", {"n": 10})).text == "word " * 10          # short: untouched
    assert box.call(ToolCall("page", {"n": 1000})).text == "summary of 5000 chars" and seen == [5000]
    plain = Toolbox([page], max_chars=50).call(ToolCall("page", {"n": 1000})).text
    assert plain == ("word " * 10) + "\n[truncated]"


@pytest.mark.parametrize("expression, value", [
    ("330 * 3.28084", 330 * 3.28084), ("2 ** 10 - 1", 1023), ("(7 + 5) // 5 % 2", 0),
    ("sqrt(16) + log(e)", 5.0), ("-3 + +2", -1), ("max(1, 4, 2) * pi", 4 * math.pi),
])
def test_the_calculator_evaluates_arithmetic(expression, value):
    assert evaluate_arithmetic(expression) == pytest.approx(value)


@pytest.mark.parametrize("expression", ["__import__('os')", "open('x')", "[1, 2]", "2 ** 100000", "x + 1",
                                        "True + 1", "(1).__class__"])
def test_the_calculator_refuses_everything_else(expression):
    result = Toolbox([calculator]).call(ToolCall("calculator", {"expression": expression}))
    assert result.error == "tool_error" and "ValueError" in result.text


def test_the_python_tool_runs_in_the_sandbox():
    with SandboxPool(workers=1) as pool:
        box = Toolbox([python_tool(pool, limits=Limits(wall_seconds=2))])
        assert box.call(ToolCall("python", {"code": "print(6 * 7)"})).text == "42"
        assert box.call(ToolCall("python", {"code": "while True: pass"})).text == "Execution timed out."
        assert "NameError" in box.call(ToolCall("python", {"code": "print(undefined)"})).text
