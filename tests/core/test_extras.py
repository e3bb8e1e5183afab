"""Install extras: `require` names the extra, each wing fails with that one line without it, the launcher
prints it as its one error line, setup.py's extras match what the code requires, and the main job (HALO)
needs none of them."""
from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import re
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import setuptools

from jaxsuite.core import extras
from jaxsuite.core.extras import MissingExtraError, require

REPO = Path(__file__).resolve().parents[2]

CHEM = "jaxsuite.latent (LatentChem) needs rdkit: pip install 'jaxsuite[chem]'"
FORECAST = "jaxsuite.forecast.baselines (the Prophet-style baseline) needs numpyro: pip install 'jaxsuite[forecast]'"
RL = "jaxsuite.rl.math_env (answer checking for CPMobius, R-Zero, RENT) needs sympy: pip install 'jaxsuite[rl]'"


# --- require ------------------------------------------------------------------------------------------------
def test_require_returns_an_installed_module():
    assert require("json.decoder", extra="x", for_="y") is importlib.import_module("json.decoder")
    assert require("json", extra="x", for_="y", load=False) is None


@pytest.mark.parametrize("load", [True, False])
def test_require_names_the_extra_when_the_module_is_missing(monkeypatch, load):
    monkeypatch.setitem(sys.modules, "rdkit", None)   # what Python does for a package that is not installed
    with pytest.raises(MissingExtraError) as info:
        require("rdkit", extra="chem", for_="jaxsuite.latent (LatentChem)", load=load)
    assert str(info.value) == CHEM
    assert isinstance(info.value, ImportError) and info.value.__suppress_context__   # no chained traceback


def test_require_names_the_package_when_a_submodule_is_asked_for(monkeypatch):
    with pytest.raises(MissingExtraError, match=r"^w needs no_such_pkg_4d1: pip install 'jaxsuite\[e\]'$"):
        require("no_such_pkg_4d1.sub", extra="e", for_="w")
    with pytest.raises(MissingExtraError, match=r"^w needs no_such_pkg_4d1:"):
        require("no_such_pkg_4d1.sub", extra="e", for_="w", load=False)


def test_require_does_not_blame_the_extra_for_a_broken_installation(tmp_path, monkeypatch):
    # The package is there, but one of its own dependencies is not: that error must keep its own name.
    (tmp_path / "pkg_with_broken_dep_4d1").mkdir()
    (tmp_path / "pkg_with_broken_dep_4d1" / "__init__.py").write_text("import missing_dependency_4d1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        require("pkg_with_broken_dep_4d1", extra="e", for_="w")
    assert not isinstance(info.value, MissingExtraError)
    assert info.value.name == "missing_dependency_4d1"


# --- each wing without its extra -----------------------------------------------------------------------------
@pytest.mark.parametrize("blocked, module, message", [
    ("rdkit", "jaxsuite.latent.chem_molecules", CHEM),
    ("rdkit", "jaxsuite.latent.chem_tasks", CHEM),
    ("numpyro", "jaxsuite.forecast.baselines", FORECAST),
    ("sympy", "jaxsuite.rl.math_env", RL),
])
def test_wing_without_its_extra_fails_with_one_line(monkeypatch, blocked, module, message):
    monkeypatch.setitem(sys.modules, blocked, None)
    for name in [n for n in sys.modules if n == module or n.startswith(blocked + ".")]:
        monkeypatch.delitem(sys.modules, name)   # re-run the module's imports; restored after the test
    with pytest.raises(MissingExtraError) as info:
        importlib.import_module(module)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def _python(code: str, timeout: int = 600) -> subprocess.CompletedProcess:
    code = "import os; os.environ.setdefault('JAX_PLATFORMS', 'cpu')\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_launcher_reports_a_missing_extra_in_one_line(tmp_path):
    # What a user sees: `python -m jaxsuite.launch --config configs/<wing>_tiny.py` without the extra.
    run = _python(f"""
        import contextlib, io, json, sys
        for package in ("rdkit", "numpyro", "sympy"):
            sys.modules[package] = None          # as if the extras were not installed
        from jaxsuite import launch
        report = {{}}
        for config in ("latentchem_tiny.py:test", "ldl_tiny.py", "cpmobius_tiny.py"):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    launch.main(["--config", "configs/" + config, "--workdir", {str(tmp_path)!r} + "/" + config])
                    code = 0
                except SystemExit as e:
                    code = e.code
            report[config] = [code, err.getvalue()]
        print("REPORT" + json.dumps(report))
    """)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.split("REPORT", 1)[1])
    for config, message in [("latentchem_tiny.py:test", CHEM), ("ldl_tiny.py", FORECAST), ("cpmobius_tiny.py", RL)]:
        code, stderr = report[config]
        errors = [line for line in stderr.splitlines() if "error" in line.lower()]
        assert code == 2 and "Traceback" not in stderr, (config, stderr)
        assert len(errors) == 1 and errors[0].endswith(message), (config, stderr)


