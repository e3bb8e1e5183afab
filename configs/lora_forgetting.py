"""Forgetting under SFT, full fine-tuning against LoRA, and merging back toward the base: CPU minutes.

Commands:
  python -m jaxsuite.launch --config configs/lora_forgetting.py --workdir runs/lora_forgetting
  python -m jaxsuite.launch --config configs/lora_forgetting.py:test --workdir /tmp/f     # seconds, for tests

What happens (jaxsuite/adapt/job.py): a Qwen3-architecture decoder (byte tokenizer) is pre-trained on the
Python stdlib's source, then fine-tuned on generated arithmetic ("Q:23+58=?\\nA:" -> "\\boxed{81}") twice, every
weight and LoRA (rank 8 on q/k/v/o and the MLP) with the same data and steps. Each fine-tune is interpolated back
toward the base (w = 0, 0.25, 0.5, 0.75, 1) and TIES-merged with it (densities 0.1 and 0.3); every point gets
its new-task accuracy (held-out problems, greedy) and its forgetting (held-out stdlib loss minus the base's).

Writes into --workdir: results.json, points.jsonl, tradeoff.png, pretrain/, full/, lora/ (each training run's
metrics, checkpoints and loss curve).
"""
import ml_collections

from jaxsuite.core.config_utils import data_block, lora_block, train_block
from jaxsuite.core.sharding import DEFAULT_RULES

# `python -m jaxsuite.launch --list` shows these; the first is the default
VARIANTS = {"cpu": "a 1.3M-parameter Qwen3, pre-trained then fine-tuned full and with LoRA: CPU minutes",
            "test": "a toy model, a few steps each: seconds, for tests"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = (arg or "cpu").lower()
    c = ml_collections.ConfigDict()
    c.job = "jaxsuite.adapt.job:run"
    c.seed = 0
    c.model = ml_collections.ConfigDict()
    c.model.init_from = ""          # an HF folder to start from instead of pre-training (set pretrain.steps=0)
    c.model.arch = ml_collections.ConfigDict(dict(
        vocab_size=260, hidden_size=192, intermediate_size=512, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=48, rms_norm_eps=1e-6, rope_theta=1_000_000.0, max_position_embeddings=512,
        tie_word_embeddings=True, attention_bias=False, model_type="qwen3"))
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.sharding_rules = [list(r) for r in DEFAULT_RULES]
    c.tokenizer = "byte"
    # the pre-training corpus and its held-out part (forgetting is measured on eval_source)
    c.data = data_block(source="stdlib", eval_source="stdlib:eval", seq_len=128, batch_size=16)
    c.pretrain = train_block(steps=400, lr=2e-3, warmup_steps=30, min_lr_ratio=0.1, weight_decay=0.1,
                             log_every=50, eval_every=0, checkpoint_every=200)
    # the new task: the math environment's generated problems, as player demonstrations
    # (documents are packed into rows of seq_len tokens: ~3 problems per 64-byte row)
    c.task = ml_collections.ConfigDict(dict(kinds=("add", "sub"), max_operand=20, train_problems=20000,
                                            test_problems=128, train_seed=1, test_seed=2, seq_len=64,
                                            batch_size=32))
    c.sft = train_block(steps=600, lr=3e-3, warmup_steps=30, min_lr_ratio=0.1, weight_decay=0.0, log_every=50,
                        eval_every=0, checkpoint_every=300)
    c.lora = lora_block(rank=8, alpha=16.0)
    c.merge = ml_collections.ConfigDict(dict(weights=(0.0, 0.25, 0.5, 0.75, 1.0), densities=(0.1, 0.3)))
    # "\\boxed{-19}" is 11 bytes: room for the longest answer and a little more
    c.eval = ml_collections.ConfigDict(dict(max_new_tokens=14, batch_size=64, heldout_batches=8))

    if variant == "cpu":
        pass
    elif variant == "test":
        c.model.arch.hidden_size = 32
        c.model.arch.intermediate_size = 64
        c.model.arch.num_hidden_layers = 2
        c.model.arch.head_dim = 8
        c.data.seq_len = 32
        c.data.batch_size = 8
        c.pretrain.steps = 4
        c.pretrain.checkpoint_every = 4
        c.pretrain.log_every = 2
        c.task.train_problems = 64
        c.task.test_problems = 8
        c.task.seq_len = 32
        c.task.batch_size = 8
        c.sft.steps = 4
        c.sft.checkpoint_every = 2
        c.sft.log_every = 2
        c.lora.rank = 2
        c.merge.weights = (0.5, 1.0)
        c.merge.densities = (0.3,)
        c.eval.max_new_tokens = 4
        c.eval.batch_size = 8
        c.eval.heldout_batches = 1
    else:
        raise ValueError(f"unknown variant {arg!r} of configs/lora_forgetting.py; choose one of: {', '.join(VARIANTS)}")
    return c
