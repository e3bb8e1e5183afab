"""The structured MILP form every part of EvoOpt works on: variables, linear constraints, a linear objective.

    m = LinearModel("toy", sense="maximize")
    x = m.variable("x", kind="integer", upper=10)
    m.constrain("capacity", {"x": 2, "y": 1}, "<=", 14)
    m.objective = {"x": 3, "y": 2}
    solution = solve(m)                        # HiGHS through scipy.optimize.milp
    check = solve_scip(m)                      # the same model in SCIP: a second, independent solver
    text = to_lp(m); again = from_lp(text)     # CPLEX LP format; read back by HiGHS's own LP reader

One form serves the generator (ground truth), the constraint-injection check (models compared constraint by
constraint), the GNN's bipartite graph (the coefficient matrix) and the program renderers (the same model
written for cvxpy, PuLP, SCIP, HiGHS or SciPy). Names are LP-safe identifiers, so a model survives an LP file
unchanged.
"""
from __future__ import annotations

import dataclasses
import math
import re
import tempfile
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from jaxsuite.core.extras import require

SENSES = ("<=", ">=", "==")
KINDS = ("continuous", "integer", "binary")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class Variable:
    name: str
    lower: float = 0.0
    upper: float = math.inf
    kind: str = "continuous"


@dataclasses.dataclass(frozen=True)
class Constraint:
    name: str
    terms: Mapping[str, float]            # variable name -> coefficient
    sense: str                            # <= | >= | ==
    rhs: float

    def holds(self, values: Mapping[str, float], tol: float = 1e-6) -> bool:
        lhs = sum(c * values.get(v, 0.0) for v, c in self.terms.items())
        scale = tol * max(1.0, abs(self.rhs))
        return {"<=": lhs <= self.rhs + scale, ">=": lhs >= self.rhs - scale,
                "==": abs(lhs - self.rhs) <= scale}[self.sense]

    def same_as(self, other: "Constraint", tol: float = 1e-9) -> bool:
        """The same linear inequality (names aside), up to a positive rescaling and with >= written as <=."""
        a, b = self.normalised(), other.normalised()
        if a[1] != b[1] or set(a[0]) != set(b[0]):
            return False
        return all(abs(a[0][v] - b[0][v]) <= tol for v in a[0]) and abs(a[2] - b[2]) <= tol

    def normalised(self) -> tuple[dict[str, float], str, float]:
        """(terms, sense, rhs) with >= flipped to <= and the largest coefficient scaled to 1."""
        sign = -1.0 if self.sense == ">=" else 1.0
        terms = {v: sign * c for v, c in self.terms.items() if c != 0}
        scale = max((abs(c) for c in terms.values()), default=1.0)
        if self.sense == "==":   # an equality has no direction: make its first nonzero coefficient positive
            first = terms[min(terms)] if terms else 1.0
            scale = math.copysign(scale, first)
        return ({v: c / scale for v, c in terms.items()}, "<=" if self.sense != "==" else "==",
                sign * self.rhs / scale)


@dataclasses.dataclass
class Solution:
    status: str                           # optimal | infeasible | unbounded | time_limit | error
    objective: float | None
    values: dict[str, float]
    seconds: float
    solver: str
    pool: list[tuple[float, dict[str, float]]] = dataclasses.field(default_factory=list)  # (objective, values)

    @property
    def optimal(self) -> bool:
        return self.status == "optimal"


