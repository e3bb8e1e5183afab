"""The execution check: run a generated solver program in the sandbox, read its optimum, judge it.

    result = check_program(text, reference=57.0, rule="orlm", timeout=30)
    result.outcome      # optimum | no_optimum | unexpected_output | failed | timeout | no_code
    result.objective    # the optimum the program reported (None unless outcome == "optimum")
    result.correct      # against the reference under the rule

One call checks one program, whatever solver API it uses. `text` may be a whole model answer: its last fenced
python block is the program (no block and no import of a solver: `no_code`). ORLM appends a print of the
objective written for its own solver (coptpy); to stay API-agnostic this checker appends a *probe* instead:
after the program ends, the probe looks through the program's global names for a solved model of any API it
knows (cvxpy Problem, PuLP LpProblem, SCIP Model, Highs, SciPy's OptimizeResult, gurobipy and coptpy
models) and prints its status and objective on a marked line. When no such object is left in the
globals (the program solved inside a function), the printed output is read: a line like `Optimal objective:
57` (what our prompts ask for), else the last number on a line naming the objective, optimum, total, cost,
profit or value; `No Best Solution`, "infeasible" or "unbounded" without a number is `no_optimum`.

Correctness rules (compare):
    orlm    ORLM's: both values rounded to integers, then 5% relative error (absolute when the reference is 0)
    strict  relative error at most 1e-4 (absolute 1e-4 when the reference is 0), as OptiBench and MAMO judge
    mamo    MAMO's own: |difference| * 10^d < 1 with d the reference's decimals (at least 2), or relative 1e-4
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter
from typing import Sequence

import numpy as np

from jaxsuite.agents.sandbox import Limits, SandboxPool, run_python

OUTCOMES = ("optimum", "no_optimum", "unexpected_output", "failed", "timeout", "no_code")
RULES = ("orlm", "strict", "mamo")
MARK = "__jaxsuite_optimum__"

# Appended to every program. It touches only objects whose class comes from a solver package, and never
# raises: a probe error must not turn a working program into a failed one.
PROBE = r"""

def __jaxsuite_probe():
    import json as _json, sys as _sys

    def _word(status):
        text = str(status).lower()
        if text == "optimal":
            return "optimal"
        if "infeasible" in text or "inforunbd" in text:
            return "infeasible"
        return "unbounded" if "unbounded" in text else "other"

    found = []
    for _name, _obj in list(globals().items()):
        _mod = type(_obj).__module__.split(".")[0]
        _cls = type(_obj).__name__
        try:
            if _mod == "cvxpy" and _cls == "Problem" and _obj.status is not None:
                found.append((_word(_obj.status), _obj.value))
            elif _mod == "pulp" and _cls == "LpProblem":
                import pulp as _p
                found.append((_word(_p.LpStatus[_obj.status]), _p.value(_obj.objective)))
            elif _mod == "pyscipopt" and _cls == "Model":
                _st = _word(_obj.getStatus())
                found.append((_st, _obj.getObjVal() if _st == "optimal" else None))
            elif _mod == "highspy" and _cls == "Highs":
                _st = _word(_obj.modelStatusToString(_obj.getModelStatus()))
                found.append((_st, _obj.getInfo().objective_function_value))
            elif _mod == "scipy" and _cls == "OptimizeResult" and "fun" in _obj:
                _st = {0: "optimal", 2: "infeasible", 3: "unbounded"}.get(_obj.get("status"), "other")
                found.append((_st, _obj.get("fun")))
            elif _mod == "gurobipy" and _cls == "Model":
                _st = {2: "optimal", 3: "infeasible", 4: "infeasible", 5: "unbounded"}.get(_obj.Status, "other")
                found.append((_st, _obj.ObjVal if _st == "optimal" else None))
            elif _mod == "coptpy" and _cls == "Model":
                _st = {1: "optimal", 2: "infeasible", 3: "unbounded"}.get(_obj.status, "other")
                found.append((_st, _obj.objval if _st == "optimal" else None))
        except Exception:
            continue
    if found:
        _sys.stdout.flush()
        print("MARK" + _json.dumps([[s, (float(v) if v is not None else None)] for s, v in found]))

