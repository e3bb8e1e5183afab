"""L3: model-based refinement (Q&A at four levels, rewrites in two styles, knowledge extraction, repair), with
provenance and a check that the refined text keeps the facts it was made from.

    tasks = refinement_tasks(documents, kinds=KINDS, seed=0)            # [RefineTask(doc, kind, prompt)]
    outputs = model_refine(model, tokenizer, tasks, ...)                # batched greedy or sampled generation
    check = fact_check(task.source, output)                             # numbers and names kept, text supported

Prompts follow UltraData-Math's generator types (Q&A at school levels, rewrites in named styles, knowledge
extraction) plus repair of broken text. A released instruct model (`model.init_from`) answers them zero-shot.
A tiny model cannot follow an instruction it was never shown, so the toy job first teaches its refiner the
format on demonstrations that `demonstration` writes by rule from other documents (each output built only
from sentences of its source): a stand-in for the instruct model's outputs, never mixed into L3 itself.

The fact check, applied to every output before it enters L3:
  numbers    every number in the output occurs in the source
  names      every dotted name (json.dumps), CamelCase or capitalised word that is not a sentence's first word
             occurs in the source
  support    at least `min_support` of the output's content words (4+ letters) occur in the source (for Q&A,
             of the answer's)
  length     at least `min_words` words
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from typing import Sequence

LEVELS = ("primary", "middle", "high", "university")
STYLES = ("textbook", "lecture_notes")
KINDS = tuple(f"qa:{lv}" for lv in LEVELS) + tuple(f"rewrite:{s}" for s in STYLES) + ("knowledge", "repair")
LEVEL_WORDS = {"primary": "a primary-school pupil", "middle": "a middle-school student",
               "high": "a high-school student", "university": "a university student"}
STYLE_WORDS = {"textbook": "a textbook section", "lecture_notes": "lecture notes"}
MAX_SOURCE_WORDS = 120


@dataclasses.dataclass(frozen=True)
class RefineTask:
    source_id: str
    source: str           # the source text (cut to MAX_SOURCE_WORDS words: what the prompt shows)
    kind: str
    prompt: str
    url: str = ""


_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`'\"(])")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_NAME = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\b|\b[A-Z][a-z]+[A-Z]\w*\b|\b[A-Z][a-zA-Z]+\b")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")


def sentences(text: str) -> list[str]:
    """Sentences of 5 to 45 words with a letter, from the text's lines and sentence breaks."""
    out = []
    for line in text.split("\n"):
        for s in _SENT.split(line.strip()):
            s = " ".join(s.split())
            if 5 <= len(s.split()) <= 45 and re.search("[A-Za-z]", s):
                out.append(s)
    return out


def cut_words(text: str, n: int = MAX_SOURCE_WORDS) -> str:
    lines, count = [], 0
    for line in text.split("\n"):
        words = line.split()
        if count + len(words) > n:
            lines.append(" ".join(words[:max(0, n - count)]))
            break
        lines.append(line)
        count += len(words)
    return "\n".join(lines).strip()


def refine_prompt(kind: str, source: str) -> str:
    if kind.startswith("qa:"):
        ask = f"Write one question and its answer for {LEVEL_WORDS[kind[3:]]}, using only the text."
    elif kind.startswith("rewrite:"):
        ask = f"Rewrite the text as {STYLE_WORDS[kind[8:]]}, keeping every fact."
    elif kind == "knowledge":
        ask = "List the facts the text states, one per line, each starting with '- '."
    elif kind == "repair":
        ask = "The text below is broken (missing spaces, split words, repeated words). Write it out repaired."
    else:
        raise ValueError(f"unknown refinement kind {kind!r}; expected one of {KINDS}")
    return f"{ask}\n\nText:\n{source}\n\nOutput:\n"


