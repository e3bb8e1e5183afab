"""The execution check on hand-written programs in several solver APIs (correct, wrong, infeasible,
crashing, non-terminating, printing in their own words), on our rendered programs in every API, and the
correctness rules and majority vote against hand-computed values."""
import math

import numpy as np
import pytest

from jaxsuite.agents.sandbox import SandboxPool
from jaxsuite.optmodel import checker as C
from jaxsuite.optmodel import families as F
from jaxsuite.optmodel.programs import APIS, answer_text, render_program

# The toy of test_model_and_families: max 3x + 2y, x + y <= 4, x + 3y <= 6, x <= 3 -> 11 at (3, 1).
CVXPY_OK = """
import cvxpy as cp
x = cp.Variable(); y = cp.Variable()
prob = cp.Problem(cp.Maximize(3*x + 2*y), [x + y <= 4, x + 3*y <= 6, x <= 3, x >= 0, y >= 0])
prob.solve()
print("done")
"""
PULP_WRONG = """
import pulp
prob = pulp.LpProblem("t", pulp.LpMaximize)
x = pulp.LpVariable("x", 0, 3); y = pulp.LpVariable("y", 0)
prob += 3*x + 2*y
prob += x + y <= 4
prob += x + 3*y <= 5          # a misread right-hand side: the optimum becomes 10.33 at (3, 2/3)
prob.solve(pulp.PULP_CBC_CMD(msg=False))
print("Total profit:", pulp.value(prob.objective))
"""
SCIP_INFEASIBLE = """
from pyscipopt import Model
m = Model(); m.hideOutput()
x = m.addVar("x", lb=0, ub=3)
m.addCons(x >= 5)
m.setObjective(x, "maximize")
m.optimize()
print(m.getStatus())
"""
HIGHSPY_INSIDE_A_FUNCTION = """
import highspy

def main():
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    x = h.addVariable(lb=0, ub=3); y = h.addVariable(lb=0)
    h.addConstr(x + y <= 4); h.addConstr(x + 3 * y <= 6)
    h.maximize(3 * x + 2 * y)
    print(f"The maximum profit is ${h.getInfo().objective_function_value:,.2f}")

main()
"""
SCIPY_CRASH = """
from scipy.optimize import linprog
res = linprog([-3, -2], A_ub=[[1, 1], [1, 3]], b_ub=[4, 6, 7], bounds=[(0, 3), (0, None)])
print(res.fun)
"""
LOOP = """
import pulp
while True:
    pass
"""


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2) as p:
        yield p


def test_hand_written_programs_in_several_apis(pool):
    check = lambda text, **kw: C.check_program(text, 11, timeout=20, pool=pool, **kw)
    ok = check(f"Here is my model.\n```python\n{CVXPY_OK}```\nDone.")
    assert (ok.outcome, ok.correct) == ("optimum", True) and ok.objective == pytest.approx(11.0)   # read by the probe
    wrong = check(PULP_WRONG)
    assert wrong.outcome == "optimum" and wrong.objective == pytest.approx(3 * 3 + 2 * (2 / 3))
    assert not wrong.correct and not C.check_program(PULP_WRONG, 11, rule="strict", pool=pool).correct
    infeasible = check(SCIP_INFEASIBLE)
    assert (infeasible.outcome, infeasible.objective, infeasible.correct) == ("no_optimum", None, False)
    printed = check(HIGHSPY_INSIDE_A_FUNCTION)                     # no solver object left: the printed line
    assert (printed.outcome, printed.correct) == ("optimum", True) and printed.objective == pytest.approx(11.0)
    crash = check(SCIPY_CRASH)
    assert crash.outcome == "failed" and "ValueError" in crash.stderr
    loop = C.check_program(LOOP, 11, timeout=3, pool=pool)
    assert loop.outcome == "timeout" and loop.seconds < 20
    assert C.check_program("I would use a knapsack model.", 11).outcome == "no_code"
    odd = check("```python\nprint('the plan is ready: 3 trucks at 2 depots')\n```")
    assert odd.outcome == "unexpected_output"


def test_rendered_programs_reach_the_optimum_in_every_api(pool):
    problem = F.generate("facility", rng=np.random.default_rng(5), size="toy")
    texts = [answer_text(problem.model, api) for api in APIS]
    results = [C.check_program(t, problem.optimum, rule="strict", timeout=30, pool=pool) for t in texts]
    assert [(r.outcome, r.correct) for r in results] == [("optimum", True)] * len(APIS), \
        [(api, r.outcome, r.stderr[-300:]) for api, r in zip(APIS, results)]
    assert "Optimal objective:" in render_program(problem.model, "pulp")
    with pytest.raises(ValueError, match="unknown solver API"):
        render_program(problem.model, "gams")


def test_read_optimum_prefers_the_objective_line():
    assert C.read_optimum("x = 3\ny = 1\nOptimal objective: 11.0\n") == ("optimum", 11.0)
    assert C.read_optimum("Status: Optimal\nTotal cost = 1,234.5\nx = 2\n") == ("optimum", 1234.5)
    assert C.read_optimum("No Best Solution\n") == ("no_optimum", None)
    assert C.read_optimum("The problem is infeasible\n") == ("no_optimum", None)
    assert C.read_optimum("42\n") == ("optimum", 42.0)
    assert C.read_optimum("x 1\ny 2\n") == ("unexpected_output", None)
    probe = C.MARK + '[["infeasible", null]]'
    assert C.read_optimum("Optimal objective: 5\n" + probe) == ("no_optimum", None)   # the solver's word wins


@pytest.mark.parametrize("predicted, reference, rule, expected", [
    (10.6, 11, "orlm", True),          # rounded 11 vs 11
    (10.4, 11, "orlm", False),         # rounded 10 vs 11: 9.1% off
    (104.0, 100, "orlm", True),        # 4% off
    (106.0, 100, "orlm", False),       # 6% off
    (0.4, 0, "orlm", True),            # rounds to 0: absolute at 0
    (0.6, 0, "orlm", False),
    (11.0005, 11, "strict", True),     # relative 4.5e-5
    (11.002, 11, "strict", False),     # relative 1.8e-4
    (57.004, "57.0", "mamo", True),    # d = 2: 0.004 * 100 < 1
    (57.02, "57.0", "mamo", False),    # 0.02 * 100 = 2, relative 3.5e-4
    (3.14159, "3.1416", "mamo", True), # d = 4: 0.00001 * 10^4 < 1
    (None, 11, "orlm", False),
    (math.nan, 11, "strict", False),
])
def test_correctness_rules(predicted, reference, rule, expected):
    assert C.compare(predicted, reference, rule) is expected


def test_unknown_rule_is_an_error():
    with pytest.raises(ValueError, match="unknown correctness rule"):
        C.compare(1.0, 1.0, "loose")


def test_majority_vote():
    r = lambda o, v: C.CheckResult(o, v, False)
    samples = [r("optimum", 11.2), r("optimum", 10.9), r("optimum", 25.0), r("failed", None), r("optimum", 11.4)]
    assert C.majority_vote(samples, 11, "orlm")                   # 11, 11, 25, 11 -> 11
    assert not C.majority_vote(samples[2:4], 11, "orlm")          # only 25 reported
    assert not C.majority_vote([r("timeout", None)], 11)
    shares = C.outcome_shares(samples)
    assert shares["optimum"] == pytest.approx(0.8) and shares["failed"] == pytest.approx(0.2)
