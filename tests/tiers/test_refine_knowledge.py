"""L3's fact check and demonstrations, and L4's verification, dedup, export and retrieval, on hand-made texts."""
import random

import pytest

from jaxsuite.tiers import knowledge as K
from jaxsuite.tiers import refine as R

SOURCE = ("The function json.dumps serialises an object to a JSON formatted string. It was added in Python 2.6 and "
          "accepts an indent argument. The Decoder class reads the string back into Python objects.")


def test_fact_check():
    ok = R.fact_check(SOURCE, "Q: What does json.dumps do?\nA: The function json.dumps serialises an object to a "
                              "JSON formatted string.")
    assert ok["ok"], ok
    wrong_number = R.fact_check(SOURCE, "The function json.dumps was added in Python 3.9 and serialises an object.")
    assert not wrong_number["ok"] and wrong_number["new_numbers"] == ["3.9"]
    new_name = R.fact_check(SOURCE, "The function pickle.dumps serialises an object to a JSON formatted string.")
    assert not new_name["ok"] and new_name["new_names"] == ["pickle.dumps"]
    invented = R.fact_check(SOURCE, "Remarkably elephants navigate enormous savannahs using ancestral memories daily.")
    assert not invented["ok"] and invented["support"] < 0.2
    assert not R.fact_check(SOURCE, "json.dumps serialises.")["long_enough"]


def test_every_demonstration_passes_the_fact_check_and_prompts_name_their_kind():
    doc = {"id": "d1", "text": SOURCE, "metadata": {"url": "https://x"}}
    tasks = R.refinement_tasks([doc], per_document=len(R.KINDS), seed=0)
    assert sorted(t.kind for t in tasks) == sorted(R.KINDS)
    for t in tasks:
        demo = R.demonstration(t)
        assert R.fact_check(t.source, demo)["ok"], (t.kind, demo)
        assert t.source in t.prompt or t.kind == "repair"
    repair = next(t for t in tasks if t.kind == "repair")
    assert R.demonstration(repair) == repair.source and repair.source not in repair.prompt
    with pytest.raises(ValueError, match="unknown refinement kind"):
        R.refine_prompt("poem", SOURCE)
    broken = R.corrupt(SOURCE, random.Random(0))
    assert broken != SOURCE and set(broken.replace("-\n", "").split()) != set()


def test_knowledge_items_are_verified_against_one_sentence():
    records = [
        {"id": "r1", "source_id": "s", "kind": "qa:middle", "url": "u",
         "text": "Q: What does json.dumps do?\nA: json.dumps serialises an object to a JSON formatted string."},
        {"id": "r2", "source_id": "s", "kind": "qa:high", "url": "u",       # the same pair again: deduplicated
         "text": "Q: What does json.dumps do?\nA: json.dumps serialises an object to a JSON formatted string."},
        {"id": "r3", "source_id": "s", "kind": "qa:primary", "url": "u",    # words from two sentences: unsupported
         "text": "Q: What is json.dumps?\nA: It accepts an indent argument and reads objects back."},
        {"id": "r4", "source_id": "s", "kind": "qa:university", "url": "u",  # a name the source never mentions
         "text": "Q: What does ujson.dumps do?\nA: json.dumps serialises an object to a JSON formatted string."},
        {"id": "r5", "source_id": "s", "kind": "knowledge", "url": "u",
         "text": "- It was added in Python 2.6 and accepts an indent argument.\n- The moon is made of cheese."},
        {"id": "r6", "source_id": "s", "kind": "qa:middle", "url": "u", "text": "no question here"},
        {"id": "r7", "source_id": "s", "kind": "rewrite:textbook", "url": "u", "text": "ignored for L4"},
    ]
    items, counts = K.knowledge_items(records, {"s": SOURCE})
    assert counts == {"candidates": 6, "unparsed": 1, "unsupported": 2, "question_names": 1, "verified": 3}
    unique = K.deduplicate(items)
    assert [(i.kind, i.refined_id) for i in unique] == [("qa", "r1"), ("fact", "r5")]
    assert unique[0].evidence == "The function json.dumps serialises an object to a JSON formatted string."


def test_export_and_retrieval(tmp_path):
    pytest.importorskip("bm25s")
    items = [K.KnowledgeItem(f"i{n}", "fact", "", text, text, f"s{n}", "u", "r") for n, text in enumerate(
        ["Heaps keep the smallest item first.", "CSV files hold rows of comma separated values.",
         "The json module serialises objects."])]
    paths = K.export(items, str(tmp_path / "L4"))
    assert K.read_items(str(tmp_path / "L4")) == items
    from jaxsuite.agents.retrieval import BM25Index
    index = BM25Index.load(paths["index"])
    assert index.search("comma separated rows", k=1)[0].document.id == "i1"


def test_names_skip_the_first_word_of_sentences_list_items_and_qa_lines():
    text = "- In this lesson we study json.dumps.\n- It was written by Guido. Then Tim read it.\nQ: What is X?\nA: Yes."
    assert R.names_in(text) == {"json.dumps", "Guido", "Tim"}        # "Then" starts a sentence; "X" is one letter
