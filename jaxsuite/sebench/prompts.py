"""The prompts of SE-Bench's regimes: with the docs (open book) and the same without them (closed book).

    open_prompt = task_prompt(task, docs, with_docs=True)      # docs of the task's selected_functions inserted
    closed_prompt = task_prompt(task, docs, with_docs=False)   # identical, minus the docs
    target = solution_response(task)                           # one fenced python block

The closed-book prompt is the open one with its documentation section removed, so a model trained on one and
tested on the other sees the same words around the task (the paper's Open-SFT / Closed-SFT pairing). Both
ask for a solution that uses the package, in one python block, as the paper's prompts do; the wording here is
ours (the note gives the structure, not the text). `doc_form="summary"` shows each function as its qualified
name and the first sentence of its doc, what a small model's context holds; "full" shows the whole rewritten
doc, as the paper does. `wrapper` puts the prompt into a chat template ("{prompt}" keeps it plain).
"""
from __future__ import annotations

import re
from typing import Mapping

from jaxsuite.sebench.docs import ApiDoc, doc_key

OPEN_TEMPLATE = ("Library {package} documentation:\n{docs}\n"
                 "Task: {query}\nExample: {example}\n"
                 "Write `{function_name}` with {package} in one python block.\n")
CLOSED_TEMPLATE = OPEN_TEMPLATE.replace("Library {package} documentation:\n{docs}\n", "")
PLAIN = "{prompt}"


def short_doc(doc: ApiDoc) -> str:
    """'zwc.kocito: Compute the arithmetic mean along the specified axis.': the qualified name (from the doc's
    first line) and the first sentence of its summary."""
    lines = doc.rewritten_doc.strip().split("\n")
    head = re.split(r"[(\s]", lines[0].strip(), maxsplit=1)[0]
    summary = next((line.strip() for line in lines[1:] if line.strip()), "")
    sentence = re.split(r"(?<=\.)\s", summary, maxsplit=1)[0]
    return f"{head}: {sentence}"


def docs_section(task: dict, docs: Mapping[str, ApiDoc], *, doc_form: str = "summary") -> str:
    """The docs of the task's selected functions, in its order, one per line ("summary") or block ("full");
    `docs` is keyed by `doc_key` ("mean", "linalg.inv")."""
    wanted = list(dict.fromkeys(doc_key(f) for f in task.get("selected_functions", [])))
    missing = [f for f in wanted if f not in docs]
    if missing:
        raise KeyError(f"task {task.get('id', '?')}: no documentation for {missing}")
    if doc_form not in ("summary", "full"):
        raise ValueError(f"doc_form must be 'summary' or 'full', got {doc_form!r}")
    chosen = [docs[f] for f in wanted]
    if doc_form == "summary":
        return "".join(short_doc(d) + "\n" for d in chosen)
    return "\n".join(d.rewritten_doc.strip() + "\n" for d in chosen)


def task_prompt(task: dict, docs: Mapping[str, ApiDoc], *, with_docs: bool, package: str = "zwc",
                doc_form: str = "summary", wrapper: str = PLAIN) -> str:
    example = task.get("example") or task["test_cases"][0]
    name = re.sub(r"^def\s+|:\s*$", "", task["function_name"].strip())
    call = f"{name.split('(')[0]}({example['input']}) returns {example['output']}"
    fields = dict(package=package, query=task["query"], example=call, function_name=name)
    if with_docs:
        prompt = OPEN_TEMPLATE.format(docs=docs_section(task, docs, doc_form=doc_form), **fields)
    else:
        prompt = CLOSED_TEMPLATE.format(**fields)
    return wrapper.format(prompt=prompt)


def solution_response(task: dict) -> str:
    """The training target for a task: its reference solution as one python block."""
    return f"```python\n{task['solution'].strip()}\n```"
