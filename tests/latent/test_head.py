"""The latent loop against a naive reference: one row at a time, a full forward per step, plain Python.

The LM head's `<end_latent>` column is made large along a random direction, so whether a step stops depends
on the hidden state: rows stop at different steps, which is what per-row stopping must handle.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsuite.generate import generate
from jaxsuite.latent.head import LatentReasoner, LatentTokens, latent_forward, latent_hook
from jaxsuite.models.config import DecoderConfig
from jaxsuite.models.factory import init_model

TOK = LatentTokens.after(259)
ARCH = dict(vocab_size=266, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, head_dim=16, max_position_embeddings=128, tie_word_embeddings=False,
            model_type="qwen3", bos_token_id=1, eos_token_id=2, pad_token_id=0)
MAX_STEPS = 4


PROMPTS = [[1, 70, 71, 72, TOK.start_latent], [1, 80, TOK.start_latent], [1, 90, 91, 92, 93, 94, 95, TOK.start_latent],
           [1, 100, 101, TOK.start_latent]]


def _reasoner(seed=0, **kw):
    """A random reasoner whose <end_latent> column makes PROMPTS stop after different numbers of steps (the
    column's direction is searched for: a random model's hidden states are alike across these prompts)."""
    backbone = init_model(DecoderConfig(**ARCH), seed=seed)
    model = LatentReasoner(backbone, TOK, rngs=nnx.Rngs(seed + 1), **kw)
    kernel = np.array(backbone.lm_head.kernel[...])
    known = {0: 18, 3: 1, 5: 18, 7: 3}          # where the search below succeeds for these seeds (saves time)
    for attempt in [known.get(seed, 0), *range(200)]:
        kernel[:, TOK.end_latent] = 0.5 * np.random.default_rng(1000 * seed + attempt).normal(size=kernel.shape[0])
        backbone.lm_head.kernel[...] = jnp.asarray(kernel)
        steps = [_naive(model, p, 0)[0] for p in PROMPTS]
        if len(set(steps)) > 2:
            return model
    raise AssertionError("no <end_latent> direction gave varied stopping steps")


def _naive(model, prompt, answer_len, max_steps=MAX_STEPS):
    """(latent steps, latents, greedy answer tokens) for one prompt, by full forwards."""
    embeds = model.backbone.embed(jnp.asarray([prompt]))                         # [1, P, D]
    latents = []
    for _ in range(max_steps):
        h = model.hidden_states(inputs_embeds=embeds)[:, -1]
        if int(jnp.argmax(model.logits(h[:, None])[0, 0])) == TOK.end_latent:
            break
        z = model.projector(h)
        latents.append(z[0])
        embeds = jnp.concatenate([embeds, z[:, None]], axis=1)
    tokens = []
    nxt = TOK.end_latent
    for _ in range(answer_len):
        embeds = jnp.concatenate([embeds, model.backbone.embed(jnp.asarray([[nxt]]))], axis=1)
        nxt = int(jnp.argmax(model.logits(model.hidden_states(inputs_embeds=embeds)[:, -1:])[0, 0]))
        tokens.append(nxt)
    return len(latents), latents, tokens


def test_generate_with_the_latent_hook_matches_the_naive_loop():
    model = _reasoner()
    expected = [_naive(model, p, 5) for p in PROMPTS]
    for recompute in (False, True):          # over the KV cache, and by recomputing the whole sequence
        out = generate(model, PROMPTS, 5, stop_tokens=(), prefill_hook=latent_hook(MAX_STEPS, recompute),
                       extra_cache_slots=MAX_STEPS + 1)
        steps = out.extras["latent_steps"]
        assert steps.tolist() == [e[0] for e in expected], recompute
        assert len(set(steps.tolist())) > 1, "the rows should stop at different steps for this test to mean much"
        for row, (_, _, tokens) in zip(out.tokens, expected):
            assert row.tolist() == tokens, recompute


def test_training_forward_fills_latents_like_inference():
    model = _reasoner(seed=3)
    rows, slots, answers = [], [], []
    for p in PROMPTS:
        n, latents, tokens = _naive(model, p, 3)
        rows.append(p + [TOK.latent] * n + [TOK.end_latent] + tokens)
        slots.append([len(p) + j for j in range(n)])
        answers.append((latents, tokens, len(p) + n))
    width, k = max(len(r) for r in rows), max(len(s) for s in slots)
    ids = np.zeros((len(rows), width), np.int32)
    seg = np.zeros_like(ids)
    latent_slots = -np.ones((len(rows), max(k, 1)), np.int32)
    for i, (r, s) in enumerate(zip(rows, slots)):
        ids[i, :len(r)], seg[i, :len(r)] = r, 1
        latent_slots[i, :len(s)] = s
    positions = np.tile(np.arange(width, dtype=np.int32), (len(rows), 1))
    logits, latents = latent_forward(model, jnp.asarray(ids), jnp.asarray(positions), jnp.asarray(latent_slots),
                                     segment_ids=jnp.asarray(seg))
    for i, (naive_latents, tokens, end_pos) in enumerate(answers):
        for j, z in enumerate(naive_latents):
            np.testing.assert_allclose(latents[i, j], z, rtol=2e-4, atol=2e-5)
        # the answer tokens are the argmax at <end_latent> and after it
        assert np.argmax(np.asarray(logits[i, end_pos:end_pos + 3]), -1).tolist() == tokens


def test_updater_and_adapter_training_and_inference_agree():
    model = _reasoner(seed=5, mol_feature_dim=12, num_queries=3, use_updater=True)
    rng = np.random.default_rng(0)
    prompt = [1, TOK.mol_start, TOK.mol_pad, TOK.mol_pad, TOK.mol_pad, TOK.mol_end, 60, TOK.start_latent]
    feats = jnp.asarray(rng.normal(size=(1, 6, 12)), jnp.float32)
    fmask = jnp.asarray([[True] * 5 + [False]])
    inputs = {"mol_features": feats, "mol_mask": fmask}
    out = generate(model, [prompt], 3, stop_tokens=(), prefill_hook=latent_hook(MAX_STEPS, True),
                   hook_inputs=inputs, extra_cache_slots=MAX_STEPS + 1)
    n = int(out.extras["latent_steps"][0])
    seq = prompt + [TOK.latent] * n + [TOK.end_latent] + out.tokens[0].tolist()
    slots = np.asarray([[len(prompt) + j for j in range(n)] or [-1]], np.int32)
    logits, _ = latent_forward(model, jnp.asarray([seq]), jnp.arange(len(seq))[None], jnp.asarray(slots),
                               mol_features=feats, mol_mask=fmask)
    start = len(prompt) + n
    assert np.argmax(np.asarray(logits[0, start:start + 3]), -1).tolist() == out.tokens[0].tolist()
    # the molecule matters: other features change the answer's logits (other random features, not feats + 1:
    # the adapter normalises its input, so a constant shift changed the logits by float noise only)
    other_feats = jnp.asarray(rng.normal(size=(1, 6, 12)), jnp.float32)
    other, _ = latent_forward(model, jnp.asarray([seq]), jnp.arange(len(seq))[None], jnp.asarray(slots),
                              mol_features=other_feats, mol_mask=fmask)
    assert np.abs(np.asarray(other[0, start]) - np.asarray(logits[0, start])).max() > 1e-3


def test_corrupted_latents_change_the_answer_logits_and_bad_inputs_are_named():
    model = _reasoner(seed=7)
    ids = jnp.asarray([[1, 70, TOK.start_latent, TOK.latent, TOK.latent, TOK.end_latent, 80]])
    pos = jnp.arange(7)[None]
    slots = jnp.asarray([[3, 4]])
    clean, _ = latent_forward(model, ids, pos, slots)
    zeros, lat = latent_forward(model, ids, pos, slots, corrupt="zeros")
    noise, _ = latent_forward(model, ids, pos, slots, corrupt="noise", rng=jax.random.key(0))
    assert np.abs(np.asarray(lat)).max() == 0.0
    assert not np.allclose(clean[0, 5], zeros[0, 5]) and not np.allclose(clean[0, 5], noise[0, 5])
    np.testing.assert_allclose(clean[0, :3], zeros[0, :3], rtol=1e-5)      # before the latents: unchanged
    with pytest.raises(ValueError, match="unknown latent corruption"):
        latent_forward(model, ids, pos, slots, corrupt="shuffle")
    with pytest.raises(ValueError, match="inside the model's vocabulary"):
        LatentReasoner(init_model(DecoderConfig(**{**ARCH, "vocab_size": 260})), TOK, rngs=nnx.Rngs(0))


def test_training_forward_under_remat_has_the_same_loss_and_gradients():
    """latent_forward's slot loop runs the backbone inside a loop body; with per-layer remat (nnx.remat, what the
    pod configs train with) the loss and the gradients are those without it."""
    model = _reasoner(seed=3)
    seq = [1, 40, 41, TOK.start_latent, TOK.latent, TOK.latent, TOK.end_latent, 42, 43]
    ids, pos = jnp.asarray([seq, seq]), jnp.arange(len(seq))[None].repeat(2, 0)
    slots = jnp.asarray([[4, 5], [4, -1]], jnp.int32)

    def loss_and_grads(remat):
        model.backbone.remat = remat
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        @jax.jit
        def loss(p):
            logits, _ = latent_forward(nnx.merge(graphdef, p, rest), ids, pos, slots)
            return jnp.mean(jax.nn.log_softmax(logits)[..., 7])
        return jax.value_and_grad(loss)(params)
    ref_loss, ref_grads = loss_and_grads("none")
    got_loss, got_grads = loss_and_grads("full")
    model.backbone.remat = "none"
    np.testing.assert_allclose(float(got_loss), float(ref_loss), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(got_grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-7)
