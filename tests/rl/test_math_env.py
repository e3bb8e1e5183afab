"""Tests of jaxsuite.rl.math_env: every answer is checked against an independent computation."""
import json
import math
import re
import time
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jaxsuite.rl.math_env import (KNOWN_KINDS, PLAYER_TEMPLATE, MathProblem, ProblemGenerator, answer_key,
                                  answers_equivalent, extract_boxed, format_player_prompt, format_player_target,
                                  normalize_answer, read_problems, score_response)


# --- generator ----------------------------------------------------------------------------------------------------
def _independent_answer(problem: MathProblem) -> Fraction:
    """The answer recomputed from the text alone, without the module's parser."""
    text = problem.problem
    if problem.kind in ("add", "sub", "mul", "paren"):
        return Fraction(eval(text.removesuffix("=?")))
    if problem.kind == "div":
        a, b = map(int, text.removesuffix("=?").split("/"))
        assert a % b == 0, text
        return Fraction(a // b)
    if problem.kind == "frac":
        a, b, c, d = map(int, re.fullmatch(r"(\d+)/(\d+)\+(\d+)/(\d+)=\?", text).groups())
        return Fraction(a, b) + Fraction(c, d)
    if problem.kind == "linear":    # substitute the answer back: lhs(x) must equal rhs
        lhs, rhs = text.removesuffix(",x=?").split("=")
        x = int(problem.answer)
        assert eval(lhs.replace("x", "*x"), {"x": x}) == int(rhs), text
        return Fraction(x)
    if problem.kind == "quadratic":  # the answer is a root, and the larger one by the float quadratic formula
        poly = text.split("=")[0]
        b, c = map(int, re.fullmatch(r"x\^2([+-]\d+)x([+-]\d+)", poly).groups())
        x = int(problem.answer)
        assert x * x + b * x + c == 0, text
        larger = (-b + math.sqrt(b * b - 4 * c)) / 2
        assert abs(larger - x) < 1e-9, text
        return Fraction(x)
    raise AssertionError(f"untested kind {problem.kind}")


@pytest.mark.parametrize("kind", KNOWN_KINDS)
def test_every_kind_has_correct_exact_answers(kind):
    problems = ProblemGenerator(kinds=(kind,), max_operand=99, seed=3).batch(300)
    for p in problems:
        assert p.kind == kind
        assert Fraction(p.answer) == _independent_answer(p), p
        if "/" in p.answer:                     # canonical: reduced, positive denominator > 1
            num, den = map(int, p.answer.split("/"))
            assert den > 1 and math.gcd(num, den) == 1, p
        assert p.problem.isascii() and " " not in p.problem and len(p.problem) <= 28, p
    assert len({p.problem for p in problems}) > 30     # not a constant generator


def test_operand_bounds_and_negative_differences():
    problems = ProblemGenerator(kinds=("add", "sub", "mul"), max_operand=9, seed=0).batch(300)
    for p in problems:
        assert all(int(n) <= 9 for n in re.findall(r"\d+", p.problem)), p
    assert any(int(p.answer) < 0 for p in problems if p.kind == "sub")
    assert {p.kind for p in problems} == {"add", "sub", "mul"}


def test_generator_is_deterministic_given_the_seed():
    kinds = KNOWN_KINDS
    assert ProblemGenerator(kinds, seed=7).batch(50) == ProblemGenerator(kinds, seed=7).batch(50)
    assert ProblemGenerator(kinds, seed=7).batch(50) != ProblemGenerator(kinds, seed=8).batch(50)
    gen = ProblemGenerator(kinds, seed=7)
    assert gen.batch(20, seed=123) == ProblemGenerator(kinds, seed=0).batch(20, seed=123)
    assert gen.sample(np.random.default_rng(5)) == gen.sample(np.random.default_rng(5))


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"known kinds.*'add'.*'quadratic'"):
        ProblemGenerator(kinds=("add", "cube"))
    with pytest.raises(ValueError, match="max_operand"):
        ProblemGenerator(max_operand=1)
    with pytest.raises(ValueError, match="n must be"):
        ProblemGenerator().batch(-1)


