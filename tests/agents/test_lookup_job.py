"""The agent demonstration job end to end on its test config: every stage runs, the report agrees with the
traces it wrote, the teacher trajectories are the chat format's rendering, a rerun resumes, the export serves."""
import json

import pytest

from jaxsuite.agents.chat import ChatFormat
from jaxsuite.agents.lookup import facts, job
from jaxsuite.agents.retrieval import BM25Index
from jaxsuite.core.config_utils import load_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    config = load_config("configs/agent_tiny.py:test")
    workdir = tmp_path_factory.mktemp("agent") / "run"
    return config, workdir, job.run(config, str(workdir))


def test_the_report_matches_the_traces_and_the_stages_ran(finished, check_png):
    config, workdir, results = finished
    evaluations = results["evaluations"]
    assert list(evaluations) == ["untrained", "sft", "grpo"]
    traces = [json.loads(line) for line in (workdir / "traces.jsonl").read_text().splitlines()]
    assert len(traces) == results["test_questions"] == 3 * 2             # 10 countries, 20% held out, 3 questions
    assert evaluations["grpo"]["success_rate"] == sum(t["reward"] > 0.5 for t in traces) / len(traces)
    assert {t["task"]["metadata"]["country"] for t in traces}.isdisjoint(
        {c.name for c in facts.split_countries(10, 0.2, 0)[0]})          # held-out countries only
    for stage, steps in (("sft", config.sft.steps), ("grpo", config.grpo.steps)):
        lines = (workdir / stage / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in lines] == list(range(1, steps + 1))
    assert results["sft"]["last"]["nll"] > 0 and "reward_mean" in results["grpo"]["last"]
    check_png(workdir / "stages.png", coloured=False)


def test_teacher_trajectories_are_the_formats_rendering(finished):
    config, workdir, _ = finished
    from jaxsuite.core.tokenizer import SentencePieceTokenizer
    train, test = facts.split_countries(10, 0.2, 0)
    env = job.build_environment(config, BM25Index([facts.page(c) for c in train + test]))
    fmt = ChatFormat(SentencePieceTokenizer(str(workdir / "tokenizer.model")))
    task = facts.questions(train, split="train")[1]
    episode = job.teacher_episode(task, env, fmt)
    messages = [{k: v for k, v in m.items() if k != "error"} for m in episode.messages]
    answer = {"role": "assistant", "content": f"<answer>{task.answer}</answer>"}
    rendered = fmt.encode(messages + [answer], env.tools, enable_thinking=True)
    # Qwen3's template writes an empty think block into a final assistant turn: compare up to that turn
    head = fmt.encode(messages, env.tools, add_generation_prompt=True, enable_thinking=True)
    assert episode.tokens == head + fmt.encode_text(f"<answer>{task.answer}</answer>") + [fmt.end_of_turn_id]
    assert rendered[:len(head)] == head
    assert f"The capital of {task.metadata['country']}" in episode.messages[3]["content"]   # the tool's output


def test_a_rerun_resumes_and_the_export_serves(finished):
    from jaxsuite.agents.chat_model import ChatRequest, LocalChatModel
    config, workdir, results = finished
    again = job.run(config, str(workdir))
    assert again["sft"] == results["sft"] and again["grpo"] == results["grpo"]     # finished stages not rerun
    assert again["evaluations"] == results["evaluations"]
    served = LocalChatModel.from_folder(workdir)                  # the workdir's hf/ folder
    [reply] = served.complete([ChatRequest([{"role": "user", "content": "What is the capital of X?"}],
                                           temperature=0.0, max_tokens=4)])
    assert reply.choices[0].finish_reason in ("stop", "length", "tool_calls")