class LinearModel:
    """A mixed-integer linear program with named variables and constraints."""

    def __init__(self, name: str = "model", sense: str = "minimize"):
        if sense not in ("minimize", "maximize"):
            raise ValueError(f"objective sense must be minimize or maximize, got {sense!r}")
        self.name, self.sense = name, sense
        self.variables: dict[str, Variable] = {}
        self.constraints: list[Constraint] = []
        self.objective: dict[str, float] = {}
        self.objective_constant = 0.0

    def variable(self, name: str, *, lower: float = 0.0, upper: float = math.inf,
                 kind: str = "continuous") -> str:
        if not _NAME.match(name):
            raise ValueError(f"variable name {name!r} is not an identifier (letters, digits, _)")
        if kind not in KINDS:
            raise ValueError(f"variable kind must be one of {KINDS}, got {kind!r}")
        if name in self.variables:
            raise ValueError(f"variable {name!r} is declared twice")
        if kind == "binary":
            lower, upper = 0.0, 1.0
        self.variables[name] = Variable(name, float(lower), float(upper), kind)
        return name

    def constrain(self, name: str, terms: Mapping[str, float], sense: str, rhs: float) -> Constraint:
        if sense not in SENSES:
            raise ValueError(f"constraint {name!r}: sense must be one of {SENSES}, got {sense!r}")
        unknown = sorted(set(terms) - set(self.variables))
        if unknown:
            raise ValueError(f"constraint {name!r} uses undeclared variables {unknown}")
        if any(c.name == name for c in self.constraints):
            raise ValueError(f"constraint {name!r} is declared twice")
        terms = {v: float(c) for v, c in terms.items() if c != 0}
        if not terms:
            raise ValueError(f"constraint {name!r} has no nonzero coefficient")
        constraint = Constraint(name, terms, sense, float(rhs))
        self.constraints.append(constraint)
        return constraint

    def copy(self, name: str | None = None) -> "LinearModel":
        other = LinearModel(name or self.name, self.sense)
        other.variables = dict(self.variables)
        other.constraints = list(self.constraints)
        other.objective = dict(self.objective)
        other.objective_constant = self.objective_constant
        return other

    @property
    def names(self) -> list[str]:
        return list(self.variables)

    def objective_value(self, values: Mapping[str, float]) -> float:
        return self.objective_constant + sum(c * values.get(v, 0.0) for v, c in self.objective.items())

    def feasible(self, values: Mapping[str, float], tol: float = 1e-6) -> bool:
        for v in self.variables.values():
            x = values.get(v.name, 0.0)
            if x < v.lower - tol or x > v.upper + tol:
                return False
            if v.kind != "continuous" and abs(x - round(x)) > tol:
                return False
        return all(c.holds(values, tol) for c in self.constraints)

    def matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Constraint rows as (A [C, V], lower [C], upper [C]) in the order of `names`."""
        index = {n: i for i, n in enumerate(self.variables)}
        a = np.zeros((len(self.constraints), len(index)))
        lower = np.full(len(self.constraints), -np.inf)
        upper = np.full(len(self.constraints), np.inf)
        for row, c in enumerate(self.constraints):
            for v, coef in c.terms.items():
                a[row, index[v]] = coef
            if c.sense in ("<=", "=="):
                upper[row] = c.rhs
            if c.sense in (">=", "=="):
                lower[row] = c.rhs
        return a, lower, upper

    def __repr__(self) -> str:
        kinds = {k: sum(v.kind == k for v in self.variables.values()) for k in KINDS}
        return (f"LinearModel({self.name!r}, {self.sense}, {len(self.variables)} variables {kinds}, "
                f"{len(self.constraints)} constraints)")


def solve(model: LinearModel, *, time_limit: float | None = None,
          fixed: Mapping[str, float] | None = None,
          extra: list[Constraint] = ()) -> Solution:
    """Solves with HiGHS (scipy.optimize.milp). `fixed` pins variables to values; `extra` adds constraints."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    names = model.names
    index = {n: i for i, n in enumerate(names)}
    sign = -1.0 if model.sense == "maximize" else 1.0
    c = np.zeros(len(names))
    for v, coef in model.objective.items():
        c[index[v]] = sign * coef
    lower = np.array([model.variables[n].lower for n in names])
    upper = np.array([model.variables[n].upper for n in names])
    for v, value in (fixed or {}).items():
        lower[index[v]] = upper[index[v]] = value
    integrality = np.array([model.variables[n].kind != "continuous" for n in names], dtype=int)
    work = model.copy()
    for constraint in extra:
        work.constraints.append(constraint)
    a, lo, hi = work.matrix()
    constraints = [LinearConstraint(a, lo, hi)] if len(work.constraints) else []
    options = {"time_limit": float(time_limit)} if time_limit else {}
    start = time.perf_counter()
    result = milp(c, constraints=constraints, integrality=integrality, bounds=Bounds(lower, upper),
                  options=options)
    seconds = time.perf_counter() - start
    status = {0: "optimal", 1: "time_limit", 2: "infeasible", 3: "unbounded"}.get(result.status, "error")
    if result.x is None:
        return Solution(status, None, {}, seconds, "highs")
    values = {n: float(x) for n, x in zip(names, result.x)}
    return Solution(status, model.objective_value(values), values, seconds, "highs")


