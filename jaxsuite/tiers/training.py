"""Tier-aware training against a mixed baseline with the same tokens, and the decay verification.

    tiered = [("pretrain", {"L1": 1}), ("select", {"L2": 1}), ("mid", {"L3": 1}), ("align", {"L4": 1})]
    mixed  = same_token_mixture(tiered, steps)          # every stage the overall token shares: same tokens
    model = run_schedule("tiered", wd, model, tiered, steps, sources, ...)

Each stage is a core training loop (resumable, checkpointed) over a grain mixture of the tiers' texts
(jaxsuite.core.data.mixture_lm_dataset); stages before the last keep the learning rate constant and the last
decays it (warmup-stable-decay), for both arms, so the two differ only in which tier each token comes from.

The decay verification (UltraData-Math's protocol, far cheaper than training from scratch): continue a
nearly-trained model, here the tiered arm's first stage (L1 at a constant rate), for `decay.steps` steps on
30% candidate data + 70% general data (L1) with a learning rate decaying to zero, once per candidate tier, and
compare held-out metrics; the L1-only continuation is the control.

Held-out metrics (`held_out_metrics`): per-token negative log-likelihood and perplexity of each tier's
held-out documents (first `seq_len` tokens each), and for held-out L4 Q&A the answer tokens' NLL and
teacher-forced next-token accuracy given "Q: ...\\nA:".
"""
from __future__ import annotations

import math
from typing import Sequence


from jaxsuite.core.config_utils import loop_config
from jaxsuite.core.data import InMemorySource, mixture_lm_dataset
from jaxsuite.core.loop import train_loop
from jaxsuite.core.workdir import Workdir
from jaxsuite.tiers.quality import span_token_stats


def same_token_mixture(stages: Sequence[tuple[str, dict]], steps: Sequence[int]) -> list[tuple[str, dict]]:
    """The mixed baseline of a tiered schedule: each stage's weights replaced by the whole schedule's token
    shares (stage steps x stage weights), so with the same steps and batch shape both arms see the same number
    of tokens from each tier, only in a different order."""
    total: dict[str, float] = {}
    for (_, weights), n in zip(stages, steps):
        norm = sum(weights.values())
        for tier, w in weights.items():
            total[tier] = total.get(tier, 0.0) + int(n) * float(w) / norm
    s = sum(total.values())
    shares = {t: v / s for t, v in sorted(total.items())}
    return [(name, dict(shares)) for name, _ in stages]


def run_schedule(arm: str, wd: Workdir, model, stages: Sequence[tuple[str, dict]], steps: Sequence[int],
                 sources: dict[str, list[str]], tokenizer, *, train: dict, seq_len: int, batch_size: int, seed: int,
                 mesh, rules, decay_last: bool = True):
    """Trains `model` through the stages (constant rate, the last decaying to lr * train["min_lr_ratio"] when
    `decay_last`). A finished stage resumes from its last checkpoint and runs no step, so a prefix of a finished
    schedule (decay_last=False) gives back that stage's model. Returns the final model and each stage's summary."""
    summaries = {}
    for i, ((name, weights), n) in enumerate(zip(stages, steps)):
        last = i == len(stages) - 1 and decay_last
        block = {**train, "steps": int(n), "warmup_steps": 0 if i else int(train.get("warmup_steps", 0)),
                 "min_lr_ratio": float(train["min_lr_ratio"]) if last else 1.0}
        tiers = [t for t in sorted(weights) if weights[t] > 0]
        data = mixture_lm_dataset([InMemorySource(sources[t]) for t in tiers], [weights[t] for t in tiers],
                                  tokenizer, seq_len, batch_size, seed=seed + 17 * i)
        stage = Workdir.start(wd.path(arm, f"{i}_{name}"), primary=wd.primary)
        out = train_loop(loop_config(seed + i, block, seq_len, batch_size), stage, model, mesh=mesh, rules=rules,
                         train_ds=data, curve_title=f"{arm}: {name} ({', '.join(tiers)})")
        model = out.model
        summaries[name] = {**out.summary(), "weights": {t: round(float(weights[t]), 4) for t in tiers}}
    return model, summaries


# ------------------------------------------------------------------------------------------------------------
# Held-out metrics
# ------------------------------------------------------------------------------------------------------------
def held_out_metrics(model, tokenizer, texts: dict[str, list[str]], qa: Sequence[tuple[str, str]], *,
                     seq_len: int) -> dict:
    """{"<tier>_nll", "<tier>_perplexity" per tier of `texts`; "qa_answer_nll", "qa_answer_accuracy"}."""
    bos = [tokenizer.bos_id] if getattr(tokenizer, "bos_id", None) is not None and tokenizer.bos_id >= 0 else \
        [tokenizer.eos_id]
    out = {}
    for tier, docs in sorted(texts.items()):
        rows = [(bos + tokenizer.encode(t))[:seq_len + 1] for t in docs if t.strip()]
        if not rows:
            continue
        lp, _, n = span_token_stats(model, rows, [(1, len(r)) for r in rows])
        out[f"{tier}_nll"] = -lp.sum() / max(n.sum(), 1)
        out[f"{tier}_perplexity"] = math.exp(min(out[f"{tier}_nll"], 50.0))
    if qa:
        rows, spans = [], []
        for q, a in qa:
            head = bos + tokenizer.encode(f"Q: {q}\nA:")
            tail = tokenizer.encode(f" {a}") + [tokenizer.eos_id]
            row = (head + tail)[:seq_len + 1]
            rows.append(row)
            spans.append((min(len(head), len(row)), len(row)))
        lp, hits, n = span_token_stats(model, rows, spans)
        out["qa_answer_nll"] = -lp.sum() / max(n.sum(), 1)
        out["qa_answer_accuracy"] = hits.sum() / max(n.sum(), 1)
    return {k: round(float(v), 5) for k, v in out.items()}
