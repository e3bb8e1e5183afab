"""SE-Bench's regimes with the paper's settings on Qwen3-8B, for a pod.

Commands:
  python -m jaxsuite.launch --config configs/sebench_qwen3_8b.py --workdir gs://bucket/sebench_8b
  python -m jaxsuite.launch --config configs/sebench_qwen3_8b.py --compile_only          # the memory fit, here

Settings (reference note; arXiv 2602.04811, thunlp/SE-Bench): Qwen3-8B. SFT data: 5 responses per training
question with the docs at temperature 0.6, the passing ones kept (`sft.source="rollouts"`), paired with the
with-docs prompt (Open-SFT) or the no-docs prompt (Closed-SFT); 4 epochs, global batch 32, rows up to 20K
tokens, lr 1e-5, AdamW (0.9, 0.95), weight decay 0.01, 10% warm-up, cosine. GRPO: 32 prompts x 8 samples,
lr 1e-6, mini-batch 16 prompts (128 rows; closed-book RL 32 prompts, 256 rows), no KL, no entropy term, responses up to 8192 tokens after prompts of
up to 2000, temperature 1.0, clip 0.2, 3 epochs of the 718 training prompts (67 steps); closed-book RL splices
the with-docs rollouts onto the no-docs prompt. Evaluation: mean@5 at temperature 0.6. The docs are shown whole
(`prompts.doc_form="full"`) inside Qwen3's chat template.

Data: nothing is downloaded. The released tasks (train 718, single-function test 259, multi-function test 440,
from the Hugging Face hub) go in data/sebench/{train,test_single,test_multi}.jsonl and the released
api_doc.jsonl beside them, or point data.tasks_dir / data.api_docs elsewhere; the package's names equal the
released ones, so their function names resolve. A missing file stops the job at start.

Differences from the paper: full fine-tuning in the same jaxsuite step for every regime (LoRA on request:
--config.model.lora.rank=64); one seed; self-play, shown in the paper on a 3B model, is left out of the regimes
(add "self_play_sft" / "self_play_rl" to run it).

Target: `topology` = v5p:2x2x2 (8 chips of 95 GiB, FSDP over all 8; the paper trains on 8 GPUs), bfloat16
compute and full remat for SFT and GRPO, the SFT loss in 1024-token chunks. It fits: `--compile_only`
compiles all six programs (SFT step, GRPO update, its scoring pass, the closed-book update, rollout and
evaluation sampling); the largest, the SFT step, totals 93.9 GiB per chip, the GRPO updates 77.2
(benchmarks/RESULTS.md). Allow 30 minutes and 12 GB of host memory for the compile.
"""
import ml_collections

from jaxsuite.core.config_utils import load_config, train_block

VARIANTS = {"8b": "Qwen3-8B, the paper's SFT and GRPO settings, a v5p:2x2x2"}
# Qwen3's chat template for one user turn (what apply_chat_template gives with add_generation_prompt)
CHAT = "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = (arg or "8b").lower()
    if variant != "8b":
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    c = load_config("configs/sebench_tiny.py", "cpu")
    c.seeds = [0]
    c.regimes = ["base", "open_sft", "closed_sft", "open_rl", "closed_rl", "closed_sft_rl"]
    c.topology = "v5p:2x2x2"
    c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
    c.model.init_from = "Qwen/Qwen3-8B"
    c.tokenizer = c.model.init_from
    c.data.update(tasks_dir="data/sebench", api_docs="data/sebench/api_doc.jsonl", max_test_tasks=0)
    c.prompts.update(doc_form="full", wrapper=CHAT, max_prompt_tokens=2048)
    c.seq_len = 2048 + 8192                     # GRPO rows: a prompt of up to 2000 tokens and its response
    c.sft.update(source="rollouts", rollouts_per_task=5, temperature=0.6, batch_size=32, seq_len=20480, epochs=4.0,
                 warmup_fraction=0.1)
    c.sft.train = train_block(steps=90, lr=1e-5, warmup_steps=9, min_lr_ratio=0.0, b1=0.9, b2=0.95,
                              weight_decay=0.01, accum_steps=4, compute_dtype="bfloat16", remat="full",
                              loss_chunk=1024, log_every=1, eval_every=0, checkpoint_every=20)
    c.rl.update(steps=67, prompts_per_step=32, n=8, temperature=1.0, max_new_tokens=8192, rules="paper",
                mini_batch_size=128, closed_mini_batch_size=256, accum_steps=16, remat="full", compute_dtype="bfloat16",
                rollout_batch_size=256, log_every=1, checkpoint_every=5)
    c.rl.optim.update(lr=1e-6, b1=0.9, b2=0.999, weight_decay=0.01)
    c.eval.update(k=5, temperature=0.6, max_new_tokens=8192, batch_size=64, workers=16)
    return c
