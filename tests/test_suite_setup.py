"""The suite's own set-up (tests/conftest.py): a run leaves no compilation-cache folder behind."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_run_removes_the_compilation_cache_it_made(tmp_path):
    """A pytest run with its temp folder in tmp_path makes its XLA cache folder there and removes it at the end;
    before, each run left its folder (~110 MB after the full suite) in /tmp."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "PYTEST_XDIST_WORKER")}
    env["TMPDIR"] = str(tmp_path)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
                          "tests/core/test_pairs.py::test_rows_by_hand", f"--basetemp={tmp_path / 'base'}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "1 passed" in run.stdout
    assert not list(tmp_path.glob("jaxsuite-tests-xla-cache-*"))
