"""CPMobius coach-player data-free RL at toy scale, against R-Zero and RENT: CPU minutes.

Commands:
  python -m jaxsuite.launch --config configs/cpmobius_tiny.py --workdir runs/cpmobius_tiny
  python -m jaxsuite.launch --config configs/cpmobius_tiny.py:test --workdir /tmp/c     # seconds, for tests
  python -m jaxsuite.launch --config configs/cpmobius_tiny.py --config.methods='["cpmobius"]' \\
      --config.validation.labels=majority_vote         # the FAQ's probe protocol: pseudo-labels, no answers

What happens: a 0.8M-parameter Qwen3-architecture model (byte tokenizer) is made competent by a short SFT on
generated arithmetic (addition, subtraction and multiplication of numbers up to 20) in both roles:
"Generate a valid math problem.\\n" -> "23+58=?" (coach) and "Q:23+58=?\\nA:" -> "\\boxed{81}" (player). Then,
with no further data, each method trains from that base for `rl.steps` steps over several seeds, and the
player's greedy accuracy on a held-out generated test set (ground truth) is recorded every few steps.

Writes into --workdir: results.json (accuracy per step per method and seed, summaries), accuracy.png,
coach_reward.png, sft/ (the base model's training), runs/<method>_seed<k>/ (metrics.jsonl, checkpoints).
"""
import ml_collections

from jaxsuite.core.config_utils import train_block
from jaxsuite.core.sharding import DEFAULT_RULES


# `python -m jaxsuite.launch --list` shows these; the first is the default
VARIANTS = {"cpu": "every method (CPMobius, R-Zero, RENT) x 3 seeds on a tiny model: CPU minutes",
            "test": "one seed, 3 RL steps: seconds, for tests and the notebook"}


def _role(*, lr, kl_coef, entropy_coef, temperature, top_p, max_new_tokens, **kw) -> dict:
    """A coach or player block: sampling, loss (veRL sign conventions) and optimizer."""
    block = dict(temperature=temperature, top_p=top_p, repetition_penalty=1.05, max_new_tokens=max_new_tokens,
                 clip_low=0.2, clip_high=0.2, kl_coef=kl_coef, entropy_coef=entropy_coef,
                 aggregation="token-mean", mini_batch_size=0, epochs=1, accum_steps=1, compute_dtype="float32",
                 remat="none",
                 optim=dict(lr=lr, warmup_steps=0, min_lr_ratio=1.0, weight_decay=0.0, b1=0.9, b2=0.999,
                            grad_clip=1.0))
    block.update(kw)
    return block


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = (arg or "cpu").lower()
    c = ml_collections.ConfigDict()
    c.job = "jaxsuite.rl.cpmobius.job:run"
    c.seed = 0                          # the SFT's seed; the RL runs use `seeds`
    c.seeds = [0, 1, 2]
    c.methods = ["cpmobius", "r_zero", "rent"]
    c.tokenizer = "byte"
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.sharding_rules = [list(r) for r in DEFAULT_RULES]
    c.model = ml_collections.ConfigDict()
    c.model.init_from = ""              # "" = build from model.arch and run the SFT below
    c.model.arch = dict(vocab_size=260, hidden_size=128, intermediate_size=384, num_hidden_layers=3,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=256,
                        rope_theta=10000.0, tie_word_embeddings=True, attention_bias=False, model_type="qwen3")
    c.env = ml_collections.ConfigDict(dict(kinds=["add", "sub", "mul"], max_operand=20,
                                           answer_matching="exact"))   # the released code votes on exact strings
    c.prompts = ml_collections.ConfigDict(dict(coach="Generate a valid math problem.\n",
                                               player_template="Q:{problem}\nA:"))
    c.sft = ml_collections.ConfigDict(dict(
        num_problems=30000, data_seed=1, coach_fraction=0.25, seq_len=128, batch_size=32,
        train=train_block(steps=1000, lr=3e-3, warmup_steps=50, log_every=100, eval_every=0, eval_batches=0,
                          checkpoint_every=300, keep_checkpoints=1)))
    c.rl = ml_collections.ConfigDict(dict(
        steps=50, problems_per_step=8, n=8, seq_len=64, log_every=5, eval_every=5, checkpoint_every=10))
    c.player = ml_collections.ConfigDict(_role(lr=1e-4, kl_coef=1e-3, entropy_coef=-0.01, temperature=0.7,
                                               top_p=0.9, max_new_tokens=16))
    c.coach = ml_collections.ConfigDict(_role(lr=1e-4, kl_coef=1e-3, entropy_coef=0.01, temperature=0.7,
                                              top_p=1.0, max_new_tokens=16, init_from="",
                                              advantage="raw", ema_decay=0.99))
    c.cpmobius = ml_collections.ConfigDict(dict(filter_low=0.2, filter_high=0.8, max_rounds=4,
                                                coach_scale="advantage"))
    c.r_zero = ml_collections.ConfigDict(dict(cluster_threshold=0.5, solver_band=0.25))
    c.rent = ml_collections.ConfigDict(dict(span="all"))
    c.rollback = ml_collections.ConfigDict(dict(start_step=10, patience=5))
    problems = dict(path="", problem_field="problem", answer_field="answer")
    c.validation = ml_collections.ConfigDict(dict(size=64, seed=1001, labels="ground_truth",
                                                  pseudo_label_samples=8, batch_size=64, **problems))
    c.test = ml_collections.ConfigDict(dict(size=256, seed=2002, **problems))
    if variant == "cpu":
        pass
    elif variant == "test":
        c.seeds = [0]
        c.model.arch.update(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            num_key_value_heads=1, head_dim=16)
        c.sft.num_problems, c.sft.train.steps, c.sft.train.checkpoint_every = 500, 10, 10
        c.sft.train.log_every = 5
        c.rl.update(steps=3, problems_per_step=4, n=4, eval_every=2, checkpoint_every=2, log_every=1)
        # an untrained toy rarely produces groups inside [0.2, 0.8]: keep every group so each update runs
        c.cpmobius.update(max_rounds=2, filter_low=0.0, filter_high=1.0)
        c.rollback.update(start_step=1, patience=1)
        c.validation.update(size=8, batch_size=8)
        c.test.size = 8
    else:
        raise ValueError(f"unknown variant {arg!r} of configs/cpmobius_tiny.py; "
                         f"choose one of: {', '.join(VARIANTS)}")
    return c
