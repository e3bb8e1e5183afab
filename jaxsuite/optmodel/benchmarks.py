"""Readers for the public optimisation-modelling benchmarks (the files in shared/data/optbench/).

    problems = read_benchmark("mamo_easy", "../shared/data/optbench/mamo_easy_lp.jsonl")
    problems[0].question, problems[0].reference          # the statement, the optimal value (float)

    optibench   OptiBench.json: `question`, `type`, `results` {name: value}. The reference is the last named
                result (the objective in the file's convention: "The total cost", "Total Revenue", ...); all
                named results are kept in `extra["results"]`.
    mamo_easy, mamo_complex
                MAMO's jsonl: `id`, `Question`, `Answer` (a number as text; its decimals matter to MAMO's rule).
    nl4opt      NL4Opt's generation data: `document` and the structured model (`vars`, `obj_declaration`,
                `const_declarations` of types linear / sum / upperbound / lowerbound / xy / xby / ratio). The
                files carry no optimum, so the structured model is turned into a LinearModel and solved here;
                the reference is that optimum with continuous variables (NL4Opt states LPs; `integer=True`
                solves with integer variables instead). A record whose declarations name a variable that is
                not among its `vars` is kept with `model=None` and the reason in `extra["error"]`.

Every reader fails with one line naming the file and line for a missing file, an empty file or a malformed
record.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from jaxsuite.core import files
from jaxsuite.optmodel.model import LinearModel, solve

BENCHMARKS = ("optibench", "mamo_easy", "mamo_complex", "nl4opt")


@dataclasses.dataclass
class BenchmarkProblem:
    benchmark: str
    id: str
    question: str
    reference: float | None
    reference_text: str = ""              # as the file writes it (MAMO's rule counts its decimals)
    model: LinearModel | None = None      # NL4Opt only
    extra: dict = dataclasses.field(default_factory=dict)


def _open_lines(path: str | Path) -> list[tuple[int, str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file {path} does not exist")
    lines = [(i + 1, line) for i, line in enumerate(path.read_text().splitlines()) if line.strip()]
    if not lines:
        raise ValueError(f"benchmark file {path} is empty")
    return lines


def _json_lines(path: str | Path) -> list[tuple[int, dict]]:
    _open_lines(path)                          # missing or empty: its own message
    return list(files.iter_jsonl_objects(path))


def _field(record: dict, key: str, path, number) -> object:
    if key not in record:
        raise ValueError(f"{path}: line {number}: missing field {key!r}")
    return record[key]


def read_optibench(path: str | Path) -> list[BenchmarkProblem]:
    path = Path(path)
    _open_lines(path)
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of problems")
    problems = []
    for i, record in enumerate(records):
        results = record.get("results") if isinstance(record, dict) else None
        if not isinstance(results, dict) or not results or "question" not in record:
            raise ValueError(f"{path}: record {i}: needs 'question' and a non-empty 'results' object")
        name, value = list(results.items())[-1]
        problems.append(BenchmarkProblem("optibench", str(record.get("index", i)), record["question"],
                                         float(value), str(value),
                                         extra={"type": record.get("type"), "results": results,
                                                "objective_name": name}))
    return problems


def read_mamo(path: str | Path, benchmark: str = "mamo") -> list[BenchmarkProblem]:
    problems = []
    for number, record in _json_lines(path):
        answer = str(_field(record, "Answer", path, number)).strip()
        try:
            reference = float(answer)
        except ValueError:
            raise ValueError(f"{path}: line {number}: Answer {answer!r} is not a number") from None
        problems.append(BenchmarkProblem(benchmark, str(record.get("id", number)),
                                         str(_field(record, "Question", path, number)), reference, answer,
                                         extra={"type": record.get("Type")}))
    return problems


# ---------------------------------------------------------------------------------------------- NL4Opt

_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
          "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30,
          "forty": 40, "fifty": 50, "hundred": 100, "thousand": 1000, "million": 1e6,
          "twice": 2, "thrice": 3, "double": 2, "triple": 3, "half": 0.5, "third": 1 / 3, "quarter": 0.25}


def parse_quantity(text: str) -> float:
    """A number as NL4Opt writes it: '10,000', '70%', 'thirty percent', 'twice', '1.5 times', 'a third',
    'one hundred thousand', '8000 minutes'. Raises ValueError for text with no number in it."""
    t = text.strip().lower().replace(",", "").replace("$", "")
    percent = "%" in t or "percent" in t
    t = t.replace("%", " ").replace("percent", " ").replace("times", " ").replace("-", " ")
    number = re.search(r"\d+(?:\.\d+)?", t)
    if number:
        value = float(number.group())
    else:
        words = [w for w in t.split() if w in _WORDS]
        if not words:
            raise ValueError(f"no number in {text!r}")
        value, group = 0.0, 0.0
        for w in words:
            v = _WORDS[w]
            if v in (100, 1000, 1e6) and w not in ("twice", "thrice"):
                group = max(group, 1.0) * v
                if v >= 1000:
                    value, group = value + group, 0.0
            elif v < 1:
                group = (group or 1.0) * v
            else:
                group += v
        value += group
    return value / 100 if percent else value


def _identifier(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "x"
    base = base if base[0].isalpha() else f"v_{base}"
    ident, k = base, 2
    while ident in taken:
        ident, k = f"{base}_{k}", k + 1
    taken.add(ident)
    return ident


def nl4opt_model(record: dict, *, integer: bool = False) -> LinearModel:
    """The structured NL4Opt record as a LinearModel (variables >= 0). Raises ValueError naming a mention it
    cannot resolve to one of the record's variables."""
    variables = list(record["vars"])
    order = record.get("order_mapping", {})
    first = record.get("var_mention_to_first_var", {})
    taken: set[str] = set()
    idents = [_identifier(v, taken) for v in variables]

    def resolve(mention: str) -> str:
        if mention in order and 0 <= int(order[mention]) < len(variables):
            return idents[int(order[mention])]
        if mention in first and first[mention] in variables:
            return idents[variables.index(first[mention])]
        close = [i for i, v in enumerate(variables) if mention in v or v in mention]
        if len(close) == 1:
            return idents[close[0]]
        raise ValueError(f"mention {mention!r} is not one of the variables {variables}")

    obj = record["obj_declaration"]
    direction = str(obj.get("direction", "")).lower()
    sense = "minimize" if re.search(r"min|decreas|reduc|lower|less", direction) else "maximize"
    m = LinearModel("nl4opt", sense)
    for ident in idents:
        m.variable(ident, kind="integer" if integer else "continuous")
    if obj["type"] == "objvar":
        m.objective = {resolve(v): 1.0 for v in obj["vars"]}
    else:
        m.objective = {}
        for mention, coef in obj["terms"].items():
            key = resolve(mention)
            m.objective[key] = m.objective.get(key, 0.0) + parse_quantity(coef)
    every = {ident: 1.0 for ident in idents}
    for k, c in enumerate(record["const_declarations"]):
        op = {"LESS_OR_EQUAL": "<=", "GREATER_OR_EQUAL": ">=", "EQUAL": "=="}.get(c.get("operator"))
        if op is None:
            raise ValueError(f"constraint {k}: unknown operator {c.get('operator')!r}")
        kind = c["type"]
        if kind == "linear":
            terms: dict[str, float] = {}
            for mention, coef in c["terms"].items():
                key = resolve(mention)
                terms[key] = terms.get(key, 0.0) + parse_quantity(coef)
            rhs = parse_quantity(c["limit"])
        elif kind == "sum":
            terms, rhs = dict(every), parse_quantity(c["limit"])
        elif kind in ("upperbound", "lowerbound"):
            terms, rhs = {resolve(c["var"]): 1.0}, parse_quantity(c["limit"])
        elif kind == "xy":
            terms, rhs = {resolve(c["x_var"]): 1.0}, 0.0
            y = resolve(c["y_var"])
            terms[y] = terms.get(y, 0.0) - 1.0
        elif kind == "xby":
            terms, rhs = {resolve(c["x_var"]): 1.0}, 0.0
            y = resolve(c["y_var"])
            terms[y] = terms.get(y, 0.0) - parse_quantity(c["param"])
        elif kind == "ratio":
            share = parse_quantity(c["limit"])
            terms, rhs = {ident: -share for ident in idents}, 0.0
            x = resolve(c["var"])
            terms[x] += 1.0
        else:
            raise ValueError(f"constraint {k}: unknown type {kind!r}")
        m.constrain(f"c{k}_{kind}", terms, op, rhs)
    return m


