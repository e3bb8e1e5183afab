"""LatentChem with the paper's settings on Qwen3-8B-Base, for a pod.

Commands:
  python -m jaxsuite.launch --config configs/latentchem_qwen3_8b.py --workdir gs://bucket/latentchem_8b

Settings (reference note; arXiv 2602.07075 and xinwuye/LatentChem): Qwen3-8B-Base; a frozen SMILES encoder's
768-d token features (the paper's SMI-TED light) through 128 learned queries with 8-head cross-attention; the
updater on; SFT without CoT -> SFT with CoT -> Coconut curriculum with c = 2 latent steps per reasoning step
over up to 7 stages -> GRPO (2 generations per question, lr 1e-5, no KL, clip 0.2, temperature 0.7, top-p 0.9).

Data: nothing is downloaded by the job. Put ChemCoTDataset rows (OpenMol/ChemCoTDataset, jsonl) at
data/latentchem/train.jsonl and ChemCoTBench rows (json) at data/latentchem/test.json, or point
data.train_path / data.test_path elsewhere; and the molecule features of every SMILES they mention, computed
with the encoder of your choice, in an .npz (`smiles`, `features` [N, L, 768], `mask` [N, L]; see
jaxsuite.latent.mol_encoder.save_precomputed) at mol.features_path. A missing file stops the job at start.

Differences from the paper: full fine-tuning instead of LoRA (r16, alpha 32), and steps instead of epochs
(set the stage steps to 3 epochs of your data: 3 * rows / data.batch_size). The special tokens use ids from
151669, rows of Qwen3's embedding that its tokenizer leaves unused.

Target: `topology` = v5p:2x2x2 (8 chips of 95 GiB, FSDP over all 8), with full remat in every stage and GRPO. It
fits: `python -m jaxsuite.launch --config configs/latentchem_qwen3_8b.py --compile_only` compiles all six
programs (SFT step, latent step, answering loop, GRPO update, scoring and rollout); the largest, the latent step
and the GRPO update, total 82.0 GiB per chip (benchmarks/RESULTS.md). Allow 40 minutes and 22 GB of host memory
for the compile.
"""
import ml_collections

from jaxsuite.core.config_utils import load_config, train_block


# `python -m jaxsuite.launch --list` shows these; the first is the default
VARIANTS = {"8b": "Qwen3-8B-Base with the paper's curriculum and GRPO, a v5p:2x2x2"}


def _train(steps: int, lr: float) -> ml_collections.ConfigDict:
    return train_block(steps=steps, lr=lr, warmup_steps=100, accum_steps=8, compute_dtype="bfloat16",
                       eval_every=0, eval_batches=0, checkpoint_every=500, remat="full")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in (None, "8b"):
        raise ValueError(f"unknown variant {arg!r} of configs/latentchem_qwen3_8b.py; "
                         f"choose one of: {', '.join(VARIANTS)}")
    c = load_config("configs/latentchem_tiny.py", "cpu")
    c.model.init_from = "Qwen/Qwen3-8B-Base"
    c.tokenizer = c.model.init_from
    c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
    c.data.update(train_path="data/latentchem/train.jsonl", test_path="data/latentchem/test.json",
                  seq_len=2048, batch_size=64)
    # d_model / max_len: the width and length of the precomputed features (what --compile_only assumes when the
    # file is not there; a run reads them from the file)
    c.mol.update(num_queries=128, use_updater=True, features_path="data/latentchem/smiles_features.npz",
                 d_model=768, max_len=128)
    c.latent.update(first_token_id=151669, per_step=2, stages=7)
    c.train = ml_collections.ConfigDict(dict(sft_answer=_train(2000, 1e-5), sft_cot=_train(4000, 1e-5),
                                             stage=_train(1500, 1e-5)))
    c.grpo.update(steps=500, questions_per_step=64, num_generations=2, temperature=0.7, top_p=0.9, clip=0.2,
                  max_new_tokens=512, log_every=1, checkpoint_every=50, accum_steps=16, compute_dtype="bfloat16",
                  remat="full")
    c.grpo.optim.update(lr=1e-5)
    c.eval.update(max_new_tokens=1024, batch_size=64)
    c.topology = "v5p:2x2x2"          # what --compile_only compiles for (see the docstring)
    return c
