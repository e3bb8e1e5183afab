"""Pre-train a Qwen3-architecture decoder from scratch (the HALO quickstart's teacher is this file's cpu variant).

Commands:
  python -m jaxsuite.launch --config configs/qwen3_pretrain.py --workdir runs/pretrain    # default CPU variant
  python -m jaxsuite.launch --config configs/qwen3_pretrain.py:tiny --workdir /tmp/t   # seconds, for tests
  python -m jaxsuite.launch --config configs/qwen3_pretrain.py:0.6b --workdir gs://bucket/qwen3-0.6b \
      --config.data.source='tfds:c4/en:3.1.0:train' --config.tokenizer=Qwen/Qwen3-0.6B

Variants (the argument after the colon):
  (none) / cpu   ~4.5M-parameter model on the embedded corpus (the Python stdlib's source), a few CPU minutes
  tiny           a toy model for tests: a few seconds
  0.6b 1.7b 4b 8b   the released Qwen3 architectures, for TPU pods / GPU clusters (FSDP x tensor parallel)

Pod variants name their target in `topology` and are compiled for it without the hardware (per-chip memory in
benchmarks/RESULTS.md, "Pod configs compiled for their targets"):
  python -m jaxsuite.launch --config configs/qwen3_pretrain.py:1.7b --compile_only      # = --topology v5p:2x2x1
They train global batches of 256 x 4096 tokens with full rematerialisation, the cross-entropy in 512-token
chunks, splash attention on TPU (train.attention="auto") and gradient accumulation sized to fit 95 GiB chips.

The job writes into --workdir: results.json, metrics.jsonl, checkpoints/, loss.png, samples.txt, hf/,
finished.json.
"""
import ml_collections

from jaxsuite.core.config_utils import data_block, lora_block, train_block
from jaxsuite.core.sharding import DEFAULT_RULES


# `python -m jaxsuite.launch --list` shows these; the first is the default
VARIANTS = {"cpu": "a 4.5M-parameter Qwen3 on the Python stdlib's source: a few CPU minutes",
            "tiny": "a toy model: seconds, for tests",
            "0.6b": "Qwen3-0.6B architecture, a v5p:2x2x1",
            "1.7b": "Qwen3-1.7B architecture, a v5p:2x2x1",
            "4b": "Qwen3-4B architecture, a v5p:2x2x1",
            "8b": "Qwen3-8B architecture, a v5p:2x2x1"}


# The target each pod variant is sized for (a v5p-8: 4 chips of 95 GiB) and the gradient accumulation that fits
# a global batch of 256 sequences there.
POD_TOPOLOGY = {"0.6b": "v5p:2x2x1", "1.7b": "v5p:2x2x1", "4b": "v5p:2x2x1", "8b": "v5p:2x2x1"}
POD_ACCUM = {"0.6b": 2, "1.7b": 4, "4b": 4, "8b": 8}


def _arch(**kw):
    base = dict(vocab_size=4096, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, head_dim=64, rms_norm_eps=1e-6,
                rope_theta=1_000_000.0, max_position_embeddings=4096, tie_word_embeddings=True,
                attention_bias=False, model_type="qwen3")
    base.update(kw)
    return ml_collections.ConfigDict(base)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = (arg or "cpu").lower()
    c = ml_collections.ConfigDict()
    c.job = "jaxsuite.pretrain:run"
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.init_from = ""          # "" = random init from model.arch; else an HF folder or hub id
    c.model.arch = _arch()
    c.model.lora = lora_block()      # rank > 0: train LoRA adapters only (jaxsuite.models.lora)

    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.sharding_rules = [list(r) for r in DEFAULT_RULES]

    # "stdlib:4096": a 4096-piece sentencepiece model trained on the corpus (cached) | "byte" | path | hub id
    c.tokenizer = "stdlib:4096"
    # "stdlib" (train split) | file glob (txt/jsonl/parquet) | "tfds:name:split"; eval_source "" = no evaluation;
    # batch_size is the global batch (all processes together)
    c.data = data_block(source="stdlib", eval_source="stdlib:eval", seq_len=128, batch_size=16)
    # compute_dtype "bfloat16" on accelerators: bf16 compute, f32 master weights
    c.train = train_block(steps=300, lr=1.5e-3, warmup_steps=30, min_lr_ratio=0.1, weight_decay=0.1)

    c.sample = ml_collections.ConfigDict()
    c.sample.prompt = "def fibonacci(n):\n"
    c.sample.max_new_tokens = 64
    c.sample.temperature = 0.8
    c.sample.top_p = 0.95
    c.sample.top_k = 0
    c.sample.num_samples = 2

    c.export_hf = True

    if variant == "cpu":
        pass
    elif variant == "tiny":
        c.model.arch = _arch(vocab_size=260, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=16)
        c.tokenizer = "byte"        # no tokenizer training in tests
        c.data.seq_len = 32
        c.data.batch_size = 8
        c.train.steps = 12
        c.train.warmup_steps = 2
        c.train.log_every = 2
        c.train.eval_every = 6
        c.train.eval_batches = 1
        c.train.checkpoint_every = 6
        c.sample.max_new_tokens = 8
        c.sample.num_samples = 1
    elif variant in ("0.6b", "1.7b", "4b", "8b"):
        from jaxsuite.models.presets import QWEN3_PRESETS
        arch = QWEN3_PRESETS[variant].to_hf_config()
        keep = set(_arch().keys())
        c.model.arch = _arch(**{k: v for k, v in arch.items() if k in keep})
        # FSDP over every chip (ZeRO-3); on a GPU node, tensor parallelism inside it: --config.mesh.tensor=8
        c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
        c.tokenizer = "Qwen/Qwen3-0.6B"        # the Qwen3 tokenizer (151k vocab) from the hub
        c.data.eval_source = ""                # set a held-out source for the corpus you train on
        c.data.seq_len = 4096
        c.data.batch_size = 256
        c.topology = POD_TOPOLOGY[variant]          # what --compile_only compiles for; must fit there
        c.train.accum_steps = POD_ACCUM[variant]
        c.train.remat = "full"
        c.train.loss_chunk = 512
        c.train.steps = 100_000
        c.train.lr = 3e-4
        c.train.warmup_steps = 2000
        c.train.compute_dtype = "bfloat16"
        c.train.log_every = 50
        c.train.eval_every = 2000
        c.train.eval_batches = 16
        c.train.checkpoint_every = 1000
        c.train.keep_checkpoints = 3
    else:
        raise ValueError(f"unknown variant {arg!r} of configs/qwen3_pretrain.py; "
                         f"choose one of: {', '.join(VARIANTS)}")
    return c
