"""jaxsuite.generate against transformers' own greedy `generate`, plus padding, stop rules, sampling and hooks."""
from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
import pytest

import jaxsuite
from jaxsuite.generate import _generate_jit, left_pad, sample_logits

torch = pytest.importorskip("torch")

PROMPTS = [[5, 17, 42, 7, 99, 3, 250], [11, 64, 2]]   # different lengths: exercises padding


@pytest.fixture(scope="module")
def pair(hf_checkpoints):
    folder, tmodel = hf_checkpoints("qwen3_tied")
    return tmodel, jaxsuite.load_pretrained(folder)


def hf_greedy(tmodel, prompts, new):
    """transformers' greedy generate on a left-padded batch (the padding side HF recommends for decoders)."""
    width = max(map(len, prompts))
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    with torch.no_grad():
        out = tmodel.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                              eos_token_id=None, pad_token_id=0)
    return out[:, width:].numpy()


def test_greedy_matches_transformers_token_for_token(pair):
    tmodel, jmodel = pair
    expected = hf_greedy(tmodel, PROMPTS, 12)
    out = jaxsuite.generate(jmodel, PROMPTS, 12, stop_tokens=())
    np.testing.assert_array_equal(out.tokens, expected)
    assert out.lengths.tolist() == [12, 12] and not out.finished.any()


def test_right_padding_equals_left_padding(pair):
    _, jmodel = pair
    width = max(map(len, PROMPTS))
    right = np.zeros((2, width), np.int32)
    mask = np.zeros((2, width), np.int32)
    for i, p in enumerate(PROMPTS):
        right[i, :len(p)] = p
        mask[i, :len(p)] = 1
    a = jaxsuite.generate(jmodel, right, 6, attention_mask=mask, stop_tokens=())
    b = jaxsuite.generate(jmodel, PROMPTS, 6, stop_tokens=())
    np.testing.assert_array_equal(a.tokens, b.tokens)


def test_single_prompt_equals_its_row_in_a_batch(pair):
    _, jmodel = pair
    batch = jaxsuite.generate(jmodel, PROMPTS, 6, stop_tokens=())
    alone = jaxsuite.generate(jmodel, [PROMPTS[1]], 6, stop_tokens=())
    np.testing.assert_array_equal(alone.tokens[0], batch.tokens[1])


def test_stop_token_ends_a_row_and_pads_the_rest(pair):
    _, jmodel = pair
    free = jaxsuite.generate(jmodel, PROMPTS, 8, stop_tokens=()).tokens
    stop = int(free[0, 2])
    first = int(np.argmax(free[0] == stop))           # the stop may already occur before index 2
    out = jaxsuite.generate(jmodel, PROMPTS, 8, stop_tokens=[stop], pad_token_id=0)
    assert out.finished[0] and out.lengths[0] == first + 1
    np.testing.assert_array_equal(out.tokens[0, :first + 1], free[0, :first + 1])
    assert (out.tokens[0, first + 1:] == 0).all()
    assert out.sequences()[0] == free[0, :first + 1].tolist()


def test_sampling_is_seeded_and_top_k_1_is_greedy(pair):
    _, jmodel = pair
    greedy = jaxsuite.generate(jmodel, PROMPTS, 6, stop_tokens=()).tokens
    a = jaxsuite.generate(jmodel, PROMPTS, 6, temperature=1.5, seed=1, stop_tokens=()).tokens
    b = jaxsuite.generate(jmodel, PROMPTS, 6, temperature=1.5, seed=1, stop_tokens=()).tokens
    c = jaxsuite.generate(jmodel, PROMPTS, 6, temperature=1.5, seed=2, stop_tokens=()).tokens
    np.testing.assert_array_equal(a, b)
    assert (a != c).any(), "different seeds gave identical samples at temperature 1.5"
    k1 = jaxsuite.generate(jmodel, PROMPTS, 6, temperature=1.0, top_k=1, seed=3, stop_tokens=()).tokens
    np.testing.assert_array_equal(k1, greedy)


