"""Tier-aware training: the same-token mixture by hand, the grain mixture's token shares, held-out metrics against a
row-by-row reference, and a schedule on 1 and 8 devices that trains the same and resumes without a step."""
import json

import jax
from flax import nnx
import numpy as np
import pytest

from jaxsuite.core import sharding as shd
from jaxsuite.core.config_utils import train_block
from jaxsuite.core.data import InMemorySource, mixture_lm_dataset
from jaxsuite.core.tokenizer import load_tokenizer
from jaxsuite.core.workdir import Workdir
from jaxsuite.models.config import DecoderConfig
from jaxsuite.models.factory import init_model
from jaxsuite.tiers import training as T

ARCH = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8, max_position_embeddings=256, model_type="qwen3")


def test_same_token_mixture_by_hand():
    tiered = [("a", {"L1": 1.0}), ("b", {"L2": 1.0}), ("c", {"L3": 2.0, "L1": 2.0})]
    mixed = T.same_token_mixture(tiered, [60, 20, 20])
    # L1: 60 + 10 = 70, L2: 20, L3: 10 of 100 steps
    assert [name for name, _ in mixed] == ["a", "b", "c"]
    assert all(w == pytest.approx({"L1": 0.7, "L2": 0.2, "L3": 0.1}) for _, w in mixed)


def test_mixture_dataset_draws_tokens_in_proportion():
    tok = load_tokenizer("byte")
    a, b = InMemorySource(["a" * 40] * 8), InMemorySource(["b" * 40] * 8)
    it = iter(mixture_lm_dataset([a, b], [0.25, 0.75], tok, 16, 8, seed=0))
    counts = np.zeros(2)
    for _ in range(40):
        x = next(it)["inputs"]
        counts += [(x == tok.encode("a")[0]).sum(), (x == tok.encode("b")[0]).sum()]
    assert counts[0] / counts.sum() == pytest.approx(0.25, abs=0.03)
    with pytest.raises(ValueError, match="one weight per source"):
        mixture_lm_dataset([a], [0.5, 0.5], tok, 16, 8, seed=0)
    with pytest.raises(ValueError, match="positive sum"):
        mixture_lm_dataset([a, b], [0, 0], tok, 16, 8, seed=0)


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def test_held_out_metrics_match_a_row_by_row_reference():
    tok = load_tokenizer("byte")
    model = init_model(DecoderConfig(vocab_size=tok.vocab_size, **ARCH), seed=0)
    texts = {"L1": ["hello world", "a longer held-out document"], "L2": ["x"]}
    qa = [("what?", "this"), ("who", "them all")]
    got = T.held_out_metrics(model, tok, texts, qa, seq_len=64)
    for tier, docs in texts.items():
        lp = n = 0
        for t in docs:
            ids = [tok.bos_id] + tok.encode(t)
            logp = _log_softmax(np.asarray(model(np.asarray([ids])))[0])
            lp += sum(logp[j - 1, ids[j]] for j in range(1, len(ids)))
            n += len(ids) - 1
        assert got[f"{tier}_nll"] == pytest.approx(-lp / n, abs=1e-4)
    lp = hits = n = 0
    for q, a in qa:
        head = [tok.bos_id] + tok.encode(f"Q: {q}\nA:")
        ids = head + tok.encode(f" {a}") + [tok.eos_id]
        logits = np.asarray(model(np.asarray([ids])))[0]
        logp = _log_softmax(logits)
        for j in range(len(head), len(ids)):
            lp += logp[j - 1, ids[j]]
            hits += int(logits[j - 1].argmax() == ids[j])
            n += 1
    assert got["qa_answer_nll"] == pytest.approx(-lp / n, abs=1e-4)
    assert got["qa_answer_accuracy"] == pytest.approx(hits / n, abs=1e-5)


def _schedule(tmp_path, devices, name):
    tok = load_tokenizer("byte")
    mesh = shd.make_mesh({"data": -1}, devices)
    rules = shd.rules_from_config(shd.DEFAULT_RULES)
    sources = {"L1": [f"document {i} about rivers and bridges" for i in range(12)],
               "L2": [f"lesson {i}: heaps keep the smallest item first" for i in range(12)]}
    train = dict(train_block(steps=1, lr=3e-3, warmup_steps=0, min_lr_ratio=0.1, log_every=1, eval_every=0,
                             checkpoint_every=2))
    wd = Workdir.start(str(tmp_path / name))
    model = init_model(DecoderConfig(vocab_size=tok.vocab_size, **ARCH), seed=0)
    out, summaries = T.run_schedule("tiered", wd, model, [("one", {"L1": 1.0}), ("two", {"L2": 1.0})], [3, 2],
                                    sources, tok, train=train, seq_len=32, batch_size=8, seed=0, mesh=mesh,
                                    rules=rules)
    return out, summaries, wd


def test_a_schedule_trains_the_same_on_1_and_8_devices_and_resumes_without_a_step(tmp_path):
    if jax.device_count() < 8:
        pytest.skip("needs --xla_force_host_platform_device_count=8 set before jax is imported")
    one, s1, wd1 = _schedule(tmp_path, jax.devices()[:1], "one")
    eight, s8, _ = _schedule(tmp_path, jax.devices()[:8], "eight")
    losses = [[json.loads(x)["train/loss"] for x in open(wd1.path("tiered", n, "metrics.jsonl"))]
              for n in ("0_one", "1_two")]
    losses8 = [[json.loads(x)["train/loss"] for x in open(str(tmp_path / "eight" / "tiered" / n / "metrics.jsonl"))]
               for n in ("0_one", "1_two")]
    assert np.allclose(sum(losses, []), sum(losses8, []), rtol=2e-4), (losses, losses8)
    assert s1["one"]["weights"] == {"L1": 1.0} and s1["two"]["tokens_seen"] == 2 * 8 * 32
    p1 = jax.tree.leaves(jax.device_get(nnx.state(one)))
    p8 = jax.tree.leaves(jax.device_get(nnx.state(eight)))
    assert all(np.allclose(a, b, atol=2e-5) for a, b in zip(p1, p8))
    again, s_again, _ = _schedule(tmp_path, jax.devices()[:1], "one")        # finished: restored, no step run
    assert s_again["two"]["resumed_from_step"] == 2 and s_again["one"]["resumed_from_step"] == 3
    pa = jax.tree.leaves(jax.device_get(nnx.state(again)))
    assert all(np.array_equal(a, b) for a, b in zip(p1, pa))


def test_held_out_sources_are_held_out_of_every_tier():
    from jaxsuite.tiers.job import split_heldout
    sources = [f"doc-{i}" for i in range(200)]
    texts = {"L1": [(s, f"text of {s}") for s in sources], "L2": [(s, f"text of {s}") for s in sources[::2]],
             "L3": [(s, f"a rewrite of {s}") for s in sources[::3]]}
    train, held = split_heldout(texts, 0.1)
    held_sources = {t.removeprefix("text of ") for t in held["L1"]}
    assert 8 <= len(held_sources) <= 35                                  # about 10% of 200
    for tier in texts:
        assert not any(t.split()[-1] in held_sources for t in train[tier]), tier
        assert all(t.split()[-1] in held_sources for t in held[tier]), tier
        assert len(train[tier]) + len(held[tier]) == len(texts[tier])
