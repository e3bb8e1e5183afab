"""Writes an obfuscated package: a library's functions under random names, importable from a folder.

    mapping = numpy_mapping()
    build_package(workdir / "pkg", mapping, docs=rewrite_docs(mapping))    # -> workdir/pkg/zwc, zwc/rfx
    # generated code then runs with python_path=[workdir / "pkg"]: `import zwc; zwc.kocito(zwc.yitaf([1, 2]))`

The package is three small files and two JSON files: `__init__.py` and `rfx/__init__.py` fill their namespaces
from `_package.json` through `_runtime.py` (jaxsuite/sebench/zwc_runtime.py, copied), and `_docs.json` holds the
rewritten documentation each function shows in `help()`. It imports the library from the folder recorded here
where the interpreter cannot find it otherwise; generated code cannot import the library itself once the
evaluator's harness has called `zwc._seal()`.

Submodule results: the released package wraps arrays returned by the main functions only; its linalg functions
return the library's own arrays. We wrap both by default (`wrap_submodule=True`): an unwrapped result hands
generated code numpy's methods (`.tolist()`, `.mean()`), which is the very knowledge the benchmark hides, and
the evaluator's normaliser reads both printouts (`array(...)` and `ZWCArray(...)`) the same, so scores on the
official tasks do not change. `wrap_submodule=False` gives the released behaviour.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path

from jaxsuite.core import files
from jaxsuite.sebench.names import NUMPY_ALIASES, NameMapping

RUNTIME = Path(__file__).with_name("zwc_runtime.py")

INIT = '''"""{package}: a library of array functions. Read the documentation of each function with help()."""
from {package}._runtime import ZWCArray, _build, _seal
_build(globals(), "main")
from {package} import {subpackage}
del _build
'''
SUB_INIT = '''"""{package}.{subpackage}: the linear-algebra functions of {package}."""
from {package}._runtime import _build
_build(globals(), "sub")
del _build
'''


def numpy_passthrough() -> list[str]:
    """NumPy's constants and scalar types (pi, inf, nan, newaxis, float64, int32, datetime64, ...): not functions,
    so not renamed; the package exposes them under their own names, as the rewritten docs refer to them
    (`dtype=zwc.float32`)."""
    import numpy as np
    scalar_types = [n for n, v in vars(np).items() if isinstance(v, type) and issubclass(v, np.generic)
                    and not n.startswith("_")]
    return sorted({"pi", "e", "inf", "nan", "newaxis", "euler_gamma", *scalar_types})


def library_folder(library: str) -> str:
    """The folder the library is imported from (its parent on sys.path)."""
    module = importlib.import_module(library)
    return str(Path(module.__file__).resolve().parent.parent)


def build_package(folder, mapping: NameMapping, *, library: str = "numpy", submodule: str = "linalg",
                  wrap_arrays: bool = True, wrap_submodule: bool = True, docs: dict | None = None,
                  aliases: dict | None = None, passthrough: list[str] | None = None) -> Path:
    """Writes `folder/<mapping.package>/` (replacing an earlier build) and returns that package folder. `folder`
    is made readable by others: a sandbox run under its own uid imports the package from it.

    docs: {"main": {new_name: text}, "sub": {...}} shown by help(); see jaxsuite.sebench.docs.rewrite_docs.
    aliases: {"main"|"sub": {listed name: the library's name}} for functions the installed library renamed.
    passthrough: the library's non-function names kept as they are (NumPy: numpy_passthrough()).
    """
    if not mapping.main:
        raise ValueError("the name mapping has no functions")
    lib = importlib.import_module(library)
    sub = importlib.import_module(f"{library}.{submodule}") if mapping.sub else None
    aliases = NUMPY_ALIASES if aliases is None and library == "numpy" else (aliases or {})
    if passthrough is None:
        passthrough = numpy_passthrough() if library == "numpy" else []
    clashes = sorted(set(passthrough) & set(mapping.main.values()))
    if clashes:
        raise ValueError(f"kept names {clashes} collide with new function names")
    for part, module, names in (("main", lib, mapping.main), ("sub", sub, mapping.sub)):
        absent = [n for n in names if not hasattr(module, n) and not hasattr(module, aliases.get(part, {}).get(n, ""))]
        if absent:
            raise ValueError(f"{library}{'' if part == 'main' else '.' + submodule} has no {absent}")
    folder = Path(folder)
    staging = folder / f".{mapping.package}.building"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / mapping.subpackage).mkdir(parents=True)
    config = {"library": library, "submodule": submodule, "package": mapping.package,
              "subpackage": mapping.subpackage, "main": mapping.main, "sub": mapping.sub,
              "library_path": library_folder(library), "wrap_arrays": wrap_arrays,
              "wrap_submodule": wrap_submodule, "aliases": aliases,
              "passthrough": [n for n in passthrough if hasattr(lib, n)]}
    (staging / "_package.json").write_text(json.dumps(config, indent=1))
    (staging / "_docs.json").write_text(json.dumps(docs or {"main": {}, "sub": {}}))
    shutil.copyfile(RUNTIME, staging / "_runtime.py")
    (staging / "__init__.py").write_text(INIT.format(package=mapping.package, subpackage=mapping.subpackage))
    (staging / mapping.subpackage / "__init__.py").write_text(
        SUB_INIT.format(package=mapping.package, subpackage=mapping.subpackage))
    for path in [staging, *staging.rglob("*")]:     # a sandbox run under its own uid must read it
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    # the folder that goes on the sandbox's path must be open to the run's own uid (pytest's and mkdtemp's are 0700)
    folder.chmod(folder.stat().st_mode | 0o055)
    target = folder / mapping.package
    files.replace_folder(staging, target)
    return target
