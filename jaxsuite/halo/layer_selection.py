"""HALO layer selection: which layers of the teacher stay softmax attention (arXiv 2601.22156).

Each layer i is replaced alone by its stage-1 RNN student, and the variant is scored on a recall suite
(R_i) and a commonsense suite (C_i). A layer matters for attention when replacing it costs much recall but
little commonsense:

    importance_i = min(cap, (max_j R_j - R_i) / (max_j C_j - C_i + eps)),   cap = 50, eps = 1e-10

with the maxima over the swept layers; the `keep` most important layers stay attention. The paper's suites
are recall = mean(fda, ruler_qa_squad@4096, swde) and commonsense = mean acc_norm of (hellaswag, arc_easy,
arc_challenge); here a suite is any set of named tasks, each a function of the variant, so the scoring runs
on whatever evaluations a user can afford (the CPU quickstart uses passkey retrieval and perplexity).
A recall-drop-only mode (as in Jet-Nemotron) ranks by max_j R_j - R_i alone.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Callable, Mapping, Protocol, Sequence


class VariantEvaluator(Protocol):
    """Scores the model with one layer replaced by its RNN student."""

    def __call__(self, layer: int, /) -> Mapping[str, float]:
        """layer: the index of the replaced layer -> {task name: score (higher is better)}. Called once per swept
        layer; compile-heavy evaluators should use module-level jitted functions (as jaxsuite.halo.evaluation and
        passkey do), so that the sweep compiles once per variant structure rather than once per call."""
        ...

DEFAULT_CAP = 50.0
DEFAULT_EPS = 1e-10


@dataclasses.dataclass
class LayerSelection:
    layers: list[int]                  # the swept layers, in sweep order
    recall: dict[int, float]           # R_i: mean recall-suite score with layer i replaced
    commonsense: dict[int, float]      # C_i
    importance: dict[int, float]
    ranking: list[int]                 # layers by importance, most important first (ties: lower index first)
    keep: list[int]                    # the attention layers to keep, sorted ascending
    tied: list[int] = dataclasses.field(default_factory=list)   # layers tied across the keep boundary
    note: str = ""                     # why the choice is a tie, when it is one ("" otherwise)

    def to_json(self) -> str:
        as_str = lambda d: {str(k): v for k, v in d.items()}   # noqa: E731
        return json.dumps({"layers": self.layers, "recall": as_str(self.recall),
                           "commonsense": as_str(self.commonsense), "importance": as_str(self.importance),
                           "ranking": self.ranking, "keep": self.keep, "tied": self.tied, "note": self.note},
                          indent=2)


def boundary_tie(importance: Mapping[int, float], ranking: Sequence[int], keep: int) -> tuple[list[int], str]:
    """(the layers tied with the last kept one when the tie straddles the keep boundary, so that the layer index
    decided which were kept; a sentence saying so), or ([], "") when the scores decide."""
    if not 0 < keep < len(ranking):
        return [], ""
    boundary = importance[ranking[keep - 1]]
    tied = sorted(i for i in ranking if importance[i] == boundary)
    if all(i in ranking[:keep] for i in tied):
        return [], ""
    if all(v == 0 for v in importance.values()):
        why = ("every layer's importance is 0: replacing any single layer by its student did not lower the "
               "recall suite below its best (too easy, or too hard, for this model)")
    else:
        why = f"layers {tied} tie at importance {boundary:.4g}"
    kept = sorted(i for i in tied if i in ranking[:keep])
    return tied, f"{why}; of those, {kept} are kept only for having the lowest indices, not by a measurement"


def importance_scores(recall: Mapping[int, float], commonsense: Mapping[int, float] | None = None, *,
                      cap: float = DEFAULT_CAP, eps: float = DEFAULT_EPS,
                      mode: str = "ratio") -> dict[int, float]:
    """HALO's importance per layer. mode="ratio": recall drop / (commonsense drop + eps), capped at `cap`;
    mode="recall": the recall drop alone."""
    if not recall:
        raise ValueError("no layers to score: the recall scores are empty")
    if mode not in ("ratio", "recall"):
        raise ValueError(f"mode must be 'ratio' or 'recall', got {mode!r}")
    for name, scores in (("recall", recall), ("commonsense", commonsense or {})):
        bad = {k: v for k, v in scores.items() if not math.isfinite(float(v))}
        if bad:
            raise ValueError(f"non-finite {name} scores for layers {sorted(bad)}: {bad}")
    max_r = max(recall.values())
    if mode == "recall":
        return {i: float(max_r - r) for i, r in recall.items()}
    if commonsense is None or set(commonsense) != set(recall):
        missing = sorted(set(recall) ^ set(commonsense or {}))
        raise ValueError(f"recall and commonsense scores must cover the same layers; differing: {missing}")
    max_c = max(commonsense.values())
    return {i: float(min(cap, (max_r - recall[i]) / (max_c - commonsense[i] + eps))) for i in recall}


def rank_layers(importance: Mapping[int, float], keep: int) -> tuple[list[int], list[int]]:
    """(ranking most-important first, the `keep` most important layers sorted ascending)."""
    if not 0 <= keep <= len(importance):
        raise ValueError(f"keep must be in [0, {len(importance)}], got {keep}")
    ranking = sorted(importance, key=lambda i: (-importance[i], i))
    return ranking, sorted(ranking[:keep])


def select_layers(evaluate: VariantEvaluator, layers: Sequence[int], *, recall_tasks: Sequence[str],
                  commonsense_tasks: Sequence[str], keep: int, cap: float = DEFAULT_CAP,
                  mode: str = "ratio", log: Callable[[str], None] | None = None) -> LayerSelection:
    """Runs the per-layer replacement sweep through `evaluate` and ranks the layers.

    `evaluate(i)` returns scores for at least the named tasks; each suite's score is the mean of its tasks.
    """
    if not recall_tasks:
        raise ValueError("recall_tasks is empty")
    if mode == "ratio" and not commonsense_tasks:
        raise ValueError("commonsense_tasks is empty (use mode='recall' to rank by recall drop alone)")
    recall, common = {}, {}
    for n, i in enumerate(layers):
        scores = dict(evaluate(int(i)))
        missing = [t for t in (*recall_tasks, *commonsense_tasks) if t not in scores]
        if missing:
            raise KeyError(f"the evaluation of layer {i} returned no score for task(s) {missing}; "
                           f"it returned {sorted(scores)}")
        recall[int(i)] = sum(float(scores[t]) for t in recall_tasks) / len(recall_tasks)
        if commonsense_tasks:
            common[int(i)] = sum(float(scores[t]) for t in commonsense_tasks) / len(commonsense_tasks)
        if log:
            log(f"layer {i} ({n + 1}/{len(layers)}): recall {recall[int(i)]:.4f}"
                + (f", commonsense {common[int(i)]:.4f}" if commonsense_tasks else ""))
    imp = importance_scores(recall, common if commonsense_tasks else None, cap=cap, mode=mode)
    ranking, kept = rank_layers(imp, keep)
    tied, note = boundary_tie(imp, ranking, keep)
    if note and log:
        log(f"layer selection is a tie: {note}")
    return LayerSelection(list(map(int, layers)), recall, common, imp, ranking, kept, tied, note)


def plot_importance(selection: LayerSelection, out_png: str, title: str = "HALO layer importance") -> str:
    """Bar chart of importance by layer, the kept attention layers highlighted."""
    from jaxsuite.core.metrics import pyplot, save_figure
    plt = pyplot()

    layers = sorted(selection.importance)
    values = [selection.importance[i] for i in layers]
    colors = ["tab:red" if i in selection.keep else "tab:gray" for i in layers]
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(layers) + 2), 3.5))
    bars = ax.bar(layers, values, color=colors)
    for layer, bar in zip(layers, bars):     # tied across the keep boundary: hatched, and said in the plot
        if layer in selection.tied:
            bar.set_hatch("//")
            bar.set_edgecolor("black")
    if selection.tied:
        flat = all(v == 0 for v in values)
        ax.text(0.5 if flat else 0.98, 0.5 if flat else 0.95,
                "all importances are 0: a tie, kept by lowest index" if flat
                else f"tie (hatched) across the keep boundary: {selection.tied}", transform=ax.transAxes,
                ha="center" if flat else "right", va="center" if flat else "top", fontsize=9,
                bbox=dict(boxstyle="round", facecolor="white", alpha=0.9))
        if not flat:
            ax.set_ylim(0, 1.25 * max(values))         # room for the note above the bars
    ax.set_xticks(layers)
    ax.set_xlabel("layer replaced by its RNN student")
    ax.set_ylabel("importance (recall drop / commonsense drop)")
    ax.set_title(f"{title}: kept as attention {selection.keep}" + (" (tie)" if selection.tied else ""))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=120)   # through etils.epath: a gs:// workdir works
