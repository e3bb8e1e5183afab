"""Tests of the functional training core (jaxsuite.core.train) on a tiny CausalLM.

Sharded runs use 8 forced CPU devices (tests/conftest.py) as a (data=2, fsdp=2, tensor=2) mesh and are checked
against a one-device mesh, against gradient accumulation, and against independent references: numpy
cross-entropy on the model's eager logits, optax.adamw for the optimizer, and hand-computed schedule values.
Each distinct step is compiled once (the `runs` fixture caches them) to keep the file fast.
"""
import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxsuite.core import sharding as shd
from jaxsuite.core import train
from jaxsuite.models import DecoderConfig, CausalLM

CFG = DecoderConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64)
TRAIN = ml_collections.ConfigDict(dict(steps=20, lr=1e-2, warmup_steps=2, min_lr_ratio=0.1, weight_decay=0.1,
                                       b1=0.9, b2=0.95, grad_clip=1.0))
B, T = 8, 16
RULES = shd.DEFAULT_RULES


def make_batch(seed: int = 0) -> dict:
    """Packed rows: two segments of random lengths, then padding (segment 0), as core/data.py produces them."""
    rng = np.random.default_rng(seed)
    out = {k: np.zeros((B, T), np.int32) for k in ("inputs", "targets", "segment_ids", "positions")}
    out["loss_mask"] = np.zeros((B, T), np.float32)
    for r in range(B):
        start = 0
        for seg, length in enumerate((rng.integers(4, 9), rng.integers(3, 7)), start=1):
            tokens = rng.integers(1, CFG.vocab_size, length + 1)
            sl = slice(start, start + length)
            out["inputs"][r, sl], out["targets"][r, sl] = tokens[:-1], tokens[1:]
            out["segment_ids"][r, sl], out["positions"][r, sl] = seg, np.arange(length)
            out["loss_mask"][r, sl] = 1.0
            start += length
    return out


BATCH = make_batch()


def fresh_model() -> CausalLM:
    return CausalLM(CFG, rngs=nnx.Rngs(0))


def mesh8():
    return shd.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})


def mesh1():
    return shd.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])


def flat(tree) -> dict:
    """{path string: numpy array} for a params / opt-state pytree."""
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


@functools.cache
def run(mesh_name: str, steps: int, accum_steps: int = 1, compute_dtype: str = "float32") -> dict:
    """Trains a fresh model `steps` steps on BATCH; compiled once per argument set and shared by the tests."""
    mesh = {"8": mesh8, "1": mesh1}[mesh_name]()
    optimizer = train.make_optimizer(TRAIN)
    graphdef, state, shardings = train.create_train_state(fresh_model(), optimizer, mesh, RULES)
    out = {"init": flat(state.params), "shardings": shardings, "metrics": []}
    if mesh_name == "8" and accum_steps == 1:
        eval_step = train.make_eval_step(graphdef, mesh=mesh, rules=RULES, state_shardings=shardings)
        out["eval"] = jax.device_get(eval_step(state.params, BATCH))
    step = train.make_train_step(graphdef, optimizer, mesh=mesh, rules=RULES, state_shardings=shardings,
                                 accum_steps=accum_steps, compute_dtype=compute_dtype)
    for i in range(steps):
        state, metrics = step(state, BATCH)
        out["metrics"].append(jax.device_get(metrics))
        if i == 1:
            out["params@2"] = flat(state.params)
            out["mu@2"] = flat(state.opt_state[1].mu)   # Adam's first moment: linear in the gradients
    out["state"], out["step"] = state, step
    return out


def assert_trees_close(a: dict, b: dict, rtol: float, atol: float):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=atol, err_msg=k)


def assert_same_training(a: dict, b: dict):
    """Two runs took the same 2 steps. The gradients are compared through Adam's first moment (linear in them):
    to 1e-5 of each leaf's largest entry. The params get a looser absolute bound, because Adam divides by
    sqrt(v): a weight whose gradient is a near-cancellation (|g| ~ 1e-6 of the largest) turns float
    summation-order noise into a visible share of one update; 1e-4 is 2% of one step's update (lr / 2)."""
    assert a["mu@2"].keys() == b["mu@2"].keys()
    for k in a["mu@2"]:
        np.testing.assert_allclose(a["mu@2"][k], b["mu@2"][k], rtol=1e-5,
                                   atol=1e-5 * np.abs(b["mu@2"][k]).max(), err_msg=k)
    assert_trees_close(a["params@2"], b["params@2"], rtol=1e-5, atol=1e-4)


