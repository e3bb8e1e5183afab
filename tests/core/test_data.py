"""Tests of jaxsuite.core.data (readers, packing, shuffling, sharding, resumable iterators) and
jaxsuite.core.tokenizer (SentencePiece training, Hugging Face loading, the cached stdlib tokenizer).

References are independent: hand-built packing expectations, synthetic token streams whose ids encode
(document, position) so every target can be checked, files written here with json/pyarrow/tfds, and
transformers' own tokenizer for the Hugging Face wrapper.
"""
import json
import sys

import grain
import numpy as np
import pytest

from jaxsuite.core import corpus, data
from jaxsuite.core.tokenizer import (
    ByteTokenizer,
    HFTokenizer,
    SentencePieceTokenizer,
    load_tokenizer,
    stdlib_tokenizer,
    train_sentencepiece,
)

KEYS = ("inputs", "targets", "segment_ids", "positions", "loss_mask")


def _pack(docs, seq_len):
    ds = grain.MapDataset.source([np.asarray(d, np.int32) for d in docs]).to_iter_dataset()
    return [{k: v.tolist() for k, v in e.items()} for e in data.PackedWindowsIterDataset(ds, seq_len=seq_len)]


def _take(it, n):
    return [next(it) for _ in range(n)]


def _assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert sorted(x) == sorted(KEYS)
        for k in KEYS:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def _letter_docs(n=40, seed=0):
    """Documents of one repeated letter each (a..z, A..N), varied lengths: bytes identify the document."""
    rng = np.random.default_rng(seed)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
    return [letters[i] * int(rng.integers(1, 30)) for i in range(n)]


# --------------------------------------------------------------------------------------------- packing
def test_packing_matches_hand_built_windows():
    # Stream 1 2 3 | 4 5 | 6 7 8 9 10 11 | 12 ; seq_len 4 -> windows of 5 tokens, stride 4.
    got = _pack([[1, 2, 3], [4, 5], [6, 7, 8, 9, 10, 11], [12]], seq_len=4)
    expected = [
        dict(inputs=[1, 2, 3, 4], targets=[2, 3, 4, 5], segment_ids=[1, 1, 1, 2], positions=[0, 1, 2, 0],
             loss_mask=[1, 1, 0, 1]),
        # window 2 starts at token 5 (last target of window 1): the rest of doc [4, 5] is its own segment
        dict(inputs=[5, 6, 7, 8], targets=[6, 7, 8, 9], segment_ids=[1, 2, 2, 2], positions=[0, 0, 1, 2],
             loss_mask=[0, 1, 1, 1]),
        # the long document continues as a new segment with positions from 0; the end is padded
        dict(inputs=[9, 10, 11, 12], targets=[10, 11, 12, 0], segment_ids=[1, 1, 1, 2], positions=[0, 1, 2, 0],
             loss_mask=[1, 1, 0, 0]),
    ]
    assert got == expected


def test_packing_pads_a_short_stream_and_skips_empty_documents():
    got = _pack([[], [7, 8, 9], []], seq_len=5)
    assert got == [dict(inputs=[7, 8, 9, 0, 0], targets=[8, 9, 0, 0, 0], segment_ids=[1, 1, 1, 0, 0],
                        positions=[0, 1, 2, 0, 0], loss_mask=[1, 1, 0, 0, 0])]
    assert _pack([[5]], seq_len=3) == []  # one token has no target


