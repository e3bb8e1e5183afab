"""Multi-turn rollouts: the token record against the chat format, and the RL update's recomputed log-probs
against the sampler's over episodes with tool outputs."""

import jax
import numpy as np
import pytest

from jaxsuite.agents.chat import ChatFormat
from jaxsuite.agents.environment import Budget, Environment, Task
from jaxsuite.agents.retrieval import BM25Index, Document
from jaxsuite.agents.rollout import pack_episodes, pack_turns, run_episodes, summarize, turn_delta
from jaxsuite.agents.tools import Toolbox, search_tool
from jaxsuite.core import sharding as shd
from jaxsuite.core.tokenizer import load_tokenizer
from jaxsuite.models.config import DecoderConfig
from jaxsuite.models.factory import init_model
from jaxsuite.rl.policy import Policy, PolicyLossConfig

CALL = '<tool_call>\n{"name": "search", "arguments": {"query": "tower"}}\n</tool_call>'
DOCS = [Document("d1", "The Eiffel tower is 330 metres tall.", "Eiffel tower"),
        Document("d2", "Big Ben is in London.", "Big Ben")]


@pytest.fixture(scope="module")
def fmt(qwen3_tokenizer_folder):
    tok = load_tokenizer(str(qwen3_tokenizer_folder))
    return ChatFormat.for_folder(qwen3_tokenizer_folder, tok)


@pytest.fixture(scope="module")
def model(fmt):
    arch = dict(vocab_size=fmt.tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=4096,
                tie_word_embeddings=True, model_type="qwen3")
    return init_model(DecoderConfig(**arch), seed=0)


def env(budget, enable_thinking=True):
    """Thinking on: the generation prompt has no pre-filled empty think block, which Qwen3's template would drop
    from earlier turns when the conversation is rendered again (with thinking off the record keeps what the
    model saw, and differs from a re-rendering there)."""
    return Environment(Toolbox([search_tool(BM25Index(DOCS), k=1)]), system_prompt="Answer in <answer></answer>.",
                       budget=budget, enable_thinking=enable_thinking)






def test_turn_deltas_extend_the_rendering_token_for_token(fmt):
    """prompt + the model's turn + the delta = the template's rendering of the whole conversation."""
    e = env(Budget())
    history = e.initial_messages(Task("t", "How tall is the Eiffel tower?"))
    prompt = fmt.encode(history, e.tools, add_generation_prompt=True)
    turn = {"role": "assistant", "content": "",
            "tool_calls": [{"function": {"name": "search", "arguments": {"query": "tower"}}}]}
    tool = [{"role": "tool", "content": "1. [Eiffel tower](d1)\nThe Eiffel tower is 330 metres tall."}]
    full = fmt.encode(history + [turn] + tool, e.tools, add_generation_prompt=True)
    # Qwen3 renders a final assistant turn with an empty think block, the same turn followed by tool output
    # without: the delta must come from the latter
    assert fmt.render(history + [turn], e.tools).endswith("<think>\n\n</think>\n\n" + CALL + "<|im_end|>\n")
    delta = turn_delta(fmt, history + [turn], tool, enable_thinking=True, tools=e.tools)
    assert delta == "\n<|im_start|>user\n<tool_response>\n" + tool[0]["content"] + \
        "\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    assert prompt + fmt.encode_text(CALL + "<|im_end|>") + fmt.encode_text(delta) == full