def read_nl4opt(path: str | Path, *, integer: bool = False) -> list[BenchmarkProblem]:
    problems = []
    for number, record in _json_lines(path):
        if len(record) != 1:
            raise ValueError(f"{path}: line {number}: expected one {{id: record}} pair")
        (key, body), = record.items()
        if not isinstance(body, dict) or "document" not in body:
            raise ValueError(f"{path}: line {number}: record {key} has no 'document'")
        for field in ("vars", "obj_declaration", "const_declarations"):
            _field(body, field, path, number)
        extra: dict = {}
        try:
            model = nl4opt_model(body, integer=integer)
        except (ValueError, KeyError) as e:
            model, extra["error"] = None, f"line {number}: {e}"
        reference = None
        if model is not None:
            solution = solve(model)
            if solution.optimal:
                reference = solution.objective
            else:
                extra["error"] = f"line {number}: the structured model is {solution.status}"
        problems.append(BenchmarkProblem("nl4opt", str(key), body["document"], reference,
                                         "" if reference is None else repr(reference), model, extra))
    return problems


def read_benchmark(name: str, path: str | Path, **kwargs) -> list[BenchmarkProblem]:
    if name == "optibench":
        return read_optibench(path)
    if name in ("mamo_easy", "mamo_complex"):
        return read_mamo(path, name)
    if name == "nl4opt":
        return read_nl4opt(path, **kwargs)
    raise ValueError(f"unknown benchmark {name!r}; known: {BENCHMARKS}")


DEFAULT_FILES = {"optibench": "OptiBench.json", "mamo_easy": "mamo_easy_lp.jsonl",
                 "mamo_complex": "mamo_complex_lp.jsonl", "nl4opt": "nl4opt_test.jsonl"}