def test_sample_logits_filters_by_hand():
    import jax
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]], jnp.float32))
    key = jax.random.key(0)
    # top_p=0.7: the nucleus is {0, 1} (0.5 < 0.7 <= 0.8); never token 2 or 3
    draws = [int(sample_logits(logits, jax.random.fold_in(key, i), greedy=False, temperature=jnp.float32(1.0),
                               top_k=0, top_p=jnp.float32(0.7))[0]) for i in range(40)]
    assert set(draws) <= {0, 1} and {0, 1} <= set(draws)
    # top_k=3 never draws the 4th token; tiny top_p is greedy
    draws = [int(sample_logits(logits, jax.random.fold_in(key, i), greedy=False, temperature=jnp.float32(1.0),
                               top_k=3, top_p=jnp.float32(1.0))[0]) for i in range(40)]
    assert 3 not in draws
    assert int(sample_logits(logits, key, greedy=False, temperature=jnp.float32(1.0), top_k=0,
                             top_p=jnp.float32(1e-4))[0]) == 0


def _ban(logits, generated, step, *, token):
    return logits.at[:, token].set(-jnp.inf)


def test_logits_processor_hook(pair):
    _, jmodel = pair
    free = jaxsuite.generate(jmodel, PROMPTS, 6, stop_tokens=()).tokens
    banned = int(free[0, 0])
    out = jaxsuite.generate(jmodel, PROMPTS, 6, stop_tokens=(),
                            logits_processor=functools.partial(_ban, token=banned)).tokens
    assert banned not in out


def test_prompt_lengths_share_a_compilation(pair):
    _, jmodel = pair
    jaxsuite.generate(jmodel, [[1, 2, 3]], 4, stop_tokens=())
    before = _generate_jit._cache_size()
    for n in (4, 9, 13, 16):                     # all in the 16-token bucket
        jaxsuite.generate(jmodel, [list(range(1, n + 1))], 4, stop_tokens=())
    assert _generate_jit._cache_size() == before


def test_continuing_a_prefilled_cache_equals_one_call_over_the_whole_prompt(pair):
    _, jmodel = pair
    heads, tails = [p[:4] for p in PROMPTS], [p[4:] or p[-1:] for p in PROMPTS]
    whole = [h + t for h, t in zip(heads, tails)]        # row 1 ends with its last token twice
    one_call = jaxsuite.generate(jmodel, whole, 12, stop_tokens=())
    # an empty cache continued from index 0 is a fresh start; its one sampled token is not written to the cache
    first = jaxsuite.generate(jmodel, heads, 1, stop_tokens=(), cache=jmodel.init_cache(2, 64))
    assert int(first.cache.index) == 4 and np.asarray(first.cache.valid).sum(1).tolist() == [4, 3]
    # the tails (3 and 1 tokens: left-padded in the middle of the cache) continue at positions 4 and 3
    second = jaxsuite.generate(jmodel, tails, 8, stop_tokens=(), cache=first.cache)
    np.testing.assert_array_equal(second.tokens, one_call.tokens[:, :8])
    assert int(second.cache.index) == 4 + 3 + 7                      # the 8th new token is not fed yet
    # feeding the last token continues the generation itself
    third = jaxsuite.generate(jmodel, second.tokens[:, -1:], 4, stop_tokens=(), cache=second.cache)
    np.testing.assert_array_equal(third.tokens, one_call.tokens[:, 8:])


def test_a_row_that_stops_first_resumes_from_the_cache_as_if_alone(pair):
    """Row 0 stops early while row 1 runs on: row 0's cache holds its prompt and new tokens but the stop (its
    stop token and the pads after it are not written), so resuming it (its stop token, then a new message)
    samples what one call over its whole text samples."""
    _, jmodel = pair
    prompts = [[5, 17, 42, 7], [11, 64, 2]]
    free = jaxsuite.generate(jmodel, prompts, 8, stop_tokens=())
    row0, row1 = free.tokens.tolist()
    k = next(k for k in range(1, 7) if row0[k] not in row0[:k] + row1)      # row 0 stops at its (k+1)-th token
    out = jaxsuite.generate(jmodel, prompts, 8, stop_tokens=(row0[k],), cache=jmodel.init_cache(2, 64))
    assert out.lengths.tolist() == [k + 1, 8] and out.finished.tolist() == [True, False]
    assert np.asarray(out.cache.valid).sum(1).tolist() == [4 + k, 3 + 7]
    follow = [[row0[k], 31, 8], [row1[-1], 31, 8]]
    resumed = jaxsuite.generate(jmodel, follow, 5, stop_tokens=(), cache=out.cache)
    for row in range(2):
        whole = prompts[row] + out.sequences()[row] + follow[row][1:]
        alone = jaxsuite.generate(jmodel, [whole], 5, stop_tokens=())
        np.testing.assert_array_equal(resumed.tokens[row], alone.tokens[0])


