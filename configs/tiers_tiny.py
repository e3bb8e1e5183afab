"""Tiered data management L0 -> L4 on the embedded corpus with tiny models, then tiered vs mixed training and the
decay verification (CPU minutes).

Commands:
  python -m jaxsuite.launch --config configs/tiers_tiny.py --workdir runs/tiers_tiny
  python -m jaxsuite.launch --config configs/tiers_tiny.py:test --workdir /tmp/t        # seconds, for tests

What happens: about 420 raw HTML pages (pydoc's pages of stdlib modules, lessons, news boilerplate, forum chatter,
spam, foreign-language, stub, tiny, duplicate and near-duplicate pages) go through datatrove's local executor (4
tasks, 2 workers): extraction with fallbacks, the UltraData L1 rules, language identification, exact and MinHash
dedup (L1). A Qwen3-architecture model of about 1M parameters is pre-trained on L1; a copy learns the annotation
guideline (rubric-scored pages of a disjoint corpus) and labels 60% of L1 on the 0-5 scale; a hashed n-gram
classifier distils the labels, its threshold is chosen on held-out labels, and a datatrove stage scores L1 (L2).
Another copy learns the refinement formats and writes Q&A, rewrites, fact lists and repairs of L2 documents,
fact-checked (L3); Q&A and facts verified against a source sentence are indexed (L4). Finally two fresh models
train on the same tokens, L1 -> L2 -> L3 -> L4 against the same-token mixture, and the decay verification
continues the tiered run's L1 stage on 30% candidate + 70% L1 per tier. See docs/tiers.md.
"""
import ml_collections

from jaxsuite.core.config_utils import train_block
from jaxsuite.core.sharding import DEFAULT_RULES

VARIANTS = {"cpu": "all tiers and both training comparisons at toy scale, one seed: CPU minutes",
            "test": "every step on a few dozen pages, a few training steps each: seconds, for tests"}


def _sft(steps: int, lr: float, batch_size: int = 16):
    return ml_collections.ConfigDict(dict(
        batch_size=batch_size, epochs=0.0, warmup_fraction=0.0,
        train=train_block(steps=steps, lr=lr, min_lr_ratio=0.1, b2=0.98, log_every=25, eval_every=0,
                          checkpoint_every=100)))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = (arg or "cpu").lower()
    c = ml_collections.ConfigDict()
    c.job = "jaxsuite.tiers.job:run"
    c.seed = 0
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.sharding_rules = [list(r) for r in DEFAULT_RULES]
    # l0: "embedded" (jaxsuite.tiers.corpus at `scale`) or a folder of JSON-lines pages {"id", "text": html, ...}
    c.data = ml_collections.ConfigDict(dict(l0="embedded", seed=0, scale=1.0, shards=4))
    c.pipeline = ml_collections.ConfigDict()
    c.pipeline.tasks = 4
    c.pipeline.languages = ["en"]
    c.pipeline.min_language_score = 0.65
    c.pipeline.extract_timeout = 10.0
    # length_unit "words" (our fix: CJK characters count one word each) or "chars" (the released rule, 80..1e6)
    c.pipeline.l1 = ml_collections.ConfigDict(dict(short_chars=200, length_unit="words", min_length=15,
                                                   max_length=200_000))
    # kind "local" | "slurm" | "ray"; the slurm and ray blocks are read only for their kind (docs/tiers.md)
    c.pipeline.executor = ml_collections.ConfigDict(dict(
        kind="local", workers=2, start_method="forkserver",
        slurm=dict(partition="cpu", time="04:00:00", cpus_per_task=4, mem_per_cpu_gb=4, venv_path=""),
        ray=dict(cpus_per_task=4, mem_per_cpu_gb=4.0)))
    c.tokenizer = ""                        # "": a SentencePiece model of vocab_size pieces trained on L1
    c.vocab_size = 1024
    c.model = ml_collections.ConfigDict()
    c.model.init_from = ""                  # a released instruct model: judge and refiner zero-shot, no SFT
    c.model.arch = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=32, max_position_embeddings=1024, rope_theta=10000.0,
                        tie_word_embeddings=True, model_type="qwen3")
    c.seq_len = 512
    c.base = _sft(steps=200, lr=3e-3)
    c.judge = ml_collections.ConfigDict(dict(max_doc_tokens=160, sample_fraction=0.6, batch_size=16,
                                             guideline_scale=0.5))
    c.judge.sft = _sft(steps=100, lr=2e-3)
    c.classifier = ml_collections.ConfigDict(dict(buckets=2 ** 15, dim=32, steps=300, lr=0.05, batch_size=64,
                                                  heldout_fraction=0.3, keep_at=3, score_batch=256))
    c.refine = ml_collections.ConfigDict(dict(source_words=120, demo_fraction=0.35, demos_per_document=4, per_document=2,
                                              max_new_tokens=160, max_prompt_tokens=384, temperature=0.0,
                                              batch_size=32, min_support=0.7, min_words=8))
    c.refine.sft = _sft(steps=300, lr=2e-3)
    c.knowledge = ml_collections.ConfigDict(dict(min_overlap=0.8))
    c.training = ml_collections.ConfigDict(dict(
        stages=[["pretrain", "L1"], ["select", "L2"], ["mid", "L3"], ["align", "L4"]], steps=[200, 100, 60, 20],
        seq_len=256, batch_size=16, heldout_fraction=0.1, min_documents=4,
        train=dict(train_block(steps=1, lr=3e-3, warmup_steps=20, min_lr_ratio=0.1, b2=0.98, log_every=25,
                               eval_every=0, checkpoint_every=100))))
    c.decay = ml_collections.ConfigDict(dict(candidates=["L1", "L2", "L3", "L4"], general="L1", candidate_share=0.3,
                                             steps=60, lr=1e-3))
    if variant == "test":
        c.data.update(scale=0.12, shards=2)
        c.pipeline.tasks = 2
        c.model.arch.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2, head_dim=8)
        c.vocab_size = 400
        c.seq_len = 384
        for block in (c.base, c.judge.sft, c.refine.sft):
            block.batch_size = 4
            block.train.update(steps=2, log_every=1, checkpoint_every=1)
        c.judge.update(max_doc_tokens=64, guideline_scale=0.08)
        c.classifier.update(steps=20, buckets=2 ** 10, dim=8, keep_at=0)    # keep_at 0: every stage gets documents
        c.refine.update(source_words=40, max_new_tokens=24, batch_size=8, demos_per_document=1, per_document=1)
        c.training.update(steps=[2, 2, 2, 2], seq_len=64, batch_size=4, min_documents=2)
        c.training.train.update(warmup_steps=0, log_every=1, checkpoint_every=2)
        c.decay.steps = 2
    elif variant != "cpu":
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    return c
