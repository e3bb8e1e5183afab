"""L4: organised, verified knowledge: Q&A pairs and facts from L3, each checked against one sentence of its source,
deduplicated, indexed for retrieval (the agent runtime's BM25 index) and exported as a dataset.

    items = knowledge_items(l3_records, sources)      # [KnowledgeItem] verified, with their sources
    items = deduplicate(items)
    export(items, folder)                             # knowledge.jsonl (the dataset) + index/ (BM25)

Verification is stricter than L3's fact check: an answer or fact is kept only when one sentence of its source
contains at least `min_overlap` of its content words (it is grounded in a single place, so the source
sentence can be shown as evidence), and, for Q&A, the question's names occur in the source too.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Iterable, Sequence

from jaxsuite.core import files
from jaxsuite.tiers.refine import names_in, sentences

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.'-]*")
_QA = re.compile(r"^\s*Q:\s*(?P<q>.+?)\s*\n\s*A:\s*(?P<a>.+?)\s*$", re.S)


@dataclasses.dataclass(frozen=True)
class KnowledgeItem:
    id: str
    kind: str              # "qa" or "fact"
    question: str          # "" for a fact
    answer: str            # the answer, or the fact
    evidence: str          # the source sentence that supports it
    source_id: str
    url: str
    refined_id: str        # the L3 record it came from

    def text(self) -> str:
        return f"Q: {self.question}\nA: {self.answer}" if self.kind == "qa" else self.answer


def _content(text: str) -> list[str]:
    return [w.lower().strip(".") for w in _WORD.findall(text) if len(w) > 2]


def best_evidence(claim: str, source: str) -> tuple[str, float]:
    """The source sentence containing the largest share of the claim's content words, and that share."""
    words = _content(claim)
    if not words:
        return "", 0.0
    best, share = "", 0.0
    for s in sentences(source):
        have = set(_content(s))
        frac = sum(w in have for w in words) / len(words)
        if frac > share:
            best, share = s, frac
    return best, share


def parse_qa(text: str) -> tuple[str, str] | None:
    m = _QA.match(text.strip())
    return (" ".join(m.group("q").split()), " ".join(m.group("a").split())) if m else None


def parse_facts(text: str) -> list[str]:
    return [" ".join(line[2:].split()) for line in text.split("\n") if line.startswith("- ") and line[2:].strip()]


def _item_id(kind: str, question: str, answer: str) -> str:
    return hashlib.sha1(f"{kind}|{question.lower()}|{answer.lower()}".encode()).hexdigest()[:16]


def knowledge_items(records: Iterable[dict], sources: dict[str, str], *, min_overlap: float = 0.8) -> tuple[
        list[KnowledgeItem], dict[str, int]]:
    """Verified items from L3 records ({"id", "source_id", "kind", "text", "url"}) of the Q&A and knowledge kinds;
    `sources` maps source_id -> source text. Also returns the counts per outcome."""
    items, counts = [], {"candidates": 0, "unparsed": 0, "unsupported": 0, "question_names": 0, "verified": 0}
    for r in records:
        kind, source = r["kind"], sources.get(r["source_id"], "")
        if kind.startswith("qa:"):
            qa = parse_qa(r["text"])
            claims = [qa] if qa else []
        elif kind == "knowledge":
            claims = [("", f) for f in parse_facts(r["text"])]
        else:
            continue
        if not claims:
            counts["unparsed"] += 1
            continue
        for question, answer in claims:
            counts["candidates"] += 1
            evidence, share = best_evidence(answer, source)
            if share < min_overlap:
                counts["unsupported"] += 1
                continue
            if question and any(n not in source for n in names_in(question)):
                counts["question_names"] += 1
                continue
            k = "qa" if question else "fact"
            items.append(KnowledgeItem(_item_id(k, question, answer), k, question, answer, evidence,
                                       r["source_id"], r.get("url", ""), r["id"]))
            counts["verified"] += 1
    return items, counts


def deduplicate(items: Sequence[KnowledgeItem]) -> list[KnowledgeItem]:
    """One item per normalised (kind, question, answer), the first kept (its id is that key's hash)."""
    seen, out = set(), []
    for item in items:
        if item.id not in seen:
            seen.add(item.id)
            out.append(item)
    return out


def export(items: Sequence[KnowledgeItem], folder: str, *, index: bool = True) -> dict:
    """Writes <folder>/knowledge.jsonl (one JSON object per item, atomically) and, with `index`, the BM25 index of
    the items (jaxsuite.agents.retrieval: contents = the Q&A or fact, title = the evidence, url = the source)
    under <folder>/index. Returns the paths."""
    rows = "".join(json.dumps(dataclasses.asdict(i), ensure_ascii=False) + "\n" for i in items)
    out = {"dataset": files.atomic_write_text(files.join_path(folder, "knowledge.jsonl"), rows)}
    if index and items:
        from jaxsuite.agents.retrieval import BM25Index, Document
        idx = BM25Index([Document(i.id, i.text(), title=i.evidence, url=i.url) for i in items])
        idx.save(files.join_path(folder, "index"))
        out["index"] = files.join_path(folder, "index")
    return out


def read_items(folder: str) -> list[KnowledgeItem]:
    return [KnowledgeItem(**row) for _, row in files.iter_jsonl_objects(files.join_path(folder, "knowledge.jsonl"))]
