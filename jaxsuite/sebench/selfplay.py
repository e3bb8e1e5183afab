"""Self-play for SE-Bench: the model writes its own tasks about the library, execution keeps the sound ones,
and it trains on solving them (GRPO with n=2, as the paper's self-play).

    proposal = proposal_prompt(doc)                      # "... Write a new task that uses zwc.kocito ..."
    [task] = check_proposals([text], ["mean"], mapping, package_dir, pool, rng)   # a task, or None if unsound

A proposal is "Task: <query>" followed by one python block with `def solve(x)`. It is kept when the block
passes the evaluator's static checks (the function calls the package, its result depends on it, no numpy) and
runs on 8 inputs of the function's kind (drawn as the generator draws them) in the sandbox, each printing a
value (a number, a boolean or a nested list): those printouts become the task's expected outputs, so a kept
task is one its own solution passes. A model that never saw a proposal cannot write one, so the stage begins
with `proposer_sft_steps` SFT steps on proposals made from the training tasks (their queries and solutions);
then each step samples proposals for some training functions, keeps the sound ones, samples two closed-book
solutions to each kept task and updates on both: the proposals rewarded for being kept, the solutions for
passing (group-normalised per function and per task).
"""
from __future__ import annotations

import random
import re

from jaxsuite.sebench import evaluate as E
from jaxsuite.sebench import tasks as T
from jaxsuite.sebench.docs import ApiDoc
from jaxsuite.sebench.names import NameMapping
from jaxsuite.sebench.prompts import PLAIN, short_doc

PROPOSAL_TEMPLATE = ("Library {package} documentation:\n{doc}\n"
                     "Write a new task that uses {name}: one line \"Task: ...\", then `solve(x)` in one python block.\n")


def proposal_prompt(doc: ApiDoc, *, package: str = "zwc", wrapper: str = PLAIN) -> str:
    line = short_doc(doc)
    return wrapper.format(prompt=PROPOSAL_TEMPLATE.format(package=package, doc=line + "\n", name=line.split(":")[0]))


def proposal_response(task: dict) -> str:
    """A training task as a proposal: what the proposer learns to write."""
    return f"Task: {task['query']}\n```python\n{task['solution'].strip()}\n```"


def parse_proposal(text: str) -> tuple[str, str] | None:
    """(query, code) of a proposal, or None when it has no "Task:" line or no python block."""
    match = re.search(r"Task:\s*(.+?)\s*(?:\n|```)", text or "")
    code = E.extract_code(text or "", block="first")
    if match is None or code is None or not match.group(1).strip():
        return None
    return match.group(1).strip(), code


def _draft(text: str, function: str, mapping: NameMapping, rng: random.Random, cases: int):
    """(task without outputs, the harness program) of a proposal that passes the static checks, else None."""
    parsed = parse_proposal(text)
    op = next((o for o in T.OPERATIONS if o.function == function), None)
    if parsed is None or op is None:
        return None
    query, code = parsed
    inputs: list = []
    while len(inputs) < cases:
        x = T.draw_input(op.takes, op.domain, rng)
        if x not in inputs:
            inputs.append(x)
    task = {"query": query, "function_name": "def solve(x):", "selected_functions": [function],
            "test_cases": [{"input": f"x={x!r}", "output": ""} for x in inputs], "solution": code}
    decided, program = E.judge(task, f"```python\n{code}\n```", mapping)
    return None if decided is not None else (task, program)


def check_proposals(texts: list[str], functions: list[str], mapping: NameMapping, package_dir, pool,
                    rng: random.Random, *, cases: int = 8) -> list[dict | None]:
    """Each proposal as a task carrying its own solution's outputs, or None when it is unsound (see the module
    docstring); `functions[i]` is the library function proposal i was asked about (its kind picks the inputs).
    The runs go to the sandbox pool together."""
    drafts = [_draft(t, f, mapping, rng, cases) for t, f in zip(texts, functions)]
    path = [str(package_dir.resolve().parent)]
    futures = [pool.submit(d[1], limits=E.limits_for(E.PAPER_RULES), python_path=path) if d else None for d in drafts]
    kept: list[dict | None] = []
    for draft, future in zip(drafts, futures):
        if draft is None:
            kept.append(None)
            continue
        result, task = future.result(), draft[0]
        printed = E.split_results(result.stdout)
        values = [E.normalise(p) for p in printed]
        if result.outcome != "ok" or len(printed) != cases or any(isinstance(v, str) for v in values):
            kept.append(None)
            continue
        for case, value in zip(task["test_cases"], values):
            case["output"] = repr(value)
        task["example"] = dict(task["test_cases"][0])
        kept.append(task)
    return kept
