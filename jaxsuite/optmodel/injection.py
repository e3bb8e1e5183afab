"""Constraint injection: an existing model plus a new business rule in words -> the complete modified model.

    task = make_injection(problem.model, rng)           # a rule that changes the optimum, with its constraint
    prompt = injection_prompt(task)                     # the model as an LP file, then the rule
    report = verify_injection(task, answer_text)        # the answer's LP model, checked by solving

What a correct answer must do, each checked separately (InjectionReport):
    parsed            the answer holds an LP model HiGHS can read
    objective_kept    the same objective: sense, coefficients and constant
    variables_kept    the same variables with the same kinds and bounds
    constraints_kept  every original constraint is still there, unchanged (compared as inequalities, so
                      renaming or rescaling a row is allowed, weakening it is not)
    rule_holds        the new optimum satisfies the rule
    optimum_matches   the answer's optimum equals the optimum of the original model plus the rule's own
                      constraint (an answer that adds a different constraint which happens to hold at its own
                      optimum still fails here)
`ok` is all of them. The rule is chosen to be binding: the original optimum violates it, so an answer that
returns the model unchanged fails `rule_holds`.
"""
from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

from jaxsuite.optmodel.model import Constraint, LinearModel, from_lp, solve, to_lp

INJECTION_TEMPLATE = ("Here is an optimisation model in LP format:\n```lp\n{lp}```\n"
                      "New business rule: {rule}\n"
                      "Write the complete modified model in LP format, keeping the objective and every "
                      "existing constraint.\n")


@dataclasses.dataclass
class InjectionTask:
    original: LinearModel
    rule: str                             # the rule in words
    constraint: Constraint                # the rule as a constraint (the ground truth)
    optimum_before: float
    optimum_after: float

    def target(self) -> LinearModel:
        modified = self.original.copy()
        modified.constraints.append(self.constraint)
        return modified


@dataclasses.dataclass
class InjectionReport:
    parsed: bool
    objective_kept: bool = False
    variables_kept: bool = False
    constraints_kept: bool = False
    rule_holds: bool = False
    optimum_matches: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return all((self.parsed, self.objective_kept, self.variables_kept, self.constraints_kept,
                    self.rule_holds, self.optimum_matches))

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "ok": self.ok}


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.4g}"


def _candidates(model: LinearModel, values: dict[str, float], rng: np.random.Generator):
    """Rules the original optimum violates, in a random order of kinds: (rule text, constraint)."""
    positive = [v for v in model.names if values.get(v, 0.0) > 1e-6]
    zero = [v for v in model.names if values.get(v, 0.0) <= 1e-6 and model.variables[v].upper > 0]
    rng.shuffle(positive)
    rng.shuffle(zero)
    kinds = ["upper", "pair", "lower", "ratio"]
    rng.shuffle(kinds)
    for kind in kinds:
        if kind == "upper" and positive:
            v = positive[0]
            k = math.floor(values[v] / 2) if model.variables[v].kind != "continuous" else round(values[v] / 2, 2)
            yield f"`{v}` may not exceed {_fmt(k)}.", Constraint("rule", {v: 1.0}, "<=", float(k))
        if kind == "pair" and len(positive) >= 2:
            a, b = positive[:2]
            k = math.floor((values[a] + values[b]) * 0.75)
            yield (f"the total of `{a}` and `{b}` may be at most {_fmt(k)}.",
                   Constraint("rule", {a: 1.0, b: 1.0}, "<=", float(k)))
        if kind == "lower" and zero:
            v = zero[0]
            k = 1.0 if model.variables[v].kind != "continuous" else 1.0
            yield f"`{v}` must be at least {_fmt(k)}.", Constraint("rule", {v: 1.0}, ">=", k)
        if kind == "ratio" and positive and zero:
            a, b = zero[0], positive[0]
            yield (f"`{b}` may be at most twice `{a}`.", Constraint("rule", {b: 1.0, a: -2.0}, "<=", 0.0))


def make_injection(model: LinearModel, rng: np.random.Generator) -> InjectionTask:
    """A binding rule for `model` that keeps it feasible (solved to check both). Raises ValueError when the
    model has no optimum or no candidate rule keeps it feasible."""
    before = solve(model)
    if not before.optimal:
        raise ValueError(f"model {model.name} has no optimum ({before.status}); nothing to inject into")
    for rule, constraint in _candidates(model, before.values, rng):
        after = solve(model, extra=[constraint])
        if after.optimal and abs(after.objective - before.objective) > 1e-6 * max(1.0, abs(before.objective)):
            return InjectionTask(model, rule, constraint, before.objective, after.objective)
    raise ValueError(f"no binding rule keeps model {model.name} feasible")


def injection_prompt(task: InjectionTask) -> str:
    return INJECTION_TEMPLATE.format(lp=to_lp(task.original), rule=task.rule)


def injection_answer(task: InjectionTask) -> str:
    """The reference answer: the original LP with the rule appended as one more constraint."""
    return f"```lp\n{to_lp(task.target())}```\n"


def extract_lp(text: str) -> str:
    blocks = re.findall(r"```(?:lp|cplex)?[ \t]*\n(.*?)```", text, re.S | re.I)
    return blocks[-1] if blocks else text


def verify_injection(task: InjectionTask, answer: str | LinearModel, *, tol: float = 1e-6) -> InjectionReport:
    """Checks an answer (LP text, or a model) against the task by comparing and solving (module docstring)."""
    if isinstance(answer, LinearModel):
        modified = answer
    else:
        try:
            modified = from_lp(extract_lp(answer))
        except ValueError as e:
            return InjectionReport(parsed=False, error=str(e))
    original = task.original
    report = InjectionReport(parsed=True)
    report.objective_kept = (modified.sense == original.sense
                             and abs(modified.objective_constant - original.objective_constant) <= tol
                             and set(modified.objective) == set(original.objective)
                             and all(abs(modified.objective[v] - c) <= tol for v, c in original.objective.items()))
    report.variables_kept = (set(modified.variables) == set(original.variables)
                             and all(modified.variables[n].kind == v.kind and modified.variables[n].lower == v.lower
                                     and modified.variables[n].upper == v.upper
                                     for n, v in original.variables.items()))
    remaining = list(modified.constraints)
    kept = True
    for c in original.constraints:
        match = next((i for i, d in enumerate(remaining) if c.same_as(d)), None)
        if match is None:
            kept = False
            break
        remaining.pop(match)
    report.constraints_kept = kept
    try:
        solution = solve(modified)
    except ValueError as e:
        report.error = f"could not solve the answer's model: {e}"
        return report
    if not solution.optimal:
        report.error = f"the answer's model is {solution.status}"
        return report
    report.rule_holds = task.constraint.holds(solution.values, tol=1e-5)
    report.optimum_matches = abs(solution.objective - task.optimum_after) <= 1e-6 * max(1.0, abs(task.optimum_after))
    return report
