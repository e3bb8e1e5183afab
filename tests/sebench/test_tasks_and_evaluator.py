"""Generated tasks against NumPy computed directly, and the evaluator's six outcomes on hand-written solutions
(good ones, wrong ones, ones that dodge the package, and escape attempts), run in the sandbox."""
import json
import math

import numpy as np
import pytest

from jaxsuite.sebench import evaluate as E
from jaxsuite.sebench import tasks as T


@pytest.fixture(scope="module")
def splits(mapping, zwc_dir):
    return T.generate_tasks(mapping, zwc_dir, seed=0, per_function=3, multi_tasks=12)


def _numpy_form(functions, x):
    """The task's answer computed with NumPy by name: independent of the package and of the task's solution."""
    ops = {op.function: op for op in T.OPERATIONS}
    value = x
    for name in functions:
        module = np.linalg if name.startswith("linalg.") else np
        f = getattr(module, name.split(".")[-1])
        value = f(value, value) if ops[name].call.count("{x}") == 2 else (
            f(value, kind="stable") if name == "argsort" else f(value))
    return value


def test_generated_tasks_hold_numpys_answers(splits):
    assert {k: len(v) > 0 for k, v in splits.items()} == {"train": True, "test_single": True, "test_multi": True}
    for task in [t for tasks in splits.values() for t in tasks]:
        assert len(task["test_cases"]) >= 8 and task["right_exe_result"].count("#") == len(task["test_cases"]) - 1
        assert "numpy" not in task["solution"] and "np." not in task["solution"]
        for case in task["test_cases"]:
            x = json.loads(case["input"][len("x="):])
            expected = T.plain(_numpy_form(task["selected_functions"], x))
            got = E.normalise(case["output"])
            assert E.values_match(got, E.normalise(repr(expected)), 1e-9), (task["query"], x, got, expected)
            leaves = np.asarray(got, dtype=object).ravel() if isinstance(got, list) else [got]
            assert all(isinstance(v, (int, float, bool, complex)) for v in leaves)


def test_splits_test_what_training_covers(splits):
    train_functions = {f for t in splits["train"] for f in t["selected_functions"]}
    assert {f for t in splits["test_multi"] for f in t["selected_functions"]} <= train_functions
    assert all(len(t["selected_functions"]) in (2, 3) for t in splits["test_multi"])
    seen = {(t["query"], t["example"]["input"]) for t in splits["train"]}
    assert not [t for t in splits["test_single"] if (t["query"], t["example"]["input"]) in seen]
    assert len({t["id"] for tasks in splits.values() for t in tasks}) == sum(map(len, splits.values()))


def test_every_reference_solution_scores_acc_in_the_sandbox(splits, mapping, zwc_dir):
    """The "trivial with the docs" property: the reference, written against zwc, passes the evaluator."""
    sample = splits["test_single"][::3] + splits["test_multi"][::3]
    outcomes = E.evaluate_many([(t, f"```python\n{t['solution']}```") for t in sample],
                               package_dir=zwc_dir, mapping=mapping)
    assert [o.category for o in outcomes] == ["acc"] * len(sample), [o.reason for o in outcomes]


def test_unknown_functions_and_too_few_cases_are_refused(mapping, zwc_dir):
    with pytest.raises(ValueError, match=r"no task operation for \['fft'\]"):
        T.generate_tasks(mapping, zwc_dir, functions=["fft"])
    with pytest.raises(ValueError, match="at least 8 test cases"):
        T.generate_tasks(mapping, zwc_dir, cases=5)


