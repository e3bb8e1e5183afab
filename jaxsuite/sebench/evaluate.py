"""Scoring a model's solution to a task as SE-Bench does: one sandboxed run, six outcomes.

    with SandboxPool(workers=4) as pool:
        outcome = evaluate(task, response, package_dir=pkg, pool=pool)    # -> Outcome(category="acc", ...)
    shares(outcomes)                                                      # {"acc": 0.5, "without_zwc": 0.1, ...}

The steps, in the paper's order:
  1. the LAST ```python block of the response (`Rules.block="first"` takes the first, as the released RL
     reward does); no block, or no function in it, is `without_zwc`; a block that does not parse is `exe_error`;
  2. an AST check: the task's function (the first `def`, as the harness calls it) must call the package and
     return something that depends on that call, where an array constructor alone (zwc.yitaf, asarray, ...)
     does not count -> else `without_zwc`;
  3. an AST check for the library itself (`import numpy`, `from numpy ...`, `__import__("numpy")`,
     `importlib.import_module("numpy")`, `sys.modules["numpy"]`) -> `numpy`. The released check looked for the
     package's import after its harness had added one, so it always passed; ours reads the solution alone, and
     inside the sandbox the library cannot be imported anyway (`zwc._seal()` runs first);
  4. the harness: the solution, then a main that calls the function on each test input and prints each result
     and a `#` line, run in the sandbox with a 3 s wall clock -> `timeout`; no result printed -> `exe_error`;
  5. each printout normalised and compared with the expected output -> `acc` or `result_error`.
Normalisation: `ZWCArray(...)` / `array(...)` wrappers and dtype arguments dropped, NumPy's space-separated
printouts read as lists, inf and nan understood, singleton lists unwrapped, tuples equal to lists; numbers equal
within an absolute 1e-2 (`Rules.tolerance`; the released RL reward uses 1e-5); anything that does not read as
a value is compared as text with whitespace normalised. Printouts are parsed with `ast.literal_eval`, never
evaluated: they come from untrusted code.
"""
from __future__ import annotations

import ast
import collections
import dataclasses
import math
import re
from pathlib import Path
from typing import Iterable, Sequence

from jaxsuite.agents.sandbox import ExecutionResult, Limits, SandboxPool
from jaxsuite.sebench.names import NameMapping