def test_multi_turn_episodes_record_the_model_tokens_and_the_update_recomputes_their_logprobs(fmt, model, scripted):
    script = tuple(fmt.encode_text(CALL) + [fmt.end_of_turn_id])
    budget = Budget(max_turns=3, max_new_tokens=len(script) + 2)
    e = env(budget)
    tasks = [Task("a", "How tall is the Eiffel tower?", "330 metres"), Task("b", "Where is Big Ben?", "London")]
    episodes = run_episodes(model, fmt, e, tasks, n=2, temperature=1.0, seed=3, context=1024,
                            logits_processor=scripted(script))
    assert len(episodes) == 4
    for ep in episodes:
        # the third turn spends the turn budget: its call is not run (no turn would read the result)
        assert ep.stop_reason == "max_turns" and ep.num_turns == 3 and ep.stats.tool_calls == 2
        assert [s.trainable for s in ep.segments] == [False, True, False, True, False, True]
        model_tokens = [t for s in ep.segments if s.trainable for t in s.tokens]
        assert model_tokens == list(script) * 3
        assert [m["role"] for m in ep.messages] == ["system", "user"] + ["assistant", "tool"] * 2 + ["assistant"]
        assert "330 metres" in ep.messages[3]["content"]              # the search tool's observation
        # the record is exactly the conversation rendered by the tokenizer's own template, up to the last turn
        before_last = fmt.encode([{k: v for k, v in m.items() if k != "error"} for m in ep.messages[:-1]], e.tools,
                                 add_generation_prompt=True)
        assert ep.tokens == before_last + list(script) and ep.reward == 0.0
    stats = summarize(episodes)
    assert stats["turns_per_episode"] == 3 and stats["format_error_rate"] == 0 and stats["success_rate"] == 0

    mesh = shd.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
    policy = Policy(model, optim=dict(lr=1e-3, warmup_steps=0, min_lr_ratio=1.0, steps=4, weight_decay=0.0,
                                      b1=0.9, b2=0.999, grad_clip=0.0),
                    loss=PolicyLossConfig(temperature=1.0), mesh=mesh)
    batch = pack_episodes(episodes, [1.0, -1.0, 0.5, 0.0], seq_len=1024, pad_id=0)
    logp, _ = policy.score(batch)
    mask = batch["loss_mask"] > 0
    assert mask.sum() == 4 * 3 * len(script)                           # model tokens only: no prompt, no tool output
    np.testing.assert_allclose(logp[mask], batch["old_logprobs"][mask], atol=2e-4)
    assert np.all(batch["old_logprobs"][mask] < 0)                     # the policy's log-probs, not the forced 0
    rows, index = pack_turns(episodes, [1.0, -1.0, 0.5, 0.0], seq_len=1024, pad_id=0)
    assert len(index) == 12 and rows["loss_mask"].sum() == mask.sum()
    turn_logp, _ = policy.score(rows)
    turn_mask = rows["loss_mask"] > 0
    np.testing.assert_allclose(np.sort(turn_logp[turn_mask]), np.sort(logp[mask]), atol=2e-4)
    metrics = policy.update(batch)
    assert np.isfinite(metrics["loss"])


def test_budgets_and_format_errors_end_or_mark_episodes(fmt, model, scripted):
    broken = tuple(fmt.encode_text('<tool_call>\n{"name": search}\n</tool_call>') + [fmt.end_of_turn_id])
    answer = tuple(fmt.encode_text("It is <answer>330 metres</answer>") + [fmt.end_of_turn_id])
    e = env(Budget(max_turns=5, max_new_tokens=max(len(broken), len(answer)) + 2, max_repeats=2),
            enable_thinking=False)
    (ep,) = run_episodes(model, fmt, e, [Task("a", "q")], temperature=1.0, context=1024,
                         logits_processor=scripted(broken))
    assert ep.stop_reason == "repetition" and ep.num_turns == 2
    assert ep.turn_format_error == [True, True] and ep.messages[3]["error"] == "format_error"
    assert "Format error" in ep.messages[3]["content"]
    rows, index = pack_turns([ep], [1.0], seq_len=1024, pad_id=0)
    assert rows["advantages"].sum() == 0                             # format-error turns get no credit
    (done,) = run_episodes(model, fmt, e, [Task("a", "q", "330 metres")], temperature=1.0, context=1024,
                           logits_processor=scripted(answer))
    assert (done.stop_reason, done.answer, done.reward) == ("answered", "330 metres", 1.0)
    (cut,) = run_episodes(model, fmt, env(Budget(max_new_tokens=4)), [Task("a", "q")], context=1024,
                          logits_processor=scripted(answer))
    assert cut.stop_reason == "length" and cut.stats.tokens_out == 4
    call = tuple(fmt.encode_text(CALL) + [fmt.end_of_turn_id])
    (full,) = run_episodes(model, fmt, env(Budget(max_new_tokens=len(call) + 2, max_turns=20, max_repeats=20)),
                           [Task("a", "q")], context=700, logits_processor=scripted(call))
    assert full.stop_reason == "context" and full.num_turns >= 2 and len(full.tokens) <= 700
