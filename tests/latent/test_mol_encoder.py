"""Tests of jaxsuite.latent.mol_encoder: SMILES tokenizer, encoder masking, BERT corruption, MLM loss, the
resumable pre-training run and the two feature sources.

References are independent of the code under test: hand-written token lists, RDKit for the validity of the
corpus, numpy log-softmax for the loss, and the unigram-frequency baseline for "did pre-training learn".
The pre-training run (30 steps, then resumed to 60) is shared by a module fixture to compile only twice.
"""
import dataclasses
import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from jaxsuite.core import sharding as shd
from jaxsuite.latent import mol_encoder as me

TINY = me.MolEncoderConfig(d_model=32, num_layers=2, num_heads=4, mlp_dim=64, max_len=32)


def simple_corpus() -> list[str]:
    """~250 distinct small molecules: alkanes, alcohols, ethers, acids, ketones, amines, benzene derivatives."""
    out = []
    for n in range(1, 13):
        chain = "C" * n
        out += [chain, chain + "O", chain + "N", chain + "C(=O)O", "CC(C)" + chain, chain + "Cl"]
        out += [chain + "O" + "C" * m for m in range(1, 4)]
        if n >= 2:
            out += ["CC(=O)" + chain, chain + "C=C", chain + "C#N"]
    # substituent written after the ring -> written before it (a nitrile reads N#C- from the left)
    subs = {"C": "C", "O": "O", "N": "N", "Cl": "Cl", "Br": "Br", "F": "F", "CC": "CC", "C(=O)O": "OC(=O)",
            "OC": "CO", "C#N": "N#C", "CO": "OC"}
    for a, a_first in subs.items():
        out += ["c1ccccc1" + a, a_first + "c1ccncc1"]
        for b in subs:
            out.append(f"{a_first}c1ccc({b})cc1")
    return sorted(set(out))


CORPUS = simple_corpus()
TRAIN_SMILES = [s for i, s in enumerate(CORPUS) if i % 5]
HELD_OUT = [s for i, s in enumerate(CORPUS) if i % 5 == 0]


def one_device_mesh():
    return shd.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])


# --- tokenizer --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("smiles, tokens", [
    ("c1ccccc1Cl", ["c", "1", "c", "c", "c", "c", "c", "1", "Cl"]),
    ("[NH4+]", ["[NH4+]"]),
    ("C%12CC%12", ["C", "%12", "C", "C", "%12"]),
    ("BrCCBr", ["Br", "C", "C", "Br"]),
    ("BCl", ["B", "Cl"]),
    ("N[C@@H](C)C(=O)[O-]", ["N", "[C@@H]", "(", "C", ")", "C", "(", "=", "O", ")", "[O-]"]),
    ("F/C=C\\F", ["F", "/", "C", "=", "C", "\\", "F"]),
    ("C#N.[Na+]", ["C", "#", "N", ".", "[Na+]"]),
    ("c1cc[nH]c1", ["c", "1", "c", "c", "[nH]", "c", "1"]),
    ("[13CH4]", ["[13CH4]"]),
])
def test_tokenize_known_smiles(smiles, tokens):
    assert me.tokenize_smiles(smiles) == tokens


@pytest.mark.parametrize("bad", ["C[NH", "CXC", "C C", "C]"])
def test_tokenize_rejects_non_smiles(bad):
    with pytest.raises(ValueError, match="cannot tokenize"):
        me.tokenize_smiles(bad)


def test_default_alphabet_tokens_are_single_tokens():
    for token in me.DEFAULT_ALPHABET:
        assert me.tokenize_smiles(token) == [token]


def test_corpus_is_valid_chemistry():
    from rdkit import Chem
    assert len(CORPUS) > 200
    bad = [s for s in CORPUS if Chem.MolFromSmiles(s) is None]
    assert not bad