CATEGORIES = ("acc", "without_zwc", "numpy", "exe_error", "result_error", "timeout")
RESULTS_MARK = "<<<sebench results>>>"
CASE_END = "#"
# Constructors: calling only these does not show that a solution knows the library.
CONSTRUCTORS = ("array", "asarray", "asanyarray", "ascontiguousarray", "asfortranarray")
CODE_BLOCK = re.compile(r"```[ \t]*(python|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Rules:
    block: str = "last"                  # last | first: which python block is the solution
    tolerance: float = 1e-2              # absolute, on every number
    stderr_fails: bool = False           # the released RL reward: anything on stderr scores 0
    timeout_seconds: float = 3.0


PAPER_RULES = Rules()
RELEASED_RL_RULES = Rules(block="first", tolerance=1e-5, stderr_fails=True)


@dataclasses.dataclass(frozen=True)
class Outcome:
    category: str
    reason: str = ""
    passed_cases: int = 0
    total_cases: int = 0
    stdout: str = ""
    stderr: str = ""

    @property
    def correct(self) -> bool:
        return self.category == "acc"


def extract_code(response: str, *, block: str = "last") -> str | None:
    """The response's last (or first) fenced python block; a bare ``` block counts when no python one exists."""
    blocks = [(lang, body) for lang, body in CODE_BLOCK.findall(response or "")]
    python = [body for lang, body in blocks if lang] or [body for _, body in blocks]
    if not python:
        return None
    return python[-1] if block == "last" else python[0]


def _package_aliases(tree: ast.AST, package: str) -> tuple[set[str], dict[str, str]]:
    """Names bound to the package (or its submodules), and names bound to one of its functions (-> that name)."""
    modules, functions = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == package:
                    modules.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package:
            for alias in node.names:
                functions[alias.asname or alias.name] = alias.name
    return modules, functions


def _attribute_chain(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def uses_package(code: str, mapping: NameMapping) -> bool:
    """The AST check: the first function calls the package (not only a constructor) and its return depends on it.

    A call counts when it reaches a package function (`zwc.kocito(...)`, `z.rfx.quvohe(...)` after
    `import zwc as z`, `kocito(...)` after `from zwc import kocito`) or a function of the solution that does.
    A variable assigned from such a call (or from a variable that is) carries the dependence to a return."""
    tree = ast.parse(code)
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not defs:
        return False
    modules, imported = _package_aliases(tree, mapping.package)
    constructors = {mapping.main[c] for c in CONSTRUCTORS if c in mapping.main}

    def package_call(node: ast.AST, helpers: set[str]) -> bool:
        if not isinstance(node, ast.Call):
            return False
        chain = _attribute_chain(node.func)
        if chain is None:
            return False
        if chain[0] in modules and len(chain) > 1:
            return chain[-1] not in constructors
        if len(chain) == 1 and chain[0] in imported:
            return imported[chain[0]] not in constructors
        return len(chain) == 1 and chain[0] in helpers

    def depends(expr: ast.AST, tainted: set[str], helpers: set[str]) -> bool:
        return any(package_call(n, helpers) or (isinstance(n, ast.Name) and n.id in tainted)
                   for n in ast.walk(expr))

    # functions of the solution that call the package count as package calls (to a fixed point)
    helpers: set[str] = set()
    while True:
        more = {d.name for d in defs if d.name not in helpers
                and any(package_call(n, helpers) for n in ast.walk(d))}
        if not more:
            break
        helpers |= more
    target = defs[0]
    tainted: set[str] = set()
    while True:
        before = len(tainted)
        for node in ast.walk(target):
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                if depends(node.value, tainted, helpers):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    tainted |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            elif isinstance(node, (ast.For, ast.comprehension)) and depends(node.iter, tainted, helpers):
                tainted |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
        if len(tainted) == before:
            break
    return any(isinstance(n, ast.Return) and n.value is not None and depends(n.value, tainted, helpers)
               for n in ast.walk(target))


def imports_library(code: str, library: str = "numpy") -> bool:
    """Whether the solution reaches for the library itself (imports, __import__, import_module, sys.modules)."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == library for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == library:
            return True
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            chain = _attribute_chain(node.func) or []
            if chain[-1:] in (["__import__"], ["import_module"]) and str(node.args[0].value).split(".")[0] == library:
                return True
        if (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
                and str(node.slice.value).split(".")[0] == library
                and (_attribute_chain(node.value) or [])[-1:] == ["modules"]):
            return True
    return False


def harness(code: str, task: dict, mapping: NameMapping) -> str:
    """The program the sandbox runs: the library sealed off, the solution, then a call per test input."""
    tree = ast.parse(code)
    target = next(n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    # `from __future__` must open a file: such lines go above the seal
    future = [line for line in code.splitlines() if line.startswith("from __future__")]
    body = "\n".join(line for line in code.splitlines() if not line.startswith("from __future__"))
    lines = [*future, f"import {mapping.package} as _sebench_package; _sebench_package._seal(); del _sebench_package",
             body, "", f"import {mapping.package}", "", "if __name__ == '__main__':",
             f"    print({RESULTS_MARK!r})"]
    for case in task["test_cases"]:
        lines += [f"    print({target}({case['input']}))", f"    print({CASE_END!r})"]
    return "\n".join(lines) + "\n"


_WRAPPER = re.compile(r"\b(?:ZWCArray|array|np\.\w+|numpy\.\w+)\(")
_DTYPE = re.compile(r",\s*dtype=[\w.'\"\[\]]+\s*(?=\))")
_NUMBER = r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?|inf|nan)j?"


def normalise(text: str):
    """A printout as a Python value (numbers, booleans, lists), or the text itself when it is not one."""
    t = text.strip()
    t = _DTYPE.sub("", t)
    t = _WRAPPER.sub("(", t)
    if "[" in t and "," not in t:          # NumPy's str(): [[1 2]\n [3 4]] -> [[1, 2], [3, 4]]
        t = re.sub(r"(?<=[\w.\]])\s+(?=[-+\w.\[])", ", ", t)
    t = re.sub(r"(?<![\w.'\"])(-?)inf\b", r"\g<1>1e999", t)
    t = re.sub(r"(?<![\w.'\"])-?nan\b", "'__nan__'", t)
    try:
        value = ast.literal_eval(t)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return " ".join(text.split())
    return _unwrap_singletons(_plain(value))


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value == "__nan__":
        return math.nan
    return value


def _unwrap_singletons(value):
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def values_match(got, expected, tolerance: float) -> bool:
    if isinstance(got, list) and isinstance(expected, list):
        return len(got) == len(expected) and all(values_match(g, e, tolerance) for g, e in zip(got, expected))
    numbers = (int, float, complex)
    if isinstance(got, numbers) and isinstance(expected, numbers):
        if isinstance(got, complex) or isinstance(expected, complex):
            return abs(complex(got) - complex(expected)) <= tolerance
        if math.isnan(got) or math.isnan(expected):
            return math.isnan(got) and math.isnan(expected)
        if math.isinf(got) or math.isinf(expected):
            return got == expected
        return abs(got - expected) <= tolerance
    if isinstance(got, str) and isinstance(expected, str):
        return " ".join(got.split()) == " ".join(expected.split())
    return False


def outputs_match(printed: str, expected: str, tolerance: float = 1e-2) -> bool:
    return values_match(normalise(printed), normalise(expected), tolerance)


def split_results(stdout: str) -> list[str]:
    """The harness's printout of each test case, in order (what came after the results mark)."""
    if RESULTS_MARK not in stdout:
        return []
    body = stdout.split(RESULTS_MARK, 1)[1].lstrip("\n")
    parts = body.split(f"\n{CASE_END}\n")
    return [p for p in parts[:-1]] if len(parts) > 1 else []


def judge(task: dict, response: str, mapping: NameMapping, rules: Rules = PAPER_RULES) -> tuple[Outcome | None, str | None]:
    """The checks before running: (an outcome, None) when the response is decided without running, else
    (None, the program to run)."""
    code = extract_code(response, block=rules.block)
    if code is None:
        return Outcome("without_zwc", "no python code block"), None
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        return Outcome("exe_error", f"the code does not parse: {e.msg} (line {e.lineno})"), None
    if not any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in tree.body):
        return Outcome("without_zwc", "no function defined"), None
    if not uses_package(code, mapping):
        return Outcome("without_zwc", f"the function's result does not depend on {mapping.package}"), None
    if imports_library(code):
        return Outcome("numpy", "the code imports the library itself"), None
    return None, harness(code, task, mapping)


def score(task: dict, result: ExecutionResult, rules: Rules = PAPER_RULES) -> Outcome:
    """The outcome of a run of the harness."""
    cases = task["test_cases"]
    printed = split_results(result.stdout)
    common = dict(total_cases=len(cases), stdout=result.stdout[-2000:], stderr=result.stderr[-2000:])
    if result.outcome == "timeout":
        return Outcome("timeout", f"over {rules.timeout_seconds:g} s", **common)
    if not printed:
        why = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"no output ({result.outcome})"
        return Outcome("exe_error", why, **common)
    passed = sum(outputs_match(p, c["output"], rules.tolerance) for p, c in zip(printed, cases))
    if rules.stderr_fails and result.stderr.strip():
        return Outcome("result_error", "wrote to stderr", passed_cases=passed, **common)
    if passed == len(cases):
        return Outcome("acc", passed_cases=passed, **common)
    reason = (f"{len(printed)} of {len(cases)} cases ran" if len(printed) < len(cases)
              else f"{passed} of {len(cases)} cases right")
    return Outcome("result_error", reason, passed_cases=passed, **common)


def limits_for(rules: Rules) -> Limits:
    return Limits(wall_seconds=rules.timeout_seconds, cpu_seconds=max(1, math.ceil(rules.timeout_seconds)) + 1)


def evaluate(task: dict, response: str, *, package_dir, mapping: NameMapping, rules: Rules = PAPER_RULES,
             pool: SandboxPool | None = None) -> Outcome:
    """One response to one task (see the module docstring); `package_dir` is the built package's folder."""
    return evaluate_many([(task, response)], package_dir=package_dir, mapping=mapping, rules=rules, pool=pool)[0]


def evaluate_many(pairs: Sequence[tuple[dict, str]], *, package_dir, mapping: NameMapping,
                  rules: Rules = PAPER_RULES, pool: SandboxPool | None = None, workers: int = 4) -> list[Outcome]:
    """Many (task, response) pairs, the runs spread over a sandbox pool."""
    python_path = [str(Path(package_dir).resolve().parent)]
    own_pool = pool is None
    pool = pool or SandboxPool(workers=workers)
    try:
        decided, futures = [], {}
        for i, (task, response) in enumerate(pairs):
            outcome, program = judge(task, response, mapping, rules)
            decided.append(outcome)
            if program is not None:
                futures[i] = pool.submit(program, limits=limits_for(rules), python_path=python_path)
        return [decided[i] if decided[i] is not None else score(pairs[i][0], futures[i].result(), rules)
                for i in range(len(pairs))]
    finally:
        if own_pool:
            pool.close()


def shares(outcomes: Iterable[Outcome]) -> dict[str, float]:
    """The share of each category (all six named, zeros included)."""
    counts = collections.Counter(o.category for o in outcomes)
    total = sum(counts.values())
    return {c: (counts[c] / total if total else 0.0) for c in CATEGORIES}


def run_reference(task: dict, *, package_dir, mapping: NameMapping) -> Outcome:
    """The task's own reference solution through the evaluator: a generated task must score `acc`."""
    return evaluate(task, f"```python\n{task['solution']}```", package_dir=package_dir, mapping=mapping)


__all__ = ["CATEGORIES", "Rules", "PAPER_RULES", "RELEASED_RL_RULES", "Outcome", "extract_code", "uses_package",
           "imports_library", "harness", "normalise", "outputs_match", "judge", "score", "evaluate",
           "evaluate_many", "shares", "run_reference"]