# --- (a) sharded == single device -----------------------------------------------------------------------------------
def test_sharded_run_matches_single_device():
    r8, r1 = run("8", 2), run("1", 20)
    for m8, m1 in zip(r8["metrics"], r1["metrics"][:2]):
        for key in ("loss", "grad_norm", "param_norm", "lr", "tokens"):
            np.testing.assert_allclose(m8[key], m1[key], rtol=1e-5, err_msg=key)
    assert_same_training(r8, r1)
    # The 2 steps really moved every parameter (lr(0) = 0 in warm-up, lr(1) = lr / 2).
    moved = [k for k in r8["init"] if not np.allclose(r8["init"][k], r8["params@2"][k], rtol=0, atol=1e-6)]
    assert len(moved) == len(r8["init"])


def test_loss_matches_numpy_on_eager_logits():
    """The step's first loss (and the eval step) equal a numpy cross-entropy of the model's own logits."""
    logits = np.asarray(fresh_model()(jnp.asarray(BATCH["inputs"]), positions=jnp.asarray(BATCH["positions"]),
                                      segment_ids=jnp.asarray(BATCH["segment_ids"])), np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, BATCH["targets"][..., None], -1)[..., 0]
    mask = BATCH["loss_mask"]
    expected = (nll * mask).sum() / mask.sum()
    r8 = run("8", 2)
    np.testing.assert_allclose(r8["metrics"][0]["loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(r8["metrics"][0]["tokens"], mask.sum())
    np.testing.assert_allclose(r8["eval"]["loss_sum"], (nll * mask).sum(), rtol=1e-5)
    np.testing.assert_allclose(r8["eval"]["tokens"], mask.sum())


# --- (b) shardings follow the rules ---------------------------------------------------------------------------------
def test_parameters_and_optimizer_state_are_sharded_by_the_rules():
    state = run("8", 2)["state"]
    layer = state.params["layers"][0]
    q = layer["self_attn"]["q_proj"]["kernel"][...]          # [D, N, Hd] = [64, 4, 16]
    down = layer["mlp"]["down_proj"]["kernel"][...]           # [I, D] = [128, 64]
    k = layer["self_attn"]["k_proj"]["kernel"][...]           # [D, Kv, Hd] = [64, 2, 16]
    emb = state.params["embed_tokens"]["embedding"][...]      # [V, D] = [128, 64]
    norm = layer["input_layernorm"]["scale"][...]             # [D]
    assert q.sharding.spec == P("fsdp", "tensor", None)
    assert down.sharding.spec == P("tensor", "fsdp")
    assert k.sharding.spec == P("fsdp", "tensor", None)
    assert emb.sharding.spec == P("tensor", "fsdp")
    assert norm.sharding.is_fully_replicated
    assert {s.data.shape for s in q.addressable_shards} == {(32, 2, 16)}
    assert {s.data.shape for s in down.addressable_shards} == {(64, 32)}
    assert {s.data.shape for s in emb.addressable_shards} == {(64, 32)}
    assert {s.data.shape for s in norm.addressable_shards} == {(64,)}
    # Adam's moments mirror the params' shardings; counters and the learning rate are replicated.
    adam = state.opt_state[1]
    for moment in (adam.mu, adam.nu):
        m_q = moment["layers"][0]["self_attn"]["q_proj"]["kernel"][...]
        assert m_q.sharding.spec == P("fsdp", "tensor", None)
        assert {s.data.shape for s in m_q.addressable_shards} == {(32, 2, 16)}
        assert moment["layers"][1]["mlp"]["down_proj"]["kernel"][...].sharding.spec == P("tensor", "fsdp")
    assert adam.count.sharding.is_fully_replicated
    assert train.learning_rate_of(state.opt_state).sharding.is_fully_replicated
    # The abstract state (for checkpoint restore) carries the same shardings, without allocating.
    abstract_model = nnx.eval_shape(fresh_model)
    _, abstract, shardings = train.abstract_train_state(abstract_model, train.make_optimizer(TRAIN), mesh8(), RULES)
    a_q = abstract.params["layers"][0]["self_attn"]["q_proj"]["kernel"].get_value()
    assert isinstance(a_q, jax.ShapeDtypeStruct) and a_q.shape == (64, 4, 16) and a_q.dtype == jnp.float32
    assert a_q.sharding.spec == P("fsdp", "tensor", None)
    a_mu = abstract.opt_state[1].mu["layers"][0]["mlp"]["down_proj"]["kernel"].get_value()
    assert a_mu.sharding.spec == P("tensor", "fsdp")
    assert jax.tree.structure(abstract) == jax.tree.structure(state)


def test_step_traces_the_models_activation_constraints():
    """The step is traced inside use_sharding, so the model's constrain() calls reach the compiled program:
    the residual stream [B, T, D] = [8, 16, 64] is pinned to batch over ("data", "fsdp")."""
    r8 = run("8", 2)
    text = r8["step"].lower(r8["state"], BATCH).as_text()
    constraints = [line for line in text.splitlines() if "sharding_constraint" in line]
    assert any('[{"data", "fsdp"}, {}, {}]' in line and "tensor<8x16x64xf32>" in line for line in constraints), \
        "no activation sharding constraint found in the lowered train step"


# --- (c) gradient accumulation --------------------------------------------------------------------------------------
def test_gradient_accumulation_matches_one_big_batch():
    full, accum = run("8", 2), run("8", 2, accum_steps=2)
    for m_full, m_acc in zip(full["metrics"], accum["metrics"]):
        for key in ("loss", "grad_norm", "tokens", "param_norm"):
            np.testing.assert_allclose(m_acc[key], m_full[key], rtol=1e-5, err_msg=key)
    assert_same_training(accum, full)


def test_accumulation_rejects_indivisible_batch():
    mesh = mesh1()
    optimizer = train.make_optimizer(TRAIN)
    graphdef, state, shardings = train.create_train_state(fresh_model(), optimizer, mesh, RULES)
    step = train.make_train_step(graphdef, optimizer, mesh=mesh, rules=RULES, state_shardings=shardings,
                                 accum_steps=3)
    with pytest.raises(ValueError, match="accum_steps=3"):
        step(state, BATCH)


# --- (d) cross-entropy ----------------------------------------------------------------------------------------------
def test_cross_entropy_hand_computed():
    logits = np.array([[[2.0, 1.0, 0.0, -1.0], [0.5, 0.5, 0.5, 0.5], [0.0, 3.0, 1.0, 0.0]]], np.float32)
    targets = np.array([[0, 3, 2]], np.int32)
    mask = np.array([[1.0, 1.0, 0.0]], np.float32)
    lse0 = math.log(math.exp(2) + math.exp(1) + math.exp(0) + math.exp(-1))
    expected = (lse0 - 2.0) + math.log(4.0)          # token 2 is masked out
    loss_sum, tokens = train.cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
    np.testing.assert_allclose(loss_sum, expected, rtol=1e-6)
    assert float(tokens) == 2.0
    loss_all, tokens_all = train.cross_entropy(jnp.asarray(logits), jnp.asarray(targets))
    np.testing.assert_allclose(loss_all, expected + math.log(math.exp(0) + math.exp(3) + math.exp(1) + 1) - 1.0,
                               rtol=1e-6)
    assert float(tokens_all) == 3.0
    np.testing.assert_allclose(train.token_log_probs(jnp.asarray(logits), jnp.asarray(targets))[0, 1],
                               -math.log(4.0), rtol=1e-6)


# --- (e) schedule and optimizer -------------------------------------------------------------------------------------
def test_schedule_warmup_then_cosine():
    s = train.make_schedule(TRAIN)                   # lr 1e-2, warm-up 2, 20 steps, floor 1e-3
    expected = {0: 0.0, 1: 5e-3, 2: 1e-2, 20: 1e-3, 30: 1e-3,
                11: 1e-3 + 0.5 * (1e-2 - 1e-3) * (1 + math.cos(math.pi * 9 / 18))}  # half-way through decay
    for step, lr in expected.items():
        np.testing.assert_allclose(float(s(step)), lr, rtol=1e-6, atol=1e-9, err_msg=f"step {step}")
    assert float(s(100)) == pytest.approx(1e-3)
    s_total = train.make_schedule(TRAIN, total_steps=10)
    np.testing.assert_allclose(float(s_total(10)), 1e-3, rtol=1e-6)
    # The train step logs the rate each update used.
    logged = [float(m["lr"]) for m in run("1", 20)["metrics"]]
    np.testing.assert_allclose(logged, [float(s(i)) for i in range(20)], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("grad_clip", [1.0, 0.0])
def test_optimizer_matches_optax_adamw(grad_clip):
    """make_optimizer == clip + optax.adamw with a hand-written decay mask (no decay on norms and biases)."""
    cfg = ml_collections.ConfigDict(TRAIN.to_dict())
    cfg.grad_clip = grad_clip
    rng = np.random.default_rng(1)
    params = {"attn": {"kernel": rng.normal(size=(3, 2, 4)), "bias": rng.normal(size=(2, 4))},
              "input_layernorm": {"scale": rng.normal(size=(3,))}, "embedding": rng.normal(size=(5, 3))}
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    mask = {"attn": {"kernel": True, "bias": False}, "input_layernorm": {"scale": False}, "embedding": True}
    reference = optax.adamw(train.make_schedule(cfg), b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, mask=mask)
    if grad_clip > 0:
        reference = optax.chain(optax.clip_by_global_norm(grad_clip), reference)
    ours = train.make_optimizer(cfg)
    p_ref, p_ours = params, params
    s_ref, s_ours = reference.init(params), ours.init(params)
    @jax.jit
    def both(grads, p_ref, s_ref, p_ours, s_ours):
        u_ref, s_ref = reference.update(grads, s_ref, p_ref)
        u_ours, s_ours = ours.update(grads, s_ours, p_ours)
        return optax.apply_updates(p_ref, u_ref), s_ref, optax.apply_updates(p_ours, u_ours), s_ours

    for i in range(4):
        grads = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape) * 3.0, jnp.float32), params)
        p_ref, s_ref, p_ours, s_ours = both(grads, p_ref, s_ref, p_ours, s_ours)
        np.testing.assert_allclose(float(train.learning_rate_of(s_ours)), float(train.make_schedule(cfg)(i)))
    assert_trees_close(flat(p_ours), flat(p_ref), rtol=1e-6, atol=1e-7)


