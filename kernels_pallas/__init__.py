"""kernels_pallas: chunked linear-attention recurrences for JAX (imports jax only).

Ops (shapes as in flash-linear-attention: q, k [B, T, H, K], v [B, T, H, V], states [B, H, K, V] float32):

    simple_gla(q, k, v, *, g=None, g_gamma=None, ...)   scalar decay per head (Lightning attention)
    gla(q, k, v, g, ...)                                per-channel decay
    gated_delta_rule(q, k, v, g, beta, ...)             gated delta rule (Gated DeltaNet)
    simple_gla_step / gla_step / gated_delta_rule_step  one decoding token, O(K V) per head
    alibi_slopes(H), lightning_g_gamma(H)               HypeNet's fixed per-head decays

Every op takes ``implementation=``: "reference" (token-by-token scan, float32, the oracle), "xla"
(chunked jnp; the default on CPU and the fallback), "pallas" (the target platform's kernel: Triton on
GPU, Mosaic TPU on TPU), or "pallas_gpu" / "pallas_tpu" explicitly; ``interpret=True`` runs the Pallas
kernels on CPU. ``platform=`` ("cpu", "gpu", "tpu") names the target to compile for; by default it is
the platform of the inputs' devices (``dispatch.target_platform``). See README.md in this folder.
"""
from kernels_pallas.common import alibi_slopes, lightning_g_gamma
from kernels_pallas.dispatch import IMPLEMENTATIONS, PLATFORMS
from kernels_pallas.gated_delta_rule.api import gated_delta_rule, gated_delta_rule_step
from kernels_pallas.gated_delta_rule.reference import gated_delta_rule_reference
from kernels_pallas.gla.api import gla, gla_step
from kernels_pallas.gla.reference import gla_reference
from kernels_pallas.simple_gla.api import simple_gla, simple_gla_step
from kernels_pallas.simple_gla.reference import simple_gla_reference

__all__ = [
    "IMPLEMENTATIONS",
    "PLATFORMS",
    "alibi_slopes",
    "gated_delta_rule",
    "gated_delta_rule_reference",
    "gated_delta_rule_step",
    "gla",
    "gla_reference",
    "gla_step",
    "lightning_g_gamma",
    "simple_gla",
    "simple_gla_reference",
    "simple_gla_step",
]
