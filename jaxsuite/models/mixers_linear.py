"""Linear-attention mixers: a constant-size recurrent state instead of a KV cache, computed by kernels_pallas.

All four kinds share one layer shape (HypeNet's Lightning layer, which the others extend with a learned decay):
    q, k, v projections -> optional per-head q/k RMSNorm -> optional RoPE -> K/V repeated to all query heads
    -> recurrence (float32 state [B, H, K, V]) -> optional RMSNorm over the concatenated heads (o_norm)
    -> optional sigmoid output gate (z_proj) -> o_proj.
The recurrence S_t = decay_t * S_{t-1} + update_t, o_t = scale * q_t S_t differs by kind:
    lightning    decay exp(g_gamma[h]), fixed per head (ALiBi slopes): kp.simple_gla(g_gamma=...)
    simple_gla   decay exp(g_t[h]),   g = logsigmoid(g_proj(x)) / 16: kp.simple_gla(g=...)
    gla          decay exp(g_t[h, :]) per key channel, g = logsigmoid(low-rank gk projection) / 16: kp.gla
    gated_delta  decay exp(g_t[h]), g = -exp(A_log) * softplus(a_proj(x) + dt_bias), and the delta-rule update
                 beta_t k_t^T (v_t - k_t S) with beta = sigmoid(b_proj(x)); q and k are L2-normalised per head
                 (the delta rule needs |k| = 1 to stay a contraction): kp.gated_delta_rule
The learned-decay forms (the /16 gate normaliser, the A_log / dt_bias parameterisation and its initialisation)
follow flash-linear-attention's GLA / GatedDeltaNet layers; the short convolutions those layers add are not
implemented (HypeNet's released checkpoints have none).

Left-padding in decode: a pad token's k and v are zeroed and its log-decay set to 0 (decay exactly 1; beta 0 for the
delta rule), so a pad neither adds to nor decays the state, and a row's state after its prompt equals that of the
row run alone.
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

import kernels_pallas as kp
from jax.sharding import PartitionSpec as P

from jaxsuite.core.sharding import activation_spec, constrain, current_sharding, mesh_platform
from jaxsuite.models.context import LayerContext
from jaxsuite.models.layers import Einsum, RMSNorm, apply_rope
from jaxsuite.models.mixer_specs import GATED_DELTA, GLA, SIMPLE_GLA, MixerSpec

GATE_LOGIT_NORMALIZER = 16.0   # fla's gate_logit_normalizer: keeps initial decays close to 1
GLA_GATE_RANK = 16             # fla's gate_low_rank_dim for GLA's per-channel decay


def _l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    x32 = x.astype(jnp.float32)
    return x32 * jax.lax.rsqrt(jnp.sum(jnp.square(x32), axis=-1, keepdims=True) + eps)


def _delta_decay_params(heads: int, rngs: nnx.Rngs, param_dtype) -> tuple[nnx.Param, nnx.Param]:
    """fla's initialisation: A ~ U(1, 16) (decay rates), dt log-uniform in [1e-3, 0.1], dt_bias = softplus^-1(dt)."""
    key_a, key_dt = jax.random.split(rngs.params())
    a = jax.random.uniform(key_a, (heads,), jnp.float32, 1.0, 16.0)
    dt = jnp.exp(jax.random.uniform(key_dt, (heads,), jnp.float32, math.log(1e-3), math.log(0.1)))
    a_log = nnx.Param(jnp.log(a).astype(param_dtype), logical_axes=("q_heads",))
    dt_bias = nnx.Param((dt + jnp.log(-jnp.expm1(-dt))).astype(param_dtype), logical_axes=("q_heads",))
    return a_log, dt_bias


