"""An install outside a checkout (what `pip install git+...` or Colab gives) finds the configs: they ship inside
the wheel as jaxsuite.configs. The wheel is built from this tree and installed, without dependencies, into a
fresh virtualenv that borrows this environment's packages; the commands run from a folder with no configs/."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert out.returncode == 0, (cmd, out.stdout[-2000:], out.stderr[-3000:])
    return out


def test_an_installed_wheel_lists_and_runs_the_shipped_configs(tmp_path):
    from jaxsuite.testing import borrowing_virtualenv, build_wheel
    wheel = build_wheel(REPO, tmp_path / "wheel")
    python, site = borrowing_virtualenv(tmp_path / "venv")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)])
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ""}
    where = _run([str(python), "-c", "import jaxsuite; print(jaxsuite.__file__)"], cwd=work, env=env).stdout
    assert where.startswith(str(site)), where
    listed = _run([str(python), "-m", "jaxsuite.launch", "--list"], cwd=work, env=env).stdout
    assert "configs/halo_tiny.py: " in listed and "    :tiny " in listed
    _run([str(python), "-m", "jaxsuite.launch", "--config", "qwen3_pretrain:tiny", "--compile_only",   # a bare name
          "--topology", "cpu:1", "--workdir", str(work / "run"), "--programs", "train_step"], cwd=work, env=env)
    assert (work / "run" / "compile_report.json").is_file()
