"""HALO configs as data: the paper's recipes (arXiv 2601.22156) and the CPU quickstart, as ml-collections.

configs/halo_qwen3.py, configs/halo_tiny.py and configs/halo_stage.py are thin wrappers over these builders,
so the pipeline config and the single-stage configs cannot drift apart.

The paper's recipe (../shared/reference/hypenet-halo.md): FineWeb-Edu; AdamW betas 0.9 / 0.95; cosine schedule
with 50 warm-up steps;
  stage 1  seq 512,   batch 4 per device,           lr 1e-3,                       20k steps
  stage 2  seq 512,   batch 12 per device,          lr 1e-4 / 5e-5 / 3e-5 (2B/5B/9B), 20k steps
  stage 3  seq 16384, batch 1 per device x 16 accumulation, lr 1e-5,                  500 steps
The reference gives per-device batches but not the device count. With 8 devices the token count comes to
20k*512*(4+12)*8 + 500*16384*16*8 = 1.31B + 1.05B = 2.36B, matching the paper's "about 2.3B tokens", so the
global batches here assume 8 devices (32, 96 and 128 = 8 x 16 micro-batches); set data.batch_size for yours.
Weight decay and the final learning-rate ratio are not in the reference; we use 0.0 and 0.0 (cosine to zero).

The blocks are the core's (jaxsuite.core.config_utils.train_block / data_block), so every wing's configs have
one shape; `config.tokenizer` is the only place a config names its tokenizer. A pipeline's stage block may carry
its own `mesh` (else the pipeline's `mesh` applies): the 9b recipe's stage 3 splits each layer over 2 chips
(STAGE_TENSOR_PARALLEL).
"""
from __future__ import annotations

import ml_collections

from jaxsuite.core.config_utils import data_block, train_block
from jaxsuite.core.sharding import DEFAULT_RULES
from jaxsuite.halo.transfer import PAPER_ATTENTION_LAYERS

PAPER_DEVICES = 8
# size -> (teacher hub id, HypeNet name, stage-2 learning rate, HyPE a used at inference)
PAPER_MODELS = {
    "2b": ("Qwen/Qwen3-1.7B", "hypenet-2b", 1e-4, 500.0),
    "5b": ("Qwen/Qwen3-4B", "hypenet-5b", 5e-5, 500.0),
    "9b": ("Qwen/Qwen3-8B", "hypenet-9b", 3e-5, 500.0),
}
# (size, stage) -> tensor-parallel degree where one row per device does not fit a v5p chip (benchmarks/RESULTS.md)
STAGE_TENSOR_PARALLEL = {("9b", 3): 2}
FINEWEB_EDU = "data/fineweb-edu/sample/10BT/*.parquet"   # huggingface-cli download HuggingFaceFW/fineweb-edu


def stage_train_block(**kw) -> ml_collections.ConfigDict:
    """config.train of a stage: the core train block with the recipe's schedule (50 warm-up steps, cosine to 0)."""
    return train_block(**{"warmup_steps": 50, "min_lr_ratio": 0.0, **kw})


def stage_config(stage: int, *, teacher: str, tokenizer: str, data: ml_collections.ConfigDict,
                 train: ml_collections.ConfigDict, attention_layers=(), student_init: str = "", mesh=None,
                 seed: int = 0) -> ml_collections.ConfigDict:
    """A standalone config for HALO stage `stage` (1, 2 or 3): `python -m jaxsuite.launch` runs it."""
    if stage not in (1, 2, 3):
        raise ValueError(f"HALO stages are 1, 2 and 3, got {stage}")
    c = ml_collections.ConfigDict()
    c.job = f"jaxsuite.halo.stages:run_stage{stage}"
    c.seed = seed
    c.tokenizer = tokenizer                      # the teacher's: stage 1 and 2 compare the two models' logits
    c.teacher = ml_collections.ConfigDict(dict(init_from=teacher))
    c.student = ml_collections.ConfigDict(dict(
        init_from=student_init,                  # stage 2: stage 1's hf folder; stage 3: stage 2's
        attention_layers=[int(i) for i in attention_layers],
        attn_logits_scaling="",                  # "" = none while training (the recipe); "hype 500" at inference
    ))
    c.mesh = ml_collections.ConfigDict(mesh or dict(data=-1, fsdp=1, tensor=1))
    c.sharding_rules = [list(r) for r in DEFAULT_RULES]
    c.data = ml_collections.ConfigDict(data.to_dict())
    c.train = ml_collections.ConfigDict(train.to_dict())
    return c


