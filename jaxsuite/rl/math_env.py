"""A verifiable math environment for reinforcement learning on language models.

RL with verifiable rewards needs three things that this module supplies without a model in the loop:
  * problems with exact answers: `ProblemGenerator` writes short arithmetic and algebra problems (short plain
    ASCII, so that a tiny character-level model can read them) and `read_problems` loads real datasets
    (jsonl, or veRL-style parquet with a chat-list prompt and a nested ground truth);
  * a reward: `score_response` takes the last `\\boxed{...}` of a response and checks it against the ground
    truth, equivalence-aware ("0.5" == "\\frac{1}{2}", "x=3" == "3", "\\sqrt{8}" == "2\\sqrt{2}");
  * proposal checking for a coach-player loop (CPMobius): `ProblemGenerator.validate_problem_text` accepts a
    model-written problem only in exactly the generator's formats and returns it with its exact answer, so the
    fraction of valid proposals is measurable and valid ones can be used as training problems at once.
`answer_key` gives equivalent answers equal keys, so majority voting over n samples is a dictionary count
rather than n^2 sympy comparisons. Everything that touches model output never raises: a reward function that
crashes on one odd sample would end a training run.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
import re
import warnings
from fractions import Fraction
from typing import Any, Callable, Sequence

import numpy as np

from jaxsuite.core.extras import require
from jaxsuite.core.files import iter_jsonl_objects

require("sympy", extra="rl", for_="jaxsuite.rl.math_env (answer checking for CPMobius, R-Zero, RENT)")
import sympy
from sympy.parsing.sympy_parser import (implicit_multiplication_application, parse_expr, rationalize,
                                        standard_transformations)

PLAYER_TEMPLATE = "Q:{problem}\nA:"


@dataclasses.dataclass(frozen=True)
class MathProblem:
    problem: str
    answer: str        # exact answer as a canonical string ("81", "-35", "7/12")
    kind: str = ""     # generator kind, or "" for problems read from a dataset


# --- problem generation -------------------------------------------------------------------------------------------
# Numbers are written without leading zeros and "-0", as the generator writes them, so that a validated proposal
# is byte-identical to some generated problem.
_NAT = r"(0|[1-9]\d{0,8})"
_INT = r"(0|-?[1-9]\d{0,8})"
_SIGNED = r"(\+0|[+-][1-9]\d{0,8})"     # a term's sign is always written: "3x+0=12", "x^2-5x+6=0"
_SMALL = 12                            # bound of the "small" operands: multipliers, divisors, denominators, roots


def _linear_answer(a: int, b: int, c: int) -> str | None:
    return None if a == 0 or (c - b) % a else str((c - b) // a)     # None: no unique or no integer solution


def _quadratic_answer(b: int, c: int) -> str | None:
    """Larger root of x^2 + b x + c = 0 when both roots are integers (discriminant a perfect square)."""
    disc = b * b - 4 * c
    if disc < 0 or math.isqrt(disc) ** 2 != disc:
        return None
    return str((-b + math.isqrt(disc)) // 2)   # disc = b^2 mod 4, so -b + sqrt(disc) is even


def _frac_answer(a: int, b: int, c: int, d: int) -> str | None:
    return None if b == 0 or d == 0 else str(Fraction(a, b) + Fraction(c, d))


# kind -> (pattern over the whole text, answer from the pattern's integer groups; None when it has no valid answer)
_FORMATS: dict[str, tuple[re.Pattern[str], Callable[..., str | None]]] = {
    "add": (re.compile(rf"{_NAT}\+{_NAT}=\?"), lambda a, b: str(a + b)),
    "sub": (re.compile(rf"{_NAT}-{_NAT}=\?"), lambda a, b: str(a - b)),
    "mul": (re.compile(rf"{_NAT}\*{_NAT}=\?"), lambda a, b: str(a * b)),
    "div": (re.compile(rf"{_NAT}/{_NAT}=\?"), lambda a, b: str(a // b) if b and a % b == 0 else None),
    "paren": (re.compile(rf"\({_NAT}\+{_NAT}\)\*{_NAT}=\?"), lambda a, b, c: str((a + b) * c)),
    "linear": (re.compile(rf"{_NAT}x{_SIGNED}={_INT},x=\?"), _linear_answer),
    "frac": (re.compile(rf"{_NAT}/{_NAT}\+{_NAT}/{_NAT}=\?"), _frac_answer),
    "quadratic": (re.compile(rf"x\^2{_SIGNED}x{_SIGNED}=0,max\(x\)=\?"), _quadratic_answer),
}
KNOWN_KINDS: tuple[str, ...] = tuple(_FORMATS)


def parse_problem_text(text: str, kinds: Sequence[str] = KNOWN_KINDS) -> MathProblem | None:
    """The problem with its exact answer if `text` is one of `kinds`' formats and has such an answer, else None."""
    if not isinstance(text, str):
        return None
    text = text.strip()                # a proposal usually ends with a newline; inner whitespace is not allowed
    for kind in kinds:
        pattern, answer_of = _FORMATS[kind]
        match = pattern.fullmatch(text)
        if match:
            answer = answer_of(*(int(g) for g in match.groups()))
            return None if answer is None else MathProblem(text, answer, kind)
    return None