def test_tokenizer_encode_decode_and_json_round_trip():
    tok = me.SmilesTokenizer.fit(TRAIN_SMILES)
    assert tok.tokens[:4] == ["<pad>", "<mask>", "<cls>", "<unk>"]
    ids, mask = tok.encode_batch(CORPUS, 24)
    assert ids.dtype == np.int32 and mask.dtype == np.bool_ and ids.shape == (len(CORPUS), 24)
    assert (ids[:, 0] == me.CLS_ID).all()
    assert [tok.decode(row) for row in ids] == CORPUS
    lengths = [1 + len(me.tokenize_smiles(s)) for s in CORPUS]
    np.testing.assert_array_equal(mask.sum(1), lengths)

    again = me.SmilesTokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    np.testing.assert_array_equal(again.encode_batch(CORPUS, 24)[0], ids)

    ids, _ = tok.encode("C[Si](C)C", 8)      # a bracket atom the fitted vocabulary never saw
    assert ids[2] == me.UNK_ID and tok.decode(ids) == "C<unk>(C)C"
    with pytest.raises(ValueError, match="max_len"):
        tok.encode("CCCCCCCC", 5)
    ids, mask = tok.encode("CCCCCCCC", 5, truncate=True)
    assert tok.decode(ids) == "CCCC" and mask.all()
    with pytest.raises(ValueError, match="not a SmilesTokenizer"):
        me.SmilesTokenizer.from_dict({"tokens": ["C", "O"]})


def test_default_tokenizer_covers_common_smiles():
    tok = me.SmilesTokenizer.default()
    aspirin, caffeine = "CC(=O)Oc1ccccc1C(=O)O", "Cn1c(=O)c2c(ncn2C)n(C)c1=O"
    for smiles in (aspirin, caffeine, "C[C@@H](N)C(=O)[O-]", "[NH4+].[Cl-]"):
        ids, _ = tok.encode(smiles, 40)
        assert me.UNK_ID not in ids and tok.decode(ids) == smiles


# --- encoder ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model():
    tok = me.SmilesTokenizer.fit(TRAIN_SMILES)
    return me.MoleculeEncoder(dataclasses.replace(TINY, vocab_size=tok.vocab_size),
                              rngs=nnx.Rngs(0)), tok


def test_features_do_not_depend_on_padding(tiny_model):
    model, tok = tiny_model
    smiles = "CCc1ccc(O)cc1"
    ids16, mask16 = tok.encode_batch([smiles], 16)
    ids32, mask32 = tok.encode_batch([smiles, "CCCCCCCCCCCCCCCCCCCCC"], 32)
    n = int(mask16.sum())
    f16 = np.asarray(model(ids16, mask16))                              # [1, 16, D]
    f32 = np.asarray(model(ids32, mask32))                              # [2, 32, D]
    np.testing.assert_allclose(f16[0, :n], f32[0, :n], atol=1e-5)
    assert np.abs(f16[0, :n]).max() > 0.1
    assert (f32[0, n:] == 0).all() and (f16[0, n:] == 0).all()

    garbage = ids32.copy()
    garbage[0, n:] = 7                                                 # junk tokens behind a False mask
    np.testing.assert_allclose(np.asarray(model(garbage, mask32))[0, :n], f32[0, :n], atol=1e-5)
    # ... whereas the same junk, made visible, changes the real positions: the mask is what hides it.
    visible = np.asarray(model(garbage, np.ones_like(mask32)))
    assert np.abs(visible[0, :n] - f32[0, :n]).max() > 1e-3


def test_params_carry_logical_axes(tiny_model):
    model, _ = tiny_model
    axes = {jax.tree_util.keystr(p): a for p, a in jax.tree_util.tree_flatten_with_path(
        shd.logical_axes_of(nnx.state(model, nnx.Param)), is_leaf=lambda x: isinstance(x, tuple))[0]}
    assert axes["['embed']['embedding']"] == ("vocab", "embed")
    assert axes["['layers'][0]['attn']['q_proj']['kernel']"] == ("embed", "q_heads", "head_dim")
    assert axes["['layers'][1]['mlp']['down_proj']['kernel']"] == ("mlp", "embed")
    assert all(a is not None for a in axes.values())