def test_validate_round_trips_generated_problems():
    gen = ProblemGenerator(kinds=KNOWN_KINDS, seed=11)
    for p in gen.batch(400):
        assert gen.validate_problem_text(p.problem) == p
    assert gen.validate_problem_text("23+58=?\n") == MathProblem("23+58=?", "81", "add")
    assert gen.validate_problem_text("1000+1=?") == MathProblem("1000+1=?", "1001", "add")   # beyond max_operand
    assert gen.validate_problem_text("1x-5=-3,x=?").answer == "2"


@pytest.mark.parametrize("text", [
    "3++4=?", "", "x=?", "23+58", "23+58=", "23 + 58=?", "007+3=?", "-3+4=?", "3+4=?3", "hello world",
    "7/2=?",                       # inexact division
    "5/0=?", "1/0+1/2=?",          # division by zero
    "3x+5=21,x=?",                 # non-integer solution
    "0x+5=5,x=?",                  # no unique solution
    "x^2+0x+1=0,max(x)=?",         # no real roots
    "x^2+1x-1=0,max(x)=?",         # irrational roots
    "x^2-5x+6=0,x=?", "3x+5=20", "(1+2)*3", "((1+2))*3=?",
])
def test_validate_rejects_malformed_or_unanswerable(text):
    assert ProblemGenerator(kinds=KNOWN_KINDS).validate_problem_text(text) is None


def test_validate_accepts_only_the_generators_kinds():
    assert ProblemGenerator(kinds=("add",)).validate_problem_text("6*7=?") is None
    assert ProblemGenerator(kinds=("mul",)).validate_problem_text("6*7=?") == MathProblem("6*7=?", "42", "mul")


def test_random_strings_are_rarely_valid_and_never_crash():
    rng = np.random.default_rng(0)
    gen = ProblemGenerator(kinds=KNOWN_KINDS)
    alphabet = list("0123456789+-*/=?x^(),max ")
    texts = ["".join(rng.choice(alphabet, size=rng.integers(1, 15))) for _ in range(2000)]
    valid = [p for p in map(gen.validate_problem_text, texts) if p is not None]
    assert len(valid) < 20
    for p in valid:                                    # whatever got through must still be answered correctly
        assert Fraction(p.answer) == _independent_answer(p)


# --- answers ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    (r"so \boxed{\frac{1}{2}}.", r"\frac{1}{2}"),
    (r"\boxed{a{b{c}}d}", "a{b{c}}d"),
    (r"first \boxed{1} then \boxed{2}", "2"),
    (r"\boxed{1} and \boxed{2", None),
    ("no box here", None),
    (r"$\boxed 5$", "5"),
    (r"\boxed 42 apples", "42"),
    (r"\boxed{}", ""),
    (r"\boxed{3} \boxedtext", "3"),
])
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize("raw, expected", [
    ("  $x = 3$. ", "3"), (r"\left(1,2\right)", "(1,2)"), (r"\dfrac{1}{2}", r"\frac{1}{2}"),
    (r"\tfrac{3}{4}", r"\frac{3}{4}"), (r"\text{5}", "5"), (r"1\,000", "1000"), ("1,000", "1000"),
    ("12,345,678.5", "12345678.5"), ("1,00", "1,00"), ("1,2", "1,2"), (r"y=\!7", "7"),
])
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


