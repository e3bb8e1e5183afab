"""Rule-based repair: each rule on the mistake it is for, programs that need none left alone, and repaired
programs that then run (checked in the sandbox against the optimum)."""
import pytest

from jaxsuite.optmodel import checker as C
from jaxsuite.optmodel.repair import repair_answer, repair_program

GOOD = """import cvxpy as cp
make_chairs = cp.Variable(integer=True)
make_tables = cp.Variable(integer=True)
constraints = [make_chairs >= 0, make_tables >= 0,
    2 * make_chairs + 3 * make_tables <= 12,
]
problem = cp.Problem(cp.Maximize(5 * make_chairs + 9 * make_tables), constraints)
problem.solve(solver=cp.HIGHS)
print('Optimal objective:', problem.value)
"""   # max 5c + 9t, 2c + 3t <= 12, integers: t = 4 -> 36 (c = 6 -> 30; c = 3, t = 2 -> 33)


def test_a_correct_program_is_left_alone():
    assert repair_program(GOOD) == (GOOD, [])


@pytest.mark.parametrize("broken, rule", [
    (GOOD.replace("<= 12", "≤ 12"), "operators"),
    (GOOD.replace("<= 12", "=< 12"), "operators"),
    (GOOD.replace("import cvxpy as cp\n", ""), "imports"),
    (GOOD.replace("5 * make_chairs", "5 * make_chair"), "names"),
    (GOOD.replace("cp.HIGHS", "cp.GUROBI"), "solver_api"),
    (GOOD[:GOOD.index("12,") + 3], "unclosed"),        # a generation cut at its token limit
])
def test_each_rule_restores_the_program(broken, rule):
    fixed, applied = repair_program(broken)
    assert rule in applied, (applied, fixed)
    if rule != "unclosed":
        assert fixed.replace("\n", "") == GOOD.replace("\n", "") or fixed == GOOD


def test_lone_equals_in_a_constraint_becomes_equality():
    code = "import pulp\nprob = pulp.LpProblem('t', pulp.LpMinimize)\nx = pulp.LpVariable('x', 0)\nprob += x\nprob += x = 3\n"
    fixed, applied = repair_program(code)
    assert applied == ["operators"] and "prob += x == 3" in fixed
    keyword = "import pulp\nx = pulp.LpVariable('x', lowBound = 0)\n"     # parses: a keyword, not a constraint
    assert repair_program(keyword) == (keyword, [])


def test_ambiguous_names_are_not_guessed():
    code = "import cvxpy as cp\nship_a1 = 1\nship_a2 = 2\nprint(ship_a3)\n"
    assert repair_program(code) == (code, [])


def test_repaired_programs_run():
    broken = GOOD.replace("import cvxpy as cp\n", "").replace("5 * make_chairs", "5 * make_chair").replace("<= 12", "≤ 12")
    answer = f"Model: ...\n```python\n{broken}```\n"
    assert C.check_program(answer, 36, timeout=30).outcome == "failed"
    fixed, applied = repair_answer(answer)
    assert set(applied) == {"operators", "imports", "names"} and fixed.startswith("Model: ...")
    result = C.check_program(fixed, 36, timeout=30)
    assert (result.outcome, result.correct) == ("optimum", True)
