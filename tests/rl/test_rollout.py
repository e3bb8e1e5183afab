"""Rollouts: sampler log-probs against a forward pass, the batch layout by hand, the repetition penalty
against transformers."""
import jax
import numpy as np
import pytest

from jaxsuite.core import sharding as shd
from jaxsuite.core.tokenizer import ByteTokenizer
from jaxsuite.generate import generate
from jaxsuite.models.config import DecoderConfig
from jaxsuite.models.factory import init_model
from jaxsuite.rl.policy import Policy, PolicyLossConfig
from jaxsuite.rl.rollout import Rollout, apply_repetition_penalty, pack_rl_batch, sample_responses

ARCH = dict(vocab_size=260, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, head_dim=16, max_position_embeddings=64, model_type="qwen3",
            bos_token_id=1, eos_token_id=2, pad_token_id=0)
OPTIM = dict(lr=1e-3, warmup_steps=0, steps=1, weight_decay=0.0, b1=0.9, b2=0.999, grad_clip=0.0)


def test_pack_rl_batch_layout_by_hand():
    batch = pack_rl_batch([[5, 6, 7], [9]], [[8, 9, 2], [4, 2]], [0.5, -1.0], seq_len=8, pad_id=0, rows=3)
    np.testing.assert_array_equal(batch["inputs"][0], [5, 6, 7, 8, 9, 0, 0])
    np.testing.assert_array_equal(batch["targets"][0], [6, 7, 8, 9, 2, 0, 0])
    np.testing.assert_array_equal(batch["loss_mask"][0], [0, 0, 1, 1, 1, 0, 0])   # targets 8, 9, eos
    np.testing.assert_array_equal(batch["advantages"][0], [0, 0, 0.5, 0.5, 0.5, 0, 0])
    np.testing.assert_array_equal(batch["inputs"][1], [9, 4, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch["loss_mask"][1], [1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch["loss_mask"][2], 0)                      # padding row
    np.testing.assert_array_equal(batch["positions"][0], np.arange(7))
    with pytest.raises(ValueError, match="exceed seq_len=4"):
        pack_rl_batch([[5, 6, 7]], [[8, 9]], [1.0], seq_len=4, pad_id=0)
    with pytest.raises(ValueError, match="rows=1 is smaller"):
        pack_rl_batch([[5], [6]], [[8], [9]], [1.0, 1.0], seq_len=4, pad_id=0, rows=1)
    with pytest.raises(ValueError, match="one of each per row"):
        pack_rl_batch([[5], [6]], [[8], [9]], [1.0], seq_len=4, pad_id=0)


def test_sampler_logprobs_equal_the_policys_recomputed_logprobs():
    """What generate reports per sampled token is what the update recomputes (same temperature)."""
    model = init_model(DecoderConfig(**ARCH), seed=0)
    tok = ByteTokenizer()
    roll = sample_responses(model, tok, ["Q:1+2=?\nA:", "Generate"], n=3, max_new_tokens=10, temperature=0.7,
                            top_p=0.9, seed=4)
    assert len(roll.texts) == 6 and roll.group_ids.tolist() == [0, 0, 0, 1, 1, 1]
    assert roll.prompt_ids[0] == [1] + tok.encode("Q:1+2=?\nA:")
    policy = Policy(model, optim=OPTIM, loss=PolicyLossConfig(temperature=0.7),
                    mesh=shd.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1]))
    batch = roll.to_batch(np.zeros(6), seq_len=32, pad_id=0)
    logp, _ = policy.score(batch)
    for i in range(6):
        recomputed = logp[i][batch["loss_mask"][i] > 0]
        np.testing.assert_allclose(roll.logprobs[i], recomputed, rtol=1e-4, atol=1e-5)