def paper_stage(size: str, stage: int) -> ml_collections.ConfigDict:
    """Stage `stage` of the paper's recipe for HypeNet-`size` ("2b", "5b", "9b")."""
    teacher, name, stage2_lr, _ = _paper(size)
    data = data_block(source=FINEWEB_EDU, eval_source="", seq_len=512, batch_size=4 * PAPER_DEVICES)
    # linear_kernel "auto": the Lightning layers run the target's Pallas kernel (Mosaic on TPU, Triton on GPU)
    log = dict(log_every=50, eval_every=0, checkpoint_every=1000, keep_checkpoints=3, compute_dtype="bfloat16",
               linear_kernel="auto")
    if stage == 1:
        train = stage_train_block(steps=20_000, lr=1e-3, **log)
    elif stage == 2:
        data.batch_size = 12 * PAPER_DEVICES
        train = stage_train_block(steps=20_000, lr=stage2_lr, **log)
    else:
        data.seq_len, data.batch_size = 16384, 16 * PAPER_DEVICES
        # 16K tokens a row: rematerialise each layer and never hold a row's full-vocabulary logits at once (the
        # 5b recipe's stage 3 does not fit a v5p-16 without; benchmarks/RESULTS.md)
        train = stage_train_block(steps=500, lr=1e-5, accum_steps=16, remat="full", loss_chunk=1024,
                                  **{**log, "checkpoint_every": 100})
    mesh = dict(data=1, fsdp=-1, tensor=1)
    if (size, stage) in STAGE_TENSOR_PARALLEL:
        # one 16K-token row per device is still too much for the 9b's 4096-wide, 12288-deep layers on a 95 GiB
        # chip; splitting heads and MLP columns over 2 chips halves every activation of the row (and fewer batch
        # shards take more micro-batches for the same global batch)
        mesh["tensor"] = STAGE_TENSOR_PARALLEL[size, stage]
        train.accum_steps *= mesh["tensor"]
    student_init = {1: "", 2: f"runs/halo-{size}/stage1/hf", 3: f"runs/halo-{size}/stage2/hf"}[stage]
    return stage_config(stage, teacher=teacher, tokenizer=teacher, data=data, train=train, student_init=student_init,
                        attention_layers=PAPER_ATTENTION_LAYERS[name], mesh=mesh)


def _paper(size: str):
    if size not in PAPER_MODELS:
        raise ValueError(f"unknown HypeNet size {size!r}; choose one of {sorted(PAPER_MODELS)}")
    return PAPER_MODELS[size]


def pipeline_config(*, tokenizer: str, teacher_init: str, teacher_pretrain,
                    stages: dict[int, ml_collections.ConfigDict], attention_layers, num_attention_layers: int,
                    hype_base: float, evaluation, mesh=None, layer_selection=None,
                    seed: int = 0) -> ml_collections.ConfigDict:
    """The whole HALO pipeline (jaxsuite.halo.pipeline:run): [teacher pre-training] -> stage 1 -> [layer
    selection] -> stage 2 -> stage 3 -> evaluation teacher vs HypeNet. `stages[n]` are stage configs (their
    data and train blocks are used). `tokenizer` is the one every stage and the pre-trained teacher use."""
    c = ml_collections.ConfigDict()
    c.job = "jaxsuite.halo.pipeline:run"
    c.seed = seed
    c.tokenizer = tokenizer
    c.teacher = ml_collections.ConfigDict()
    c.teacher.init_from = teacher_init        # HF folder / hub id; "" = pre-train one with teacher.pretrain
    c.teacher.cache = True                    # reuse a teacher pre-trained by an earlier run with this config
    c.teacher.pretrain = teacher_pretrain if teacher_pretrain is not None else ml_collections.ConfigDict()
    if "tokenizer" in c.teacher.pretrain:
        c.teacher.pretrain.tokenizer = tokenizer
    c.student = ml_collections.ConfigDict()
    c.student.attention_layers = [int(i) for i in attention_layers]   # [] = choose them by layer selection
    c.student.num_attention_layers = int(num_attention_layers)         # how many layer selection keeps
    c.student.hype_base = float(hype_base)    # HyPE's a, switched on for inference ("hype <a>"); 0 = off
    c.layer_selection = layer_selection if layer_selection is not None else ml_collections.ConfigDict(
        dict(recall_lengths=[128], num_samples=16, lm_rows=8, lm_length=128))
    c.mesh = ml_collections.ConfigDict(mesh or dict(data=-1, fsdp=1, tensor=1))
    c.sharding_rules = [list(r) for r in DEFAULT_RULES]
    for n in (1, 2, 3):
        s = stages[n]
        block = dict(data=s.data.to_dict(), train=s.train.to_dict())
        if s.mesh.to_dict() != c.mesh.to_dict():     # a stage with its own mesh (the 9b recipe's stage 3)
            block["mesh"] = s.mesh.to_dict()
        setattr(c, f"stage{n}", ml_collections.ConfigDict(block))
    c.eval = evaluation
    return c


def eval_block(**kw) -> ml_collections.ConfigDict:
    """config.eval of the pipeline: what the final teacher-vs-HypeNet comparison measures."""
    base = dict(passkey_lengths=[128, 256, 512, 1024, 2048], passkey_samples=16, ppl_length=1024, ppl_rows=8,
                ppl_buckets=8, decode_lengths=[256, 1024, 4096, 16384, 65536], decode_steps=8, batch_size=2)
    base.update(kw)
    return ml_collections.ConfigDict(base)
