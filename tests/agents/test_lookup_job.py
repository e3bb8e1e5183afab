"""The agent demonstration's pieces: the fact base and the teacher trajectories. The job itself runs end to end in
tests/test_notebooks.py::test_agents_notebook_runs (the notebook runs it; that test checks the report against the
traces, the stages' steps, the export and a resumed rerun)."""
import json

from jaxsuite.agents.chat import SPECIAL_MARKERS, ChatFormat
from jaxsuite.agents.lookup import facts, job
from jaxsuite.agents.retrieval import BM25Index
from jaxsuite.core.config_utils import load_config
from jaxsuite.core.tokenizer import train_sentencepiece


def test_the_fact_base_splits_countries_and_every_question_is_answered_by_its_page():
    train, test = facts.split_countries(10, 0.2, seed=0)
    assert len(train) == 8 and len(test) == 2 and not {c.name for c in train} & {c.name for c in test}
    index = BM25Index([facts.page(c) for c in train + test])
    for task in facts.questions(test, split="test"):
        top = index.search(task.metadata["country"], k=1)[0].document
        assert top.title == task.metadata["country"] and str(task.answer) in top.contents


def test_teacher_trajectories_are_the_formats_rendering():
    config = load_config("configs/agent_tiny.py:test")
    train, test = facts.split_countries(10, 0.2, 0)
    pages = [facts.page(c) for c in train + test]
    env = job.build_environment(config, BM25Index(pages))
    tok = train_sentencepiece([p.contents for p in pages] * 4, 400, user_symbols=SPECIAL_MARKERS)
    fmt = ChatFormat(tok)
    task = facts.questions(train, split="train")[1]
    episode = job.teacher_episode(task, env, fmt)
    messages = [{k: v for k, v in m.items() if k != "error"} for m in episode.messages]
    head = fmt.encode(messages, env.tools, add_generation_prompt=True, enable_thinking=True)
    answer = fmt.encode_text(f"<answer>{task.answer}</answer>") + [fmt.end_of_turn_id]
    assert episode.tokens == head + answer                       # prompt, call, the tool's output, answer
    assert [s.trainable for s in episode.segments] == [False, True, False, True]
    call = json.loads(episode.messages[2]["tool_calls"][0]["function"]["arguments"])
    assert call == {"query": task.metadata["country"]}
    assert f"The capital of {task.metadata['country']}" in episode.messages[3]["content"]   # the tool's output