@pytest.mark.parametrize("a, b", [
    ("1/2", r"\frac{1}{2}"), ("0.5", r"\frac{1}{2}"), (r"\dfrac12", "0.5"), ("x=3", "3"), ("$3$", "3.0"),
    (r"2\sqrt{2}", r"\sqrt{8}"), ("1,000", "1000"), (r"-\frac{3}{4}", "-0.75"), ("2^{-1}", "1/2"),
    (r"\frac{\pi}{2}", r"\pi/2"), ("x^2+2x+1", "(x+1)^2"), (r"\sqrt[3]{8}", "2"), (r"3\cdot 4", "12"),
    (r"\left(1+\sqrt{3}\right)^2", r"4+2\sqrt{3}"), (r"\frac{1}{1+\sqrt{2}}", r"\sqrt{2}-1"),
    (r"\sin^2(x)+\cos(x)^2", "1"),
])
def test_equivalent_answers(a, b):
    assert answers_equivalent(a, b) and answers_equivalent(b, a)


@pytest.mark.parametrize("a, b", [
    ("3", "4"), (None, "3"), ("3", None), ("", ""), ("$$", "$$"), ("1/2", "0.49"), (r"\sqrt{2}", "1.414"),
    ("x+1", "x+2"),
])
def test_inequivalent_answers(a, b):
    assert not answers_equivalent(a, b)


def test_answer_key_is_equal_for_equivalent_answers():
    assert {answer_key(s) for s in ["1/2", r"\frac{1}{2}", "0.5", "2/4", r"\dfrac{1}{2}", r"$\frac12$", "x=0.50"]} \
        == {"1/2"}
    assert {answer_key(s) for s in ["-3/4", r"-\frac{3}{4}", r"\frac{-3}{4}", "-0.75"]} == {"-3/4"}
    assert answer_key("6/2") == answer_key("3") == "3"
    assert answer_key(r"2\sqrt{2}") == answer_key(r"\sqrt{8}") != answer_key(r"\sqrt{2}")
    assert answer_key("3") != answer_key("4")


@pytest.mark.parametrize("hostile", [
    "9^{9^{9}}", "9^9^9", "(2^{9999})^{9999}", "__import__('os').system('echo')", "exec(chr(95))",
    r"\frac{1}{", "}{", "a" * 1000, "1/0", r"\boxed{", "1" * 10000, r"\undefined{3}", "((((", "1/0+x",
    "(x+1)^{9999}", "(x+y+z+1)^{30}", r"\exp(\exp(\exp(100)))", "(1)(3)",
])
def test_hostile_answers_never_raise_or_hang(hostile):
    start = time.perf_counter()
    assert isinstance(answer_key(hostile), str)
    assert answers_equivalent(hostile, "1") is False
    assert score_response(r"\boxed{" + hostile + "}", "2") == 0.0
    assert time.perf_counter() - start < 2.0


def test_code_in_answers_is_not_evaluated():
    # a sympy parse would turn these into expressions; they must stay plain strings
    assert answer_key("exec(1)") == "exec(1)"
    assert answer_key("__import__('os')") == "__import__('os')"


def test_score_response():
    assert score_response(r"23+58 is \boxed{81}", "81") == 1.0
    assert score_response(r"\boxed{80} no, \boxed{81}", "81") == 1.0
    assert score_response(r"\boxed{81} no, \boxed{80}", "81") == 0.0
    assert score_response("81", "81") == 0.0                  # unboxed answers earn nothing
    assert score_response(r"\boxed{\frac{7}{12}}", "7/12") == 1.0
    for p in ProblemGenerator(kinds=KNOWN_KINDS, seed=2).batch(100):
        assert score_response(format_player_target(p.answer), p.answer) == 1.0
        assert score_response(format_player_target(str(Fraction(p.answer) + 1)), p.answer) == 0.0


# --- datasets -----------------------------------------------------------------------------------------------------
def _write_jsonl(path, rows_or_lines):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows_or_lines) + "\n")
    return path


