"""A small SMILES transformer encoder, pre-trained here with masked-token prediction, plus a hook for
precomputed features from an external encoder.

Why: LatentChem (../shared/reference/latentchem.md) feeds a chemistry LLM with per-token molecule features
from a frozen SMILES encoder (SMI-TED, 768-d), read by a molecule adapter of learned queries. SMI-TED is not
available offline, so this module gives two interchangeable sources of such features behind one Protocol,
`MoleculeFeatures.encode(smiles_list) -> (features [B, L, D], mask [B, L])`:
  * `EncoderFeatures`: our own `MoleculeEncoder` (pre-norm bidirectional transformer), pre-trained by
    `pretrain_encoder` with BERT's masked-token objective through the shared resumable `train_loop`;
  * `PrecomputedFeatures`: an .npz written elsewhere (e.g. SMI-TED run on another machine) and looked up by
    SMILES string, so the adapter code never depends on which encoder produced the features.

Conventions: position 0 of every encoded molecule is a CLS token (attended to and returned like the others);
padding is PAD=0 and is both masked out of attention (as keys) and zeroed in the returned features, so a
molecule's features do not depend on how far its row was padded.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import json
import re
import zipfile
from typing import IO, Any, Callable, Protocol, Sequence, runtime_checkable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxsuite.core import files, sharding as shd
from jaxsuite.core.train import cross_entropy
from jaxsuite.models.attention import dot_product_attention
from jaxsuite.models.layers import Einsum, Embed, RMSNorm, SwiGLU, const_param, normal_param

# --- tokenizer --------------------------------------------------------------------------------------------------
SPECIAL_TOKENS = ("<pad>", "<mask>", "<cls>", "<unk>")
PAD_ID, MASK_ID, CLS_ID, UNK_ID = range(len(SPECIAL_TOKENS))

# One alternative per SMILES lexical unit. Order matters: two-letter atoms before their one-letter prefixes,
# %nn before single digits. (In VERBOSE mode '#' inside a character class is literal, not a comment.)
_TOKEN_RE = re.compile(r"""
      \[[^\[\]]+\]      # bracket atom: isotope, element, chirality, H count, charge and class as ONE token
    | Br | Cl           # two-letter organic-subset atoms
    | [BCNOPSFI]        # one-letter organic-subset atoms
    | [bcnops]          # aromatic atoms
    | %\d\d             # two-digit ring-bond label
    | \d                # one-digit ring-bond label
    | [-=#$:/\\.~]      # bonds, directional bonds, disconnection
    | [()]              # branches
    | \*                # wildcard atom
""", re.VERBOSE)

# A fixed alphabet for common organic SMILES (drug-like sets: ChEMBL / ZINC style), used when no corpus is
# at hand to fit one; anything else maps to <unk>.
DEFAULT_ALPHABET: tuple[str, ...] = (
    "C", "c", "N", "n", "O", "o", "S", "s", "P", "p", "F", "Cl", "Br", "I", "B", "b", "*",
    *"123456789", "0", *(f"%{i}" for i in range(10, 21)),
    "(", ")", "-", "=", "#", "$", ":", "/", "\\", ".", "~",
    "[nH]", "[NH+]", "[NH2+]", "[NH3+]", "[NH4+]", "[N+]", "[N-]", "[n+]", "[n-]", "[O-]", "[OH-]", "[S-]",
    "[S+]", "[P+]", "[B-]", "[C-]", "[C@H]", "[C@@H]", "[C@]", "[C@@]", "[S@]", "[S@@]", "[N@]", "[N@@]",
    "[H]", "[2H]", "[13C]", "[Si]", "[Se]", "[se]", "[Na+]", "[K+]", "[Li+]", "[Cl-]", "[Br-]", "[I-]",
    "[Mg+2]", "[Ca+2]", "[Zn+2]", "[Fe]", "[Pt]", "[Sn]", "[Al]", "[As]", "[te]",
)


def tokenize_smiles(smiles: str) -> list[str]:
    """SMILES -> lexical tokens. Raises ValueError at the first character that is not SMILES syntax."""
    tokens, pos = [], 0
    while pos < len(smiles):
        m = _TOKEN_RE.match(smiles, pos)
        if m is None:
            raise ValueError(f"cannot tokenize SMILES {smiles!r}: {smiles[pos]!r} at position {pos} is not "
                             "SMILES syntax (unclosed '[' or a stray character?)")
        tokens.append(m.group())
        pos = m.end()
    return tokens


class SmilesTokenizer:
    """Token ids: the specials <pad>=0, <mask>=1, <cls>=2, <unk>=3, then `vocab` in order.

    encode() prepends <cls> and right-pads with <pad>; a molecule longer than max_len (CLS included) raises
    ValueError unless `truncate=True`, which silently keeps the first max_len tokens (the caller asked for it).
    """

    def __init__(self, vocab: Sequence[str]):
        vocab = list(vocab)
        clash = [t for t in vocab if t in SPECIAL_TOKENS]
        if clash or len(set(vocab)) != len(vocab):
            raise ValueError(f"vocab must hold distinct, non-special tokens (specials given: {clash})")
        self.tokens: list[str] = [*SPECIAL_TOKENS, *vocab]
        self.token_to_id: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def fit(cls, smiles_list: Sequence[str], min_count: int = 1) -> "SmilesTokenizer":
        """Vocabulary of the tokens occurring >= min_count times, most frequent first (ties by name)."""
        counts = collections.Counter(t for s in smiles_list for t in tokenize_smiles(s))
        return cls(sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t)))

    @classmethod
    def default(cls) -> "SmilesTokenizer":
        return cls(DEFAULT_ALPHABET)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def special_ids(self) -> tuple[int, ...]:
        return tuple(range(len(SPECIAL_TOKENS)))

    def encode(self, smiles: str, max_len: int, *, truncate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """-> (ids [L] int32, mask [L] bool), L = max_len, mask True on <cls> and the molecule's tokens."""
        if not smiles:
            raise ValueError("cannot encode an empty SMILES string")
        ids = [CLS_ID] + [self.token_to_id.get(t, UNK_ID) for t in tokenize_smiles(smiles)]
        if len(ids) > max_len:
            if not truncate:
                raise ValueError(f"SMILES {smiles!r} has {len(ids)} tokens with <cls>, more than max_len="
                                 f"{max_len}; raise max_len or pass truncate=True")
            ids = ids[:max_len]
        out = np.full((max_len,), PAD_ID, np.int32)
        out[:len(ids)] = ids
        return out, out != PAD_ID

    def encode_batch(self, smiles_list: Sequence[str], max_len: int, *,
                     truncate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """-> (ids [B, L] int32, mask [B, L] bool)."""
        ids = np.full((len(smiles_list), max_len), PAD_ID, np.int32)
        for row, smiles in enumerate(smiles_list):
            ids[row] = self.encode(smiles, max_len, truncate=truncate)[0]
        return ids, ids != PAD_ID

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """ids [L] -> SMILES; <pad> and <cls> are dropped, <mask>/<unk> are written out as such."""
        skip = (PAD_ID, CLS_ID)
        return "".join(self.tokens[int(i)] for i in np.asarray(ids).reshape(-1) if int(i) not in skip)

    def to_dict(self) -> dict[str, Any]:
        return {"format": "jaxsuite.smiles_tokenizer", "version": 1, "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SmilesTokenizer":
        tokens = list(d.get("tokens", []))
        if d.get("format") != "jaxsuite.smiles_tokenizer" or tuple(tokens[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError("not a SmilesTokenizer dict (format tag or special tokens do not match)")
        return cls(tokens[len(SPECIAL_TOKENS):])


def _atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """`write(f)` into memory, then files.atomic_write_bytes (local or bucket): a reader never sees half a file."""
    buf = io.BytesIO()
    write(buf)
    files.atomic_write_bytes(path, buf.getvalue())


# --- model ------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MolEncoderConfig:
    vocab_size: int | None = None   # None: taken from the tokenizer by pretrain_encoder
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    mlp_dim: int = 128
    max_len: int = 48               # positions, <cls> included
    norm_eps: float = 1e-6          # no dropout: the pre-training sets are small and runs short


class _SelfAttention(nnx.Module):
    """Bidirectional multi-head attention; the mask hides padding keys."""

    def __init__(self, cfg: MolEncoderConfig, *, rngs: nnx.Rngs):
        d, n = cfg.d_model, cfg.num_heads
        if d % n:
            raise ValueError(f"d_model={d} is not divisible by num_heads={n}")
        hd = d // n
        self.scale = hd ** -0.5
        self.q_proj = Einsum("bld,dnh->blnh", (d, n, hd), ("embed", "q_heads", "head_dim"), rngs=rngs)
        self.k_proj = Einsum("bld,dnh->blnh", (d, n, hd), ("embed", "kv_heads", "head_dim"), rngs=rngs)
        self.v_proj = Einsum("bld,dnh->blnh", (d, n, hd), ("embed", "kv_heads", "head_dim"), rngs=rngs)
        self.o_proj = Einsum("blnh,nhd->bld", (n, hd, d), ("q_heads", "head_dim", "embed"), rngs=rngs)

    def __call__(self, x: jax.Array, attn_mask: jax.Array) -> jax.Array:
        """x [B, L, D], attn_mask [B, L, L] bool -> [B, L, D]."""
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)                 # [B, L, N, Hd]
        out = dot_product_attention(q, k, v, attn_mask, self.scale)              # [B, L, N, Hd]
        out = shd.constrain(out, ("act_batch", "act_length", "act_heads", None))
        return self.o_proj(out)


class _EncoderBlock(nnx.Module):
    """Pre-norm: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: MolEncoderConfig, *, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = _SelfAttention(cfg, rngs=rngs)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.mlp_dim, rngs=rngs)

    def __call__(self, x: jax.Array, attn_mask: jax.Array) -> jax.Array:
        x = x + self.attn(self.attn_norm(x), attn_mask)
        return x + self.mlp(self.mlp_norm(x))


class MoleculeEncoder(nnx.Module):
    """Token + learned position embeddings -> pre-norm transformer blocks -> final RMSNorm.

    MLM head (`mlm_logits`): BERT's form, dense + GELU + norm, then the *tied* token-embedding matrix plus a
    per-token bias. Tying keeps the head small on a tiny vocabulary; the dense transform lets the encoder's
    output features differ from the input embedding space (the features, not the logits, are the product).
    """

    def __init__(self, config: MolEncoderConfig, *, rngs: nnx.Rngs):
        if config.vocab_size is None:
            raise ValueError("MolEncoderConfig.vocab_size is unset: use tokenizer.vocab_size")
        self.config = config
        d = config.d_model
        self.embed = Embed(config.vocab_size, d, rngs=rngs)
        self.pos_embed = normal_param(rngs, (config.max_len, d), jnp.float32, (None, "embed"))
        self.layers = nnx.List([_EncoderBlock(config, rngs=rngs) for _ in range(config.num_layers)])
        self.final_norm = RMSNorm(d, config.norm_eps)
        self.head_dense = Einsum("bld,de->ble", (d, d), ("embed", None), bias_shape=(d,), bias_axes=(None,),
                                 rngs=rngs)
        self.head_norm = RMSNorm(d, config.norm_eps)
        self.head_bias = const_param(0.0, (config.vocab_size,), jnp.float32, ("vocab",))

    def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        """ids [B, L] int, mask [B, L] bool (True = real token) -> features [B, L, D], zero at padding."""
        length = ids.shape[1]
        if length > self.config.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len={self.config.max_len}")
        mask = mask.astype(bool)
        x = self.embed(ids)                                                      # [B, L, D]
        x = x + self.pos_embed[...][:length].astype(x.dtype)[None]               # [B, L, D]
        x = shd.constrain(x, ("act_batch", "act_length", "act_embed"))
        # Every query sees every real key; padded queries also see real keys, so their rows stay finite.
        attn_mask = jnp.broadcast_to(mask[:, None, :], (ids.shape[0], length, length))  # [B, L, L]
        for layer in self.layers:
            x = layer(x, attn_mask)
        x = self.final_norm(x)
        return x * mask[..., None].astype(x.dtype)                               # [B, L, D]

    def mlm_logits(self, features: jax.Array) -> jax.Array:
        """features [B, L, D] -> logits [B, L, V] float32."""
        h = self.head_norm(jax.nn.gelu(self.head_dense(features)))               # [B, L, D]
        return self.embed.attend(h) + self.head_bias[...].astype(jnp.float32)    # [B, L, V]


# --- masked-token objective -------------------------------------------------------------------------------------
def mask_tokens(ids: np.ndarray, mask: np.ndarray, rng: np.random.Generator, rate: float = 0.15, *,
                vocab_size: int, special_ids: Sequence[int] = tuple(range(len(SPECIAL_TOKENS))),
                mask_id: int = MASK_ID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BERT corruption: each real, non-special token is chosen with probability `rate`; a chosen token becomes
    <mask> (80%), a random non-special token (10%, which may happen to equal the original) or stays (10%).

    ids/mask [B, L] -> (inputs [B, L] int32, targets [B, L] int32 = ids, loss_mask [B, L] float32 = chosen).
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"mask rate must be in [0, 1], got {rate}")
    ids = np.asarray(ids, np.int32)
    pool = np.setdiff1d(np.arange(vocab_size), np.asarray(special_ids))
    if pool.size == 0:
        raise ValueError("the vocabulary has no non-special token to draw random replacements from")
    candidate = np.asarray(mask, bool) & ~np.isin(ids, special_ids)
    chosen = candidate & (rng.random(ids.shape) < rate)
    action = rng.random(ids.shape)               # one draw decides mask / random / keep
    random_ids = pool[rng.integers(0, pool.size, ids.shape)]
    inputs = np.where(chosen & (action < 0.8), mask_id, ids)
    inputs = np.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs.astype(np.int32), ids.copy(), chosen.astype(np.float32)


def mlm_loss(model: MoleculeEncoder, batch: dict) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """make_train_step loss: summed cross-entropy over the chosen positions, their count, and the number of
    them predicted right (the step divides it by the count, so it is reported as the accuracy)."""
    features = model(batch["inputs"], batch["attention_mask"])                  # [B, L, D]
    logits = model.mlm_logits(features)                                          # [B, L, V]
    loss_sum, tokens = cross_entropy(logits, batch["targets"], batch["loss_mask"])
    hit = (jnp.argmax(logits, axis=-1) == batch["targets"]).astype(jnp.float32)  # [B, L]
    return loss_sum, tokens, {"accuracy": jnp.sum(hit * batch["loss_mask"].astype(jnp.float32))}


class _MLMIterator:
    def __init__(self, dataset: "MLMDataset"):
        self._ds, self._step = dataset, 0

    def __iter__(self) -> "_MLMIterator":
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = self._ds.global_batch(self._step)
        self._step += 1
        rows = slice(self._ds.process_index * self._ds.local_batch_size,
                     (self._ds.process_index + 1) * self._ds.local_batch_size)
        return {k: v[rows] for k, v in batch.items()}

    def get_state(self) -> dict[str, int]:
        return {"step": self._step}

    def set_state(self, state: dict[str, Any]) -> None:
        self._step = int(state["step"])


class MLMDataset:
    """Infinite masked-token batches; batch k depends only on (seed, k), so the state is just {"step": k}.

    Molecules are visited in shuffled epochs (the permutation of epoch e is drawn from (seed, e)); masking of
    step k uses its own generator from (seed, k). Each process gets its rows of the same global batch.
    Batch keys, all [B, L]: inputs, attention_mask (bool), targets, loss_mask (float32).
    """

    def __init__(self, smiles_list: Sequence[str], tokenizer: SmilesTokenizer, batch_size: int, max_len: int,
                 seed: int = 0, *, rate: float = 0.15, process_index: int | None = None,
                 process_count: int | None = None):
        if not smiles_list:
            raise ValueError("MLMDataset needs at least one SMILES string")
        self.tokenizer, self.batch_size, self.seed, self.rate = tokenizer, int(batch_size), int(seed), rate
        self.ids, self.mask = tokenizer.encode_batch(smiles_list, max_len)        # [N, L]
        self.process_index = jax.process_index() if process_index is None else int(process_index)
        count = jax.process_count() if process_count is None else int(process_count)
        if self.batch_size % count:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {count} processes")
        self.local_batch_size = self.batch_size // count

    def __iter__(self) -> _MLMIterator:
        return _MLMIterator(self)

    def global_batch(self, step: int) -> dict[str, np.ndarray]:
        n = len(self.ids)
        position = step * self.batch_size + np.arange(self.batch_size)           # [B] over the epoch stream
        epochs, offsets = position // n, position % n
        rows = np.empty(self.batch_size, np.int64)
        for epoch in np.unique(epochs):
            perm = np.random.default_rng([self.seed, 0, int(epoch)]).permutation(n)
            rows[epochs == epoch] = perm[offsets[epochs == epoch]]
        ids, mask = self.ids[rows], self.mask[rows]                               # [B, L]
        rng = np.random.default_rng([self.seed, 1, int(step)])
        inputs, targets, loss_mask = mask_tokens(ids, mask, rng, self.rate, vocab_size=self.tokenizer.vocab_size,
                                                 special_ids=self.tokenizer.special_ids)
        return {"inputs": inputs, "attention_mask": mask, "targets": targets, "loss_mask": loss_mask}


def _plain_dict(cfg: Any) -> dict[str, Any]:
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def pretrain_encoder(smiles_list: Sequence[str], workdir: str, *, config: MolEncoderConfig, train_cfg: Any,
                     batch_size: int, seed: int = 0, mesh: jax.sharding.Mesh | None = None,
                     rules: shd.Rules = shd.DEFAULT_RULES
                     ) -> tuple[MoleculeEncoder, SmilesTokenizer, dict[str, Any]]:
    """Masked-token pre-training through `train_loop`; rerunning on the same workdir resumes.

    The tokenizer is fitted on `smiles_list` on the first run and saved as workdir/tokenizer.json (with the
    encoder config as workdir/encoder_config.json); later runs reuse both, so token ids never change under a
    checkpoint. `mesh` defaults to all devices on the data axis. Returns (model, tokenizer, summary), the
    summary being train_loop's (steps, final_train_loss, resumed_from_step, ...) plus vocab facts.
    """
    files.makedirs(workdir)
    tok_path = files.join_path(workdir, "tokenizer.json")
    if files.exists(tok_path):
        tokenizer = SmilesTokenizer.from_dict(json.loads(files.read_text(tok_path)))
    else:
        tokenizer = SmilesTokenizer.fit(smiles_list)
        if files.is_primary():
            files.atomic_write_text(tok_path, json.dumps(tokenizer.to_dict()))
    if config.vocab_size is None:
        config = dataclasses.replace(config, vocab_size=tokenizer.vocab_size)
    elif config.vocab_size < tokenizer.vocab_size:
        raise ValueError(f"config.vocab_size={config.vocab_size} < the tokenizer's {tokenizer.vocab_size}")
    cfg_path = files.join_path(workdir, "encoder_config.json")
    if files.exists(cfg_path):
        saved = json.loads(files.read_text(cfg_path))
        if saved != dataclasses.asdict(config):
            raise ValueError(f"{workdir} was pre-trained with a different encoder config ({saved}, now "
                             f"{dataclasses.asdict(config)}): use a new workdir")
    elif files.is_primary():
        files.atomic_write_text(cfg_path, json.dumps(dataclasses.asdict(config)))

    loop_cfg = ml_collections.ConfigDict({
        "train": _plain_dict(train_cfg),
        "data": {"seq_len": config.max_len, "batch_size": int(batch_size)},
        "seed": int(seed),
        "encoder": dataclasses.asdict(config),
    })
    if mesh is None:
        mesh = shd.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    from jaxsuite.core.loop import train_loop   # the loop pulls in orbax; only pre-training needs it

    model = MoleculeEncoder(config, rngs=nnx.Rngs(seed))
    dataset = MLMDataset(smiles_list, tokenizer, batch_size, config.max_len, seed)
    out = train_loop(loop_cfg, workdir, model, mesh=mesh, rules=rules, train_ds=dataset, loss_fn=mlm_loss,
                     curve_title="SMILES masked-token loss")
    summary = {**out.summary(), "vocab_size": tokenizer.vocab_size, "num_smiles": len(smiles_list),
               "tokenizer_path": tok_path}
    return out.model, tokenizer, summary


# --- feature sources --------------------------------------------------------------------------------------------
@runtime_checkable
class MoleculeFeatures(Protocol):
    """What a molecule adapter consumes: per-token features and their mask for a list of SMILES."""

    @property
    def dim(self) -> int: ...

    def encode(self, smiles_list: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> (features [B, L, D] float32, mask [B, L] bool)."""
        ...


class EncoderFeatures:
    """Our pre-trained MoleculeEncoder as a MoleculeFeatures source (one jit'd forward per batch size)."""

    def __init__(self, model: MoleculeEncoder, tokenizer: SmilesTokenizer, max_len: int | None = None):
        self.tokenizer = tokenizer
        self.max_len = int(max_len or model.config.max_len)
        self._dim = model.config.d_model
        graphdef, self._state = nnx.split(model)
        self._forward = jax.jit(lambda state, ids, mask: nnx.merge(graphdef, state)(ids, mask))

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, smiles_list: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        ids, mask = self.tokenizer.encode_batch(list(smiles_list), self.max_len)  # [B, L]
        if not len(ids):
            return np.zeros((0, self.max_len, self.dim), np.float32), mask
        features = self._forward(self._state, ids, mask)                           # [B, L, D]
        return np.asarray(features, np.float32), mask


def _check_arrays(smiles: np.ndarray, features: np.ndarray, mask: np.ndarray, where: str) -> None:
    """ValueError naming everything wrong with a (smiles [N], features [N, L, D], mask [N, L]) triple."""
    problems = []
    if smiles.ndim != 1 or smiles.dtype.kind != "U":
        problems.append(f"'smiles' must be a 1-D string array, got shape {smiles.shape} dtype {smiles.dtype}")
    if features.ndim != 3 or features.dtype.kind != "f":
        problems.append(f"'features' must be a 3-D float array [N, L, D], got shape {features.shape} "
                        f"dtype {features.dtype}")
    if mask.ndim != 2 or mask.dtype != np.bool_:
        problems.append(f"'mask' must be a 2-D bool array [N, L], got shape {mask.shape} dtype {mask.dtype}")
    if not problems and not (len(smiles) == features.shape[0] == mask.shape[0]):
        problems.append(f"row counts differ: smiles {len(smiles)}, features {features.shape[0]}, "
                        f"mask {mask.shape[0]}")
    if not problems and features.shape[1] != mask.shape[1]:
        problems.append(f"'features' has L={features.shape[1]} positions but 'mask' has {mask.shape[1]}")
    if not problems:
        dup = [s for s, c in collections.Counter(smiles.tolist()).items() if c > 1]
        if dup:
            problems.append(f"duplicate SMILES {dup[:5]}")
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems))


def save_precomputed(path: str, smiles: Sequence[str], features: np.ndarray, mask: np.ndarray) -> None:
    """Writes the .npz PrecomputedFeatures reads (written whole and renamed into place, so readers never see half a file)."""
    smiles_arr = np.asarray(list(smiles), dtype=str)
    features, mask = np.asarray(features), np.asarray(mask)
    _check_arrays(smiles_arr, features, mask, f"save_precomputed({path!r})")
    # np.savez on a file object, so that numpy does not append ".npz" to the temp file's name
    _atomic_write(path, lambda f: np.savez(f, smiles=smiles_arr, features=features, mask=mask))


class PrecomputedFeatures:
    """Features of an external encoder (e.g. SMI-TED), looked up by exact SMILES string from an .npz with
    `smiles` [N] str, `features` [N, L, D] float and `mask` [N, L] bool."""

    def __init__(self, path: str):
        try:
            data = np.load(io.BytesIO(files.read_bytes(path)), allow_pickle=False)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path}: not a readable .npz file ({e})") from e
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: holds a single .npy array, not an .npz with smiles/features/mask")
        with data:
            missing = [k for k in ("smiles", "features", "mask") if k not in data.files]
            if missing:
                raise ValueError(f"{path}: missing array(s) {missing}; it has {data.files}")
            try:
                smiles, features, mask = data["smiles"], data["features"], data["mask"]
            except ValueError as e:   # object arrays (a pickled list of SMILES) are refused without pickle
                raise ValueError(f"{path}: unreadable arrays ({e}); store 'smiles' as a unicode array") from e
        _check_arrays(smiles, features, mask, path)
        self.path = path
        self.features, self.mask = features.astype(np.float32), mask
        self.index = {s: i for i, s in enumerate(smiles.tolist())}

    @property
    def dim(self) -> int:
        return int(self.features.shape[2])

    def encode(self, smiles_list: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        missing = [s for s in smiles_list if s not in self.index]
        if missing:
            raise KeyError(f"{len(missing)} SMILES not in {self.path}: {missing[:5]}"
                           + (" ..." if len(missing) > 5 else ""))
        rows = np.asarray([self.index[s] for s in smiles_list], np.int64)
        return self.features[rows], self.mask[rows]
