"""CPMobius with the paper's settings: Qwen2.5-Math-7B-Instruct as both Coach and Player, for a pod.

Commands:
  python -m jaxsuite.launch --config configs/cpmobius_qwen2p5_math_7b.py --workdir gs://bucket/cpmobius_7b
  python -m jaxsuite.launch --config configs/cpmobius_qwen2p5_math_7b.py:1.5b --workdir runs/cpmobius_1p5b
  ... --config.methods='["cpmobius","r_zero","rent"]'      # the baselines on the same core

Settings (thunlp/CPMobius scripts/run_qwen2.5_math_7b_instruct.sh, and the reference note): 16 instructions per
step with 16 player samples each; player temperature 0.7, top-p 0.9, repetition penalty 1.05, responses up to
3300 tokens after prompts of up to 768; the [0.2, 0.8] filter with resampling; player GRPO at lr 1e-6 with k3
KL 0.001 and entropy coefficient -0.01 (veRL's sign: entropy is penalised); the coach at lr 1e-6, KL 0.001,
entropy +0.01, one instruction per group; coach reward 100 * dV * (mean non-zero player advantage); rollback
from step 200 after 15 validations without improvement; 1000 steps; greedy validation on AMC (x10).

Data: nothing is downloaded by the job. The evaluation files of the CPMobius repository (evaluation/data/
amc_x10.parquet, math_x5.parquet, ...) are veRL parquet files: the problem is the last user message of the
`prompt` chat list and the answer is `reward_model.ground_truth`. Put them under data/cpmobius/ (or point
validation.path / test.path elsewhere); a missing file stops the job at start with its path named.
The model and tokenizer load from the hub id (or a local folder: --config.model.init_from=/path).

Variant "1.5b": Qwen2.5-Math-1.5B (the paper's 23.3 -> 28.8 setting; that script samples during validation).

Target: `topology` = v5p:2x2x2 (8 chips of 95 GiB, FSDP over all 8; the paper trains on 8 GPUs). Compiled there
without the hardware (`python -m jaxsuite.launch --config configs/cpmobius_qwen2p5_math_7b.py --compile_only`),
every program of the 7b variant fits: the player's update is the largest, 87.8 GiB per chip with the coach's
state resident beside it; rollouts need 34-46 GiB (benchmarks/RESULTS.md). Both roles update with full remat.
"""
import ml_collections

from jaxsuite.core.config_utils import load_config

# Qwen2.5-Math-Instruct's chat format with its default system prompt (what the released code's
# apply_chat_template produces for a single user message)
_SYSTEM = ("<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}."
           "<|im_end|>\n")


# `python -m jaxsuite.launch --list` shows these; the first is the default
VARIANTS = {"7b": "the paper's Qwen2.5-Math-7B-Instruct coach and player, a v5p:2x2x2",
            "1.5b": "Qwen2.5-Math-1.5B, the paper's smaller setting, on the same target"}


def _chat(user: str) -> str:
    return f"{_SYSTEM}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = (arg or "7b").lower()
    c = load_config("configs/cpmobius_tiny.py", "cpu")
    c.seeds = [0]
    c.methods = ["cpmobius"]
    c.model.init_from = "Qwen/Qwen2.5-Math-7B-Instruct"
    c.tokenizer = c.model.init_from
    c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
    c.topology = "v5p:2x2x2"          # what --compile_only compiles for (see the docstring)
    c.sft.train.steps = 0                                  # the base model is the released checkpoint
    c.env.answer_matching = "exact"
    c.prompts.coach = _chat("Generate a valid math problem.")
    c.prompts.player_template = _chat("{problem}")
    c.rl.update(steps=1000, problems_per_step=16, n=16, seq_len=768 + 3300, log_every=1, eval_every=10,
                checkpoint_every=10)
    for role in (c.player, c.coach):
        role.update(accum_steps=16, compute_dtype="bfloat16", mini_batch_size=0, epochs=1, remat="full")
        role.optim.update(lr=1e-6, warmup_steps=0, min_lr_ratio=1.0, weight_decay=0.0, grad_clip=1.0)
        role.kl_coef = 1e-3
    c.player.update(temperature=0.7, top_p=0.9, repetition_penalty=1.05, max_new_tokens=3300, entropy_coef=-0.01,
                    clip_low=0.2, clip_high=0.2)
    # the 768-token prompt budget holds the chat template (~45 tokens) and the coach's problem
    c.coach.update(temperature=0.7, top_p=1.0, repetition_penalty=1.05, max_new_tokens=720, entropy_coef=0.01,
                   clip_low=0.2, clip_high=0.2, advantage="raw")
    c.cpmobius.update(filter_low=0.2, filter_high=0.8, max_rounds=64, coach_scale="advantage")
    c.rollback.update(start_step=200, patience=15)
    verl = dict(problem_field="prompt", answer_field="reward_model.ground_truth")
    c.validation.update(path="data/cpmobius/amc_x10.parquet", size=0, labels="ground_truth", batch_size=64, **verl)
    c.test.update(path="data/cpmobius/math_x5.parquet", size=0, **verl)
    if variant == "7b":
        pass
    elif variant == "1.5b":
        c.model.init_from = c.tokenizer = "Qwen/Qwen2.5-Math-1.5B"
        c.rollback.start_step = 100
    else:
        raise ValueError(f"unknown variant {arg!r} of configs/cpmobius_qwen2p5_math_7b.py; "
                         f"choose one of: {', '.join(VARIANTS)}")
    return c