class ProblemGenerator:
    """Deterministic generator of short problems with exact answers, e.g. "23+58=?" -> "81"."""

    def __init__(self, kinds: Sequence[str] = ("add", "sub", "mul", "linear"), max_operand: int = 99,
                 seed: int = 0):
        kinds = tuple(kinds)
        unknown = [k for k in kinds if k not in _FORMATS]
        if unknown or not kinds:
            raise ValueError(f"unknown problem kinds {unknown or '(none given)'}; known kinds: {list(KNOWN_KINDS)}")
        if max_operand < 2:
            raise ValueError(f"max_operand must be >= 2, got {max_operand}")
        self.kinds, self.max_operand, self.seed = kinds, int(max_operand), seed
        self.small = min(_SMALL, self.max_operand)

    def sample(self, rng: np.random.Generator) -> MathProblem:
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        m, s = self.max_operand, self.small

        def draw(low: int, high: int) -> int:      # inclusive bounds, as Python ints (no numpy scalars in text)
            return int(rng.integers(low, high + 1))

        if kind in ("add", "sub"):
            text = f"{draw(0, m)}{'+' if kind == 'add' else '-'}{draw(0, m)}=?"
        elif kind == "mul":
            text = f"{draw(0, m)}*{draw(0, s)}=?"
        elif kind == "div":
            divisor = draw(1, s)
            text = f"{divisor * draw(0, m)}/{divisor}=?"
        elif kind == "paren":
            text = f"({draw(0, m)}+{draw(0, m)})*{draw(0, s)}=?"
        elif kind == "linear":
            a, x, b = draw(2, s), draw(-m, m), draw(-m, m)
            text = f"{a}x{b:+d}={a * x + b},x=?"
        elif kind == "frac":
            text = f"{draw(1, s)}/{draw(2, s)}+{draw(1, s)}/{draw(2, s)}=?"
        else:  # quadratic: (x - r1)(x - r2) = x^2 - (r1 + r2) x + r1 r2
            r1, r2 = draw(-s, s), draw(-s, s)
            text = f"x^2{-(r1 + r2):+d}x{r1 * r2:+d}=0,max(x)=?"
        # The answer comes from the same parser that validates proposals: one definition of every format.
        problem = parse_problem_text(text, (kind,))
        assert problem is not None, text
        return problem

    def batch(self, n: int, seed: int | None = None) -> list[MathProblem]:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        rng = np.random.default_rng(self.seed if seed is None else seed)
        return [self.sample(rng) for _ in range(n)]

    def validate_problem_text(self, text: str) -> MathProblem | None:
        """A model-written problem in exactly one of this generator's formats, with its exact answer, or None."""
        return parse_problem_text(text, self.kinds)


# --- answers ------------------------------------------------------------------------------------------------------
def _closing(s: str, i: int, pair: str = "{}") -> int | None:
    """Index of the bracket closing the one at s[i], counting nesting; None if it never closes."""
    depth = 0
    for j in range(i, len(s)):
        depth += 1 if s[j] == pair[0] else -1 if s[j] == pair[1] else 0
        if depth == 0:
            return j
    return None


_BOXED = re.compile(r"\\boxed(?![A-Za-z])")


