"""One HALO stage as its own job: the paper's recipe for one size, or the quickstart's stage settings.

Commands:
  python -m jaxsuite.launch --config configs/halo_stage.py:2b,1 --workdir runs/halo-2b/stage1 \
      --config.data.source='/data/fineweb-edu/sample/10BT/*.parquet'
  python -m jaxsuite.launch --config configs/halo_stage.py:2b,2 --workdir runs/halo-2b/stage2 \
      --config.student.init_from=runs/halo-2b/stage1/hf
  python -m jaxsuite.launch --config configs/halo_stage.py:2b,3 --workdir runs/halo-2b/stage3 \
      --config.student.init_from=runs/halo-2b/stage2/hf
  python -m jaxsuite.launch --config configs/halo_stage.py:tiny,1 --workdir /tmp/s1 \
      --config.teacher.init_from=runs/halo_tiny/teacher/hf        # a quickstart stage on its own

The argument is "<size>,<stage>" with size in 2b, 5b, 9b (the paper) or tiny (configs/halo_tiny.py's cpu
variant) and stage in 1, 2, 3. Each stage job is resumable and writes results.json, metrics.jsonl,
checkpoints/, loss.png and hf/ (the model the next stage starts from) into --workdir.
"""
import ml_collections

from jaxsuite.core.config_utils import load_config
from jaxsuite.halo.recipes import PAPER_MODELS, paper_stage, stage_config


# `python -m jaxsuite.launch --list` shows these; the first is the default
VARIANTS = {f"{size},{stage}": (f"stage {stage} of the HypeNet-{size.upper()} recipe" if size != "tiny"
                                else f"stage {stage} with the quickstart's settings")
            for size in (*PAPER_MODELS, "tiny") for stage in (1, 2, 3)}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    parts = (arg or "2b,1").lower().split(",")
    if len(parts) != 2 or parts[1] not in ("1", "2", "3"):
        raise ValueError(f"configs/halo_stage.py takes '<size>,<stage>' (e.g. 2b,1), got {arg!r}")
    size, stage = parts[0], int(parts[1])
    if size in PAPER_MODELS:
        return paper_stage(size, stage)
    if size == "tiny":
        pipe = load_config("configs/halo_tiny.py", "cpu")
        block = getattr(pipe, f"stage{stage}")
        return stage_config(stage, teacher="", tokenizer=pipe.tokenizer, data=block.data, train=block.train,
                            attention_layers=[1] if stage > 1 else ())
    raise ValueError(f"unknown size {size!r} in configs/halo_stage.py; choose one of {sorted(PAPER_MODELS)} or tiny")