# --- masking and loss -------------------------------------------------------------------------------------------
def test_mask_tokens_statistics_and_determinism():
    vocab, b, length = 40, 512, 48
    rng = np.random.default_rng(0)
    ids = rng.integers(4, vocab, (b, length)).astype(np.int32)
    lengths = rng.integers(5, length + 1, b)
    mask = np.arange(length)[None] < lengths[:, None]
    ids[:, 0] = me.CLS_ID
    ids[~mask] = me.PAD_ID
    inputs, targets, loss_mask = me.mask_tokens(ids, mask, np.random.default_rng(1), 0.15, vocab_size=vocab)
    chosen = loss_mask > 0
    real = mask & (ids > me.UNK_ID)
    assert not chosen[~real].any()                          # never PAD, never CLS
    np.testing.assert_array_equal(targets, ids)
    np.testing.assert_array_equal(inputs[~chosen], ids[~chosen])
    assert abs(chosen.sum() / real.sum() - 0.15) < 0.01    # ~3300 chosen of ~22000: sd ~0.0024
    masked = (inputs == me.MASK_ID)[chosen].mean()
    replaced = ((inputs != ids) & (inputs != me.MASK_ID))[chosen].mean()
    kept = (inputs == ids)[chosen].mean()
    pool = vocab - 4                                        # a random draw equals the original 1 / pool times
    assert abs(masked - 0.8) < 0.025
    assert abs(replaced - 0.1 * (1 - 1 / pool)) < 0.02
    assert abs(kept - (0.1 + 0.1 / pool)) < 0.02
    assert (inputs[chosen & (inputs != me.MASK_ID)] >= 4).all()   # replacements are never specials

    again = me.mask_tokens(ids, mask, np.random.default_rng(1), 0.15, vocab_size=vocab)
    for x, y in zip(again, (inputs, targets, loss_mask)):
        np.testing.assert_array_equal(x, y)
    other = me.mask_tokens(ids, mask, np.random.default_rng(2), 0.15, vocab_size=vocab)
    assert not np.array_equal(other[2], loss_mask)


class _FixedLogits(nnx.Module):
    """Stands in for the encoder: mlm_loss sees exactly these logits."""

    def __init__(self, logits):
        self.logits = logits

    def __call__(self, ids, mask):
        return ids

    def mlm_logits(self, features):
        return self.logits


def test_mlm_loss_matches_numpy_cross_entropy():
    rng = np.random.default_rng(3)
    b, length, vocab = 3, 7, 11
    logits = rng.normal(size=(b, length, vocab)).astype(np.float32) * 3
    targets = rng.integers(0, vocab, (b, length)).astype(np.int32)
    loss_mask = (rng.random((b, length)) < 0.4).astype(np.float32)
    loss_mask[0, 0] = 1.0
    targets[0, 0] = logits[0, 0].argmax()                  # at least one right prediction
    batch = {"inputs": targets, "attention_mask": np.ones((b, length), bool), "targets": targets,
             "loss_mask": loss_mask}
    loss_sum, tokens, aux = me.mlm_loss(_FixedLogits(logits), batch)

    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(float(loss_sum), (nll * loss_mask).sum(), rtol=1e-5)
    assert float(tokens) == loss_mask.sum()
    assert float(aux["accuracy"]) == ((logits.argmax(-1) == targets) * loss_mask).sum() >= 1


