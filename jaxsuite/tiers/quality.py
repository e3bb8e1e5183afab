"""L2: an LM labels a seed sample on a 0-5 scale; a hashed n-gram classifier distils the labels and scores the corpus.

    scores = judge_log_probs(model, tokenizer, texts, cfg)      # [N, 6] log p("0".."5" | judge prompt)
    labels = scores.argmax(-1)                                  # the LM's labels
    clf, losses = train_classifier(features, labels, ...)       # fastText-style, in JAX
    t = choose_threshold(predict_scores(clf, held_features), held_labels >= keep_at)
    ... ClassifierFilter(params_file, tokenizer_file, threshold) scores every L1 document in a datatrove step

The judge scores by the log-probability of each score's tokens after the prompt (teacher-forced, all six
candidates in one batch), not by sampling: deterministic, and a distribution rather than one draw. The label
is the most probable score; `expected` is the probability-weighted mean.

The classifier follows Ultra-FineWeb's fastText recipe: text preprocessed (newlines collapsed, lower-cased,
diacritics stripped, tokenised by the job's tokenizer), then unigram and bigram features hashed into
`buckets` rows of an embedding table, averaged, and a linear layer over the six scores (fastText's bag of
n-grams). Its score is the expected label; a document is kept when the score is at least the threshold chosen
on held-out labels for the binary "label >= keep_at" (FineWeb-Edu keeps >= 3), reported with precision,
recall and F1 against the LM's labels.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxsuite.core.extras import require

require("datatrove", extra="data", for_="jaxsuite.tiers (tiered data management)")
from datatrove.pipeline.filters.base_filter import BaseFilter
from flax import nnx

from jaxsuite.core.train import token_log_probs

SCORES = tuple(str(s) for s in range(6))
JUDGE_PROMPT = ("Below is an extract from a web page. Rate its educational value for teaching programming and "
                "general knowledge, from 0 (spam, chatter, boilerplate) to 5 (clear, well-organised teaching "
                "material).\n\nExtract:\n{text}\n\nEducational score (0-5):")


# ------------------------------------------------------------------------------------------------------------
# The LM judge
# ------------------------------------------------------------------------------------------------------------
def truncate_tokens(tokenizer, text: str, max_tokens: int) -> str:
    """The text cut to its first `max_tokens` tokens (a long page is judged by its opening, as FineWeb-Edu does)."""
    ids = tokenizer.encode(text)
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])


def judge_prompt(tokenizer, text: str, max_doc_tokens: int) -> str:
    return JUDGE_PROMPT.format(text=truncate_tokens(tokenizer, text, max_doc_tokens))


def judge_target(score: int) -> str:
    return f" {int(score)}"


@functools.partial(jax.jit, static_argnums=0)
def _span_stats(graphdef, state, ids, mask):
    """Per row of ids [R, T]: the sum of log p(token) and of argmax hits over the target positions where mask
    [R, T] is 1, and their count."""
    model = nnx.merge(graphdef, state)
    logits = model(ids[:, :-1])                                              # [R, T-1, V]
    lp = token_log_probs(logits, ids[:, 1:])                                 # [R, T-1]
    hits = (jnp.argmax(logits, axis=-1) == ids[:, 1:]).astype(jnp.float32)   # [R, T-1]
    m = mask[:, 1:]
    return jnp.sum(lp * m, -1), jnp.sum(hits * m, -1), jnp.sum(m, -1)


def span_token_stats(model, rows: Sequence[Sequence[int]], spans: Sequence[tuple[int, int]], *,
                     batch_size: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Teacher-forced scoring of token spans: for each row of ids and its span [a, b) of target positions, the
    sum of log p over the span, the number of argmax hits in it and its length ([R] arrays each). Rows go in
    fixed batches of `batch_size`, widths rounded up to a multiple of 32: few shapes, few compiles. The judge
    scores its candidates and the training comparison its held-out texts with it."""
    graphdef, state = nnx.split(model)
    out = np.zeros((3, len(rows)), np.float32)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        width = max(32, -(-max(len(r) for r in chunk) // 32) * 32)
        ids = np.zeros((batch_size, width), np.int32)
        mask = np.zeros((batch_size, width), np.float32)
        for i, (r, (a, b)) in enumerate(zip(chunk, spans[start:start + batch_size])):
            ids[i, :len(r)] = r
            mask[i, a:b] = 1.0
        stats = _span_stats(graphdef, state, ids, mask)
        out[:, start:start + len(chunk)] = np.asarray(jnp.stack(stats))[:, :len(chunk)]
    return out[0], out[1], out[2]


def judge_log_probs(model, tokenizer, prompts: Sequence[str], *, batch_size: int = 16,
                    candidates: Sequence[str] = SCORES) -> np.ndarray:
    """[N, C] log p(candidate | prompt) for every prompt and candidate (" 0" ... " 5" by default), each candidate's
    tokens teacher-forced after the prompt; prompts start with the tokenizer's BOS when it has one."""
    from jaxsuite.core.build import encode_prompt
    cand_ids = [tokenizer.encode(judge_target(int(c)) if c.isdigit() else c) for c in candidates]
    rows, spans = [], []
    for p in prompts:
        head = encode_prompt(tokenizer, p)
        for c in cand_ids:
            rows.append(head + c)
            spans.append((len(head), len(head) + len(c)))
    lp, _, _ = span_token_stats(model, rows, spans, batch_size=batch_size * len(cand_ids))
    return lp.reshape(len(prompts), len(cand_ids))


def labels_from_log_probs(log_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label = most probable score, expected score) per row of judge_log_probs."""
    p = np.exp(log_probs - log_probs.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return log_probs.argmax(axis=1), p @ np.arange(log_probs.shape[1], dtype=np.float32)


# ------------------------------------------------------------------------------------------------------------
# The hashed n-gram classifier
# ------------------------------------------------------------------------------------------------------------
_SPACES = re.compile(r"\s+")


def fasttext_text(text: str) -> str:
    """Ultra-FineWeb's preprocessing before tokenisation: newlines collapsed, lower case, diacritics stripped."""
    text = _SPACES.sub(" ", text).strip().lower()
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def ngram_features(tokenizer, text: str, *, buckets: int, max_tokens: int = 2048) -> np.ndarray:
    """Hashed unigram and bigram feature rows (int32, each in [0, buckets)) of the preprocessed text's tokens."""
    ids = np.asarray(tokenizer.encode(fasttext_text(text))[:max_tokens], np.int64)
    if ids.size == 0:
        return np.zeros(1, np.int32)
    uni = (ids * 2_654_435_761 + 97) % buckets
    bi = ((ids[:-1] * 1_000_003) ^ (ids[1:] * 998_244_353 + 12_345)) % buckets
    return np.concatenate([uni, bi]).astype(np.int32)


def pad_features(rows: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    feats = np.zeros((len(rows), width), np.int32)
    mask = np.zeros((len(rows), width), np.float32)
    for i, r in enumerate(rows):
        feats[i, :len(r)], mask[i, :len(r)] = r, 1.0
    return feats, mask


def init_classifier(buckets: int, dim: int, classes: int = len(SCORES), seed: int = 0) -> dict:
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {"embedding": jax.random.uniform(k1, (buckets, dim), jnp.float32, -1.0 / dim, 1.0 / dim),
            "w": jax.random.normal(k2, (dim, classes), jnp.float32) * 0.01, "b": jnp.zeros((classes,), jnp.float32)}


def classifier_logits(params: dict, feats: jax.Array, mask: jax.Array) -> jax.Array:
    emb = params["embedding"][feats]                                            # [B, F, D]
    pooled = jnp.einsum("bfd,bf->bd", emb, mask) / jnp.maximum(mask.sum(-1, keepdims=True), 1.0)
    return pooled @ params["w"] + params["b"]                                   # [B, C]


@jax.jit
def _expected_scores(params, feats, mask):
    p = jax.nn.softmax(classifier_logits(params, feats, mask), axis=-1)
    return p @ jnp.arange(p.shape[-1], dtype=jnp.float32)


def predict_scores(params: dict, rows: Sequence[np.ndarray], batch_size: int = 256) -> np.ndarray:
    """The expected score (0-5) of each feature row. Batches are padded to `batch_size` rows and a power-of-two
    width, so scoring a corpus compiles a handful of shapes, not one per batch."""
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        feats, mask = pad_features(chunk)
        width = 1 << max(4, (feats.shape[1] - 1).bit_length())
        pad = ((0, batch_size - len(chunk)), (0, width - feats.shape[1]))
        scores = _expected_scores(params, np.pad(feats, pad), np.pad(mask, pad))
        out.append(np.asarray(scores)[:len(chunk)])
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def train_classifier(rows: Sequence[np.ndarray], labels: np.ndarray, *, buckets: int, dim: int, steps: int,
                     lr: float, batch_size: int, seed: int) -> tuple[dict, list[float]]:
    """Softmax regression of the labels on the mean hashed n-gram embedding; Adam, minibatches sampled with
    `seed`. Returns the parameters and the loss per step."""
    if len(rows) == 0:
        raise ValueError("no labelled documents to train the quality classifier on")
    params = init_classifier(buckets, dim, seed=seed)
    opt = optax.adam(lr)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, feats, mask, y):
        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(classifier_logits(p, feats, mask), y).mean()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    width = max(len(r) for r in rows)
    losses = []
    for _ in range(steps):
        idx = rng.choice(len(rows), size=min(batch_size, len(rows)), replace=False)
        feats, mask = pad_features([rows[i] for i in idx])
        feats = np.pad(feats, ((0, 0), (0, width - feats.shape[1])))          # one shape: one compile
        mask = np.pad(mask, ((0, 0), (0, width - mask.shape[1])))
        params, opt_state, loss = step(params, opt_state, feats, mask, np.asarray(labels)[idx].astype(np.int32))
        losses.append(float(loss))
    return params, losses


def prf(predicted: np.ndarray, gold: np.ndarray) -> dict:
    """Precision, recall and F1 of boolean predictions against boolean gold labels."""
    predicted, gold = np.asarray(predicted, bool), np.asarray(gold, bool)
    tp = int((predicted & gold).sum())
    precision = tp / max(int(predicted.sum()), 1)
    recall = tp / max(int(gold.sum()), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"precision": precision, "recall": recall, "f1": f1, "positives": int(gold.sum()), "n": int(gold.size)}


def choose_threshold(scores: np.ndarray, gold: np.ndarray) -> tuple[float, dict]:
    """The score threshold (keep score >= t) with the best F1 against `gold` over every distinct score (ties: the
    higher threshold, the stricter selection); with its P/R/F1."""
    best_t, best = float("inf"), {"f1": -1.0}
    for t in np.unique(np.asarray(scores))[::-1]:
        stats = prf(scores >= t, gold)
        if stats["f1"] > best["f1"]:
            best_t, best = float(t), stats
    return best_t, best


def save_classifier(path: str, params: dict, *, threshold: float, buckets: int) -> None:
    from jaxsuite.core import files
    import io
    buf = io.BytesIO()
    np.savez(buf, threshold=np.float32(threshold), buckets=np.int64(buckets),
             **{k: np.asarray(v) for k, v in params.items()})
    files.atomic_write_bytes(path, buf.getvalue())


def load_classifier(path: str) -> tuple[dict, float, int]:
    from jaxsuite.core import files
    import io
    try:
        data = np.load(io.BytesIO(files.read_bytes(path)))
        params = {k: jnp.asarray(data[k]) for k in ("embedding", "w", "b")}
        return params, float(data["threshold"]), int(data["buckets"])
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path}: not a quality classifier file ({type(e).__name__}: {e})") from None


class ClassifierFilter(BaseFilter):
    """datatrove filter: the quality classifier scores batches of documents (metadata["quality_score"]) and keeps
    those at or above its threshold ("dropped_low_quality" otherwise). The classifier and tokenizer are read from
    files in the worker, so the step runs on any executor."""
    name = "hashed n-gram quality classifier"

    def __init__(self, classifier_file: str, tokenizer_file: str, *, batch_size: int = 256, exclusion_writer=None):
        super().__init__(exclusion_writer, batch_size=batch_size)
        self.classifier_file, self.tokenizer_file = classifier_file, tokenizer_file
        self._loaded = None

    def _load(self):
        if self._loaded is None:
            from jaxsuite.core.tokenizer import load_tokenizer
            params, threshold, buckets = load_classifier(self.classifier_file)
            self._loaded = (params, threshold, buckets, load_tokenizer(self.tokenizer_file))
        return self._loaded

    def filter(self, doc) -> bool | tuple[bool, str]:
        return self.filter_batch([doc])[0]

    def filter_batch(self, batch):
        params, threshold, buckets, tokenizer = self._load()
        scores = predict_scores(params, [ngram_features(tokenizer, d.text, buckets=buckets) for d in batch])
        out = []
        for doc, s in zip(batch, scores):
            doc.metadata["quality_score"] = round(float(s), 4)
            out.append(True if s >= threshold else (False, "low_quality"))
        return out
