"""Fixtures for the agent runtime's tests: a Qwen3-style tokenizer folder carrying the real Qwen3 chat template."""
import functools
from pathlib import Path

import pytest

from jaxsuite.agents.chat import SPECIAL_MARKERS

DATA = Path(__file__).parent / "data"
QWEN3_TEMPLATE = (DATA / "qwen3_chat_template.jinja").read_text()

_TRAINING_TEXT = [
    "You are a helpful assistant. What is the capital of France? Paris is the capital of France.",
    "def add(a, b):\n    return a + b\n", '{"name": "search", "arguments": {"query": ["Eiffel tower height"]}}',
    "The tower is 330 metres tall. Ünïcödé 中文 text, numbers 0123456789 and punctuation !?.,;:()[]{}<>",
]


def build_qwen3_tokenizer(folder: Path) -> Path:
    """A byte-level BPE trained here on a few lines, Qwen's special tokens added (`<|im_start|>`, `<|im_end|>`,
    `<think>`, `<tool_call>`, ...), saved through transformers with the real Qwen3 chat template: what a Qwen3
    folder holds, at toy size (no hub here)."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_TRAINING_TEXT * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=list(SPECIAL_MARKERS))
    fast.chat_template = QWEN3_TEMPLATE
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def qwen3_tokenizer_folder(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    return build_qwen3_tokenizer(tmp_path_factory.mktemp("qwen3_tok"))


@pytest.fixture(scope="session")
def chat_model_folder(qwen3_tokenizer_folder, tmp_path_factory) -> Path:
    """A tiny random Qwen3 saved by transformers beside the Qwen3-style tokenizer and its chat template: a
    folder `python -m jaxsuite.serve --model` and transformers both load."""
    import shutil

    import torch
    import transformers
    folder = tmp_path_factory.mktemp("chat_model") / "tiny-qwen3-chat"
    shutil.copytree(qwen3_tokenizer_folder, folder)
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    config = transformers.Qwen3Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                      max_position_embeddings=2048, tie_word_embeddings=True, rope_theta=1e6,
                                      eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                                      pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"))
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    model.save_pretrained(folder)
    return folder


def _force(logits, generated, step, *, script):
    import jax.numpy as jnp
    target = script[jnp.minimum(step, script.shape[0] - 1)]
    return jnp.where(jnp.arange(logits.shape[-1])[None, :] == target, 0.0, jnp.full_like(logits, -1e9))


@functools.lru_cache(maxsize=None)
def _scripted(ids: tuple[int, ...]):
    """A LogitsProcessor that makes every row write `ids` (then repeat the last) whatever the model prefers, so
    a random tiny model calls a tool or answers on cue. The log-probs generate records stay the policy's own.
    One object per script: generate's jit keys on the hook."""
    import jax.numpy as jnp
    return functools.partial(_force, script=jnp.asarray(ids, jnp.int32))


@pytest.fixture(scope="session")
def scripted():
    """`scripted(ids)`: the forcing LogitsProcessor above, as a fixture (test modules cannot import conftest)."""
    return _scripted
