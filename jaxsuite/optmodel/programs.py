"""A structured model written as the solver program people write, in five APIs.

    code = render_program(model, api="cvxpy")      # or pulp, pyscipopt, highspy, scipy

Every program prints `Optimal objective: <value>` when its solver proves optimality and `No Best Solution`
otherwise, the line the execution check (jaxsuite.optmodel.checker) reads first. The cvxpy program is the
reference program of a generated problem and the target the model-construction SFT teaches; the others let
the checker be tested on the same model in every API it claims to read.
"""
from __future__ import annotations

import math

from jaxsuite.optmodel.model import LinearModel

APIS = ("cvxpy", "pulp", "pyscipopt", "highspy", "scipy")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _expr(terms: dict[str, float], wrap=lambda v: v) -> str:
    parts = []
    for i, (v, c) in enumerate(terms.items()):
        sign = "-" if c < 0 else "+"
        coef = "" if abs(c) == 1 else f"{_num(abs(c))} * "
        parts.append(f"{'' if i == 0 and sign == '+' else sign + ' '}{coef}{wrap(v)}")
    return " ".join(parts) if parts else "0"


def _op(sense: str) -> str:
    return {"<=": "<=", ">=": ">=", "==": "=="}[sense]


def model_summary(model: LinearModel) -> str:
    """The formulation as plain algebra (the "model" half of the model + code answer)."""
    kinds = {"continuous": ">= 0", "integer": "integer >= 0", "binary": "binary"}
    lines = [f"{'maximize' if model.sense == 'maximize' else 'minimize'} {_expr(model.objective)}",
             "subject to"]
    lines += [f"  {c.name}: {_expr(c.terms)} {_op(c.sense)} {_num(c.rhs)}" for c in model.constraints]
    lines += ["variables: " + ", ".join(f"{v.name} {kinds[v.kind]}" + (f" <= {_num(v.upper)}"
                                                                     if v.kind != "binary" and v.upper < math.inf else "")
                                        for v in model.variables.values())]
    return "\n".join(lines)


def _cvxpy(model: LinearModel) -> str:
    lines = ["import cvxpy as cp", ""]
    for v in model.variables.values():
        flag = {"continuous": "", "integer": ", integer=True", "binary": ", boolean=True"}[v.kind]
        lines.append(f"{v.name} = cp.Variable(name={v.name!r}{flag})")
    lines.append("constraints = [")
    for v in model.variables.values():
        if v.kind != "binary":
            if v.lower > -math.inf:
                lines.append(f"    {v.name} >= {_num(v.lower)},")
            if v.upper < math.inf:
                lines.append(f"    {v.name} <= {_num(v.upper)},")
    for c in model.constraints:
        lines.append(f"    {_expr(c.terms)} {_op(c.sense)} {_num(c.rhs)},  # {c.name}")
    lines.append("]")
    goal = "cp.Maximize" if model.sense == "maximize" else "cp.Minimize"
    lines += [f"problem = cp.Problem({goal}({_expr(model.objective)}), constraints)",
              "problem.solve(solver=cp.HIGHS)",
              "if problem.status == cp.OPTIMAL:",
              "    print('Optimal objective:', problem.value)",
              "else:",
              "    print('No Best Solution')"]
    return "\n".join(lines) + "\n"


def _pulp(model: LinearModel) -> str:
    goal = "pulp.LpMaximize" if model.sense == "maximize" else "pulp.LpMinimize"
    lines = ["import pulp", "", f"prob = pulp.LpProblem({model.name!r}, {goal})"]
    for v in model.variables.values():
        cat = {"continuous": "pulp.LpContinuous", "integer": "pulp.LpInteger", "binary": "pulp.LpBinary"}[v.kind]
        lo = "None" if v.lower == -math.inf else _num(v.lower)
        hi = "None" if v.upper == math.inf else _num(v.upper)
        lines.append(f"{v.name} = pulp.LpVariable({v.name!r}, lowBound={lo}, upBound={hi}, cat={cat})")
    lines.append(f"prob += {_expr(model.objective)}")
    for c in model.constraints:
        lines.append(f"prob += {_expr(c.terms)} {_op(c.sense)} {_num(c.rhs)}, {c.name!r}")
    lines += ["prob.solve(pulp.PULP_CBC_CMD(msg=False))",
              "if pulp.LpStatus[prob.status] == 'Optimal':",
              "    print('Optimal objective:', pulp.value(prob.objective))",
              "else:",
              "    print('No Best Solution')"]
    return "\n".join(lines) + "\n"


