"""Install extras: a wing used without its extra fails with one line that names the extra to install.

`pip install -e .` installs the core, which runs the foundation, pre-training and HALO (the main job). A
heavy dependency that only one wing needs is an extra of setup.py:

    extra       package   needed by
    [chem]      rdkit     jaxsuite.latent (LatentChem: molecules, tasks, rewards)
    [forecast]  numpyro   jaxsuite.forecast (the Bayesian structural baseline)
    [rl]        sympy     jaxsuite.rl (the math environment: CPMobius, R-Zero, RENT)
    [agents]    json5     jaxsuite.agents (tool-call parsing), bm25s (local retrieval), jinja2 (chat templates)
    [opt]       cvxpy     jaxsuite.optmodel (EvoOpt-LLM: solvers highspy, pyscipopt, pulp for models and programs)
    [data]      datatrove jaxsuite.tiers (tiered data: the pipeline engine; trafilatura, inscriptis, py3langid)

The module that uses such a package calls `require` on the line before importing it:

    require("rdkit", extra="chem", for_="jaxsuite.latent (LatentChem)")
    from rdkit import Chem

so that without the extra the import fails with

    ImportError: jaxsuite.latent (LatentChem) needs rdkit: pip install 'jaxsuite[chem]'

instead of a bare ModuleNotFoundError somewhere inside a job. The `extra-*` contracts of .importlinter
check that each of these packages is imported by its own wing only.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType


class MissingExtraError(ImportError):
    """A wing's optional dependency is not installed; the message names the extra that installs it."""


def missing_extra_message(module: str, *, extra: str, for_: str) -> str:
    """The one line a missing extra fails with (module: the package that is missing, e.g. "rdkit")."""
    return f"{for_} needs {module}: pip install 'jaxsuite[{extra}]'"


def _is_missing(module: str, missing_name: str | None) -> bool:
    """Whether a ModuleNotFoundError for `missing_name` means `module` itself (or a parent) is absent.

    A ModuleNotFoundError for anything else (a dependency of the package, missing from a broken
    installation) is not the extra's absence, and must surface with its own name."""
    return missing_name is not None and (module == missing_name or module.startswith(missing_name + "."))


def require(module: str, *, extra: str, for_: str, load: bool = True) -> ModuleType | None:
    """Imports `module`, or raises MissingExtraError naming `extra` when it is not installed.

    module: the dotted name to import ("rdkit", "numpyro.infer").
    extra:  the setup.py extra that installs it ("chem" -> pip install 'jaxsuite[chem]').
    for_:   who needs it, as the message starts ("jaxsuite.latent (LatentChem)").
    load:   False only checks that the module can be found, without importing it: for a module the wing
            imports lazily because its import is slow, so that a missing extra still fails at once.

    Returns the module (None when load=False)."""
    message = missing_extra_message(module.partition(".")[0], extra=extra, for_=for_)
    try:
        if load:
            return importlib.import_module(module)
        found = importlib.util.find_spec(module)   # None also when sys.modules[module] is None (blocked)
    except ModuleNotFoundError as e:
        if not _is_missing(module, e.name):
            raise
        found = None
    if found is None:
        raise MissingExtraError(message, name=module) from None
    return None