def test_explicit_positions_and_cache_errors(pair):
    _, jmodel = pair
    expected = jaxsuite.generate(jmodel, [p + [9] for p in PROMPTS], 3, stop_tokens=(), return_logprobs=True)
    got, moved = (jaxsuite.generate(jmodel, [[9], [9]], 3, stop_tokens=(), positions=pos, return_logprobs=True,
                                    cache=jaxsuite.generate(jmodel, PROMPTS, 1, cache=jmodel.init_cache(2, 32)).cache)
                  for pos in ([7, 3], [20, 20]))        # the default positions, given explicitly; then wrong ones
    np.testing.assert_array_equal(got.tokens, expected.tokens)
    np.testing.assert_allclose(got.logprobs, expected.logprobs, rtol=1e-5, atol=1e-5)
    assert np.abs(moved.logprobs - expected.logprobs).max() > 1e-3, "positions were ignored"
    with pytest.raises(ValueError, match="free slots"):
        jaxsuite.generate(jmodel, PROMPTS, 27, cache=jmodel.init_cache(2, 32))   # 7 + 27 - 1 > 32 slots
    with pytest.raises(ValueError, match="rows"):
        jaxsuite.generate(jmodel, PROMPTS, 2, cache=jmodel.init_cache(3, 32))
    with pytest.raises(ValueError, match="pass cache"):
        jaxsuite.generate(jmodel, PROMPTS, 2, positions=[0, 0])
    with pytest.raises(TypeError, match="hashable"):
        jaxsuite.generate(jmodel, PROMPTS, 2, logits_processor=_Unhashable())


class _Unhashable:
    __hash__ = None

    def __call__(self, logits, generated, step):
        return logits


def test_left_pad_and_input_errors(pair):
    _, jmodel = pair
    ids, mask = left_pad([[1, 2], [3]], None, pad_token_id=0, bucket=False)
    np.testing.assert_array_equal(ids, [[1, 2], [0, 3]])
    np.testing.assert_array_equal(mask, [[1, 1], [0, 1]])
    with pytest.raises(ValueError, match="top_p"):
        jaxsuite.generate(jmodel, PROMPTS, 2, top_p=0.0)
    with pytest.raises(ValueError, match="at least one token"):
        jaxsuite.generate(jmodel, [[1], []], 2)
    with pytest.raises(ValueError, match="outside"):
        jaxsuite.generate(jmodel, [[1, 100000]], 2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        jaxsuite.generate(jmodel, PROMPTS, 0)


def test_sharded_generation_splits_rows_over_the_mesh_and_equals_one_device(pair):
    """A model whose parameters live on an 8-device mesh generates with its rows (and so its KV cache) split
    over the mesh's batch axes, and the tokens equal the one-device run; the first prefill attends over the
    prompt only (`fresh`), and its logits equal attention over the whole cache."""
    import jax
    from flax import nnx
    from jaxsuite.core import sharding as shd
    from jaxsuite.generate import _mesh_of
    _, model = pair
    prompts = [[5, 9, 17, 3], [4, 4], [11, 12, 13], [7], [8, 1, 2], [6, 6, 6, 6], [3, 2], [9]]
    want = jaxsuite.generate(model, prompts, 6).tokens
    mesh = shd.make_mesh({"data": -1}, jax.devices()[:8])
    graphdef, state = nnx.split(model)
    placed = jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    assert _mesh_of(placed)[0] is mesh
    got = jaxsuite.generate(model, prompts, 6, split=(graphdef, placed))
    np.testing.assert_array_equal(got.tokens, want)
    from jaxsuite.generate import generate_program
    program = generate_program(model, 8, 4, 6, mesh=mesh)
    compiled = program.fn.lower(*program.args, **program.kwargs).compile()
    tokens_sharding = jax.tree.leaves(compiled.output_shardings)[0]
    assert tokens_sharding.spec[0] in ("data", ("data",), ("data", "fsdp")), tokens_sharding    # rows split
    ids = jnp.asarray([[5, 9, 17, 3]], jnp.int32)
    pos = jnp.arange(4)[None]
    fresh, _ = model.decode(ids, pos, model.init_cache(1, 16), fresh=True)
    full, _ = model.decode(ids, pos, model.init_cache(1, 16))
    np.testing.assert_allclose(np.asarray(fresh), np.asarray(full), atol=1e-5, rtol=0)