# --- (f) bf16 compute, f32 master weights ---------------------------------------------------------------------------
def test_bf16_compute_keeps_float32_params():
    f32, bf16 = run("1", 20), run("1", 2, compute_dtype="bfloat16")
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(bf16["state"].params))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(bf16["state"].opt_state[1].mu))
    np.testing.assert_allclose(bf16["metrics"][0]["loss"], f32["metrics"][0]["loss"], rtol=1e-2)
    np.testing.assert_allclose(bf16["metrics"][1]["loss"], f32["metrics"][1]["loss"], rtol=1e-2)
    # ... but it was computed in bf16 (an f32 forward would agree to ~1e-7).
    assert abs(bf16["metrics"][0]["loss"] - f32["metrics"][0]["loss"]) > 1e-6 * f32["metrics"][0]["loss"]
    # The update landed on f32 weights: most updated values are not representable in bf16.
    q = bf16["params@2"]["['layers'][0]['self_attn']['q_proj']['kernel'].value"]
    q_init = bf16["init"]["['layers'][0]['self_attn']['q_proj']['kernel'].value"]
    assert not np.array_equal(q, q_init)
    assert np.mean(q.astype(jnp.bfloat16).astype(np.float32) != q) > 0.9
    # and it moved the same way as the f32 run (Adam's update is about lr * sign(grad)).
    f32_delta = f32["params@2"]["['layers'][0]['self_attn']['q_proj']['kernel'].value"] - q_init
    assert np.mean(np.sign(q - q_init) == np.sign(f32_delta)) > 0.9


