"""Data checked before training (jaxsuite.core.data_checks): the table of issue 14 — an empty file, a malformed
jsonl line, too little text for one batch — each stops the job at start naming the file (and line), in a single
source or in any source of a mixture, or with data.on_bad_record='skip' the bad record is left out and counted;
a bad record past the checked prefix stops the run with its message as the last line, the last checkpoint
intact."""
import json

import numpy as np
import pytest

from jaxsuite.core import data, data_checks
from jaxsuite.core.data_checks import DataError

DOC = "the quick brown fox jumps over the lazy dog. " * 20


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_an_empty_file_is_an_error_at_start(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.txt.* holds no text: 1 document\(s\), all empty"):
        data.make_lm_dataset(str(empty), "byte", seq_len=16, batch_size=2, seed=0)


def test_a_malformed_jsonl_line_is_named_or_skipped(tmp_path, caplog):
    path = _jsonl(tmp_path / "docs.jsonl", [{"text": DOC}, {"text": DOC}, '{"text": "cut off', {"text": DOC}])
    with pytest.raises(DataError, match=rf"{path}: line 3: invalid JSON .*on_bad_record='skip'"):
        data.make_lm_dataset(str(path), "byte", seq_len=16, batch_size=2, seed=0)
    with caplog.at_level("WARNING", logger="jaxsuite.data"):
        ds = data.make_lm_dataset(str(path), "byte", seq_len=16, batch_size=2, seed=0, on_bad_record="skip",
                                  shuffle=False, num_epochs=1, drop_remainder=False)
    assert any("1 malformed record(s)" in r.getMessage() and "line 3" in r.getMessage() for r in caplog.records)
    # the three good documents, whole and nothing else: each is len(DOC) bytes + EOS, so len(DOC) targets
    batches = list(ds)
    assert sum(int(b["loss_mask"].sum()) for b in batches) == 3 * len(DOC.encode())
    assert b"cut off" not in b"".join(bytes(np.asarray(b["inputs"], np.uint8).ravel()) for b in batches)
    with pytest.raises(DataError, match="on_bad_record='maybe'"):
        data.make_lm_dataset(str(path), "byte", seq_len=16, batch_size=2, seed=0, on_bad_record="maybe")


def test_a_mixture_checks_each_source_as_a_single_source_is_checked(tmp_path):
    good = _jsonl(tmp_path / "good.jsonl", [{"text": DOC}] * 2)
    bad = _jsonl(tmp_path / "bad.jsonl", [{"text": DOC}, '{"text": "cut off'])
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match=rf"{bad}: line 2: invalid JSON"):
        data.mixture_lm_dataset([str(good), str(bad)], [0.5, 0.5], "byte", 16, 2, seed=0)
    with pytest.raises(DataError, match=r"empty\.txt.* holds no text"):
        data.mixture_lm_dataset([str(good), str(empty)], [0.5, 0.5], "byte", 16, 2, seed=0)
    # skipped, the bad record is left out of its source's stream: only the good document's bytes come back
    batch = next(iter(data.mixture_lm_dataset([str(bad)], [1.0], "byte", 16, 2, seed=0, on_bad_record="skip")))
    assert b"cut off" not in bytes(np.asarray(batch["inputs"], np.uint8).ravel())
    data.mixture_lm_dataset([str(good), str(empty)], [1.0, 0.0], "byte", 16, 2, seed=0)   # weight 0: not read


def test_fewer_tokens_than_one_batch_is_an_error(tmp_path):
    path = _jsonl(tmp_path / "small.jsonl", [{"text": "a few words"}])
    with pytest.raises(DataError, match=r"holds 12 tokens, fewer than one batch of 64 \(data.batch_size x"):
        data.make_lm_dataset(str(path), "byte", seq_len=16, batch_size=4, seed=0)
    data.make_lm_dataset(str(path), "byte", seq_len=16, batch_size=4, seed=0, num_epochs=1)   # an eval set may


def test_a_bad_record_past_the_checked_prefix_stops_the_run_naming_it(tmp_path, monkeypatch, capsys):
    """Only the first FULL_PASS_DOCUMENTS are read at start: a later malformed line fails when the pipeline
    reaches it, and the launcher's last line is that message (file and line), not a checkpoint error."""
    from jaxsuite import launch
    monkeypatch.setattr(data_checks, "FULL_PASS_DOCUMENTS", 2)
    rows = [{"text": DOC}] * 6 + ["{not json"] + [{"text": DOC}] * 3
    path = _jsonl(tmp_path / "later.jsonl", rows)
    argv = ["--config", "configs/qwen3_pretrain.py:tiny", "--workdir", str(tmp_path / "run"),
            f"--config.data.source={path}", "--config.data.eval_source=", "--config.data.shuffle_window=1",
            "--config.tokenizer=byte", "--config.model.arch.vocab_size=260", "--config.train.steps=200",
            "--config.train.checkpoint_every=2", "--config.sample.num_samples=0"]
    with pytest.raises(SystemExit) as e:
        launch.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and err[-1].startswith(f"python -m jaxsuite.launch: error: {path}: line 7: invalid JSON")
    steps = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit())
    assert steps and steps[-1] >= 2 and not list((tmp_path / "run" / "checkpoints").glob("*tmp*"))


def test_the_launcher_reports_an_empty_source_in_one_line(tmp_path, capsys):
    from jaxsuite import launch
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(SystemExit) as e:
        launch.main(["--config", "configs/qwen3_pretrain.py:tiny", "--workdir", str(tmp_path / "run"),
                     f"--config.data.source={empty}"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 1 and "holds no text" in last and str(empty) in last
    assert not (tmp_path / "run" / "checkpoints").exists()           # stopped before training
