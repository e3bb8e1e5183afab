"""EvoOpt-LLM's model-construction setting on a 7B-class model (Qwen2.5-7B-Instruct), for a pod.

Commands:
  python -m jaxsuite.launch --config configs/evoopt_7b.py --workdir gs://bucket/evoopt_7b
  python -m jaxsuite.launch --config configs/evoopt_7b.py --compile_only          # the memory fit, here

Settings: the paper (arXiv 2602.01082) adapts openPangu-Embedded-7B with LoRA on up to 3,000 samples; its
hyper-parameters are not published. The ones here are the reference note's "reasonable default": LoRA rank 32,
alpha 64 on q/k/v/o, lr 2e-5, 3 epochs, 3% warm-up, decay to 0 (our schedule is cosine; the note's is linear),
global batch 16, rows of 2,048 tokens (statement + formulation + program). The data-efficiency curve trains at
250, 500, 1,000, 1,500 and 3,000 samples, as the paper's headline. Qwen2.5-7B-Instruct stands in for the
openPangu model (same size class; its weights are public), loaded from `model.init_from` (a converted folder
or the hub id when the hub is reachable) with its own tokenizer and chat template. LoRA dropout (0.05 in the
note) is 0: jaxsuite's LoRA has no dropout.

Target: `topology` = v5p:2x2x1 (4 chips of 95 GiB), FSDP over the 4, bfloat16 compute, full remat. The base
weights stay float32 (LoRA trains the adapters only). `--compile_only` compiles the SFT step and the
evaluation's sampling loop; the per-chip totals are in benchmarks/RESULTS.md.
"""
import ml_collections

from jaxsuite.core.config_utils import load_config, train_block

VARIANTS = {"7b": "Qwen2.5-7B-Instruct, LoRA SFT at the paper's data sizes, a v5p:2x2x1"}
# Qwen2.5's chat template for one user turn (what apply_chat_template gives with add_generation_prompt)
CHAT = "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = (arg or "7b").lower()
    if variant != "7b":
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    c = load_config("configs/evoopt_tiny.py", "cpu")
    c.topology = "v5p:2x2x1"
    c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
    c.model.init_from = "Qwen/Qwen2.5-7B-Instruct"
    c.tokenizer = c.model.init_from
    c.prompt_wrapper = CHAT
    c.model.lora.update(rank=32, alpha=64.0, targets="q_proj,k_proj,v_proj,o_proj")
    c.data.update(pretrain_problems=0, test_problems=400, injection_train=1500, injection_test=200)
    c.seq_len = 2048
    c.construct.update(batch_size=16, epochs=3.0, warmup_fraction=0.03)
    c.construct.train = train_block(steps=0, lr=2e-5, min_lr_ratio=0.0, b1=0.9, b2=0.999, weight_decay=0.0,
                                    compute_dtype="bfloat16", remat="full", loss_chunk=1024, log_every=10,
                                    eval_every=0, checkpoint_every=100)
    c.construct.train_sizes = [250, 500, 1000, 1500, 3000]
    for block in (c.injection, c.pruning.llm):
        block.update(batch_size=16, epochs=3.0, warmup_fraction=0.03)
        block.train = c.construct.train
    c.injection.max_new_tokens = 1024
    c.pruning.update(llm_train=400, test=100, max_new_tokens=512, gnn_train=200, gnn_test=20)
    c.eval.update(k=4, temperature=0.6, max_new_tokens=1536, batch_size=64, workers=16, max_prompt_tokens=512)
    return c
