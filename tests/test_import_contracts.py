"""The floors of .importlinter hold, cover every wing, and hold at run time too.

  - each contract of .importlinter is checked by `lint-imports` (one test per contract, so a broken floor
    names itself);
  - every wing that exists (a folder or job module of jaxsuite, or a system inside jaxsuite/rl/) is named in
    the contracts, and the RL core's contract lists every module of that core: a new wing or a new module
    cannot slip past the floors by not being listed;
  - `import jaxsuite.core` (every core module) loads no model, hf, generate or wing module, in a fresh
    interpreter: the package's __init__ runs first and must stay lazy;
  - the lazy public API still answers: `jaxsuite.generate` is the function even after the submodule of the
    same name was imported by someone else.
"""
from __future__ import annotations

import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / ".importlinter"

importlinter_api = pytest.importorskip("importlinter.api", reason="import-linter is part of the [test] extra")

# Floors under the wings: never a wing themselves.
FOUNDATION = {"core", "models", "hf", "peft_io", "generate", "launch"}
# Helpers for tests and benchmarks only, kept out of the library by contract testing-helpers.
TEST_HELPERS = {"testing"}
# Packages whose own modules are a core any wing may use, and whose subpackages are wings (rl/cpmobius): the RL
# core and the agent runtime.
SHARED_CORES = {"rl", "agents"}
# Contracts whose forbidden_modules must name every wing (directly or through a parent package).
NO_WING_CONTRACTS = ["core-floor", "models-floor", "hf-generate-floor", "launcher-thin", "rl-core",
                     "agents-runtime"]


def _contracts() -> dict[str, dict]:
    options = importlinter_api.read_configuration(str(CONFIG))
    return {c["id"]: c for c in options["contracts_options"]}


def _children(package_dir: Path) -> tuple[set[str], set[str]]:
    """(modules, subpackages) directly inside a package folder, by name."""
    found = list(pkgutil.iter_modules([str(package_dir)]))
    return {m.name for m in found if not m.ispkg}, {m.name for m in found if m.ispkg}


def _wings() -> set[str]:
    """Every wing and job of jaxsuite, as a dotted module name."""
    modules, packages = _children(REPO / "jaxsuite")
    wings = {f"jaxsuite.{name}" for name in (modules | packages) - FOUNDATION - SHARED_CORES - TEST_HELPERS}
    for core in SHARED_CORES:
        wings |= {f"jaxsuite.{core}.{name}" for name in _children(REPO / "jaxsuite" / core)[1]}
    return wings


def _covers(entries: list[str], module: str) -> bool:
    return any(module == e or module.startswith(e + ".") for e in entries)


@pytest.mark.parametrize("contract_id", sorted(_contracts()))
def test_contract_is_kept(contract_id):
    # The CLI as a user runs it, from the repository root, so that this checkout is what gets analysed.
    cmd = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
           "--contract", contract_id, "--no-cache"]   # .importlinter, found in the cwd
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    report = run.stdout[run.stdout.find("Contracts"):] + run.stderr
    assert run.returncode == 0, f"lint-imports --contract {contract_id}:\n{report}"
    assert "KEPT" in run.stdout, report   # the contract was checked, not skipped


def test_every_wing_is_under_the_contracts():
    contracts = _contracts()
    wings = _wings()
    assert {"jaxsuite.halo", "jaxsuite.latent", "jaxsuite.forecast", "jaxsuite.rl.cpmobius"} <= wings
    independent = contracts["wings-independent"]["modules"]
    missing = sorted(w for w in wings if w not in independent)
    assert not missing, f"add {missing} to the modules of contract wings-independent in .importlinter"
    for contract_id in NO_WING_CONTRACTS:
        forbidden = contracts[contract_id]["forbidden_modules"]
        missing = sorted(w for w in wings if not _covers(forbidden, w))
        assert not missing, f"add {missing} to the forbidden_modules of contract {contract_id} in .importlinter"


@pytest.mark.parametrize("core, contract_id", [("rl", "rl-core"), ("agents", "agents-runtime")])
def test_shared_core_contracts_list_every_core_module(core, contract_id):
    modules, _ = _children(REPO / "jaxsuite" / core)
    listed = set(_contracts()[contract_id]["source_modules"])
    assert listed == {f"jaxsuite.{core}.{m}" for m in modules}, (
        f"the source_modules of contract {contract_id} in .importlinter must be exactly the modules of "
        f"jaxsuite/{core}/")


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    env_code = "import os; os.environ.setdefault('JAX_PLATFORMS', 'cpu')\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", env_code], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_importing_the_core_loads_no_model_and_no_wing():
    run = _fresh_python("""
        import importlib, pkgutil, sys
        import jaxsuite.core
        for m in pkgutil.iter_modules(jaxsuite.core.__path__):
            importlib.import_module(f"jaxsuite.core.{m.name}")
        above = ("jaxsuite.models", "jaxsuite.hf", "jaxsuite.generate", "jaxsuite.pretrain", "jaxsuite.halo",
                 "jaxsuite.latent", "jaxsuite.forecast", "jaxsuite.rl", "kernels_pallas")
        loaded = sorted(name for name in sys.modules if name.startswith(above))
        print("LOADED", loaded)
    """)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "LOADED []" in run.stdout, run.stdout[-3000:]


def test_public_api_resolves_lazily():
    # rl.rollout imports the submodule jaxsuite.generate before anyone reads the package attribute: the
    # import system then binds the submodule on the package, which must not hide the function.
    run = _fresh_python("""
        import sys
        import jaxsuite
        assert "jaxsuite.models" not in sys.modules
        import jaxsuite.rl.rollout
        from jaxsuite.generate import generate as generate_fn
        assert jaxsuite.generate is generate_fn, jaxsuite.generate
        from jaxsuite import generate
        assert generate is generate_fn
        for name in jaxsuite.__all__:
            value = getattr(jaxsuite, name)
            assert value.__name__ == name, (name, value)
        from jaxsuite.hf import load_pretrained
        assert jaxsuite.load_pretrained is load_pretrained
        try:
            jaxsuite.no_such_name
        except AttributeError as e:
            assert "no_such_name" in str(e)
        else:
            raise AssertionError("jaxsuite.no_such_name resolved")
        print("OK")
    """)
    assert run.returncode == 0 and "OK" in run.stdout, run.stderr[-3000:]