def test_main_job_needs_no_extra():
    # The README's main-job command installs the core only (`pip install -e .`): HALO, the pre-training job
    # it runs for its teacher, and the launcher must import without any extra, nor the test tools' torch and
    # transformers. (The core-install contract of .importlinter checks the same statically, imports inside
    # functions included.)
    run = _python("""
        import importlib, pkgutil, sys
        for package in ("rdkit", "numpyro", "sympy", "torch", "transformers"):
            sys.modules[package] = None
        from jaxsuite.core import config_utils
        config = config_utils.load_config("configs/halo_tiny.py")
        assert config.job.startswith("jaxsuite.halo."), config.job
        config_utils.import_job(config.job)
        import jaxsuite.halo, jaxsuite.launch
        config_utils.import_job(config.teacher.pretrain.job)      # the teacher's pre-training job
        for m in pkgutil.iter_modules(jaxsuite.halo.__path__):
            importlib.import_module(f"jaxsuite.halo.{m.name}")
        print("OK")
    """)
    assert run.returncode == 0 and "OK" in run.stdout, run.stderr[-3000:]


# --- setup.py agrees with the code ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def setup_kwargs() -> dict:
    captured = {}
    original = setuptools.setup
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    try:
        runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = original
    return captured


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _required_extras() -> list[tuple[str, str, str]]:
    """(file, module, extra) of every require(...) call in jaxsuite/."""
    found = []
    for path in sorted((REPO / "jaxsuite").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require":
                extra = next(k.value.value for k in node.keywords if k.arg == "extra")
                found.append((str(path.relative_to(REPO)), node.args[0].value, extra))
    return found


def test_every_required_package_is_installed_by_its_extra(setup_kwargs):
    extras_require = setup_kwargs["extras_require"]
    required = _required_extras()
    assert {extra for _, _, extra in required} >= {"chem", "forecast", "rl"}, required
    distributions = importlib.metadata.packages_distributions()
    for path, module, extra in required:
        assert extra in extras_require, f"{path}: require(..., extra={extra!r}) but setup.py has no such extra"
        names = {_requirement_name(r) for r in extras_require[extra]}
        dists = {d.lower().replace("_", "-") for d in distributions.get(module.partition(".")[0], [])}
        assert dists & names, f"{path}: extra {extra!r} = {sorted(names)} does not install {module} ({dists})"


def test_extras_compose(setup_kwargs):
    extras_require = setup_kwargs["extras_require"]
    core = {_requirement_name(r) for r in setup_kwargs["install_requires"]}
    wings = {name: {_requirement_name(r) for r in reqs} for name, reqs in extras_require.items()
             if name not in ("all", "test", "aot")}
    assert {"chem", "forecast", "rl"} <= set(wings)
    assert {_requirement_name(r) for r in extras_require["all"]} == set().union(*wings.values())
    test = {_requirement_name(r) for r in extras_require["test"]}
    assert test >= set().union(*wings.values()) | {"torch", "transformers", "pytest", "import-linter"}
    assert not core & set().union(*wings.values()), "a wing's heavy dependency is also in install_requires"
    assert set(extras_require["aot"]) <= set(extras_require["test"])    # the deviceless TPU compiles are tested
    assert {"jax", "flax", "optax", "orbax-checkpoint", "grain", "etils"} <= core


def test_readme_and_ci_install_what_they_run():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in readme, ".ci/run must run the README's test command verbatim"
    assert 'pip install -q -e ".[test]"' in ci
    assert "pip install -q -e . && .venv/bin/python -m jaxsuite.launch" in readme   # the main job: core only
    assert extras.missing_extra_message("rdkit", extra="chem", for_="x") == "x needs rdkit: pip install 'jaxsuite[chem]'"
