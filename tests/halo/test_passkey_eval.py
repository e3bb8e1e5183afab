"""Passkey task and long-context evaluation helpers, checked against oracles, numpy and hand formulas."""
import contextlib
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsuite.core.tokenizer import load_tokenizer
from jaxsuite.generate import generate
from jaxsuite.halo import evaluation as ev
from jaxsuite.core.corpus import PASSKEY_QUESTION as QUESTION, passkey_document as training_text
from jaxsuite.halo.passkey import make_eval_batch, passkey_accuracy, passkey_by_length
from jaxsuite.halo.transfer import hypenet_config_from_teacher
from jaxsuite.models import CausalLM, DecoderConfig

TOK = load_tokenizer("byte")
CFG = DecoderConfig(vocab_size=260, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=8)
HCFG = hypenet_config_from_teacher(CFG, [1])          # layer 0 Lightning, layer 1 attention


@pytest.fixture(scope="module")
def decoder():
    return CausalLM(CFG, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def hypenet():
    return CausalLM(HCFG, rngs=nnx.Rngs(1))


def np_log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


# --- the task ---------------------------------------------------------------------------------------------------
def test_training_text_is_deterministic_and_holds_key_twice_and_the_answered_question():
    a = training_text(3, 7)
    assert a == training_text(3, 7) and a != training_text(3, 8) and a != training_text(4, 7)
    key = re.search(r"The pass key is (\d+)\. Remember it\.", a).group(1)
    assert len(key) == 5
    assert f"{key} is the pass key." in a
    assert a.endswith(f"What is the pass key? The pass key is {key}.")
    assert a.count(key) == 3                                     # twice in the needle, once as the answer
    assert len(re.search(r"is (\d+)\.", training_text(0, 0, digits=8)).group(1)) == 8
    assert training_text(0, 1, max_filler_sentences=0).startswith("The pass key is")


def test_eval_batch_has_exact_length_and_the_key_at_the_end():
    b = make_eval_batch(TOK, 200, 4, seed=1)
    assert b.inputs.shape == (4, 200) and b.inputs.dtype == np.int32
    np.testing.assert_array_equal(b.answer_start + b.answer_len, 200)
    for row, s, key in zip(b.inputs, b.answer_start, b.keys):
        assert TOK.decode(row[s:]) == " " + key                   # the answer is exactly " " + key
        tail = TOK.encode(" " + QUESTION + " " + key)            # the question as training_text writes it
        np.testing.assert_array_equal(row[-len(tail):], tail)
        text = TOK.decode(row)
        assert f" The pass key is {key}. Remember it. {key} is the pass key." in text
    assert (np.diff(b.depths) > 0).all() and 0 <= b.depths[0] < 0.25 and b.depths[-1] < 1
    assert b.keys == make_eval_batch(TOK, 300, 4, seed=1).keys  # same keys at every length
    with pytest.raises(ValueError, match="too short"):
        make_eval_batch(TOK, 60, 1)


def test_eval_batch_with_the_stdlib_sentencepiece_tokenizer():
    sp = load_tokenizer("stdlib")
    b = make_eval_batch(sp, 128, 2, seed=2)
    assert b.inputs.shape == (2, 128)
    for row, s, key in zip(b.inputs, b.answer_start, b.keys):
        assert sp.decode(row[s:]).strip() == key


class Oracle:
    """Logits one-hot on the true next token of whatever ids it is given."""

    def __call__(self, ids):
        ids = np.asarray(ids)
        out = np.zeros(ids.shape + (TOK.vocab_size,), np.float32)
        b, t = np.indices((ids.shape[0], ids.shape[1] - 1))
        out[b, t, ids[:, 1:]] = 1.0
        return jnp.asarray(out)


class Zero:
    def __call__(self, ids):
        return jnp.zeros(ids.shape + (TOK.vocab_size,)).at[..., 0].set(1.0)


def test_accuracy_is_one_for_an_oracle_and_zero_for_a_constant_model():
    b = make_eval_batch(TOK, 120, 5)
    assert passkey_accuracy(Oracle(), b, batch_size=2) == 1.0
    assert passkey_accuracy(Zero(), b, batch_size=2) == 0.0
    assert passkey_by_length(Oracle(), TOK, [110, 150], 3) == {110: 1.0, 150: 1.0}


def test_accuracy_on_a_real_model_matches_a_numpy_loop(decoder):
    b = make_eval_batch(TOK, 112, 4, seed=5)
    ids = b.inputs.copy()
    for r in (0, 2):      # make rows 0 and 2 the model's own greedy answers, so the expected score is 0.5
        for p in range(b.answer_start[r], 112):
            ids[r, p] = int(np.argmax(np.asarray(decoder(jnp.asarray(ids[r:r + 1])))[0, p - 1]))
    b.inputs = ids
    hand = []
    for r in range(4):
        logits = np.asarray(decoder(jnp.asarray(ids[r:r + 1])))[0]         # [L, V]
        s, a = b.answer_start[r], b.answer_len[r]
        hand.append(all(np.argmax(logits[p - 1]) == ids[r, p] for p in range(s, s + a)))
    assert np.mean(hand) == 0.5
    assert passkey_accuracy(decoder, b, batch_size=3) == np.mean(hand)


# --- perplexity, windows ----------------------------------------------------------------------------------------
def test_perplexity_by_position_matches_numpy(decoder, monkeypatch):
    rows = np.random.default_rng(0).integers(3, 259, (3, 40)).astype(np.int32)
    monkeypatch.setattr(ev, "_LOGIT_CHUNK", 16)     # 39 predictions -> 3 chunks, the last one padded
    got = ev.perplexity_by_position(decoder, rows, num_buckets=3, batch_size=2)
    logp = np_log_softmax(decoder(jnp.asarray(rows)))[:, :-1]                  # [3, 39, V]
    nll = -np.take_along_axis(logp, rows[:, 1:, None], -1)[..., 0]             # [3, 39]
    assert [(g["start"], g["end"]) for g in got] == [(0, 13), (13, 26), (26, 39)]
    for g in got:
        want = nll[:, g["start"]:g["end"]].mean()
        assert g["nll"] == pytest.approx(want, rel=1e-5) and g["ppl"] == pytest.approx(math.exp(want), rel=1e-5)
    with pytest.raises(ValueError, match="num_buckets"):
        ev.perplexity_by_position(decoder, rows, num_buckets=40)


class Docs:
    def __init__(self, docs):
        self.docs = docs

    def __len__(self):
        return len(self.docs)

    def __getitem__(self, i):
        return self.docs[i]


def test_eval_windows_cut_consecutive_rows_with_eos_between_documents():
    docs = Docs(["abcdef", "gh", "ijklmnopq"])
    rows = ev.eval_windows(TOK, docs, length=5, num_rows=3)
    stream = TOK.encode("abcdef") + [TOK.eos_id] + TOK.encode("gh") + [TOK.eos_id] + TOK.encode("ijklmnopq")
    np.testing.assert_array_equal(rows, np.asarray(stream[:15]).reshape(3, 5))
    with pytest.raises(ValueError, match="only 20 tokens"):
        ev.eval_windows(TOK, docs, length=7, num_rows=3)


# --- decode cost ------------------------------------------------------------------------------------------------
def test_cache_bytes_by_hand(decoder, hypenet):
    b, s = 3, 50
    kv = CFG.num_hidden_layers * 2 * b * s * CFG.num_key_value_heads * CFG.head_dim * 4    # f32 k and v
    assert ev.cache_bytes(decoder, b, s) == kv + b * s + 4                                  # + valid + index
    # HypeNet: one attention layer grows with S, the Lightning state [B, H, K, V] f32 does not
    lightning = b * HCFG.lightning_nh * HCFG.lightning_head_dim ** 2 * 4
    for s in (50, 500):
        attn = 2 * b * s * HCFG.num_key_value_heads * HCFG.head_dim * 4
        assert ev.cache_bytes(hypenet, b, s) == attn + lightning + b * s + 4
    shapes = [jax.eval_shape(lambda s=s: hypenet.init_cache(b, s)).layers for s in (50, 500)]
    assert shapes[0][0]["state"].shape == shapes[1][0]["state"].shape == (b, 4, 8, 8)
    assert math.prod(shapes[1][1]["k"].shape) == 10 * math.prod(shapes[0][1]["k"].shape)   # any layout


@pytest.mark.parametrize("which", ["decoder", "hypenet"])
def test_generate_from_a_synthetic_cache_equals_a_hand_decode_loop(which, request):
    """The decode benchmark's path: generate continues a synthetic cache at index = context length."""
    model = request.getfixturevalue(which)
    cache = ev.synthetic_cache(model, 2, 12, 3, seed=4)
    assert int(cache.index) == 12 and np.asarray(cache.valid).sum() == 2 * 12
    tok = jnp.asarray([[5], [77]], jnp.int32)
    ref_cache, t, tokens, logps = cache, tok, [], []
    for _ in range(3):                                     # the hand loop: three greedy steps of model.decode
        pos = jnp.full((2, 1), ref_cache.index, jnp.int32)
        logits, ref_cache = model.decode(t, pos, ref_cache)
        t = jnp.argmax(logits[:, -1], -1).astype(jnp.int32)[:, None]
        tokens.append(np.asarray(t[:, 0]))
        logps.append(np_log_softmax(logits[:, -1])[np.arange(2), tokens[-1]])
    fresh = ev.synthetic_cache(model, 2, 12, 3, seed=4)    # generate donates the cache it continues
    out = generate(model, np.asarray(tok), 3, cache=fresh, stop_tokens=(), return_logprobs=True,
                   split=nnx.split(model))                 # as decode_ms_per_token calls it
    np.testing.assert_array_equal(out.tokens, np.stack(tokens, 1))
    np.testing.assert_allclose(out.logprobs, np.stack(logps, 1), rtol=1e-5, atol=1e-5)
    assert int(out.cache.index) == 12 + 3                  # the prompt token and two new ones: the third
                                                           # is sampled, not fed


@pytest.mark.parametrize("which", ["decoder", "hypenet"])
def test_generate_continuing_a_prefilled_cache_equals_one_call(which, request):
    """Prompt heads prefilled, then the tails (left-padded in the middle of the cache) and the answer: the
    tokens of one generate call over the whole prompts, for attention caches and Lightning states alike."""
    model = request.getfixturevalue(which)
    prompts = [[3, 40, 41, 42, 43, 44, 45], [3, 50, 51, 52]]
    heads, tails = [p[:3] for p in prompts], [p[3:] for p in prompts]
    one_call = generate(model, prompts, 6, stop_tokens=())
    first = generate(model, heads, 1, stop_tokens=(), cache=model.init_cache(2, 40))
    second = generate(model, tails, 6, stop_tokens=(), cache=first.cache)
    np.testing.assert_array_equal(second.tokens, one_call.tokens)


def test_decode_ms_per_token_is_positive_and_finite(hypenet):
    ms = ev.decode_ms_per_token(hypenet, [8, 32], steps=2, repeats=1)
    assert set(ms) == {8, 32} and all(0 < v < float("inf") for v in ms.values())


# --- next-token accuracy ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def count_compiles():
    """Counts XLA compilations (JAX's backend-compile events) inside the block."""
    count = [0]

    def listener(event, duration_secs, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            count[0] += 1
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_next_token_accuracy_matches_numpy_and_compiles_once_per_structure(decoder):
    ids = np.random.default_rng(3).integers(3, 259, (5, 24)).astype(np.int32)
    for p in (3, 9, 15):                  # some targets are the model's own argmax, so the score is not 0
        ids[:, p + 1] = np.asarray(decoder(jnp.asarray(ids))).argmax(-1)[:, p]
    pred = np.asarray(decoder(jnp.asarray(ids))).argmax(-1)[:, :-1]
    want = float((pred == ids[:, 1:]).mean())
    assert 3 / 23 <= want < 1
    assert ev.next_token_accuracy(decoder, ids, batch_size=2) == pytest.approx(want)
    # another model of the same structure (the layer sweep scores many) reuses the compiled programs
    twin = CausalLM(CFG, rngs=nnx.Rngs(7))
    with count_compiles() as compiles:
        other = ev.next_token_accuracy(twin, ids, batch_size=2)
    assert compiles[0] == 0
    pred = np.asarray(twin(jnp.asarray(ids))).argmax(-1)[:, :-1]
    assert other == pytest.approx(float((pred == ids[:, 1:]).mean()))


# --- reporting --------------------------------------------------------------------------------------------------
def test_retrieval_verdict_by_hand(tmp_path, check_png):
    zero = ev.retrieval_verdict({"teacher": {64: 0.0, 128: 0.0}, "student": {64: 0.0, 128: 0.0}}, "teacher")
    assert not zero["testable"] and zero["lengths"] == [] and "untestable" in zero["note"]
    some = ev.retrieval_verdict({"teacher": {64: 0.5, 128: 0.25, 256: 0.0}, "student": {64: 0.25, 128: 0.25,
                                                                                      256: 0.5}}, "teacher")
    assert some["testable"] and some["lengths"] == [64, 128]          # 256: the teacher fails, nothing to keep
    assert some["retained"] == {"student": {"64": 0.5, "128": 1.0}} and some["retained_mean"] == {"student": 0.75}
    # untestable: the sentence instead of lines of zeros (6 x 4 inches at 120 dpi)
    ev.plot_passkey({"teacher": {64: 0.0}, "student": {64: 0.0}}, str(tmp_path / "u.png"), untestable=zero["note"])
    check_png(tmp_path / "u.png", size=(720, 480), coloured=False)


def test_plots_and_table(tmp_path):
    assert ev.plot_passkey({"a": {1024: 1.0, 2048: 0.5}, "b": {1024: 1.0}}, str(tmp_path / "p.png"),
                           train_length=1024).endswith("p.png")
    buckets = [{"start": 0, "end": 4, "nll": 1.0, "ppl": math.e}, {"start": 4, "end": 8, "nll": 0.5, "ppl": 1.6}]
    ev.plot_ppl_by_position({"a": buckets}, str(tmp_path / "q.png"))
    ev.plot_decode({"a": {1024: 2.0, 4096: 5.0}}, {"a": {1024: 2 ** 20, 4096: 2 ** 22}}, str(tmp_path / "d.png"))
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("p.png", "q.png", "d.png"))
    table = ev.results_table({"teacher": {"ppl": 3.14159, "ms": 2.0}, "student": {"ms": 1.5, "note": "x"}})
    assert table.splitlines() == ["| | ppl | ms | note |", "|---|---|---|---|",
                                  "| teacher | 3.142 | 2 |  |", "| student |  | 1.5 | x |"]