def corrupt(text: str, rng: random.Random) -> str:
    """Broken text for the repair task: some spaces dropped, some words split by a hyphen and newline, some doubled."""
    words = text.split(" ")
    out = []
    for w in words:
        r = rng.random()
        if r < 0.08 and out:
            out[-1] += w
        elif r < 0.14 and len(w) > 5:
            out.append(w[:len(w) // 2] + "-\n" + w[len(w) // 2:])
        elif r < 0.18:
            out.extend([w, w])
        else:
            out.append(w)
    return " ".join(out)


def refinement_tasks(documents: Sequence[dict], *, kinds: Sequence[str] = KINDS, per_document: int = 2,
                     seed: int = 0, source_words: int = MAX_SOURCE_WORDS) -> list[RefineTask]:
    """`per_document` tasks per document ({"id", "text", "metadata": {"url"}}), kinds drawn with `seed`, each
    showing the document's first `source_words` words; a repair task shows a corrupted copy of them."""
    rng = random.Random(seed)
    tasks = []
    for doc in documents:
        source = cut_words(doc["text"], source_words)
        if len(sentences(source)) < 2:
            continue
        for kind in rng.sample(list(kinds), min(per_document, len(kinds))):
            shown = corrupt(source, rng) if kind == "repair" else source
            tasks.append(RefineTask(str(doc["id"]), source, kind, refine_prompt(kind, shown),
                                    str((doc.get("metadata") or {}).get("url", ""))))
    return tasks


# ------------------------------------------------------------------------------------------------------------
# Demonstrations (the toy refiner's teacher), built only from the source's own sentences
# ------------------------------------------------------------------------------------------------------------
def _subject(sentence: str) -> str:
    names = [m.group(0) for m in _NAME.finditer(sentence) if m.start() > 0]
    return names[0] if names else " ".join(sentence.split()[:3])


def demonstration(task: RefineTask) -> str:
    """A reference output for a task, written by rule from the source's sentences."""
    sents = sentences(task.source)
    ranked = sorted(sents, key=lambda s: -len(_NAME.findall(s)))
    if task.kind.startswith("qa:"):
        best = ranked[0]
        subject = _subject(best)
        question = {"primary": f"What is {subject}?", "middle": f"What does the text say about {subject}?",
                    "high": f"Explain what the text states about {subject}.",
                    "university": f"According to the source, what holds for {subject}?"}[task.kind[3:]]
        return f"Q: {question}\nA: {best}"
    if task.kind == "rewrite:textbook":
        return f"Section: {_subject(sents[0])}\n\n" + " ".join(sents[:4])
    if task.kind == "rewrite:lecture_notes":
        return "Lecture notes\n" + "\n".join(f"* {s}" for s in sents[:4])
    if task.kind == "knowledge":
        return "\n".join(f"- {s}" for s in ranked[:3])
    if task.kind == "repair":
        return task.source
    raise ValueError(f"unknown refinement kind {task.kind!r}")


# ------------------------------------------------------------------------------------------------------------
# The fact check
# ------------------------------------------------------------------------------------------------------------
def _sentence_initial(text: str) -> set[int]:
    """Where a sentence, list item or Q/A line starts (its first word is capitalised anyway)."""
    return {m.end() for m in re.finditer(r"(?:^|[.!?:]\s+|\n)\s*(?:[-*]\s+|Q:\s*|A:\s*)?", text)}


def names_in(text: str) -> set[str]:
    starts = _sentence_initial(text)
    out = set()
    for m in _NAME.finditer(text):
        name = m.group(0)
        if "." in name or any(c.isupper() for c in name[1:]) or m.start() not in starts:
            out.add(name)
    return out - {"Q", "A", "Section", "Lecture"}


def fact_check(source: str, output: str, *, min_support: float = 0.7, min_words: int = 8) -> dict:
    """Whether `output` keeps to the facts of `source` (see the module docstring): {"ok", and per check the
    offending items or the measured share}."""
    src_words = {w.lower() for w in _WORD.findall(source)}
    # a question is phrased in its own words: for Q&A the support is the answer's
    claim = output.split("\nA:", 1)[1] if output.lstrip().startswith("Q:") and "\nA:" in output else output
    out_words = [w.lower() for w in _WORD.findall(claim)]
    numbers = sorted(set(_NUMBER.findall(output)) - set(_NUMBER.findall(source)))
    src_tokens = set(re.findall(r"[\w.]+", source))
    names = sorted(n for n in names_in(output) if n not in src_tokens and n not in source)
    support = sum(w in src_words for w in out_words) / max(len(out_words), 1)
    long_enough = len(output.split()) >= min_words
    return {"ok": bool(not numbers and not names and support >= min_support and long_enough),
            "new_numbers": numbers, "new_names": names, "support": round(support, 4), "long_enough": long_enough}


def output_id(source_id: str, kind: str, seed: int) -> str:
    return hashlib.sha1(f"{source_id}|{kind}|{seed}".encode()).hexdigest()[:16]