def _pyscipopt(model: LinearModel) -> str:
    lines = ["from pyscipopt import Model", "", f"m = Model({model.name!r})", "m.hideOutput()"]
    for v in model.variables.values():
        vt = {"continuous": "C", "integer": "I", "binary": "B"}[v.kind]
        lo = "None" if v.lower == -math.inf else _num(v.lower)
        hi = "None" if v.upper == math.inf else _num(v.upper)
        lines.append(f"{v.name} = m.addVar({v.name!r}, vtype={vt!r}, lb={lo}, ub={hi})")
    for c in model.constraints:
        lines.append(f"m.addCons({_expr(c.terms)} {_op(c.sense)} {_num(c.rhs)}, name={c.name!r})")
    lines += [f"m.setObjective({_expr(model.objective)}, {model.sense!r})", "m.optimize()",
              "if m.getStatus() == 'optimal':",
              "    print('Optimal objective:', m.getObjVal())",
              "else:",
              "    print('No Best Solution')"]
    return "\n".join(lines) + "\n"


def _highspy(model: LinearModel) -> str:
    lines = ["import highspy", "", "h = highspy.Highs()", "h.setOptionValue('output_flag', False)"]
    for v in model.variables.values():
        vt = {"continuous": "highspy.HighsVarType.kContinuous", "integer": "highspy.HighsVarType.kInteger",
              "binary": "highspy.HighsVarType.kInteger"}[v.kind]
        lo = "-highspy.kHighsInf" if v.lower == -math.inf else _num(v.lower)
        hi = "highspy.kHighsInf" if v.upper == math.inf else _num(v.upper)
        lines.append(f"{v.name} = h.addVariable(lb={lo}, ub={hi}, type={vt}, name={v.name!r})")
    for c in model.constraints:
        lines.append(f"h.addConstr({_expr(c.terms)} {_op(c.sense)} {_num(c.rhs)}, name={c.name!r})")
    goal = "h.maximize" if model.sense == "maximize" else "h.minimize"
    lines += [f"{goal}({_expr(model.objective)})",
              "if h.getModelStatus() == highspy.HighsModelStatus.kOptimal:",
              "    print('Optimal objective:', h.getInfo().objective_function_value)",
              "else:",
              "    print('No Best Solution')"]
    return "\n".join(lines) + "\n"


def _scipy(model: LinearModel) -> str:
    names = model.names
    a, lo, hi = model.matrix()
    sign = -1 if model.sense == "maximize" else 1
    c = [sign * model.objective.get(n, 0.0) for n in names]
    integrality = [int(model.variables[n].kind != "continuous") for n in names]
    lb = [model.variables[n].lower for n in names]
    ub = [model.variables[n].upper for n in names]

    def arr(x):
        return "[" + ", ".join("-np.inf" if v == -math.inf else "np.inf" if v == math.inf else _num(v)
                               for v in x) + "]"

    lines = ["import numpy as np", "from scipy.optimize import Bounds, LinearConstraint, milp", "",
             f"# variables: {', '.join(names)}",
             f"c = np.array({arr(c)})",
             "A = np.array([" + ", ".join(arr(row) for row in a) + "])",
             f"res = milp(c, constraints=[LinearConstraint(A, {arr(lo)}, {arr(hi)})],",
             f"           integrality={integrality}, bounds=Bounds({arr(lb)}, {arr(ub)}))",
             "if res.status == 0:",
             f"    print('Optimal objective:', {'-' if sign < 0 else ''}res.fun)",
             "else:",
             "    print('No Best Solution')"]
    return "\n".join(lines) + "\n"


_RENDERERS = {"cvxpy": _cvxpy, "pulp": _pulp, "pyscipopt": _pyscipopt, "highspy": _highspy, "scipy": _scipy}


def render_program(model: LinearModel, api: str = "cvxpy") -> str:
    if api not in _RENDERERS:
        raise ValueError(f"unknown solver API {api!r}; known: {APIS}")
    return _RENDERERS[api](model)


CONSTRUCTION_TEMPLATE = ("Problem: {statement}\nWrite the optimisation model, then a cvxpy program that solves it and "
                         "prints the optimal objective.\n")


def construction_prompt(statement: str) -> str:
    """The model-construction prompt: the requirement in words and what to write."""
    return CONSTRUCTION_TEMPLATE.format(statement=statement.strip())


def answer_text(model: LinearModel, api: str = "cvxpy") -> str:
    """The model-construction target: the formulation, then the program in one fenced python block."""
    return f"Model:\n{model_summary(model)}\n\n```python\n{render_program(model, api)}```\n"