def test_mlm_dataset_is_deterministic_resumable_and_visits_every_molecule():
    tok = me.SmilesTokenizer.fit(TRAIN_SMILES)
    smiles = TRAIN_SMILES[:12]
    ds = me.MLMDataset(smiles, tok, batch_size=4, max_len=24, seed=5)
    it = iter(ds)
    first = [next(it) for _ in range(3)]
    state = json.loads(json.dumps(it.get_state()))
    assert state == {"step": 3}
    rest = [next(it) for _ in range(2)]
    resumed = iter(ds)
    resumed.set_state(state)
    for a, b in zip(rest, [next(resumed) for _ in range(2)]):
        assert sorted(a) == ["attention_mask", "inputs", "loss_mask", "targets"]
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    # 12 molecules, batches of 4: steps 0-2 form one shuffled epoch holding each molecule exactly once
    seen = sorted(tok.decode(row) for batch in first for row in batch["targets"])
    assert seen == sorted(smiles)
    assert not np.array_equal(first[0]["inputs"], me.MLMDataset(smiles, tok, 4, 24, seed=6).global_batch(0)["inputs"])


# --- pre-training -----------------------------------------------------------------------------------------------
TRAIN_CFG = dict(steps=30, lr=6e-3, warmup_steps=5, min_lr_ratio=0.1, weight_decay=0.01, b1=0.9, b2=0.98,
                 eps=1e-8, grad_clip=1.0, accum_steps=1, compute_dtype="float32", log_every=10, eval_every=0,
                 eval_batches=1, checkpoint_every=1000, keep_checkpoints=2)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """30 steps, then the same call with steps=60 on the same workdir (which must resume at 30)."""
    workdir = str(tmp_path_factory.mktemp("mol_mlm"))
    kw = dict(config=TINY, batch_size=32, seed=0, mesh=one_device_mesh(), rules=shd.DEFAULT_RULES)
    _, _, first = me.pretrain_encoder(TRAIN_SMILES, workdir, train_cfg=TRAIN_CFG, **kw)
    model, tok, second = me.pretrain_encoder(TRAIN_SMILES, workdir, train_cfg={**TRAIN_CFG, "steps": 60}, **kw)
    return workdir, model, tok, first, second


def _masked_eval(model, tok, seed: int = 123) -> tuple[float, float, float, float]:
    """(mean loss, accuracy, unigram-baseline accuracy, unigram-baseline loss) on masked held-out molecules.

    The unigram baseline predicts every masked token from the masked tokens' own frequencies: its accuracy
    is the top frequency and its loss the entropy. Beating both needs context from the molecule."""
    ds = me.MLMDataset(HELD_OUT, tok, batch_size=len(HELD_OUT), max_len=TINY.max_len, seed=seed)
    loss_fn = nnx.jit(me.mlm_loss)   # one compile instead of eager op-by-op dispatch
    loss = tokens = correct = 0.0
    targets = []
    for step in range(8):
        batch = ds.global_batch(step)
        l, n, aux = loss_fn(model, batch)
        loss, tokens, correct = loss + float(l), tokens + float(n), correct + float(aux["accuracy"])
        targets.append(batch["targets"][batch["loss_mask"] > 0])
    freq = np.bincount(np.concatenate(targets)) / sum(t.size for t in targets)
    entropy = -np.sum(freq[freq > 0] * np.log(freq[freq > 0]))
    return loss / tokens, correct / tokens, freq.max(), entropy


def test_pretraining_learns_beyond_unigram_frequencies(pretrained):
    _, model, tok, _, second = pretrained
    config = dataclasses.replace(TINY, vocab_size=tok.vocab_size)
    init_loss, _, _, _ = _masked_eval(me.MoleculeEncoder(config, rngs=nnx.Rngs(0)), tok)   # pretrain's init
    loss, accuracy, unigram_accuracy, unigram_loss = _masked_eval(model, tok)
    # measured on CPU: loss 1.27 (init 2.86, unigram 1.73), accuracy 0.64 (unigram 0.40)
    assert loss < 0.6 * init_loss, (loss, init_loss)
    assert loss < unigram_loss - 0.2, (loss, unigram_loss)
    assert accuracy > unigram_accuracy + 0.15, (accuracy, unigram_accuracy)
    assert np.isfinite(second["final_train_loss"])


