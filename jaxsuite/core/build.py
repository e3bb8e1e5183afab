"""The pieces every job builds from its config before it trains: mesh and rules, tokenizer, datasets.

    mesh, rules = mesh_and_rules(config)             # config.mesh, config.sharding_rules
    tokenizer = build_tokenizer(config)              # config.tokenizer
    train_ds, eval_ds = build_datasets(config, tokenizer)   # config.data (see config_utils.data_block)
    model = ...                                      # jaxsuite.models.factory / jaxsuite.hf (core knows no model)
    check_vocab(tokenizer, model.config.vocab_size)
    ...
    export_tokenizer(tokenizer, hf_dir)              # beside the exported weights

Config fields read:
  mesh             {"data": -1, "fsdp": 1, "tensor": 1}: mesh axis sizes, one may be -1 (the rest)
  sharding_rules   [(logical axis, mesh axis or axes or None), ...] (jaxsuite.core.sharding.DEFAULT_RULES)
  tokenizer        one string, the only place a config names its tokenizer: "stdlib:4096" (sentencepiece
                   trained here on the stdlib, cached), "byte", a .model / tokenizer.json / HF folder, or a
                   hub id (jaxsuite.core.tokenizer.load_tokenizer)
  data             source, eval_source, text_key, seq_len, batch_size, shuffle_seed, shuffle_window
`devices` lets a mesh be built over any devices, e.g. those of a TPU topology this machine does not have,
for a deviceless compile.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Sequence

import jax

from jaxsuite.core import files
from jaxsuite.core import sharding as shd
from jaxsuite.core.tokenizer import Tokenizer, load_tokenizer

log = logging.getLogger(__name__)


def mesh_and_rules(config, devices: Sequence[jax.Device] | None = None) -> tuple[jax.sharding.Mesh, shd.Rules]:
    """The device mesh of `config.mesh` over `devices` (default: all of jax.devices()), and the logical-axis
    rules of `config.sharding_rules`. A config without them (a job that runs on one device, like LDL) gets a
    data-parallel mesh and the default rules."""
    mesh = shd.make_mesh(dict(config.get("mesh", None) or {"data": -1}), devices)
    rules = shd.rules_from_config(config.get("sharding_rules", None) or shd.DEFAULT_RULES)
    return mesh, rules


def build_tokenizer(config) -> Tokenizer:
    """`config.tokenizer` loaded; "stdlib:N" trains (once, cached) a sentencepiece model on the stdlib."""
    spec = config.tokenizer
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"config.tokenizer must name a tokenizer (e.g. 'stdlib:4096', 'byte', a path or a hub "
                         f"id), got {spec!r}")
    return load_tokenizer(spec)


def job_tokenizer(config, wd, texts: Callable[[], Sequence[str]]) -> Tokenizer:
    """`config.tokenizer` when the config names one; else the job's own SentencePiece model of
    `config.vocab_size` pieces: <workdir>/tokenizer.model, trained on `texts()` the first time (the generated
    texts a toy job learns from) and read back on a rerun."""
    from jaxsuite.core.tokenizer import SentencePieceTokenizer, train_sentencepiece
    if config.get("tokenizer"):
        return build_tokenizer(config)
    if wd.exists("tokenizer.model"):
        return SentencePieceTokenizer(wd.read_bytes("tokenizer.model"))
    tok = train_sentencepiece(list(texts()), int(config.vocab_size), num_threads=1)
    wd.write_bytes("tokenizer.model", tok.serialized_model())
    return tok


def encode_prompt(tokenizer: Tokenizer, text: str) -> list[int]:
    """A prompt's ids as generation and SFT rows start them: the tokenizer's BOS first when it has one."""
    bos = getattr(tokenizer, "bos_id", None)
    return ([bos] if bos is not None and bos >= 0 else []) + tokenizer.encode(text)


def fitting_pairs(tokenizer: Tokenizer, prompts: Sequence[str], targets: Sequence[str], seq_len: int, *,
                  what: str, hint: str) -> tuple[list[list[int]], list[list[int]]]:
    """SFT pairs as ids (prompt as `encode_prompt` starts it, target + EOS), keeping the pairs whose prompt +
    target fit seq_len. The rest are dropped and counted in the log: a toy job keeps its seq_len short, so a
    few long examples should not stop it; none fitting is a config error, named with `what` and `hint`."""
    if len(prompts) != len(targets):
        raise ValueError(f"{what}: {len(prompts)} prompts but {len(targets)} targets")
    p_ids = [encode_prompt(tokenizer, p) for p in prompts]
    t_ids = [tokenizer.encode(t) + [tokenizer.eos_id] for t in targets]
    keep = [i for i in range(len(p_ids)) if len(p_ids[i]) + len(t_ids[i]) <= seq_len]
    if len(keep) < len(p_ids):
        log.info("%s: %d of %d pairs exceed seq_len %d and are left out", what, len(p_ids) - len(keep), len(p_ids),
                 seq_len)
    if not keep:
        raise ValueError(f"{what}: no training pair fits seq_len={seq_len}; raise seq_len or {hint}")
    return [p_ids[i] for i in keep], [t_ids[i] for i in keep]


def build_datasets(config, tokenizer: Tokenizer) -> tuple[Any, Any]:
    """(train dataset, eval dataset or None) from `config.data`, yielding per-process batches of the
    training-batch contract (jaxsuite.core.data). The train stream is shuffled with `data.shuffle_seed`;
    the eval set is read once, unshuffled, so every evaluation sees the same batches."""
    from jaxsuite.core import data   # grain: only jobs that read text need it

    d = config.data
    common = dict(tokenizer=tokenizer, seq_len=int(d.seq_len), batch_size=int(d.batch_size), text_key=d.text_key,
                  on_bad_record=str(d.get("on_bad_record", "error")))
    train = data.make_lm_dataset(d.source, seed=int(d.shuffle_seed), shuffle=True,
                                 shuffle_window=int(d.shuffle_window), **common)
    evals = None
    if d.eval_source:
        evals = data.make_lm_dataset(d.eval_source, seed=0, shuffle=False, num_epochs=1, **common)
    return train, evals


def check_vocab(tokenizer: Tokenizer, vocab_size: int, *, hint: str = "") -> None:
    """Raises ValueError when the tokenizer can produce ids the model's embedding (`vocab_size` rows) lacks.

    A larger model vocabulary is fine (checkpoints often pad it); a smaller one would index out of range,
    which XLA does not report but silently clamps."""
    if tokenizer.vocab_size > int(vocab_size):
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                         f"{int(vocab_size)}" + (f"; {hint}" if hint else ""))


def export_tokenizer(tokenizer: Tokenizer, hf_dir: str | os.PathLike) -> list[str]:
    """Puts the tokenizer's files beside exported weights (a local folder or a bucket URL); returns the
    names written.

    A sentencepiece model becomes `tokenizer.model`; an HF tokenizer folder contributes its tokenizer files.
    The byte tokenizer has no file (it is fully described by its class)."""
    path = getattr(tokenizer, "path", None) or getattr(tokenizer, "model_file", None)
    if not path and hasattr(tokenizer, "serialized_model"):     # a sentencepiece model held in memory
        files.atomic_write_bytes(files.join_path(hf_dir, "tokenizer.model"), tokenizer.serialized_model())
        return ["tokenizer.model"]
    if not path:
        return []
    source = files.as_path(path)
    written = []
    if source.is_file():
        name = "tokenizer.model" if source.name.endswith(".model") else source.name
        files.copy_file(source, files.join_path(hf_dir, name))
        written.append(name)
    elif source.is_dir():
        for item in sorted(source.iterdir(), key=lambda p: p.name):
            name = item.name
            if name.startswith("tokenizer") or name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
                files.copy_file(item, files.join_path(hf_dir, name))
                written.append(name)
    return written
