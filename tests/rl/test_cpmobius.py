"""CPMobius's own formulas by hand and the job's input errors. The job end to end on the tiny test config, with
exact resumption, is checked on the run notebooks/04_cpmobius.ipynb makes
(tests/test_notebooks.py::test_cpmobius_notebook_runs), so the suite runs that job once."""

import numpy as np
import pytest

from jaxsuite.core.config_utils import load_config
from jaxsuite.rl.cpmobius.coach_player import RollbackTracker, coach_rewards, coach_scale, keep_group


def test_filter_bounds_are_inclusive():
    two_of_ten = np.asarray([1, 1] + [-1] * 8)
    assert keep_group(two_of_ten, 0.2, 0.8)
    assert keep_group(-two_of_ten, 0.2, 0.8)                 # 8 of 10 non-negative
    assert not keep_group(np.asarray([1] + [-1] * 9), 0.2, 0.8)
    assert not keep_group(np.full(10, -1), 0.2, 0.8)         # a tie: everyone -1


def test_coach_scale_by_hand():
    adv = np.asarray([1.0, -0.5, 0.0, -0.5])
    lengths = np.asarray([3, 1, 5, 1])
    # non-zero advantages only, weighted by their token counts: (3 * 1 - 0.5 - 0.5) / (3 + 1 + 1) = 0.4
    assert coach_scale(adv, lengths, np.asarray([1, -1, -1, -1]), "advantage") == pytest.approx(0.4)
    assert coach_scale(adv, lengths, np.asarray([1, -1, -1, -1]), "reward") == pytest.approx(-0.5)
    assert coach_scale(np.zeros(4), lengths, np.full(4, -1.0), "advantage") is None
    with pytest.raises(ValueError, match="unknown coach reward scale"):
        coach_scale(adv, lengths, adv, "length")


def test_coach_rewards_by_hand():
    # V went from 0.50 to 0.53: R = 100 * 0.03 * m, and -1 for an instruction without non-zero advantages
    np.testing.assert_allclose(coach_rewards(0.53 - 0.50, [0.4, None, -0.25]), [1.2, -1.0, -0.75], rtol=1e-5)


def test_rollback_tracker_by_hand():
    tr = RollbackTracker(start_step=3, patience=2)
    events = [tr.observe(t, v) for t, v in [(0, .5), (1, .4), (2, .6), (3, .5), (4, .5), (5, .5), (6, .7)]]
    # step 1 is before start_step (no count); steps 3-4 miss twice -> rollback; the counter restarts
    assert events == ["improved", None, "improved", None, "rollback", None, "improved"]
    assert tr.best == .7 and tr.misses == 0
    with pytest.raises(ValueError, match="patience"):
        RollbackTracker(0, 0)


def _run(workdir, **overrides):
    from jaxsuite.rl.cpmobius.job import run

    config = load_config("configs/cpmobius_tiny.py", "test")
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return run(config, str(workdir))


def test_unknown_method_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        _run(tmp_path, methods=["cpmobius", "ppo"])


def test_majority_labels_by_hand():
    from jaxsuite.rl.cpmobius.job import majority_labels

    texts = ["\\boxed{5}", "\\boxed{5}", "\\boxed{6}",      # problem 1: 5 wins
             "\\boxed{1}", "\\boxed{2}", "no box",            # problem 2: a three-way tie -> dropped
             "", "", "\\boxed{9}"]                             # problem 3: "no box" is the majority -> dropped
    probe = majority_labels(["a", "b", "c"], texts, 3)
    assert probe.problems == ["a"] and probe.labels == ["5"]
    with pytest.raises(ValueError, match="none of the 1 probe problems has a unique majority"):
        majority_labels(["b"], texts[3:6], 3)
    with pytest.raises(ValueError, match="9 responses for 2 problems"):
        majority_labels(["a", "b"], texts, 3)


def test_paper_config_loads_and_names_a_missing_data_file(tmp_path, monkeypatch):
    from jaxsuite.rl.cpmobius.job import run

    config = load_config("configs/cpmobius_qwen2p5_math_7b.py")
    assert (config.rl.problems_per_step, config.rl.n, config.player.max_new_tokens) == (16, 16, 3300)
    assert (config.player.entropy_coef, config.coach.entropy_coef, config.player.kl_coef) == (-0.01, 0.01, 1e-3)
    assert (config.rollback.start_step, config.rollback.patience) == (200, 15)
    monkeypatch.chdir(tmp_path)                       # no data/cpmobius/ here
    with pytest.raises(FileNotFoundError, match="amc_x10.parquet"):
        run(config, str(tmp_path / "w"))
