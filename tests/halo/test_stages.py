"""HALO stages 1-2: the losses against independent references (transformers' own layer outputs, a numpy KL,
a student that is exactly the teacher), what trains and what stays frozen, and the hybrid's assembly."""
import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxsuite.core import train as tr
from jaxsuite.core.sharding import make_mesh
from jaxsuite.halo.stages import (alignment_loss, assemble_hybrid, build_alignment_model, distillation_loss,
                                  DistillationModel, kl_divergence, students_hypenet)
from jaxsuite.halo.transfer import hypenet_config_from_teacher, stage0_transfer

IDS = np.random.default_rng(0).integers(0, 97, (2, 13))   # the vocabulary of conftest's "qwen3_3layers"


@pytest.fixture(scope="module")
def hf_teacher(hf_checkpoints):
    """A tiny random 3-layer transformers Qwen3 (tests/conftest.py) and our load of it."""
    import jaxsuite
    folder, model = hf_checkpoints("qwen3_3layers")
    return model, jaxsuite.load_pretrained(folder)


def _batch(ids):
    ids = jnp.asarray(ids, jnp.int32)
    return {"inputs": ids, "targets": ids, "loss_mask": jnp.ones(ids.shape, jnp.float32)}


def test_alignment_loss_with_silent_students_is_the_mean_square_of_transformers_attention_outputs(hf_teacher):
    import torch
    torch_model, teacher = hf_teacher
    outputs = []
    hooks = [layer.self_attn.register_forward_hook(lambda m, a, out: outputs.append(out[0].detach().numpy()))
             for layer in torch_model.model.layers]
    with torch.no_grad():
        torch_model(torch.as_tensor(IDS))
    for h in hooks:
        h.remove()
    model = build_alignment_model(teacher)
    for student in model.students:                 # a student whose o_proj is zero outputs exactly 0
        student.o_proj.kernel.set_value(jnp.zeros_like(student.o_proj.kernel.get_value()))
    loss_sum, tokens = alignment_loss(model, _batch(IDS))
    expected = np.mean([np.mean(np.square(o)) for o in outputs])   # mean over tokens, dims, then layers
    assert float(tokens) == IDS.size
    np.testing.assert_allclose(float(loss_sum) / float(tokens), expected, rtol=2e-4)


def test_alignment_trains_only_the_students_and_lowers_the_loss(hf_teacher):
    _, teacher = hf_teacher
    model = build_alignment_model(teacher, seed=1)
    mesh = make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    cfg = dict(lr=3e-3, steps=12, warmup_steps=0, weight_decay=0.0, grad_clip=0.0)
    trainable = lambda names: names[0] == "students"   # noqa: E731
    opt = tr.make_optimizer(cfg, trainable=trainable)
    graphdef, state, sh = tr.create_train_state(model, opt, mesh)
    before = jax.tree.map(lambda x: np.array(x, copy=True), state.params)   # copies: the step donates
    step = tr.make_train_step(graphdef, opt, mesh=mesh, state_shardings=sh, loss_fn=alignment_loss)
    batch = _batch(np.random.default_rng(1).integers(0, 97, (8, 16)))
    losses = []
    for _ in range(12):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.7 * losses[0]
    after = jax.tree.map(np.asarray, state.params)
    np.testing.assert_array_equal(after["teacher"]["layers"][1]["self_attn"]["q_proj"]["kernel"],
                                  before["teacher"]["layers"][1]["self_attn"]["q_proj"]["kernel"])
    np.testing.assert_array_equal(after["teacher"]["embed_tokens"]["embedding"],
                                  before["teacher"]["embed_tokens"]["embedding"])
    assert not np.array_equal(after["students"][1]["z_proj"]["kernel"], before["students"][1]["z_proj"]["kernel"])


def test_kl_matches_numpy_and_vanishes_for_a_student_that_is_the_teacher(hf_teacher):
    rng = np.random.default_rng(2)
    t, s = rng.normal(size=(3, 5, 11)), rng.normal(size=(3, 5, 11))
    p = np.exp(t) / np.exp(t).sum(-1, keepdims=True)
    q = np.exp(s) / np.exp(s).sum(-1, keepdims=True)
    np.testing.assert_allclose(kl_divergence(jnp.asarray(t), jnp.asarray(s)), (p * np.log(p / q)).sum(-1),
                               rtol=1e-5, atol=1e-6)
    _, teacher = hf_teacher
    # every layer attention with RoPE and no gate: the HypeNet student IS the teacher -> KL 0
    same = stage0_transfer(teacher, hypenet_config_from_teacher(teacher.config, range(3), attn_use_rope=True,
                                                                attn_use_output_gate=False))
    loss_sum, tokens = distillation_loss(DistillationModel(teacher, same), _batch(IDS))
    assert abs(float(loss_sum) / float(tokens)) < 1e-6
    hybrid = stage0_transfer(teacher, hypenet_config_from_teacher(teacher.config, [1]))
    loss_sum, _ = distillation_loss(DistillationModel(teacher, hybrid), _batch(IDS))
    assert float(loss_sum) / float(tokens) > 1e-3


def test_assemble_hybrid_takes_students_for_lightning_layers_and_teacher_attention(hf_teacher):
    _, teacher = hf_teacher
    aligned = build_alignment_model(teacher, seed=3)
    for i, student in enumerate(aligned.students):   # make each student distinguishable from stage 0
        student.z_proj.kernel.set_value(student.z_proj.kernel.get_value() + i + 1.0)
    students = students_hypenet(teacher, list(aligned.students))
    assert all(layer.kind == "lightning" for layer in students.layers)
    hybrid = assemble_hybrid(teacher, students, hypenet_config_from_teacher(teacher.config, [1]))
    for i in (0, 2):
        np.testing.assert_array_equal(hybrid.layers[i].self_attn.z_proj.kernel.get_value(),
                                      aligned.students[i].z_proj.kernel.get_value())
    np.testing.assert_array_equal(hybrid.layers[1].self_attn.q_proj.kernel.get_value(),
                                  teacher.layers[1].self_attn.q_proj.kernel.get_value())
    np.testing.assert_array_equal(hybrid.layers[2].mlp.up_proj.kernel.get_value(),
                                  teacher.layers[2].mlp.up_proj.kernel.get_value())
    # all layers attention with the teacher's settings: assembling from the students changes nothing
    same = assemble_hybrid(teacher, students, hypenet_config_from_teacher(
        teacher.config, range(3), attn_use_rope=True, attn_use_output_gate=False))
    np.testing.assert_allclose(same(jnp.asarray(IDS)), teacher(jnp.asarray(IDS)), rtol=1e-5, atol=1e-5)


def test_assemble_rejects_students_of_another_shape(hf_teacher):
    _, teacher = hf_teacher
    students = students_hypenet(teacher, list(build_alignment_model(teacher).students))
    cfg = hypenet_config_from_teacher(teacher.config, [1], expand_kv_proj=False)   # 2 KV heads, not 4
    with pytest.raises(ValueError, match="layer 0: the stage-1 student's shapes"):
        assemble_hybrid(teacher, students, cfg)