def test_read_jsonl(tmp_path):
    path = _write_jsonl(tmp_path / "p.jsonl", [
        {"problem": "1+1?", "answer": "2"}, "", {"problem": "half of 5?", "answer": 2.5},
        {"problem": "3*3?", "answer": 9}, {"problem": "ten?", "answer": 10.0},
        {"problem": "big?", "answer": 12345678901234567891},
    ])
    assert read_problems(path) == [MathProblem("1+1?", "2"), MathProblem("half of 5?", "2.5"),
                                   MathProblem("3*3?", "9"), MathProblem("ten?", "10"),
                                   MathProblem("big?", "12345678901234567891")]
    assert read_problems(str(path), limit=2) == [MathProblem("1+1?", "2"), MathProblem("half of 5?", "2.5")]
    assert read_problems(path, limit=0) == []

    nested = _write_jsonl(tmp_path / "nested.jsonl", [{"q": {"text": "2+2?"}, "meta.answer": 4, "meta": {}}])
    assert read_problems(nested, "q.text", "meta.answer") == [MathProblem("2+2?", "4")]   # literal dotted key wins


def test_read_parquet_flat_and_nested(tmp_path):
    flat = tmp_path / "flat.parquet"
    pq.write_table(pa.table({"question": ["q1", "q2"], "solution": ["1", "2"]}), flat)
    assert read_problems(flat, "question", "solution") == [MathProblem("q1", "1"), MathProblem("q2", "2")]

    verl = tmp_path / "verl.parquet"          # veRL's layout: chat-list prompt, answer in a nested struct
    pq.write_table(pa.Table.from_pylist([
        {"data_source": "gsm8k",
         "prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is 2+2?"}],
         "reward_model": {"style": "rule", "ground_truth": "4"}},
        {"data_source": "gsm8k",
         "prompt": [{"role": "user", "content": "old"}, {"role": "assistant", "content": "x"},
                    {"role": "user", "content": "What is 3*3?"}],
         "reward_model": {"style": "rule", "ground_truth": "9"}},
    ]), verl)
    assert read_problems(verl, "prompt", "reward_model.ground_truth") == [
        MathProblem("What is 2+2?", "4"), MathProblem("What is 3*3?", "9")]


def test_read_problems_errors(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        read_problems(missing)

    csv = tmp_path / "p.csv"
    csv.write_text("problem,answer\n")
    with pytest.raises(ValueError, match=r"supported.*\.jsonl.*\.parquet"):
        read_problems(csv)

    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"problem": "a", "answer": "1"}, "{not json"])
    with pytest.raises(ValueError, match=re.escape(f"{bad}:2") + ".*malformed JSON"):
        read_problems(bad)

    no_field = _write_jsonl(tmp_path / "nofield.jsonl", [{"problem": "a", "answer": "1"}, "",
                                                         {"question": "b", "answer": "2"}])
    with pytest.raises(KeyError, match=re.escape(f"{no_field}:3") + r".*'problem'.*\['answer', 'question'\]"):
        read_problems(no_field)

    verl = tmp_path / "verl.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "q", "reward_model": {"style": "rule"}}]), verl)
    with pytest.raises(KeyError, match=r"row 0.*'reward_model\.ground_truth'.*\['style'\]"):
        read_problems(verl, "prompt", "reward_model.ground_truth")

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="no rows"):
        read_problems(empty)

    not_object = _write_jsonl(tmp_path / "list.jsonl", ["[1, 2]"])
    with pytest.raises(ValueError, match=re.escape(f"{not_object}:1") + ".*JSON object"):
        read_problems(not_object)


# --- prompts ------------------------------------------------------------------------------------------------------
def test_player_prompt_and_target():
    assert format_player_prompt("23+58=?") == "Q:23+58=?\nA:"
    assert PLAYER_TEMPLATE.count("{problem}") == 1
    big = "Solve and put the answer in \\boxed{}.\n{problem}\nAnswer:"
    assert format_player_prompt("2+2=?", big) == "Solve and put the answer in \\boxed{}.\n2+2=?\nAnswer:"
    assert format_player_target("7/12") == "\\boxed{7/12}"
    with pytest.raises(ValueError, match=re.escape("{problem}")):
        format_player_prompt("1+1=?", "Q: {question}")
