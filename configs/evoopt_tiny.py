"""EvoOpt-LLM's three modules at toy scale: a tiny model learns to write MILP models and cvxpy programs (CPU minutes).

Commands:
  python -m jaxsuite.launch --config configs/evoopt_tiny.py --workdir runs/evoopt_tiny
  python -m jaxsuite.launch --config configs/evoopt_tiny.py:test --workdir /tmp/e        # seconds, for tests

What happens: problems of the eight families (production, transportation, assignment, knapsack, facility,
blending, scheduling, inventory) are generated at toy size with their optima. A Qwen3-architecture model of about
1.3M parameters, with a SentencePiece tokenizer trained on the texts, is pre-trained on a disjoint pool's
statements, programs and LP files (each on its own), then adapted by LoRA (rank 16 on every projection) to
statement -> formulation + cvxpy program with 32, 64, 128 and 256 training samples (the data-efficiency curve);
its answers to 32 test problems (4 samples each) are run in the sandbox and judged by ORLM's rule, as written and
after rule-based repair. Constraint injection and the LLM pruning variant are adapted from the same base; the
predict-and-search GNN learns from SCIP's solution pools of multi-constraint knapsacks (400 items) and is compared
with the plain HiGHS solve at a 2 s limit. See docs/evoopt.md.
"""
import ml_collections

from jaxsuite.core.config_utils import lora_block, train_block
from jaxsuite.core.sharding import DEFAULT_RULES

VARIANTS = {"cpu": "the three modules at toy scale, one seed: CPU minutes",
            "test": "every stage for a few steps on a handful of problems: seconds, for tests"}


def _sft(steps: int, lr: float, batch_size: int = 8, epochs: float = 0.0):
    return ml_collections.ConfigDict(dict(
        batch_size=batch_size, epochs=epochs, warmup_fraction=0.0,
        train=train_block(steps=steps, lr=lr, min_lr_ratio=0.1, b2=0.98, log_every=25, eval_every=0,
                          checkpoint_every=100)))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = (arg or "cpu").lower()
    c = ml_collections.ConfigDict()
    c.job = "jaxsuite.optmodel.job:run"
    c.seed = 0
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.sharding_rules = [list(r) for r in DEFAULT_RULES]
    # families: [] = all eight; pretrain_problems: the disjoint pool the base is pre-trained on
    c.data = ml_collections.ConfigDict(dict(seed=0, families=[], test_problems=32, pretrain_problems=512,
                                            injection_train=256, injection_test=32))
    c.vocab_size = 1024
    c.prompt_wrapper = "{prompt}"          # a chat template's user turn for an instruct model (evoopt_7b.py)
    c.model = ml_collections.ConfigDict()
    c.model.init_from = ""
    c.model.arch = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=32, max_position_embeddings=1024, rope_theta=10000.0,
                        tie_word_embeddings=True, model_type="qwen3")
    c.model.lora = lora_block(rank=16, alpha=32.0)
    c.seq_len = 768
    c.pretrain = _sft(steps=400, lr=3e-3)
    # model construction: one LoRA SFT per train size, `epochs` passes over its samples
    c.construct = _sft(steps=0, lr=3e-3, epochs=8.0)
    c.construct.train_sizes = [32, 64, 128, 256]
    c.injection = _sft(steps=200, lr=3e-3)
    c.injection.max_new_tokens = 320
    # the GNN: knapsacks with several capacity constraints (pruning.family at gnn_size), SCIP's pools as labels;
    # the LLM variant: small instances of the same family, its lists scored against the optimal zeros
    c.pruning = ml_collections.ConfigDict(dict(
        family="knapsack", gnn_size="medium", gnn_train=12, gnn_test=4, pool=50, label_time_limit=10.0,
        steps=300, lr=1e-3, width=64, temperature=0.01, log_every=100, k0=200, k1=20, delta=0.0, time_limit=2.0,
        llm_train=256, test=32, max_new_tokens=96))
    c.pruning.llm = _sft(steps=100, lr=3e-3)
    c.eval = ml_collections.ConfigDict(dict(k=4, temperature=0.6, max_new_tokens=384, batch_size=64, workers=2,
                                            rule="orlm", timeout=30.0, max_prompt_tokens=256))
    if variant == "test":
        c.data.update(families=["production", "knapsack"], test_problems=2, pretrain_problems=6,
                      injection_train=4, injection_test=2)
        c.model.arch.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2, head_dim=8)
        c.vocab_size = 400
        c.seq_len = 1024
        c.model.lora.rank = 4
        for block in (c.pretrain, c.construct, c.injection, c.pruning.llm):
            block.batch_size = 2
            block.train.update(steps=2, log_every=1, checkpoint_every=1)
        c.construct.epochs = 0.0
        c.construct.train_sizes = [2, 4]
        c.injection.max_new_tokens = 16
        c.pruning.update(gnn_size="small", gnn_train=3, gnn_test=2, pool=5, label_time_limit=5.0, steps=5, width=8,
                         log_every=0, k0=2, k1=1, time_limit=5.0, llm_train=3, test=2, max_new_tokens=8)
        c.eval.update(k=2, max_new_tokens=24, batch_size=4, workers=2, timeout=20.0)
    elif variant != "cpu":
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    return c
