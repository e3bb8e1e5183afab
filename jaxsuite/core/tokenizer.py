"""Tokenizers behind one small protocol, and a self-contained default trained on the Python stdlib.

Training code only needs `encode`, `decode` and four numbers (vocab size, BOS/EOS/PAD ids), so every
backend is wrapped into that shape: a SentencePiece `.model`, a Hugging Face `tokenizer.json` (or a folder
holding one), a hub id when a network exists, and a byte-level tokenizer that needs no file at all.

Nothing can be downloaded on this project's machines, so the default tokenizer is *trained here*: a BPE
SentencePiece model fitted to the Python standard library's own source (`jaxsuite.core.corpus.stdlib_files`).
It is cached under `$JAXSUITE_CACHE` (else `~/.cache/jaxsuite`) keyed by vocab size, a fingerprint of the
corpus, the trainer settings and the Python version, and written atomically so concurrent processes (several
hosts, parallel tests) never see half a file.

Trainer settings are chosen for code: identity normalisation and no dummy prefix (so decode(encode(s)) == s
byte for byte, indentation included), whitespace-only pieces (indentation runs become single tokens), "\\n"
and "\\t" as atomic symbols, split digits, and byte fallback so any unicode text encodes without <unk>.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator, Protocol, Sequence, runtime_checkable

from jaxsuite.core.corpus import stdlib_corpus_fingerprint, stdlib_files
from jaxsuite.core import files

# Fixed special ids of every SentencePiece model we train (HF tokenizers carry their own).
SP_PAD_ID, SP_UNK_ID, SP_BOS_ID, SP_EOS_ID = 0, 1, 2, 3
# Bump when the trainer settings below change, so stale cached models are not reused.
_TRAINER_VERSION = "sp-bpe-code-v1"


@runtime_checkable
class Tokenizer(Protocol):
    """What the data pipeline and the generation loop need from a tokenizer."""

    vocab_size: int
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


# ----------------------------------------------------------------------------------------------------------
# SentencePiece
# ----------------------------------------------------------------------------------------------------------
class SentencePieceTokenizer:
    """A SentencePiece model (from a `.model` file or its serialized bytes). Ids the model lacks are None."""

    def __init__(self, model: str | os.PathLike | bytes):
        import sentencepiece as spm

        if isinstance(model, bytes):
            self._proto, self.path = model, None
        else:
            self.path = Path(model)
            if not self.path.is_file():
                raise FileNotFoundError(f"SentencePiece model not found: {str(self.path)!r}")
            self._proto = self.path.read_bytes()
        self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
        self.vocab_size = int(self._sp.get_piece_size())
        self.bos_id, self.eos_id, self.pad_id, self.unk_id = (
            (i if i >= 0 else None)
            for i in (self._sp.bos_id(), self._sp.eos_id(), self._sp.pad_id(), self._sp.unk_id())
        )

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode([int(i) for i in ids])

    def token_to_id(self, piece: str) -> int | None:
        """The id of a piece held whole (a user symbol such as `<|im_end|>`), or None when it is not one."""
        i = int(self._sp.piece_to_id(piece))
        return None if i == self.unk_id and piece != self._sp.id_to_piece(i) else i

    def id_to_piece(self, i: int) -> str:
        return self._sp.id_to_piece(int(i))

    def serialized_model(self) -> bytes:
        return self._proto

    def __getstate__(self):  # the C++ processor does not pickle; its bytes do (grain worker processes)
        return {"model": self._proto, "path": self.path}

    def __setstate__(self, state):
        self.__init__(state["model"])
        self.path = state["path"]

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer(path={str(self.path) if self.path else None!r}, vocab={self.vocab_size})"


def _training_sentences(documents: Iterable[str], lines_per_sentence: int, max_chars: int) -> Iterator[str]:
    """Cut documents into multi-line chunks: SentencePiece trains on 'sentences', and keeping newlines and
    indentation inside them is what lets it learn code layout (a per-line split would never see "\\n")."""
    for doc in documents:
        lines = doc.splitlines(keepends=True)
        for i in range(0, len(lines), lines_per_sentence):
            chunk = "".join(lines[i : i + lines_per_sentence])
            for j in range(0, len(chunk), max_chars):
                piece = chunk[j : j + max_chars]
                if piece.strip():
                    yield piece


def train_sentencepiece(
    corpus: Iterable[str] | Sequence[os.PathLike],
    vocab_size: int,
    model_prefix: str | os.PathLike | None = None,
    *,
    model_type: str = "bpe",
    max_sentences: int = 300_000,
    lines_per_sentence: int = 16,
    max_sentence_chars: int = 4000,
    character_coverage: float = 0.9995,
    num_threads: int | None = None,
    seed_sentences_shuffle: bool = True,
    user_symbols: Sequence[str] = (),
) -> SentencePieceTokenizer:
    """Train a SentencePiece model for code and text; return it (and write `{model_prefix}.model` if given).

    corpus: documents as strings, or `pathlib.Path`s of UTF-8 files (one document each). Strings are always
      text, never paths, so a path must be a `Path` (os.PathLike).
    Training is bounded: documents are cut into chunks of `lines_per_sentence` lines (at most
      `max_sentence_chars`), and SentencePiece samples at most `max_sentences` of them.
    The vocab size is exact (hard limit); a vocab too large for the text raises SentencePiece's error.
    Special ids: pad 0, unk 1, bos 2, eos 3 (<pad>, <unk>, <s>, </s>); 256 byte pieces follow.
    user_symbols: strings kept whole as one piece each wherever they occur (e.g. a chat format's markers,
      `<|im_start|>`, `<tool_call>`, ...), so they tokenize as the single ids `token_to_id` gives.
    """
    import sentencepiece as spm

    def documents() -> Iterator[str]:
        for item in corpus:
            if isinstance(item, os.PathLike):
                yield Path(item).read_bytes().decode("utf-8", errors="replace")
            elif isinstance(item, str):
                yield item
            else:
                raise TypeError(f"train_sentencepiece: corpus items must be str or os.PathLike, got {type(item)}")

    # SentencePiece refuses sentences longer than max_sentence_length *bytes*; UTF-8 is at most 4 per char.
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=_training_sentences(documents(), lines_per_sentence, max_sentence_chars),
        model_writer=buf,
        vocab_size=int(vocab_size),
        model_type=model_type,
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        allow_whitespace_only_pieces=True,
        user_defined_symbols=["\n", "\t", *user_symbols],
        max_sentence_length=4 * max_sentence_chars + 16,
        input_sentence_size=int(max_sentences),
        shuffle_input_sentence=seed_sentences_shuffle,
        character_coverage=character_coverage,
        num_threads=num_threads or max(1, min(4, os.cpu_count() or 1)),
        pad_id=SP_PAD_ID, unk_id=SP_UNK_ID, bos_id=SP_BOS_ID, eos_id=SP_EOS_ID,
        minloglevel=2,
    )
    proto = buf.getvalue()
    if model_prefix is not None:
        files.atomic_write_bytes(f"{os.fspath(model_prefix)}.model", proto)
        tok = SentencePieceTokenizer(Path(f"{os.fspath(model_prefix)}.model"))
        return tok
    return SentencePieceTokenizer(proto)


def stdlib_tokenizer(vocab_size: int = 4096, cache_dir: str | os.PathLike | None = None) -> SentencePieceTokenizer:
    """The default tokenizer: BPE SentencePiece trained on the stdlib corpus's train split, cached on disk.

    The cache key holds the vocab size, a content fingerprint of the corpus, the trainer version and the
    Python version, so a different interpreter (a different stdlib) trains its own model instead of silently
    reusing another's. Later calls load the cached file.
    """
    cache = Path(cache_dir) if cache_dir is not None else files.cache_dir()
    fp = stdlib_corpus_fingerprint("train")
    key = hashlib.sha256(f"{_TRAINER_VERSION}|{vocab_size}|{fp}".encode()).hexdigest()[:16]
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    path = cache / "tokenizers" / f"stdlib_bpe{vocab_size}_{py}_{key}.model"
    if path.is_file():
        return SentencePieceTokenizer(path)
    proto = train_sentencepiece(stdlib_files("train"), vocab_size).serialized_model()
    files.atomic_write_bytes(path, proto)
    return SentencePieceTokenizer(path)


# ----------------------------------------------------------------------------------------------------------
# Byte level (no file needed)
# ----------------------------------------------------------------------------------------------------------
class ByteTokenizer:
    """UTF-8 bytes shifted by 3: pad 0, bos 1, eos 2, byte b -> b + 3 (vocab 259). For tests and tiny runs."""

    vocab_size, pad_id, bos_id, eos_id = 259, 0, 1, 2
    _OFFSET = 3

    def encode(self, text: str) -> list[int]:
        return [b + self._OFFSET for b in text.encode("utf-8")]

    def decode(self, ids: Sequence[int]) -> str:
        # ids past the byte range (a model's vocab is often padded beyond 259) decode to nothing, like specials
        raw = bytes(int(i) - self._OFFSET for i in ids if self._OFFSET <= int(i) < self.vocab_size)
        return raw.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return "ByteTokenizer()"


# ----------------------------------------------------------------------------------------------------------
# Hugging Face
# ----------------------------------------------------------------------------------------------------------
# Names tried, in order, when a bare tokenizer.json comes without a tokenizer_config.json.
_EOS_NAMES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "<|eot_id|>", "<|im_end|>", "[SEP]")
_BOS_NAMES = ("<s>", "<bos>", "<|begin_of_text|>", "<|startoftext|>", "[CLS]")
_PAD_NAMES = ("<pad>", "<|pad|>", "[PAD]", "<|endoftext|>")


class HFTokenizer:
    """A Hugging Face tokenizer: a `tokenizers.Tokenizer` (preferred) or a `transformers` tokenizer.

    encode adds no special tokens (the data pipeline places BOS/EOS itself); decode keeps them.
    """

    def __init__(self, tok, *, bos_id: int | None, eos_id: int | None, pad_id: int | None, name: str = ""):
        self._tok, self.name = tok, name
        self._fast = type(tok).__module__.startswith("tokenizers")
        self.vocab_size = int(tok.get_vocab_size(with_added_tokens=True) if self._fast else len(tok))
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id

    def encode(self, text: str) -> list[int]:
        if self._fast:
            return list(self._tok.encode(text, add_special_tokens=False).ids)
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_to_id(self, token: str) -> int | None:
        if self._fast:
            return self._tok.token_to_id(token)
        return self._tok.get_vocab().get(token)

    def __repr__(self) -> str:
        return f"HFTokenizer({self.name!r}, vocab={self.vocab_size})"


def _token_content(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _special_ids_from_folder(tok, folder: Path | None) -> dict[str, int | None]:
    """Read bos/eos/pad from tokenizer_config.json / special_tokens_map.json; else guess by common names."""
    names: dict[str, str | None] = {}
    for fname in ("special_tokens_map.json", "tokenizer_config.json"):  # the later file wins
        f = folder / fname if folder is not None else None
        if f is not None and f.is_file():
            cfg = json.loads(f.read_text())
            for kind in ("bos", "eos", "pad"):
                if f"{kind}_token" in cfg:
                    names[kind] = _token_content(cfg[f"{kind}_token"])
    out: dict[str, int | None] = {}
    for kind, fallback in (("bos", _BOS_NAMES), ("eos", _EOS_NAMES), ("pad", _PAD_NAMES)):
        if kind in names:  # the config is authoritative, including an explicit null
            out[f"{kind}_id"] = tok.token_to_id(names[kind]) if names[kind] is not None else None
        else:
            out[f"{kind}_id"] = next((i for n in fallback if (i := tok.token_to_id(n)) is not None), None)
    return out


def _load_hf_local(path: Path) -> HFTokenizer:
    folder = path.parent if path.is_file() else path
    tok_json = path if path.is_file() else path / "tokenizer.json"
    if tok_json.is_file():
        import tokenizers

        tok = tokenizers.Tokenizer.from_file(str(tok_json))
        ids = _special_ids_from_folder(tok, folder)
        return HFTokenizer(tok, **ids, name=str(path))
    known = ("tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
             "sentencepiece.bpe.model")
    if folder.is_dir() and not any((folder / name).is_file() for name in known):
        raise FileNotFoundError(f"{str(folder)!r} holds no tokenizer files (tokenizer.json, tokenizer.model, "
                                f"tokenizer_config.json, vocab.json, ...)")
    try:  # a folder with only slow-tokenizer files (vocab.json + merges.txt, tokenizer.model, ...)
        from transformers import AutoTokenizer
    except ImportError as e:
        raise FileNotFoundError(
            f"{str(path)!r} has no tokenizer.json and `transformers` is not installed to read its other files"
        ) from e
    t = AutoTokenizer.from_pretrained(str(path))
    return HFTokenizer(t, bos_id=t.bos_token_id, eos_id=t.eos_token_id, pad_id=t.pad_token_id, name=str(path))


def _load_hf_hub(repo_id: str) -> HFTokenizer:
    errors = []
    try:
        import tokenizers

        tok = tokenizers.Tokenizer.from_pretrained(repo_id)
        folder = None
        try:  # the config (for special tokens) comes from the same hub cache when reachable
            from huggingface_hub import hf_hub_download

            folder = Path(hf_hub_download(repo_id, "tokenizer_config.json")).parent
        except Exception:  # noqa: BLE001 - optional; fall back to name guessing
            pass
        return HFTokenizer(tok, **_special_ids_from_folder(tok, folder), name=repo_id)
    except Exception as e:  # noqa: BLE001
        errors.append(f"tokenizers: {type(e).__name__}: {e}")
        from huggingface_hub.errors import LocalEntryNotFoundError

        if isinstance(e, LocalEntryNotFoundError):  # offline / unreachable: transformers would retry in vain
            raise FileNotFoundError(
                f"tokenizer {repo_id!r} is not a local path, and the Hugging Face hub is unreachable and has no "
                f"cached copy: {e}"
            ) from None
    try:
        from transformers import AutoTokenizer

        t = AutoTokenizer.from_pretrained(repo_id)
        return HFTokenizer(t, bos_id=t.bos_token_id, eos_id=t.eos_token_id, pad_id=t.pad_token_id, name=repo_id)
    except ImportError:
        pass
    except Exception as e:  # noqa: BLE001
        errors.append(f"transformers: {type(e).__name__}: {e}")
    raise FileNotFoundError(
        f"tokenizer {repo_id!r} is not a local path and could not be loaded from the Hugging Face hub "
        f"(offline?): " + " | ".join(errors)
    )


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return (
        len(parts) in (1, 2)
        and all(parts)
        and not spec.startswith((".", "~"))
        and not spec.endswith((".model", ".json"))
        and (len(parts) == 2 or "-" in spec or spec.isidentifier())
    )


def load_tokenizer(spec: str | os.PathLike | Tokenizer, *, vocab_size: int | None = None) -> Tokenizer:
    """Resolve a tokenizer spec:
      "stdlib" | "stdlib:N"     the default BPE trained on the stdlib (vocab N, else `vocab_size`, else 4096)
      "byte"                    ByteTokenizer
      path/to/x.model           SentencePiece
      path/to/tokenizer.json    Hugging Face tokenizers (special tokens from a sibling tokenizer_config.json)
      path/to/folder            Hugging Face folder (tokenizer.json, else transformers.AutoTokenizer); a folder
                                with only a tokenizer.model (as jaxsuite exports) is read as SentencePiece
      org/name                  Hugging Face hub id (needs a network or a populated HF cache)
    A tokenizer object is returned unchanged. A missing path raises FileNotFoundError naming it.
    """
    if not isinstance(spec, (str, os.PathLike)):
        if isinstance(spec, Tokenizer):
            return spec
        raise TypeError(f"load_tokenizer: expected a str/path or a Tokenizer, got {type(spec).__name__}")
    s = os.fspath(spec)
    if s == "stdlib" or s.startswith("stdlib:"):
        n = int(s.split(":", 1)[1]) if ":" in s else (vocab_size or 4096)
        return stdlib_tokenizer(n)
    if s == "byte":
        return ByteTokenizer()
    path = Path(s).expanduser()
    if path.exists():
        if path.is_file() and path.suffix == ".model":
            return SentencePieceTokenizer(path)
        if path.is_file() and path.suffix != ".json":
            raise ValueError(f"tokenizer file {s!r}: expected a SentencePiece .model or a tokenizer.json")
        if path.is_dir() and (path / "tokenizer.model").is_file() and not (path / "tokenizer.json").is_file() \
                and not (path / "tokenizer_config.json").is_file():
            return SentencePieceTokenizer(path / "tokenizer.model")   # a folder jaxsuite exported (pretrain's hf/)
        return _load_hf_local(path)
    if isinstance(spec, str) and _looks_like_hub_id(s):
        return _load_hf_hub(s)
    raise FileNotFoundError(f"tokenizer not found: {s!r} (no such file or folder)")
