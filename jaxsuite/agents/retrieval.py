"""Local retrieval: a corpus of pages, a BM25 index over it (bm25s), saved and loaded from the workdir.

Corpus format (the one AgentCPM-Report's retrieval and FlashRAG use): JSON lines

    {"id": "doc-17", "contents": "...", "title": "optional", "url": "optional"}

`read_corpus` checks every line (JSON, the two required fields, unique ids) and names the file and line of the
first bad one. `Retriever` is the interface the search tool talks to; `BM25Index` implements it with bm25s
(sparse-matrix BM25, Lucene's scoring by default); a dense retriever implements the same two methods.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tempfile
from pathlib import Path
from typing import Iterable, Protocol, Sequence

from etils import epath

from jaxsuite.core.extras import require
from jaxsuite.core.files import iter_jsonl_objects

# Common English function words: they match everywhere and only blur the ranking.
STOPWORDS = frozenset("""a an and are as at be by for from has have in is it its of on or that the this to was
were what when where which who whom why will with how does did do""".split())
_WORD = re.compile(r"\w+", re.UNICODE)


class CorpusError(ValueError):
    """A corpus file that cannot be read; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class Document:
    id: str
    contents: str
    title: str = ""
    url: str = ""


@dataclasses.dataclass(frozen=True)
class Hit:
    document: Document
    score: float


class Retriever(Protocol):
    def search(self, query: str, k: int = 10) -> list[Hit]: ...

    def get(self, doc_id: str) -> Document | None: ...


def tokenize(text: str) -> list[str]:
    """Lower-cased words without stop words: what both the index and the queries are split into."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def read_corpus(path: str | epath.PathLike) -> list[Document]:
    """Reads a jsonl corpus; raises CorpusError naming the file and line of the first bad record."""
    path = epath.Path(path)
    if not path.exists():
        raise CorpusError(f"{path}: corpus file not found")
    documents, seen = [], {}
    for line_no, record in iter_jsonl_objects(path, error=CorpusError):
        for key in ("id", "contents"):
            if not isinstance(record.get(key), (str, int)) or str(record.get(key)) == "":
                raise CorpusError(f"{path}:{line_no}: missing or empty {key!r}")
        doc_id = str(record["id"])
        if doc_id in seen:
            raise CorpusError(f"{path}:{line_no}: duplicate id {doc_id!r} (first on line {seen[doc_id]})")
        seen[doc_id] = line_no
        documents.append(Document(doc_id, str(record["contents"]), str(record.get("title") or ""),
                                  str(record.get("url") or "")))
    if not documents:
        raise CorpusError(f"{path}: the corpus is empty")
    return documents


def write_corpus(documents: Iterable[Document], path: str | epath.PathLike) -> None:
    """Writes a jsonl corpus atomically (a temporary file renamed into place)."""
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / (path.name + ".tmp")
    tmp.write_text("".join(json.dumps({k: v for k, v in dataclasses.asdict(d).items() if v}, ensure_ascii=False)
                           + "\n" for d in documents))
    tmp.replace(path)


def _fingerprint(documents: Sequence[Document]) -> str:
    h = hashlib.sha256()
    for d in documents:
        h.update(json.dumps(dataclasses.astuple(d)).encode())
    return h.hexdigest()[:16]


class BM25Index:
    """BM25 over a list of documents (title and contents indexed together)."""

    FILES = "bm25"          # the bm25s arrays and vocabulary
    DOCS = "documents.jsonl"
    META = "index.json"

    def __init__(self, documents: Sequence[Document], *, k1: float = 1.5, b: float = 0.75, _model=None):
        require("bm25s", extra="agents", for_="jaxsuite.agents (BM25 retrieval)")
        import bm25s
        if not documents:
            raise CorpusError("cannot index an empty corpus")
        self.documents = list(documents)
        self._by_id = {d.id: d for d in self.documents}
        self.k1, self.b = k1, b
        if _model is None:
            _model = bm25s.BM25(k1=k1, b=b)
            _model.index([tokenize(f"{d.title} {d.contents}") or ["<empty>"] for d in self.documents],
                         show_progress=False)
        self._model = _model

    def search(self, query: str, k: int = 10) -> list[Hit]:
        words = tokenize(query)
        if not words:
            return []
        k = min(k, len(self.documents))
        ids, scores = self._model.retrieve([words], k=k, show_progress=False, n_threads=1)
        return [Hit(self.documents[int(i)], float(s)) for i, s in zip(ids[0], scores[0]) if s > 0]

    def get(self, doc_id: str) -> Document | None:
        return self._by_id.get(doc_id)

    def save(self, folder: str | epath.PathLike) -> None:
        """Writes the index and its documents under `folder` (any epath, gs:// included); complete or absent:
        the metadata file, written last, is what `load` checks for."""
        folder = epath.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as local:
            self._model.save(local)
            (folder / self.FILES).mkdir(exist_ok=True)
            for f in Path(local).iterdir():
                (folder / self.FILES / f.name).write_bytes(f.read_bytes())
        write_corpus(self.documents, folder / self.DOCS)
        meta = {"documents": len(self.documents), "fingerprint": _fingerprint(self.documents),
                "k1": self.k1, "b": self.b, "format": "jaxsuite-bm25-v1"}
        tmp = folder / (self.META + ".tmp")
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(folder / self.META)

    @classmethod
    def load(cls, folder: str | epath.PathLike) -> "BM25Index":
        require("bm25s", extra="agents", for_="jaxsuite.agents (BM25 retrieval)")
        import bm25s
        folder = epath.Path(folder)
        if not (folder / cls.META).exists():
            raise CorpusError(f"{folder}: no BM25 index here (missing {cls.META}; build one with BM25Index(...).save)")
        meta = json.loads((folder / cls.META).read_text())
        documents = read_corpus(folder / cls.DOCS)
        if _fingerprint(documents) != meta["fingerprint"]:
            raise CorpusError(f"{folder / cls.DOCS}: the documents changed since the index was built; rebuild it")
        with tempfile.TemporaryDirectory() as local:
            for f in (folder / cls.FILES).iterdir():
                (Path(local) / f.name).write_bytes(f.read_bytes())
            model = bm25s.BM25.load(local)
        return cls(documents, k1=meta["k1"], b=meta["b"], _model=model)

    @classmethod
    def load_or_build(cls, folder: str | epath.PathLike, documents: Sequence[Document]) -> "BM25Index":
        """The index saved in `folder` when it was built from these documents, else a new one, saved there."""
        folder = epath.Path(folder)
        if (folder / cls.META).exists():
            meta = json.loads((folder / cls.META).read_text())
            if meta.get("fingerprint") == _fingerprint(documents):
                return cls.load(folder)
        index = cls(documents)
        index.save(folder)
        return index
