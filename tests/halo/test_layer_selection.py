"""HALO layer-selection scoring against hand-computed values."""
import json

import pytest

from jaxsuite.halo.layer_selection import importance_scores, plot_importance, rank_layers, select_layers


def test_importance_by_hand():
    recall = {0: 0.90, 1: 0.50, 2: 0.80, 3: 0.88}
    common = {0: 0.60, 1: 0.58, 2: 0.50, 3: 0.60}
    imp = importance_scores(recall, common)
    # layer 1: (0.90 - 0.50) / (0.60 - 0.58) = 20; layer 2: 0.10 / 0.10 = 1; layer 3: 0.02 / ~0 -> capped at 50
    assert imp[1] == pytest.approx(20.0)
    assert imp[2] == pytest.approx(1.0)
    assert imp[3] == 50.0
    assert imp[0] == 0.0                      # the best-recall layer loses nothing
    ranking, keep = rank_layers(imp, 2)
    assert ranking == [3, 1, 2, 0] and keep == [1, 3]
    assert importance_scores(recall, mode="recall")[1] == pytest.approx(0.40)


def test_select_layers_averages_suites_and_names_missing_tasks(tmp_path, check_png):
    table = {0: dict(fda=0.9, swde=0.7, hella=0.6, arc=0.5), 1: dict(fda=0.2, swde=0.4, hella=0.59, arc=0.49),
             2: dict(fda=0.8, swde=0.7, hella=0.4, arc=0.3)}
    sel = select_layers(lambda i: table[i], [0, 1, 2], recall_tasks=["fda", "swde"],
                        commonsense_tasks=["hella", "arc"], keep=1)
    assert sel.recall[1] == pytest.approx(0.3) and sel.commonsense[2] == pytest.approx(0.35)
    # layer 1: (0.8 - 0.3) / (0.55 - 0.54) = 50 (capped from 50.0); layer 2: 0.05 / 0.2 = 0.25
    assert sel.importance[1] == pytest.approx(50.0) and sel.importance[2] == pytest.approx(0.25)
    assert sel.keep == [1]
    assert json.loads(sel.to_json())["keep"] == [1]
    assert plot_importance(sel, str(tmp_path / "imp.png")) == str(tmp_path / "imp.png")
    check_png(tmp_path / "imp.png", size=(720, 420))          # 6 x 3.5 inches at 120 dpi
    with pytest.raises(KeyError, match="layer 0.*swde"):
        select_layers(lambda i: {"fda": 1.0, "hella": 1.0, "arc": 1.0}, [0], recall_tasks=["fda", "swde"],
                      commonsense_tasks=["hella", "arc"], keep=1)
    with pytest.raises(ValueError, match="keep"):
        rank_layers({0: 1.0}, 2)


def test_ties_across_the_keep_boundary_are_reported_and_drawn(tmp_path, check_png):
    """The main job's report once kept layer 0 of an all-zero sweep without a word: a tie that the layer index
    decides is now named (which layers, why), logged, saved and hatched in the plot."""
    from jaxsuite.halo.layer_selection import boundary_tie
    flat = {0: dict(r=1.0, c=0.5), 1: dict(r=1.0, c=0.5), 2: dict(r=1.0, c=0.5)}
    said = []
    sel = select_layers(lambda i: flat[i], [0, 1, 2], recall_tasks=["r"], commonsense_tasks=["c"], keep=1,
                        log=said.append)
    assert sel.keep == [0] and sel.tied == [0, 1, 2] and "every layer's importance is 0" in sel.note
    assert any(s.startswith("layer selection is a tie: every layer's importance is 0") for s in said)
    assert json.loads(sel.to_json())["tied"] == [0, 1, 2]
    check_png(plot_importance(sel, str(tmp_path / "flat.png")), size=(720, 420), coloured=False)   # bars of 0
    # a tie between two of four at the boundary, by hand: 2 kept of {1: 3, 2: 1, 3: 1, 0: 0} -> 1 and 2 (index)
    ranking, keep = rank_layers({0: 0.0, 1: 3.0, 2: 1.0, 3: 1.0}, 2)
    assert keep == [1, 2] and boundary_tie({0: 0.0, 1: 3.0, 2: 1.0, 3: 1.0}, ranking, 2)[0] == [2, 3]
    # a tie inside the kept set, or scores that decide, is no tie to report
    assert boundary_tie({0: 2.0, 1: 2.0, 2: 1.0}, [0, 1, 2], 2) == ([], "")
    assert boundary_tie({0: 3.0, 1: 2.0, 2: 1.0}, [0, 1, 2], 1) == ([], "")
