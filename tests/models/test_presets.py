"""The released Qwen3 architectures: parameter counts match the model cards, checked without allocating."""
import math

import jax
import pytest
from flax import nnx

from jaxsuite.core.config_utils import load_config
from jaxsuite.models import CausalLM, count_params
from jaxsuite.models.factory import arch_from_config
from jaxsuite.models.presets import (QWEN3_PRESETS, QWEN3_PUBLISHED_BILLIONS,
                                     QWEN3_PUBLISHED_NON_EMBEDDING_BILLIONS)


def abstract_param_count(cfg) -> int:
    model = nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0)))   # ShapeDtypeStructs only
    return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("size", ["0.6b", "1.7b", "4b", "8b"])
def test_released_sizes_match_published_counts(size):
    cfg = arch_from_config(load_config("configs/qwen3_pretrain.py", size).model.arch)
    assert cfg == QWEN3_PRESETS[size].replace(bos_token_id=None, eos_token_id=None,
                                              max_position_embeddings=cfg.max_position_embeddings)
    n = abstract_param_count(cfg)
    assert n == count_params(cfg)
    embed = cfg.vocab_size * cfg.hidden_size * (1 if cfg.tie_word_embeddings else 2)
    # the model cards round to one decimal (0.6B, 1.7B, 4.0B, 8.2B) and give non-embedding counts
    assert round(n / 1e9, 1) == QWEN3_PUBLISHED_BILLIONS[size]
    published = QWEN3_PUBLISHED_NON_EMBEDDING_BILLIONS[size]
    digits = len(repr(published).split(".")[1])          # compare at the precision the card gives
    assert round((n - embed) / 1e9, digits) == published


def test_hand_counted_tiny_model():
    # 2 layers of: q 64*4*16 + k,v 2*(64*2*16) + o 4*16*64 + q/k norms 2*16 + mlp 3*64*128 + 2 norms 2*64
    cfg = arch_from_config(load_config("configs/qwen3_pretrain.py", "tiny").model.arch)
    per_layer = 4096 + 4096 + 4096 + 32 + 24576 + 128
    assert abstract_param_count(cfg) == 2 * per_layer + 260 * 64 + 64


@pytest.mark.parametrize("size", ["1.5b", "7b"])
def test_qwen2p5_math_sizes_match_published_counts(size):
    """CPMobius's models (Qwen2 architecture with q/k/v biases): the Qwen2.5 report's total and non-embedding
    counts, and the hub ids resolve to them (Instruct or base) without downloading."""
    from jaxsuite.models.presets import (QWEN2P5_MATH_PRESETS, QWEN2P5_PUBLISHED_BILLIONS,
                                         QWEN2P5_PUBLISHED_NON_EMBEDDING_BILLIONS, preset_of_hub_id)
    cfg = QWEN2P5_MATH_PRESETS[size]
    n = abstract_param_count(cfg)
    assert n == count_params(cfg)
    embed = cfg.vocab_size * cfg.hidden_size * (1 if cfg.tie_word_embeddings else 2)
    # within the cards' last digit (7B: 7.6156B counted, "7.61B" published; 6.5256B non-embedding, "6.53B")
    assert abs(n / 1e9 - QWEN2P5_PUBLISHED_BILLIONS[size]) < 0.01
    assert abs((n - embed) / 1e9 - QWEN2P5_PUBLISHED_NON_EMBEDDING_BILLIONS[size]) < 0.01
    name = size.upper()
    assert preset_of_hub_id(f"Qwen/Qwen2.5-Math-{name}") is cfg
    assert preset_of_hub_id(f"Qwen/Qwen2.5-Math-{name}-Instruct") is cfg
    assert preset_of_hub_id("Qwen/Qwen2.5-Math-72B") is None


@pytest.mark.parametrize("size", ["1.5b", "7b"])
def test_qwen2p5_instruct_shares_the_shapes_with_its_own_context(size):
    """EvoOpt's 7B-class base: Qwen2.5-Instruct has the Math models' layer shapes (so their published counts),
    with rope_theta 1e6, a 32K context and <|im_end|> as the end of a turn."""
    from jaxsuite.models.presets import QWEN2P5_INSTRUCT_PRESETS, QWEN2P5_MATH_PRESETS, preset_of_hub_id
    cfg, math_cfg = QWEN2P5_INSTRUCT_PRESETS[size], QWEN2P5_MATH_PRESETS[size]
    assert count_params(cfg) == count_params(math_cfg)
    assert (cfg.rope_theta, cfg.max_position_embeddings, cfg.eos_token_id) == (1e6, 32768, 151645)
    assert preset_of_hub_id(f"Qwen/Qwen2.5-{size.upper()}-Instruct") is cfg
    assert preset_of_hub_id(f"Qwen/Qwen2.5-{size.upper()}") is None      # the base models' context differs