def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (nested braces kept whole) or `\\boxed 5`; None if absent or unclosed."""
    starts = [m.end() for m in _BOXED.finditer(text)] if isinstance(text, str) else []
    if not starts:
        return None
    i = starts[-1]
    if text.startswith("{", i):
        end = _closing(text, i)
        return None if end is None else text[i + 1:end]
    token = re.match(r"\s+([^\s$]+)", text[i:])     # "\boxed 5": one token, ended by whitespace or "$"
    return token.group(1) if token else None


_THOUSANDS = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?")


def normalize_answer(s: str) -> str:
    """Strips the notation around an answer that does not change its value ($, \\left, x=, \\text{}, ...)."""
    if not isinstance(s, str):
        return ""
    previous = None
    while s != previous:               # the rules uncover each other ("$x = 3$." -> "x = 3" -> "3"): repeat
        previous = s
        s = s.strip().strip("$").strip()
        s = re.sub(r"\\(left|right)(?![A-Za-z])", "", s)
        s = re.sub(r"\\[!,;:]", "", s)
        s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
        s = re.sub(r"\\(text|textbf|mathrm)\{([^{}]*)\}", r"\2", s)
        s = re.sub(r"^[A-Za-z]\s*=\s*", "", s)
        s = s[:-1] if s.endswith(".") else s
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    return s


_RATIONAL_FORMS = (
    re.compile(r"(?P<num>[+-]?\d+)"),
    re.compile(r"(?P<num>[+-]?(\d+\.\d*|\.\d+))"),
    re.compile(r"(?P<num>[+-]?\d+)/(?P<den>[+-]?\d+)"),
    re.compile(r"(?P<sign>[+-]?)\\frac\{(?P<num>[+-]?\d+)\}\{(?P<den>[+-]?\d+)\}"),
    re.compile(r"(?P<sign>[+-]?)\\frac(?P<num>\d)(?P<den>\d)"),       # "\frac12", as in "\dfrac12"
)


def _as_rational(s: str) -> Fraction | None:
    s = re.sub(r"\s+", "", s)
    for form in _RATIONAL_FORMS:
        m = form.fullmatch(s)
        if m:
            groups = m.groupdict()
            if groups.get("den") is not None and int(groups["den"]) == 0:
                return None
            value = Fraction(groups["num"]) / Fraction(groups.get("den") or 1)
            return -value if groups.get("sign") == "-" else value
    return None


# The names sympy may see. Model output goes through eval() inside parse_expr, so the namespace is closed
# ("__builtins__": {}) and multi-letter names outside it are refused before parsing.
_SYMPY_FUNCTIONS = {"sqrt": sympy.sqrt, "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "log": sympy.log,
                    "ln": sympy.log, "exp": sympy.exp, "pi": sympy.pi, "oo": sympy.oo}
_SYMPY_NAMESPACE = {"__builtins__": {}, "Integer": sympy.Integer, "Float": sympy.Float,
                    "Rational": sympy.Rational, "Symbol": sympy.Symbol, "Function": sympy.Function,
                    "e": sympy.E, **_SYMPY_FUNCTIONS}
_TRANSFORMATIONS = standard_transformations + (implicit_multiplication_application, rationalize)
_MAX_SYMPY_CHARS = 200
_MAX_EXPONENT_DIGITS = 4       # all exponents' digits together: bounds any integer power to ~base**10**4
_MAX_SIMPLIFY_OPS = 60
_MAX_EXPANDED_POWER = 12       # simplify expands powers of sums: (x+y+z+1)^30 takes 10 s, (x+1)^9999 minutes


def _read_group(s: str, i: int) -> tuple[str, int] | None:
    """The LaTeX argument at s[i:] (a {...} group or one character) and the index after it."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return None
    if s[i] != "{":
        return s[i], i + 1
    end = _closing(s, i)
    return None if end is None else (s[i + 1:end], end + 1)


_LATEX_OPERATORS = {"cdot": "*", "times": "*", "div": "/", "pi": " pi ", "infty": " oo "}


