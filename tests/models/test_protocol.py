"""The LM contract (`jaxsuite.models.LanguageModel`): every model and LM wrapper implements it."""
from flax import nnx

from jaxsuite.latent.head import LatentReasoner, LatentTokens
from jaxsuite.models import CausalLM, DecoderConfig, HypeNetConfig, LanguageModel

TINY = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, head_dim=8)


def test_models_and_wrappers_implement_the_lm_contract():
    decoder = CausalLM(DecoderConfig(**TINY), rngs=nnx.Rngs(0))
    hybrid = CausalLM(HypeNetConfig(**TINY, mixer_types=("attn", "gated-delta")), rngs=nnx.Rngs(0))
    reasoner = LatentReasoner(decoder, LatentTokens.after(56), rngs=nnx.Rngs(0))
    for model in (decoder, hybrid, reasoner):
        assert isinstance(model, LanguageModel), type(model)
    # the check is not vacuous: a module without decode/init_cache is not an LM
    assert not isinstance(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), LanguageModel)
    assert [layer.kind for layer in hybrid.layers] == ["attention", "gated_delta"]
