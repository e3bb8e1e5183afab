"""Tiered data management in the paper's setting: a 7B instruct judge and refiner, and the decay verification of a
MiniCPM-1.2B-class model at seq 4096 and global batch 512, for a pod.

Commands:
  python -m jaxsuite.launch --config configs/tiers_pod.py --workdir gs://bucket/tiers   # with data.l0 set
  python -m jaxsuite.launch --config configs/tiers_pod.py --compile_only                # the memory fit, here

Settings from the paper (arXiv 2602.09003) and UltraData-Math: the decay verification continues a nearly-trained
1.2B model on 30% candidate + 70% general data with a decaying learning rate (the paper's smaller protocol: a
two-stage anneal of 10B tokens, WSD schedule, seq 4096, weight decay 0.1, clip 1.0, global batch 512); the
judge and refiner are a released instruct model (Qwen2.5-7B-Instruct stands in for the paper's, whose prompts
and scales are unpublished), zero-shot at the generator's defaults (temperature 0.7). The 1.2B model is a Qwen3
architecture of MiniCPM-1B's shape (hidden 1536, 52 layers, 24 heads with 8 KV heads, FFN 3840) with the
judge's tokenizer (151,936 tokens). 10B tokens at 512 x 4096 per step is 4,768 steps; the tiered comparison
trains three 40B-token stages in the paper, here the same steps per stage as the decay (an equal split).

Target: `topology` = v5p:2x2x2 (8 chips of 95 GiB), FSDP over the 8, bfloat16 compute, full remat, 8
micro-batches of 64 rows per step. `--compile_only` compiles the decay training step and the refiner's sampling
loop on the 7B model; the per-chip totals are in benchmarks/RESULTS.md. The L0 -> L1 stages run on Slurm
(pipeline.executor.kind = "slurm", one task per 4 CPUs); the job stops after submitting and continues on a
rerun once they finish.
"""
import ml_collections

from jaxsuite.core.config_utils import load_config, train_block

VARIANTS = {"1.2b": "Qwen2.5-7B-Instruct judge and refiner, a 1.2B decay verification at 512 x 4096 on a v5p:2x2x2"}
MINICPM_1B_SHAPE = dict(hidden_size=1536, intermediate_size=3840, num_hidden_layers=52, num_attention_heads=24,
                        num_key_value_heads=8, head_dim=64, max_position_embeddings=4096, rope_theta=10000.0,
                        tie_word_embeddings=True, model_type="qwen3")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = (arg or "1.2b").lower()
    if variant != "1.2b":
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    c = load_config("configs/tiers_tiny.py", "cpu")
    c.topology = "v5p:2x2x2"
    c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
    c.data.update(l0="gs://your-bucket/crawl/L0", shards=1024)
    c.pipeline.tasks = 1024
    c.pipeline.executor.kind = "slurm"
    c.pipeline.executor.workers = 256
    c.model.init_from = "Qwen/Qwen2.5-7B-Instruct"
    c.tokenizer = c.model.init_from
    c.vocab_size = 151936
    c.model.arch = dict(MINICPM_1B_SHAPE)
    c.seq_len = 4096
    c.judge.update(max_doc_tokens=1024, sample_fraction=0.001, batch_size=64)
    c.refine.update(source_words=600, max_new_tokens=1024, max_prompt_tokens=1024, temperature=0.7, batch_size=64,
                    per_document=2)
    c.classifier.update(buckets=2 ** 21, dim=64, steps=20000, batch_size=512)
    anneal = train_block(steps=1, lr=1e-2 * 0.1, warmup_steps=0, min_lr_ratio=0.0, weight_decay=0.1, grad_clip=1.0,
                         b1=0.9, b2=0.95, accum_steps=8, compute_dtype="bfloat16", remat="full", loss_chunk=1024,
                         log_every=10, eval_every=0, checkpoint_every=200)
    c.training.update(seq_len=4096, batch_size=512, steps=[4768, 4768, 4768, 477], min_documents=1000)
    c.training.train = anneal
    c.decay.update(steps=4768, lr=1e-3)
    return c
