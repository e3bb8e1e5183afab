"""Three train steps of a tiny CausalLM on a fixed global batch, for tests/core/test_multihost.py.

    PYTHONPATH=tests/core/launch_fixtures XLA_FLAGS=--xla_force_host_platform_device_count=4 \
        python -m jaxsuite.launch --config tests/core/launch_fixtures/decoder_config.py --workdir /tmp/dec

The mesh (data=2, fsdp=2) is laid out with `fsdp` ACROSS the processes when there are two, so parameters,
optimizer moments and their gradient reductions span processes, and each process holds a non-contiguous set
of batch rows.
"""
import ml_collections


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.job = "decoder_fixture_jobs:decoder_train_steps"
    c.seed = 0
    c.data_seed = 1
    c.mesh = ml_collections.ConfigDict(dict(data=2, fsdp=2, tensor=1))   # 4 devices over all processes
    c.arch = ml_collections.ConfigDict(dict(
        vocab_size=48, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, tie_word_embeddings=False, max_position_embeddings=64,
        model_type="qwen3"))
    c.batch_size = 8         # global rows: 2 per device
    c.seq_len = 16
    c.train = ml_collections.ConfigDict(dict(
        steps=3, lr=1e-2, warmup_steps=0, min_lr_ratio=0.1, weight_decay=0.1, b1=0.9, b2=0.95, eps=1e-8,
        grad_clip=1.0))
    return c
