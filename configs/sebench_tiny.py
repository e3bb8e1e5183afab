"""SE-Bench's regimes at toy scale: a tiny model learns ten functions of the obfuscated NumPy (CPU minutes).

Commands:
  python -m jaxsuite.launch --config configs/sebench_tiny.py --workdir runs/sebench_tiny
  python -m jaxsuite.launch --config configs/sebench_tiny.py:test --workdir /tmp/s        # seconds, for tests

What happens: NumPy is renamed into `zwc` (the released names) with its docs rewritten; tasks over ten functions
(cumsum, sort, flip, diff, abs, sum, mean, max, min, argmax) are generated with ground truth: single-function
tasks split into train and test_single, chains of two or three into test_multi. A Qwen3-architecture model of
about 1.3M parameters with a SentencePiece tokenizer trained on the prompts is trained in each regime (Open-SFT,
Closed-SFT, Open-RL, Closed-RL, Closed-SFT -> RL) over three seeds and evaluated without and with the docs:
mean@4 and pass@4 at temperature 0.6, outcome shares, results.json and regimes.png. See docs/sebench.md.
"""
import ml_collections

from jaxsuite.core.config_utils import lora_block, policy_stage_block, train_block
from jaxsuite.core.sharding import DEFAULT_RULES

VARIANTS = {"cpu": "five regimes on ten functions, three seeds: CPU minutes",
            "test": "every regime for a few steps on four functions, one seed: seconds, for tests"}
FUNCTIONS = ["cumsum", "sort", "flip", "diff", "abs", "sum", "mean", "max", "min", "argmax"]


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = (arg or "cpu").lower()
    c = ml_collections.ConfigDict()
    c.job = "jaxsuite.sebench.job:run"
    c.seed = 0
    c.seeds = [0, 1, 2]
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.sharding_rules = [list(r) for r in DEFAULT_RULES]
    c.regimes = ["base", "open_sft", "closed_sft", "open_rl", "closed_rl", "closed_sft_rl", "self_play_sft",
                 "self_play_rl"]
    c.data = ml_collections.ConfigDict(dict(functions=FUNCTIONS, seed=0, per_function=6, multi_tasks=24,
                                            max_test_tasks=0, tasks_dir="", api_docs=""))
    # max_prompt_tokens: the bound --compile_only sizes the sampling loops for (this config's prompts: ~120)
    c.prompts = ml_collections.ConfigDict(dict(doc_form="summary", wrapper="{prompt}", max_prompt_tokens=192))
    c.vocab_size = 512                     # a SentencePiece model trained on the bench's prompts (no c.tokenizer)
    c.model = ml_collections.ConfigDict()
    c.model.init_from = ""
    c.model.arch = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=32, max_position_embeddings=512, rope_theta=10000.0,
                        tie_word_embeddings=True, model_type="qwen3")
    c.model.lora = lora_block()            # rank 0: full fine-tuning; --config.model.lora.rank=8 for LoRA
    c.seq_len = 256
    # SFT data: the tasks' reference solutions ("rollouts": the starting model's passing responses, as the paper;
    # an untrained tiny model has none); epochs > 0 sets the steps from the number of pairs
    c.sft = ml_collections.ConfigDict(dict(
        source="reference", rollouts_per_task=5, temperature=0.6, batch_size=16, seq_len=0, epochs=0.0,
        warmup_fraction=0.0,
        train=train_block(steps=150, lr=3e-3, min_lr_ratio=1.0, b2=0.98, log_every=25, eval_every=0,
                          checkpoint_every=50)))
    c.rl = policy_stage_block(steps=30, lr=1e-4, log_every=5, checkpoint_every=10, prompts_per_step=8,
                              n=4, temperature=1.0, max_new_tokens=48, rules="paper")
    # self-play: proposer SFT warm-up, then 4 functions x 4 proposals a step, 2 solutions per kept task (n=2)
    c.self_play = policy_stage_block(steps=90, lr=1e-3, log_every=10, checkpoint_every=30,
                                     proposer_sft_steps=60, functions_per_step=4,
                                     proposals_per_function=4, solutions_per_task=2, temperature=1.0,
                                     max_new_tokens=80)
    c.eval = ml_collections.ConfigDict(dict(k=4, temperature=0.6, max_new_tokens=48, batch_size=64, workers=4))
    if variant == "test":
        c.seeds = [0]
        c.data.update(functions=["cumsum", "sort", "sum", "max"], per_function=3, multi_tasks=4, max_test_tasks=4)
        c.model.arch.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2, head_dim=8)
        c.vocab_size = 320
        c.seq_len = 384                    # a 320-piece vocabulary takes more tokens per prompt
        c.sft.batch_size = 4
        c.sft.train.update(steps=2, log_every=1, checkpoint_every=1)
        c.rl.update(steps=1, log_every=1, checkpoint_every=1, prompts_per_step=2, n=2, max_new_tokens=16)
        c.self_play.update(steps=3, log_every=1, checkpoint_every=1, proposer_sft_steps=1, functions_per_step=2,
                           proposals_per_function=2, max_new_tokens=24)
        c.eval.update(k=2, max_new_tokens=16, batch_size=8, workers=2)
    elif variant != "cpu":
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    return c