# --- (g) learning ---------------------------------------------------------------------------------------------------
def test_loss_decreases_on_a_repeated_batch():
    losses = [float(m["loss"]) for m in run("1", 20)["metrics"]]
    assert losses[0] == pytest.approx(math.log(CFG.vocab_size), rel=0.05)  # random init: ~uniform prediction
    assert losses[-1] < 0.5 * losses[0], losses
    assert all(np.isfinite(losses))


# --- other objectives and frozen parameters (what HALO's stages and RL reuse) ---------------------------------
def _kl_to_fixed_teacher(model, batch):
    """Forward KL(teacher || student) summed over real tokens (the stage-2 distillation loss). Per-row inputs
    such as the teacher's logits travel in the batch, so gradient accumulation splits them with the rows."""
    teacher_logits = batch["teacher_logits"]
    student = model(batch["inputs"], positions=batch["positions"], segment_ids=batch["segment_ids"])
    p = jax.nn.softmax(teacher_logits, -1)
    kl = jnp.sum(p * (jax.nn.log_softmax(teacher_logits, -1) - jax.nn.log_softmax(student, -1)), -1)   # [B, T]
    return jnp.sum(kl * batch["loss_mask"]), jnp.sum(batch["loss_mask"])


def test_custom_loss_fn_and_frozen_parameters():
    teacher_logits = np.random.default_rng(5).standard_normal((B, T, CFG.vocab_size)).astype(np.float32)
    batch = {k: v for k, v in BATCH.items() if k != "targets"} | {"teacher_logits": teacher_logits}
    loss_fn = _kl_to_fixed_teacher
    sgd = ml_collections.ConfigDict(dict(steps=4, lr=0.1, warmup_steps=0, min_lr_ratio=1.0, weight_decay=0.0,
                                         b1=0.0, b2=0.0, eps=1.0, grad_clip=0.0))
    # with b1 = b2 = 0 and eps = 1, Adam's update is g / (|g| + 1): compare it with jax.grad of the loss
    frozen_layer = lambda names: not ("layers" in names and "0" in names)   # noqa: E731  freeze layer 0
    optimizer = train.make_optimizer(sgd, trainable=frozen_layer)
    mesh = mesh1()
    model = fresh_model()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    want_loss = loss_fn(nnx.merge(graphdef, params, rest), batch)
    grads = jax.grad(lambda p: loss_fn(nnx.merge(graphdef, p, rest), batch)[0] / want_loss[1])(params)

    graphdef, state, shardings = train.create_train_state(model, optimizer, mesh, RULES)
    before = flat(state.params)
    for accum in (1, 2):   # accumulation must still give the one-batch loss with a custom objective
        step = train.make_train_step(graphdef, optimizer, mesh=mesh, state_shardings=shardings,
                                     accum_steps=accum, loss_fn=loss_fn)
        _, metrics = step(jax.tree.map(jnp.copy, state), batch)
        np.testing.assert_allclose(metrics["loss"], want_loss[0] / want_loss[1], rtol=1e-5)
    new_state, _ = train.make_train_step(graphdef, optimizer, mesh=mesh, state_shardings=shardings,
                                         loss_fn=loss_fn)(state, batch)
    after, g = flat(new_state.params), flat(grads)
    for key in before:
        delta = after[key] - before[key]
        if "'layers'][0]" in key:
            assert np.all(delta == 0.0), f"{key} is frozen but moved"
        else:
            np.testing.assert_allclose(delta, -0.1 * g[key] / (np.abs(g[key]) + 1.0), rtol=1e-4, atol=1e-7)
    assert any(np.any(after[k] != before[k]) for k in before if "'layers'][0]" not in k)
    evaluate = train.make_eval_step(graphdef, mesh=mesh, state_shardings=shardings, loss_fn=loss_fn)
    out = evaluate(new_state.params, batch)
    assert float(out["tokens"]) == float(want_loss[1])