try:
    __jaxsuite_probe()
except Exception:
    pass
""".replace("MARK", MARK)

_NO_OPTIMUM = re.compile(r"no best solution|infeasible|unbounded|no (optimal )?solution|not optimal", re.I)
_NUMBER = r"[-+]?(?:\d+(?:,\d{3})*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_OBJECTIVE_LINE = re.compile(r"(optimal objective|objective value|optimal value|optimum|objective)", re.I)
_VALUE_LINE = re.compile(r"(total|cost|profit|revenue|value|minimum|maximum|min|max)", re.I)
_SOLVER_IMPORT = re.compile(r"^\s*(import|from)\s+(cvxpy|pulp|pyscipopt|highspy|scipy|ortools|gurobipy|coptpy|mip|pyomo)\b", re.M)


@dataclasses.dataclass
class CheckResult:
    outcome: str
    objective: float | None
    correct: bool
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def extract_program(text: str) -> str | None:
    """The last fenced python block of a model's answer; a bare program (solver import, no fence) as is."""
    blocks = re.findall(r"```(?:python|py)?[ \t]*\n(.*?)```", text, re.S)
    if blocks:
        return blocks[-1]
    return text if _SOLVER_IMPORT.search(text) else None


def _to_float(token: str) -> float:
    return float(token.replace(",", ""))


