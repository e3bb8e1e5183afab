"""The forecasting job end to end on the smoke-test config (`slow`), and its evaluation against hand-known cases."""
import json

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


@pytest.fixture(scope="module")
def job_run(tmp_path_factory):
    from jaxsuite.forecast import job
    workdir = tmp_path_factory.mktemp("ldl")
    config = load_config("configs/ldl_tiny.py", "test")
    return config, workdir, job.run(config, str(workdir))


@pytest.mark.slow
def test_job_scores_every_model_at_every_level(job_run, tmp_path, check_png):
    config, workdir, results = job_run
    models = list(config.models.keys())
    assert set(results["summary"]) == set(models)
    for name in models:
        groups = results["summary"][name]
        assert {"all"} | {f"level_{lv}" for lv in range(1, 13)} == set(groups)
        for metric in ("wrmsse", "wspl", "scaled_crps", "mmd", "coverage_50", "coverage_80", "coverage_95"):
            assert np.isfinite(groups["all"][metric]["mean"]), (name, metric)
        assert 0.0 <= groups["all"]["coverage_95"]["mean"] <= 1.0
        check_png(workdir / f"fan_{name}.png")
    check_png(workdir / "components.png")
    on_disk = json.loads((workdir / "results.json").read_text())
    assert on_disk["summary"].keys() == results["summary"].keys()
    table = (workdir / "results.md").read_text()
    assert all(f"| {name} |" in table for name in models) and "s/epoch" in table
    # the generator's known process is kept beside the data: the parameters of exactly the series modelled
    from jaxsuite.forecast.m5_generate import generate_m5
    truth = json.loads((workdir / "data" / "truth.json").read_text())
    g = config.data.generate
    assert (truth["seed"], truth["n_days"], truth["stores"]) == (g.seed, g.days, list(g.stores)) == (
        0, results["days"], ["CA_1", "TX_1"])
    assert len(truth["items"]) == 7 * g.items_per_dept == len(truth["elasticity"]) == len(truth["base_log_rate"])
    regenerated = generate_m5(tmp_path / "again", n_items_per_dept=g.items_per_dept, stores=tuple(g.stores),
                              n_days=g.days, seed=g.seed)["truth"]
    assert truth == json.loads(json.dumps(regenerated))


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


@pytest.mark.slow
def test_rerun_resumes_from_the_run_log(job_run):
    """Interrupted after some runs, the same command redoes only the missing one: the finished runs' records and
    saved forecasts stay as they were, the lost run is made again with the same figures, and the same table
    comes out. A third run then finds nothing to redo."""
    from jaxsuite.forecast import job
    config, workdir, first = job_run
    run_log = workdir / "runs.jsonl"
    lines = run_log.read_text().splitlines()
    assert len(lines) == len(config.models.keys()) * len(config.seeds) * config.eval.origins
    kept, lost = [json.loads(line) for line in lines[:-1]], json.loads(lines[-1])
    fans = {name: (workdir / f"fan_{name}.npz").stat().st_mtime_ns for name in config.models.keys()}
    run_log.write_text("\n".join(lines[:-1]) + "\n{\"torn")                    # lose the last run mid-write
    again = job.run(config, str(workdir))

    records = []
    for line in run_log.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:                                          # the torn line
            continue
    assert records[:-1] == kept                                               # finished runs not redone
    redone = records[-1]
    assert (redone["origin"], redone["model"], redone["seed"]) == (lost["origin"], lost["model"], lost["seed"])
    assert redone["metrics"].keys() == lost["metrics"].keys()
    for group, figures in lost["metrics"].items():                            # {"all" / "level_<n>": {metric: x}}
        assert redone["metrics"][group] == pytest.approx(figures, rel=1e-5), group
    # the last origin's forecasts are saved per model; only the lost run's model wrote its file again
    rewritten = {name for name, mtime in fans.items() if (workdir / f"fan_{name}.npz").stat().st_mtime_ns != mtime}
    assert rewritten == {lost["model"]}
    for name in first["summary"]:
        assert again["summary"][name]["all"]["wrmsse"]["mean"] == pytest.approx(
            first["summary"][name]["all"]["wrmsse"]["mean"], rel=1e-5)

    before = run_log.read_text()
    job.run(config, str(workdir))
    assert run_log.read_text() == before