def test_zero_rows_pad_a_small_batch_onto_more_devices_without_changing_the_step():
    """A global batch of 3 rows cannot split over 8 devices; loop.batch_placer pads it with zero rows, and one
    step on the padded batch over 8 devices equals the step on the 3 rows on one device."""
    from jaxsuite.core import loop

    small = {k: v[:3] for k, v in BATCH.items()}
    config = ml_collections.ConfigDict(dict(data=dict(batch_size=3)))
    sharding8 = train.batch_sharding(mesh8(), RULES)
    assert train.batch_shards(sharding8) == 4          # rows over data x fsdp; tensor holds the model
    placed = loop.batch_placer(config, sharding8, accum_steps=1)(small)
    assert placed["inputs"].shape == (4, T) and float(placed["loss_mask"][3:].sum()) == 0.0
    np.testing.assert_array_equal(np.asarray(placed["positions"][3]), np.arange(T))
    # an index array of slots pads with -1 ("no slot"): a padded row does no latent work
    slots = loop.pad_batch({"latent_slots": np.asarray([[4, 5], [6, -1]], np.int32)}, 4)["latent_slots"]
    np.testing.assert_array_equal(slots, [[4, 5], [6, -1], [-1, -1], [-1, -1]])

    results = []
    for mesh, batch in ((mesh8(), placed), (mesh1(), small)):
        optimizer = train.make_optimizer(TRAIN)
        graphdef, state, shardings = train.create_train_state(fresh_model(), optimizer, mesh, RULES)
        step = train.make_train_step(graphdef, optimizer, mesh=mesh, rules=RULES, state_shardings=shardings)
        state, _ = step(state, batch)        # lr(0) = 0 in warm-up: the second step moves the weights
        state, metrics = step(state, batch)
        results.append((jax.device_get(metrics), flat(state.params)))
    (m_pad, p_pad), (m_one, p_one) = results
    for key in ("loss", "tokens", "grad_norm", "param_norm"):
        np.testing.assert_allclose(m_pad[key], m_one[key], rtol=1e-5, err_msg=key)
    assert_trees_close(p_pad, p_one, rtol=1e-5, atol=1e-4)
