"""The latent reasoning head (LatentChem, arXiv 2602.07075; Coconut, arXiv 2412.06769) on any jaxsuite LM.

The model thinks in continuous space between `<start_latent>` and `<end_latent>`: at each latent step the last
hidden state h goes through the projector, h + MLP(LN(h)), and comes back in as the next input embedding
instead of a sampled token. It stops when the LM head's argmax at the current position is `<end_latent>`
(the model chooses how long to think) or at `max_steps`, then writes its answer in text.

Molecules enter the prompt as `<mol_start>` + Q `<mol_pad>` placeholders + `<mol_end>`. The adapter turns a
molecule encoder's token features into Q soft tokens that take the placeholders' place: Q learned queries
cross-attend over the layer-normed features, residual + LayerNorm, then a linear map to the LM width. The
optional updater lets the soft tokens attend to the latent states so far (residual LN, FFN d -> 2d ReLU -> d,
LN) and rewrites them in the prefix at every latent step.

Two ways to run the latent loop, with the same result:
  * training (`latent_forward`): a fixed-shape batch where each row has its own latent slots; latent step j is
    one full forward over the padded sequence. Causality makes this exact: the hidden state before slot j
    depends only on what precedes it, which is final by then. Gradients flow through the whole chain, as in
    Coconut.
  * inference (`latent_prefill`, a `jaxsuite.generate` prefill hook): the prompt goes into the KV cache once,
    and each latent step is one cached decode step with the projected state as `inputs_embeds`. Rows that
    have stopped write masked slots, so each row stops on its own, in one batch. With the updater on, the
    prefix changes at every step and cannot stay cached: the loop recomputes the whole sequence each step
    (`recompute=True`) and fills the cache once at the end.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import jax
import jax.numpy as jnp
from flax import nnx

from jaxsuite.generate import Prefilled, PrefillHook
from jaxsuite.models.layers import const_param, normal_param


@dataclasses.dataclass(frozen=True)
class LatentTokens:
    """Ids of the special tokens (they must lie inside the model's vocabulary)."""
    start_latent: int
    end_latent: int
    latent: int          # the placeholder written at latent slots in training sequences
    mol_start: int
    mol_end: int
    mol_pad: int         # one per molecule soft token

    @classmethod
    def after(cls, first_free_id: int) -> "LatentTokens":
        """Six consecutive ids from `first_free_id` (259 for the byte tokenizer, a reserved range for Qwen3)."""
        i = int(first_free_id)
        return cls(i, i + 1, i + 2, i + 3, i + 4, i + 5)

    def names(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class LayerNorm(nnx.Module):
    def __init__(self, dim: int, *, param_dtype=jnp.float32, eps: float = 1e-5):
        self.scale = const_param(1.0, (dim,), param_dtype, ("embed",))
        self.bias = const_param(0.0, (dim,), param_dtype, ("embed",))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = x32.mean(-1, keepdims=True)
        var = ((x32 - mean) ** 2).mean(-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * self.scale[...] + self.bias[...]).astype(x.dtype)


class Dense(nnx.Module):
    def __init__(self, d_in: int, d_out: int, axes: tuple[str | None, str | None], *, rngs: nnx.Rngs,
                 param_dtype=jnp.float32, std: float | None = None):
        self.kernel = normal_param(rngs, (d_in, d_out), param_dtype, axes, std=std or 1.0 / math.sqrt(d_in))
        self.bias = const_param(0.0, (d_out,), param_dtype, (axes[1],))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.einsum("...i,io->...o", x, self.kernel[...].astype(x.dtype)) + self.bias[...].astype(x.dtype)


class LatentProjector(nnx.Module):
    """h + MLP(LN(h)), MLP d -> 4d GELU -> d: the next input embedding from the last hidden state."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.norm = LayerNorm(dim, param_dtype=param_dtype)
        self.up = Dense(dim, 4 * dim, ("embed", "mlp"), rngs=rngs, param_dtype=param_dtype)
        # a small output init keeps the projector near the identity at the start (continuous thoughts have
        # large norms already; Coconut's issue tracker warns about it)
        self.down = Dense(4 * dim, dim, ("mlp", "embed"), rngs=rngs, param_dtype=param_dtype, std=0.02)

    def __call__(self, h: jax.Array) -> jax.Array:
        return h + self.down(jax.nn.gelu(self.up(self.norm(h))))


class CrossAttention(nnx.Module):
    """Queries [B, Q, D] attend over keys/values [B, L, Dk] where `kv_mask` [B, L]; -> [B, Q, D]."""

    def __init__(self, dim: int, kv_dim: int, heads: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = Dense(dim, dim, ("embed", "mlp"), rngs=rngs, param_dtype=param_dtype)
        self.k = Dense(kv_dim, dim, ("embed", "mlp"), rngs=rngs, param_dtype=param_dtype)
        self.v = Dense(kv_dim, dim, ("embed", "mlp"), rngs=rngs, param_dtype=param_dtype)
        self.o = Dense(dim, dim, ("mlp", "embed"), rngs=rngs, param_dtype=param_dtype)

    def __call__(self, x: jax.Array, kv: jax.Array, kv_mask: jax.Array) -> jax.Array:
        b, q_len, d = x.shape
        h = self.heads
        q = self.q(x).reshape(b, q_len, h, d // h)                                  # [B, Q, H, Dh]
        k = self.k(kv).reshape(b, kv.shape[1], h, d // h)                           # [B, L, H, Dh]
        v = self.v(kv).reshape(b, kv.shape[1], h, d // h)
        scores = jnp.einsum("bqhd,blhd->bhql", q, k).astype(jnp.float32) / math.sqrt(d // h)
        scores = jnp.where(kv_mask[:, None, None, :], scores, -1e30)
        weights = jax.nn.softmax(scores, axis=-1)
        # a row with nothing to attend to (no latent yet) contributes nothing rather than a uniform average
        weights = jnp.where(kv_mask.any(-1)[:, None, None, None], weights, 0.0).astype(x.dtype)
        out = jnp.einsum("bhql,blhd->bqhd", weights, v).reshape(b, q_len, d)       # [B, Q, D]
        return self.o(out)


class MoleculeAdapter(nnx.Module):
    """Q learned queries cross-attend over LN(encoder features) [B, L, Df]; residual + LN; Linear(Df -> d)."""

    def __init__(self, feature_dim: int, model_dim: int, num_queries: int, heads: int, *, rngs: nnx.Rngs,
                 param_dtype=jnp.float32):
        self.queries = normal_param(rngs, (num_queries, feature_dim), param_dtype, (None, "embed"))
        self.feature_norm = LayerNorm(feature_dim, param_dtype=param_dtype)
        self.attn = CrossAttention(feature_dim, feature_dim, heads, rngs=rngs, param_dtype=param_dtype)
        self.out_norm = LayerNorm(feature_dim, param_dtype=param_dtype)
        self.proj = Dense(feature_dim, model_dim, ("mlp", "embed"), rngs=rngs, param_dtype=param_dtype)

    def __call__(self, features: jax.Array, mask: jax.Array) -> jax.Array:
        b = features.shape[0]
        q = jnp.broadcast_to(self.queries[...].astype(features.dtype), (b,) + self.queries.shape)   # [B, Q, Df]
        x = self.out_norm(q + self.attn(q, self.feature_norm(features), mask))
        return self.proj(x)                                                         # [B, Q, D]


class LatentUpdater(nnx.Module):
    """Molecule soft tokens [B, Q, D] attend to the latent states so far [B, K, D]; residual LN, FFN, LN."""

    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.attn = CrossAttention(dim, dim, heads, rngs=rngs, param_dtype=param_dtype)
        self.norm1 = LayerNorm(dim, param_dtype=param_dtype)
        self.ffn_in = Dense(dim, 2 * dim, ("embed", "mlp"), rngs=rngs, param_dtype=param_dtype)
        self.ffn_out = Dense(2 * dim, dim, ("mlp", "embed"), rngs=rngs, param_dtype=param_dtype)
        self.norm2 = LayerNorm(dim, param_dtype=param_dtype)

    def __call__(self, mol: jax.Array, latents: jax.Array, latent_mask: jax.Array) -> jax.Array:
        x = self.norm1(mol + self.attn(mol, latents, latent_mask))
        return self.norm2(x + self.ffn_out(jax.nn.relu(self.ffn_in(x))))


class LatentReasoner(nnx.Module):
    """A jaxsuite LM plus the latent projector (and, with molecules, the adapter and the updater).

    It implements the LM contract (`jaxsuite.models.LanguageModel`) by delegating to its backbone, so
    `jaxsuite.generate`, the train step and the RL core use it as they use the bare LM.
    """

    def __init__(self, backbone: nnx.Module, tokens: LatentTokens, *, mol_feature_dim: int = 0,
                 num_queries: int = 0, heads: int = 4, use_updater: bool = False, rngs: nnx.Rngs):
        vocab = backbone.config.vocab_size
        if max(tokens.names().values()) >= vocab:
            raise ValueError(f"latent token ids {tokens.names()} must lie inside the model's vocabulary ({vocab})")
        if use_updater and not num_queries:
            raise ValueError("the updater refreshes molecule soft tokens: it needs num_queries > 0")
        dim = backbone.config.hidden_size
        self.backbone, self.tokens = backbone, tokens
        self.projector = LatentProjector(dim, rngs=rngs)
        self.adapter = (MoleculeAdapter(mol_feature_dim, dim, num_queries, heads, rngs=rngs)
                        if num_queries else None)
        self.updater = LatentUpdater(dim, heads, rngs=rngs) if use_updater else None
        self.num_queries = num_queries

    # -- the LM contract, delegated
    @property
    def config(self):
        return self.backbone.config

    @property
    def dtype(self):
        return self.backbone.dtype

    def embed(self, input_ids):
        return self.backbone.embed(input_ids)

    def __call__(self, input_ids=None, **kw):
        return self.backbone(input_ids, **kw)

    def hidden_states(self, input_ids=None, **kw):
        return self.backbone.hidden_states(input_ids, **kw)

    def logits(self, hidden):
        return self.backbone.logits(hidden)

    def init_cache(self, batch_size: int, max_length: int, dtype=None):
        return self.backbone.init_cache(batch_size, max_length, dtype)

    def decode(self, input_ids, positions, cache, **kw):
        return self.backbone.decode(input_ids, positions, cache, **kw)

    def policy_logits(self, batch: dict) -> jax.Array:
        """Logits of an RL batch (jaxsuite.rl.policy): the latent slots in batch["latent_slots"] are re-run
        from the prompt, so the answer's log-probs and their gradients go through the thoughts."""
        logits, _ = latent_forward(self, batch["inputs"], batch["positions"], batch["latent_slots"],
                                   mol_features=batch.get("mol_features"), mol_mask=batch.get("mol_mask"))
        return logits

    # -- embeddings with molecule soft tokens
    def soft_tokens(self, mol_features: jax.Array | None, mol_mask: jax.Array | None) -> jax.Array | None:
        if self.adapter is None or mol_features is None:
            return None
        return self.adapter(mol_features, mol_mask)                                # [B, Q, D]

    def place_soft_tokens(self, embeds: jax.Array, ids: jax.Array, soft: jax.Array | None) -> jax.Array:
        """The k-th `<mol_pad>` of each row takes soft token k. embeds [B, T, D], ids [B, T], soft [B, Q, D]."""
        if soft is None:
            return embeds
        is_pad = ids == self.tokens.mol_pad                                         # [B, T]
        rank = jnp.clip(jnp.cumsum(is_pad, axis=1) - 1, 0, soft.shape[1] - 1)
        picked = jnp.take_along_axis(soft, rank[..., None], axis=1)                # [B, T, D]
        return jnp.where(is_pad[..., None], picked.astype(embeds.dtype), embeds)

    def prompt_embeds(self, ids: jax.Array, mol_features=None, mol_mask=None) -> tuple[jax.Array, jax.Array | None]:
        soft = self.soft_tokens(mol_features, mol_mask)
        return self.place_soft_tokens(self.backbone.embed(ids), ids, soft), soft


# --- training: every latent slot filled from the hidden state before it -----------------------------------------
def corrupt_latents(z: jax.Array, mode: str, rng: jax.Array | None) -> jax.Array:
    """The causal test's interventions on a projected latent [B, D]: "zeros", or "noise" (Gaussian with the
    latent's own per-row RMS, so only the content, not the scale, is destroyed)."""
    if mode == "none":
        return z
    if mode == "zeros":
        return jnp.zeros_like(z)
    if mode == "noise":
        rms = jnp.sqrt(jnp.mean(jnp.square(z.astype(jnp.float32)), axis=-1, keepdims=True))
        return (jax.random.normal(rng, z.shape, jnp.float32) * rms).astype(z.dtype)
    raise ValueError(f"unknown latent corruption {mode!r}; expected none, zeros or noise")


def latent_forward(model: LatentReasoner, ids: jax.Array, positions: jax.Array, latent_slots: jax.Array, *,
                   segment_ids: jax.Array | None = None, mol_features=None, mol_mask=None,
                   corrupt: str = "none", rng: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Logits [B, T, V] of a training batch whose rows hold latent slots, and the latents [B, K, D].

    latent_slots [B, K] int: the sequence index of each row's j-th latent slot, -1 where a row has fewer than
    K (K is static: one compilation per curriculum stage). Slot j is filled with projector(h at slot - 1),
    computed by a full forward with the slots before it already filled (K + 1 forwards in all).
    """
    embeds, soft0 = model.prompt_embeds(ids, mol_features, mol_mask)              # [B, T, D]
    b, t, d = embeds.shape
    k = latent_slots.shape[1]
    arange_t = jnp.arange(t)

    # One loop body, not K unrolled forwards: the program then holds the model once, which is what lets the
    # 8B config's step compile (unrolled, its 15 forwards of 36 layers needed over 21 GB of host memory).
    # nnx.fori_loop, with the module in the carry: NNX transforms inside the body (per-layer nnx.remat) may not
    # touch Variables the loop's trace did not create.
    def fill_slot(j, carry):
        model, embeds, latents = carry
        hidden = model.hidden_states(inputs_embeds=embeds, positions=positions, segment_ids=segment_ids)
        slot = jax.lax.dynamic_index_in_dim(latent_slots, j, axis=1, keepdims=False)   # [B]
        valid = slot >= 0
        prev = jnp.take_along_axis(hidden, jnp.maximum(slot - 1, 0)[:, None, None], axis=1)[:, 0]   # [B, D]
        z = model.projector(prev)
        if corrupt != "none":
            z = corrupt_latents(z, corrupt, None if rng is None else jax.random.fold_in(rng, j))
        z = jnp.where(valid[:, None], z, 0.0).astype(embeds.dtype)
        latents = jax.lax.dynamic_update_index_in_dim(latents, z, j, axis=1)
        at_slot = (arange_t[None, :] == slot[:, None]) & valid[:, None]             # [B, T]
        embeds = jnp.where(at_slot[..., None], z[:, None, :], embeds)
        if model.updater is not None and soft0 is not None:
            mask = (jnp.arange(k)[None, :] <= j) & (latent_slots >= 0)              # latents so far
            embeds = model.place_soft_tokens(embeds, ids, model.updater(soft0, latents, mask))
        return model, embeds, latents

    latents = jnp.zeros((b, k, d), embeds.dtype)
    model, embeds, latents = nnx.fori_loop(0, k, fill_slot, (model, embeds, latents))
    hidden = model.hidden_states(inputs_embeds=embeds, positions=positions, segment_ids=segment_ids)
    return model.logits(hidden), latents


# --- inference: a prefill hook for jaxsuite.generate -------------------------------------------------------------
def latent_prefill(model: LatentReasoner, ids, positions, mask, cache, hook_inputs, *, max_steps: int,
                   recompute: bool = False, corrupt: str = "none") -> Prefilled:
    """A `jaxsuite.generate.PrefillHook` (bound by `latent_hook`): prefill the prompt (which ends with
    `<start_latent>`), think for up to `max_steps` latent steps with per-row adaptive stopping, then feed
    `<end_latent>`. Returns the logits after `<end_latent>` [B, V], the cache, the next positions [B] and
    extras {"latent_steps": [B]}. Needs `extra_cache_slots = max_steps + 1`.

    hook_inputs: None or a dict with "mol_features" [B, L, Df], "mol_mask" [B, L] and, for corrupt="noise",
    "rng" (a key).
    """
    hook_inputs = hook_inputs or {}
    tokens = model.tokens
    rng = hook_inputs.get("rng")
    embeds, soft0 = model.prompt_embeds(ids, hook_inputs.get("mol_features"), hook_inputs.get("mol_mask"))
    b, p, d = embeds.shape
    next_pos = positions[:, -1] + 1

    def project(h, j):
        z = model.projector(h)
        if corrupt != "none":
            z = corrupt_latents(z, corrupt, None if rng is None else jax.random.fold_in(rng, j))
        return z

    if not recompute:
        logits, cache, hidden = model.decode(None, positions, cache, token_mask=mask, inputs_embeds=embeds,
                                             return_hidden=True)

        def cond(c):
            j, _, _, done, *_ = c
            return (j < max_steps) & ~jnp.all(done)

        def body(c):
            j, last_h, last_logits, done, steps, pos, cache = c
            done = done | (jnp.argmax(last_logits, -1) == tokens.end_latent)
            active = ~done
            z = project(last_h, j)
            lg, cache, h = model.decode(None, pos[:, None], cache, token_mask=active[:, None],
                                        inputs_embeds=z[:, None].astype(embeds.dtype), return_hidden=True)
            last_h = jnp.where(active[:, None], h[:, 0], last_h)
            last_logits = jnp.where(active[:, None], lg[:, 0], last_logits)
            return j + 1, last_h, last_logits, done, steps + active, pos + active, cache

        carry = (jnp.int32(0), hidden[:, -1], logits[:, -1], jnp.zeros((b,), bool), jnp.zeros((b,), jnp.int32),
                 next_pos, cache)
        _, _, _, _, steps, next_pos, cache = jax.lax.while_loop(cond, body, carry)
    else:
        # The updater rewrites the prefix at every step: recompute the whole buffer, cache it once at the end.
        buf = jnp.concatenate([embeds, jnp.zeros((b, max_steps, d), embeds.dtype)], axis=1)   # [B, P+M, D]
        buf_ids = jnp.concatenate([ids, jnp.full((b, max_steps), tokens.latent, ids.dtype)], axis=1)
        buf_pos = jnp.concatenate([positions, next_pos[:, None] + jnp.arange(max_steps)[None, :]], axis=1)
        valid = jnp.concatenate([mask, jnp.zeros((b, max_steps), bool)], axis=1)
        latents = jnp.zeros((b, max_steps, d), embeds.dtype)
        done = jnp.zeros((b,), bool)
        steps = jnp.zeros((b,), jnp.int32)
        for j in range(max_steps):        # static and small; rows that stopped only write masked slots
            hidden = model.hidden_states(inputs_embeds=buf, positions=buf_pos,
                                         segment_ids=valid.astype(jnp.int32))
            last = p - 1 + j                                                          # the newest slot
            h = hidden[:, last]
            done = done | (jnp.argmax(model.logits(h[:, None])[:, 0], -1) == tokens.end_latent) | ~valid[:, last]
            active = ~done
            z = jnp.where(active[:, None], project(h, j), 0.0).astype(buf.dtype)
            buf = buf.at[:, p + j].set(z)
            valid = valid.at[:, p + j].set(active)
            latents = latents.at[:, j].set(z)
            steps = steps + active
            if model.updater is not None and soft0 is not None:
                lmask = (jnp.arange(max_steps)[None, :] <= j) & (jnp.arange(max_steps)[None, :] < steps[:, None])
                buf = model.place_soft_tokens(buf, buf_ids, model.updater(soft0, latents, lmask))
        _, cache = model.decode(None, buf_pos, cache, token_mask=valid, inputs_embeds=buf)
        next_pos = next_pos + steps
    end = jnp.full((b, 1), tokens.end_latent, jnp.int32)
    logits, cache = model.decode(end, next_pos[:, None], cache)
    return Prefilled(logits[:, 0], cache, next_pos + 1, {"latent_steps": steps})


def molecule_prefill(model: LatentReasoner, ids, positions, mask, cache, hook_inputs) -> Prefilled:
    """A `PrefillHook` that only places the molecule soft tokens (a CoT or answer-only model with the adapter)."""
    hook_inputs = hook_inputs or {}
    embeds, _ = model.prompt_embeds(ids, hook_inputs.get("mol_features"), hook_inputs.get("mol_mask"))
    logits, cache = model.decode(None, positions, cache, token_mask=mask, inputs_embeds=embeds)
    return Prefilled(logits[:, -1], cache, positions[:, -1] + 1, {})


@functools.lru_cache(maxsize=None)
def latent_hook(max_steps: int, recompute: bool = False, corrupt: str = "none") -> PrefillHook:
    """One hashable hook object per setting (generate's jit keys on it)."""
    return functools.partial(latent_prefill, max_steps=int(max_steps), recompute=bool(recompute),
                             corrupt=str(corrupt))
