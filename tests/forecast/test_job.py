"""The forecasting job's evaluation against hand-known cases and its input errors. The job end to end on the
smoke-test config, its report and its resumption, are checked on the run notebooks/03_ldl_forecasting.ipynb
makes (tests/test_notebooks.py::test_ldl_forecasting_notebook_runs), so the suite runs that job once."""

import numpy as np
import pytest

from jaxsuite.core.config_utils import load_config
from jaxsuite.forecast.job import EVAL_QUANTILES, evaluate


def test_perfect_forecasts_score_zero_and_full_coverage():
    rng = np.random.default_rng(0)
    history = rng.poisson(4.0, (6, 60)).astype(np.float32) + 1
    actual = rng.poisson(4.0, (6, 28)).astype(np.float32)
    perfect = np.repeat(actual[..., None], len(EVAL_QUANTILES), -1)
    levels = np.array([1, 2, 2, 3, 3, 3])
    res = evaluate(history, actual, perfect, np.full(6, 1 / 6), levels)
    assert set(res) == {"all", "level_1", "level_2", "level_3"}
    for group in res.values():
        assert group["wrmsse"] == pytest.approx(0, abs=1e-9) and group["wspl"] == pytest.approx(0, abs=1e-9)
        assert group["scaled_crps"] == pytest.approx(0, abs=1e-9)
        assert group["coverage_50"] == group["coverage_95"] == 1.0
    shifted = evaluate(history, actual, perfect + 1.0, np.full(6, 1 / 6), levels)["all"]
    assert shifted["wrmsse"] > 0 and shifted["coverage_95"] == 0.0


def test_job_names_a_missing_data_folder(tmp_path):
    from jaxsuite.forecast import job
    config = load_config("configs/ldl_tiny.py", "test")
    config.data.folder = str(tmp_path / "no_m5_here")
    with pytest.raises(FileNotFoundError, match="no_m5_here"):
        job.run(config, str(tmp_path / "w"))


def test_real_data_config_points_at_the_kaggle_files(tmp_path):
    """configs/ldl_m5.py: the same job and models on the aggregated levels; a wrong folder names itself."""
    from jaxsuite.forecast import job
    real, tiny = load_config("configs/ldl_m5.py"), load_config("configs/ldl_tiny.py")
    assert real.job == tiny.job and set(real.models.keys()) == set(tiny.models.keys())
    assert list(real.data.levels) == list(range(1, 10)) and real.eval.horizon == 28
    assert list(load_config("configs/ldl_m5.py", "all_levels").data.levels) == list(range(1, 13))
    real.data.folder = str(tmp_path / "m5-forecasting-accuracy")
    with pytest.raises(FileNotFoundError, match="m5-forecasting-accuracy"):
        job.run(real, str(tmp_path / "w"))
