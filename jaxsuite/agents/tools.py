"""Tools: typed Python functions with a JSON schema, called by name with the arguments a model wrote.

    def lookup(query: str, k: int = 3) -> str:
        \"\"\"Search the corpus.

        Args:
            query: keywords to look for.
            k: how many results to return.
        \"\"\"

    tool = Tool.from_function(lookup)
    tool.schema      # {"type": "function", "function": {"name": "lookup", "description": "Search the corpus.",
                     #   "parameters": {"type": "object", "properties": {"query": {"type": "string",
                     #   "description": "keywords to look for."}, "k": {...}}, "required": ["query"]}}}

The schema comes from the signature (str, int, float, bool, list[...], dict, Literal[...], Optional) and the
docstring's summary and `Args:` section, in the form transformers' `get_json_schema` gives, so the chat template
shows the model the same tool descriptions either way. `Toolbox.call` never raises: an unknown tool, missing or
wrongly typed arguments, an exception inside the tool and a tool over its time all come back as an
observation text the model reads (`ToolResult.error` says which).

Built in: `calculator` (arithmetic on an AST whitelist, no eval), `search_tool` and `read_tool` over a
Retriever, and `python_tool` running code in a SandboxPool.
"""
from __future__ import annotations

import ast
import collections.abc
import concurrent.futures
import dataclasses
import inspect
import math
import operator
import re
import types
import typing
from typing import Any, Callable, Literal, Sequence

from jaxsuite.agents.parse import ToolCall

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}


class ToolDefinitionError(TypeError):
    """A function that cannot be described as a tool (an untyped parameter, say); the message says which."""