def test_generate_logprobs_of_greedy_decoding_are_at_temperature_one():
    model = init_model(DecoderConfig(**ARCH), seed=1)
    out = generate(model, [[1, 40, 41]], 4, return_logprobs=True, stop_tokens=())
    logits = np.asarray(model(np.asarray([[1, 40, 41] + out.tokens[0, :3].tolist()])))[0, 2:]   # [4, V]
    logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    expected = logits[np.arange(4), out.tokens[0]] - logz
    np.testing.assert_allclose(out.logprobs[0], expected, rtol=1e-4, atol=1e-5)
    assert generate(model, [[1, 40]], 2).logprobs is None


def test_repetition_penalty_matches_transformers():
    torch = pytest.importorskip("torch")
    from transformers import RepetitionPenaltyLogitsProcessor

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 12)).astype(np.float32)
    generated = np.asarray([[3, 5, 3, 0], [7, 1, 0, 0]], np.int32)
    step = 3                                      # positions 0..2 are filled; position 3 is not yet
    ours = np.asarray(apply_repetition_penalty(logits, generated, np.int32(step), penalty=1.3))
    ref = RepetitionPenaltyLogitsProcessor(1.3)(torch.tensor(generated[:, :step], dtype=torch.long),
                                                torch.tensor(logits)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_rollout_concat_and_select_keep_groups_apart():
    def roll(groups):
        k = len(groups)
        return Rollout([[1]] * k, [[2]] * k, np.ones(k, bool), [np.zeros(1)] * k, ["x"] * k,
                       np.asarray(groups), 1.0, 2)
    joined = Rollout.concat([roll([0, 0, 1, 1]).select([2, 3]), roll([0, 0])])
    assert joined.group_ids.tolist() == [0, 0, 1, 1]
    assert joined.seconds == 2.0 and joined.num_tokens == 4


def test_sampling_splits_rows_by_the_jobs_mesh_and_rules(monkeypatch):
    """A job's mesh and rules reach the decode loop (not generate's fallback: the weights' mesh under the default
    rules), and sharded sampling draws the same tokens as one device; a one-device mesh has nothing to split."""
    import importlib
    G = importlib.import_module("jaxsuite.generate")      # the module (the package exports a function of that name)
    seen, real = [], G._generate_jit

    def spy(*args, **kwargs):
        seen.append(kwargs["sharding"])
        return real(*args, **kwargs)

    monkeypatch.setattr(G, "_generate_jit", spy)
    model = init_model(DecoderConfig(**ARCH), seed=2)
    tok = ByteTokenizer()
    rules = tuple((name, "data" if name == "act_batch" else None) for name, _ in shd.DEFAULT_RULES)  # a job's own
    mesh = shd.make_mesh({"data": 4, "tensor": 2}, devices=jax.devices()[:8])
    kwargs = dict(n=4, max_new_tokens=6, temperature=1.0, seed=5)
    alone = sample_responses(model, tok, ["ab", "cd"], **kwargs)
    split = sample_responses(model, tok, ["ab", "cd"], mesh=mesh, rules=rules, **kwargs)
    one = sample_responses(model, tok, ["ab", "cd"], mesh=shd.make_mesh({"data": 1}, jax.devices()[:1]),
                           rules=rules, **kwargs)
    assert seen == [None, (mesh, rules), None]
    assert split.response_ids == alone.response_ids == one.response_ids
    from jaxsuite.rl.rollout import greedy_answers
    greedy_answers(model, tok, ["ab"], max_new_tokens=3, batch_size=8, mesh=mesh)        # validation decoding
    assert seen[3] == (mesh, shd.DEFAULT_RULES)
    as_lists = [[name, axis] for name, axis in rules]                    # as a config file may spell them
    assert sample_responses(model, tok, ["ab", "cd"], mesh=mesh, rules=as_lists, **kwargs).response_ids == \
        alone.response_ids and seen[4] == (mesh, rules)
    with pytest.raises(ValueError, match="rules without a mesh"):
        generate(model, [[1, 40]], 2, rules=rules)
    with pytest.raises(ValueError, match="unknown mesh axis"):
        generate(model, [[1, 40]], 2, mesh=mesh, rules=[("act_batch", "dta")])
