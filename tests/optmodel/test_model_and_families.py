"""The structured form against hand-computed optima and a second solver (SCIP), LP files through HiGHS's own
reader, and every problem family: solvable, with every number of its model in its statement."""
import math
import re

import numpy as np
import pytest

from jaxsuite.optmodel import families as F
from jaxsuite.optmodel.model import Constraint, LinearModel, from_lp, solve, solve_scip, to_lp


def _toy() -> LinearModel:
    # max 3x + 2y  s.t. x + y <= 4, x + 3y <= 6, x <= 3 (bound), x, y >= 0: the optimum is x=3, y=1 -> 11
    m = LinearModel("toy", "maximize")
    m.variable("x", upper=3)
    m.variable("y")
    m.constrain("total", {"x": 1, "y": 1}, "<=", 4)
    m.constrain("mix", {"x": 1, "y": 3}, "<=", 6)
    m.objective = {"x": 3, "y": 2}
    return m


def test_hand_computed_optimum_in_both_solvers():
    for solution in (solve(_toy()), solve_scip(_toy())):
        assert solution.optimal and solution.objective == pytest.approx(11.0)
        assert solution.values["x"] == pytest.approx(3.0) and solution.values["y"] == pytest.approx(1.0)


def test_integrality_and_infeasibility():
    m = LinearModel("int", "maximize")
    m.variable("x", kind="integer")
    m.constrain("cap", {"x": 2}, "<=", 7)          # x <= 3.5 -> 3 as an integer
    m.objective = {"x": 1}
    assert solve(m).objective == pytest.approx(3.0) and solve_scip(m).objective == pytest.approx(3.0)
    m.constrain("floor", {"x": 1}, ">=", 5)
    assert solve(m).status == "infeasible" and solve_scip(m).status == "infeasible"


def test_lp_round_trip_keeps_the_model():
    m = _toy()
    m.variable("pick", kind="binary")
    m.variable("count", kind="integer", lower=-2, upper=9)
    m.variable("free", lower=-math.inf)
    m.constrain("link", {"x": 1, "pick": -3}, "<=", 0)
    m.constrain("balance", {"count": 1, "free": 1, "y": -0.5}, "==", 1.25)
    m.constrain("floor", {"free": 1}, ">=", -4)
    m.objective_constant = 7.5
    text = to_lp(m)
    again = from_lp(text)
    assert again.name == "toy" and again.sense == "maximize"
    assert again.variables == m.variables
    assert [c.name for c in again.constraints] == [c.name for c in m.constraints]
    assert all(a.same_as(b) for a, b in zip(again.constraints, m.constraints))
    assert again.objective == {k: float(v) for k, v in m.objective.items()}
    assert again.objective_constant == 7.5
    assert solve(again).objective == pytest.approx(solve(m).objective)


def test_bad_inputs_fail_in_one_line():
    with pytest.raises(ValueError, match="does not parse"):
        from_lp("Maximize\n obj: 3 x +\nSubject To\n c: x <== 4\nEnd\n")
    with pytest.raises(ValueError, match="empty"):
        from_lp("  \n")
    m = LinearModel()
    m.variable("x")
    with pytest.raises(ValueError, match="undeclared variables"):
        m.constrain("c", {"x": 1, "z": 2}, "<=", 1)
    with pytest.raises(ValueError, match="sense"):
        m.constrain("c", {"x": 1}, "<", 1)
    with pytest.raises(ValueError, match="not an identifier"):
        m.variable("2x")
    with pytest.raises(ValueError, match="no nonzero"):
        m.constrain("c", {"x": 0}, "<=", 1)


def test_same_as_compares_inequalities_not_rows():
    c = Constraint("a", {"x": 2, "y": 4}, "<=", 8)
    assert c.same_as(Constraint("b", {"x": -1, "y": -2}, ">=", -4))     # negated and halved
    assert not c.same_as(Constraint("b", {"x": 2, "y": 4}, "<=", 9))    # weakened
    assert not c.same_as(Constraint("b", {"x": 2, "y": 4}, ">=", 8))    # reversed


@pytest.mark.parametrize("family", sorted(F.FAMILIES))
def test_family_optima_agree_with_scip_and_statements_hold_the_numbers(family):
    rng = np.random.default_rng(3)
    for size in ("toy", "small"):
        for phrasing in range(F.PHRASINGS):
            problem = F.generate(family, rng=rng, size=size, phrasing=phrasing)
            second = solve_scip(problem.model)
            assert second.optimal and second.objective == pytest.approx(problem.optimum, rel=1e-6, abs=1e-6)
            numbers = set(re.findall(r"\d+", problem.statement))
            for c in problem.model.constraints:       # every right-hand side the statement must state
                # the big-M rows, linking rows (rhs 0) and assignment's "exactly one" are structure, not data
                if c.rhs > 0 and not c.name.startswith(("late_", "no_overlap", "capacity_", "one_")):
                    assert str(int(c.rhs)) in numbers, (family, c.name, c.rhs)
            for coef in problem.model.objective.values():
                assert str(int(abs(coef))) in numbers, (family, coef)
    a = F.generate(family, rng=np.random.default_rng(1), size="toy", phrasing=0).statement
    b = F.generate(family, rng=np.random.default_rng(1), size="toy", phrasing=1).statement
    assert a != b                                       # two phrasings of the same draw


def test_medium_sizes_reach_thousands_of_variables():
    rng = np.random.default_rng(0)
    sizes = {f: len(F.generate(f, rng=rng, size="medium", solve_it=False).model.variables)
             for f in ("transportation", "assignment", "facility")}
    assert all(n >= 1500 for n in sizes.values()), sizes
    problem = F.generate("transportation", rng=rng, size="medium")
    assert problem.optimum is not None and solve_scip(problem.model).objective == pytest.approx(problem.optimum, rel=1e-6)


def test_generate_rejects_unknown_names():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown problem family"):
        F.generate("routing", rng=rng)
    with pytest.raises(ValueError, match="unknown size"):
        F.generate("knapsack", rng=rng, size="huge")
