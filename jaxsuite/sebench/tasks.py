"""Coding tasks that need the obfuscated library: generated with ground truth, or read from the official files.

    tasks = generate_tasks(mapping, package_dir, seed=0)        # {"train": [...], "test_single": [...], "test_multi": [...]}
    tasks = load_tasks("test_single.jsonl")                      # the released format, for users who have it

A generated task is a small problem over lists of numbers, solved by one library function ("single") or a
chain of two or three ("multi"): "Given a list of numbers `x`, return the maximum of the cumulative sums of
`x`." Its record is the official one (`query`, `example`, `function_name`, `selected_functions`, `test_cases`
[{input, output}], `right_exe_result`, `is_valid`) plus `id`, `split` and the reference `solution`, written
against the package (zwc.kocito, zwc.rfx.quvohe), never against NumPy. Each task has at least 8 test cases;
inputs and outputs are numbers, booleans and nested lists only, and outputs come from running the reference
through the built package, so a task whose reference does not reproduce them cannot exist.

Splits: the single-function tasks are divided into train and test_single by instance (the same functions,
other numbers and phrasings); test_multi holds the chains, over functions the train split uses, as the paper
tests whether what training put in the weights composes.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import random
import sys
import warnings
from pathlib import Path
from typing import Iterable, Sequence

from etils import epath

from jaxsuite.core import files
from jaxsuite.sebench.names import NameMapping

# Value kinds an operation takes and gives: a list of numbers, a square matrix (nested lists), a number.
VEC, MAT, NUM = "vec", "mat", "num"


@dataclasses.dataclass(frozen=True)
class Operation:
    """One library function as a step of a task: `call` and `phrases` hold "{x}" where the input goes."""
    function: str                    # the library's name ("cumsum"; "linalg.det" for the submodule)
    takes: str
    gives: str
    call: str                        # Python with the package's names filled in later: "{f}({x})"
    phrases: tuple[str, ...]         # "the cumulative sums of {x}"
    domain: str = "int"              # what inputs it needs: int | positive | nonzero | float | invertible


OPERATIONS: tuple[Operation, ...] = (
    Operation("cumsum", VEC, VEC, "{f}({x})", ("the cumulative sums of {x}", "the running totals of {x}")),
    Operation("cumprod", VEC, VEC, "{f}({x})", ("the cumulative products of {x}", "the running products of {x}")),
    Operation("sort", VEC, VEC, "{f}({x})", ("{x} sorted in ascending order", "the values of {x} in increasing order")),
    Operation("flip", VEC, VEC, "{f}({x})", ("{x} in reverse order", "{x} reversed")),
    Operation("diff", VEC, VEC, "{f}({x})", ("the differences between consecutive elements of {x}",
                                            "the first discrete difference of {x}")),
    Operation("abs", VEC, VEC, "{f}({x})", ("the absolute values of {x}", "the magnitudes of the entries of {x}")),
    Operation("square", VEC, VEC, "{f}({x})", ("the squares of the entries of {x}", "each entry of {x} squared")),
    Operation("sqrt", VEC, VEC, "{f}({x})", ("the square roots of the entries of {x}",), domain="positive"),
    Operation("negative", VEC, VEC, "{f}({x})", ("the negated entries of {x}", "{x} with every sign flipped")),
    Operation("unique", VEC, VEC, "{f}({x})", ("the distinct values of {x} in ascending order",
                                              "the sorted unique entries of {x}")),
    Operation("sign", VEC, VEC, "{f}({x})", ("the signs (-1, 0 or 1) of the entries of {x}",)),
    Operation("argsort", VEC, VEC, "{f}({x}, kind='stable')", ("the indices that would sort {x} (stable)",)),
    Operation("sum", VEC, NUM, "{f}({x})", ("the sum of {x}", "the total of all entries of {x}")),
    Operation("mean", VEC, NUM, "{f}({x})", ("the arithmetic mean of {x}", "the average of {x}")),
    Operation("max", VEC, NUM, "{f}({x})", ("the largest entry of {x}", "the maximum of {x}")),
    Operation("min", VEC, NUM, "{f}({x})", ("the smallest entry of {x}", "the minimum of {x}")),
    Operation("median", VEC, NUM, "{f}({x})", ("the median of {x}",)),
    Operation("prod", VEC, NUM, "{f}({x})", ("the product of all entries of {x}",)),
    Operation("ptp", VEC, NUM, "{f}({x})", ("the range (maximum minus minimum) of {x}", "the peak-to-peak value of {x}")),
    Operation("std", VEC, NUM, "{f}({x})", ("the population standard deviation of {x}",)),
    Operation("var", VEC, NUM, "{f}({x})", ("the population variance of {x}",)),
    Operation("argmax", VEC, NUM, "{f}({x})", ("the index of the first largest entry of {x}",)),
    Operation("argmin", VEC, NUM, "{f}({x})", ("the index of the first smallest entry of {x}",)),
    Operation("count_nonzero", VEC, NUM, "{f}({x})", ("the number of non-zero entries of {x}",)),
    Operation("dot", VEC, NUM, "{f}({x}, {x})", ("the dot product of {x} with itself", "the sum of squares of {x}")),
    Operation("outer", VEC, MAT, "{f}({x}, {x})", ("the outer product of {x} with itself",)),
    Operation("diag", VEC, MAT, "{f}({x})", ("the square matrix with {x} on its diagonal and zeros elsewhere",)),
    Operation("transpose", MAT, MAT, "{f}({x})", ("the transpose of {x}",)),
    Operation("trace", MAT, NUM, "{f}({x})", ("the trace (sum of the diagonal) of {x}",)),
    Operation("triu", MAT, MAT, "{f}({x})", ("the upper triangle of {x}, zeros below the diagonal",)),
    Operation("linalg.det", MAT, NUM, "{f}({x})", ("the determinant of {x}",)),
    Operation("linalg.inv", MAT, MAT, "{f}({x})", ("the inverse of {x}",), domain="invertible"),
    Operation("linalg.matrix_rank", MAT, NUM, "{f}({x})", ("the rank of {x}",)),
    Operation("linalg.norm", MAT, NUM, "{f}({x})", ("the Frobenius norm of {x}",)),
)
INPUT_TEXT = {VEC: "a list of numbers `x`", MAT: "a square matrix `x` (a list of rows)"}


def operations(functions: Iterable[str] | None = None) -> list[Operation]:
    """The operations over `functions` (library names; None: all)."""
    if functions is None:
        return list(OPERATIONS)
    wanted = set(functions)
    unknown = wanted - {op.function for op in OPERATIONS}
    if unknown:
        raise ValueError(f"no task operation for {sorted(unknown)}; known: {sorted(op.function for op in OPERATIONS)}")
    return [op for op in OPERATIONS if op.function in wanted]


def qualified_call(op: Operation, mapping: NameMapping, argument: str) -> str:
    if op.function.startswith("linalg."):
        f = mapping.qualified(op.function[len("linalg."):], submodule=True)
    else:
        f = mapping.qualified(op.function)
    return op.call.format(f=f, x=argument)


def draw_input(kind: str, domain: str, rng: random.Random) -> list:
    """A random input of a kind (a list of 3-7 small integers, a 2x2 or 3x3 integer matrix) within a domain."""
    if kind == VEC:
        n = rng.randint(3, 7)
        if domain == "positive":
            return [rng.randint(0, 50) for _ in range(n)]
        return [rng.randint(-9, 9) for _ in range(n)]
    n = rng.randint(2, 3)
    while True:
        matrix = [[rng.randint(-5, 5) for _ in range(n)] for _ in range(n)]
        if domain != "invertible" or abs(_det(matrix)) > 0.5:
            return matrix


def _det(m: list) -> float:
    if len(m) == 2:
        return m[0][0] * m[1][1] - m[0][1] * m[1][0]
    return sum((-1) ** j * m[0][j] * _det([row[:j] + row[j + 1:] for row in m[1:]]) for j in range(len(m)))


def plain(value):
    """A result as numbers, booleans and nested lists (a task's output form); arrays via their nested lists."""
    if hasattr(value, "__array__"):
        import numpy as np
        value = np.asarray(value).tolist()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    return value


def load_package(package_dir: Path, name: str):
    """The built package, imported in this process from its folder (for computing the reference outputs)."""
    folder = str(Path(package_dir).parent)
    if name in sys.modules and str(Path(sys.modules[name].__file__).resolve().parent) != str(Path(package_dir).resolve()):
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(folder)


def make_task(chain: Sequence[Operation], mapping: NameMapping, package, rng: random.Random, *,
              cases: int = 8, task_id: str = "", split: str = "") -> dict | None:
    """One task over a chain of operations (each consumes what the one before gives); None if the reference
    fails on a drawn input (a singular matrix, say), so the caller draws another."""
    domain = next((op.domain for op in chain if op.domain != "int"), "int")
    phrase = "`x`"
    for op in chain:
        phrase = rng.choice(op.phrases).format(x=phrase)
    query = f"Given {INPUT_TEXT[chain[0].takes]}, return {phrase}."
    expression = "x"
    for op in chain:
        expression = qualified_call(op, mapping, expression)
    solution = f"import {mapping.package}\n\n\ndef solve(x):\n    return {expression}\n"
    namespace: dict = {}
    exec(compile(solution.replace(f"import {mapping.package}\n", ""), "<reference>", "exec"),
         {mapping.package: package}, namespace)
    test_cases, seen = [], set()
    for _ in range(cases * 6):
        x = draw_input(chain[0].takes, domain, rng)
        if json.dumps(x) in seen:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                result = plain(namespace["solve"](x))
        except Exception:      # the reference's own failure: a singular matrix, a warning on the input
            continue
        seen.add(json.dumps(x))
        test_cases.append({"input": f"x={json.dumps(x)}", "output": repr(result)})
        if len(test_cases) == cases:
            break
    if len(test_cases) < cases:
        return None
    example = {"input": test_cases[0]["input"], "output": test_cases[0]["output"]}
    return {"id": task_id, "split": split, "query": query, "example": example,
            "function_name": "def solve(x):", "selected_functions": [op.function for op in chain],
            "test_cases": test_cases, "right_exe_result": "#".join(c["output"] for c in test_cases),
            "is_valid": True, "solution": solution}


def _chains(ops: list[Operation], length: int) -> list[tuple[Operation, ...]]:
    chains = [(op,) for op in ops]
    for _ in range(length - 1):
        chains = [c + (op,) for c in chains for op in ops
                  if op.takes == c[-1].gives and op.function not in {o.function for o in c}]
    return chains


def generate_tasks(mapping: NameMapping, package_dir, *, seed: int = 0, functions: Iterable[str] | None = None,
                   per_function: int = 6, test_share: float = 0.34, multi_tasks: int = 40,
                   cases: int = 8) -> dict[str, list[dict]]:
    """Train, single-function test and multi-function test tasks over `functions` (library names; None: all
    operations). `package_dir` is the built package (jaxsuite.sebench.package.build_package)."""
    if cases < 8:
        raise ValueError(f"a task needs at least 8 test cases (the paper's rule), got cases={cases}")
    ops = operations(functions)
    package = load_package(Path(package_dir), mapping.package)
    rng = random.Random(seed)
    splits: dict[str, list[dict]] = {"train": [], "test_single": [], "test_multi": []}
    for op in ops:
        made = []
        for attempt in range(per_function * 4):
            task = make_task((op,), mapping, package, rng, cases=cases)
            if task is not None and task["query"] + task["example"]["input"] not in {
                    t["query"] + t["example"]["input"] for t in made}:
                made.append(task)
            if len(made) == per_function:
                break
        n_test = max(1, round(len(made) * test_share))
        splits["test_single"] += made[:n_test]
        splits["train"] += made[n_test:]
    chains = _chains(ops, 2) + _chains(ops, 3)
    rng.shuffle(chains)
    for chain in chains:
        if len(splits["test_multi"]) == multi_tasks:
            break
        task = make_task(chain, mapping, package, rng, cases=cases)
        if task is not None:
            splits["test_multi"].append(task)
    for split, tasks in splits.items():
        for i, task in enumerate(tasks):
            task["id"], task["split"] = f"{split}-{i:04d}", split
    return splits


REQUIRED_FIELDS = ("query", "function_name", "test_cases")


def check_task(record: dict, where: str) -> dict:
    """A task record in the official format, checked: errors name `where` (file:line)."""
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    if missing:
        raise ValueError(f"{where}: a task needs the fields {missing}")
    cases = record["test_cases"]
    if isinstance(cases, str):          # some releases store the list as a JSON string
        try:
            cases = json.loads(cases)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: test_cases is not JSON ({e.msg})") from None
    if not isinstance(cases, list) or not cases:
        raise ValueError(f"{where}: test_cases must be a non-empty list")
    for i, case in enumerate(cases):
        if not isinstance(case, dict) or "input" not in case or "output" not in case:
            raise ValueError(f"{where}: test case {i} needs 'input' and 'output'")
    return {**record, "test_cases": [{"input": str(c["input"]), "output": c["output"] if isinstance(c["output"], str)
                                      else json.dumps(c["output"])} for c in cases],
            "selected_functions": list(record.get("selected_functions") or [])}


def load_tasks(path) -> list[dict]:
    """Tasks from a JSON-lines file (ours or the official format); the first bad record is named by line."""
    path = epath.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"task file {path} does not exist")
    tasks = [check_task(record, f"{path}:{line}") for line, record in files.iter_jsonl_objects(path)]
    if not tasks:
        raise ValueError(f"{path}: no tasks in the file")
    for i, task in enumerate(tasks):
        task.setdefault("id", f"{path.stem}-{i:04d}")
    return tasks


def save_tasks(path, tasks: Iterable[dict]) -> None:
    files.atomic_write_text(epath.Path(path), "".join(json.dumps(t) + "\n" for t in tasks))