def read_optimum(stdout: str) -> tuple[str, float | None]:
    """(outcome, objective) from a program's output: the probe's line first, then the printed text."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARK):
            found = json.loads(line[len(MARK):])
            optimal = [v for status, v in found if status == "optimal" and v is not None and math.isfinite(v)]
            if optimal:
                return "optimum", optimal[-1]
            if any(status in ("infeasible", "unbounded") for status, _ in found):
                return "no_optimum", None
            break           # a model the solver did not finish: read what the program printed
    lines = [ln for ln in stdout.splitlines() if not ln.startswith(MARK)]
    for pattern in (_OBJECTIVE_LINE, _VALUE_LINE):
        for line in reversed(lines):
            if pattern.search(line) and not _NO_OPTIMUM.search(line):
                numbers = re.findall(_NUMBER, line)
                if numbers:
                    return "optimum", _to_float(numbers[-1])
    if any(_NO_OPTIMUM.search(line) for line in lines):
        return "no_optimum", None
    numbers = [n for line in lines for n in re.findall(_NUMBER, line)]
    if len(numbers) == 1:
        return "optimum", _to_float(numbers[0])
    return "unexpected_output", None


def decimals(reference: str | float) -> int:
    text = reference if isinstance(reference, str) else repr(float(reference))
    return len(text.split(".", 1)[1].rstrip("0")) if "." in text and "e" not in text.lower() else 0


def compare(predicted: float | None, reference: float | str, rule: str = "orlm") -> bool:
    """Whether `predicted` counts as `reference` under `rule` (module docstring)."""
    if rule not in RULES:
        raise ValueError(f"unknown correctness rule {rule!r}; known: {RULES}")
    if predicted is None or not math.isfinite(predicted):
        return False
    ref = float(reference)
    if rule == "orlm":
        p, r = round(predicted), round(ref)
        return abs(p - r) <= 0.05 if r == 0 else abs(p - r) / abs(r) <= 0.05
    if rule == "strict":
        return abs(predicted - ref) <= 1e-4 * (abs(ref) if ref != 0 else 1.0)
    d = max(decimals(reference), 2)
    return abs(predicted - ref) * 10 ** d < 1 or (ref != 0 and abs(predicted - ref) / abs(ref) <= 1e-4)


def check_program(text: str, reference: float | str | None = None, *, rule: str = "orlm",
                  timeout: float = 30.0, pool: SandboxPool | None = None,
                  memory_bytes: int = 4 << 30) -> CheckResult:
    """Runs one generated program (or answer) in the sandbox and judges its optimum against `reference`
    (None: run and classify only). The wall clock is `timeout` seconds; CPU time gets the same budget."""
    program = extract_program(text)
    if program is None or not program.strip():
        return CheckResult("no_code", None, False)
    limits = Limits(wall_seconds=timeout, cpu_seconds=max(1, int(math.ceil(timeout))),
                    memory_bytes=memory_bytes, processes=256)
    code = program + PROBE
    result = pool.run(code, limits=limits) if pool is not None else run_python(code, limits=limits)
    if result.outcome == "timeout":
        return CheckResult("timeout", None, False, result.stdout, result.stderr[-2000:], result.seconds)
    if result.outcome != "ok":
        return CheckResult("failed", None, False, result.stdout, result.stderr[-2000:], result.seconds)
    outcome, objective = read_optimum(result.stdout)
    correct = reference is not None and outcome == "optimum" and compare(objective, reference, rule)
    return CheckResult(outcome, objective, correct, result.stdout[-4000:], result.stderr[-2000:], result.seconds)


def check_many(texts: Sequence[str], references: Sequence[float | str | None], *, rule: str = "orlm",
               timeout: float = 30.0, workers: int = 2, pool: SandboxPool | None = None) -> list[CheckResult]:
    """check_program over many programs, `workers` at a time, through `pool` (or a pool of its own)."""
    import concurrent.futures

    if len(texts) != len(references):
        raise ValueError(f"{len(texts)} programs but {len(references)} references")
    if pool is None:
        with SandboxPool(workers=workers) as own:
            return check_many(texts, references, rule=rule, timeout=timeout, workers=workers, pool=own)
    with concurrent.futures.ThreadPoolExecutor(workers) as threads:
        return list(threads.map(lambda tr: check_program(tr[0], tr[1], rule=rule, timeout=timeout, pool=pool),
                                zip(texts, references)))


def majority_vote(results: Sequence[CheckResult], reference: float | str, rule: str = "orlm") -> bool:
    """Majority-vote accuracy for one problem: the most common reported optimum among the samples that
    reported one (values grouped by the rule's own rounding) judged against the reference."""
    values = [r.objective for r in results if r.outcome == "optimum" and r.objective is not None]
    if not values:
        return False
    key = (lambda v: round(v)) if rule == "orlm" else (lambda v: float(f"{v:.6g}"))
    winner, _ = Counter(key(v) for v in values).most_common(1)[0]
    representative = next(v for v in values if key(v) == winner)
    return compare(representative, reference, rule)


def outcome_shares(results: Sequence[CheckResult]) -> dict[str, float]:
    counts = Counter(r.outcome for r in results)
    n = max(len(results), 1)
    return {o: counts.get(o, 0) / n for o in OUTCOMES}


def summarise(results: Sequence[CheckResult], k: int, references: Sequence[float | str], *, rule: str = "orlm",
              groups: Sequence[str] | None = None) -> dict:
    """The figures of k checked samples per problem (results problem-major: problem i's are [i*k, (i+1)*k)):
    generation rate (an answer with code), executability (the program exited cleanly), mean@k, pass@k, majority
    vote, the outcome shares, and mean@k per group (a problem family) when `groups` names one per problem."""
    from jaxsuite.rl.estimators import mean_at_k, pass_at_k

    n = len(references)
    if len(results) != n * k:
        raise ValueError(f"{len(results)} results for {n} problems x k={k}")
    correct = np.array([r.correct for r in results], dtype=bool).reshape(n, k).sum(1)
    out = {"problems": n,
           "generation_rate": float(np.mean([r.outcome != "no_code" for r in results])) if results else 0.0,
           "executability": float(np.mean([r.outcome in ("optimum", "no_optimum", "unexpected_output")
                                           for r in results])) if results else 0.0,
           f"mean@{k}": mean_at_k(correct.tolist(), k),
           f"pass@{k}": float(np.mean([pass_at_k(k, int(c), k) for c in correct])) if n else 0.0,
           "majority_vote": float(np.mean([majority_vote(results[i * k:(i + 1) * k], ref, rule)
                                           for i, ref in enumerate(references)])) if n else 0.0,
           "outcomes": outcome_shares(results)}
    if groups is not None:
        by: dict[str, list[float]] = {}
        for g, c in zip(groups, correct):
            by.setdefault(g, []).append(c / k)
        out["accuracy_by_group"] = {g: float(np.mean(v)) for g, v in sorted(by.items())}
    return out
