"""The paper's HALO recipes (arXiv 2601.22156): Qwen3-1.7B / 4B / 8B -> HypeNet-2B / 5B / 9B, for pods.

Commands:
  python -m jaxsuite.launch --config configs/halo_qwen3.py:2b --workdir runs/halo-2b \
      --config.stage1.data.source='/data/fineweb-edu/sample/10BT/*.parquet'   # and stage2 / stage3 alike
  python -m jaxsuite.launch --config configs/halo_qwen3.py:9b --workdir gs://bucket/halo-9b   # TPU pod

Variants: 2b, 5b, 9b. The teacher comes from the hub (teacher.init_from = Qwen/Qwen3-*), the attention
layers are the paper's (student.attention_layers; set it to [] to run layer selection instead), and the
three stage blocks carry the paper's sequence lengths, batch sizes (for 8 devices), learning rates and step
counts (jaxsuite/halo/recipes.py explains each number). Data: FineWeb-Edu parquet files, downloaded with
`huggingface-cli download HuggingFaceFW/fineweb-edu --repo-type dataset --include 'sample/10BT/*'`.
Each stage can also be run alone: configs/halo_stage.py.

Target: `topology` = v5p:2x2x2 (8 chips of 95 GiB, the paper's 8 devices). Compiled there without the hardware
(`python -m jaxsuite.launch --config configs/halo_qwen3.py:<size> --compile_only`; benchmarks/RESULTS.md), with
the Lightning layers on the TPU kernel (train.linear_kernel "auto") and stage 3 with full remat and 1024-token
loss chunks. Total per chip (arguments + outputs + temporaries - aliased):
  2b: 6.0 / 32.0 / 41.4 GiB in stages 1 / 2 / 3: fits.
  5b: 14.2 / 61.0 / 83.7 GiB: fits.
  9b: 18.0 / 80.3 / 34.1 GiB: fits. Its stage 3 splits each layer over 2 chips (stage3.mesh: FSDP 4 x tensor
      2, accum_steps 32); with FSDP over all 8 it totalled 95.7 GiB, over the chip.
"""
import ml_collections

from jaxsuite.halo.recipes import PAPER_MODELS, eval_block, paper_stage, pipeline_config
from jaxsuite.halo.transfer import PAPER_ATTENTION_LAYERS


# `python -m jaxsuite.launch --list` shows these; the first is the default
VARIANTS = {"2b": "Qwen3-1.7B -> HypeNet-2B, the paper's recipe on a v5p:2x2x2",
            "5b": "Qwen3-4B -> HypeNet-5B",
            "9b": "Qwen3-8B -> HypeNet-9B (stage 3 tensor-parallel over 2 chips)"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    size = (arg or "2b").lower()
    if size not in PAPER_MODELS:
        raise ValueError(f"unknown variant {arg!r} of configs/halo_qwen3.py; "
                         f"choose one of: {', '.join(VARIANTS)}")
    teacher, name, _, hype_base = PAPER_MODELS[size]
    stages = {n: paper_stage(size, n) for n in (1, 2, 3)}
    layers = PAPER_ATTENTION_LAYERS[name]
    evaluation = eval_block(passkey_lengths=[4096, 16384, 65536, 131072], passkey_samples=20, ppl_length=32768,
                            ppl_rows=8, decode_lengths=[4096, 16384, 65536, 131072], decode_steps=16, batch_size=1)
    c = pipeline_config(tokenizer=teacher, teacher_init=teacher, teacher_pretrain=None, stages=stages,
                        attention_layers=layers, num_attention_layers=len(layers), hype_base=hype_base,
                        evaluation=evaluation, mesh=dict(data=1, fsdp=-1, tensor=1),
                        layer_selection=ml_collections.ConfigDict(dict(recall_lengths=[4096], num_samples=20,
                                                                       lm_rows=16, lm_length=2048)))
    c.topology = "v5p:2x2x2"          # what --compile_only compiles for (every size fits, see above)
    return c