def solve_scip(model: LinearModel, *, time_limit: float | None = None, pool: int = 0,
               extra: list[Constraint] = ()) -> Solution:
    """Solves with SCIP (pyscipopt): the second solver the generator's optima are checked against, and the
    source of the solution pools the GNN learns from (`pool`: up to that many solutions SCIP found)."""
    require("pyscipopt", extra="opt", for_="jaxsuite.optmodel (EvoOpt-LLM)", load=False)
    import pyscipopt as scip
    m = scip.Model(model.name)
    m.hideOutput()
    if time_limit:
        m.setParam("limits/time", float(time_limit))
    vtype = {"continuous": "C", "integer": "I", "binary": "B"}
    xs = {}
    for v in model.variables.values():
        xs[v.name] = m.addVar(v.name, vtype=vtype[v.kind], lb=None if v.lower == -math.inf else v.lower,
                              ub=None if v.upper == math.inf else v.upper)
    for c in [*model.constraints, *extra]:
        lhs = scip.quicksum(coef * xs[v] for v, coef in c.terms.items())
        m.addCons({"<=": lhs <= c.rhs, ">=": lhs >= c.rhs, "==": lhs == c.rhs}[c.sense], name=c.name)
    m.setObjective(scip.quicksum(coef * xs[v] for v, coef in model.objective.items()) + model.objective_constant,
                   model.sense)
    start = time.perf_counter()
    m.optimize()
    seconds = time.perf_counter() - start
    raw = m.getStatus()
    status = {"optimal": "optimal", "infeasible": "infeasible", "unbounded": "unbounded",
              "inforunbd": "infeasible", "timelimit": "time_limit"}.get(raw, "error")
    if m.getNSols() == 0:
        return Solution(status, None, {}, seconds, "scip")
    best = m.getBestSol()
    values = {n: float(m.getSolVal(best, x)) for n, x in xs.items()}
    solutions = []
    for sol in m.getSols()[:pool] if pool else []:
        vals = {n: float(m.getSolVal(sol, x)) for n, x in xs.items()}
        solutions.append((model.objective_value(vals), vals))
    return Solution(status, model.objective_value(values), values, seconds, "scip", solutions)


# ---------------------------------------------------------------------------------------------- LP files

def _lp_terms(terms: Mapping[str, float]) -> str:
    parts = []
    for i, (v, c) in enumerate(terms.items()):
        sign = "-" if c < 0 else "+"
        coef = f"{abs(c):.17g}"
        parts.append(f"{'' if i == 0 and sign == '+' else sign + ' '}{'' if coef == '1' else coef + ' '}{v}")
    return " ".join(parts)


