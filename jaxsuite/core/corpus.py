"""The text that ships with jaxsuite: the Python standard library's source, and synthetic passkey documents.

Nothing can be downloaded on this project's machines, so two corpora are built in:

  stdlib    the interpreter's own standard library (.py files), split into train / eval by a hash of each
            file's path. The default tokenizer is trained on it (jaxsuite.core.tokenizer) and the default
            data source reads it (jaxsuite.core.data, "stdlib", "stdlib:eval").
  passkey   generated needle-in-a-haystack documents ("... The pass key is 12345. Remember it. ... What is the
            pass key? The pass key is 12345."), deterministic in (seed, index). Mixed into a corpus
            ("stdlib+passkey:4000") they teach a small LM to retrieve a key from earlier in its context;
            jaxsuite.halo.passkey builds its evaluation rows from the same sentences.

This module imports only the standard library, so both the tokenizer and the data pipeline can use it
without importing each other.
"""
from __future__ import annotations

import fnmatch
import functools
import hashlib
import os
import random
import sysconfig
from pathlib import Path

# ----------------------------------------------------------------------------------------------------------
# The standard library's source
# ----------------------------------------------------------------------------------------------------------
# Top-level folders skipped: tests, GUI/demo code, vendored installers, generated codec tables, third party.
STDLIB_EXCLUDE = (
    "test", "tests", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "distutils", "encodings",
    "pydoc_data", "__phello__", "site-packages", "dist-packages", "config-*",
)
# Nested folders skipped wherever they appear (e.g. unittest/test, ctypes/test, sqlite3/test).
_STDLIB_EXCLUDE_ANYWHERE = ("test", "tests", "__pycache__")


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def is_eval_file(relpath: str, eval_fraction: float = 0.05) -> bool:
    """Held-out membership by a hash of the path relative to the stdlib root: stable across machines and
    across Python patch releases (contents change, names rarely do)."""
    h = int(hashlib.sha256(relpath.encode()).hexdigest()[:8], 16)
    return h < eval_fraction * 0x1_0000_0000


def stdlib_files(split: str = "all", eval_fraction: float = 0.05) -> list[Path]:
    """The stdlib's .py files in sorted relative-path order; split "all", "train" or "eval"."""
    if split not in ("all", "train", "eval"):
        raise ValueError(f"stdlib split must be 'all', 'train' or 'eval', got {split!r}")
    return list(_stdlib_files(split, float(eval_fraction)))


@functools.lru_cache(maxsize=None)
def _stdlib_files(split: str, eval_fraction: float) -> tuple[Path, ...]:
    root = stdlib_root()
    rels = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        top = rel_dir == Path(".")
        # Prune in place so os.walk never descends into site-packages, test suites, etc.
        dirnames[:] = [
            d for d in dirnames
            if d not in _STDLIB_EXCLUDE_ANYWHERE
            and not (top and any(fnmatch.fnmatch(d, pat) for pat in STDLIB_EXCLUDE))
        ]
        rels += [(rel_dir / f).as_posix() for f in filenames if f.endswith(".py") and not f.startswith("test_")]
    keep = [r for r in sorted(rels) if split == "all" or (split == "eval") == is_eval_file(r, eval_fraction)]
    if not keep:
        raise FileNotFoundError(f"no stdlib .py files found under {str(root)!r} (split={split!r})")
    return tuple(root / r for r in keep)


def stdlib_corpus_fingerprint(split: str = "train") -> str:
    """sha256 over (relative path, content) of the split's files; a tokenizer cache key."""
    root, h = stdlib_root(), hashlib.sha256()
    for path in stdlib_files(split):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------
# Synthetic passkey documents (Mohtashami & Jaggi, 2023)
# ----------------------------------------------------------------------------------------------------------
PASSKEY_FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
PASSKEY_FILLER_SENTENCES = tuple(s.strip() + "." for s in PASSKEY_FILLER.split(".") if s.strip())
PASSKEY_QUESTION = "What is the pass key? The pass key is"


def passkey_sentence(key: str) -> str:
    """The needle: the key stated twice."""
    return f"The pass key is {key}. Remember it. {key} is the pass key."


def random_passkey(rng: random.Random, digits: int) -> str:
    """A key of exactly `digits` digits (no leading 0)."""
    if digits < 1:
        raise ValueError(f"digits must be >= 1, got {digits}")
    return str(rng.randint(10 ** (digits - 1), 10 ** digits - 1))


def passkey_document(seed: int, index: int, max_filler_sentences: int = 12, digits: int = 5) -> str:
    """Document `index` of the passkey training stream (deterministic in its arguments).

    filler (0..max sentences), the key sentence, filler (0..max), then the question answered:
    "... The pass key is 12345. Remember it. 12345 is the pass key. ... What is the pass key? The pass key
    is 12345." The filler cycles through PASSKEY_FILLER's sentences from a random phase. Every sentence after
    the first is joined by one space, which is what lets jaxsuite.halo.passkey rebuild the same token ids
    from separately encoded sentences.
    """
    if max_filler_sentences < 0:
        raise ValueError(f"max_filler_sentences must be >= 0, got {max_filler_sentences}")
    rng = random.Random(f"passkey-train:{int(seed)}:{int(index)}")   # str seeds hash deterministically
    key = random_passkey(rng, digits)
    before, after = rng.randint(0, max_filler_sentences), rng.randint(0, max_filler_sentences)
    phase = rng.randrange(len(PASSKEY_FILLER_SENTENCES))
    filler = [PASSKEY_FILLER_SENTENCES[(phase + i) % len(PASSKEY_FILLER_SENTENCES)] for i in range(before + after)]
    units = filler[:before] + [passkey_sentence(key)] + filler[before:] + [f"{PASSKEY_QUESTION} {key}."]
    return " ".join(units)
