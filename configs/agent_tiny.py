"""The agent runtime's demonstration: a tiny model learns to look facts up with a search tool (CPU minutes).

Commands:
  python -m jaxsuite.launch --config configs/agent_tiny.py --workdir runs/agent_tiny
  python -m jaxsuite.launch --config configs/agent_tiny.py:test --workdir /tmp/a        # seconds, for tests

What happens: 60 made-up countries get a page each (capital, founding year, national animal) in a BM25-indexed
corpus; questions about 48 of them train, the other 12 test. A 1.2M-parameter Qwen3-architecture model with a
SentencePiece tokenizer trained on the pages is evaluated untrained, after SFT on teacher trajectories (search
the country, answer from the result; loss on assistant tokens), and after GRPO on multi-turn rollouts
(4 episodes per question, exact-match reward). Reports success rate, format-error rate and turns per episode
on the held-out countries (results.json, stages.png, traces.jsonl). See docs/agents.md.
"""
import ml_collections

from jaxsuite.core.config_utils import policy_stage_block
from jaxsuite.core.sharding import DEFAULT_RULES

VARIANTS = {"cpu": "SFT then GRPO on 48 countries' questions, tested on 12 held-out: CPU minutes",
            "test": "a few steps of each stage on a small fact base: seconds, for tests"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = (arg or "cpu").lower()
    c = ml_collections.ConfigDict()
    c.job = "jaxsuite.agents.lookup.job:run"
    c.seed = 0
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.sharding_rules = [list(r) for r in DEFAULT_RULES]
    c.facts = ml_collections.ConfigDict(dict(countries=60, test_fraction=0.2, seed=0))
    c.env = ml_collections.ConfigDict(dict(
        system_prompt="Answer with the search tool. Reply <answer>...</answer>.",
        max_turns=3, max_new_tokens=32, search_k=1, snippet_chars=160))
    c.vocab_size = 512
    c.model = ml_collections.ConfigDict()
    c.model.arch = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=32, max_position_embeddings=1024, rope_theta=10000.0,
                        tie_word_embeddings=True, model_type="qwen3")
    c.seq_len = 640                     # a 3-turn episode (the prompt ~270 tokens, each turn and result ~120)
    c.context = 640                     # decode-cache slots per episode (rows share slot indices): 3 turns fit
    c.sft = policy_stage_block(steps=400, lr=3e-3, log_every=25, checkpoint_every=100,
                               batch_size=8)
    c.grpo = policy_stage_block(steps=30, lr=1e-4, log_every=5, checkpoint_every=10,
                                questions_per_step=4, num_generations=4, temperature=1.0)
    if variant == "test":
        c.facts.countries = 10
        c.model.arch.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2, head_dim=8)
        c.vocab_size = 400
        c.seq_len, c.context = 640, 896    # a 400-piece vocabulary takes more tokens (~580)
        c.sft.update(steps=3, log_every=1, checkpoint_every=2, batch_size=4)
        c.grpo.update(steps=2, log_every=1, checkpoint_every=1, questions_per_step=2, num_generations=2)
        c.env.max_new_tokens = 16
    elif variant != "cpu":
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    return c