def _json_type(annotation, where: str) -> dict:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    if origin is Literal:
        values = list(args)
        return {"type": _JSON_TYPES[type(values[0])], "enum": values}
    if origin in (list, collections.abc.Sequence):
        return {"type": "array", **({"items": _json_type(args[0], where)} if args else {})}
    if origin is dict:
        return {"type": "object"}
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) == 1:
            return {**_json_type(kinds[0], where), "nullable": True}
    raise ToolDefinitionError(f"{where}: cannot describe type {annotation!r} in JSON schema")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(summary, {argument: description}) from a Google-style docstring."""
    doc = inspect.cleandoc(doc or "")
    summary, _, rest = doc.partition("\n\n")
    descriptions: dict[str, str] = {}
    match = re.search(r"^Args:\s*\n(.*?)(?:^\S|\Z)", rest + "\n", flags=re.M | re.S)
    if match:
        current = None
        for line in match.group(1).splitlines():
            item = re.match(r"\s+(\w+)(?:\s*\([^)]*\))?:\s*(.*)", line)
            if item and (current is None or len(line) - len(line.lstrip()) <= 8):
                current = item.group(1)
                descriptions[current] = item.group(2).strip()
            elif current and line.strip():
                descriptions[current] += " " + line.strip()
    return " ".join(summary.split()), descriptions


@dataclasses.dataclass(frozen=True)
class ToolResult:
    text: str                       # what the model reads
    error: str | None = None        # None, or unknown_tool | bad_arguments | tool_error | timeout

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclasses.dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict                # JSON schema of the arguments object
    function: Callable[..., Any]
    returns: dict | None = None     # JSON schema of the result, from the return annotation

    @classmethod
    def from_function(cls, function: Callable[..., Any], *, name: str | None = None) -> "Tool":
        name = name or function.__name__
        summary, arg_docs = parse_docstring(function.__doc__ or "")
        if not summary:
            raise ToolDefinitionError(f"tool {name!r} needs a docstring: its first line is what the model reads")
        hints = typing.get_type_hints(function)
        properties, required = {}, []
        for pname, param in inspect.signature(function).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ToolDefinitionError(f"tool {name!r}: *args/**kwargs cannot be described")
            if pname not in hints:
                raise ToolDefinitionError(f"tool {name!r}: parameter {pname!r} needs a type annotation")
            schema = _json_type(hints[pname], f"tool {name!r}, parameter {pname!r}")
            if pname in arg_docs:
                schema["description"] = arg_docs[pname]
            properties[pname] = schema
            if param.default is inspect.Parameter.empty:
                required.append(pname)
        parameters = {"type": "object", "properties": properties}
        if required:
            parameters["required"] = required
        returns = None
        if "return" in hints and hints["return"] is not type(None):
            returns = _json_type(hints["return"], f"tool {name!r}, return value")
        return cls(name, summary, parameters, function, returns)

    @property
    def schema(self) -> dict:
        """The OpenAI / chat-template form."""
        function = {"name": self.name, "description": self.description, "parameters": self.parameters}
        if self.returns is not None:
            function["return"] = self.returns
        return {"type": "function", "function": function}

    def check_arguments(self, arguments: dict) -> str | None:
        """None when `arguments` fit the schema, else what is wrong (one line)."""
        props = self.parameters["properties"]
        for key in self.parameters.get("required", []):
            if key not in arguments:
                return f"missing required argument {key!r}"
        for key, value in arguments.items():
            if key not in props:
                return f"unknown argument {key!r} (expected {sorted(props)})"
            if not _matches(value, props[key]):
                return f"argument {key!r} should be {props[key]['type']}, got {type(value).__name__}"
        return None


def _matches(value, schema: dict) -> bool:
    if value is None:
        return schema.get("nullable", False)
    kind = schema["type"]
    if "enum" in schema and value not in schema["enum"]:
        return False
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list) and all(_matches(v, schema["items"]) for v in value) \
            if "items" in schema else isinstance(value, list)
    return isinstance(value, {"string": str, "boolean": bool, "object": dict}[kind])


class Toolbox:
    """The tools of one environment, called by name; every failure comes back as an observation."""

    def __init__(self, tools: Sequence[Tool | Callable], *, timeout_seconds: float = 30.0,
                 max_chars: int = 8000, refine: Callable[[ToolCall, str], str] | None = None,
                 refine_over_chars: int = 6000):
        self.tools = {t.name: t for t in (t if isinstance(t, Tool) else Tool.from_function(t) for t in tools)}
        self.timeout_seconds, self.max_chars = timeout_seconds, max_chars
        # Long outputs (a fetched page, a long program output) may be condensed by a model before they enter
        # the context, as AgentCPM-Explore's context refinement does: refine(call, text) -> shorter text.
        self.refine, self.refine_over_chars = refine, refine_over_chars
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="tool")

    @property
    def schemas(self) -> list[dict]:
        return [t.schema for t in self.tools.values()]

    def call(self, call: ToolCall) -> ToolResult:
        tool = self.tools.get(call.name)
        if tool is None:
            return ToolResult(f"Error: unknown tool {call.name!r}. Available tools: {sorted(self.tools)}.",
                              "unknown_tool")
        problem = tool.check_arguments(call.arguments)
        if problem is not None:
            return ToolResult(f"Error: {call.name}: {problem}.", "bad_arguments")
        future = self._executor.submit(tool.function, **call.arguments)
        try:
            value = future.result(timeout=self.timeout_seconds)
        except concurrent.futures.TimeoutError:
            return ToolResult(f"Error: {call.name} did not finish within {self.timeout_seconds:g} s.", "timeout")
        except Exception as e:          # noqa: BLE001 - any failure of a tool is an observation for the model
            return ToolResult(f"Error: {call.name} failed: {type(e).__name__}: {e}", "tool_error")
        text = value if isinstance(value, str) else str(value)
        if self.refine is not None and len(text) > self.refine_over_chars:
            text = self.refine(call, text)
        if len(text) > self.max_chars:
            text = text[:self.max_chars] + "\n[truncated]"
        return ToolResult(text)

    def call_all(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        """Several calls (one turn's, or many episodes'), run concurrently, results in order."""
        futures = [self._executor.submit(self.call, c) for c in calls]
        return [f.result() for f in futures]


# ----------------------------------------------------------------------------------------------------------
# Built-in tools
# ----------------------------------------------------------------------------------------------------------
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS = {"sqrt": math.sqrt, "log": math.log, "exp": math.exp, "sin": math.sin, "cos": math.cos,
              "tan": math.tan, "abs": abs, "round": round, "min": min, "max": max}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def evaluate_arithmetic(expression: str) -> float | int:
    """Evaluates +-*/ // % ** with numbers, parentheses, pi, e and a few math functions; nothing else parses."""
    def value(node):
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and \
                not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 1000:
                raise ValueError("exponent too large")
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](value(node.operand))
        if isinstance(node, ast.Name) and node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS \
                and not node.keywords:
            return _FUNCTIONS[node.func.id](*[value(a) for a in node.args])
        raise ValueError(f"unsupported expression: {ast.unparse(node)!r}")
    if len(expression) > 500:
        raise ValueError("expression too long")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"not an arithmetic expression ({e.msg})") from None
    return value(tree)


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression.

    Args:
        expression: numbers with + - * / // % ** and parentheses; sqrt, log, exp, sin, cos, tan, abs, round,
            min, max, pi and e are available.
    """
    result = evaluate_arithmetic(expression)
    return repr(round(result, 12) if isinstance(result, float) else result)


def search_tool(retriever, *, k: int = 5, snippet_chars: int = 300) -> Tool:
    """A `search(query)` tool over a Retriever; results as AgentCPM's search shows them:
    `N. [title](id)` then a snippet."""
    def search(query: str) -> str:
        """Search the local document collection.

        Args:
            query: keywords describing what to find.
        """
        hits = retriever.search(query, k=k)
        if not hits:
            return f"No results for {query!r}."
        lines = []
        for n, hit in enumerate(hits, 1):
            doc = hit.document
            snippet = " ".join(doc.contents.split())[:snippet_chars]
            lines.append(f"{n}. [{doc.title or doc.id}]({doc.id})\n{snippet}")
        return "\n".join(lines)
    return Tool.from_function(search)


def read_tool(retriever, *, max_chars: int = 4000) -> Tool:
    """A `read(doc_id)` tool: the page a search result points to."""
    def read(doc_id: str) -> str:
        """Read a whole document from the collection.

        Args:
            doc_id: the id in parentheses in a search result.
        """
        doc = retriever.get(doc_id)
        if doc is None:
            return f"No document with id {doc_id!r}."
        text = f"# {doc.title}\n\n{doc.contents}" if doc.title else doc.contents
        return text[:max_chars] + ("\n[truncated]" if len(text) > max_chars else "")
    return Tool.from_function(read)


def python_tool(pool, *, limits=None) -> Tool:
    """A `python(code)` tool running each call in a fresh sandboxed process (stateless, as AgentCPM's)."""
    def python(code: str) -> str:
        """Run a Python program and return what it prints.

        Args:
            code: a complete program; print what you need to see.
        """
        return pool.run(code, limits=limits).observation()
    return Tool.from_function(python)
