"""An install outside a checkout (what `pip install git+...` or Colab gives) finds the configs: they ship inside
the wheel as jaxsuite.configs. The wheel is built from this tree and installed, without dependencies, into a
fresh virtualenv that borrows this environment's packages; the commands run from a folder with no configs/."""
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert out.returncode == 0, (cmd, out.stdout[-2000:], out.stderr[-3000:])
    return out


def test_an_installed_wheel_lists_and_runs_the_shipped_configs(tmp_path):
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
          str(tmp_path / "wheel"), str(REPO)])
    (wheel,) = (tmp_path / "wheel").glob("jaxsuite-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)])
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # the dependencies come from this environment; jaxsuite itself only from the wheel
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
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