def to_lp(model: LinearModel) -> str:
    """The model in CPLEX LP format, the file format solvers and the paper's injection module share."""
    lines = [f"\\ {model.name}", "Maximize" if model.sense == "maximize" else "Minimize"]
    objective = _lp_terms(model.objective) if model.objective else ""
    if model.objective_constant:
        objective = f"{objective} {'+' if model.objective_constant >= 0 else '-'} {abs(model.objective_constant):.17g}"
    lines.append(f" obj: {objective.strip() or '0'}")
    lines.append("Subject To")
    for c in model.constraints:
        sense = {"<=": "<=", ">=": ">=", "==": "="}[c.sense]
        lines.append(f" {c.name}: {_lp_terms(c.terms)} {sense} {c.rhs:.17g}")
    lines.append("Bounds")
    for v in model.variables.values():
        if v.kind == "binary":
            continue
        lo = "-inf" if v.lower == -math.inf else f"{v.lower:.17g}"
        hi = "+inf" if v.upper == math.inf else f"{v.upper:.17g}"
        lines.append(f" {lo} <= {v.name} <= {hi}")
    for header, kind in (("General", "integer"), ("Binary", "binary")):
        names = [v.name for v in model.variables.values() if v.kind == kind]
        if names:
            lines.append(header)
            lines.extend(f" {n}" for n in names)
    lines.append("End")
    return "\n".join(lines) + "\n"


def from_lp(text: str, name: str | None = None) -> LinearModel:
    """Reads an LP file's text with HiGHS's own reader (highspy) into the structured form.

    A ranged row (finite lower and upper bounds that differ) becomes two constraints, `<name>_lo` and
    `<name>_hi`. Raises ValueError, naming the reader's complaint, when the text is not a valid LP model."""
    require("highspy", extra="opt", for_="jaxsuite.optmodel (EvoOpt-LLM)", load=False)
    import highspy
    if not text.strip():
        raise ValueError("LP model text is empty")
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.lp"
        path.write_text(text)
        status = h.readModel(str(path))
    if status == highspy.HighsStatus.kError:
        raise ValueError("LP model text does not parse (HiGHS's LP reader rejected it)")
    lp = h.getLp()
    sense = "maximize" if lp.sense_ == highspy.ObjSense.kMaximize else "minimize"
    model = LinearModel(name or _lp_name(text), sense)
    integrality = list(lp.integrality_) if len(lp.integrality_) else []
    col_names = list(lp.col_names_)
    for j, n in enumerate(col_names):
        integer = bool(integrality) and integrality[j] == highspy.HighsVarType.kInteger
        lo, hi = float(lp.col_lower_[j]), float(lp.col_upper_[j])
        kind = ("binary" if integer and lo == 0 and hi == 1 else "integer") if integer else "continuous"
        model.variable(n, lower=lo, upper=hi, kind=kind)
    model.objective = {n: float(c) for n, c in zip(col_names, lp.col_cost_) if c != 0}
    model.objective_constant = float(lp.offset_)
    rows: list[dict[str, float]] = [{} for _ in range(lp.num_row_)]
    a = lp.a_matrix_
    starts, index, value = list(a.start_), list(a.index_), list(a.value_)
    for j in range(lp.num_col_):       # HiGHS keeps the matrix column-wise
        for k in range(starts[j], starts[j + 1]):
            rows[index[k]][col_names[j]] = float(value[k])
    row_names = list(lp.row_names_) or [f"c{i}" for i in range(lp.num_row_)]
    for i, terms in enumerate(rows):
        lo, hi = float(lp.row_lower_[i]), float(lp.row_upper_[i])
        ordered = {n: terms[n] for n in col_names if n in terms}
        if lo == hi:
            model.constrain(row_names[i], ordered, "==", lo)
        elif lo == -math.inf:
            model.constrain(row_names[i], ordered, "<=", hi)
        elif hi == math.inf:
            model.constrain(row_names[i], ordered, ">=", lo)
        else:
            model.constrain(row_names[i] + "_lo", ordered, ">=", lo)
            model.constrain(row_names[i] + "_hi", ordered, "<=", hi)
    return model


def _lp_name(text: str) -> str:
    first = text.lstrip().split("\n", 1)[0]
    return (first[1:].strip() or "model") if first.startswith("\\") else "model"
