"""Grain input pipelines for language-model training: documents -> shuffled shards -> tokens -> packed batches.

    source (stdlib | files | tfds)      random-access documents (str), a grain MapDataset
      .shuffle(seed).repeat(epochs)     a fresh deterministic permutation per epoch
      [shard_index::shard_count]        each process takes every P-th document of the global stream
      .map(tokenize)                    [bos] + ids + [eos], int32
      .to_iter_dataset()                threaded prefetch (state = next index, so it checkpoints)
      PackedWindows(seq_len)            concat-then-split into seq_len+1 windows, stride seq_len
      .batch(batch_size // P)           the per-process share of the global batch

Why our own packing op instead of grain.experimental.ConcatThenSplitIterDataset: (1) grain 0.2.18's
iterator state holds the tuple (-1, -1) as an "empty slice" sentinel and compares with `!=`; after the JSON
round trip that grain's own checkpoint handler performs the tuple is a list, the sentinel no longer matches,
and a restored iterator silently drops a document; (2) its windows do not overlap, so with seq_len+1 windows
the pair (last token of a window -> first token of the next) is never trained. Our windows start at the last
token of the previous window: every adjacent token pair of the stream is an (input, target) pair exactly once,
and the state is two plain ints plus the parent's state.

Batch contract (what jaxsuite.core.train's steps consume), numpy, per-process batch [B, T], T = seq_len:
    inputs int32, targets int32 (next token), segment_ids int32 (1.. per window, 0 = padding),
    positions int32 (restart at 0 in every segment, also for a continued chunk of a long document),
    loss_mask float32 (1 where target is the next token of the same segment).
"""
from __future__ import annotations

import copy
import glob as globlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import grain
import jax
import numpy as np

from jaxsuite.core.corpus import passkey_document, stdlib_files
from jaxsuite.core.tokenizer import Tokenizer, load_tokenizer

# ----------------------------------------------------------------------------------------------------------
# Random-access document sources (grain RandomAccessDataSource protocol: __len__, __getitem__ -> str)
# ----------------------------------------------------------------------------------------------------------
class InMemorySource:
    """A list of document strings."""

    def __init__(self, texts: Sequence[str]):
        self._texts = list(texts)

    def __len__(self) -> int:
        return len(self._texts)

    def __getitem__(self, i: int) -> str:
        return self._texts[i]


class TextFileSource:
    """UTF-8 text files: one document per file, or per non-blank line with `per_line=True`.
    Undecodable bytes are replaced (U+FFFD) rather than failing a long run."""

    def __init__(self, paths: Sequence[str | os.PathLike], per_line: bool = False):
        self.paths = [Path(p) for p in paths]
        self.per_line = per_line
        if per_line:
            self._index = _LineIndex(self.paths)

    def __len__(self) -> int:
        return len(self._index) if self.per_line else len(self.paths)

    def __getitem__(self, i: int) -> str:
        if self.per_line:
            raw, _, _ = self._index.read(i)
            return raw.decode("utf-8", errors="replace").rstrip("\r\n")
        return self.paths[i].read_bytes().decode("utf-8", errors="replace")


