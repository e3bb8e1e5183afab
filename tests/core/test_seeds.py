"""The over-seeds helper: intervals against hand-computed values, aggregation, and real launcher runs over seeds and
forced device counts (a toy job that reports what it saw), resumed without running again."""
import json
import math
import os
import textwrap

import pytest

from jaxsuite.core import seeds


def test_interval_by_hand():
    s = seeds.interval([1.0, 2.0, 3.0])
    # t(0.975, 2) = 4.302652729911275; std = 1; half = 4.3027 / sqrt(3)
    assert s["mean"] == 2.0 and s["std"] == pytest.approx(1.0)
    assert s["hi"] - s["mean"] == pytest.approx(4.302652729911275 / math.sqrt(3))
    one = seeds.interval([5.0])
    assert one["n"] == 1 and one["mean"] == 5.0 and math.isnan(one["lo"])
    with pytest.raises(ValueError, match="no values"):
        seeds.interval([])


def test_flatten_and_aggregate():
    assert seeds.flatten({"a": {"b": 1, "c": [2, {"d": 3.5}]}, "e": "x", "f": True, "g": float("nan")}) == {
        "a.b": 1.0, "a.c.0": 2.0, "a.c.1.d": 3.5}
    results = {(1, 0): {"acc": 0.5, "only": 1}, (1, 1): {"acc": 0.7}, (8, 0): {"acc": 0.6}}
    summary = seeds.aggregate(results)
    assert set(summary["all"]) == {"acc"}                  # a key some run lacks is left out
    assert summary["by_devices"]["1"]["acc"]["mean"] == pytest.approx(0.6)
    assert summary["by_devices"]["8"]["acc"]["n"] == 1 and summary["all"]["acc"]["n"] == 3


TOY_JOB = textwrap.dedent('''
    import json, os
    import jax

    def run(config, workdir):
        out = {"seed": int(config.seed), "devices": jax.device_count(), "value": 0.1 * int(config.seed) + 1.0,
               "cache": os.environ["JAXSUITE_CACHE"], "seeds_list": list(config.seeds)}
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(out, f)
        with open(os.path.join(workdir, "calls.txt"), "a") as f:
            f.write("run\\n")
        return out
''')
TOY_CONFIG = textwrap.dedent('''
    import ml_collections

    def get_config(arg=None):
        c = ml_collections.ConfigDict()
        c.job = "toy_seeds_job:run"
        c.seed = 0
        c.seeds = [0, 1, 2]           # a job that loops over seeds itself: each run gets only its own
        return c
''')


def test_runs_over_seeds_and_device_counts_then_resumes(tmp_path, monkeypatch, capsys):
    (tmp_path / "toy_seeds_job.py").write_text(TOY_JOB)
    (tmp_path / "toy_seeds.py").write_text(TOY_CONFIG)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("JAXSUITE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "runs"
    argv = ["--config", str(tmp_path / "toy_seeds.py"), "--seeds", "0,1,2", "--devices", "1,3", "--workdir", str(root),
            "--metric", "value"]
    summary = seeds.main(argv)
    assert summary["runs"] == [[1, 0], [1, 1], [1, 2], [3, 0], [3, 1], [3, 2]]
    for d in (1, 3):
        assert summary["by_devices"][str(d)]["devices"]["mean"] == d            # the forced device count reached JAX
        assert summary["by_devices"][str(d)]["value"]["mean"] == pytest.approx(1.1)
    assert summary["all"]["seed"]["mean"] == 1.0
    for d in (1, 3):                # each device count builds its own cached artefacts
        run = json.loads((root / f"d{d}_s0" / "results.json").read_text())
        assert run["cache"] == str(tmp_path / "cache" / f"devices_{d}")
    assert all(json.loads((root / f"d1_s{s}" / "results.json").read_text())["seeds_list"] == [s] for s in range(3))
    assert json.loads((root / "seeds.json").read_text())["all"]["value"]["n"] == 6
    assert (root / "seeds.png").stat().st_size > 1000
    assert "value [3 devices]: 1.1000" in capsys.readouterr().out
    seeds.main(argv)                                                            # finished runs are read back
    assert all((root / f"d{d}_s{s}" / "calls.txt").read_text() == "run\n" for d in (1, 3) for s in range(3))
    with pytest.raises(SystemExit):
        seeds.main([*argv[:-2], "--metric", "nope"])
    # --no-run aggregates what has finished and names the rest, launching nothing
    capsys.readouterr()
    partial = seeds.main([*argv, "--seeds", "0,1,2,7", "--no-run"])
    assert partial["runs"] == summary["runs"] and partial["all"]["value"] == summary["all"]["value"]
    assert "not finished (left out): devices=1 seed=7, devices=3 seed=7" in capsys.readouterr().out
    assert not (root / "d1_s7").exists()
    with pytest.raises(SystemExit):
        seeds.main([*argv, "--seeds", "7", "--no-run"])
    # --record keeps each run's small JSON files (not its other files) where a repository can keep them, and
    # aggregating the record gives the same figures as the runs themselves
    kept = tmp_path / "kept"
    (root / "d1_s0" / "finished.json").write_text("{}")
    seeds.main([*argv, "--no-run", "--record", str(kept)])
    assert sorted(p.name for p in (kept / "d3_s2").iterdir()) == ["config.json", "results.json"]
    assert not (kept / "d1_s0" / "finished.json").exists()
    assert (kept / "d3_s2" / "results.json").read_text() == (root / "d3_s2" / "results.json").read_text()
    again = seeds.main(["--config", str(tmp_path / "toy_seeds.py"), "--seeds", "0,1,2", "--devices", "1,3",
                        "--workdir", str(kept), "--no-run"])
    assert again["by_devices"] == summary["by_devices"] and again["all"] == summary["all"]


def test_seed_flags_follow_the_configs_fields(tmp_path):
    """`seed` gets --config.seed, a `seeds` list (LDL-MoE has only that) gets --config.seeds=[S], neither is an
    error naming the config."""
    def config(fields: str):
        path = tmp_path / f"c{abs(hash(fields))}.py"
        path.write_text(f"import ml_collections\ndef get_config():\n    return ml_collections.ConfigDict({fields})\n")
        return str(path)

    assert seeds.seed_flags(config("dict(seed=0)"), 3) == ["--config.seed=3"]
    assert seeds.seed_flags(config("dict(seeds=[0, 1])"), 3) == ["--config.seeds=[3]"]
    assert seeds.seed_flags(config("dict(seed=0, seeds=[0, 1])"), 4) == ["--config.seed=4", "--config.seeds=[4]"]
    with pytest.raises(ValueError, match="has neither a `seed` nor a `seeds` field"):
        seeds.seed_flags(config("dict(lr=1.0)"), 0)
    assert seeds.seed_flags("configs/ldl_tiny.py", 2) == ["--config.seeds=[2]"]
