"""Rule-based repair of generated solver programs, applied before the execution check and measured apart.

    fixed, applied = repair_program(code)       # applied: the names of the rules that changed something

The paper repairs variable/parameter naming, constraint syntax and solver-API use by rule; its rules are not
published, so these are ours, each one a fix for a mistake small models make in the programs this package
teaches (and public benchmarks' outputs show):

    operators      unicode and reversed comparison signs (≤ ≥ =< => ≠) and a lone `=` inside a constraint
                   list or `prob +=` / `addCons(` / `addConstr(` line, written as `<=` / `>=` / `==`
    imports        a module alias used but never imported (cp, pulp, np, pyscipopt's Model, highspy)
    names          a name read but never assigned, with exactly one close spelling among the assigned names
                   (difflib ratio >= 0.8): renamed to it (`make_chair` -> `make_chairs`)
    solver_api     a commercial or missing solver asked for by name (GUROBI, COPT, CPLEX, MOSEK, ...) swapped for
                   the open one of the same API (cvxpy HIGHS, PuLP's CBC)
    unclosed       brackets left open at the end of the program (a generation cut at its token limit) closed

Repair never runs the code; it only rewrites text, and returns the input unchanged when it does not parse
even after the fixes (the checker then reports the failure as it is).
"""
from __future__ import annotations

import ast
import builtins
import difflib
import re

IMPORTS = {"cp": "import cvxpy as cp", "pulp": "import pulp", "np": "import numpy as np",
           "Model": "from pyscipopt import Model", "quicksum": "from pyscipopt import quicksum",
           "highspy": "import highspy", "milp": "from scipy.optimize import milp",
           "LinearConstraint": "from scipy.optimize import LinearConstraint",
           "Bounds": "from scipy.optimize import Bounds"}
_COMMERCIAL = r"GUROBI|COPT|CPLEX|MOSEK|XPRESS|GLPK_MI|CBC|SCIP"
_CONSTRAINT_LINE = re.compile(r"(prob\s*\+=|addCons\(|addConstr\(|^\s+.*,\s*(#.*)?$)")


def _operators(code: str) -> str:
    code = code.replace("≤", "<=").replace("≥", ">=").replace("≠", "!=")
    code = re.sub(r"=<", "<=", code)
    code = re.sub(r"(?<![<>=!])=>", ">=", code)
    if _parses(code) is not None:
        return code                 # a lone '=' is only ever a mistake where the program does not parse
    lines = []
    for line in code.split("\n"):
        if _CONSTRAINT_LINE.search(line) and not re.search(r"^\s*\w+\s*=[^=]", line):
            # a single '=' between two expressions inside a constraint: equality
            line = re.sub(r"(?<=[\w\)\]\s])\s=\s(?=[\w\(\-\d])", " == ", line)
        lines.append(line)
    return "\n".join(lines)


def _solver_api(code: str) -> str:
    code = re.sub(rf"solver\s*=\s*cp\.({_COMMERCIAL})\b", "solver=cp.HIGHS", code)
    code = re.sub(r"pulp\.(GUROBI|GUROBI_CMD|COPT|COPT_CMD|CPLEX_CMD|CPLEX_PY|GLPK|GLPK_CMD|XPRESS|MOSEK)\((.*?)\)",
                  r"pulp.PULP_CBC_CMD(msg=False)", code)
    return code


def _unclosed(code: str) -> str:
    stack = []
    pairs = {"(": ")", "[": "]", "{": "}"}
    in_string = None
    for ch in code:
        if in_string:
            if ch == in_string:
                in_string = None
            continue
        if ch in "'\"":
            in_string = ch
        elif ch in pairs:
            stack.append(pairs[ch])
        elif ch in pairs.values() and stack and stack[-1] == ch:
            stack.pop()
    return code + "".join(reversed(stack)) + "\n" if stack else code


def _assigned_and_read(tree: ast.AST) -> tuple[set[str], set[str]]:
    assigned, read = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (assigned if isinstance(node.ctx, (ast.Store, ast.Del)) else read).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            assigned.add(node.name)
        elif isinstance(node, ast.arg):
            assigned.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                assigned.add((alias.asname or alias.name).split(".")[0])
    return assigned, read


def _imports(code: str, tree: ast.AST) -> str:
    assigned, read = _assigned_and_read(tree)
    missing = [IMPORTS[n] for n in sorted(read - assigned) if n in IMPORTS]
    return "\n".join(missing) + "\n" + code if missing else code


def _names(code: str, tree: ast.AST) -> str:
    assigned, read = _assigned_and_read(tree)
    known = {n for n in assigned if not n.startswith("_")}
    for name in sorted(read - assigned - set(dir(builtins)) - set(IMPORTS)):
        close = difflib.get_close_matches(name, sorted(known), n=2, cutoff=0.8)
        if len(close) == 1:
            code = re.sub(rf"\b{re.escape(name)}\b", close[0], code)
    return code


def _parses(code: str) -> ast.AST | None:
    try:
        return ast.parse(code)
    except SyntaxError:
        return None


def repair_program(code: str) -> tuple[str, list[str]]:
    """The repaired program and the rules that changed it (in the order applied)."""
    applied = []
    for name, rule in (("operators", _operators), ("solver_api", _solver_api), ("unclosed", _unclosed)):
        if _parses(code) is not None and name == "unclosed":
            continue
        fixed = rule(code)
        if fixed != code:
            code, applied = fixed, [*applied, name]
    tree = _parses(code)
    if tree is None:
        return code, applied
    for name, rule in (("imports", _imports), ("names", _names)):
        fixed = rule(code, tree)
        if fixed != code and (new_tree := _parses(fixed)) is not None:
            code, tree, applied = fixed, new_tree, [*applied, name]
    return code, applied


def repair_answer(text: str) -> tuple[str, list[str]]:
    """repair_program on the last python block of an answer, the rest of the text kept."""
    blocks = list(re.finditer(r"```(?:python|py)?[ \t]*\n(.*?)```", text, re.S))
    if not blocks:
        return text, []
    last = blocks[-1]
    fixed, applied = repair_program(last.group(1))
    return text[:last.start(1)] + fixed + text[last.end(1):], applied
