"""jaxsuite.core.workdir.Workdir (the job contract) and jaxsuite.core.files (epath I/O, atomic writes): the
results.json keys, the finished-marker, primary-only writes, atomicity under a failing write, and the same
code on a bucket URL (gs://), served by the `fake_bucket` fixture (an in-memory filesystem behind epath), so no
network is needed and any write that bypassed epath would land in the working directory instead."""
import json

import ml_collections
import numpy as np
import pytest

from jaxsuite.core import files
from jaxsuite.core.config_utils import config_hash, config_to_dict
from jaxsuite.core.metrics import pyplot, read_metrics
from jaxsuite.core.workdir import FINISHED, RESULTS, Workdir


def _config(steps=3):
    return ml_collections.ConfigDict(dict(job="x:run", seed=0, train=dict(steps=steps, lr=1e-3)))


def _figure():
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3, 2), dpi=50)
    ax.plot([0, 1, 2], [2.0, 1.0, 0.5], color="tab:red")
    return fig


def test_finish_writes_the_contract_keys_then_the_marker(tmp_path):
    wd = Workdir.start(tmp_path / "run", primary=True)
    config = _config()
    results = wd.finish(config, {"eval_loss": np.float32(1.5), "steps": np.int64(3), "curve": np.arange(3)})
    on_disk = json.loads((tmp_path / "run" / RESULTS).read_text())
    assert on_disk == results
    assert set(on_disk) == {"config", "wall_seconds", "eval_loss", "steps", "curve"}
    assert on_disk["config"] == config_to_dict(config)
    assert 0.0 <= on_disk["wall_seconds"] < 60
    assert (on_disk["eval_loss"], on_disk["steps"], on_disk["curve"]) == (1.5, 3, [0, 1, 2])
    assert json.loads((tmp_path / "run" / FINISHED).read_text())["config_hash"] == config_hash(config)
    assert wd.is_finished(config) and wd.is_finished()
    assert not wd.is_finished(_config(steps=4))            # another config: its work is not done here
    with pytest.raises(ValueError, match="contract"):
        wd.results(config, {"wall_seconds": 1.0})


def test_start_clears_an_old_marker_and_a_missing_marker_is_not_finished(tmp_path):
    assert not Workdir(tmp_path / "never").is_finished()
    wd = Workdir.start(tmp_path, primary=True)
    wd.mark_finished(_config())
    assert Workdir(tmp_path, primary=False).is_finished(_config())   # every process can read the marker
    again = Workdir.start(tmp_path, primary=True)                      # a new run of the job begins here
    assert not again.is_finished(_config()) and not (tmp_path / FINISHED).exists()