def _latex_to_sympy_syntax(s: str) -> str | None:
    """LaTeX-ish math in sympy's syntax: \\frac{a}{b} -> ((a)/(b)), \\sqrt{x} -> sqrt(x), ^ -> **; None if unknown."""
    out, i = [], 0
    while i < len(s):
        command = re.match(r"\\([A-Za-z]+)", s[i:])
        if command:
            name, i = command.group(1), i + command.end()
            if name == "frac":
                num = _read_group(s, i)
                den = num and _read_group(s, num[1])
                if not den:
                    return None
                parts = _latex_to_sympy_syntax(num[0]), _latex_to_sympy_syntax(den[0])
                if None in parts:
                    return None
                out.append(f"(({parts[0]})/({parts[1]}))")
                i = den[1]
            elif name == "sqrt":
                index = re.match(r"\[([^\]]*)\]", s[i:])
                i += index.end() if index else 0
                arg = _read_group(s, i)
                inner = arg and _latex_to_sympy_syntax(arg[0])
                if not inner:
                    return None
                out.append(f"(({inner})**(1/({index.group(1)})))" if index else f"sqrt({inner})")
                i = arg[1]
            elif name in _LATEX_OPERATORS:
                out.append(_LATEX_OPERATORS[name])
            elif name in _SYMPY_FUNCTIONS:
                out.append(f" {name} ")
            else:
                return None
        elif s[i] == "\\":
            return None
        else:                          # braces group like parentheses: "x^{2n}" -> "x**(2n)"
            out.append({"{": "(", "}": ")", "^": "**"}.get(s[i], s[i]))
            i += 1
    return "".join(out)


def _exponents_are_small(code: str) -> bool:
    """Refuses power towers and large exponents, which sympy would evaluate exactly and never finish."""
    digits = 0
    for m in re.finditer(r"\*\*", code):
        rest = re.sub(r"^[\s+-]*", "", code[m.end():])
        operand = re.match(r"[\w.]*", rest).group(0)           # a number, a name, or a function's name
        if rest[len(operand):].startswith("("):               # ... or a parenthesized group / call
            end = _closing(rest, len(operand), "()")
            operand = rest if end is None else rest[:end + 1]
        # "**" inside the exponent, or right after it (Python's a**b**c is a**(b**c)), is a tower
        if "**" in operand or rest[len(operand):].lstrip().startswith("**"):
            return False
        digits += sum(ch.isdigit() for ch in operand)
    return digits <= _MAX_EXPONENT_DIGITS


def _simplify(expr: sympy.Expr) -> sympy.Expr:
    """sympy.simplify where it is known to be quick; the expression as sympy evaluated it otherwise."""
    if sympy.count_ops(expr) > _MAX_SIMPLIFY_OPS:
        return expr
    for power in expr.atoms(sympy.Pow):
        if not power.base.is_Atom and power.exp.is_Number and abs(power.exp) > _MAX_EXPANDED_POWER:
            return expr
    return sympy.simplify(expr)


@functools.lru_cache(maxsize=4096)    # majority voting and equivalence checks see the same answers many times
def _to_sympy(s: str) -> sympy.Expr | None:
    """The normalized answer as a sympy expression, or None if it is too long, unsafe or does not parse."""
    if len(s) > _MAX_SYMPY_CHARS:
        return None
    code = _latex_to_sympy_syntax(s)
    if not code or not re.fullmatch(r"[0-9A-Za-z+\-*/().\s]+", code) or not _exponents_are_small(code):
        return None
    if any(len(name) > 1 and name not in _SYMPY_NAMESPACE for name in re.findall(r"[A-Za-z]+", code)):
        return None
    try:
        with warnings.catch_warnings():    # compiling "(1)(2)" warns "tuple is not callable": noise per sample
            warnings.simplefilter("ignore", SyntaxWarning)
            expr = parse_expr(code, global_dict=dict(_SYMPY_NAMESPACE), transformations=_TRANSFORMATIONS)
        expr = _simplify(expr)
    except Exception:                  # sympy raises many types on bad input; all mean "not an expression"
        return None
    if not isinstance(expr, sympy.Expr) or expr.has(sympy.zoo, sympy.nan):
        return None
    return expr


def answer_key(s: str) -> str:
    """Canonical key: equivalent answers get equal keys ("0.5", "1/2", "\\frac{1}{2}" -> "1/2")."""
    normalized = normalize_answer(s)
    try:
        rational = _as_rational(normalized)
        if rational is not None:
            return str(rational)
        expr = _to_sympy(normalized)
        if expr is None:
            return normalized
        if isinstance(expr, sympy.Rational):            # e.g. "2^{-1}": the same key as the plain rationals
            return str(Fraction(int(expr.p), int(expr.q)))
        return sympy.srepr(expr)
    except Exception:                  # a huge integer can exceed Python's int <-> str digit limit
        return normalized


