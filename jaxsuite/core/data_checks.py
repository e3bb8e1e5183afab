"""Data checked before training: a source that is missing, empty, malformed or too small stops the job at start
with the file and line, instead of training on nothing or failing hours later.

    source = open_source(spec)
    report = check_source(source, spec, on_bad_record="error")     # raises DataError naming file and line
    check_enough_tokens(source, tokenizer, needed=batch_size * seq_len, name=spec)
    source = GuardedSource(source, "skip")                         # what the pipeline reads from

What is checked when a job starts (`make_lm_dataset`):
  - every document of a source of up to FULL_PASS_DOCUMENTS documents is read and parsed (a streaming pass);
    a larger source (a pod's corpus: billions of tokens) has its first FULL_PASS_DOCUMENTS checked and the
    rest guarded as they are read;
  - a source whose documents hold no text at all is an error (an empty file trained to loss 0 before);
  - a training stream must hold at least one batch of tokens (batch_size x seq_len) before it repeats.
`data.on_bad_record` decides what a malformed record (invalid JSON, a missing or non-string text field) does:
  "error"  stop with `<file>: line <n>: <why>` (the default);
  "skip"   leave it out, count it, and log the first few (the count is in the log at start and at the end).
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

log = logging.getLogger("jaxsuite.data")

ON_BAD_RECORD = ("error", "skip")
FULL_PASS_DOCUMENTS = 20_000        # beyond this, the first ones are checked and the rest guarded when read
_LOGGED_SKIPS = 5


class DataError(ValueError):
    """A data source that cannot be trained on: the message names the source, file and line."""


@dataclasses.dataclass
class SourceReport:
    documents: int             # in the source
    checked: int               # read and parsed at start
    characters: int            # of text in the checked documents
    bad: list[str]             # one message per malformed record found ("skip" only; "error" raises)


def _check_policy(on_bad_record: str) -> None:
    if on_bad_record not in ON_BAD_RECORD:
        raise DataError(f"data.on_bad_record={on_bad_record!r}: use one of {ON_BAD_RECORD}")


def check_source(source: Any, name: str, *, on_bad_record: str = "error",
                 full_pass: int | None = None) -> SourceReport:
    """Reads `source`'s documents (all of them up to `full_pass`, else the first `full_pass`): a malformed
    record raises DataError (on_bad_record "error") or is counted ("skip"); no text at all raises DataError."""
    _check_policy(on_bad_record)
    n = len(source)
    if n == 0:
        raise DataError(f"data source {name!r} has no documents")
    full_pass = FULL_PASS_DOCUMENTS if full_pass is None else int(full_pass)
    checked, characters, bad = min(n, full_pass), 0, []
    for i in range(checked):
        try:
            text = source[i]
        except ValueError as e:           # the readers name the file and line
            if on_bad_record == "error":
                raise DataError(f"{e} (data.on_bad_record='skip' leaves such records out)") from None
            bad.append(str(e))
            continue
        characters += len(text.strip())
    if characters == 0:
        raise DataError(f"data source {name!r} holds no text: {checked} document(s), all empty"
                        + (f" or malformed ({len(bad)})" if bad else ""))
    if bad:
        log.warning("data source %r: %d malformed record(s) in the first %d will be skipped; first: %s",
                    name, len(bad), checked, "; ".join(bad[:_LOGGED_SKIPS]))
    if checked < n:
        log.info("data source %r: checked the first %d of %d documents; the rest are checked as read",
                 name, checked, n)
    return SourceReport(documents=n, checked=checked, characters=characters, bad=bad)


def check_enough_tokens(source: Any, tokenizer: Any, *, needed: int, name: str, bos: bool, eos: bool) -> int:
    """Tokenizes documents until `needed` tokens are found; raises DataError when the whole source holds fewer
    (it would repeat inside every batch). Returns the tokens counted (at most a document past `needed`)."""
    total = 0
    for i in range(len(source)):
        try:
            text = source[i]
        except ValueError:
            continue                      # malformed and skipped (check_source has decided the policy)
        if text:
            total += len(tokenizer.encode(text)) + int(bos) + int(eos)
        if total >= needed:
            return total
    raise DataError(f"data source {name!r} holds {total} tokens, fewer than one batch of {needed} "
                    f"(data.batch_size x data.seq_len): add data or lower data.batch_size / data.seq_len")


class GuardedSource:
    """A source whose malformed records are skipped (read as empty documents, which the packer passes over)
    or raise DataError, as `on_bad_record` says: the part of a large source not checked at start."""

    def __init__(self, source: Any, on_bad_record: str = "error"):
        _check_policy(on_bad_record)
        self.source, self.on_bad_record = source, on_bad_record
        self.skipped = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> str:
        try:
            return self.source[i]
        except ValueError as e:
            if self.on_bad_record == "error":
                raise DataError(f"{e} (data.on_bad_record='skip' leaves such records out)") from None
            with self._lock:
                self.skipped += 1
                if self.skipped <= _LOGGED_SKIPS:
                    log.warning("skipping a malformed record: %s", e)
            return ""

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_lock"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
