"""The agent runtime's demonstration: a tiny model learns to answer lookup questions with a search tool.

    python -m jaxsuite.launch --config configs/agent_tiny.py --workdir runs/agent_tiny

1. A fact base of made-up countries (jaxsuite.agents.lookup.facts): one page each in a BM25-indexed corpus,
   three questions per country; test countries never appear in training.
2. A SentencePiece tokenizer trained on the pages and the chat format, holding the format's markers whole.
3. A tiny Qwen3-architecture model, evaluated untrained; then SFT on teacher trajectories (search the
   country, then answer from the result), rendered in the Qwen3 chat format with the real tool's output,
   loss on the assistant's tokens only; then GRPO on the multi-turn rollout core (n episodes per question,
   exact-match reward, group-normalised advantages, one row per turn as AgentCPM trains). Evaluated after
   each stage on the held-out countries: success rate, tool-call format-error rate, turns per episode.

The SFT step is the RL core's update with advantage 1 on every assistant token: at the update's first (and
only) pass the policy ratio is exactly 1, so its gradient is the token-mean negative log-likelihood's.

Writes results.json (every stage's evaluation), metrics.jsonl per stage (sft/, grpo/), stages.png, the
final evaluation's traces (traces.jsonl, one episode per line) and the final model as a Hugging Face folder
with its tokenizer (hf/, servable with `python -m jaxsuite.serve --model <workdir>/hf`). Each stage is resumable (checkpoints in its
folder) and a finished stage is not run again.
"""
from __future__ import annotations

import logging
from typing import Any

import ml_collections
import numpy as np

from jaxsuite.agents.chat import SPECIAL_MARKERS, ChatFormat
from jaxsuite.agents.chat_model import power_of_two_at_least
from jaxsuite.agents.environment import Budget, Environment, EpisodeStats, Task
from jaxsuite.agents.lookup import facts
from jaxsuite.agents.retrieval import BM25Index
from jaxsuite.agents.rollout import Episode, Segment, pack_episodes, pack_turns, run_episodes, summarize, turn_delta
from jaxsuite.agents.tools import Toolbox, search_tool
from jaxsuite.agents.traces import write_trace
from jaxsuite.core.build import export_tokenizer, mesh_and_rules
from jaxsuite.core.loop import pad_batch
from jaxsuite.core.metrics import phase, pyplot
from jaxsuite.core.tokenizer import SentencePieceTokenizer, train_sentencepiece
from jaxsuite.core.workdir import Workdir
from jaxsuite.hf import save_pretrained
from jaxsuite.models.config import DecoderConfig, count_params
from jaxsuite.models.factory import init_model
from jaxsuite.rl.objectives import group_advantages
from jaxsuite.rl.stages import train_stage

log = logging.getLogger(__name__)


def build_environment(config, index: BM25Index) -> Environment:
    budget = Budget(max_turns=int(config.env.max_turns), max_new_tokens=int(config.env.max_new_tokens))
    toolbox = Toolbox([search_tool(index, k=int(config.env.search_k), snippet_chars=int(config.env.snippet_chars))])
    return Environment(toolbox, system_prompt=str(config.env.system_prompt), budget=budget, enable_thinking=True)


def build_tokenizer(config, wd: Workdir, documents, env: Environment) -> SentencePieceTokenizer:
    """Trained once on the pages and the rendered format (so the tool schema and markers tokenize compactly),
    saved in the workdir."""
    path = wd.path("tokenizer.model")
    if wd.exists("tokenizer.model"):
        return SentencePieceTokenizer(wd.read_bytes("tokenizer.model"))
    from jaxsuite.agents.chat import render_qwen3
    sample = render_qwen3([{"role": "system", "content": env.system_prompt}, {"role": "user", "content": "?"}],
                          env.tools, add_generation_prompt=True)
    texts = [d.contents for d in documents] + [sample] * 20
    tok = train_sentencepiece(texts, int(config.vocab_size), user_symbols=SPECIAL_MARKERS, num_threads=1)
    wd.write_bytes("tokenizer.model", tok.serialized_model())
    log.info("tokenizer: %d pieces, saved to %s", tok.vocab_size, path)
    return tok


def teacher_episode(task: Task, env: Environment, fmt: ChatFormat) -> Episode:
    """The expert trajectory as the rollout core records one: prompt, search call, the tool's real output,
    answer; the two assistant turns trainable."""
    stop = fmt.end_of_turn_id
    messages = env.initial_messages(task)
    prompt = fmt.encode(messages, env.tools, add_generation_prompt=True, enable_thinking=env.enable_thinking)
    call_text, answer_text = facts.teacher_turns(task)
    from jaxsuite.agents.parse import parse_assistant
    call = parse_assistant(call_text)
    history = messages + [call.to_message()]
    observations = env.observations(call)
    delta = turn_delta(fmt, history, [{k: v for k, v in m.items() if k != "error"} for m in observations],
                       enable_thinking=env.enable_thinking, tools=env.tools)
    turn1 = fmt.encode_text(call_text) + [stop]
    turn2 = fmt.encode_text(answer_text) + [stop]
    segments = [Segment(prompt, False), Segment(turn1, True, [0.0] * len(turn1)),
                Segment(fmt.encode_text(delta), False), Segment(turn2, True, [0.0] * len(turn2))]
    return Episode(task, history + observations, segments, EpisodeStats(), turn_texts=[call_text, answer_text],
                   turn_format_error=[False, False])


def evaluate(model, fmt, env, tasks, config, *, seed: int, mesh=None, rules=None) -> tuple[dict, list]:
    episodes = run_episodes(model, fmt, env, tasks, temperature=0.0, seed=seed, context=int(config.context),
                            mesh=mesh, rules=rules)
    return summarize(episodes), episodes


