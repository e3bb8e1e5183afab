"""LatentChem at toy scale: a CoT baseline and a latent-reasoning model trained side by side, CPU minutes.

Commands:
  python -m jaxsuite.launch --config configs/latentchem_tiny.py --workdir runs/latentchem_tiny
  python -m jaxsuite.launch --config configs/latentchem_tiny.py:test --workdir /tmp/lc     # seconds, for tests
  ... --config.latent.hinge_weight=1.0            # with the counterfactual hinge loss
  python -m jaxsuite.core.seeds --config configs/latentchem_tiny.py --seeds 0,1,2,3,4 --devices 1,8 \
      --workdir runs/latentchem_seeds --override=--config.data.test_size=512 --metric accuracy_gain
                                                   # over seeds and device counts (benchmarks/RESULTS.md)

What happens: RDKit-labelled molecule-understanding questions ("How many rings does c1ccccc1O have?") with
programmatic step-by-step rationales; a small SMILES encoder pre-trained here with masked tokens feeds 4
molecule soft tokens through the adapter; a 1.2M-parameter byte-level Qwen3-architecture model is trained
answer-only, then with CoT; from there the CoT baseline continues CoT training while the latent model goes
through the Coconut curriculum (stage k: the first k steps become k latent steps); both are evaluated on
held-out questions. Writes results.json (accuracy per task, win rate, steps, speed-up, causal test),
stages.png and one folder per training stage.
"""
import ml_collections

from jaxsuite.core.config_utils import train_block
from jaxsuite.core.sharding import DEFAULT_RULES


# `python -m jaxsuite.launch --list` shows these; the first is the default
VARIANTS = {"cpu": "a CoT baseline and a latent model side by side on RDKit-labelled tasks: CPU minutes",
            "test": "2 curriculum stages, 2 GRPO steps: seconds, for tests and the notebook"}


def _train(steps: int, lr: float, every: int) -> ml_collections.ConfigDict:
    """A stage's train block: no evaluation (the job evaluates by answering), a checkpoint half-way."""
    return train_block(steps=steps, lr=lr, warmup_steps=min(20, steps // 5), log_every=every, eval_every=0,
                       eval_batches=0, checkpoint_every=max(steps // 2, 1), keep_checkpoints=1)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = (arg or "cpu").lower()
    c = ml_collections.ConfigDict()
    c.job = "jaxsuite.latent.job:run"
    c.seed = 0
    c.tokenizer = "byte"
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.sharding_rules = [list(r) for r in DEFAULT_RULES]
    c.model = ml_collections.ConfigDict()
    c.model.init_from = ""              # "" = a fresh model from model.arch
    c.model.arch = dict(vocab_size=272, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=256,
                        rope_theta=10000.0, tie_word_embeddings=True, attention_bias=False, model_type="qwen3")
    c.data = ml_collections.ConfigDict(dict(
        kinds=["rings", "aromatic_atoms", "hbd", "hba", "has_group"], seed=0, max_heavy_atoms=12,
        train_size=3000, test_size=128, train_path="", test_path="", seq_len=160, batch_size=32))
    c.mol = ml_collections.ConfigDict(dict(
        num_queries=4, use_updater=False, features_path="", d_model=64, num_layers=2, num_heads=4, max_len=40,
        batch_size=64, train=_train(300, 1e-3, 100)))
    c.latent = ml_collections.ConfigDict(dict(first_token_id=259, per_step=1, stages=3, hinge_weight=0.0,
                                              hinge_margin=0.5))
    c.train = ml_collections.ConfigDict(dict(sft_answer=_train(300, 2e-3, 100), sft_cot=_train(600, 2e-3, 100),
                                             stage=_train(150, 5e-4, 50)))
    # GRPO at the paper's lr 1e-5: at 1e-4 GRPO lowered accuracy in all 3 runs we made (benchmarks/RESULTS.md)
    c.grpo = ml_collections.ConfigDict(dict(
        steps=40, questions_per_step=16, num_generations=2, temperature=0.7, top_p=0.9, clip=0.2,
        max_new_tokens=24, log_every=10, checkpoint_every=20, accum_steps=1, compute_dtype="float32", remat="none",
        optim=dict(lr=1e-5, warmup_steps=0, min_lr_ratio=1.0, weight_decay=0.0, b1=0.9, b2=0.999, grad_clip=1.0)))
    c.eval = ml_collections.ConfigDict(dict(max_new_tokens=128, batch_size=64))
    if variant == "cpu":
        pass
    elif variant == "test":
        c.model.arch.update(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            num_key_value_heads=1, head_dim=16)
        c.data.update(train_size=40, test_size=8, batch_size=8, kinds=["rings", "hbd", "has_group"])
        c.mol.update(d_model=16, num_layers=1, num_heads=2, train=_train(4, 1e-3, 2), batch_size=8)
        c.latent.stages = 1
        c.train = ml_collections.ConfigDict(dict(sft_answer=_train(3, 1e-3, 1), sft_cot=_train(3, 1e-3, 1),
                                                 stage=_train(2, 1e-3, 1)))
        c.eval.update(max_new_tokens=24, batch_size=8)
        c.grpo.update(steps=2, questions_per_step=4, max_new_tokens=12, checkpoint_every=1, log_every=1)
    else:
        raise ValueError(f"unknown variant {arg!r} of configs/latentchem_tiny.py; "
                         f"choose one of: {', '.join(VARIANTS)}")
    return c