class LinearMixer(nnx.Module):
    """One linear-attention layer of any kind in `LINEAR_KINDS`; see the module docstring."""

    def __init__(self, spec: MixerSpec, hidden_size: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        d, n, kv, hd = hidden_size, spec.num_heads, spec.num_kv_heads, spec.head_dim
        self.spec = spec
        # Static (part of the graphdef): the kernels_pallas implementation of the chunked recurrence. It starts
        # as the architecture's; the training loop replaces it with train.linear_kernel when that is set, so a
        # pod config can ask for its target's kernel ("auto") without changing the saved architecture.
        self.implementation = spec.implementation
        self.scale = spec.scale if spec.scale is not None else hd ** -0.5
        kw = dict(rngs=rngs, param_dtype=param_dtype)
        self.q_proj = Einsum("btd,dnh->btnh", (d, n, hd), ("embed", "q_heads", "head_dim"), **kw)
        self.k_proj = Einsum("btd,dkh->btkh", (d, kv, hd), ("embed", "kv_heads", "head_dim"), **kw)
        self.v_proj = Einsum("btd,dkh->btkh", (d, kv, hd), ("embed", "kv_heads", "head_dim"), **kw)
        self.o_proj = Einsum("btnh,nhd->btd", (n, hd, d), ("q_heads", "head_dim", "embed"), **kw)
        self.z_proj = (Einsum("btd,dnh->btnh", (d, n, hd), ("embed", "q_heads", "head_dim"), **kw)
                       if spec.output_gate else None)
        # o_norm normalises the whole concatenated n*hd vector; its weight is stored flat, as in HypeNet's checkpoint.
        self.o_norm = RMSNorm(n * hd, spec.eps, param_dtype=param_dtype) if spec.output_norm else None
        if spec.qk_norm:
            self.q_norm = RMSNorm(hd, spec.eps, param_dtype=param_dtype)
            self.k_norm = RMSNorm(hd, spec.eps, param_dtype=param_dtype)
        else:
            self.q_norm = self.k_norm = None
        # The learned decays (none for Lightning, whose decay is fixed). Each attribute is assigned once, to a
        # module or None, because NNX fixes an attribute's pytree status at its first assignment.
        kind = spec.kind
        self.g_proj = (Einsum("btd,dn->btn", (d, n), ("embed", "q_heads"), bias_shape=(n,), bias_axes=("q_heads",),
                              **kw) if kind == SIMPLE_GLA else None)
        self.gk_down = Einsum("btd,dr->btr", (d, GLA_GATE_RANK), ("embed", None), **kw) if kind == GLA else None
        self.gk_up = (Einsum("btr,rnh->btnh", (GLA_GATE_RANK, n, hd), (None, "q_heads", "head_dim"),
                             bias_shape=(n, hd), bias_axes=("q_heads", "head_dim"), **kw) if kind == GLA else None)
        delta = kind == GATED_DELTA
        self.a_proj = Einsum("btd,dn->btn", (d, n), ("embed", "q_heads"), **kw) if delta else None
        self.b_proj = Einsum("btd,dn->btn", (d, n), ("embed", "q_heads"), **kw) if delta else None
        self.A_log, self.dt_bias = _delta_decay_params(n, rngs, param_dtype) if delta else (None, None)

    @property
    def g_gamma(self) -> jax.Array:
        return jnp.asarray(kp.lightning_g_gamma(self.spec.num_heads), jnp.float32)   # [H], the same in every layer

    # --- pieces ---------------------------------------------------------------------------------------------------
    def _qkv(self, x: jax.Array, ctx: LayerContext) -> tuple[jax.Array, jax.Array, jax.Array]:
        """float32 q, k, v [B, T, H, Hd] with K/V repeat-interleaved to all H query heads."""
        spec = self.spec
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if spec.use_rope:
            cos, sin = ctx.rope(spec.head_dim)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        group = spec.num_heads // spec.num_kv_heads
        if group > 1:                                    # query head j uses KV head j // group (GQA -> MHA)
            k, v = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)
        if spec.kind == GATED_DELTA:
            q, k = _l2_normalize(q), _l2_normalize(k)
        q = constrain(q, ("act_batch", "act_length", "act_heads", None))
        k = constrain(k, ("act_batch", "act_length", "act_heads", None))
        v = constrain(v, ("act_batch", "act_length", "act_heads", None))
        return q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32)

    def _gates(self, x: jax.Array) -> tuple[jax.Array | None, jax.Array | None]:
        """(log-decay g, beta) for this call: g [B, T, H] (gla: [B, T, H, K]) float32, beta [B, T, H] or None.
        Lightning returns g None (its fixed g_gamma is applied by the kernel)."""
        kind = self.spec.kind
        if kind == SIMPLE_GLA:
            return jax.nn.log_sigmoid(self.g_proj(x).astype(jnp.float32)) / GATE_LOGIT_NORMALIZER, None
        if kind == GLA:
            gk = self.gk_up(self.gk_down(x)).astype(jnp.float32)                     # [B, T, H, K]
            return jax.nn.log_sigmoid(gk) / GATE_LOGIT_NORMALIZER, None
        if kind == GATED_DELTA:
            a = self.a_proj(x).astype(jnp.float32) + self.dt_bias[...].astype(jnp.float32)
            g = -jnp.exp(self.A_log[...].astype(jnp.float32)) * jax.nn.softplus(a)   # [B, T, H]
            return g, jax.nn.sigmoid(self.b_proj(x).astype(jnp.float32))
        return None, None

    def _out(self, x: jax.Array, o: jax.Array) -> jax.Array:
        """o [B, T, H, Hd] float32 -> o_norm over H*Hd -> * sigmoid(z_proj(x)) -> o_proj -> [B, T, D]."""
        b, t, n, hd = o.shape
        o = o.astype(x.dtype)
        if self.o_norm is not None:
            o = self.o_norm(o.reshape(b, t, n * hd)).reshape(b, t, n, hd)
        if self.z_proj is not None:
            o = o * jax.nn.sigmoid(self.z_proj(x))
        o = constrain(o, ("act_batch", "act_length", "act_heads", None))
        return self.o_proj(o)

    def _recurrence(self, q, k, v, g, beta, *, initial_state=None, segment_ids=None, final_state=False):
        """The chunked kernel of this kind over T tokens: (o [B, T, H, V] float32, final state or None).

        Under a mesh it runs per shard in `shard_map` over the batch and head axes the activations are sharded
        on (each row and head is its own recurrence; T is kept whole). The Pallas kernels need this: a custom
        call cannot be partitioned by XLA (Mosaic refuses; a Triton call would be gathered onto every device)."""
        # The platform is the mesh's (the compile target), not this host's: a deviceless compile for a TPU
        # topology traces here on a CPU and must still get the TPU kernel when the config asks for one.
        kw = dict(scale=self.scale, output_final_state=final_state, implementation=self.implementation,
                  platform=mesh_platform())
        kind = self.spec.kind
        args = dict(q=q, k=k, v=v, g=g, beta=beta, initial_state=initial_state, segment_ids=segment_ids,
                    g_gamma=self.g_gamma if g is None else None)      # Lightning's fixed decay, unless given per token
        args = {name: x for name, x in args.items() if x is not None}

        def run(a):
            common = dict(initial_state=a.get("initial_state"), segment_ids=a.get("segment_ids"), **kw)
            if kind == GLA:
                return kp.gla(a["q"], a["k"], a["v"], a["g"], **common)
            if kind == GATED_DELTA:
                return kp.gated_delta_rule(a["q"], a["k"], a["v"], a["g"], a["beta"], **common)
            if "g_gamma" in a:
                return kp.simple_gla(a["q"], a["k"], a["v"], g_gamma=a["g_gamma"], **common)
            return kp.simple_gla(a["q"], a["k"], a["v"], g=a["g"], **common)

        context = current_sharding()
        if context is None:
            return run(args)
        mesh, rules = context
        tokens = activation_spec(q.shape, ("act_batch", None, "act_heads", None), mesh, rules)   # [B, T, H, K]
        b, h = tokens[0], tokens[2]
        g_spec = P(b, None, h, None) if g is not None and g.ndim == 4 else P(b, None, h)    # gla: [B, T, H, K]
        specs = dict(q=tokens, k=tokens, v=P(b, None, h, None), g=g_spec, beta=P(b, None, h),
                     initial_state=P(b, h, None, None), segment_ids=P(b, None), g_gamma=P(h))
        out_specs = (P(b, None, h, None), P(b, h, None, None) if final_state else None)
        return jax.shard_map(run, mesh=mesh, in_specs=({name: specs[name] for name in args},),
                             out_specs=out_specs, check_vma=False)(args)

    def _step(self, q, k, v, g, beta, state):
        """One token: q, k [B, H, K], v [B, H, V], g [B, H] (gla [B, H, K]) -> (o [B, H, V], new state)."""
        kind = self.spec.kind
        if kind == GLA:
            return kp.gla_step(q, k, v, g, state=state, scale=self.scale)
        if kind == GATED_DELTA:
            return kp.gated_delta_rule_step(q, k, v, g, beta, state=state, scale=self.scale)
        return kp.simple_gla_step(q, k, v, g=g, state=state, scale=self.scale)

    # --- the mixer interface -------------------------------------------------------------------------------------
    def __call__(self, x: jax.Array, ctx: LayerContext) -> jax.Array:
        """x [B, T, D] -> [B, T, D]; ctx.segment_ids reset the recurrent state at every segment start."""
        q, k, v = self._qkv(x, ctx)
        g, beta = self._gates(x)
        o, _ = self._recurrence(q, k, v, g, beta, segment_ids=ctx.segment_ids)
        return self._out(x, o)

    def decode(self, x: jax.Array, ctx: LayerContext, layer_cache: dict[str, jax.Array]
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Advances the constant-size state {"state": [B, H, K, V] float32} over this call's T tokens."""
        q, k, v = self._qkv(x, ctx)
        g, beta = self._gates(x)
        b, t = x.shape[:2]
        if g is None:                                       # Lightning: the fixed decay, per token so pads can skip it
            g = jnp.broadcast_to(self.g_gamma[None, None, :], (b, t, self.spec.num_heads))
        keep = ctx.token_mask                               # [B, T]
        k, v = jnp.where(keep[:, :, None, None], k, 0.0), jnp.where(keep[:, :, None, None], v, 0.0)
        g = jnp.where(keep.reshape(keep.shape + (1,) * (g.ndim - 2)), g, 0.0)
        if beta is not None:
            beta = jnp.where(keep[:, :, None], beta, 0.0)
        state = layer_cache["state"]
        if t == 1:
            o, state = self._step(q[:, 0], k[:, 0], v[:, 0], g[:, 0], None if beta is None else beta[:, 0], state)
            o = o[:, None]
        else:
            o, state = self._recurrence(q, k, v, g, beta, initial_state=state, final_state=True)
        return self._out(x, o), {"state": state}

    def init_cache(self, batch: int, max_length: int, dtype: Any = None) -> dict[str, jax.Array]:
        """The recurrent state, float32 whatever the compute dtype; max_length is irrelevant (constant size)."""
        hd = self.spec.head_dim
        return {"state": jnp.zeros((batch, self.spec.num_heads, hd, hd), jnp.float32)}

