"""Local retrieval: BM25 scores against a naive implementation of the formula, the corpus checks, save/load."""
import json
import math
import re

import pytest

from jaxsuite.agents.parse import ToolCall
from jaxsuite.agents.retrieval import BM25Index, CorpusError, Document, read_corpus, tokenize, write_corpus
from jaxsuite.agents.tools import Toolbox, read_tool, search_tool

DOCS = [
    Document("d1", "The Eiffel tower is 330 metres tall and stands in Paris.", "Eiffel tower"),
    Document("d2", "The Louvre in Paris is the most visited museum.", "Louvre"),
    Document("d3", "Big Ben is a clock tower in London.", "Big Ben"),
    Document("d4", "Tokyo tower is a communications tower, 333 metres tall.", "Tokyo tower"),
]


def naive_bm25(docs, query, k1=1.5, b=0.75):
    """BM25 as Lucene scores it: idf = ln(1 + (N - df + 0.5) / (df + 0.5)), tf / (tf + k1 (1 - b + b |d| / avgdl))."""
    tokens = [tokenize(f"{d.title} {d.contents}") for d in docs]
    avgdl = sum(map(len, tokens)) / len(tokens)
    scores = []
    for t in tokens:
        s = 0.0
        for w in tokenize(query):
            df, tf = sum(w in x for x in tokens), t.count(w)
            s += math.log(1 + (len(docs) - df + 0.5) / (df + 0.5)) * tf / (tf + k1 * (1 - b + b * len(t) / avgdl))
        scores.append(s)
    return scores


@pytest.mark.parametrize("query", ["tower tall", "Paris museum", "clock in London", "metres"])
def test_scores_and_ranking_match_the_formula(query):
    index = BM25Index(DOCS)
    want = naive_bm25(DOCS, query)
    hits = index.search(query, k=4)
    assert [h.document.id for h in hits] == [DOCS[i].id for i in sorted(range(4), key=lambda i: -want[i])
                                             if want[i] > 0]
    for h in hits:
        assert h.score == pytest.approx(want[DOCS.index(h.document)], rel=1e-5)


def test_no_match_and_stop_words_only_give_nothing():
    index = BM25Index(DOCS)
    assert index.search("zebra") == [] and index.search("the and of") == []


def test_save_load_round_trip_and_rebuild_on_change(tmp_path):
    index = BM25Index(DOCS)
    index.save(tmp_path / "idx")
    loaded = BM25Index.load(tmp_path / "idx")
    assert [(h.document, h.score) for h in loaded.search("tower tall")] == \
        [(h.document, h.score) for h in index.search("tower tall")]
    assert loaded.get("d3") == DOCS[2] and loaded.get("nope") is None
    again = BM25Index.load_or_build(tmp_path / "idx", DOCS)
    assert again.search("Louvre")[0].document.id == "d2"
    changed = DOCS[:3] + [Document("d9", "A new zebra page.")]
    rebuilt = BM25Index.load_or_build(tmp_path / "idx", changed)
    assert rebuilt.search("zebra")[0].document.id == "d9"
    assert BM25Index.load(tmp_path / "idx").get("d9") is not None          # the new index was saved
    (tmp_path / "idx" / "documents.jsonl").write_text(json.dumps({"id": "x", "contents": "edited"}) + "\n")
    with pytest.raises(CorpusError, match="documents changed since the index was built"):
        BM25Index.load(tmp_path / "idx")
    with pytest.raises(CorpusError, match="no BM25 index here"):
        BM25Index.load(tmp_path / "missing")


def test_a_gs_bucket_works_like_a_folder(fake_bucket):
    index = BM25Index(DOCS)
    index.save(f"{fake_bucket}/idx")
    assert BM25Index.load(f"{fake_bucket}/idx").search("Tokyo")[0].document.id == "d4"


@pytest.mark.parametrize("content, message", [
    ("", "the corpus is empty"),
    ('{"id": "a", "contents": "x"}\n{"id": "b", "contents": \n', "corpus.jsonl:2: malformed JSON"),
    ('{"id": "a"}\n', "corpus.jsonl:1: missing or empty 'contents'"),
    ('{"id": "a", "contents": "x"}\n\n{"id": "a", "contents": "y"}\n', "corpus.jsonl:3: duplicate id 'a' (first on line 1)"),
    ('["a", "x"]\n', "corpus.jsonl:1: expected a JSON object, got list"),
])
def test_bad_corpus_files_are_named_by_line(tmp_path, content, message):
    path = tmp_path / "corpus.jsonl"
    path.write_text(content)
    with pytest.raises(CorpusError, match=re.escape(message)):
        read_corpus(path)
    with pytest.raises(CorpusError, match="corpus file not found"):
        read_corpus(tmp_path / "absent.jsonl")


def test_corpus_round_trip(tmp_path):
    write_corpus(DOCS, tmp_path / "c.jsonl")
    assert read_corpus(tmp_path / "c.jsonl") == DOCS


def test_search_and_read_tools():
    index = BM25Index(DOCS)
    box = Toolbox([search_tool(index, k=2), read_tool(index)])
    text = box.call(ToolCall("search", {"query": "tower tall"})).text        # d4 has "tower" three times
    assert text == ("1. [Tokyo tower](d4)\nTokyo tower is a communications tower, 333 metres tall.\n"
                    "2. [Eiffel tower](d1)\nThe Eiffel tower is 330 metres tall and stands in Paris.")
    assert box.call(ToolCall("read", {"doc_id": "d3"})).text == "# Big Ben\n\nBig Ben is a clock tower in London."
    assert box.call(ToolCall("read", {"doc_id": "zz"})).text == "No document with id 'zz'."
    assert box.call(ToolCall("search", {"query": "zebra"})).text == "No results for 'zebra'."
