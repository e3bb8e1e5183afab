"""L2: the judge's score log-probabilities against a row-by-row reference, the hashed n-gram classifier, the threshold
choice against brute force, and the datatrove scoring step against direct prediction."""
import numpy as np
import pytest

from jaxsuite.core.tokenizer import load_tokenizer
from jaxsuite.models.config import DecoderConfig
from jaxsuite.models.factory import init_model
from jaxsuite.tiers import quality as Q


@pytest.fixture(scope="module")
def tiny():
    tok = load_tokenizer("byte")
    model = init_model(DecoderConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64,
                                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                     max_position_embeddings=512, model_type="qwen3"), seed=3)
    return model, tok


def test_judge_log_probs_match_one_row_at_a_time(tiny):
    model, tok = tiny
    prompts = [Q.judge_prompt(tok, t, 40) for t in ("A lesson on json.dumps, with examples.", "buy cheap watches now",
                                                    "x")]
    got = Q.judge_log_probs(model, tok, prompts, batch_size=2)
    assert got.shape == (3, 6)
    for i, p in enumerate(prompts):
        head = [tok.bos_id] + tok.encode(p)
        for s in range(6):
            cand = tok.encode(f" {s}")
            ids = np.asarray([head + cand])
            logits = np.asarray(model(ids), np.float64)[0]                    # [T, V], unpadded, one row
            logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
                - logits.max(-1, keepdims=True)
            ref = sum(logp[len(head) - 1 + j, c] for j, c in enumerate(cand))
            assert got[i, s] == pytest.approx(ref, abs=2e-4), (i, s)
    labels, expected = Q.labels_from_log_probs(got)
    p = np.exp(got) / np.exp(got).sum(1, keepdims=True)
    assert list(labels) == list(got.argmax(1)) and np.allclose(expected, p @ np.arange(6), atol=1e-5)


def test_truncation_and_preprocessing(tiny):
    _, tok = tiny
    assert Q.truncate_tokens(tok, "abcdef", 3) == "abc" and Q.truncate_tokens(tok, "ab", 3) == "ab"
    assert Q.fasttext_text("Crème\n\n  BRÛLÉE\tNow") == "creme brulee now"
    feats = Q.ngram_features(tok, "abc", buckets=64)
    assert feats.dtype == np.int32 and len(feats) == 3 + 2 and feats.min() >= 0 and feats.max() < 64
    assert list(Q.ngram_features(tok, "", buckets=64)) == [0]


def test_classifier_learns_a_separable_labelling(tiny):
    _, tok = tiny
    rng = np.random.default_rng(0)
    good = [" ".join(rng.choice(["function", "returns", "argument", "module", "example"], 8)) for _ in range(40)]
    bad = [" ".join(rng.choice(["cheap", "deal", "buy", "free", "now"], 8)) for _ in range(40)]
    rows = [Q.ngram_features(tok, t, buckets=2 ** 12) for t in good + bad]
    labels = np.asarray([5] * 40 + [0] * 40)
    params, losses = Q.train_classifier(rows, labels, buckets=2 ** 12, dim=16, steps=150, lr=0.05, batch_size=32,
                                        seed=0)
    assert np.mean(losses[-10:]) < 0.1 * np.mean(losses[:10])
    scores = Q.predict_scores(params, rows, batch_size=16)
    assert (scores[:40] > 4).all() and (scores[40:] < 1).all()
    with pytest.raises(ValueError, match="no labelled documents"):
        Q.train_classifier([], np.zeros(0), buckets=8, dim=2, steps=1, lr=0.1, batch_size=2, seed=0)


def test_prf_and_threshold_against_brute_force():
    assert Q.prf(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == {
        "precision": 0.5, "recall": 0.5, "f1": 0.5, "positives": 2, "n": 4}
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 5, 60)
    gold = scores + rng.normal(0, 1, 60) > 3
    t, stats = Q.choose_threshold(scores, gold)

    def f1(th):
        pred = scores >= th
        tp = (pred & gold).sum()
        return 0.0 if tp == 0 else 2 * tp / (pred.sum() + gold.sum())
    best = max(f1(th) for th in scores)
    assert stats["f1"] == pytest.approx(best) and f1(t) == pytest.approx(best)


def test_classifier_file_and_the_datatrove_step(tmp_path, tiny):
    _, tok = tiny
    from datatrove.data import Document
    params = Q.init_classifier(256, 8, seed=1)
    path = str(tmp_path / "clf.npz")
    Q.save_classifier(path, params, threshold=2.5, buckets=256)
    loaded, threshold, buckets = Q.load_classifier(path)
    assert threshold == 2.5 and buckets == 256 and np.allclose(loaded["w"], params["w"])
    step = Q.ClassifierFilter(path, "byte", batch_size=4)
    texts = [f"document number {i} " * (i + 1) for i in range(6)]
    docs = [Document(t, str(i)) for i, t in enumerate(texts)]
    out = list(step.run(iter(docs)))
    direct = Q.predict_scores(params, [Q.ngram_features(tok, t, buckets=256) for t in texts])
    assert [d.metadata["quality_score"] for d in docs] == pytest.approx([round(float(s), 4) for s in direct], abs=1e-4)
    assert [d.id for d in out] == [str(i) for i, s in enumerate(direct) if s >= 2.5]
    (tmp_path / "bad.npz").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="not a quality classifier file"):
        Q.load_classifier(str(tmp_path / "bad.npz"))
