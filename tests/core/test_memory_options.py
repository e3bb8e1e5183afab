"""The training-memory options of config.train: per-layer rematerialisation (`remat`) and the chunked
cross-entropy (`loss_chunk`). Each must leave the loss and every gradient as they are without it; the memory
they save is measured where it is decided, in the compile report of a TPU target (benchmarks/RESULTS.md)."""
import jax
import numpy as np
import pytest
from flax import nnx

from jaxsuite.core import train
from jaxsuite.core.loop import REMAT_NAMES
from jaxsuite.models import CausalLM, DecoderConfig, HypeNetConfig
from jaxsuite.models.lm import REMAT_POLICIES

CFG = DecoderConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64)
B, T = 2, 16


def _batch():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, CFG.vocab_size, (B, T + 1)).astype(np.int32)
    mask = (rng.random((B, T)) > 0.2).astype(np.float32)
    return {"inputs": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": mask}


def _loss_and_grads(cfg, remat: str, chunk: int):
    model = CausalLM(cfg, rngs=nnx.Rngs(0))
    model.remat = remat
    graphdef, params = nnx.split(model, nnx.Param)
    loss_fn = train.chunked_next_token_loss(chunk)

    @jax.jit
    def f(params, batch):
        def mean_loss(p):
            loss_sum, tokens = loss_fn(nnx.merge(graphdef, p), batch)
            return loss_sum / tokens
        return jax.value_and_grad(mean_loss)(params)

    loss, grads = f(params, _batch())
    return float(loss), {jax.tree_util.keystr(k): np.asarray(v) for k, v in
                         jax.tree_util.tree_flatten_with_path(grads)[0]}


def test_the_loop_and_the_model_know_the_same_policies():
    assert set(REMAT_NAMES) == set(REMAT_POLICIES)


HYPENET = HypeNetConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                        mixer_types=("attn", "lightning-attn"), attn_logits_scaling="hype 500", lightning_nh=4,
                        lightning_nkv=2, lightning_use_qk_norm=True, lightning_use_output_norm=True,
                        lightning_use_output_gate=True, expand_kv_proj=False, tie_word_embeddings=True,
                        max_position_embeddings=64)


@pytest.mark.parametrize("cfg", [CFG, HYPENET], ids=["qwen3", "hypenet"])
def test_remat_and_chunked_loss_change_neither_loss_nor_gradients(cfg):
    ref_loss, ref = _loss_and_grads(cfg, "none", 0)
    for remat, chunk in (("minimal", 0), ("full", 8)):
        loss, grads = _loss_and_grads(cfg, remat, chunk)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-6, err_msg=f"{remat}/{chunk}")
        assert grads.keys() == ref.keys()
        for k in ref:
            np.testing.assert_allclose(grads[k], ref[k], rtol=1e-5, atol=1e-7, err_msg=f"{remat}/{chunk} {k}")


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match="loss_chunk=5 must divide data.seq_len=16"):
        _loss_and_grads(CFG, "none", 5)
    with pytest.raises(ValueError, match="remat must be one of"):
        _loss_and_grads(CFG, "everything", 0)


def test_the_loop_and_the_model_know_the_same_attention_names():
    from jaxsuite.core.loop import ATTENTION_NAMES
    from jaxsuite.models.fused_attention import IMPLS
    assert set(ATTENTION_NAMES) == set(IMPLS)


def test_train_linear_kernel_sets_every_linear_mixer_and_keeps_the_loss():
    """train.linear_kernel replaces the linear-attention layers' kernels_pallas implementation ('' keeps the
    model's own): 'reference' (the naive per-token recurrence) gives the loss of the default chunked XLA kernel."""
    import ml_collections
    from jaxsuite.core.config_utils import train_block
    from jaxsuite.core.loop import _training_setup
    from jaxsuite.models.mixers_linear import LinearMixer

    def loss_with(kernel):
        model = CausalLM(HYPENET, rngs=nnx.Rngs(0))
        config = ml_collections.ConfigDict(dict(train=train_block(linear_kernel=kernel)))
        loss_fn, _ = _training_setup(config, model, train.next_token_loss, None)
        mixers = [m for _, m in nnx.iter_modules(model) if isinstance(m, LinearMixer)]
        assert mixers and {m.implementation for m in mixers} == {kernel or HYPENET.implementation}
        loss_sum, tokens = loss_fn(model, _batch())
        return float(loss_sum / tokens)
    np.testing.assert_allclose(loss_with("reference"), loss_with(""), rtol=1e-5)
    with pytest.raises(ValueError, match="train.linear_kernel='triton'"):
        loss_with("triton")