def test_only_the_primary_process_writes(tmp_path):
    wd = Workdir.start(tmp_path / "other", primary=False)
    assert not (tmp_path / "other").exists()
    assert wd.write_text("a.txt", "x") is None and wd.write_json("b.json", {"a": 1}) is None
    assert wd.append_jsonl("c.jsonl", {"a": 1}) is None and wd.save_npz("d.npz", q=np.zeros(2)) is None
    fig = _figure()
    assert wd.save_figure(fig, "e.png") is None
    assert not pyplot().fignum_exists(fig.number)          # closed on every process all the same
    results = wd.finish(_config(), {"loss": 1.0})
    assert results["loss"] == 1.0 and "config" in results   # every process gets the results back
    writer = wd.metrics_writer(resume_step=0)
    writer.write(1, {"loss": 1.0})
    writer.close()
    assert not (tmp_path / "other").exists()
    assert Workdir(tmp_path, primary=True).sub("other").primary      # a sub-folder keeps its writer


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    wd = Workdir.start(tmp_path, primary=True)
    wd.write_json("state.json", {"version": 1})

    def crash(f):
        raise OSError("disk full")
    monkeypatch.setattr(files, "_fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        wd.write_json("state.json", {"version": 2})
    assert wd.read_json("state.json") == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_json_files_are_read_with_the_file_line_and_column_named(tmp_path):
    (tmp_path / "ok.json").write_text('{"a": 1}')
    assert files.read_json_object(tmp_path / "ok.json") == {"a": 1}
    (tmp_path / "bad.json").write_text('{\n  "a": 1,\n}')
    with pytest.raises(ValueError, match=r"bad.json: invalid JSON at line 3 column 1"):
        files.read_json_object(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ValueError, match=r"list.json: expected a JSON object, got list"):
        files.read_json_object(tmp_path / "list.json")
    with pytest.raises(FileNotFoundError, match=r"none.json does not exist"):
        files.read_json_object(tmp_path / "none.json")
    with pytest.raises(FileNotFoundError, match=r"^no adapter here$"):
        files.read_json_object(tmp_path / "none.json", missing="no adapter here")


def test_jsonl_log_survives_a_torn_line_and_arrays_round_trip(tmp_path):
    wd = Workdir.start(tmp_path, primary=True)
    wd.append_jsonl("runs.jsonl", {"run": 1, "value": np.float32(0.25)})
    with open(tmp_path / "runs.jsonl", "a") as f:
        f.write('{"run": 2, "val')                           # a writer killed mid-line
    wd.append_jsonl("runs.jsonl", {"run": 3})
    assert wd.read_jsonl("runs.jsonl") == [{"run": 1, "value": 0.25}, {"run": 3}]
    assert wd.read_jsonl("missing.jsonl") == []
    q = np.arange(12, dtype=np.float32).reshape(3, 4)
    wd.save_npz("fan.npz", q=q, scale=np.ones(3))
    back = wd.load_npz("fan.npz")
    np.testing.assert_array_equal(back["q"], q)
    np.testing.assert_array_equal(back["scale"], np.ones(3))
    assert wd.read_json("missing.json", default="absent") == "absent"
    with pytest.raises(FileNotFoundError):
        wd.read_json("missing.json")


def test_a_bucket_workdir_gets_every_artefact_through_epath(fake_bucket, check_png, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)           # a write that bypassed epath (os.makedirs("gs://...")) would land here
    url = f"{fake_bucket}/run"
    wd = Workdir.start(url, primary=True)
    assert wd.remote and wd.path("results.json") == f"{url}/results.json"
    writer = wd.metrics_writer(resume_step=0)
    for step in (1, 2, 3):
        writer.write(step, {"train/loss": 1.0 / step})
    writer.close()
    resumed = wd.metrics_writer(resume_step=2)             # a resumed run drops step 3, then logs it again
    resumed.write(3, {"train/loss": 0.5})
    resumed.close()
    assert [(r["step"], r["train/loss"]) for r in read_metrics(url)] == [(1, 1.0), (2, 0.5), (3, 0.5)]
    wd.save_figure(_figure(), "curve.png")
    wd.append_jsonl("runs.jsonl", {"run": 1})
    wd.save_npz("fan.npz", q=np.ones((2, 2)))
    files.copy_file(wd.path("runs.jsonl"), wd.path("hf", "copy.jsonl"))
    config = _config()
    wd.finish(config, {"eval_loss": 2.0})

    assert list(tmp_path.iterdir()) == [], "something was written outside epath"
    root = files.as_path(url)
    assert sorted(p.name for p in root.iterdir()) == ["curve.png", "fan.npz", "finished.json", "hf",
                                                      "metrics.jsonl", "results.json", "runs.jsonl"]
    png = tmp_path.parent / f"{tmp_path.name}-curve.png"
    png.write_bytes((root / "curve.png").read_bytes())
    check_png(png, size=(150, 100))
    assert json.loads((root / "results.json").read_text())["eval_loss"] == 2.0
    assert (root / "hf" / "copy.jsonl").read_text() == '{"run": 1}\n'
    again = Workdir(url, primary=False)
    assert again.is_finished(config) and again.read_results()["config"] == config_to_dict(config)
    np.testing.assert_array_equal(again.load_npz("fan.npz")["q"], np.ones((2, 2)))