def test_pretraining_resumes_from_the_workdir(pretrained):
    workdir, _, tok, first, second = pretrained
    assert first["resumed_from_step"] == 0 and first["steps"] == 30
    assert second["resumed_from_step"] == 30 and second["steps"] == 60
    with open(os.path.join(workdir, "tokenizer.json")) as f:
        assert me.SmilesTokenizer.from_dict(json.load(f)).tokens == tok.tokens
    with open(os.path.join(workdir, "checkpoints", "60", "data", "process_0-of-1.json")) as f:
        assert json.load(f)["state"] == {"step": 60}           # the data iterator continued, not restarted
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        assert [json.loads(line)["step"] for line in f] == [10, 20, 30, 40, 50, 60]
    with pytest.raises(ValueError, match="different encoder config"):
        me.pretrain_encoder(TRAIN_SMILES, workdir, config=dataclasses.replace(TINY, d_model=16),
                            train_cfg=TRAIN_CFG, batch_size=32, mesh=one_device_mesh())


# --- feature sources --------------------------------------------------------------------------------------------
def test_encoder_features_match_the_model(tiny_model):
    model, tok = tiny_model
    source = me.EncoderFeatures(model, tok)
    assert isinstance(source, me.MoleculeFeatures) and source.dim == TINY.d_model
    features, mask = source.encode(["CCO", "c1ccccc1C(=O)O"])
    ids, expected_mask = tok.encode_batch(["CCO", "c1ccccc1C(=O)O"], TINY.max_len)
    assert features.shape == (2, TINY.max_len, TINY.d_model) and features.dtype == np.float32
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_allclose(features, np.asarray(model(ids, expected_mask)), atol=1e-5)


def test_precomputed_features_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(4)
    smiles = ["CCO", "c1ccccc1", "[NH4+]", "CC(=O)O"]
    features = rng.normal(size=(4, 6, 5)).astype(np.float32)
    mask = np.arange(6)[None] < np.array([4, 6, 2, 5])[:, None]
    path = str(tmp_path / "smited.npz")
    me.save_precomputed(path, smiles, features, mask)
    assert os.listdir(tmp_path) == ["smited.npz"]             # no temp file left behind
    source = me.PrecomputedFeatures(path)
    assert isinstance(source, me.MoleculeFeatures) and source.dim == 5
    got, got_mask = source.encode(["[NH4+]", "CCO", "[NH4+]"])
    np.testing.assert_array_equal(got, features[[2, 0, 2]])
    np.testing.assert_array_equal(got_mask, mask[[2, 0, 2]])

    with pytest.raises(KeyError, match="CCN"):
        source.encode(["CCO", "CCN"])
    with pytest.raises(ValueError, match="row counts"):
        me.save_precomputed(path, smiles[:3], features, mask)

    def write(name, **arrays):
        p = str(tmp_path / name)
        np.savez(p, **arrays)
        return p

    cases = {
        "missing array": (write("a.npz", smiles=np.array(smiles), features=features), r"\['mask'\]"),
        "2-D features": (write("b.npz", smiles=np.array(smiles), features=features[:, :, 0], mask=mask),
                         "'features' must be a 3-D"),
        "int mask": (write("c.npz", smiles=np.array(smiles), features=features, mask=mask.astype(int)),
                     "'mask' must be a 2-D bool"),
        "duplicates": (write("d.npz", smiles=np.array(["C", "C", "O", "N"]), features=features, mask=mask),
                       "duplicate SMILES"),
        "pickled list": (write("e.npz", smiles=np.array(smiles, dtype=object), features=features, mask=mask),
                         "unicode array"),
        "length mismatch": (write("f.npz", smiles=np.array(smiles), features=features, mask=mask[:, :5]),
                            "positions"),
    }
    for what, (p, message) in cases.items():
        with pytest.raises(ValueError, match=message):
            me.PrecomputedFeatures(p)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        me.PrecomputedFeatures(str(tmp_path / "text.npz"))
    with pytest.raises(FileNotFoundError):
        me.PrecomputedFeatures(str(tmp_path / "absent.npz"))