def answers_equivalent(a: str | None, b: str | None) -> bool:
    """Whether two answers are mathematically equal; False for missing answers, never raises."""
    if not isinstance(a, str) or not isinstance(b, str) or not normalize_answer(a) or not normalize_answer(b):
        return False
    if answer_key(a) == answer_key(b):
        return True
    try:
        ea, eb = _to_sympy(normalize_answer(a)), _to_sympy(normalize_answer(b))
        return ea is not None and eb is not None and _simplify(ea - eb) == 0
    except Exception:
        return False


def score_response(response: str, ground_truth: str) -> float:
    """The verifiable reward: 1.0 if the response's last boxed answer equals the ground truth, else 0.0."""
    return 1.0 if answers_equivalent(extract_boxed(response), ground_truth) else 0.0


# --- datasets -----------------------------------------------------------------------------------------------------
_SUPPORTED_SUFFIXES = (".jsonl", ".parquet")


def _field(row: dict, field: str, where: str) -> Any:
    """row[field], where a dotted field walks nested dicts ("reward_model.ground_truth")."""
    if field in row:                   # a literal key with a dot in its name wins over the path
        return row[field]
    value: Any = row
    for depth, part in enumerate(field.split(".")):
        if not isinstance(value, dict) or part not in value:
            at = ".".join(field.split(".")[:depth]) or "the row"
            keys = sorted(value) if isinstance(value, dict) else f"(a {type(value).__name__}, not a dict)"
            raise KeyError(f"{where}: field {field!r} not found ({part!r} missing in {at}; available keys: {keys})")
        value = value[part]
    return value


def _problem_text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):                # chat format: the question is the last user message
        users = [m for m in value if isinstance(m, dict) and m.get("role") == "user"]
        if users and isinstance(users[-1].get("content"), str):
            return users[-1]["content"]
    raise ValueError(f"{where}: the problem is neither a string nor a chat list with a user message: {value!r:.200}")


def _answer_text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))   # 3.0 -> "3", as boxed
    raise ValueError(f"{where}: the answer must be a string or a number, got {type(value).__name__}")


def _rows(path: pathlib.Path):
    """(where, row) for every row of a jsonl or parquet file, read lazily so that `limit` reads little."""
    if path.suffix.lower() == ".jsonl":
        for number, row in iter_jsonl_objects(path):
            yield f"{path}:{number}", row
    else:
        import pyarrow.parquet as pq   # only parquet readers pay for importing pyarrow
        index = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                yield f"{path} row {index}", row
                index += 1


def read_problems(path: str | pathlib.Path, problem_field: str = "problem", answer_field: str = "answer",
                  limit: int | None = None) -> list[MathProblem]:
    """Problems with ground-truth answers from a .jsonl or .parquet file (veRL's layout included)."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such problems file: {path}")
    if path.suffix.lower() not in _SUPPORTED_SUFFIXES:
        raise ValueError(f"unsupported problems file {path}: supported extensions are {list(_SUPPORTED_SUFFIXES)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    problems, seen_any = [], False
    for where, row in _rows(path):
        seen_any = True
        if limit is not None and len(problems) >= limit:
            break
        problems.append(MathProblem(_problem_text(_field(row, problem_field, where), where),
                                    _answer_text(_field(row, answer_field, where), where)))
    if not seen_any:
        raise ValueError(f"problems file {path} has no rows")
    return problems


# --- prompts ------------------------------------------------------------------------------------------------------
def format_player_prompt(problem: str, template: str = PLAYER_TEMPLATE) -> str:
    """The player's prompt. Substitutes by replace, not str.format: a 7B template may contain "\\boxed{}"."""
    if "{problem}" not in template:
        raise ValueError(f"the player template must contain '{{problem}}', got {template!r}")
    return template.replace("{problem}", problem)


def format_player_target(answer: str) -> str:
    """The completion a supervised warm-up trains the player on, in the form `score_response` reads."""
    return "\\boxed{" + answer + "}"