class _LineIndex:
    """Byte offsets of every non-blank line of a set of files, read back with os.pread (thread safe, no
    shared file position). Holds file descriptors, which are re-opened after pickling."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)
        file_ids, starts, lengths, linenos = [], [], [], []
        for fi, path in enumerate(self.paths):
            with open(path, "rb") as f:
                offset = 0
                for lineno, line in enumerate(f, 1):
                    if line.strip():
                        file_ids.append(fi), starts.append(offset), lengths.append(len(line))
                        linenos.append(lineno)
                    offset += len(line)
        self._file = np.asarray(file_ids, np.int32)
        self._start = np.asarray(starts, np.int64)
        self._len = np.asarray(lengths, np.int64)
        self._lineno = np.asarray(linenos, np.int64)
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._file)

    def read(self, i: int) -> tuple[bytes, Path, int]:
        fi = int(self._file[i])
        fd = self._fds.get(fi)
        if fd is None:
            with self._lock:
                fd = self._fds.get(fi)
                if fd is None:
                    fd = self._fds[fi] = os.open(self.paths[fi], os.O_RDONLY)
        return os.pread(fd, int(self._len[i]), int(self._start[i])), self.paths[fi], int(self._lineno[i])

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fds"], state["_lock"] = {}, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __del__(self):
        for fd in getattr(self, "_fds", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass


class JsonlSource:
    """JSON Lines, one document per non-blank line, text under `text_key`. Lines are parsed when read, so a
    malformed line fails when it is reached, with the file and line number in the message."""

    def __init__(self, paths: Sequence[str | os.PathLike], text_key: str = "text"):
        self.text_key = text_key
        self._index = _LineIndex([Path(p) for p in paths])

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> str:
        raw, path, lineno = self._index.read(i)
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: line {lineno}: invalid JSON ({e})") from None
        if not isinstance(record, dict) or self.text_key not in record:
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise ValueError(f"{path}: line {lineno}: no text_key {self.text_key!r} (found {keys})")
        text = record[self.text_key]
        if not isinstance(text, str):
            raise ValueError(f"{path}: line {lineno}: {self.text_key!r} is {type(text).__name__}, not a string")
        return text


class ParquetSource:
    """Parquet files (pyarrow), text in column `text_key`. Random access reads one row group and keeps the
    last few in memory, so shuffled reads are cheap only when row groups are small (~1-10k rows)."""

    _CACHE_GROUPS = 8

    def __init__(self, paths: Sequence[str | os.PathLike], text_key: str = "text"):
        import pyarrow.parquet as pq

        self.paths, self.text_key = [Path(p) for p in paths], text_key
        groups = []  # (file index, row group, rows)
        for fi, path in enumerate(self.paths):
            md = pq.ParquetFile(path).metadata
            names = md.schema.names
            if text_key not in names:
                raise ValueError(f"{path}: parquet file has no text_key column {text_key!r} (columns: {names})")
            groups += [(fi, g, md.row_group(g).num_rows) for g in range(md.num_row_groups)]
        self._groups = [(fi, g) for fi, g, _ in groups]
        self._ends = np.cumsum([n for _, _, n in groups], dtype=np.int64)
        self._cache: dict[int, list] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, i: int) -> str:
        import pyarrow.parquet as pq

        gi = int(np.searchsorted(self._ends, i, side="right"))
        rows = self._cache.get(gi)
        if rows is None:
            fi, g = self._groups[gi]
            rows = pq.ParquetFile(self.paths[fi]).read_row_group(g, columns=[self.text_key]).column(0).to_pylist()
            with self._lock:
                if len(self._cache) >= self._CACHE_GROUPS:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[gi] = rows
        text = rows[i - (int(self._ends[gi - 1]) if gi else 0)]
        if not isinstance(text, str):
            path = self.paths[self._groups[gi][0]]
            raise ValueError(f"{path}: document {i}: {self.text_key!r} is not a string: {text!r}")
        return text

    def __getstate__(self):
        return {**self.__dict__, "_cache": {}, "_lock": None}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


class TfdsSource:
    """A prepared TensorFlow Datasets dataset read through `tfds.data_source` (array_record, no TensorFlow
    needed to read). Nothing is downloaded or built here: the dataset must already be in `data_dir`."""

    def __init__(self, name: str, split: str, data_dir: str | os.PathLike | None = None, text_key: str = "text"):
        import tensorflow_datasets as tfds

        self.name, self.split, self.text_key = name, split, text_key
        where = f"data_dir={os.fspath(data_dir)!r}" if data_dir else "the default TFDS data_dir"
        try:
            self._ds = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        except tfds.core.registered.DatasetNotFoundError:
            raise ValueError(f"tfds dataset {name!r} is unknown (not registered, not found in {where})") from None
        except Exception as e:  # noqa: BLE001 - registered but not prepared, bad split, ...
            raise ValueError(f"cannot open tfds dataset {name!r} split {split!r} in {where}: {e}") from e

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, i: int) -> str:
        record = self._ds[i]
        if self.text_key not in record:
            raise ValueError(
                f"tfds {self.name}:{self.split}: no text_key {self.text_key!r} (found {sorted(record)})"
            )
        text = record[self.text_key]
        return text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)


class PasskeySource:
    """`n` synthetic passkey-retrieval documents (jaxsuite.core.corpus.passkey_document), generated on access.

    Mixed into a corpus ("stdlib+passkey:4000") they teach a small LM to retrieve a key from earlier in its
    context, so that long-context retrieval can be measured at toy scale (HALO's needle-in-a-haystack)."""

    def __init__(self, n: int, seed: int = 0, max_filler_sentences: int = 12):
        if n <= 0:
            raise ValueError(f"passkey source needs a positive document count, got {n}")
        self.n, self.seed, self.max_filler_sentences = int(n), int(seed), int(max_filler_sentences)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> str:
        if not 0 <= int(i) < self.n:
            raise IndexError(i)
        return passkey_document(self.seed, int(i), max_filler_sentences=self.max_filler_sentences)


def _parse_passkey(source: str) -> PasskeySource:
    """"passkey:N[:max_filler_sentences[:seed]]" -> PasskeySource."""
    parts = source.split(":")[1:]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if not 1 <= len(values) <= 3:
        raise ValueError(f"passkey source must be 'passkey:N[:max_filler_sentences[:seed]]', got {source!r}")
    n, max_filler, seed = (values + [12, 0][len(values) - 1:])[:3]
    return PasskeySource(n, seed=seed, max_filler_sentences=max_filler)


class ConcatSource:
    """Several sources one after the other."""

    def __init__(self, sources: Sequence[Any]):
        self.sources = list(sources)
        self._ends = np.cumsum([len(s) for s in self.sources], dtype=np.int64)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, i: int) -> str:
        k = int(np.searchsorted(self._ends, i, side="right"))
        return self.sources[k][i - (int(self._ends[k - 1]) if k else 0)]