def plot_stages(evaluations: dict[str, dict], wd: Workdir) -> str | None:
    plt = pyplot()
    names = list(evaluations)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = [("success_rate", "success rate (held-out countries)"), ("format_error_rate", "format errors / turn"),
              ("turns_per_episode", "turns per episode")]
    for ax, (key, title) in zip(axes, panels):
        values = [evaluations[n][key] for n in names]
        ax.bar(names, values, color=["#888888", "#4c72b0", "#dd8452"][:len(names)])
        for x, v in enumerate(values):
            ax.text(x, v, f"{v:.2f}", ha="center", va="bottom")
        ax.set_title(title)
        ax.set_ylim(0, max(1.0, max(values) * 1.2) if key != "turns_per_episode" else max(values) * 1.3 + 0.1)
    fig.suptitle("Lookup agent: untrained, after SFT, after GRPO")
    fig.tight_layout()
    return wd.save_figure(fig, "stages.png")


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    wd = Workdir.start(workdir)
    mesh, rules = mesh_and_rules(config)
    train_c, test_c = facts.split_countries(int(config.facts.countries), float(config.facts.test_fraction),
                                            int(config.facts.seed))
    documents = [facts.page(c) for c in train_c + test_c]
    index = BM25Index.load_or_build(wd.path("index"), documents)
    env = build_environment(config, index)
    tokenizer = build_tokenizer(config, wd, documents, env)
    fmt = ChatFormat(tokenizer)
    train_tasks, test_tasks = facts.questions(train_c, split="train"), facts.questions(test_c, split="test")
    model = init_model(DecoderConfig(**{**dict(config.model.arch), "vocab_size": tokenizer.vocab_size}),
                       seed=int(config.seed))
    evaluations: dict[str, dict] = {}
    with phase("stage 1/4: evaluate the untrained model", 0):
        evaluations["untrained"], _ = evaluate(model, fmt, env, test_tasks, config, seed=0, mesh=mesh, rules=rules)

    teacher = [teacher_episode(t, env, fmt) for t in train_tasks]
    seq_len = int(config.seq_len)

    def sft_step(policy, step, rng):
        chosen = rng.choice(len(teacher), size=int(config.sft.batch_size), replace=False)
        batch = pack_episodes([teacher[i] for i in chosen], [1.0] * len(chosen), seq_len=seq_len, pad_id=0)
        logp, _ = policy.score(batch)           # the current policy's: ratio 1, the NLL gradient
        batch["old_logprobs"] = logp
        mask = batch["loss_mask"]
        nll = float(-(logp * mask).sum() / mask.sum())
        return {**policy.update(batch), "nll": nll}

    with phase("stage 2/4: SFT on teacher trajectories", int(config.grpo.steps)):
        model, sft_summary = train_stage("sft", wd, model, config.sft, sft_step, mesh=mesh, rules=rules,
                                         seed=int(config.seed))
        evaluations["sft"], _ = evaluate(model, fmt, env, test_tasks, config, seed=0, mesh=mesh, rules=rules)
    log.info("after SFT: %s", evaluations["sft"])

    q, n = int(config.grpo.questions_per_step), int(config.grpo.num_generations)

    def grpo_step(policy, step, rng):
        chosen = [train_tasks[i] for i in rng.choice(len(train_tasks), size=q, replace=False)]
        episodes = run_episodes(policy.module(), fmt, env, chosen, n=n, temperature=float(config.grpo.temperature),
                                seed=int(config.seed) * 7919 + step, context=int(config.context), mesh=mesh,
                                rules=rules)
        rewards = np.asarray([ep.reward for ep in episodes], np.float32)
        advantages = group_advantages(rewards, np.repeat(np.arange(q), n))
        batch, _ = pack_turns(episodes, advantages, seq_len=seq_len, pad_id=0)
        # empty rows up to a power of two: the update compiles for a few sizes, whatever turns episodes took
        rows = pad_batch(batch, max(2 * q * n, power_of_two_at_least(batch["inputs"].shape[0])))
        metrics = policy.update(rows)
        stats = summarize(episodes)
        metrics.update(reward_mean=float(rewards.mean()), format_error_rate=stats["format_error_rate"],
                       turns_per_episode=stats["turns_per_episode"])
        return metrics

    with phase("stage 3/4: GRPO on multi-turn rollouts", 0):
        model, grpo_summary = train_stage("grpo", wd, model, config.grpo, grpo_step, mesh=mesh, rules=rules,
                                          seed=int(config.seed))
    with phase("stage 4/4: evaluate", 0):
        evaluations["grpo"], episodes = evaluate(model, fmt, env, test_tasks, config, seed=0, mesh=mesh, rules=rules)
        write_trace(wd.path("traces.jsonl"), episodes)
    save_pretrained(model, wd.path("hf"))      # servable: python -m jaxsuite.serve --model <workdir>/hf
    if wd.primary:
        export_tokenizer(tokenizer, wd.path("hf"))
    figures = {"evaluations": evaluations, "sft": sft_summary, "grpo": grpo_summary,
               "train_questions": len(train_tasks), "test_questions": len(test_tasks),
               "corpus_pages": len(documents), "model_parameters": count_params(model.config)}
    figures["plots"] = [plot_stages(evaluations, wd)] if wd.primary else []
    results = wd.finish(config, figures)
    for name, ev in evaluations.items():
        log.info("%-9s success %.3f, format errors %.3f per turn, %.2f turns per episode", name,
                 ev["success_rate"], ev["format_error_rate"], ev["turns_per_episode"])
    return results