def test_segments_never_leak_and_every_pair_is_trained_once():
    rng = np.random.default_rng(0)
    lengths = [0, 1, 2, 30, 5, 7, 8, 1, 16, 3, 50, 6]
    # token = 1000 * (doc + 1) + position: the doc and position of every token can be read back
    docs = [[1000 * (d + 1) + p for p in range(n)] for d, n in enumerate(lengths)]
    order = rng.permutation(len(docs))
    docs = [docs[i] for i in order]
    seq_len = 7
    windows = _pack(docs, seq_len)
    trained = []
    for w in windows:
        x, y, seg, pos, m = (np.array(w[k]) for k in KEYS)
        same_doc_next = (y == x + 1) & (y // 1000 == x // 1000) & (x > 0)
        np.testing.assert_array_equal(m.astype(bool), same_doc_next)  # mask exactly where target is the next token
        for s in set(seg[seg > 0].tolist()):  # positions restart at 0 in every segment and count up
            np.testing.assert_array_equal(pos[seg == s], np.arange((seg == s).sum()))
            assert len(set((x[seg == s] // 1000).tolist())) == 1  # a segment is one document
        trained += [(a, b) for a, b, keep in zip(x, y, m) if keep]
    all_pairs = [(a, a + 1) for d in docs for a in d[:-1]]
    assert sorted(trained) == sorted(all_pairs)


# --------------------------------------------------------------------------------------------- pipeline
def test_batches_follow_the_contract_and_are_deterministic_per_seed():
    src = data.InMemorySource(_letter_docs())
    tok = ByteTokenizer()

    def first(seed, n=3):
        ds = data.make_lm_dataset(src, tok, seq_len=16, batch_size=4, seed=seed, shard_index=0, shard_count=1)
        return _take(iter(ds), n)

    a, b, c = first(0), first(0), first(1)
    _assert_batches_equal(a, b)
    assert not all(np.array_equal(x["inputs"], y["inputs"]) for x, y in zip(a, c))
    batch = a[0]
    for k, dtype in zip(KEYS, (np.int32, np.int32, np.int32, np.int32, np.float32)):
        assert batch[k].shape == (4, 16) and batch[k].dtype == dtype, k
    # the EOS closing each document is a trained target; the token after it is not
    eos_targets = batch["targets"] == tok.eos_id
    assert (batch["loss_mask"][eos_targets] == 1).all()
    assert (batch["loss_mask"][batch["inputs"] == tok.eos_id] == 0).all()


def test_each_epoch_is_a_new_permutation_of_all_documents():
    texts = [f"doc{i}" for i in range(23)]
    ds = data.document_dataset(data.InMemorySource(texts), seed=3, num_epochs=2)
    docs = list(ds)
    first, second = docs[:23], docs[23:]
    assert sorted(first) == sorted(texts) == sorted(second)
    assert first != second and first != texts
    unshuffled = data.document_dataset(data.InMemorySource(texts), seed=3, shuffle=False, num_epochs=1)
    assert list(unshuffled) == texts


@pytest.mark.parametrize("shuffle_window", [1, 5])
@pytest.mark.parametrize("skip", [0, 1, 3, 6])
def test_iterator_state_restores_the_exact_next_batches(skip, shuffle_window):
    # Long documents so that saved states land in the middle of documents (offset > 0) too.
    rng = np.random.default_rng(1)
    texts = ["".join(rng.choice(list("abcdefgh"), size=int(n))) for n in rng.integers(1, 90, size=30)]
    ds = data.make_lm_dataset(data.InMemorySource(texts), ByteTokenizer(), seq_len=24, batch_size=3, seed=7,
                              num_epochs=3, shard_index=0, shard_count=1, shuffle_window=shuffle_window)
    it = iter(ds)
    _take(it, skip)
    state = json.loads(json.dumps(it.get_state()))  # grain's checkpoint handler round-trips through JSON
    expected = _take(it, 4)
    restored = iter(ds)
    restored.set_state(state)
    _assert_batches_equal(_take(restored, 4), expected)


def test_window_shuffle_mixes_long_documents_within_a_batch():
    # 6 long one-letter documents: each fills ~60 consecutive windows of 16 tokens
    texts = [c * 1000 for c in "abcdef"]
    src = data.InMemorySource(texts)

    def letters_per_row(shuffle_window):
        ds = data.make_lm_dataset(src, ByteTokenizer(), seq_len=16, batch_size=8, seed=0, shard_index=0,
                                  shard_count=1, shuffle_window=shuffle_window)
        batch = next(iter(ds))
        return {chr(int(row[0]) - 3) for row in batch["inputs"]}

    assert len(letters_per_row(1)) == 1            # without it, a batch is one document's consecutive windows
    assert len(letters_per_row(400)) >= 3          # the window spans all documents: rows come from several


def test_sharding_partitions_documents_across_two_processes():
    texts = _letter_docs(n=40)
    src = data.InMemorySource(texts)
    shards = [list(data.document_dataset(src, seed=5, num_epochs=1, shard_index=i, shard_count=2)) for i in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 20
    assert not set(shards[0]) & set(shards[1]) and sorted(shards[0] + shards[1]) == sorted(texts)
    # End to end: each document is one letter, so the letters a process sees identify its documents.
    tok = ByteTokenizer()
    seen = []
    for i in (0, 1):
        ds = data.make_lm_dataset(src, tok, seq_len=8, batch_size=4, seed=5, num_epochs=1, shard_index=i,
                                  shard_count=2, drop_remainder=False)
        ids = np.concatenate([b["inputs"][b["segment_ids"] > 0] for b in ds])
        seen.append({chr(t - 3) for t in ids.tolist() if t >= 3})
        assert all(b["inputs"].shape[0] <= 2 for b in ds)  # per-process batch = 4 // 2
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == {t[0] for t in texts}
    with pytest.raises(ValueError, match="not divisible"):
        data.make_lm_dataset(src, tok, seq_len=8, batch_size=3, seed=0, shard_index=0, shard_count=2)


# --------------------------------------------------------------------------------------------- readers
def test_text_jsonl_and_parquet_readers(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.txt").write_text("first document\nsecond line\n")
    (tmp_path / "b.txt").write_text("héllo\n\nworld\n")
    assert [data.open_source(str(tmp_path / "*.txt"))[i] for i in range(2)] == [
        "first document\nsecond line\n", "héllo\n\nworld\n"]
    per_line = data.open_source(str(tmp_path / "*.txt"), per_line=True)
    assert [per_line[i] for i in range(len(per_line))] == ["first document", "second line", "héllo", "world"]

    records = [{"text": f"record {i}", "id": i} for i in range(5)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in records[:3]) + "\n\n"
                                      + "\n".join(json.dumps(r) for r in records[3:]) + "\n")
    jl = data.open_source(tmp_path / "d.jsonl")
    assert [jl[i] for i in range(len(jl))] == [r["text"] for r in records]

    table = pa.table({"body": [f"row {i}" for i in range(10)], "n": list(range(10))})
    pq.write_table(table, tmp_path / "p.parquet", row_group_size=3)
    pqs = data.open_source(str(tmp_path / "p.parquet"), text_key="body")
    assert len(pqs) == 10 and [pqs[i] for i in (9, 0, 4, 3, 7)] == ["row 9", "row 0", "row 4", "row 3", "row 7"]
    with pytest.raises(ValueError, match=r"p\.parquet.*'text'.*body"):
        data.open_source(tmp_path / "p.parquet")

    # mixed formats in one list, read end to end through the pipeline
    ds = data.make_lm_dataset([tmp_path / "d.jsonl", str(tmp_path / "*.txt")], ByteTokenizer(), seq_len=32,
                              batch_size=1, seed=0, shuffle=False, num_epochs=1, shard_index=0, shard_count=1,
                              drop_remainder=False)
    stream = bytes(t - 3 for b in ds for t in b["inputs"][b["segment_ids"] > 0].tolist() if t >= 3).decode()
    assert "record 0" in stream and "record 4" in stream and "héllo" in stream


def test_reader_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": "fine"}\n{"text": "broken\n{"other": 1}\n')
    src = data.open_source(bad)
    assert src[0] == "ok"
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 3: invalid JSON"):
        src[2]
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 4: no text_key 'text' \(found \['other'\]\)"):
        src[3]
    kw = dict(seq_len=8, batch_size=1, seed=0, shuffle=False, num_epochs=1, shard_index=0, shard_count=1)
    with pytest.raises(ValueError, match=r"line 3: invalid JSON"):       # checked when the dataset is made
        data.make_lm_dataset(bad, ByteTokenizer(), **kw)
    ds = data.make_lm_dataset(bad, ByteTokenizer(), check=False, **kw)  # unchecked: when the pipeline gets there
    with pytest.raises(ValueError, match=r"line 3: invalid JSON"):
        list(ds)
    with pytest.raises(FileNotFoundError, match=r"nothing_here_\*\.jsonl"):
        data.open_source(str(tmp_path / "nothing_here_*.jsonl"))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        data.open_source(str(tmp_path / "missing.txt"))
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=r"x\.csv.*format="):
        data.open_source(tmp_path / "x.csv")


def _build_tiny_tfds(data_dir, texts, monkeypatch):
    """Write a real tfds dataset (array_record) with a GeneratorBasedBuilder; TensorFlow is not needed."""
    try:
        import importlib_resources  # noqa: F401
    except ImportError:  # tfds 4.9.10's builder path references it even on Python >= 3.9 (a tfds packaging bug)
        import importlib.resources
        import importlib.resources.abc  # noqa: F401

        monkeypatch.setitem(sys.modules, "importlib_resources", importlib.resources)
    import tensorflow_datasets as tfds

    with tfds.core.registered.skip_registration():

        class TinyJaxsuiteText(tfds.core.GeneratorBasedBuilder):
            VERSION = tfds.core.Version("1.0.0")

            def _info(self):
                return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
                    {"text": tfds.features.Text(), "n": np.int32}))

            def _split_generators(self, dl_manager):
                return {"train": self._generate_examples(texts[:-2]), "test": self._generate_examples(texts[-2:])}

            def _generate_examples(self, items):
                for i, t in enumerate(items):
                    yield i, {"text": t, "n": i}

    TinyJaxsuiteText(data_dir=str(data_dir), file_format="array_record").download_and_prepare()


def test_tfds_array_record_source(tmp_path, monkeypatch):
    texts = [f"tfds document {i} é" for i in range(8)]
    _build_tiny_tfds(tmp_path, texts, monkeypatch)
    src = data.open_source("tfds:tiny_jaxsuite_text:train", data_dir=tmp_path)
    assert sorted(src[i] for i in range(len(src))) == sorted(texts[:-2])
    sliced = data.open_source("tfds:tiny_jaxsuite_text:train[:50%]", data_dir=tmp_path)
    assert len(sliced) == 3
    ds = data.make_lm_dataset("tfds:tiny_jaxsuite_text:test", ByteTokenizer(), seq_len=64, batch_size=1, seed=0,
                              num_epochs=1, shard_index=0, shard_count=1, data_dir=tmp_path, drop_remainder=False)
    stream = bytes(t - 3 for b in ds for t in b["inputs"][b["segment_ids"] > 0].tolist() if t >= 3).decode()
    assert texts[-1] in stream and texts[-2] in stream
    with pytest.raises(ValueError, match="no_such_dataset_xyz"):
        data.open_source("tfds:no_such_dataset_xyz:train", data_dir=tmp_path)


# --------------------------------------------------------------------------------------------- tokenizers
SMALL_TEXT = [
    "def add(a, b):\n    return a + b\n\n\nclass Point:\n    def __init__(self, x, y):\n        self.x = x\n",
    "The quick brown fox jumps over the lazy dog 12345 times.\n\tTabs and  double  spaces stay.\n",
] * 20


def test_train_sentencepiece_round_trips_any_text(tmp_path):
    tok = train_sentencepiece(SMALL_TEXT, vocab_size=400, model_prefix=tmp_path / "small")
    assert (tmp_path / "small.model").is_file() and tok.vocab_size == 400
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 2, 3)
    for s in SMALL_TEXT[:2] + ["  unseen: ü漢字🙂 x=987\r\n", ""]:
        assert tok.decode(tok.encode(s)) == s  # byte fallback, identity normalisation, no dummy prefix
    assert tok.encode("12345") == [tok.encode(d)[0] for d in "12345"]  # split_digits
    assert len(tok.encode(SMALL_TEXT[0])) < len(SMALL_TEXT[0]) / 2  # it learned merges
    import sentencepiece as spm  # the library's own processor on the written file agrees

    ref = spm.SentencePieceProcessor(model_file=str(tmp_path / "small.model"))
    reloaded = load_tokenizer(str(tmp_path / "small.model"))
    assert isinstance(reloaded, SentencePieceTokenizer)
    assert reloaded.encode(SMALL_TEXT[1]) == ref.encode(SMALL_TEXT[1]) == tok.encode(SMALL_TEXT[1])


def test_hugging_face_tokenizer_folder_and_file(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE(unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator(SMALL_TEXT, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|endoftext|>", "pad_token": {"content": "<pad>"}, "bos_token": None}))
    tok = load_tokenizer(str(tmp_path))
    assert isinstance(tok, HFTokenizer)
    assert (tok.eos_id, tok.pad_id, tok.bos_id) == (1, 2, None)
    text = "def add(a, b):\n    return a + b  # ü"
    transformers = pytest.importorskip("transformers")
    ref = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    assert tok.encode(text) == ref.encode(text, add_special_tokens=False)
    assert tok.decode(tok.encode(text)) == text and tok.vocab_size == len(ref)
    assert load_tokenizer(str(tmp_path / "tokenizer.json")).encode(text) == tok.encode(text)
    with pytest.raises(FileNotFoundError, match="no_such_tok.model"):
        load_tokenizer(str(tmp_path / "no_such_tok.model"))
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        load_tokenizer(str(tmp_path / "missing_dir"))
    with pytest.raises(FileNotFoundError, match="no-such-org/no-such-model"):  # hub id; tests run offline
        load_tokenizer("no-such-org/no-such-model")


def test_stdlib_tokenizer_is_cached_and_feeds_the_pipeline(tmp_path):
    tok = stdlib_tokenizer(512, cache_dir=tmp_path)
    (model,) = list((tmp_path / "tokenizers").glob("*.model"))
    mtime = model.stat().st_mtime_ns
    again = stdlib_tokenizer(512, cache_dir=tmp_path)  # loaded, not retrained
    assert again.path == model == tok.path and model.stat().st_mtime_ns == mtime
    assert "512" in model.name and f"py{sys.version_info.major}{sys.version_info.minor}" in model.name
    text = corpus.stdlib_files("eval")[0].read_text()
    assert tok.decode(tok.encode(text)) == text
    ds = data.make_lm_dataset("stdlib", tok, seq_len=32, batch_size=2, seed=0, shard_index=0, shard_count=1)
    batch = next(iter(ds))
    assert batch["inputs"].shape == (2, 32) and batch["inputs"].max() < 512 and batch["loss_mask"].sum() > 0


@pytest.mark.slow
def test_stdlib_tokenizer_default_vocab(tmp_path):
    tok = stdlib_tokenizer(4096, cache_dir=tmp_path)
    texts = [p.read_text() for p in corpus.stdlib_files("eval")]
    ids = [tok.encode(t) for t in texts]
    assert all(tok.decode(i) == t for i, t in zip(ids, texts))
    assert sum(map(len, texts)) / sum(map(len, ids)) > 2.5  # chars per token on held-out code
