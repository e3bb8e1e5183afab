"""HALO stage 0: weights carried from a Qwen3 teacher into HypeNet, checked by exact function equality."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsuite.halo.transfer import PAPER_ATTENTION_LAYERS, hypenet_config_from_teacher, stage0_transfer
from jaxsuite.models import CausalLM, DecoderConfig, HypeNetConfig
from jaxsuite.models.presets import QWEN3_PRESETS

TEACHER = DecoderConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=8, tie_word_embeddings=False)
IDS = jnp.asarray(np.random.default_rng(0).integers(0, 96, (2, 11)), jnp.int32)


@pytest.fixture(scope="module")
def teacher():
    model = CausalLM(TEACHER, rngs=nnx.Rngs(1))
    # randomise the norms too, so a norm that is not copied cannot hide behind ones
    norms = [n for layer in model.layers
             for n in (layer.self_attn.q_norm, layer.self_attn.k_norm, layer.input_layernorm)]
    for i, norm in enumerate(norms):
        norm.scale.set_value(1.0 + 0.3 * jax.random.normal(jax.random.key(i), norm.scale.shape))
    return model


def test_all_attention_student_with_teacher_settings_reproduces_the_teacher(teacher):
    # every layer kept as attention, RoPE on, no output gate, no logit scaling: HypeNet must BE the teacher
    cfg = hypenet_config_from_teacher(TEACHER, range(3), attn_use_rope=True, attn_use_output_gate=False)
    student = stage0_transfer(teacher, cfg)
    # One model family: the same layers run the same arithmetic, so the logits are identical, not just close,
    # in the full forward and in cached decoding.
    np.testing.assert_array_equal(student(IDS), teacher(IDS))
    pos = jnp.broadcast_to(jnp.arange(11, dtype=jnp.int32), (2, 11))
    s_logits, _ = student.decode(IDS, pos, student.init_cache(2, 16))
    t_logits, _ = teacher.decode(IDS, pos, teacher.init_cache(2, 16))
    np.testing.assert_array_equal(s_logits, t_logits)


def test_hybrid_student_takes_teacher_projections_and_expands_kv(teacher):
    cfg = hypenet_config_from_teacher(TEACHER, [1])
    assert cfg.mixer_types == ("lightning-attn", "attn", "lightning-attn") and cfg.lightning_nkv == 4
    student = stage0_transfer(teacher, cfg, seed=3)
    assert isinstance(student.config, HypeNetConfig)
    t0, s0 = teacher.layers[0].self_attn, student.layers[0].self_attn
    k_t = np.asarray(t0.k_proj.kernel.get_value())                          # [D, 2, Hd]
    k_s = np.asarray(s0.k_proj.kernel.get_value())                          # [D, 4, Hd]
    for j in range(4):                                                      # query head j <- KV head j // 2
        np.testing.assert_array_equal(k_s[:, j], k_t[:, j // 2])
    np.testing.assert_array_equal(s0.q_proj.kernel.get_value(), t0.q_proj.kernel.get_value())
    np.testing.assert_array_equal(s0.k_norm.scale.get_value(), t0.k_norm.scale.get_value())
    np.testing.assert_array_equal(s0.o_norm.scale.get_value(), np.ones(4 * 8))
    assert float(jnp.std(s0.z_proj.kernel.get_value())) > 0.01              # new gate: random, not zero
    a_t, a_s = teacher.layers[1].self_attn, student.layers[1].self_attn
    np.testing.assert_array_equal(a_s.v_proj.kernel.get_value(), a_t.v_proj.kernel.get_value())
    np.testing.assert_array_equal(student.layers[2].mlp.down_proj.kernel.get_value(),
                                  teacher.layers[2].mlp.down_proj.kernel.get_value())
    np.testing.assert_array_equal(student.lm_head.kernel.get_value(), teacher.lm_head.kernel.get_value())
    assert np.isfinite(np.asarray(student(IDS))).all()


def test_errors_name_the_problem(teacher):
    with pytest.raises(ValueError, match=r"\[7\].*3 layers"):
        hypenet_config_from_teacher(TEACHER, [0, 7])
    with pytest.raises(ValueError, match="Qwen3"):
        hypenet_config_from_teacher(TEACHER.replace(model_type="llama", qk_norm=False), [0])


def test_paper_layer_lists_give_the_released_architectures():
    cfg = hypenet_config_from_teacher(QWEN3_PRESETS["1.7b"], PAPER_ATTENTION_LAYERS["hypenet-2b"])
    assert cfg.mixer_types.count("attn") == 7 and cfg.lightning_nh == cfg.lightning_nkv == 16
    abstract = nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0)))
    n = sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    assert round(n / 1e9, 2) == 1.93          # "about 1.93B" for HypeNet-2B (reference note)
    cfg5 = hypenet_config_from_teacher(QWEN3_PRESETS["4b"], PAPER_ATTENTION_LAYERS["hypenet-5b"])
    abstract = nnx.eval_shape(lambda: CausalLM(cfg5, rngs=nnx.Rngs(0)))
    n5 = sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    assert round(n5 / 1e9, 2) == 4.82          # "about 4.82B" for HypeNet-5B
