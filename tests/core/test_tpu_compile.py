"""Deviceless ahead-of-time compiles for a Cloud TPU target (libtpu, the `aot` extra): what memory the
training options save is decided by the TPU compiler's buffer assignment, so it is measured there, on a
v5e:2x2 topology this machine does not have. (XLA:CPU is no judge of it: its scheduler hoists the
recomputation, and its temporaries barely move with remat.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxsuite.core import train
from jaxsuite.models import CausalLM, DecoderConfig

pytest.importorskip("libtpu", reason="deviceless TPU compiles need libtpu: pip install 'jaxsuite[aot]'")

CFG = DecoderConfig(vocab_size=8192, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=1024)
B, T = 8, 512


@pytest.fixture(scope="module")
def v5e_mesh():
    # No TPU_* environment variables here: the launcher reads them as "on a TPU pod", and a variable set in
    # this process would reach the jobs that later tests start as subprocesses.
    from jaxsuite.core.aot import resolve_target
    devices = resolve_target("v5e:2x2").devices
    assert len(devices) == 4 and devices[0].platform == "tpu"
    return jax.sharding.Mesh(np.array(devices), ("fsdp",))


def _per_chip_working_memory(mesh, remat: str, chunk: int) -> int:
    """Per-chip bytes one loss-and-gradient step needs beyond its inputs, outputs and code (the compiler's peak
    less those three: its `temp_size` alone leaves out buffers it places elsewhere), batch over the 4 chips."""
    model = nnx.eval_shape(lambda: CausalLM(CFG, rngs=nnx.Rngs(0)))
    model.remat = remat
    graphdef, params = nnx.split(model, nnx.Param)
    loss_fn = train.chunked_next_token_loss(chunk)

    def grads(params, batch):
        def mean_loss(p):
            loss_sum, tokens = loss_fn(nnx.merge(graphdef, p), batch)
            return loss_sum / tokens
        return jax.grad(mean_loss)(params)

    replicated, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P("fsdp"))
    params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), params)
    batch = {k: jax.ShapeDtypeStruct((B, T), jnp.int32, sharding=rows) for k in ("inputs", "targets")}
    batch["loss_mask"] = jax.ShapeDtypeStruct((B, T), jnp.float32, sharding=rows)
    compiled = jax.jit(grads).lower(params, batch).compile()
    m = compiled.memory_analysis()
    return (m.peak_memory_in_bytes - m.argument_size_in_bytes - m.output_size_in_bytes
            - m.generated_code_size_in_bytes)


def test_remat_and_the_chunked_loss_shrink_the_tpu_step(v5e_mesh):
    """Per chip: [2, 512] tokens, 4 layers; each layer keeps its [2, 4, 512, 512] attention probabilities (8 MiB)
    and MLP activations without remat, and the loss keeps [2, 512, 8192] float32 logits (32 MiB) unchunked."""
    none = _per_chip_working_memory(v5e_mesh, "none", 0)
    full = _per_chip_working_memory(v5e_mesh, "full", 0)
    full_chunked = _per_chip_working_memory(v5e_mesh, "full", 128)
    assert full < 0.5 * none, (full, none)
    assert full_chunked < full, (full_chunked, full)
    print(f"per-chip working memory: none {none / 2**20:.1f} MiB, full {full / 2**20:.1f} MiB, "
          f"full + loss_chunk=128 {full_chunked / 2**20:.1f} MiB")