_EXT_FORMATS = {".txt": "text", ".text": "text", ".md": "text", ".py": "text", ".jsonl": "jsonl",
                ".parquet": "parquet"}


def resolve_paths(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Expand a glob, file, folder (its files with known extensions, recursively) or list of them, sorted
    within each pattern. A pattern matching nothing or a missing path raises FileNotFoundError naming it."""
    if isinstance(source, (list, tuple)):
        return [p for s in source for p in resolve_paths(s)]
    s = os.path.expanduser(os.fspath(source))
    if any(c in s for c in "*?["):
        paths = sorted(Path(p) for p in globlib.glob(s, recursive=True) if os.path.isfile(p))
        if not paths:
            raise FileNotFoundError(f"no files match the pattern {s!r}")
        return paths
    path = Path(s)
    if path.is_file():
        return [path]
    if path.is_dir():
        paths = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _EXT_FORMATS)
        if not paths:
            raise FileNotFoundError(f"folder {s!r} has no files with a known extension {sorted(_EXT_FORMATS)}")
        return paths
    raise FileNotFoundError(f"data source not found: {s!r}")


def _parse_tfds(source: str) -> tuple[str, str]:
    """"tfds:name[/config][:version]:split" -> (name, split); the split may hold ':' inside [...]."""
    rest = source[len("tfds:"):]
    bracket = rest.find("[")
    head, tail = (rest[:bracket], rest[bracket:]) if bracket >= 0 else (rest, "")
    if ":" not in head:
        raise ValueError(f"tfds source must be 'tfds:name:split', got {source!r}")
    name, split = head.rsplit(":", 1)
    return name, split + tail


def open_source(
    source: Any,
    *,
    format: str | None = None,  # noqa: A002 - "text" | "jsonl" | "parquet"; None = from the extension
    text_key: str = "text",
    per_line: bool = False,
    data_dir: str | os.PathLike | None = None,
):
    """A random-access document source from a spec:
      "stdlib" | "stdlib:train" | "stdlib:eval" | "stdlib:all"   (bare "stdlib" = the train split)
      "tfds:name:split"                                           (tfds.data_source; `data_dir`)
      "passkey:N[:max_filler_sentences[:seed]]"                   (N synthetic passkey-retrieval documents)
      "a+b+..."                                                   (the documents of each part, concatenated)
      a glob, file, folder or list of them                        (format from each extension, or `format`)
      an object with __len__ and __getitem__                      (used as is, e.g. InMemorySource)
    """
    if isinstance(source, str) and "+" in source and not os.path.exists(source):
        return ConcatSource([open_source(part, format=format, text_key=text_key, per_line=per_line,
                                         data_dir=data_dir) for part in source.split("+")])
    if isinstance(source, str) and source.startswith("passkey:"):
        return _parse_passkey(source)
    if isinstance(source, str) and (source == "stdlib" or source.startswith("stdlib:")):
        split = source.split(":", 1)[1] if ":" in source else "train"
        return TextFileSource(stdlib_files(split))
    if isinstance(source, str) and source.startswith("tfds:"):
        name, split = _parse_tfds(source)
        return TfdsSource(name, split, data_dir=data_dir, text_key=text_key)
    if not isinstance(source, (str, os.PathLike, list, tuple)):
        if hasattr(source, "__len__") and hasattr(source, "__getitem__"):
            return source
        raise TypeError(f"unsupported data source {source!r}")
    by_format: dict[str, list[Path]] = {}
    for path in resolve_paths(source):
        fmt = format or _EXT_FORMATS.get(path.suffix)
        if fmt is None:
            raise ValueError(f"cannot tell the format of {str(path)!r} from its extension; pass format="
                             "'text', 'jsonl' or 'parquet'")
        by_format.setdefault(fmt, []).append(path)
    readers = {"text": lambda ps: TextFileSource(ps, per_line=per_line),
               "jsonl": lambda ps: JsonlSource(ps, text_key), "parquet": lambda ps: ParquetSource(ps, text_key)}
    unknown = set(by_format) - set(readers)
    if unknown:
        raise ValueError(f"unknown data format {sorted(unknown)}; expected one of {sorted(readers)}")
    sources = [readers[f](ps) for f, ps in by_format.items()]
    return sources[0] if len(sources) == 1 else ConcatSource(sources)


# ----------------------------------------------------------------------------------------------------------
# Packing: concat-then-split into overlapping seq_len+1 windows
# ----------------------------------------------------------------------------------------------------------
class _PackedWindowsIterator(grain.DatasetIterator):
    """State = (parent state from which next() yields the document the next window starts in, offset into
    that document). Restoring re-reads one document; nothing else is replayed."""

    def __init__(self, parent: grain.DatasetIterator, seq_len: int, pad_id: int):
        super().__init__(parent)
        self._window, self._pad_id = seq_len + 1, pad_id
        self._doc: np.ndarray | None = None
        self._doc_state = copy.deepcopy(parent.get_state())
        self._offset = 0  # into self._doc, or the offset to apply to the next fetched doc when it is None
        self._arange = np.arange(self._window, dtype=np.int32)

    def _fetch(self) -> None:
        state = copy.deepcopy(self._parent.get_state())
        doc = next(self._parent)  # StopIteration propagates to the caller
        self._doc_state, self._doc = state, np.asarray(doc, dtype=np.int32).reshape(-1)

    def __next__(self) -> dict[str, np.ndarray]:
        w = self._window
        tokens = np.full(w, self._pad_id, np.int32)  # [T+1]
        segment_ids = np.zeros(w, np.int32)  # [T+1]
        positions = np.zeros(w, np.int32)  # [T+1]
        n, seg = 0, 0
        while n < w:
            if self._doc is None:
                offset = self._offset
                try:
                    self._fetch()
                except StopIteration:
                    self._offset = 0
                    break
                self._offset = offset
            if self._offset >= len(self._doc):  # document used up (or empty): move on
                self._doc, self._offset = None, 0
                continue
            take = min(w - n, len(self._doc) - self._offset)
            seg += 1
            tokens[n : n + take] = self._doc[self._offset : self._offset + take]
            segment_ids[n : n + take] = seg
            positions[n : n + take] = self._arange[:take]
            n += take
            self._offset += take
        if n == w:
            self._offset -= 1  # the next window starts at this window's last token (its last target)
        elif n < 2:  # stream exhausted; a lone token has no target
            raise StopIteration
        # Target t is real when token t+1 belongs to the same (non-padding) segment as token t.
        loss_mask = (segment_ids[:-1] != 0) & (segment_ids[:-1] == segment_ids[1:])
        return {
            "inputs": tokens[:-1],  # [T]
            "targets": tokens[1:],  # [T]
            "segment_ids": segment_ids[:-1],  # [T]
            "positions": positions[:-1],  # [T]
            "loss_mask": loss_mask.astype(np.float32),  # [T]
        }

    def get_state(self) -> dict[str, Any]:
        if self._doc is None:
            return {"parent": copy.deepcopy(self._parent.get_state()), "offset": int(self._offset)}
        return {"parent": copy.deepcopy(self._doc_state), "offset": int(self._offset)}

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(copy.deepcopy(state["parent"]))
        self._doc, self._offset = None, int(state["offset"])


class PackedWindowsIterDataset(grain.IterDataset):
    """Packs a stream of 1-D token arrays into per-example dicts of the batch contract (unbatched, [T]).

    Documents are concatenated and cut into windows of seq_len+1 tokens with stride seq_len (window k+1
    starts at window k's last token), so each adjacent token pair of the stream is one (input, target) pair
    exactly once. A document longer than a window continues in the next one as a new segment whose positions
    restart at 0. The last window of a finite stream is padded (segment 0, loss_mask 0).
    """

    def __init__(self, parent: grain.IterDataset, *, seq_len: int, pad_id: int = 0):
        super().__init__(parent)
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self._seq_len, self._pad_id = seq_len, pad_id

    def __iter__(self) -> _PackedWindowsIterator:
        return _PackedWindowsIterator(self._parent.__iter__(), self._seq_len, self._pad_id)

    def __str__(self) -> str:
        return f"PackedWindowsIterDataset(seq_len={self._seq_len})"


# ----------------------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------------------
class _Tokenize:
    """Picklable map fn (grain worker processes pickle the pipeline)."""

    def __init__(self, tokenizer: Tokenizer, prepend_bos: bool, append_eos: bool):
        if append_eos and tokenizer.eos_id is None:
            raise ValueError(f"append_eos=True but tokenizer {tokenizer!r} has no eos_id")
        if prepend_bos and tokenizer.bos_id is None:
            raise ValueError(f"prepend_bos=True but tokenizer {tokenizer!r} has no bos_id")
        self.tokenizer, self.prepend_bos, self.append_eos = tokenizer, prepend_bos, append_eos

    def __call__(self, text: str) -> np.ndarray:
        if not text:          # an empty document (or a malformed record skipped): nothing, not a lone EOS
            return np.zeros(0, np.int32)
        ids = self.tokenizer.encode(text)
        ids = ([self.tokenizer.bos_id] if self.prepend_bos else []) + ids
        ids = ids + ([self.tokenizer.eos_id] if self.append_eos else [])
        return np.asarray(ids, dtype=np.int32)


def document_dataset(
    source: Any,
    *,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    shard_index: int = 0,
    shard_count: int = 1,
    **source_kwargs,
) -> grain.MapDataset:
    """Documents (str) in the order this process reads them: a per-epoch permutation of the whole source
    (identical on every process, seeded), then every `shard_count`-th document from `shard_index`. Taking
    the shard from the global stream partitions each epoch's documents exactly across processes; with a
    finite `num_epochs` the stream is cut to a multiple of `shard_count` so all processes get equally many."""
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index must be in [0, {shard_count}), got {shard_index}")
    ds = grain.MapDataset.source(open_source(source, **source_kwargs))
    if len(ds) == 0:
        raise ValueError(f"data source {source!r} has no documents")
    if shuffle:
        ds = ds.shuffle(seed=int(seed) % 2**32)
    ds = ds.repeat(num_epochs)
    stop = None if num_epochs is None else (len(ds) // shard_count) * shard_count
    return ds[shard_index:stop:shard_count]


def make_lm_dataset(
    source: Any,
    tokenizer: Tokenizer | str,
    seq_len: int,
    batch_size: int,
    *,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    shard_index: int | None = None,
    shard_count: int | None = None,
    append_eos: bool = True,
    prepend_bos: bool = False,
    drop_remainder: bool = True,
    text_key: str = "text",
    format: str | None = None,  # noqa: A002
    per_line: bool = False,
    data_dir: str | os.PathLike | None = None,
    read_threads: int = 4,
    shuffle_window: int = 1024,
    on_bad_record: str = "error",
    check: bool = True,
) -> grain.IterDataset:
    """Packed LM batches of this process's share: dicts of numpy [batch_size // shard_count, seq_len].

    `iter(ds)` gives a grain DatasetIterator whose get_state()/set_state() (JSON-safe) resume exactly at
    the next batch. shard_index/shard_count default to jax.process_index()/jax.process_count().

    Shuffling happens twice: documents are permuted per epoch, and (with shuffle=True) packed windows are
    shuffled within a buffer of `shuffle_window` windows. The second is what mixes a batch: a long source
    file fills many consecutive windows, and without it every row of a batch would come from one file.
    With
    num_epochs=None the stream is infinite; otherwise the last window is padded and, with
    drop_remainder=False, the last batch may be smaller.

    With `check` (the default) the source is checked first (jaxsuite.core.data_checks): malformed records
    (`on_bad_record` "error" raises naming file and line, "skip" leaves them out), no text at all, and, for an
    infinite stream, fewer tokens than one batch are errors before anything trains.
    """
    shard_index, shard_count = _process_share(batch_size, shard_index, shard_count)
    tokenizer = load_tokenizer(tokenizer)
    name = source if isinstance(source, (str, os.PathLike)) else type(source).__name__
    opened = open_source(source, text_key=text_key, format=format, per_line=per_line, data_dir=data_dir)
    packed = _packed_windows(opened, str(name), tokenizer, seq_len, seed=seed, window_seed=int(seed) + 1,
                             shuffle=shuffle, num_epochs=num_epochs, shard_index=shard_index,
                             shard_count=shard_count, append_eos=append_eos, prepend_bos=prepend_bos,
                             read_threads=read_threads, shuffle_window=shuffle_window, on_bad_record=on_bad_record,
                             check=check, needed_tokens=batch_size * seq_len if num_epochs is None else 0)
    return packed.batch(batch_size // shard_count, drop_remainder=drop_remainder)


def _process_share(batch_size: int, shard_index: int | None, shard_count: int | None) -> tuple[int, int]:
    """(shard_index, shard_count), defaulting to this jax process; the global batch must split over them."""
    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
    if batch_size % shard_count:
        raise ValueError(f"global batch_size {batch_size} is not divisible by the process count {shard_count}")
    return shard_index, shard_count


def _packed_windows(opened: Any, name: str, tokenizer: Tokenizer, seq_len: int, *, seed: int, window_seed: int,
                    shuffle: bool, num_epochs: int | None, shard_index: int, shard_count: int, append_eos: bool,
                    prepend_bos: bool, read_threads: int, shuffle_window: int, on_bad_record: str, check: bool,
                    needed_tokens: int) -> grain.IterDataset:
    """One opened source as a stream of packed [seq_len] windows (this process's share): checked first when
    `check` (malformed records, no text, fewer than `needed_tokens` tokens when that is > 0), documents permuted
    per epoch by `seed`, windows shuffled within `shuffle_window` by `window_seed`."""
    from jaxsuite.core.data_checks import GuardedSource, check_enough_tokens, check_source
    if check:
        check_source(opened, name, on_bad_record=on_bad_record)
        if needed_tokens > 0:
            check_enough_tokens(opened, tokenizer, needed=needed_tokens, name=name, bos=prepend_bos, eos=append_eos)
    docs = document_dataset(
        GuardedSource(opened, on_bad_record), seed=seed, shuffle=shuffle, num_epochs=num_epochs,
        shard_index=shard_index, shard_count=shard_count,
    )
    tokens = docs.map(_Tokenize(tokenizer, prepend_bos, append_eos)).to_iter_dataset(
        grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=max(16, 8 * read_threads))
    )
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    packed = PackedWindowsIterDataset(tokens, seq_len=seq_len, pad_id=pad_id)
    if shuffle and shuffle_window > 1:
        # grain's window shuffle checkpoints as (parent state at the window's start, position): JSON-safe.
        packed = grain.experimental.WindowShuffleIterDataset(packed, window_size=int(shuffle_window),
                                                             seed=int(window_seed) % 2**32)
    return packed


def mixture_lm_dataset(
    sources: Sequence[Any],
    weights: Sequence[float],
    tokenizer: Tokenizer | str,
    seq_len: int,
    batch_size: int,
    *,
    seed: int,
    shard_index: int | None = None,
    shard_count: int | None = None,
    append_eos: bool = True,
    prepend_bos: bool = False,
    text_key: str = "text",
    shuffle_window: int = 256,
    read_threads: int = 4,
    on_bad_record: str = "error",
) -> grain.IterDataset:
    """Packed LM batches drawn from several sources in proportion to `weights`, by packed window: a share w of
    the windows, so of the tokens, comes from each source (grain's IterDataset.mix). Each source is an infinite,
    shuffled stream packed on its own (a window never spans two sources), seeded by (seed, its index), so the
    mixture is the same on any device count. For a data-mixture comparison with equal tokens: the same steps
    and batch shape, different weights. Each source is checked as make_lm_dataset checks one (a malformed
    record, `on_bad_record`; no text at all); a short source repeats, as every stream here is infinite."""
    if len(sources) != len(weights) or not sources:
        raise ValueError(f"need one weight per source, got {len(sources)} sources and {len(weights)} weights")
    if any(float(w) < 0 for w in weights) or sum(float(w) for w in weights) <= 0:
        raise ValueError(f"mixture weights must be >= 0 with a positive sum, got {list(weights)}")
    shard_index, shard_count = _process_share(batch_size, shard_index, shard_count)
    tokenizer = load_tokenizer(tokenizer)
    streams, kept = [], []
    for i, (source, w) in enumerate(zip(sources, weights)):
        if float(w) == 0:
            continue
        name = source if isinstance(source, (str, os.PathLike)) else f"mixture source {i}"
        streams.append(_packed_windows(
            open_source(source, text_key=text_key), str(name), tokenizer, seq_len, seed=int(seed) * 1000 + i,
            window_seed=int(seed) * 1000 + i + 1, shuffle=True, num_epochs=None, shard_index=shard_index,
            shard_count=shard_count, append_eos=append_eos, prepend_bos=prepend_bos, read_threads=read_threads,
            shuffle_window=shuffle_window, on_bad_record=on_bad_record, check=True, needed_tokens=0))
        kept.append(float(w))
    mixed = streams[0] if len(streams) == 1 else grain.IterDataset.mix(streams, kept)
    return mixed.batch(batch_size // shard_count, drop_remainder=True)