def test_official_task_files_load_and_bad_ones_are_named(tmp_path):
    official = {"query": "Return the mean.", "example": {"input": "x=[1, 2]", "output": "1.5"},
                "function_name": "def solve(x):", "selected_functions": ["mean"],
                "test_cases": json.dumps([{"input": "x=[1, 3]", "output": 2.0}] * 8),
                "right_exe_result": "2.0", "is_valid": True}
    (tmp_path / "test.jsonl").write_text(json.dumps(official) + "\n")
    [task] = T.load_tasks(tmp_path / "test.jsonl")
    assert task["test_cases"][0] == {"input": "x=[1, 3]", "output": "2.0"} and task["id"] == "test-0000"
    (tmp_path / "bad.jsonl").write_text(json.dumps(official) + "\n" + json.dumps({"query": "q"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: a task needs the fields \['function_name', 'test_cases'\]"):
        T.load_tasks(tmp_path / "bad.jsonl")
    (tmp_path / "broken.jsonl").write_text('{"query": \n')
    with pytest.raises(ValueError, match=r"broken.jsonl:1: malformed JSON"):
        T.load_tasks(tmp_path / "broken.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="no tasks"):
        T.load_tasks(tmp_path / "empty.jsonl")
    T.save_tasks(tmp_path / "again.jsonl", [task])
    assert T.load_tasks(tmp_path / "again.jsonl") == [task]


# The task every hand-written solution below answers: the cumulative sums of x, then their maximum.
TASK = {"query": "Return the largest running total of x.", "function_name": "def solve(x):",
        "test_cases": [{"input": f"x={x}", "output": repr(float(np.max(np.cumsum(x))))}
                       for x in ([1, 2, 3], [-1, 5, -2], [4], [0, 0, 1], [3, -9, 2, 2], [7, -1], [-3, -2], [1, 1, 1, 1])]}


def _block(code: str) -> str:
    return f"Here is my solution.\n```python\n{code}\n```\n"


@pytest.fixture(scope="module")
def outcomes(mapping, zwc_dir):
    """Every hand-written response below, scored in one pool (one sandbox run each, in parallel)."""
    m = {name: mapping.main[name] for name in ("cumsum", "max", "array", "sum")}
    cases = {
        "right": _block(f"import zwc\ndef solve(x):\n    return zwc.{m['max']}(zwc.{m['cumsum']}(x))"),
        "right, with a __future__ import": _block(
            f"from __future__ import annotations\nimport zwc\ndef solve(x: list) -> float:\n"
            f"    return zwc.{m['max']}(zwc.{m['cumsum']}(x))"),
        "right, in the last of two blocks": _block("def solve(x):\n    return 0") + _block(
            f"import zwc\ndef solve(x):\n    return zwc.{m['max']}(zwc.{m['cumsum']}(x))"),
        "right through an alias and a helper": _block(
            f"import zwc as z\nfrom zwc import {m['max']} as biggest\n"
            "def solve(x):\n    totals = running(x)\n    best = biggest(totals)\n    return best\n"
            f"def running(v):\n    return z.{m['cumsum']}(v)"),
        # the harness calls the FIRST function, as the paper's does: a helper defined first is what runs
        "a helper first": _block(f"import zwc\ndef running(v):\n    return zwc.{m['cumsum']}(v)\n"
                                 f"def solve(x):\n    return zwc.{m['max']}(running(x))"),
        "wrong value": _block(f"import zwc\ndef solve(x):\n    return zwc.{m['sum']}(x)"),
        "no package": _block("def solve(x):\n    best, run = None, 0\n    for v in x:\n        run += v\n"
                             "        best = run if best is None else max(best, run)\n    return float(best)"),
        "only a constructor": _block(f"import zwc\ndef solve(x):\n    a = zwc.{m['array']}(x)\n"
                                     "    best, run = None, 0\n    for v in x:\n        run += v\n"
                                     "        best = run if best is None else max(best, run)\n    return float(best)"),
        "a package call whose result is unused": _block(
            f"import zwc\ndef solve(x):\n    zwc.{m['cumsum']}(x)\n    return float(max(x))"),
        "numpy imported": _block(f"import zwc\nimport numpy as np\ndef solve(x):\n"
                                 f"    return zwc.{m['max']}(np.cumsum(x))"),
        "numpy through __import__": _block(f"import zwc\ndef solve(x):\n    np = __import__('numpy')\n"
                                           f"    return zwc.{m['max']}(np.cumsum(x))"),
        "numpy spelt at run time": _block(f"import zwc\ndef solve(x):\n    np = __import__('nu' + 'mpy')\n"
                                          f"    return zwc.{m['max']}(np.cumsum(x))"),
        "an array method": _block(f"import zwc\ndef solve(x):\n    return zwc.{m['cumsum']}(x).max()"),
        "an infinite loop": _block(f"import zwc\ndef solve(x):\n    while True:\n        pass\n"
                                   f"    return zwc.{m['max']}(x)"),
        "a crash": _block(f"import zwc\ndef solve(x):\n    return zwc.{m['max']}(zwc.{m['cumsum']}(x)) + x[100]"),
        "writes outside its folder": _block(f"import zwc\ndef solve(x):\n    open('/etc/sebench-owned', 'w')\n"
                                            f"    return zwc.{m['max']}(zwc.{m['cumsum']}(x))"),
        "a socket": _block(f"import socket, zwc\ndef solve(x):\n    socket.create_connection(('1.1.1.1', 80), 1)\n"
                           f"    return zwc.{m['max']}(zwc.{m['cumsum']}(x))"),
        "does not parse": _block("def solve(x)\n    return x"),
        "no code": "The answer is the maximum of the running totals.",
    }
    scored = E.evaluate_many([(TASK, r) for r in cases.values()], package_dir=zwc_dir, mapping=mapping)
    return dict(zip(cases, scored))


@pytest.mark.parametrize("name, category", [
    ("right", "acc"), ("right, with a __future__ import", "acc"), ("right, in the last of two blocks", "acc"), ("right through an alias and a helper", "acc"),
    ("a helper first", "exe_error"),
    ("wrong value", "result_error"), ("no package", "without_zwc"), ("only a constructor", "without_zwc"),
    ("a package call whose result is unused", "without_zwc"), ("numpy imported", "numpy"),
    ("numpy through __import__", "numpy"), ("numpy spelt at run time", "exe_error"),
    ("an array method", "exe_error"), ("an infinite loop", "timeout"), ("a crash", "exe_error"),
    ("writes outside its folder", "exe_error"), ("a socket", "exe_error"), ("does not parse", "exe_error"),
    ("no code", "without_zwc")])
def test_each_solution_lands_in_its_category(outcomes, name, category):
    assert outcomes[name].category == category, outcomes[name]


def test_the_reasons_say_what_happened(outcomes):
    assert outcomes["numpy spelt at run time"].reason == "ModuleNotFoundError: No module named 'numpy'"
    assert "'ZWCArray' object has no attribute 'max'" in outcomes["an array method"].reason
    assert outcomes["wrong value"].reason.endswith("cases right") and outcomes["right"].passed_cases == 8
    assert "network" in outcomes["a socket"].stderr.lower() or "unreachable" in outcomes["a socket"].stderr.lower()
    shares = E.shares(outcomes.values())
    assert list(shares) == list(E.CATEGORIES) and math.isclose(sum(shares.values()), 1.0)
    assert shares["acc"] == pytest.approx(4 / len(outcomes))


def test_the_released_rl_rules_take_the_first_block(mapping, zwc_dir):
    two = _block("def solve(x):\n    return 0") + _block(
        f"import zwc\ndef solve(x):\n    return zwc.{mapping.main['max']}(zwc.{mapping.main['cumsum']}(x))")
    first = E.evaluate(TASK, two, package_dir=zwc_dir, mapping=mapping, rules=E.RELEASED_RL_RULES)
    assert first.category == "without_zwc"


@pytest.mark.parametrize("printed, expected, match", [
    ("ZWCArray([1., 2.])", "[1.0, 2.0]", True), ("[1 2 3]", "(1, 2, 3)", True), ("[[1. 2.]\n [3. 4.]]", "[[1, 2], [3, 4]]", True),
    ("[5.]", "5", True), ("2.004", "2.0", True), ("2.02", "2.0", False), ("[inf nan]", "[inf, nan]", True),
    ("[1.+2.j]", "(1+2j)", True), ("[ True False]", "[True, False]", True), ("[1, 2]", "[1, 2, 3]", False),
    ("array([0.5, 1.5], dtype=float32)", "[0.5, 1.5]", True), ("np.float64(3.0)", "3.0", True),
    ("hello   world", "hello world", True), ("__import__('os')", "0", False)])
def test_the_normaliser(printed, expected, match):
    assert E.outputs_match(printed, expected) is match


def test_the_tolerance_is_a_rule():
    assert E.outputs_match("1.004", "1.0", E.PAPER_RULES.tolerance)
    assert not E.outputs_match("1.004", "1.0", E.RELEASED_RL_RULES.tolerance)
